//! `upgrade-emergency` on kube-sim (its Deployment and ReplicaSet controllers running): a
//! Deployment put back to its previous revision, scaled to zero, restarted, each undone by
//! `upgrade-rollback`; a Deployment that does not exist and an undo with no previous
//! revision exit 2.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use kube_sim::{ControllerConfig, SimCluster};
use upgrade_test::TestContext;

/// The human summary of `kube-system/upgrade-status`.
fn upgrade_status(sim: &SimCluster) -> String {
    let cm = sim
        .get("v1", "ConfigMap", Some("kube-system"), "upgrade-status")
        .expect("the run wrote upgrade-status");
    cm["data"]["status"].as_str().unwrap().to_string()
}

async fn settled(api: &Api<Deployment>, image: &str, replicas: i32) -> Deployment {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let d = api.get("mlflow").await.unwrap();
        let spec = d.spec.clone().unwrap();
        let status = d.status.clone().unwrap_or_default();
        let running = spec.template.spec.as_ref().unwrap().containers[0]
            .image
            .clone();
        if running.as_deref() == Some(image)
            && spec.replicas == Some(replicas)
            && status.available_replicas.unwrap_or(0) == replicas
            && status.replicas.unwrap_or(0) == replicas
        {
            return d;
        }
        assert!(std::time::Instant::now() < deadline, "not settled: {d:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mitigations_change_a_deployment_and_upgrade_rollback_puts_it_back() {
    let ctx = TestContext::new();
    let sim = crate::support::sim_with(&ctx, ControllerConfig::fast()).await;
    sim.add_node("node-b", kube_sim::DEFAULT_SERVER_VERSION)
        .unwrap();
    sim.load_yaml(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: mlops}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: mlflow, namespace: mlops}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: mlflow}}\n  template:\n    metadata: {labels: {app: mlflow}}\n    spec: {containers: [{name: mlflow, image: 'ghcr.io/mlflow/mlflow:2.21.0'}]}\n",
    )
    .unwrap();
    let api: Api<Deployment> = Api::namespaced(sim.client().unwrap(), "mlops");
    settled(&api, "ghcr.io/mlflow/mlflow:2.21.0", 2).await;
    let state = ctx.work().join(".upgrade");
    let run = |exe: &str, args: &[&str]| crate::support::run_on(&ctx, &sim, &state, &[], exe, args);
    let emergency = |args: &[&str]| run(env!("CARGO_BIN_EXE_upgrade-emergency"), args);
    let rollback = || {
        run(
            env!("CARGO_BIN_EXE_upgrade-rollback"),
            &["--apply", "--yes"],
        )
    };

    let (code, stdout, stderr) =
        emergency(&["scale", "--deployment", "mlops/nope", "--replicas", "0"]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("there is no deployment mlops/nope"),
        "{stderr}"
    );
    let (code, stdout, stderr) =
        emergency(&["undo", "--deployment", "mlops/mlflow", "--apply", "--yes"]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("has no previous revision"), "{stderr}");

    // The bad upgrade: a new image.
    api.patch(
        "mlflow",
        &PatchParams::default(),
        &Patch::Strategic(serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "mlflow", "image": "ghcr.io/mlflow/mlflow:2.22.0"}]}}}})),
    )
    .await
    .unwrap();
    settled(&api, "ghcr.io/mlflow/mlflow:2.22.0", 2).await;

    // Undo: the previous revision's image; the rollback brings the new one back.
    let (code, stdout, stderr) = emergency(&["undo", "--deployment", "mlops/mlflow"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("back to revision 1 (mlflow=ghcr.io/mlflow/mlflow:2.21.0)"),
        "{stdout}"
    );
    let (code, stdout, stderr) =
        emergency(&["undo", "--deployment", "mlops/mlflow", "--apply", "--yes"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    settled(&api, "ghcr.io/mlflow/mlflow:2.21.0", 2).await;
    let (code, stdout, stderr) = rollback();
    assert_eq!(code, 0, "{stdout}{stderr}");
    settled(&api, "ghcr.io/mlflow/mlflow:2.22.0", 2).await;

    // Scale to zero: no pod serves; the rollback brings both back.
    let (code, stdout, stderr) = emergency(&[
        "scale",
        "--deployment",
        "mlops/mlflow",
        "--replicas",
        "0",
        "--apply",
        "--yes",
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    settled(&api, "ghcr.io/mlflow/mlflow:2.22.0", 0).await;
    assert!(
        sim.list("v1", "Pod", Some("mlops"))
            .iter()
            .all(|p| !p["metadata"]["deletionTimestamp"].is_null())
    );
    // Seed 004's status ConfigMap follows every run: the step's part, the timeline, and a
    // way back while the run can be undone.
    let status = upgrade_status(&sim);
    assert!(
        status.contains("- emergency/mlops/mlflow (complete)")
            && status.contains("Rollback Available: Yes")
            && status.contains("started")
            && status.contains("emergency/mlops/mlflow: in-progress"),
        "{status}"
    );
    let (code, stdout, stderr) = rollback();
    assert_eq!(code, 0, "{stdout}{stderr}");
    settled(&api, "ghcr.io/mlflow/mlflow:2.22.0", 2).await;
    let status = upgrade_status(&sim);
    assert!(
        status.contains("- emergency/mlops/mlflow (rolled-back)")
            && status.contains("Rollback Available: No (the run was rolled back)"),
        "{status}"
    );

    // Restart: a new template annotation (new pods); the rollback removes it again.
    let (code, stdout, stderr) = emergency(&[
        "restart",
        "--deployment",
        "mlops/mlflow",
        "--apply",
        "--yes",
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let restarted = settled(&api, "ghcr.io/mlflow/mlflow:2.22.0", 2).await;
    let annotations = restarted
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap_or_default();
    assert!(
        annotations.contains_key("kubectl.kubernetes.io/restartedAt"),
        "{annotations:?}"
    );
    let (code, stdout, stderr) = rollback();
    assert_eq!(code, 0, "{stdout}{stderr}");
    let back = settled(&api, "ghcr.io/mlflow/mlflow:2.22.0", 2).await;
    let annotations = back
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap_or_default();
    assert!(
        !annotations.contains_key("kubectl.kubernetes.io/restartedAt"),
        "{annotations:?}"
    );
    sim.shutdown().await;
}

const CERT_CRD: &str = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: certificates.cert-manager.io}\nspec:\n  group: cert-manager.io\n  scope: Namespaced\n  names: {plural: certificates, singular: certificate, kind: Certificate, listKind: CertificateList}\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    subresources: {status: {}}\n    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: mlops}\n---\napiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: mlflow, namespace: mlops}\nspec: {secretName: mlflow-tls, dnsNames: [mlflow.platform.example.com]}\nstatus: {conditions: [{type: Ready, status: 'True'}], notAfter: '2026-12-08T00:00:00Z'}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: mlflow-tls, namespace: mlops}\ntype: kubernetes.io/tls\ndata: {tls.crt: T0xELUNFUlQ=, tls.key: T0xELUtFWQ==}\n";

/// `upgrade-emergency renew-certificate`: with cert-manager's issuer running (kube-sim's)
/// the expiring secret is replaced by a new issue, and `upgrade-rollback` puts the old one
/// back; with no issuer the run fails after its wait and the old secret is back (exit 1); a
/// Certificate that does not exist is exit 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_is_renewed_or_its_old_secret_put_back() {
    let ctx = TestContext::new();
    for issuer in [true, false] {
        let sim = SimCluster::builder()
            .controllers(ControllerConfig {
                cert_manager: issuer,
                ..ControllerConfig::none()
            })
            .kubeconfig_path(ctx.root().join(format!("kubeconfig-{issuer}.yaml")))
            .start()
            .await
            .unwrap();
        sim.load_yaml(CERT_CRD).unwrap();
        let state = ctx.work().join(format!(".upgrade-{issuer}"));
        let run =
            |exe: &str, args: &[&str]| crate::support::run_on(&ctx, &sim, &state, &[], exe, args);
        let emergency = |args: &[&str]| run(env!("CARGO_BIN_EXE_upgrade-emergency"), args);
        let crt = || {
            sim.get("v1", "Secret", Some("mlops"), "mlflow-tls")
                .map(|s| {
                    s["data"]["tls.crt"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                })
                .unwrap_or_default()
        };
        let (code, stdout, stderr) = emergency(&[
            "renew-certificate",
            "--certificate",
            "mlops/nope",
            "--apply",
            "--yes",
        ]);
        assert_eq!(code, 2, "{stdout}{stderr}");
        assert!(
            stderr.contains("there is no cert-manager Certificate mlops/nope"),
            "{stderr}"
        );

        let renew = [
            "renew-certificate",
            "--certificate",
            "mlops/mlflow",
            "--issue-timeout",
            "3",
            "--apply",
            "--yes",
        ];
        let (code, stdout, stderr) = emergency(&renew);
        if issuer {
            assert_eq!(code, 0, "{stdout}{stderr}");
            assert_ne!(crt(), "T0xELUNFUlQ=", "a new issue");
            let cert = sim
                .get("cert-manager.io/v1", "Certificate", Some("mlops"), "mlflow")
                .unwrap();
            assert!(
                cert["status"]["notAfter"].as_str().unwrap() > "2027-01-01",
                "{cert}"
            );
            let (code, stdout, stderr) = run(
                env!("CARGO_BIN_EXE_upgrade-rollback"),
                &["--apply", "--yes"],
            );
            assert_eq!(code, 0, "{stdout}{stderr}");
            assert_eq!(crt(), "T0xELUNFUlQ=", "the old secret is back");
        } else {
            assert_eq!(code, 1, "{stdout}{stderr}");
            assert!(
                format!("{stdout}{stderr}")
                    .contains("cert-manager issued no new secret mlops/mlflow-tls within 3 s"),
                "{stdout}{stderr}"
            );
            assert_eq!(crt(), "T0xELUNFUlQ=", "the old secret is back");
        }
        sim.shutdown().await;
    }
}

/// `upgrade-emergency helm-rollback` with the real helm on kube-sim: a release upgraded to a
/// bad image goes back to its previous revision (a new revision that rolls back), the undo
/// restores the bad one; a release that does not exist and a revision not in its history
/// exit 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_rolls_back_to_its_previous_revision_and_the_undo_restores_it() {
    let ctx = TestContext::new();
    let sim = crate::support::sim_with(&ctx, ControllerConfig::fast()).await;
    let chart = TestContext::fixtures_dir().join("charts/sim-smoke");
    let helm = |args: &[&str]| {
        let mut cmd = ctx.command("helm");
        cmd.args(args)
            .arg("--kubeconfig")
            .arg(sim.kubeconfig_path())
            .timeout(Duration::from_secs(120));
        cmd.exec()
            .unwrap_or_else(|e| panic!("helm {args:?}: {e}"))
            .stdout_lossy()
    };
    let chart = chart.display().to_string();
    helm(&[
        "install",
        "smoke",
        &chart,
        "-n",
        "apps",
        "--create-namespace",
        "--wait",
    ]);
    helm(&[
        "upgrade",
        "smoke",
        &chart,
        "-n",
        "apps",
        "--wait",
        "--set",
        "image.tag=2.0.0-bad",
    ]);
    let tag = || -> String {
        let values: serde_json::Value = serde_json::from_str(&helm(&[
            "get", "values", "smoke", "-n", "apps", "--all", "-o", "json",
        ]))
        .unwrap();
        values["image"]["tag"].as_str().unwrap().to_string()
    };
    assert_eq!(tag(), "2.0.0-bad");
    let state = ctx.work().join(".upgrade");
    let run = |exe: &str, args: &[&str]| crate::support::run_on(&ctx, &sim, &state, &[], exe, args);
    let emergency = |args: &[&str]| run(env!("CARGO_BIN_EXE_upgrade-emergency"), args);
    let (code, stdout, stderr) = emergency(&["helm-rollback", "--release", "apps/nope"]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("there is no release apps/nope"), "{stderr}");
    let (code, stdout, stderr) = emergency(&[
        "helm-rollback",
        "--release",
        "apps/smoke",
        "--revision",
        "7",
    ]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("has no revision 7 before its current 2"),
        "{stderr}"
    );

    let (code, stdout, stderr) = emergency(&["helm-rollback", "--release", "apps/smoke"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("revision 2 (sim-smoke-") && stdout.contains("back to revision 1"),
        "{stdout}"
    );
    let (code, stdout, stderr) = emergency(&[
        "helm-rollback",
        "--release",
        "apps/smoke",
        "--apply",
        "--yes",
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(tag(), "1.0.0");
    let history = helm(&["history", "smoke", "-n", "apps", "-o", "json"]);
    assert!(history.contains("\"revision\":3"), "{history}");

    let (code, stdout, stderr) = run(
        env!("CARGO_BIN_EXE_upgrade-rollback"),
        &["--apply", "--yes"],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        tag(),
        "2.0.0-bad",
        "the undo restores the revision the rollback replaced"
    );
    sim.shutdown().await;
}

const MLFLOW_WITH_BUDGET: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: mlops}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: mlflow, namespace: mlops}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: mlflow}}\n  template:\n    metadata: {labels: {app: mlflow}}\n    spec: {containers: [{name: mlflow, image: 'ghcr.io/mlflow/mlflow:2.21.0'}]}\n---\napiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: mlflow, namespace: mlops}\nspec:\n  minAvailable: 1\n  selector: {matchLabels: {app: mlflow}}\n";

/// kube-sim with Karpenter's NodeClaim CRD (the upstream chart's) and its simulation when
/// `karpenter`; MLflow's two pods and their budget on `node-a`, whose kubelet then stops
/// answering (NotReady: its pods lose readiness, the budget is not met).
async fn broken_node(ctx: &TestContext, karpenter: bool) -> SimCluster {
    let sim = crate::support::sim_with(
        ctx,
        ControllerConfig {
            karpenter,
            ..ControllerConfig::fast()
        },
    )
    .await;
    let crd = TestContext::upstream_charts_dir()
        .join("karpenter/1.5.0/karpenter/crds/karpenter.sh_nodeclaims.yaml");
    sim.load_yaml(&std::fs::read_to_string(&crd).unwrap())
        .unwrap();
    if karpenter {
        sim.make_karpenter_node("node-a", "default").unwrap();
    }
    sim.load_yaml(MLFLOW_WITH_BUDGET).unwrap();
    let api: Api<Deployment> = Api::namespaced(sim.client().unwrap(), "mlops");
    settled(&api, "ghcr.io/mlflow/mlflow:2.21.0", 2).await;
    sim.set_node_ready("node-a", false).unwrap();
    sim
}

fn node_names(sim: &SimCluster) -> Vec<String> {
    sim.list("v1", "Node", None)
        .iter()
        .map(|n| n["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

/// Seed 002's NotReady node on Karpenter: cordoned, drained (its unready pods deleted, not
/// evicted: the budget would refuse), its NodeClaim deleted; Karpenter's simulation launches
/// a node for the pods and terminates the old one; the run waits for MLflow to serve again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notready_karpenter_node_is_replaced_through_its_nodeclaim() {
    let ctx = TestContext::new();
    let sim = broken_node(&ctx, true).await;
    let state = ctx.work().join(".upgrade");
    let emergency = |args: &[&str]| {
        crate::support::run_on(
            &ctx,
            &sim,
            &state,
            &[],
            env!("CARGO_BIN_EXE_upgrade-emergency"),
            args,
        )
    };
    let (code, stdout, stderr) = emergency(&["replace-node", "--node", "node-z"]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("there is no node node-z"), "{stderr}");

    let claim = sim.list("karpenter.sh/v1", "NodeClaim", None)[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, stdout, stderr) = emergency(&["replace-node", "--node", "node-a"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("delete NodeClaim {claim} (karpenter.sh/v1)"))
            && stdout.contains("0 pod(s) evicted (budgets honoured), 2 deleted (not Ready)")
            && stdout.contains("NotReady")
            && stdout.contains("Deployment mlops/mlflow available")
            && stdout.contains("no way back once the node is retired"),
        "{stdout}"
    );
    assert!(
        node_names(&sim).contains(&"node-a".to_string()),
        "a plan changes nothing"
    );

    // A pod no controller recreates blocks the drain (exit 4, nothing changed) until
    // --force-drain.
    sim.load_yaml("apiVersion: v1\nkind: Pod\nmetadata: {name: debug, namespace: mlops}\nspec:\n  nodeName: node-a\n  containers: [{name: sh, image: busybox}]\n")
        .unwrap();
    let (code, stdout, stderr) =
        emergency(&["replace-node", "--node", "node-a", "--apply", "--yes"]);
    assert_eq!(code, 4, "{stdout}{stderr}");
    assert!(
        stdout.contains("the drain of node-a would stop at mlops/debug (no controller"),
        "{stdout}"
    );
    let node_a = sim.get("v1", "Node", None, "node-a").unwrap();
    assert!(node_a["spec"]["unschedulable"].is_null(), "{node_a}");

    let (code, stdout, stderr) = emergency(&[
        "replace-node",
        "--node",
        "node-a",
        "--force-drain",
        "--apply",
        "--yes",
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let nodes = node_names(&sim);
    assert!(!nodes.contains(&"node-a".to_string()), "{nodes:?}");
    assert!(
        nodes.iter().any(|n| n.starts_with("karpenter-")),
        "Karpenter launched capacity: {nodes:?}"
    );
    assert!(
        sim.list("karpenter.sh/v1", "NodeClaim", None)
            .iter()
            .all(|c| c["metadata"]["name"] != claim.as_str())
    );
    let api: Api<Deployment> = Api::namespaced(sim.client().unwrap(), "mlops");
    let d = api.get("mlflow").await.unwrap();
    assert_eq!(d.status.unwrap().available_replicas, Some(2));
    assert!(
        sim.list("v1", "Pod", Some("mlops"))
            .iter()
            .all(|p| p["spec"]["nodeName"] != "node-a"),
        "pod GC removed the old pods"
    );
    let status = upgrade_status(&sim);
    assert!(
        status.contains("- Node node-a (replace) (complete)")
            && status.contains("Rollback Available: No (emergency/replace-node/node-a cannot be undone: node node-a is retired"),
        "{status}"
    );
    sim.shutdown().await;
}

/// A managed node group's NotReady node on moto's Auto Scaling: its instance terminated in
/// its group with the size kept (moto launches another, which joins as a new node), the
/// Node deleted, the run waiting for the new node and MLflow. A retire command that fails
/// is rolled back: the node is uncordoned again. An instance in no group is bad input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notready_node_group_node_is_replaced_in_its_auto_scaling_group() {
    let ctx = TestContext::new();
    let moto = upgrade_test::MotoServer::start();
    let instances = moto.auto_scaling_group("eks-default", 1);
    let sim = broken_node(&ctx, false).await;
    sim.set_provider_id("node-a", &format!("aws:///us-east-1a/{}", instances[0]))
        .unwrap();
    sim.add_node("node-b", kube_sim::DEFAULT_SERVER_VERSION)
        .unwrap();
    sim.set_provider_id("node-b", "aws:///us-east-1a/i-0000000000000dead")
        .unwrap();
    let state = ctx.work().join(".upgrade");
    let env = moto.aws_env();
    let endpoint = ["--aws-endpoint-url", moto.url()];
    let emergency = |args: &[&str]| {
        crate::support::run_on(
            &ctx,
            &sim,
            &state,
            &env,
            env!("CARGO_BIN_EXE_upgrade-emergency"),
            &[args, &endpoint].concat(),
        )
    };
    let (code, stdout, stderr) = emergency(&["replace-node", "--node", "node-b"]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("instance i-0000000000000dead of node-b is in no Auto Scaling group")
            && stderr.contains("--retire-command"),
        "{stderr}"
    );

    // A retire command that fails: the run rolls back, and the cordon goes.
    let (code, stdout, stderr) = emergency(&[
        "replace-node",
        "--node",
        "node-a",
        "--retire-command",
        "false {node}",
        "--apply",
        "--yes",
    ]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let node_a = sim.get("v1", "Node", None, "node-a").unwrap();
    assert!(
        node_a["spec"]["unschedulable"].is_null(),
        "uncordoned by the rollback: {node_a}"
    );
    assert_eq!(moto.auto_scaling_instances("eks-default"), instances);

    // The group's replacement instance joins as node-c (what its kubelet's bootstrap does).
    let joined = std::sync::atomic::AtomicBool::new(false);
    let (code, stdout, stderr) = std::thread::scope(|scope| {
        scope.spawn(|| {
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            while std::time::Instant::now() < deadline {
                let now = moto.auto_scaling_instances("eks-default");
                if let Some(new) = now.iter().find(|i| !instances.contains(i)) {
                    sim.add_node("node-c", kube_sim::DEFAULT_SERVER_VERSION)
                        .unwrap();
                    sim.set_provider_id("node-c", &format!("aws:///us-east-1a/{new}"))
                        .unwrap();
                    joined.store(true, std::sync::atomic::Ordering::SeqCst);
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        emergency(&["replace-node", "--node", "node-a", "--apply", "--yes"])
    });
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(joined.load(std::sync::atomic::Ordering::SeqCst));
    assert!(
        stdout.contains(&format!(
            "terminate instance {} in Auto Scaling group eks-default",
            instances[0]
        )),
        "{stdout}"
    );
    let now = moto.auto_scaling_instances("eks-default");
    assert_eq!(now.len(), 1, "the group kept its size: {now:?}");
    assert!(!now.contains(&instances[0]));
    assert!(!node_names(&sim).contains(&"node-a".to_string()));
    let api: Api<Deployment> = Api::namespaced(sim.client().unwrap(), "mlops");
    settled(&api, "ghcr.io/mlflow/mlflow:2.21.0", 2).await;
    // No way back: upgrade-rollback says so and changes nothing.
    let (code, stdout, stderr) = crate::support::run_on(
        &ctx,
        &sim,
        &state,
        &env,
        env!("CARGO_BIN_EXE_upgrade-rollback"),
        &["--apply", "--yes"],
    );
    assert_eq!(code, 5, "{stdout}{stderr}");
    assert!(
        stdout.contains("rolled back 0 step(s), then stopped at emergency/replace-node/node-a")
            && stdout.contains("cannot be undone: node node-a is retired"),
        "{stdout}{stderr}"
    );
    sim.shutdown().await;
}

/// The MLflow image's containers, run for real: the server is taken as started, and a Job's
/// command runs with the verification venv's Python (MLflow's SQLAlchemy, boto3) and the
/// environment kube-sim's kubelet built (secrets resolved); what it prints is its log.
struct MlflowImage {
    python: std::path::PathBuf,
}

const MLFLOW_IMAGE: &str = "ghcr.io/mlflow/mlflow:v2.16.0";

impl kube_sim::ContainerRuntime for MlflowImage {
    fn runs(&self, image: &str) -> bool {
        image == MLFLOW_IMAGE
    }

    fn run(&self, container: &kube_sim::ContainerStart) -> i32 {
        self.run_logged(container).0
    }

    fn run_logged(&self, container: &kube_sim::ContainerStart) -> (i32, String) {
        if container.restarts {
            return (0, String::new());
        }
        assert_eq!(container.argv[0], "python", "{:?}", container.argv);
        let mut cmd = upgrade_core::ProcessBuilder::new(&self.python);
        cmd.args(&container.argv[1..])
            .timeout(Duration::from_secs(120));
        for (key, value) in &container.env {
            cmd.env(key, value);
        }
        match cmd.output() {
            Ok(out) => (out.status.code().unwrap_or(137), out.stdout_lossy()),
            Err(e) => (127, e.to_string()),
        }
    }
}

const MLFLOW_ACCESS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: mlops}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: mlflow, namespace: mlops, annotations: {eks.amazonaws.com/role-arn: "arn:aws:iam::123456789012:role/mlflow"}}
---
apiVersion: v1
kind: Secret
metadata: {name: mlflow-db, namespace: mlops}
stringData: {uri: "@STORE@"}
---
apiVersion: v1
kind: Secret
metadata: {name: mlflow-aws, namespace: mlops}
stringData: {AWS_ACCESS_KEY_ID: testing, AWS_SECRET_ACCESS_KEY: testing, AWS_DEFAULT_REGION: us-east-1}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: mlflow, namespace: mlops}
spec:
  replicas: 1
  selector: {matchLabels: {app: mlflow}}
  template:
    metadata: {labels: {app: mlflow}}
    spec:
      serviceAccountName: mlflow
      containers:
        - name: mlflow
          image: ghcr.io/mlflow/mlflow:v2.16.0
          command: [mlflow, server]
          args: [--backend-store-uri, $(DB_URI), --artifacts-destination, "s3://mlflow-artifacts/prod", --serve-artifacts]
          env:
            - {name: DB_URI, valueFrom: {secretKeyRef: {name: mlflow-db, key: uri}}}
            - {name: MLFLOW_S3_ENDPOINT_URL, value: "@MOTO@"}
            - {name: AWS_ROLE_ARN, value: "arn:aws:iam::123456789012:role/mlflow"}
          envFrom:
            - secretRef: {name: mlflow-aws}
"#;

/// Seed 002's MLflow checks from MLflow's own pod template: the database its secret names
/// (a real MLflow store) and its S3 artifact location on moto pass; a store that cannot be
/// opened and a bucket that does not exist fail (exit 4). The Job is gone after each run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mlflow_access_is_checked_from_its_own_environment() {
    let ctx = TestContext::new();
    let moto = upgrade_test::MotoServer::start();
    moto.aws(&["s3api", "create-bucket", "--bucket", "mlflow-artifacts"]);
    let store = ctx.copy_fixture("mlflow/store-mlflow-2.9.2.db");
    let runtime = MlflowImage {
        python: upgrade_test::require_venv_tool("python"),
    };
    let sim = SimCluster::builder()
        .controllers(ControllerConfig::fast())
        .container_runtime(std::sync::Arc::new(runtime))
        .kubeconfig_path(ctx.root().join("kubeconfig.yaml"))
        .start()
        .await
        .unwrap();
    sim.add_node("node-a", kube_sim::DEFAULT_SERVER_VERSION)
        .unwrap();
    sim.load_yaml(
        &MLFLOW_ACCESS
            .replace("@STORE@", &format!("sqlite:///{}", store.display()))
            .replace("@MOTO@", moto.url()),
    )
    .unwrap();
    let state = ctx.work().join(".upgrade");
    let check = |args: &[&str]| {
        crate::support::run_on(
            &ctx,
            &sim,
            &state,
            &[],
            env!("CARGO_BIN_EXE_upgrade-emergency"),
            &[&["check-mlflow", "--deployment"], args].concat(),
        )
    };
    let no_jobs = || sim.list("batch/v1", "Job", Some("mlops")).is_empty();

    let (code, stdout, stderr) = check(&["mlops/nope"]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("there is no deployment mlops/nope"),
        "{stderr}"
    );
    // It creates a Job: not without the interlock.
    let mut cmd = upgrade_core::ProcessBuilder::new(env!("CARGO_BIN_EXE_upgrade-emergency"));
    ctx.apply_env(&mut cmd);
    cmd.arg("--kubeconfig")
        .arg(sim.kubeconfig_path())
        .args(["check-mlflow", "--deployment", "mlops/mlflow"])
        .timeout(Duration::from_secs(60));
    let (code, stdout, stderr) = upgrade_test::CommandOutput::run(&cmd).parts();
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("--expect-cluster"), "{stderr}");
    assert!(no_jobs());

    let (code, stdout, stderr) = check(&["mlops/mlflow"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("service account mlflow")
            && stdout.contains(&format!(
                "PASS database: connected to sqlite:///{}: MLflow schema revision",
                store.display()
            ))
            && stdout.contains(
                "PASS s3: wrote, listed and deleted s3://mlflow-artifacts/prod/.upgrade-access-check as arn:aws:iam::123456789012:role/mlflow"
            ),
        "{stdout}"
    );
    assert!(no_jobs(), "the check's Job is deleted");
    let left = moto.aws(&["s3api", "list-objects-v2", "--bucket", "mlflow-artifacts"]);
    assert!(
        left["Contents"].is_null(),
        "the probe object is gone: {left}"
    );

    // The database secret points where nothing can be opened; the bucket is gone.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(sim.client().unwrap(), "mlops");
    secrets
        .patch(
            "mlflow-db",
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"stringData": {"uri": "sqlite:////no-such-dir/mlflow.db"}}),
            ),
        )
        .await
        .unwrap();
    moto.aws(&["s3api", "delete-bucket", "--bucket", "mlflow-artifacts"]);
    let (code, stdout, stderr) = check(&["mlops/mlflow", "--output", "json"]);
    assert_eq!(code, 4, "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let checks = report["checks"].as_array().unwrap();
    assert_eq!(checks[0]["check"], "database");
    assert_eq!(checks[0]["ok"], false, "{report}");
    assert!(
        checks[0]["detail"]
            .as_str()
            .unwrap()
            .contains("OperationalError"),
        "{report}"
    );
    assert_eq!(checks[1]["check"], "s3");
    assert_eq!(checks[1]["ok"], false, "{report}");
    assert!(
        checks[1]["detail"]
            .as_str()
            .unwrap()
            .contains("NoSuchBucket"),
        "{report}"
    );
    assert!(no_jobs());
    sim.shutdown().await;
}

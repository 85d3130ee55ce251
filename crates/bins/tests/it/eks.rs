//! `upgrade-eks` end to end: the real binary and the real terraform with the simulated AWS
//! provider, whose `aws_eks_cluster` upgrade moves the in-process kube-sim's API server
//! version (`UPGRADE_SIM_KUBE_URL`), and kube-sim's Karpenter-like provisioner replacing
//! drained nodes.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use kube_sim::{ControllerConfig, SimCluster};
use upgrade_core::ProcessBuilder;
use upgrade_test::TestContext;

const V130: &str = "v1.30.4-eks-a737599";

/// The AWS CLI's environment for the simulated EKS API: any key is accepted, and no local
/// configuration may leak in.
const AWS_TEST_ENV: [(&str, &str); 4] = [
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_CONFIG_FILE", "/dev/null"),
    ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
];

/// The simulated AWS provider, built once (a no-op when the workspace build made it).
pub(crate) fn provider_mirror() -> &'static Path {
    static MIRROR: OnceLock<PathBuf> = OnceLock::new();
    MIRROR.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = ProcessBuilder::new(PathBuf::from(cargo));
        build
            .args([
                "build",
                "--quiet",
                "-p",
                "upgrade-tf-sim-provider",
                "--bin",
                upgrade_tf_sim_provider::BINARY_NAME,
            ])
            .cwd(TestContext::workspace_root());
        build
            .exec()
            .unwrap_or_else(|e| panic!("building the simulated AWS provider failed: {e}"));
        let binary = profile_dir.join(upgrade_tf_sim_provider::BINARY_NAME);
        let built = std::fs::metadata(&binary)
            .and_then(|m| m.modified())
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let mirror = profile_dir.join(format!("bins-tf-sim-mirror-{built}"));
        upgrade_tf_sim_provider::install_mirror(
            &binary,
            &mirror,
            &["5.99.0"],
            &[upgrade_tf_sim_provider::host_platform()],
        )
        .unwrap();
        mirror
    })
}

/// A cluster at 1.30 with `nodes` nodes, a Terraform environment that created it, and the
/// web Deployment (2 replicas) behind a PodDisruptionBudget (minAvailable 1).
struct World {
    ctx: TestContext,
    sim: SimCluster,
    dir: PathBuf,
    rc: PathBuf,
}

/// Who provisioned the world's nodes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Nodes {
    /// The Terraform-managed node group (whose version update rolls them).
    Managed,
    /// Karpenter (the node rollout replaces them; Karpenter launches the new ones).
    Karpenter,
    /// The site itself (only surge/retire commands replace them).
    SelfManaged,
}

impl World {
    async fn new(nodes: usize, kind: Nodes) -> World {
        let ctx = TestContext::new();
        ctx.require_tool("terraform");
        let sim = SimCluster::builder()
            .server_version(V130)
            .controllers(ControllerConfig {
                karpenter: true,
                ..ControllerConfig::fast()
            })
            .start()
            .await
            .unwrap();
        for i in 1..=nodes {
            let name = format!("node-{i}");
            sim.add_node(&name, V130).unwrap();
            match kind {
                Nodes::Managed => {}
                Nodes::Karpenter => sim.make_karpenter_node(&name, "default").unwrap(),
                Nodes::SelfManaged => sim.make_self_managed_node(&name).unwrap(),
            }
        }
        sim.load_yaml(WEB).unwrap();
        let dir = ctx.copy_fixture("terraform/environments/dev");
        let tfvars = dir.join("terraform.tfvars");
        let text = std::fs::read_to_string(&tfvars)
            .unwrap()
            .replace("cluster_version = \"1.29\"", "cluster_version = \"1.30\"");
        std::fs::write(&tfvars, text).unwrap();
        let rc = ctx.root().join("terraformrc");
        std::fs::write(&rc, upgrade_tf_sim_provider::cli_config(provider_mirror())).unwrap();
        let world = World { ctx, sim, dir, rc };
        world.terraform(&["init", "-input=false"]).await;
        world
            .terraform(&["apply", "-auto-approve", "-input=false"])
            .await;
        world
            .wait("web available", || async { world.available("web") == 2 })
            .await;
        world
    }

    async fn terraform(&self, args: &[&str]) {
        let mut cmd = self.ctx.command("terraform");
        cmd.args(args)
            .cwd(&self.dir)
            .env("TF_CLI_CONFIG_FILE", &self.rc)
            .env("UPGRADE_SIM_KUBE_URL", self.sim.url())
            .timeout(Duration::from_secs(120));
        cmd.exec_async()
            .await
            .unwrap_or_else(|e| panic!("terraform {args:?}: {e}"));
    }

    fn tfvars(&self) -> PathBuf {
        self.dir.join("terraform.tfvars")
    }

    /// The files a bad run must leave alone.
    fn files(&self) -> (String, String) {
        (
            std::fs::read_to_string(self.tfvars()).unwrap(),
            std::fs::read_to_string(self.dir.join("terraform.tfstate")).unwrap(),
        )
    }

    fn available(&self, name: &str) -> i64 {
        self.sim
            .get("apps/v1", "Deployment", Some("default"), name)
            .map(|d| d["status"]["availableReplicas"].as_i64().unwrap_or(0))
            .unwrap_or(0)
    }

    fn node_versions(&self) -> Vec<(String, String, bool)> {
        let mut nodes: Vec<(String, String, bool)> = self
            .sim
            .list("v1", "Node", None)
            .iter()
            .map(|n| {
                (
                    n["metadata"]["name"].as_str().unwrap().to_string(),
                    n["status"]["nodeInfo"]["kubeletVersion"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                    n["spec"]["unschedulable"].as_bool() == Some(true),
                )
            })
            .collect();
        nodes.sort();
        nodes
    }

    async fn wait<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !check().await {
            assert!(std::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs the real `upgrade-eks` with `args` after the cluster flags.
    async fn eks(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        self.eks_on(self.sim.kubeconfig_path(), args, env).await
    }

    /// Runs it against the cluster of `kubeconfig` (with this world's Terraform folder).
    async fn eks_on(
        &self,
        kubeconfig: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> (i32, String, String) {
        let mut cmd = ProcessBuilder::new(env!("CARGO_BIN_EXE_upgrade-eks"));
        self.ctx.apply_env(&mut cmd);
        cmd.arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--kube-context", kube_sim::CONTEXT_NAME])
            .arg("--terraform-dir")
            .arg(&self.dir)
            .arg("--snapshot-dir")
            .arg(self.ctx.work().join(".upgrade"))
            .args(args)
            .env("TF_CLI_CONFIG_FILE", &self.rc)
            .env("UPGRADE_SIM_KUBE_URL", self.sim.url())
            .timeout(Duration::from_secs(240));
        for (k, v) in env {
            cmd.env(k, v);
        }
        upgrade_test::CommandOutput::run_async(&cmd).await.parts()
    }

    fn addon_versions(&self) -> String {
        TestContext::fixtures_dir()
            .join("eks/addon-versions.json")
            .to_string_lossy()
            .into_owned()
    }

    fn settings(&self) -> insta::Settings {
        let mut settings = self.ctx.insta_settings();
        settings.add_filter(r"eks-\d{8}T\d{6}Z", "eks-[RUN]");
        settings.add_filter(&upgrade_test::regex_escape(self.sim.url()), "[SIM]");
        settings.add_filter(r"karpenter-\d{5}", "karpenter-[N]");
        // The support-calendar findings depend on today's date.
        settings.add_filter(
            r"(?m)^  - EKS001 .*$",
            "  - EKS001 [support calendar finding]",
        );
        settings
    }
}

const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "nginx:1.27", resources: {requests: {cpu: "1"}}}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web, namespace: default}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: web}}
"#;

#[test]
fn help_is_stable() {
    let ctx = TestContext::new();
    let mut cmd = ProcessBuilder::new(env!("CARGO_BIN_EXE_upgrade-eks"));
    ctx.apply_env(&mut cmd);
    cmd.arg("--help");
    let out = cmd.exec().unwrap();
    insta::assert_snapshot!(out.stdout_lossy());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_then_upgrades_control_plane_nodes_and_addons_keeping_the_pdb() {
    let world = World::new(3, Nodes::Karpenter).await;
    let url = world.sim.url().to_string();
    let addons = world.addon_versions();
    let args = [
        "--target",
        "1.31",
        "--addon",
        "coredns=coredns_version",
        "--addon-versions",
        &addons,
        "--pause",
        "0s",
        "--validation-interval",
        "100ms",
        "--expect-cluster",
        &url,
    ];

    // Dry run: the plan, nothing changed.
    let before = world.files();
    let (code, stdout, stderr) = world.eks(&args, &[]).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(world.files(), before, "a dry run changes no file");
    assert_eq!(world.sim.server_version(), V130);
    assert!(
        world
            .node_versions()
            .iter()
            .all(|(_, v, cordoned)| v == V130 && !cordoned)
    );
    world
        .settings()
        .bind(|| insta::assert_snapshot!("plan", stdout));

    // Apply, sampling the web Deployment's availability the whole time.
    let lowest = std::sync::Arc::new(AtomicI64::new(i64::MAX));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (lowest, stop) = (lowest.clone(), stop.clone());
        let store = world.sim.store().clone();
        let deployments = store
            .registry()
            .lookup("apps", "v1", "deployments")
            .unwrap();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(d) = store.get(&deployments, Some("default"), "web") {
                    let available = d["status"]["availableReplicas"].as_i64().unwrap_or(0);
                    lowest.fetch_min(available, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let mut apply = args.to_vec();
    apply.extend(["--apply", "--yes"]);
    let (code, stdout, stderr) = world.eks(&apply, &[]).await;
    stop.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("outcome: completed"), "{stdout}");
    assert!(
        stdout.contains("post-checks: the cluster is healthy"),
        "{stdout}"
    );
    assert_eq!(world.sim.server_version(), "v1.31.0-eks-a737599");
    let nodes = world.node_versions();
    assert!(
        nodes
            .iter()
            .all(|(name, v, _)| name.starts_with("karpenter-") && v == "v1.31.0-eks-a737599"),
        "every node was replaced by one at 1.31: {nodes:?}"
    );
    assert!(
        lowest.load(Ordering::Relaxed) >= 1,
        "the PodDisruptionBudget kept web available throughout"
    );
    assert_eq!(world.available("web"), 2);
    let tfvars = std::fs::read_to_string(world.tfvars()).unwrap();
    assert!(tfvars.contains("cluster_version = \"1.31\""), "{tfvars}");
    assert!(
        tfvars.contains("coredns_version = \"v1.11.3-eksbuild.1\""),
        "{tfvars}"
    );
    assert!(
        tfvars.contains("# last bumped by the platform team"),
        "comments survive the edit: {tfvars}"
    );
    // Seed 004's status ConfigMap: the control plane, each node and each add-on, and no
    // way back (without the EKS cluster's name the control plane cannot be rolled back).
    let status = world
        .sim
        .get("v1", "ConfigMap", Some("kube-system"), "upgrade-status")
        .unwrap()["data"]["status"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        status.contains("- Control Plane: 1.30 → 1.31 (complete)")
            && status.contains("- Node node-1: 1.30 → 1.31 (complete)")
            && status.contains("- eks (coredns_version): → v1.11.3-eksbuild.1 (complete)")
            && status.contains("- Nodes (3 planned): 1.30 → 1.31 (complete)")
            && status.contains("completed: every step applied and verified")
            && status.contains("Rollback Available: No (eks/control-plane-1.31 cannot be undone: EKS rolls a control plane back from 1.31 only through its API, and the EKS cluster name is unknown"),
        "{status}"
    );
    world
        .settings()
        .bind(|| insta::assert_snapshot!("applied", stdout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_after_the_control_plane_rolls_back_to_it_and_stops_there() {
    let world = World::new(2, Nodes::SelfManaged).await;
    let url = world.sim.url().to_string();
    // The site's command cannot retire nodes: the rollout stops after draining the canary.
    let (code, stdout, stderr) = world
        .eks(
            &[
                "--target",
                "1.31",
                "--retire-command",
                "false {node}",
                "--pause",
                "0s",
                "--validation-interval",
                "100ms",
                "--expect-cluster",
                &url,
                "--apply",
                "--yes",
            ],
            &[],
        )
        .await;
    // Exit 5: the run failed and stopped with a recorded way back (the control plane stays).
    assert_eq!(code, 5, "{stdout}{stderr}");
    assert!(stdout.contains("[rolled-back] eks/nodes-1.31"), "{stdout}");
    assert!(
        stdout.contains("rollback stopped at eks/control-plane-1.31"),
        "the control plane cannot go back, and the report says so: {stdout}"
    );
    // The nodes are back as they were: none replaced, none left cordoned.
    assert_eq!(
        world.node_versions(),
        vec![
            ("node-1".to_string(), V130.to_string(), false),
            ("node-2".to_string(), V130.to_string(), false)
        ]
    );
    world
        .wait("web back to 2 available", || async {
            world.available("web") == 2
        })
        .await;
    // EKS keeps the new control plane.
    assert_eq!(world.sim.server_version(), "v1.31.0-eks-a737599");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_managed_node_group_follows_in_terraform() {
    let world = World::new(1, Nodes::Managed).await;
    let url = world.sim.url().to_string();
    let (code, stdout, stderr) = world
        .eks(
            &[
                "--target",
                "1.31",
                "--nodes",
                "managed",
                "--expect-cluster",
                &url,
                "--apply",
                "--yes",
            ],
            &[],
        )
        .await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("nodes: replace 0 node(s) below 1.31: none"),
        "the rollout leaves the node group's nodes to its update: {stdout}"
    );
    assert!(
        stdout.contains(
            "left to their managed node group's own version update: node-1 (managed node group default)"
        ),
        "{stdout}"
    );
    assert_eq!(world.sim.server_version(), "v1.31.0-eks-a737599");
    let state = std::fs::read_to_string(world.dir.join("terraform.tfstate")).unwrap();
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    let group = state["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "aws_eks_node_group")
        .unwrap();
    assert_eq!(group["instances"][0]["attributes"]["version"], "1.31");
    // The simulated node group rolled its node, as EKS's managed node group update does.
    assert_eq!(
        world.node_versions(),
        vec![(
            "default-1-31-1".to_string(),
            "v1.31.0-eks-a737599".to_string(),
            false
        )]
    );
    assert_eq!(world.available("web"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terraform_apply_that_outlives_its_timeout_is_stopped() {
    let world = World::new(1, Nodes::Managed).await;
    // The control-plane update takes far longer than the Terraform timeout allows.
    world
        .sim
        .set_control_plane_update_time(Duration::from_secs(600));
    let url = world.sim.url().to_string();
    let (code, stdout, stderr) = world
        .eks(
            &[
                "--target",
                "1.31",
                "--nodes",
                "managed",
                "--terraform-timeout",
                "3s",
                "--expect-cluster",
                &url,
                "--apply",
                "--yes",
            ],
            &[],
        )
        .await;
    // Stopped at the limit; a control-plane update cannot be undone (EKS carries on with
    // it server-side), so the run ends with the recorded way back, not "rolled back".
    assert_eq!(code, 5, "{stdout}{stderr}");
    assert!(
        stdout.contains("terraform apply") && stdout.contains("timed out after 3s and was stopped"),
        "{stdout}"
    );
    assert!(stdout.contains("cannot be undone"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machine_readable_output_is_the_whole_of_stdout() {
    // A pipeline parses stdout: with --output json or junit nothing else may be on it, the
    // post-checks of a completed hop included.
    for output in ["json", "junit"] {
        let world = World::new(1, Nodes::Managed).await;
        let url = world.sim.url().to_string();
        let (code, stdout, stderr) = world
            .eks(
                &[
                    "--target",
                    "1.31",
                    "--nodes",
                    "managed",
                    "--expect-cluster",
                    &url,
                    "--apply",
                    "--yes",
                    "--output",
                    output,
                ],
                &[],
            )
            .await;
        assert_eq!(code, 0, "{output}: {stdout}{stderr}");
        if output == "json" {
            let report: serde_json::Value = serde_json::from_str(&stdout)
                .unwrap_or_else(|e| panic!("stdout is one JSON document ({e}): {stdout}"));
            assert!(
                report["outcome"]
                    .as_str()
                    .is_some_and(|o| o.starts_with("completed")),
                "{stdout}"
            );
            assert_eq!(report["post_checks"], serde_json::json!([]), "{stdout}");
        } else {
            assert!(stdout.starts_with("<?xml "), "{stdout}");
            assert!(stdout.ends_with("</testsuite>\n"), "{stdout}");
            assert_eq!(stdout.matches("<testsuite ").count(), 1, "{stdout}");
            assert!(
                stdout.contains(
                    "<testcase classname=\"post-checks\" name=\"post-checks\"></testcase>"
                ),
                "{stdout}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_nothing_replaces_block_the_hop_and_nothing_changes() {
    // A managed node group rolled by the rollout (--nodes rollout), but no commands given:
    // Karpenter must not drain and delete its node (the group would bring one back at 1.30).
    let world = World::new(1, Nodes::Managed).await;
    let url = world.sim.url().to_string();
    let before = world.files();
    let (code, stdout, stderr) = world
        .eks(
            &[
                "--target",
                "1.31",
                "--expect-cluster",
                &url,
                "--apply",
                "--yes",
            ],
            &[],
        )
        .await;
    assert_eq!(code, 4, "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "BLOCKER: node-1 (managed node group default) is below 1.31 and nothing replaces it"
        ) && stdout.contains("update the node group's version"),
        "{stdout}"
    );
    assert_eq!(world.files(), before);
    assert_eq!(world.sim.server_version(), V130);
    assert_eq!(
        world.node_versions(),
        vec![("node-1".to_string(), V130.to_string(), false)],
        "the node is untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_addon_newer_than_the_targets_default_is_never_moved_down() {
    let world = World::new(1, Nodes::Karpenter).await;
    // coredns already runs v1.11.4, which runs on 1.31 but is not its default (v1.11.3).
    let tfvars = std::fs::read_to_string(world.tfvars())
        .unwrap()
        .replace("v1.11.1-eksbuild.9", "v1.11.4-eksbuild.2");
    std::fs::write(world.tfvars(), tfvars).unwrap();
    world
        .terraform(&["apply", "-auto-approve", "-input=false"])
        .await;
    let url = world.sim.url().to_string();
    let addons = world.addon_versions();
    let (code, stdout, stderr) = world
        .eks(
            &[
                "--target",
                "1.31",
                "--addon",
                "coredns=coredns_version",
                "--addon-versions",
                &addons,
                "--expect-cluster",
                &url,
            ],
            &[],
        )
        .await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("add-on coredns stays at v1.11.4-eksbuild.2 (newer than the default for 1.31 (v1.11.3-eksbuild.1) and runs on it: kept, never downgraded)"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terraform_folder_of_another_cluster_is_refused_before_any_plan() {
    // This world's Terraform created its cluster; the context points at another one.
    let world = World::new(1, Nodes::Karpenter).await;
    let other = SimCluster::builder()
        .server_version(V130)
        .controllers(ControllerConfig::fast())
        .kubeconfig_path(world.ctx.root().join("other-kubeconfig.yaml"))
        .start()
        .await
        .unwrap();
    let before = world.files();
    let url = other.url().to_string();
    let (code, stdout, stderr) = world
        .eks_on(
            other.kubeconfig_path(),
            &[
                "--target",
                "1.31",
                "--expect-cluster",
                &url,
                "--apply",
                "--yes",
            ],
            &[],
        )
        .await;
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("--terraform-dir:")
            && stderr.contains("manages another cluster than the connected")
            && stderr.contains(world.sim.url()),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert_eq!(world.files(), before, "tfvars and state untouched");
    assert_eq!(other.server_version(), V130);
    assert_eq!(world.sim.server_version(), V130);
    assert!(!world.ctx.work().join(".upgrade/journal.jsonl").exists());
}

/// What is wrong, the arguments, extra environment, and the fix the error must name.
type Case<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_exits_2_and_changes_nothing() {
    let world = World::new(1, Nodes::Karpenter).await;
    let url = world.sim.url().to_string();
    let before = world.files();
    let unchanged = |what: &str| {
        assert_eq!(world.files(), before, "{what}: tfvars and state untouched");
        assert_eq!(
            world.sim.server_version(),
            V130,
            "{what}: control plane untouched"
        );
        assert_eq!(
            world.node_versions(),
            vec![("node-1".into(), V130.into(), false)]
        );
    };
    let apply = ["--expect-cluster", url.as_str(), "--apply", "--yes"];
    let cases: Vec<Case> = vec![
        (
            "not a minor",
            vec!["--target", "1.x"],
            vec![],
            "give a Kubernetes minor such as 1.31",
        ),
        (
            "already there",
            vec!["--target", "1.30"],
            vec![],
            "already runs 1.30",
        ),
        (
            "wrong cluster",
            vec![
                "--target",
                "1.31",
                "--expect-cluster",
                "prod-cluster",
                "--apply",
                "--yes",
            ],
            vec![],
            "prod-cluster",
        ),
        (
            "missing terraform",
            vec!["--target", "1.31"],
            vec![("TERRAFORM_BIN", "/nonexistent/terraform")],
            "terraform",
        ),
        (
            "unknown variable",
            vec!["--target", "1.31", "--cluster-version-var", "k8s_version"],
            vec![],
            "no string variable `k8s_version`",
        ),
        (
            "retire without {node}",
            vec!["--target", "1.31", "--retire-command", "true"],
            vec![],
            "put {node} where",
        ),
        (
            "addon without versions",
            vec!["--target", "1.31", "--addon", "coredns=coredns_version"],
            vec![("PATH", "/usr/bin:/bin")],
            "give --addon-versions",
        ),
    ];
    for (what, args, env, hint) in cases {
        let mut all = args.clone();
        if !all.contains(&"--apply") {
            all.extend(apply);
        }
        let (code, stdout, stderr) = world.eks(&all, &env).await;
        assert_eq!(code, 2, "{what}: {stdout}{stderr}");
        // The cluster interlock adds its fix on a `hint:` line.
        let lines = stderr
            .trim_end()
            .lines()
            .filter(|l| !l.starts_with("hint: "));
        assert_eq!(lines.count(), 1, "{what}: one line: {stderr}");
        assert!(stderr.starts_with("error: "), "{what}: {stderr}");
        assert!(
            stderr.contains(hint),
            "{what}: names the fix ({hint}): {stderr}"
        );
        unchanged(what);
    }

    // An unreadable lockfile (a folder) and a malformed tfvars file.
    std::fs::write(world.tfvars(), "cluster_version = \"1.30\n").unwrap();
    let broken = world.files();
    let (code, _, stderr) = world
        .eks(
            &[
                "--target",
                "1.31",
                "--expect-cluster",
                &url,
                "--apply",
                "--yes",
            ],
            &[],
        )
        .await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("terraform.tfvars"), "{stderr}");
    assert_eq!(
        world.files(),
        broken,
        "the malformed file is left for the user"
    );
    assert_eq!(world.sim.server_version(), V130);
}

/// An ERROR upgrade-readiness insight read from the simulated EKS API through the real AWS
/// CLI blocks the hop before anything changes, naming the insight, what to do and who still
/// calls the API; EKS itself refuses the update the same way when the insights are skipped;
/// `--force` goes past it for this update only, recorded in the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_insight_blocks_the_hop_until_forced() {
    let world = World::new(1, Nodes::Managed).await;
    world.sim.set_eks(serde_json::json!({"insights": [
        {"id": "apis-131", "name": "Deprecated APIs removed in Kubernetes v1.31",
         "category": "UPGRADE_READINESS", "kubernetesVersion": "1.31",
         "lastRefreshTime": 1_600_000_000,
         "insightStatus": {"status": "ERROR", "reason": "Deprecated API usage detected within last 30 days."},
         "recommendation": "Update manifests and API clients to use newer Kubernetes APIs if applicable before upgrading to Kubernetes v1.31.",
         "categorySpecificSummary": {"deprecationDetails": [{
             "usage": "/apis/flowcontrol.apiserver.k8s.io/v1beta3/flowschemas",
             "replacedWith": "/apis/flowcontrol.apiserver.k8s.io/v1/flowschemas",
             "stopServingVersion": "1.32",
             "clientStats": [{"userAgent": "argo-cd-application-controller", "numberOfRequestsLast30Days": 731}]}]}},
        {"id": "kubelet-skew", "name": "Kubelet version skew", "category": "UPGRADE_READINESS",
         "kubernetesVersion": "1.31", "lastRefreshTime": 1_600_000_000,
         "insightStatus": {"status": "WARNING", "reason": "Node kubelet versions could not be determined."}}
    ]}));
    let url = world.sim.url().to_string();
    let endpoint = world.sim.eks_endpoint();
    let aws = AWS_TEST_ENV;
    let hop = |extra: &[&str]| {
        let mut args: Vec<String> = [
            "--target",
            "1.31",
            "--nodes",
            "managed",
            "--expect-cluster",
            &url,
            "--eks-cluster",
            "mlops-platform-dev",
            "--aws-region",
            "us-east-1",
            "--aws-endpoint-url",
            &endpoint,
        ]
        .map(str::to_string)
        .to_vec();
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    };
    let before = world.files();
    let args = hop(&["--apply", "--yes"]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = world.eks(&refs, &aws).await;
    assert_eq!(code, 4, "{stdout}{stderr}");
    for expected in [
        "EKS Upgrade Insights for 1.31 on mlops-platform-dev: 2 read, 0 passing",
        "EKS insight \"Deprecated APIs removed in Kubernetes v1.31\" (apis-131) is ERROR for 1.31: Deprecated API usage detected within last 30 days.",
        "/apis/flowcontrol.apiserver.k8s.io/v1beta3/flowschemas -> /apis/flowcontrol.apiserver.k8s.io/v1/flowschemas, not served from 1.32, still called by argo-cd-application-controller (731 request(s) in 30 days)",
        "EKS refuses UpdateClusterVersion (InvalidStateException) until it passes",
        "EKS insight \"Kubelet version skew\" (kubelet-skew) is WARNING for 1.31",
    ] {
        assert!(stdout.contains(expected), "{expected} missing:\n{stdout}");
    }
    assert_eq!(world.files(), before, "blocked: nothing changed");
    assert_eq!(world.sim.server_version(), V130);
    // The stale insights (refreshed long ago) were refreshed before they were read.
    let state = reqwest_free_get(&format!("{url}/kube-sim/v1/eks"));
    assert!(state.contains("\"lastRefreshTime\""), "{state}");

    // Skipped, the hop runs into EKS's own refusal, through Terraform, and rolls back.
    let args = hop(&["--skip-insights", "--apply", "--yes"]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = world.eks(&refs, &aws).await;
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        format!("{stdout}{stderr}").contains("InvalidStateException: Amazon EKS detected upgrade readiness issues: Deprecated APIs removed in Kubernetes v1.31"),
        "{stdout}{stderr}"
    );
    assert!(
        stdout.contains("rolled back 1 step(s)") && !stdout.contains("rollback stopped"),
        "EKS changed nothing, so the control-plane step's file is put back: {stdout}"
    );
    assert_eq!(world.files().0, before.0, "the tfvars are back");
    assert_eq!(world.sim.server_version(), V130);

    // Forced: past the insight, for this update only.
    let args = hop(&["--force", "--apply", "--yes"]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = world.eks(&refs, &aws).await;
    assert!(code == 0 || code == 3, "{stdout}{stderr}");
    assert!(
        stdout.contains("(forced past it: `force` is set"),
        "{stdout}"
    );
    assert_eq!(world.sim.server_version(), "v1.31.0-eks-a737599");
    let tfvars = std::fs::read_to_string(world.tfvars()).unwrap();
    assert!(
        tfvars.contains("force_update_version = \"false\""),
        "off again after the hop: {tfvars}"
    );
    let runs = std::fs::read_dir(world.ctx.work().join(".upgrade/runs")).unwrap();
    let forced = runs
        .map(|r| std::fs::read_to_string(r.unwrap().path()).unwrap())
        .any(|record| record.contains("\"force\": true") || record.contains("\"force\":true"));
    assert!(forced, "the run records that it forced the update");
}

/// A GET without an HTTP client crate: `curl`-free, through the AWS-less std library.
pub(crate) fn reqwest_free_get(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(stream, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// Within EKS's 7-day window the control-plane step is undone: `upgrade-rollback` (with the
/// real AWS CLI against the simulated EKS API) moves the managed node group back first, then
/// rolls the control plane back to 1.30, and puts the tfvars back; past the window EKS refuses
/// and the rollback stops there with the recorded way back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_inside_the_window_brings_the_control_plane_back() {
    let world = World::new(1, Nodes::Managed).await;
    // vpc-cni is an EKS managed add-on (not in the tfvars), with a configuration of its own.
    world.sim.set_eks(serde_json::json!({
        "addons": {"vpc-cni": {"addonVersion": "v1.19.0-eksbuild.1",
                               "configurationValues": "{\"env\":{\"WARM_IP_TARGET\":\"5\"}}"}},
        "addonVersions": [{"addonName": "vpc-cni", "addonVersions": [
            {"addonVersion": "v1.20.1-eksbuild.3", "compatibilities": [
                {"clusterVersion": "1.31", "defaultVersion": true},
                {"clusterVersion": "1.30", "defaultVersion": true}]},
            {"addonVersion": "v1.19.0-eksbuild.1", "compatibilities": [
                {"clusterVersion": "1.30", "defaultVersion": false}]}]}]
    }));
    let url = world.sim.url().to_string();
    let endpoint = world.sim.eks_endpoint();
    let aws = AWS_TEST_ENV;
    let before = world.files();
    let (code, stdout, stderr) = world
        .eks(
            &[
                "--target",
                "1.31",
                "--nodes",
                "managed",
                "--expect-cluster",
                &url,
                "--eks-cluster",
                "mlops-platform-dev",
                "--aws-region",
                "us-east-1",
                "--aws-endpoint-url",
                &endpoint,
                "--managed-addon",
                "vpc-cni",
                "--apply",
                "--yes",
            ],
            &aws,
        )
        .await;
    assert!(code == 0 || code == 3, "{stdout}{stderr}");
    assert!(
        stdout.contains("control plane reversible with EKS's version rollback of mlops-platform-dev for 7 days after the update"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "managed add-on vpc-cni v1.19.0-eksbuild.1 -> v1.20.1-eksbuild.3 (the default for 1.31"
        ),
        "{stdout}"
    );
    let addon = |state: &str| -> serde_json::Value {
        let body = state.split("\r\n\r\n").nth(1).unwrap_or_default();
        serde_json::from_str::<serde_json::Value>(body).unwrap()["addons"]["vpc-cni"].clone()
    };
    let moved = addon(&reqwest_free_get(&format!("{url}/kube-sim/v1/eks")));
    assert_eq!(moved["addonVersion"], "v1.20.1-eksbuild.3");
    assert_eq!(
        moved["configurationValues"], "{\"env\":{\"WARM_IP_TARGET\":\"5\"}}",
        "kept"
    );
    let run = stdout
        .lines()
        .find_map(|l| l.strip_prefix("run: "))
        .unwrap()
        .to_string();
    assert_eq!(world.sim.server_version(), "v1.31.0-eks-a737599");
    assert_eq!(world.node_versions()[0].1, "v1.31.0-eks-a737599");
    let status = world
        .sim
        .get("v1", "ConfigMap", Some("kube-system"), "upgrade-status")
        .unwrap()["data"]["status"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        status.contains("- Control Plane: 1.30 → 1.31 (complete)")
            && status.contains("Rollback Available: Yes"),
        "with the EKS cluster named, the control plane can go back: {status}"
    );

    let rollback = |run: String| {
        let mut cmd = ProcessBuilder::new(env!("CARGO_BIN_EXE_upgrade-rollback"));
        world.ctx.apply_env(&mut cmd);
        cmd.arg("--kubeconfig")
            .arg(world.sim.kubeconfig_path())
            .args([
                "--kube-context",
                kube_sim::CONTEXT_NAME,
                "--expect-cluster",
                &url,
            ])
            .arg("--snapshot-dir")
            .arg(world.ctx.work().join(".upgrade"))
            .args(["--run", &run, "--apply", "--yes"])
            .env("TF_CLI_CONFIG_FILE", &world.rc)
            .env("UPGRADE_SIM_KUBE_URL", world.sim.url())
            .timeout(Duration::from_secs(240));
        for (k, v) in aws {
            cmd.env(k, v);
        }
        async move { upgrade_test::CommandOutput::run_async(&cmd).await.parts() }
    };

    // Past the window (the upgrade finished 8 days ago), EKS refuses: the rollback stops at
    // the control plane with the way back recorded.
    let eight_days_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - 8 * 24 * 3600;
    world
        .sim
        .set_eks(serde_json::json!({"lastUpgrade": {"at": eight_days_ago, "version": "1.31"}}));
    let (code, stdout, stderr) = rollback(run.clone()).await;
    assert_eq!(code, 5, "{stdout}{stderr}");
    assert!(
        format!("{stdout}{stderr}").contains("Version rollback window has expired"),
        "{stdout}{stderr}"
    );
    assert_eq!(world.sim.server_version(), "v1.31.0-eks-a737599");

    // Inside the window: back to 1.30, the node group first.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    world
        .sim
        .set_eks(serde_json::json!({"lastUpgrade": {"at": now - 3600, "version": "1.31"}}));
    let (code, stdout, stderr) = rollback(run).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(world.sim.server_version(), "v1.30.0-eks-a737599");
    let nodes = world.node_versions();
    assert!(
        nodes.iter().all(|(_, v, _)| v.starts_with("v1.30.")),
        "the node group went back first: {nodes:?}"
    );
    assert_eq!(world.files().0, before.0, "the tfvars are back at 1.30");
    let eks_state = reqwest_free_get(&format!("{url}/kube-sim/v1/eks"));
    assert!(eks_state.contains("VersionRollback"), "{eks_state}");
    // The managed add-on is back at its version and configuration before.
    let back = addon(&eks_state);
    assert_eq!(back["addonVersion"], "v1.19.0-eksbuild.1");
    assert_eq!(
        back["configurationValues"],
        "{\"env\":{\"WARM_IP_TARGET\":\"5\"}}"
    );
}

/// `--target 1.33` on a 1.30 cluster: every hop in one run. EKS refuses the second hop's
/// update (an ERROR insight the plan did not read: `--skip-insights`), so the run stops at
/// that hop with the first one done and recorded; once the insight passes, `--resume`
/// continues at the failed hop and finishes at 1.33.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_hop_run_stops_at_the_failed_hop_and_resumes_there() {
    let world = World::new(1, Nodes::Managed).await;
    world.sim.set_eks(serde_json::json!({"insights": [
        {"id": "apis-132", "name": "Deprecated APIs removed in Kubernetes v1.32",
         "category": "UPGRADE_READINESS", "kubernetesVersion": "1.32",
         "insightStatus": {"status": "ERROR", "reason": "flowcontrol v1beta3 in use"}}
    ]}));
    let url = world.sim.url().to_string();
    let endpoint = world.sim.eks_endpoint();
    let aws = AWS_TEST_ENV;
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "--target",
            "1.33",
            "--nodes",
            "managed",
            "--expect-cluster",
            &url,
            "--eks-cluster",
            "mlops-platform-dev",
            "--aws-region",
            "us-east-1",
            "--aws-endpoint-url",
            &endpoint,
            "--skip-insights",
            "--apply",
            "--yes",
        ]
        .map(str::to_string)
        .to_vec();
        a.extend(extra.iter().map(|e| e.to_string()));
        a
    };
    let first = args(&[]);
    let refs: Vec<&str> = first.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = world.eks(&refs, &aws).await;
    assert_eq!(code, 5, "{stdout}{stderr}");
    for expected in [
        "3 hops in one run: 1.30 -> 1.31 -> 1.32 -> 1.33",
        "hop 1.31 -> 1.32:",
        "[verified] eks/control-plane-1.31",
        "[verified] eks/wait-control-plane-1.31",
        "failed at eks/control-plane-1.32",
    ] {
        assert!(stdout.contains(expected), "{expected} missing:\n{stdout}");
    }
    assert!(
        format!("{stdout}{stderr}").contains("InvalidStateException"),
        "{stdout}{stderr}"
    );
    assert_eq!(
        world.sim.server_version(),
        "v1.31.0-eks-a737599",
        "hop 1 done, kept"
    );

    // The insight passes now; the run resumes at the failed hop.
    world.sim.set_eks(serde_json::json!({"insights": []}));
    let again = args(&["--resume"]);
    let refs: Vec<&str> = again.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = world.eks(&refs, &aws).await;
    assert!(code == 0 || code == 3, "{stdout}{stderr}");
    assert_eq!(world.sim.server_version(), "v1.33.0-eks-a737599");
    assert!(
        world
            .node_versions()
            .iter()
            .all(|(_, v, _)| v.starts_with("v1.33.")),
        "{:?}",
        world.node_versions()
    );
    let tfvars = std::fs::read_to_string(world.tfvars()).unwrap();
    assert!(tfvars.contains("cluster_version = \"1.33\""), "{tfvars}");
}

/// 1.30 → 1.34 in one run, killed (SIGKILL, no chance to clean up) at the boundary between
/// the first and the second hop, then resumed with `--resume`: it repeats nothing done and
/// finishes at 1.34 with the managed node group's node at 1.34.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_to_1_34_killed_at_a_hop_boundary_resumes_and_finishes() {
    let world = World::new(1, Nodes::Managed).await;
    let url = world.sim.url().to_string();
    let endpoint = world.sim.eks_endpoint();
    let args: Vec<String> = [
        "--target",
        "1.34",
        "--nodes",
        "managed",
        "--expect-cluster",
        &url,
        "--eks-cluster",
        "mlops-platform-dev",
        "--aws-region",
        "us-east-1",
        "--aws-endpoint-url",
        &endpoint,
        "--apply",
        "--yes",
    ]
    .map(str::to_string)
    .to_vec();
    let state = world.ctx.work().join(".upgrade");
    // The same command line and environment as `World::eks`, as a child we can kill. The
    // runner has no "hand me the child" API on purpose, and its stop is graceful (SIGINT,
    // then a kill of the whole group after a grace period); a crash is one SIGKILL to the
    // command alone, at a moment the test picks, so std's Command is used here.
    #[allow(clippy::disallowed_methods)]
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_upgrade-eks"));
    let mut runner = ProcessBuilder::new(env!("CARGO_BIN_EXE_upgrade-eks"));
    world.ctx.apply_env(&mut runner);
    for (key, value) in runner.get_envs() {
        match value {
            Some(v) => cmd.env(key, v),
            None => cmd.env_remove(key),
        };
    }
    cmd.arg("--kubeconfig")
        .arg(world.sim.kubeconfig_path())
        .args(["--kube-context", kube_sim::CONTEXT_NAME, "--terraform-dir"])
        .arg(&world.dir)
        .arg("--snapshot-dir")
        .arg(&state)
        .args(&args)
        .env("TF_CLI_CONFIG_FILE", &world.rc)
        .env("UPGRADE_SIM_KUBE_URL", world.sim.url())
        .envs(AWS_TEST_ENV)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    // The boundary: the first hop's last step verified.
    let journal = state.join("journal.jsonl");
    let boundary = || {
        std::fs::read_to_string(&journal).is_ok_and(|text| {
            text.lines().any(|l| {
                l.contains("\"event\":\"verified\"") && l.contains("\"step\":\"eks/nodes-1.31\"")
            })
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while !boundary() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before the first hop's boundary"
        );
        assert!(std::time::Instant::now() < deadline, "no hop boundary");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let version = world.sim.server_version();
    assert!(
        version.starts_with("v1.31.") || version.starts_with("v1.32."),
        "killed between the hops: {version}"
    );

    // Without --resume nothing new starts; with it, the run finishes.
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let aws = AWS_TEST_ENV;
    // (refused by the unfinished run in the journal, or by its upgrade lease)
    let (code, stdout, stderr) = world.eks(&refs, &aws).await;
    assert_eq!(code, 2, "{stdout}{stderr}");
    let mut resumed = refs.clone();
    resumed.push("--resume");
    // The killed run's upgrade lease frees itself at its expiry (a minute): until then the
    // resume is refused naming it, as it must be (the holder could be alive elsewhere).
    let deadline = std::time::Instant::now() + Duration::from_secs(150);
    let (code, stdout, stderr) = loop {
        let (code, stdout, stderr) = world.eks(&resumed, &aws).await;
        if code == 2 && stderr.contains("upgrade lock") && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_secs(5)).await;
            continue;
        }
        break (code, stdout, stderr);
    };
    assert!(code == 0 || code == 3, "{stdout}{stderr}");
    assert!(
        stdout.contains("4 hops in one run: 1.30 -> 1.31 -> 1.32 -> 1.33 -> 1.34"),
        "{stdout}"
    );
    assert_eq!(world.sim.server_version(), "v1.34.0-eks-a737599");
    assert!(
        world
            .node_versions()
            .iter()
            .all(|(_, v, _)| v.starts_with("v1.34.")),
        "{:?}",
        world.node_versions()
    );
}

//! `upgrade-map-apis`: a release record written by an older Helm, whose stored manifest names
//! `policy/v1beta1` (removed in 1.25), on a 1.30 cluster, in both storage drivers: planned,
//! rewritten, read back by the real helm, each run under its own id, and undone by
//! `upgrade-rollback`. (The upstream suite does the same with pluto's real Helm 3 Secrets.)

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, PostParams};
use upgrade_core::ProcessBuilder;
use upgrade_helm_storage::codec::encode_release;
use upgrade_test::TestContext;

use crate::support::{V130, sim};

const MANIFEST: &str = "---\n# Source: web/templates/pdb.yaml\napiVersion: policy/v1beta1\nkind: PodDisruptionBudget\nmetadata:\n  name: web\nspec:\n  minAvailable: 1\n  selector:\n    matchLabels: {app: web}\n---\n# Source: web/templates/svc.yaml\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports: [{port: 80}]\n";

/// A revision-1 record of release `web` in `namespace`, as Helm 3 writes it.
fn record(namespace: &str) -> String {
    let json = serde_json::json!({
        "name": "web", "namespace": namespace, "version": 1,
        "info": {"first_deployed": "2022-05-01T10:00:00Z", "last_deployed": "2022-05-01T10:00:00Z",
                 "deleted": "", "description": "Install complete", "status": "deployed"},
        "chart": {"metadata": {"apiVersion": "v2", "name": "web", "version": "1.0.0", "appVersion": "1.0"},
                  "templates": [{"name": "templates/pdb.yaml", "data": "YXBpVmVyc2lvbjogcG9saWN5L3YxYmV0YTE="}],
                  "values": {"replicas": 2}},
        "config": {"replicas": 3},
        "manifest": MANIFEST,
    });
    encode_release(&serde_json::to_vec(&json).unwrap())
}

fn labels() -> std::collections::BTreeMap<String, String> {
    [
        ("owner", "helm"),
        ("name", "web"),
        ("status", "deployed"),
        ("version", "1"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_removed_api_is_mapped_read_by_helm_and_rolled_back() {
    let ctx = TestContext::new();
    let sim = sim(&ctx, V130).await;
    sim.load_yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: web}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: web-cm}\n")
        .unwrap();
    let client = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(sim.kubeconfig_path()).unwrap(),
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .unwrap(),
    )
    .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "web");
    let mut secret = Secret::default();
    secret.metadata.name = Some("sh.helm.release.v1.web.v1".into());
    secret.metadata.labels = Some(labels());
    secret.type_ = Some("helm.sh/release.v1".into());
    let payload = record("web");
    secret.data = Some(
        [(
            "release".to_string(),
            ByteString(payload.clone().into_bytes()),
        )]
        .into(),
    );
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "web-cm");
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("sh.helm.release.v1.web.v1".into());
    cm.metadata.labels = Some(labels());
    let cm_payload = record("web-cm");
    cm.data = Some([("release".to_string(), cm_payload.clone())].into());
    configmaps
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();

    let state = ctx.work().join("state");
    let run = |exe: &str, args: &[&str]| {
        let mut cmd = ProcessBuilder::new(exe);
        ctx.apply_env(&mut cmd);
        cmd.arg("--kubeconfig")
            .arg(sim.kubeconfig_path())
            .args([
                "--kube-context",
                kube_sim::CONTEXT_NAME,
                "--expect-cluster",
                sim.url(),
            ])
            .arg("--snapshot-dir")
            .arg(&state)
            .args(args);
        upgrade_test::CommandOutput::run(&cmd).parts()
    };
    let map_apis = env!("CARGO_BIN_EXE_upgrade-map-apis");
    let helm_manifest = |driver: &str, ns: &str| {
        let mut cmd = ProcessBuilder::new(ctx.require_tool("helm"));
        ctx.apply_env(&mut cmd);
        cmd.env("HELM_DRIVER", driver)
            .args(["get", "manifest", "web", "-n", ns, "--kubeconfig"])
            .arg(sim.kubeconfig_path())
            .args(["--kube-context", kube_sim::CONTEXT_NAME]);
        let (code, stdout, stderr) = upgrade_test::CommandOutput::run(&cmd).parts();
        assert_eq!(code, 0, "{stdout}{stderr}");
        stdout
    };
    assert_eq!(helm_manifest("secret", "web"), format!("{MANIFEST}\n"));

    // Bad input changes nothing: a target older than the cluster, a release Helm does not know.
    let (code, _, stderr) = run(
        map_apis,
        &["--release", "web", "-n", "web", "--target", "1.29"],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--target: 1.29 is older than the cluster's 1.30"),
        "{stderr}"
    );
    let (code, _, stderr) = run(
        map_apis,
        &["--release", "api", "-n", "web", "--target", "1.30"],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("Helm keeps no record of release api in namespace web"),
        "{stderr}"
    );

    // The plan; then both drivers rewritten, each run with its own id.
    let (code, stdout, stderr) = run(
        map_apis,
        &["--release", "web", "-n", "web", "--target", "1.30"],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("PodDisruptionBudget web: policy/v1beta1 -> policy/v1"),
        "{stdout}"
    );
    let mut runs = Vec::new();
    for ns in ["web", "web-cm"] {
        let (code, stdout, stderr) = run(
            map_apis,
            &[
                "--release",
                "web",
                "-n",
                ns,
                "--target",
                "1.30",
                "--apply",
                "--yes",
            ],
        );
        assert_eq!(code, 0, "{stdout}{stderr}");
        assert!(stdout.contains("completed"), "{stdout}");
        runs.push(
            stdout
                .lines()
                .find_map(|l| l.strip_prefix("run: "))
                .unwrap()
                .to_string(),
        );
    }
    assert_ne!(
        runs[0], runs[1],
        "two runs within a second get their own ids"
    );
    let expected = format!(
        "{}\n",
        MANIFEST.replace("apiVersion: policy/v1beta1", "apiVersion: policy/v1")
    );
    assert_eq!(helm_manifest("secret", "web"), expected);
    assert_eq!(helm_manifest("configmap", "web-cm"), expected);
    // The rest of the record is untouched: the values Helm reads back are the same.
    let stored = secrets.get("sh.helm.release.v1.web.v1").await.unwrap();
    let text = String::from_utf8(stored.data.unwrap()["release"].0.clone()).unwrap();
    let json: serde_json::Value = serde_json::from_slice(
        &upgrade_helm_storage::codec::decode_payload("web", text.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(json["config"], serde_json::json!({"replicas": 3}));
    assert_eq!(json["chart"]["templates"][0]["name"], "templates/pdb.yaml");

    // Undone from the records: both payloads back exactly.
    let rollback = env!("CARGO_BIN_EXE_upgrade-rollback");
    for id in &runs {
        let (code, stdout, stderr) = run(rollback, &["--run", id, "--apply", "--yes"]);
        assert_eq!(code, 0, "{stdout}{stderr}");
    }
    let back = secrets.get("sh.helm.release.v1.web.v1").await.unwrap();
    assert!(back.data.unwrap()["release"].0 == payload.into_bytes());
    let back = configmaps.get("sh.helm.release.v1.web.v1").await.unwrap();
    assert_eq!(back.data.unwrap()["release"], cm_payload);
    assert_eq!(helm_manifest("secret", "web"), format!("{MANIFEST}\n"));
    sim.shutdown().await;
}

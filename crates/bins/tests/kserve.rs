//! `upgrade-kserve upgrade` end to end: the real binary and the real helm against kube-sim,
//! with the fixture charts (kserve 0.14.1 → 0.15.0) and an InferenceService that a failed
//! upgrade must give back.

use std::path::PathBuf;
use std::time::Duration;

use kube_sim::{ControllerConfig, SimCluster};
use upgrade_core::ProcessBuilder;
use upgrade_helm::{ChartRef, Helm, ReleaseRef, UpgradeOptions, WaitMode};
use upgrade_test::TestContext;

const ISVC: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: mlops}
---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: sklearn-iris, namespace: mlops}
spec: {predictor: {model: {modelFormat: {name: sklearn}, storageUri: "s3://models/iris/v1"}}}
"#;

fn chart(version: &str) -> String {
    let dir = TestContext::fixtures_dir()
        .join("charts/kserve")
        .join(version);
    dir.to_string_lossy().into_owned()
}

fn values() -> String {
    let file = TestContext::fixtures_dir().join("helm-values/kserve-values.yaml");
    file.to_string_lossy().into_owned()
}

struct Platform {
    ctx: TestContext,
    sim: SimCluster,
    helm: Helm,
}

impl Platform {
    /// kube-sim with kserve 0.14.1 (and its InferenceService CRD) and one InferenceService.
    async fn start() -> Platform {
        let ctx = TestContext::new();
        let sim = SimCluster::builder()
            .controllers(ControllerConfig::fast())
            .kubeconfig_path(ctx.root().join("kubeconfig.yaml"))
            .start()
            .await
            .expect("kube-sim starts");
        sim.add_node("node-a", "v1.30.4-eks-a737599").unwrap();
        let home = ctx.home();
        let helm = Helm::builder()
            .program(ctx.require_tool("helm"))
            .env("HOME", home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .kubeconfig(sim.kubeconfig_path())
            .context(kube_sim::CONTEXT_NAME)
            .build()
            .unwrap();
        helm.upgrade(
            &release(),
            &ChartRef::path(chart("0.14.1")).with_version("0.14.1"),
            &UpgradeOptions {
                create_namespace: true,
                values_files: vec![PathBuf::from(values())],
                wait: WaitMode::Ready,
                timeout: Duration::from_secs(60),
                ..UpgradeOptions::default()
            },
        )
        .await
        .expect("kserve 0.14.1 installs");
        sim.load_yaml(ISVC)
            .expect("the InferenceService is created");
        Platform { ctx, sim, helm }
    }

    async fn chart_version(&self) -> String {
        self.helm.metadata(&release(), None).await.unwrap().version
    }

    fn isvc_storage_uri(&self) -> Option<String> {
        self.sim
            .get(
                "serving.kserve.io/v1beta1",
                "InferenceService",
                Some("mlops"),
                "sklearn-iris",
            )
            .ok()
            .map(|o| o["spec"]["predictor"]["model"]["storageUri"].to_string())
    }

    fn command(&self, args: &[&str]) -> ProcessBuilder {
        let mut cmd = ProcessBuilder::new(env!("CARGO_BIN_EXE_upgrade-kserve"));
        self.ctx.apply_env(&mut cmd);
        cmd.cwd(self.ctx.work())
            .arg("--kubeconfig")
            .arg(self.sim.kubeconfig_path())
            .args(["--kube-context", kube_sim::CONTEXT_NAME])
            .args(args);
        cmd
    }

    /// Runs upgrade-kserve; (code, stdout, stderr).
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.command(args).output().expect("upgrade-kserve runs");
        (
            out.status.code().unwrap_or(-1),
            out.stdout_lossy(),
            out.stderr_lossy(),
        )
    }
}

fn release() -> ReleaseRef {
    ReleaseRef::new("kserve", "kserve")
}

#[test]
fn help_is_stable() {
    let ctx = TestContext::new();
    for (name, args) in [
        ("top", vec!["--help"]),
        ("upgrade", vec!["upgrade", "--help"]),
    ] {
        let mut cmd = ProcessBuilder::new(env!("CARGO_BIN_EXE_upgrade-kserve"));
        ctx.apply_env(&mut cmd);
        let out = cmd.args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        insta::assert_snapshot!(format!("help_{name}"), out.stdout_lossy());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_upgrade_gives_the_inference_services_back_then_the_upgrade_succeeds() {
    let p = Platform::start().await;
    let url = p.sim.url().to_string();
    let (chart_015, values) = (chart("0.15.0"), values());
    let before = p.isvc_storage_uri().expect("the InferenceService exists");

    // Plan only.
    let (code, stdout, stderr) = p.run(&[
        "upgrade",
        "--chart",
        &chart_015,
        "--version",
        "0.15.0",
        "--values",
        &values,
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("kserve/kserve: chart 0.14.1 (app v0.14.1, revision 1, deployed) -> 0.15.0 (app v0.15.0)"),
        "{stdout}"
    );
    assert!(stdout.contains("kserve/backup: back up InferenceService, ServingRuntime"));
    assert_eq!(p.chart_version().await, "0.14.1");

    // A failing upgrade (pods never Ready) during which the InferenceService disappears, as a
    // broken controller upgrade can make happen: the run rolls back and re-applies the backup.
    let broken = p.ctx.work().join("never-ready.yaml");
    std::fs::write(
        &broken,
        "podAnnotations:\n  kube-sim.dev/never-ready: \"true\"\n",
    )
    .unwrap();
    let broken = broken.to_string_lossy().into_owned();
    let failing = p.command(&[
        "upgrade",
        "--chart",
        &chart_015,
        "--version",
        "0.15.0",
        "--values",
        &broken,
        "--apply",
        "--yes",
        "--expect-cluster",
        &url,
        "--timeout",
        "4s",
    ]);
    let run = tokio::spawn(async move { failing.output_async().await });
    let journal = p.ctx.work().join(".upgrade/journal.jsonl");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&journal).unwrap_or_default();
        if text.contains("kserve/helm-upgrade") && text.contains("snapshot") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run never reached the upgrade: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let isvcs = kube_sim_isvc_api(&p).await;
    isvcs
        .delete("sklearn-iris", &Default::default())
        .await
        .expect("the InferenceService is deleted mid-upgrade");
    assert_eq!(p.isvc_storage_uri(), None);
    let out = run.await.unwrap().unwrap();
    let stdout = out.stdout_lossy();
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", out.stderr_lossy());
    assert!(stdout.contains("[rolled-back] kserve/backup"), "{stdout}");
    assert_eq!(
        p.isvc_storage_uri(),
        Some(before.clone()),
        "restored from the backup"
    );
    assert_eq!(p.chart_version().await, "0.14.1");

    // The real upgrade.
    let (code, stdout, stderr) = p.run(&[
        "upgrade",
        "--chart",
        &chart_015,
        "--version",
        "0.15.0",
        "--values",
        &values,
        "--apply",
        "--yes",
        "--expect-cluster",
        &url,
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let mut settings = p.ctx.insta_settings();
    settings.add_filter(r"kserve-\d{8}T\d{6}Z", "[RUN_ID]");
    settings.add_filter(&url.replace('.', r"\."), "[CLUSTER]");
    settings.bind(|| insta::assert_snapshot!("applied", stdout));
    assert_eq!(p.chart_version().await, "0.15.0");
    assert_eq!(p.isvc_storage_uri(), Some(before));
}

async fn kube_sim_isvc_api(p: &Platform) -> kube::Api<kube::api::DynamicObject> {
    let client = p.sim.client().unwrap();
    let resource = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("serving.kserve.io", "v1beta1", "InferenceService"),
        "inferenceservices",
    );
    kube::Api::namespaced_with(client, "mlops", &resource)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_exits_2_and_changes_nothing() {
    let p = Platform::start().await;
    let url = p.sim.url().to_string();
    let chart_015 = chart("0.15.0");
    let malformed = p.ctx.work().join("kserve-values.yaml");
    std::fs::write(&malformed, "controller: {image: tag: v0.15.0\n").unwrap();
    let malformed = malformed.to_string_lossy().into_owned();
    let values = values();
    for (args, expected) in [
        (
            vec![
                "upgrade",
                "--chart",
                &chart_015,
                "--version",
                "0.15.0",
                "--values",
                &malformed,
                "--apply",
                "--yes",
                "--expect-cluster",
                &url,
            ],
            "is not valid YAML",
        ),
        (
            vec![
                "upgrade",
                "--chart",
                &chart_015,
                "--version",
                "0.15.0",
                "--values",
                &values,
                "--apply",
                "--yes",
                "--expect-cluster",
                "prod-cluster",
            ],
            "--expect-cluster",
        ),
        (
            vec![
                "upgrade",
                "--chart",
                "kserve",
                "--version",
                "0.15.0",
                "--values",
                &values,
            ],
            "--chart kserve",
        ),
    ] {
        let (code, stdout, stderr) = p.run(&args);
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(p.chart_version().await, "0.14.1");
        assert!(p.isvc_storage_uri().is_some());
        assert!(!p.ctx.work().join(".upgrade").exists());
    }
}

//! `upgrade-kserve upgrade` end to end: the real binary and the real helm against kube-sim,
//! with the fixture charts (kserve 0.14.1 → 0.15.0) and an InferenceService that a failed
//! upgrade must give back.

use std::path::PathBuf;
use std::time::Duration;

use kube_sim::SimCluster;
use upgrade_core::ProcessBuilder;
use upgrade_helm::{Helm, ReleaseRef};
use upgrade_test::TestContext;

use crate::support;

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

fn fixture_values() -> String {
    let file = TestContext::fixtures_dir().join("helm-values/kserve-values.yaml");
    file.to_string_lossy().into_owned()
}

/// A copy of the fixture values file in `ctx`'s work folder: an applied upgrade pins the
/// image tag in it.
fn values_in(ctx: &TestContext) -> String {
    let copy = ctx.work().join("pinned-kserve-values.yaml");
    if !copy.exists() {
        std::fs::copy(fixture_values(), &copy).unwrap();
    }
    copy.to_string_lossy().into_owned()
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
        let sim = support::sim(&ctx, support::V130).await;
        let helm = support::helm(&ctx, &sim);
        support::install(&helm, &release(), "kserve", "0.14.1", &fixture_values()).await;
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
        upgrade_test::CommandOutput::run(&self.command(args)).parts()
    }
}

fn release() -> ReleaseRef {
    ReleaseRef::new("kserve", "kserve")
}

#[test]
fn help_is_stable() {
    for (name, args) in [
        ("top", vec![]),
        ("upgrade", vec!["upgrade"]),
        ("canary", vec!["canary"]),
    ] {
        let help = support::help(env!("CARGO_BIN_EXE_upgrade-kserve"), &args);
        insta::assert_snapshot!(format!("help_{name}"), help);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_upgrade_gives_the_inference_services_back_then_the_upgrade_succeeds() {
    let p = Platform::start().await;
    // KServe's controller reports every InferenceService Ready, restored ones included.
    report_ready(kube_sim_isvc_api(&p).await);
    let url = p.sim.url().to_string();
    let (chart_015, values) = (chart("0.15.0"), values_in(&p.ctx));
    let before = p.isvc_storage_uri().expect("the InferenceService exists");

    // Plan only.
    let (code, stdout, stderr) = p.run(&[
        "upgrade",
        "--chart",
        &chart_015,
        "--chart-version",
        "0.15.0",
        "--image-tag",
        "v0.15.0",
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
        "--chart-version",
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
        "--chart-version",
        "0.15.0",
        "--image-tag",
        "v0.15.0",
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inference_service_that_never_reports_ready_rolls_the_upgrade_back() {
    // No KServe controller reconciles the InferenceService: it never gets a status.
    let p = Platform::start().await;
    let url = p.sim.url().to_string();
    let (code, stdout, stderr) = p.run(&[
        "upgrade",
        "--chart",
        &chart("0.15.0"),
        "--chart-version",
        "0.15.0",
        "--image-tag",
        "v0.15.0",
        "--values",
        &values_in(&p.ctx),
        "--apply",
        "--yes",
        "--expect-cluster",
        &url,
        "--timeout",
        "3s",
    ]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains("InferenceService mlops/sklearn-iris: no Ready condition yet"),
        "{stdout}"
    );
    assert!(
        stdout.contains("[rolled-back] kserve/helm-upgrade"),
        "{stdout}"
    );
    assert_eq!(p.chart_version().await, "0.14.1");
}

/// Plays KServe's controller for the upgrade tests: every InferenceService without a Ready
/// condition gets one, through the status subresource, as the real controller writes it.
fn report_ready(api: kube::Api<kube::api::DynamicObject>) {
    tokio::spawn(async move {
        loop {
            for isvc in api
                .list(&Default::default())
                .await
                .into_iter()
                .flat_map(|l| l.items)
            {
                let reported = isvc.data["status"]["conditions"]
                    .as_array()
                    .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready"));
                if !reported {
                    let status = serde_json::json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
                    let _ = api
                        .patch_status(
                            isvc.metadata.name.as_deref().unwrap_or_default(),
                            &Default::default(),
                            &kube::api::Patch::Merge(&status),
                        )
                        .await;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
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
    let values = values_in(&p.ctx);
    for (args, expected) in [
        (
            vec![
                "upgrade",
                "--chart",
                &chart_015,
                "--chart-version",
                "0.15.0",
                "--image-tag",
                "v0.15.0",
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
                "--chart-version",
                "0.15.0",
                "--image-tag",
                "v0.15.0",
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
                "--chart-version",
                "0.15.0",
                "--image-tag",
                "v0.15.0",
                "--values",
                &values,
            ],
            "--chart: invalid chart reference `kserve`",
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

// ---- upgrade-kserve canary -------------------------------------------------------------

const CANARY_ISVC: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: inferenceservices.serving.kserve.io}
spec:
  group: serving.kserve.io
  scope: Namespaced
  names: {kind: InferenceService, plural: inferenceservices, singular: inferenceservice}
  versions:
    - name: v1beta1
      served: true
      storage: true
      subresources: {status: {}}
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
---
apiVersion: v1
kind: Namespace
metadata: {name: mlops}
---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: iris, namespace: mlops}
spec: {predictor: {model: {modelFormat: {name: sklearn}, storageUri: "s3://models/iris/v1"}}}
"#;

const STABLE: &str = "iris-predictor-00001";
const CANARY: &str = "iris-predictor-00002";

/// kube-sim has no KServe controller: this plays its part, writing the status KServe would
/// for every new generation (observed, Ready, the canary and stable revisions).
fn fake_kserve_controller(api: kube::Api<kube::api::DynamicObject>) {
    tokio::spawn(async move {
        loop {
            if let Ok(obj) = api.get("iris").await {
                let generation = obj.metadata.generation.unwrap_or(1);
                if obj.data["status"]["observedGeneration"].as_i64() != Some(generation) {
                    let uri = obj.data["spec"]["predictor"]["model"]["storageUri"]
                        .as_str()
                        .unwrap_or_default();
                    let created = if uri.ends_with("/v1") { STABLE } else { CANARY };
                    let status = serde_json::json!({"status": {
                        "observedGeneration": generation,
                        "conditions": [{"type": "Ready", "status": "True"}],
                        "components": {"predictor": {
                            "latestCreatedRevision": created,
                            "latestRolledoutRevision": STABLE,
                        }},
                    }});
                    let _ = api
                        .patch_status(
                            "iris",
                            &Default::default(),
                            &kube::api::Patch::Merge(&status),
                        )
                        .await;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

/// Request counters per revision, as a Knative queue-proxy exports them; the test sets how
/// many of the canary's requests fail.
#[derive(Clone, Default)]
struct Traffic(std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<(String, String), u64>>>);

impl Traffic {
    fn render(&self) -> String {
        let counts = self.0.lock().unwrap();
        let mut out = String::from("# TYPE revision_app_request_count counter\n");
        for ((rev, class), n) in counts.iter() {
            out.push_str(&format!(
                "revision_app_request_count{{namespace=\"mlops\",revision_name=\"{rev}\",response_code_class=\"{class}\"}} {n}\n"
            ));
        }
        out.push_str("# TYPE revision_app_request_latencies histogram\n");
        for rev in [STABLE, CANARY] {
            let n: u64 = counts
                .iter()
                .filter(|((r, _), _)| r == rev)
                .map(|(_, n)| n)
                .sum();
            let labels = format!("namespace=\"mlops\",revision_name=\"{rev}\"");
            // Every request takes 20 ms.
            for (le, count) in [("10", 0), ("25", n), ("+Inf", n)] {
                out.push_str(&format!(
                    "revision_app_request_latencies_bucket{{{labels},le=\"{le}\"}} {count}\n"
                ));
            }
            out.push_str(&format!(
                "revision_app_request_latencies_sum{{{labels}}} {}\nrevision_app_request_latencies_count{{{labels}}} {n}\n",
                n * 20
            ));
        }
        out
    }

    /// Adds 50 requests per revision every 100 ms, `canary_errors` of the canary's failing.
    fn generate(&self, canary_errors: std::sync::Arc<std::sync::atomic::AtomicU64>) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                {
                    let errors = canary_errors.load(std::sync::atomic::Ordering::Relaxed);
                    let mut counts = this.0.lock().unwrap();
                    *counts.entry((STABLE.into(), "2xx".into())).or_default() += 50;
                    *counts.entry((CANARY.into(), "2xx".into())).or_default() += 50 - errors;
                    *counts.entry((CANARY.into(), "5xx".into())).or_default() += errors;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }

    /// Serves `/metrics` on a free port; returns its address.
    async fn serve(&self) -> std::net::SocketAddr {
        let this = self.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let body = this.render();
                async move { body }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    }
}

/// The real Prometheus (Debian's, installed by `./dev tools`) scraping `target` every second;
/// stopped when dropped.
struct PrometheusServer {
    url: String,
    stop: upgrade_core::process::StopSignal,
    thread: Option<std::thread::JoinHandle<()>>,
    _data: tempfile::TempDir,
}

impl PrometheusServer {
    async fn start(ctx: &TestContext, target: std::net::SocketAddr) -> PrometheusServer {
        let program = PathBuf::from("/usr/bin/prometheus");
        assert!(
            program.is_file(),
            "the canary test needs Prometheus at /usr/bin/prometheus: run `./dev tools` (it installs Debian's prometheus)"
        );
        let data = tempfile::tempdir().unwrap();
        let config = data.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n  - job_name: fake-kserve\n    static_configs: [{{targets: ['{target}']}}]\n"
            ),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let stop = upgrade_core::process::StopSignal::new();
        let mut cmd = ProcessBuilder::new(program);
        ctx.apply_env(&mut cmd);
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                data.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stop_signal(stop.clone())
            .timeout(Duration::from_secs(600))
            .grace_period(Duration::from_secs(5));
        let thread = std::thread::spawn(move || {
            let _ = cmd.output();
        });
        let url = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !prometheus_ready(&url).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "Prometheus did not answer at {url} within 60s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        PrometheusServer {
            url,
            stop,
            thread: Some(thread),
            _data: data,
        }
    }

    /// Waits until the canary's error rate over the last 4 s is `wanted` (as Prometheus says).
    async fn wait_for_canary_error_rate(&self, wanted: f64) {
        let prom = upgrade_verify::Prometheus::new(&self.url, Duration::from_secs(5)).unwrap();
        let query = format!(
            r#"sum(rate(revision_app_request_count{{revision_name="{CANARY}",response_code_class="5xx"}}[4s])) / sum(rate(revision_app_request_count{{revision_name="{CANARY}"}}[4s]))"#
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
        loop {
            if let Ok(Some(rate)) = prom.query(&query).await
                && (rate - wanted).abs() < 0.01
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "Prometheus never saw a canary error rate of {wanted}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

async fn prometheus_ready(url: &str) -> bool {
    let prom = upgrade_verify::Prometheus::new(url, Duration::from_secs(2)).unwrap();
    prom.query("vector(1)").await.is_ok()
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_canary_is_promoted_and_an_erroring_one_goes_back_to_the_stable_model() {
    let ctx = TestContext::new();
    let sim = SimCluster::builder()
        .kubeconfig_path(ctx.root().join("kubeconfig.yaml"))
        .start()
        .await
        .expect("kube-sim starts");
    sim.load_yaml(CANARY_ISVC).unwrap();
    let api: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
        sim.client().unwrap(),
        "mlops",
        &upgrade_verify::canary::inference_service_resource(),
    );
    fake_kserve_controller(api.clone());
    let traffic = Traffic::default();
    let canary_errors = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    traffic.generate(canary_errors.clone());
    let prometheus = PrometheusServer::start(&ctx, traffic.serve().await).await;
    prometheus.wait_for_canary_error_rate(0.0).await;

    let url = sim.url().to_string();
    let canary = |storage_uri: &str, apply: bool| {
        let mut cmd = ProcessBuilder::new(env!("CARGO_BIN_EXE_upgrade-kserve"));
        ctx.apply_env(&mut cmd);
        cmd.cwd(ctx.work())
            .arg("--kubeconfig")
            .arg(sim.kubeconfig_path())
            .args(["--kube-context", kube_sim::CONTEXT_NAME])
            .args(["canary", "--isvc", "iris", "--namespace", "mlops"])
            .args(["--storage-uri", storage_uri, "--steps", "10,50,100"])
            .args(["--prometheus", &prometheus.url, "--window", "4s"])
            .args(["--step-wait", "300ms", "--ready-timeout", "5s"]);
        if apply {
            cmd.args(["--apply", "--yes", "--expect-cluster", &url]);
        }
        upgrade_test::CommandOutput::run(&cmd).parts()
    };
    let predictor = || async {
        let isvc = api.get("iris").await.unwrap();
        isvc.data["spec"]["predictor"].clone()
    };
    let model = |uri: &str| serde_json::json!({"model": {"modelFormat": {"name": "sklearn"}, "storageUri": uri}});

    // Plan only: nothing changes.
    let (code, stdout, stderr) = canary("s3://models/iris/v2", false);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("mlops/iris: storageUri s3://models/iris/v1 -> s3://models/iris/v2 as a canary at 10% -> 50% -> 100%, then promoted"),
        "{stdout}"
    );
    assert_eq!(predictor().await, model("s3://models/iris/v1"));

    // A healthy canary: promoted.
    let (code, stdout, stderr) = canary("s3://models/iris/v2", true);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let mut settings = ctx.insta_settings();
    settings.add_filter(r"kserve-canary-\d{8}T\d{6}Z", "[RUN_ID]");
    settings.add_filter(&url.replace('.', r"\."), "[CLUSTER]");
    settings.add_filter(&prometheus.url.replace('.', r"\."), "[PROMETHEUS]");
    settings.bind(|| insta::assert_snapshot!("canary_promoted", stdout));
    assert_eq!(predictor().await, model("s3://models/iris/v2"));

    // The next canary errors on one request in five: it fails its first step and the
    // InferenceService goes back to the model it served.
    canary_errors.store(10, std::sync::atomic::Ordering::Relaxed);
    prometheus.wait_for_canary_error_rate(0.2).await;
    let (code, stdout, stderr) = canary("s3://models/iris/v3", true);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains("failed at mlops/iris/canary-10 (canary at 10% failed its analysis: kserve-error-rate: 0.2"),
        "{stdout}"
    );
    assert!(
        stdout.contains("[rolled-back] mlops/iris/canary-10"),
        "{stdout}"
    );
    assert_eq!(predictor().await, model("s3://models/iris/v2"));

    // upgrade-rollback rebuilds the canary's steps from its record: the promotion cannot be
    // undone, so a rollback of the promoted run stops there (exit 5: the way back is a new
    // canary) and changes nothing.
    let mut runs: Vec<String> = std::fs::read_dir(ctx.work().join(".upgrade/runs"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .replace(".json", "")
        })
        .collect();
    runs.sort();
    assert_eq!(runs.len(), 2, "{runs:?}");
    for apply in [false, true] {
        let mut cmd = ProcessBuilder::new(env!("CARGO_BIN_EXE_upgrade-rollback"));
        ctx.apply_env(&mut cmd);
        cmd.cwd(ctx.work())
            .arg("--kubeconfig")
            .arg(sim.kubeconfig_path())
            .args(["--kube-context", kube_sim::CONTEXT_NAME, "--run", &runs[0]]);
        if apply {
            cmd.args(["--apply", "--yes", "--expect-cluster", &url]);
        }
        let out = cmd.output().unwrap();
        let stdout = out.stdout_lossy();
        assert_eq!(
            out.status.code(),
            Some(if apply { 5 } else { 0 }),
            "{stdout}{}",
            out.stderr_lossy()
        );
        assert!(
            stdout.contains("mlops/iris/canary-promote cannot be undone"),
            "{stdout}"
        );
        if apply {
            assert!(
                stdout.contains("then stopped at mlops/iris/canary-promote"),
                "{stdout}"
            );
        }
        assert_eq!(predictor().await, model("s3://models/iris/v2"));
    }

    // Bad input: exit 2, nothing changed.
    for (storage_uri, steps, expected) in [
        (
            "s3://models/iris/v2",
            "10,50,100",
            "already serves s3://models/iris/v2",
        ),
        (
            "s3://models/iris/v4",
            "50,10",
            "must be increasing percentages",
        ),
    ] {
        let mut cmd = ProcessBuilder::new(env!("CARGO_BIN_EXE_upgrade-kserve"));
        ctx.apply_env(&mut cmd);
        cmd.cwd(ctx.work())
            .arg("--kubeconfig")
            .arg(sim.kubeconfig_path())
            .args(["--kube-context", kube_sim::CONTEXT_NAME])
            .args(["canary", "--isvc", "iris", "--storage-uri", storage_uri])
            .args(["--steps", steps, "--prometheus", &prometheus.url])
            .args(["--apply", "--yes", "--expect-cluster", &url]);
        let out = cmd.output().unwrap();
        let stderr = out.stderr_lossy();
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert_eq!(predictor().await, model("s3://models/iris/v2"));
    }
}

/// Copies a fixture chart into `dir`, its version spelled with a leading `v` as KServe's
/// charts until 0.16 do (`version: v0.15.2`).
fn v_spelled_chart(dir: &std::path::Path, version: &str) -> PathBuf {
    fn copy(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }
    let to = dir.join(format!("kserve-v{version}"));
    copy(std::path::Path::new(&chart(version)), &to);
    let chart_yaml = to.join("Chart.yaml");
    let text = std::fs::read_to_string(&chart_yaml).unwrap();
    std::fs::write(
        &chart_yaml,
        text.replace(
            &format!("version: {version}"),
            &format!("version: v{version}"),
        ),
    )
    .unwrap();
    to
}

/// Chart versions with a leading `v` (KServe's real charts until 0.16): both spellings of
/// `--chart-version` plan and run, the report and the verification compare versions, not
/// spellings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_versions_with_a_leading_v_are_accepted_in_both_spellings() {
    let ctx = TestContext::new();
    let sim = support::sim(&ctx, support::V130).await;
    let helm = support::helm(&ctx, &sim);
    let old = v_spelled_chart(ctx.work(), "0.14.1");
    let new = v_spelled_chart(ctx.work(), "0.15.0");
    helm.upgrade(
        &release(),
        &upgrade_helm::ChartRef::path(&old),
        &upgrade_helm::UpgradeOptions {
            create_namespace: true,
            values_files: vec![PathBuf::from(fixture_values())],
            timeout: Duration::from_secs(60),
            ..upgrade_helm::UpgradeOptions::default()
        },
    )
    .await
    .expect("the v-spelled chart installs");
    sim.load_yaml(ISVC).unwrap();
    let p = Platform { ctx, sim, helm };
    report_ready(kube_sim_isvc_api(&p).await);
    let url = p.sim.url().to_string();
    let new = new.to_string_lossy().into_owned();
    let values = values_in(&p.ctx);
    for spelled in ["v0.15.0", "0.15.0"] {
        let (code, stdout, stderr) = p.run(&[
            "upgrade",
            "--chart",
            &new,
            "--chart-version",
            spelled,
            "--image-tag",
            "v0.15.0",
            "--values",
            &values,
        ]);
        assert_eq!(code, 0, "{spelled}: {stdout}{stderr}");
        assert!(
            stdout.contains("chart v0.14.1") && stdout.contains("0.15.0 (app v0.15.0)"),
            "{spelled}: {stdout}"
        );
    }
    let (code, stdout, stderr) = p.run(&[
        "upgrade",
        "--chart",
        &new,
        "--chart-version",
        "0.15.0",
        "--image-tag",
        "v0.15.0",
        "--values",
        &values,
        "--expect-cluster",
        &url,
        "--apply",
        "--yes",
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("outcome: completed"), "{stdout}");
    assert_eq!(p.chart_version().await, "v0.15.0");
}

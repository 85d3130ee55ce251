//! Helm 3 and Helm 4, default flags, against the simulator: install (with a CRD under crds/
//! and a custom resource), upgrade with a pre-upgrade hook Job and --wait, history, status,
//! rollback, uninstall.

use kube_sim::SimCluster;
use serde_json::Value;
use upgrade_test::TestContext;

use crate::support::{deployment_available, ok, start};

fn image(sim: &SimCluster) -> String {
    let d = sim
        .get("apps/v1", "Deployment", Some("default"), "smoke")
        .expect("deployment");
    d["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn widget_crd_exists(sim: &SimCluster) -> bool {
    sim.get(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        None,
        "widgets.sim.example.com",
    )
    .is_ok()
}

fn release_secrets(sim: &SimCluster) -> Vec<String> {
    sim.list("v1", "Secret", Some("default"))
        .iter()
        .filter(|s| s["metadata"]["labels"]["owner"] == "helm")
        .map(|s| {
            s["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// Whether a Job named `name` reached the Complete condition at some point.
fn job_completed(sim: &SimCluster, name: &str) -> bool {
    let (events, _) = sim.store().events_since("batch/jobs", 0).expect("history");
    events.iter().any(|e| {
        e.object["metadata"]["name"] == name
            && e.object["status"]["conditions"]
                .as_array()
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Complete" && c["status"] == "True")
                })
    })
}

async fn lifecycle(tool: &str) {
    let ctx = TestContext::new();
    let sim = start(&["node-a", "node-b"]).await;
    let chart = TestContext::fixtures_dir().join("charts/sim-smoke");
    let chart = chart.to_str().expect("utf-8 path");

    let out = ok(
        &ctx,
        &sim,
        tool,
        &["install", "smoke", chart, "--wait", "--timeout", "60s"],
    )
    .await;
    assert!(out.contains("STATUS: deployed"), "{out}");
    deployment_available(&sim, "default", "smoke", 2).await;
    assert!(widget_crd_exists(&sim));
    let widget = sim
        .get(
            "sim.example.com/v1",
            "Widget",
            Some("default"),
            "smoke-model",
        )
        .expect("the custom resource was created");
    assert_eq!(widget["spec"]["model"], "demo");
    assert_eq!(image(&sim), "registry.example/sim-smoke:1.0.0");
    assert!(
        !job_completed(&sim, "smoke-pre-upgrade"),
        "the pre-upgrade hook must not run on install"
    );

    let out = ok(
        &ctx,
        &sim,
        tool,
        &[
            "upgrade",
            "smoke",
            chart,
            "--wait",
            "--timeout",
            "60s",
            "--set",
            "image.tag=1.1.0",
            "--set",
            "message=bye",
        ],
    )
    .await;
    assert!(out.contains("REVISION: 2"), "{out}");
    assert!(
        job_completed(&sim, "smoke-pre-upgrade"),
        "the pre-upgrade hook Job ran to completion"
    );
    assert!(
        sim.get("batch/v1", "Job", Some("default"), "smoke-pre-upgrade")
            .is_err(),
        "hook-succeeded deletes the hook Job"
    );
    // --wait returned, so the new ReplicaSet's pods are the available ones.
    let d = deployment_available(&sim, "default", "smoke", 2).await;
    assert_eq!(
        d["status"]["observedGeneration"],
        d["metadata"]["generation"]
    );
    assert_eq!(image(&sim), "registry.example/sim-smoke:1.1.0");
    let cm = sim
        .get("v1", "ConfigMap", Some("default"), "smoke-config")
        .expect("configmap");
    assert_eq!(cm["data"]["message"], "bye");
    let running: Vec<Value> = sim
        .list("v1", "Pod", Some("default"))
        .into_iter()
        .filter(|p| p["status"]["phase"] == "Running")
        .collect();
    assert!(
        running
            .iter()
            .filter(|p| p["spec"]["containers"][0]["image"] == "registry.example/sim-smoke:1.1.0")
            .count()
            >= 2
    );

    let history = ok(&ctx, &sim, tool, &["history", "smoke"]).await;
    assert!(
        history.contains("superseded")
            && history.contains("Install complete")
            && history.contains("Upgrade complete"),
        "{history}"
    );
    let status = ok(&ctx, &sim, tool, &["status", "smoke"]).await;
    assert!(
        status.contains("STATUS: deployed") && status.contains("REVISION: 2"),
        "{status}"
    );

    ok(
        &ctx,
        &sim,
        tool,
        &["rollback", "smoke", "1", "--wait", "--timeout", "60s"],
    )
    .await;
    assert_eq!(image(&sim), "registry.example/sim-smoke:1.0.0");
    deployment_available(&sim, "default", "smoke", 2).await;
    let history = ok(&ctx, &sim, tool, &["history", "smoke", "-o", "json"]).await;
    let history: Value = serde_json::from_str(&history).expect("history json");
    assert_eq!(history.as_array().map(Vec::len), Some(3), "{history}");
    assert_eq!(history[2]["status"], "deployed");
    assert_eq!(history[2]["description"], "Rollback to 1");
    assert_eq!(release_secrets(&sim).len(), 3);

    let out = ok(&ctx, &sim, tool, &["uninstall", "smoke"]).await;
    assert!(out.contains("uninstalled"), "{out}");
    assert!(
        sim.get("apps/v1", "Deployment", Some("default"), "smoke")
            .is_err()
    );
    assert!(
        sim.get(
            "sim.example.com/v1",
            "Widget",
            Some("default"),
            "smoke-model"
        )
        .is_err()
    );
    assert!(
        release_secrets(&sim).is_empty(),
        "{:?}",
        release_secrets(&sim)
    );
    // Helm never deletes CRDs.
    assert!(widget_crd_exists(&sim));
    // The ReplicaSets and pods went with the Deployment (garbage collection).
    assert!(
        sim.list("apps/v1", "ReplicaSet", Some("default"))
            .is_empty()
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm3_install_upgrade_rollback_uninstall() {
    lifecycle("helm3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm4_install_upgrade_rollback_uninstall() {
    lifecycle("helm4").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_list_reads_generated_releases() {
    let ctx = TestContext::new();
    let sim = start(&[]).await;
    sim.generate(&kube_sim::ScaleSpec {
        nodes: 2,
        pods: 4,
        pods_per_deployment: 2,
        pdbs: 1,
        helm_releases: 2,
        revisions_per_release: 2,
        namespaces: 1,
        ..Default::default()
    })
    .expect("generate");
    let out = ok(&ctx, &sim, "helm4", &["list", "-A", "-o", "json"]).await;
    let list: Value = serde_json::from_str(&out).expect("json");
    let names: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["release-000", "release-001"]);
    assert_eq!(list[0]["revision"], "2");
    assert_eq!(list[0]["status"], "deployed");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm4_upgrade_that_never_gets_ready_times_out_and_rolls_back() {
    let ctx = TestContext::new();
    let sim = start(&["node-a"]).await;
    let chart = TestContext::fixtures_dir().join("charts/sim-smoke");
    let chart = chart.to_str().expect("utf-8 path");
    ok(
        &ctx,
        &sim,
        "helm4",
        &["install", "smoke", chart, "--wait", "--timeout", "60s"],
    )
    .await;
    let failed = crate::support::run(
        &ctx,
        &sim,
        "helm4",
        &[
            "upgrade",
            "smoke",
            chart,
            "--wait",
            "--timeout",
            "3s",
            "--set",
            "image.tag=2.0.0",
            "--set-string",
            r"podAnnotations.kube-sim\.dev/never-ready=true",
        ],
    )
    .await;
    assert!(
        !failed.status.success(),
        "the upgrade must time out: {}",
        failed.stdout_lossy()
    );
    // The old ReplicaSet kept serving: availability never dropped.
    let d = sim
        .get("apps/v1", "Deployment", Some("default"), "smoke")
        .expect("deployment");
    assert_eq!(d["status"]["availableReplicas"], 2);
    // maxSurge 25% of 2 rounds up to one new pod, which never gets Ready; maxUnavailable
    // rounds down to zero, so both old pods keep serving.
    assert_eq!(d["status"]["replicas"], 3);
    assert_eq!(d["status"]["updatedReplicas"], 1);
    let history = ok(&ctx, &sim, "helm4", &["history", "smoke", "-o", "json"]).await;
    let history: Value = serde_json::from_str(&history).expect("json");
    assert_eq!(history[1]["status"], "failed", "{history}");
    ok(
        &ctx,
        &sim,
        "helm4",
        &["rollback", "smoke", "1", "--wait", "--timeout", "60s"],
    )
    .await;
    deployment_available(&sim, "default", "smoke", 2).await;
    assert_eq!(image(&sim), "registry.example/sim-smoke:1.0.0");
    sim.shutdown().await;
}

/// Workloads whose update strategy gives only its type: the API server fills in the rolling
/// update's numbers, and Helm 3's `--wait` reads them (it panicked on a nil `maxUnavailable`
/// before kube-sim defaulted them). Helm 4's legacy waiter reads the same fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_waits_on_workloads_whose_strategy_gives_only_its_type() {
    let ctx = TestContext::new();
    let sim = start(&["node-a"]).await;
    let chart = ctx.work().join("typed-strategy");
    std::fs::create_dir_all(chart.join("templates")).unwrap();
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: typed-strategy\nversion: 0.1.0\n",
    )
    .unwrap();
    let template = |kind: &str, field: &str| {
        format!(
            "apiVersion: apps/v1\nkind: {kind}\nmetadata: {{name: {name}}}\nspec:\n  {field}: {{type: RollingUpdate}}\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      containers: [{{name: c, image: \"nginx:1.27\"}}]\n",
            name = kind.to_lowercase(),
        )
    };
    std::fs::write(
        chart.join("templates/workloads.yaml"),
        [
            template("Deployment", "strategy"),
            template("DaemonSet", "updateStrategy"),
            template("StatefulSet", "updateStrategy"),
        ]
        .join("---\n"),
    )
    .unwrap();
    let chart = chart.to_str().unwrap();
    for (tool, wait) in [("helm3", "--wait"), ("helm4", "--wait=legacy")] {
        let release = format!("typed-{tool}");
        ok(
            &ctx,
            &sim,
            tool,
            &[
                "install",
                &release,
                chart,
                wait,
                "--timeout",
                "60s",
                "-n",
                &release,
                "--create-namespace",
            ],
        )
        .await;
    }
    let deployment = sim
        .get("apps/v1", "Deployment", Some("typed-helm3"), "deployment")
        .unwrap();
    assert_eq!(
        deployment["spec"]["strategy"]["rollingUpdate"],
        serde_json::json!({"maxSurge": "25%", "maxUnavailable": "25%"})
    );
    let daemonset = sim
        .get("apps/v1", "DaemonSet", Some("typed-helm3"), "daemonset")
        .unwrap();
    assert_eq!(
        daemonset["spec"]["updateStrategy"]["rollingUpdate"],
        serde_json::json!({"maxSurge": 0, "maxUnavailable": 1})
    );
    let statefulset = sim
        .get("apps/v1", "StatefulSet", Some("typed-helm3"), "statefulset")
        .unwrap();
    assert_eq!(
        statefulset["spec"]["updateStrategy"]["rollingUpdate"],
        serde_json::json!({"partition": 0})
    );
    sim.shutdown().await;
}

//! The preview against kube-sim: a dry-run server-side apply of each new object names what
//! is added, changed and removed, and what the API server refuses (an immutable selector),
//! and changes nothing.

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use kube_sim::{ControllerConfig, SimCluster};
use serde_json::{Value, json};
use upgrade_kube::preview::{Change, preview};

fn deployment(name: &str, app: &str, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": app}},
                 "template": {"metadata": {"labels": {"app": app}},
                              "spec": {"containers": [{"name": "c", "image": image}]}}}
    })
}

fn config(name: &str, value: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
           "data": {"key": value}})
}

#[tokio::test]
async fn the_preview_names_each_change_and_what_the_server_refuses() {
    let sim = SimCluster::builder()
        .controllers(ControllerConfig::none())
        .start()
        .await
        .expect("kube-sim starts");
    names_each_change(&sim).await;
    sim.shutdown().await;
}

/// The same preview while a third of the dry-run applies fail with a server error or lose
/// their answer: a dry run changes nothing, so it is sent again rather than failing the plan.
#[tokio::test]
async fn the_preview_survives_server_errors_on_its_dry_runs() {
    let sim = SimCluster::builder()
        .controllers(ControllerConfig::none())
        .faults(
            "seed=3,patch:*:503=15%,patch:*:500=10%,patch:*:drop-response=10%"
                .parse()
                .unwrap(),
        )
        .start()
        .await
        .expect("kube-sim starts");
    names_each_change(&sim).await;
    sim.shutdown().await;
}

async fn names_each_change(sim: &SimCluster) {
    let cluster = crate::cluster::connect(sim, Some(sim.url())).await;
    sim.load_yaml("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n")
        .unwrap();
    let current = vec![
        deployment("api", "api", "api:1"),
        deployment("worker", "worker", "worker:1"),
        config("settings", "a"),
        config("legacy", "x"),
    ];
    for object in &current {
        let mut object = object.clone();
        object["metadata"]["namespace"] = json!("web");
        sim.load_yaml(&serde_json::to_string(&object).unwrap())
            .unwrap();
    }
    let rendered = vec![
        deployment("api", "api", "api:2"),
        // A new selector: Deployments refuse it.
        deployment("worker", "worker-v2", "worker:2"),
        config("settings", "a"),
        config("extra", "y"),
    ];
    let changes = preview(&cluster, &rendered, &current, "web").await.unwrap();
    let lines: Vec<String> = changes.iter().map(ToString::to_string).collect();
    assert_eq!(changes.len(), 4, "{lines:#?}");
    assert_eq!(lines[0], "change Deployment web/api (spec.template)");
    assert!(
        matches!(&changes[1].change, Change::Refused(why) if why.contains("field is immutable")),
        "{lines:#?}"
    );
    assert_eq!(lines[2], "add ConfigMap web/extra");
    assert_eq!(lines[3], "remove ConfigMap web/legacy");
    // Nothing changed.
    let deployments: Api<Deployment> = Api::namespaced(cluster.client().clone(), "web");
    let api = deployments.get("api").await.unwrap();
    assert_eq!(
        api.spec.unwrap().template.spec.unwrap().containers[0]
            .image
            .as_deref(),
        Some("api:1")
    );
}

//! kube-rs against the simulator: pagination, watches, optimistic concurrency, CRDs,
//! finalizers, subresources, faults, fixtures and node replacement.

use std::collections::HashSet;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::{WatchStreamExt, watcher};
use kube_sim::{ControllerConfig, FaultConfig, FaultKind, ScaleSpec, SimCluster};
use serde_json::json;

use crate::support::{deployment_available, start, wait_for};

fn api_code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paginated_list_over_ten_thousand_pods() {
    let sim = SimCluster::builder()
        .controllers(ControllerConfig::none())
        .start()
        .await
        .expect("start");
    sim.generate(&ScaleSpec {
        nodes: 20,
        pods: 10_000,
        pods_per_deployment: 50,
        pdbs: 0,
        helm_releases: 0,
        namespaces: 4,
        ..Default::default()
    })
    .expect("generate");
    let pods: Api<Pod> = Api::all(sim.client().expect("client"));
    let mut names = HashSet::new();
    let mut pages = 0;
    let mut params = ListParams::default().limit(700);
    loop {
        let page = pods.list(&params).await.expect("list page");
        pages += 1;
        assert!(page.items.len() <= 700);
        for p in &page.items {
            assert!(
                names.insert(format!(
                    "{}/{}",
                    p.metadata.namespace.as_deref().unwrap_or_default(),
                    p.metadata.name.as_deref().unwrap_or_default()
                )),
                "duplicate across pages"
            );
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    assert_eq!(names.len(), 10_000);
    assert_eq!(pages, 15);
    // Selectors combine with pagination.
    let team = Api::<Pod>::namespaced(sim.client().expect("client"), "team-01");
    let selected = team
        .list(
            &ListParams::default()
                .labels("app in (app-0001,app-0005)")
                .fields("status.phase=Running"),
        )
        .await
        .expect("list");
    assert_eq!(selected.items.len(), 100);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_sees_a_rollout() {
    let sim = start(&["node-a", "node-b"]).await;
    let client = sim.client().expect("client");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let stream = watcher(pods, watcher::Config::default().labels("app=rollout")).applied_objects();
    let collector = tokio::spawn(async move {
        let mut images_ready = Vec::new();
        let mut stream = std::pin::pin!(stream);
        while let Ok(Some(Some(pod))) =
            tokio::time::timeout(Duration::from_secs(20), stream.try_next())
                .await
                .map(|r| r.ok())
        {
            let ready = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            let image = pod
                .spec
                .as_ref()
                .and_then(|s| s.containers[0].image.clone())
                .unwrap_or_default();
            if ready && !images_ready.contains(&image) {
                images_ready.push(image.clone());
            }
            if images_ready.len() == 2 {
                break;
            }
        }
        images_ready
    });
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "rollout"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "rollout"}},
                 "template": {"metadata": {"labels": {"app": "rollout"}}, "spec": {"containers": [{"name": "main", "image": "app:1"}]}}}
    }))
    .expect("deployment");
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create");
    deployment_available(&sim, "default", "rollout", 2).await;
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "app:2"}]}}}});
    deployments
        .patch(
            "rollout",
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await
        .expect("patch");
    let seen = collector.await.expect("collector");
    assert_eq!(
        seen,
        ["app:1", "app:2"],
        "the watcher saw pods of both revisions become ready"
    );
    let d = wait_for("old pods gone", Duration::from_secs(20), || {
        let d = sim
            .get("apps/v1", "Deployment", Some("default"), "rollout")
            .ok()?;
        let pods = sim.list("v1", "Pod", Some("default"));
        (pods.len() == 2
            && pods
                .iter()
                .all(|p| p["spec"]["containers"][0]["image"] == "app:2")
            && d["status"]["availableReplicas"] == 2)
            .then_some(d)
    })
    .await;
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );
    let progressing = d["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "Progressing")
        .cloned()
        .expect("Progressing");
    assert_eq!(progressing["reason"], "NewReplicaSetAvailable");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_update_gets_409_and_status_subresource_is_separate() {
    // No controllers: the Deployment controller would write status itself.
    let sim = SimCluster::builder()
        .controllers(ControllerConfig::none())
        .start()
        .await
        .expect("start");
    let cms: Api<ConfigMap> = Api::namespaced(sim.client().expect("client"), "default");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "c"}, "data": {"k": "1"}})).expect("cm");
    let created = cms
        .create(&PostParams::default(), &cm)
        .await
        .expect("create");
    let mut fresh = created.clone();
    fresh.data = Some([("k".to_string(), "2".to_string())].into());
    let updated = cms
        .replace("c", &PostParams::default(), &fresh)
        .await
        .expect("update with the current version");
    assert_ne!(
        updated.metadata.resource_version,
        created.metadata.resource_version
    );
    let err = cms
        .replace("c", &PostParams::default(), &created)
        .await
        .expect_err("stale resourceVersion");
    assert_eq!(api_code(&err), Some(409));
    let kube::Error::Api(status) = err else {
        unreachable!()
    };
    assert_eq!(status.reason, "Conflict");
    assert!(
        status.message.contains("the object has been modified"),
        "{}",
        status.message
    );
    let err = cms.get("missing").await.expect_err("404");
    assert_eq!(api_code(&err), Some(404));
    let err = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "Bad_Name"}})).expect("cm"),
        )
        .await
        .expect_err("422");
    assert_eq!(api_code(&err), Some(422));

    // Writes to the main resource keep status; /status writes keep spec; scale works.
    let deployments: Api<Deployment> = Api::namespaced(sim.client().expect("client"), "default");
    let d: Deployment = serde_json::from_value(json!({"metadata": {"name": "d"}, "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}},
        "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}, "status": {"replicas": 7}})).expect("d");
    let created = deployments
        .create(&PostParams::default(), &d)
        .await
        .expect("create");
    assert_eq!(created.metadata.generation, Some(1));
    let status = deployments
        .patch_status(
            "d",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"observedGeneration": 1}, "spec": {"replicas": 9}})),
        )
        .await
        .expect("status");
    assert_eq!(status.spec.as_ref().and_then(|s| s.replicas), Some(1));
    let scaled = deployments
        .patch_scale(
            "d",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .expect("scale");
    assert_eq!(scaled.spec.and_then(|s| s.replicas), Some(3));
    let d = deployments.get("d").await.expect("get");
    assert_eq!(d.metadata.generation, Some(2));
    assert_eq!(d.status.and_then(|s| s.observed_generation), Some(1));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crd_kinds_finalizers_and_server_side_apply() {
    let sim = start(&[]).await;
    let client = sim.client().expect("client");
    sim.load_yaml(include_str!(
        "../../../../fixtures/charts/sim-smoke/crds/widgets.yaml"
    ))
    .expect("crd");
    let gvk = GroupVersionKind::gvk("sim.example.com", "v1", "Widget");
    let widgets: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "default", &ApiResource::from_gvk(&gvk));
    let apply = json!({"apiVersion": "sim.example.com/v1", "kind": "Widget", "metadata": {"name": "w", "finalizers": ["sim.example.com/cleanup"]}, "spec": {"model": "a", "replicas": 1}});
    let w = widgets
        .patch("w", &PatchParams::apply("tester"), &Patch::Apply(&apply))
        .await
        .expect("apply creates");
    assert_eq!(w.data["spec"]["model"], "a");
    // Re-applying without `replicas` removes the field this manager owned.
    let apply = json!({"apiVersion": "sim.example.com/v1", "kind": "Widget", "metadata": {"name": "w", "finalizers": ["sim.example.com/cleanup"]}, "spec": {"model": "b"}});
    let w = widgets
        .patch("w", &PatchParams::apply("tester"), &Patch::Apply(&apply))
        .await
        .expect("apply updates");
    assert_eq!(w.data["spec"], json!({"model": "b"}));
    // Custom kinds refuse strategic merge patches, as upstream.
    let err = widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"model": "c"}})),
        )
        .await
        .expect_err("415");
    assert_eq!(api_code(&err), Some(415));
    // A finalizer holds deletion until it is removed.
    widgets
        .delete("w", &DeleteParams::default())
        .await
        .expect("delete");
    let w = widgets.get("w").await.expect("still there");
    assert!(w.metadata.deletion_timestamp.is_some());
    widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .expect("drop finalizer");
    assert_eq!(
        api_code(&widgets.get("w").await.expect_err("gone")),
        Some(404)
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crd_stored_versions_grow_with_the_storage_version_and_guard_their_versions() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let sim = start(&[]).await;
    let crds: Api<CustomResourceDefinition> = Api::all(sim.client().expect("client"));
    let version = |name: &str, storage: bool| {
        json!({"name": name, "served": true, "storage": storage,
               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}})
    };
    let crd = |versions: Vec<serde_json::Value>| {
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
               "metadata": {"name": "gadgets.sim.example.com"},
               "spec": {"group": "sim.example.com", "scope": "Namespaced",
                        "names": {"kind": "Gadget", "plural": "gadgets"}, "versions": versions}})
    };
    let apply = |body: serde_json::Value| {
        let crds = crds.clone();
        async move {
            crds.patch(
                "gadgets.sim.example.com",
                &PatchParams::apply("tester").force(),
                &Patch::Apply(&body),
            )
            .await
        }
    };
    let stored = |crd: CustomResourceDefinition| crd.status.unwrap().stored_versions.unwrap();
    let created = apply(crd(vec![version("v1alpha1", true)]))
        .await
        .expect("create");
    assert_eq!(stored(created), ["v1alpha1"]);
    // A new storage version is added; the old one stays until a migration removes it.
    let updated = apply(crd(vec![version("v1alpha1", false), version("v1", true)]))
        .await
        .expect("add v1");
    assert_eq!(stored(updated), ["v1alpha1", "v1"]);
    let err = apply(crd(vec![version("v1", true)]))
        .await
        .expect_err("v1alpha1 is still stored");
    assert_eq!(api_code(&err), Some(422));
    assert!(
        err.to_string().contains(
            "status.storedVersions[0]: Invalid value: \"v1alpha1\": must appear in spec.versions"
        ),
        "{err}"
    );
    // Once the migration drops it from the status, the version may go.
    crds.patch_status(
        "gadgets.sim.example.com",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"storedVersions": ["v1"]}})),
    )
    .await
    .expect("status");
    let migrated = apply(crd(vec![version("v1", true)]))
        .await
        .expect("drop v1alpha1");
    assert_eq!(stored(migrated), ["v1"]);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults_are_seeded_and_scoped() {
    let sim = start(&[]).await;
    let cms: Api<ConfigMap> = Api::namespaced(sim.client().expect("client"), "default");
    sim.set_faults(
        FaultConfig {
            seed: 1,
            ..Default::default()
        }
        .rule(
            Some("list"),
            Some("configmaps"),
            1.0,
            FaultKind::ServiceUnavailable,
        ),
    );
    assert_eq!(
        api_code(&cms.list(&ListParams::default()).await.expect_err("503")),
        Some(503)
    );
    assert_eq!(
        api_code(&cms.get("nope").await.expect_err("404, not a fault")),
        Some(404)
    );
    sim.set_faults(
        FaultConfig {
            seed: 1,
            ..Default::default()
        }
        .rule(None, Some("configmaps"), 1.0, FaultKind::DropConnection),
    );
    let err = cms.list(&ListParams::default()).await.expect_err("dropped");
    assert_eq!(
        api_code(&err),
        None,
        "a dropped connection is not an API status: {err}"
    );
    sim.set_faults(
        FaultConfig {
            seed: 1,
            ..Default::default()
        }
        .rule(None, None, 1.0, FaultKind::TooManyRequests),
    );
    assert_eq!(
        api_code(&cms.list(&ListParams::default()).await.expect_err("429")),
        Some(429)
    );
    sim.set_faults(FaultConfig {
        latency: Duration::from_millis(300),
        ..Default::default()
    });
    let started = std::time::Instant::now();
    cms.list(&ListParams::default())
        .await
        .expect("slow but fine");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "latency is added"
    );
    sim.set_faults(FaultConfig::default());
    cms.list(&ListParams::default()).await.expect("no faults");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixtures_round_trip_and_node_replacement() {
    let sim = start(&["node-a", "node-b"]).await;
    sim.load_yaml(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: prod}
spec:
  replicas: 2
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers: [{name: api, image: "api:1"}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: api, namespace: prod}
spec:
  maxUnavailable: 1
  selector: {matchLabels: {app: api}}
"#,
    )
    .expect("load");
    deployment_available(&sim, "prod", "api", 2).await;
    sim.replace_node_within(
        "node-a",
        "node-a2",
        "v1.31.2-eks-7f9249a",
        Duration::from_secs(20),
    )
    .await
    .expect("replace node-a");
    assert!(sim.get("v1", "Node", None, "node-a").is_err());
    let node = sim.get("v1", "Node", None, "node-a2").expect("new node");
    assert_eq!(
        node["status"]["nodeInfo"]["kubeletVersion"],
        "v1.31.2-eks-7f9249a"
    );
    assert_eq!(
        node["status"]["nodeInfo"]["kubeProxyVersion"],
        "v1.31.2-eks-7f9249a"
    );
    deployment_available(&sim, "prod", "api", 2).await;
    assert!(
        sim.list("v1", "Pod", Some("prod"))
            .iter()
            .all(|p| p["spec"]["nodeName"] != "node-a")
    );

    let dump = sim.dump_yaml();
    let copy = SimCluster::builder()
        .controllers(ControllerConfig::none())
        .start()
        .await
        .expect("start");
    copy.load_yaml(&dump).expect("load the dump");
    for (api_version, kind) in [
        ("v1", "Node"),
        ("v1", "Pod"),
        ("apps/v1", "Deployment"),
        ("apps/v1", "ReplicaSet"),
        ("policy/v1", "PodDisruptionBudget"),
        ("v1", "Namespace"),
    ] {
        assert_eq!(
            copy.list(api_version, kind, None).len(),
            sim.list(api_version, kind, None).len(),
            "{kind}"
        );
    }
    let pod = &copy.list("v1", "Pod", Some("prod"))[0];
    assert_eq!(
        pod["status"]["phase"], "Running",
        "status survives the round trip"
    );
    sim.shutdown().await;
    copy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_from_a_resource_version() {
    let sim = start(&[]).await;
    let cms: Api<ConfigMap> = Api::namespaced(sim.client().expect("client"), "default");
    let first = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "a"}})).expect("cm"),
        )
        .await
        .expect("create");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "b"}})).expect("cm"),
    )
    .await
    .expect("create");
    cms.delete("a", &DeleteParams::default())
        .await
        .expect("delete");
    let rv = first.metadata.resource_version.expect("rv");
    let stream = cms
        .watch(&kube::api::WatchParams::default().timeout(2), &rv)
        .await
        .expect("watch");
    let events: Vec<String> = stream
        .take(2)
        .map(|e| match e.expect("event") {
            kube::core::WatchEvent::Added(o) => {
                format!("ADDED {}", o.metadata.name.unwrap_or_default())
            }
            kube::core::WatchEvent::Deleted(o) => {
                format!("DELETED {}", o.metadata.name.unwrap_or_default())
            }
            other => format!("{other:?}"),
        })
        .collect()
        .await;
    assert_eq!(events, ["ADDED b", "DELETED a"]);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_reports_conflicts_unless_forced() {
    let sim = start(&[]).await;
    let cms: Api<ConfigMap> = Api::namespaced(sim.client().expect("client"), "default");
    let config = |v: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared"}, "data": {"mode": v}});
    cms.patch(
        "shared",
        &PatchParams::apply("helm"),
        &Patch::Apply(config("a")),
    )
    .await
    .expect("helm applies");
    cms.patch(
        "shared",
        &PatchParams::apply("helm"),
        &Patch::Apply(config("b")),
    )
    .await
    .expect("the same manager changes its own field");
    let err = cms
        .patch(
            "shared",
            &PatchParams::apply("kubectl"),
            &Patch::Apply(config("c")),
        )
        .await
        .expect_err("conflict");
    let kube::Error::Api(status) = err else {
        panic!("expected a Status, got {err}")
    };
    assert_eq!(status.code, 409);
    assert_eq!(
        status.message,
        r#"Apply failed with 1 conflict: conflict with "helm" using v1: .data.mode"#
    );
    // Applying the same value is no conflict.
    cms.patch(
        "shared",
        &PatchParams::apply("kubectl"),
        &Patch::Apply(config("b")),
    )
    .await
    .expect("shared ownership");
    let forced = cms
        .patch(
            "shared",
            &PatchParams::apply("kubectl").force(),
            &Patch::Apply(config("c")),
        )
        .await
        .expect("forced");
    assert_eq!(
        forced
            .data
            .as_ref()
            .and_then(|d| d.get("mode"))
            .map(String::as_str),
        Some("c")
    );
    // helm lost the field, so its next apply conflicts in turn.
    let err = cms
        .patch(
            "shared",
            &PatchParams::apply("helm"),
            &Patch::Apply(config("d")),
        )
        .await
        .expect_err("conflict");
    assert_eq!(api_code(&err), Some(409));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immutable_fields_and_validation_errors_match_upstream() {
    let sim = start(&[]).await;
    let client = sim.client().expect("client");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let deployment = |selector: &str, label: &str| -> Deployment {
        serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {"replicas": 1, "selector": {"matchLabels": {"app": selector}},
            "template": {"metadata": {"labels": {"app": label}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}))
        .expect("deployment")
    };
    let err = deployments
        .create(&PostParams::default(), &deployment("web", "other"))
        .await
        .expect_err("mismatch");
    assert_eq!(api_code(&err), Some(422));
    assert!(
        err.to_string()
            .contains("`selector` does not match template `labels`"),
        "{err}"
    );
    deployments
        .create(&PostParams::default(), &deployment("web", "web"))
        .await
        .expect("create");
    let patch = json!({"spec": {"selector": {"matchLabels": {"app": "web2"}}, "template": {"metadata": {"labels": {"app": "web2"}}}}});
    let err = deployments
        .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect_err("immutable");
    assert_eq!(api_code(&err), Some(422));
    assert!(
        err.to_string().contains("spec.selector: Invalid value")
            && err.to_string().contains("field is immutable"),
        "{err}"
    );

    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client.clone(), "default");
    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "m", "image": "m:1"}]}}}});
    jobs.patch("migrate", &PatchParams::apply("helm"), &Patch::Apply(&job))
        .await
        .expect("create job");
    let mut changed = job.clone();
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("m:2");
    let err = jobs
        .patch(
            "migrate",
            &PatchParams::apply("helm"),
            &Patch::Apply(&changed),
        )
        .await
        .expect_err("immutable template");
    assert!(
        err.to_string().contains("spec.template") && err.to_string().contains("field is immutable"),
        "{err}"
    );

    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client, "default");
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"}, "stringData": {"user": "admin"}});
    let stored = secrets
        .patch("creds", &PatchParams::apply("helm"), &Patch::Apply(&secret))
        .await
        .expect("secret");
    assert!(
        stored.string_data.is_none(),
        "stringData is folded into data"
    );
    assert_eq!(stored.data.expect("data")["user"].0, b"admin");
    sim.shutdown().await;
}

/// ObjectMeta's maps and lists are `omitempty` on a real API server: a merge patch that
/// removes the last annotation, label or finalizer leaves no empty map or list behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_metadata_maps_and_lists_are_not_stored() {
    let sim = start(&[]).await;
    let api: Api<ConfigMap> = Api::namespaced(sim.client().unwrap(), "default");
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "c", "annotations": {"a": "1"}, "labels": {"l": "1"},
            "finalizers": ["example.com/keep"]},
    }))
    .unwrap();
    api.create(&PostParams::default(), &cm).await.unwrap();
    let patch =
        json!({"metadata": {"annotations": {"a": null}, "labels": {"l": null}, "finalizers": []}});
    api.patch("c", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let stored = sim.get("v1", "ConfigMap", Some("default"), "c").unwrap();
    for field in ["annotations", "labels", "finalizers"] {
        assert!(stored["metadata"].get(field).is_none(), "{field}: {stored}");
    }
    sim.shutdown().await;
}

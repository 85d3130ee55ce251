//! CRDs in a component upgrade through the library: a chart whose `crds/` drops a version
//! the cluster still stores is blocked; once the version is migrated away, the definition is
//! replaced as a step, verified, and put back by the rollback from the run record.

use std::sync::Arc;

use serde_json::json;
use upgrade_flows::error::EXIT_BLOCKED;
use upgrade_flows::events::CollectEvents;
use upgrade_flows::flows::helm_component::{self, ComponentUpgradeSpec};
use upgrade_flows::flows::rollback::{self, RollbackSpec};
use upgrade_kube::crd::{CrdFingerprint, live_crd};

use crate::world::{World, chart};

fn gizmos(versions: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "gizmos.sim.example.com"},
        "spec": {"group": "sim.example.com", "scope": "Namespaced",
                 "names": {"kind": "Gizmo", "plural": "gizmos"}, "versions": versions}
    })
}

fn version(name: &str, storage: bool) -> serde_json::Value {
    json!({"name": name, "served": true, "storage": storage,
           "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crd_that_drops_a_stored_version_blocks_and_a_changed_one_is_replaced_and_put_back() {
    let world = World::new().await;
    let ctx = world.flows(true, Arc::new(CollectEvents::default())).await;
    let cluster = ctx.cluster().clone();
    let crds: kube::Api<kube::api::DynamicObject> = kube::Api::all_with(
        cluster.client().clone(),
        &kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
        )),
    );
    let apply = |definition: serde_json::Value| {
        let crds = crds.clone();
        async move {
            crds.patch(
                "gizmos.sim.example.com",
                &kube::api::PatchParams::apply("installer").force(),
                &kube::api::Patch::Apply(definition),
            )
            .await
            .unwrap();
        }
    };
    // The cluster stored Gizmos at v1alpha1, then moved storage to v1.
    apply(gizmos(json!([version("v1alpha1", true)]))).await;
    let served_both = gizmos(json!([version("v1alpha1", false), version("v1", true)]));
    apply(served_both.clone()).await;
    // The new chart ships v1 only, under crds/.
    let new_chart = world.ctx.work().join("charts/karpenter");
    upgrade_test::copy_tree(&chart("1.6.0"), &new_chart);
    std::fs::create_dir_all(new_chart.join("crds")).unwrap();
    let shipped = gizmos(json!([version("v1", true)]));
    std::fs::write(
        new_chart.join("crds/gizmos.yaml"),
        serde_norway::to_string(&shipped).unwrap(),
    )
    .unwrap();
    let spec = ComponentUpgradeSpec {
        chart: new_chart.display().to_string(),
        ..world.spec()
    };

    let planned = helm_component::plan(&ctx, &spec).await.unwrap();
    let blockers = &planned.plan().blockers;
    assert!(
        blockers.iter().any(|b| b.contains(
            "CRD gizmos.sim.example.com: the new definition drops v1alpha1 still in status.storedVersions"
        )),
        "{blockers:?}"
    );
    let err = planned.apply(&ctx).await.unwrap_err();
    assert_eq!(err.exit_code(), EXIT_BLOCKED);
    assert_eq!(world.chart_version().await, "1.5.0");

    // Migrated: v1alpha1 leaves the stored versions; the plan replaces the definition.
    crds.patch_status(
        "gizmos.sim.example.com",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"status": {"storedVersions": ["v1"]}})),
    )
    .await
    .unwrap();
    let planned = helm_component::plan(&ctx, &spec).await.unwrap();
    assert!(planned.plan().blockers.is_empty(), "{:?}", planned.plan());
    assert!(
        planned.plan().changes.iter().any(|c| c.contains(
            "CRDs under crds/ of karpenter 1.6.0, which helm upgrade does not update: update gizmos.sim.example.com (version v1alpha1 is not in the chart's)"
        )),
        "{:?}",
        planned.plan().changes
    );
    let ids: Vec<&str> = planned.plan().steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "karpenter/backup",
            "karpenter/pin-image-tag",
            "karpenter/crds",
            "karpenter/helm-upgrade",
            "karpenter/verify"
        ]
    );
    let report = planned.apply(&ctx).await.unwrap();
    assert!(
        report.outcome.starts_with("completed"),
        "{}",
        report.outcome
    );
    let live = live_crd(&cluster, "gizmos.sim.example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(CrdFingerprint::of(&live), CrdFingerprint::of(&shipped));

    let undo = rollback::plan(
        &ctx,
        &RollbackSpec {
            run_id: Some(report.run_id.clone()),
            component: None,
        },
    )
    .await
    .unwrap()
    .apply(&ctx)
    .await
    .unwrap();
    assert!(
        undo.outcome.starts_with("rolled back 5 step(s)"),
        "{}",
        undo.outcome
    );
    let live = live_crd(&cluster, "gizmos.sim.example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(CrdFingerprint::of(&live), CrdFingerprint::of(&served_both));
    assert_eq!(world.chart_version().await, "1.5.0");
    world.sim.shutdown().await;
}

//! The CRD step against kube-sim: a chart's `crds/` definitions created and replaced,
//! checked, and put back (the created ones deleted unless objects of their kind exist).

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube_sim::{ControllerConfig, SimCluster};
use serde_json::{Value, json};
use upgrade_core::executor::Step;
use upgrade_core::snapshot::{SnapshotKey, SnapshotStore};
use upgrade_kube::connect::Cluster;
use upgrade_kube::crd::{
    CrdApplySpec, CrdApplyStep, CrdFingerprint, CrdState, compare, live_crd, not_current,
};

fn definition(plural: &str, kind: &str, properties: Value) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.sim.example.com")},
        "spec": {
            "group": "sim.example.com",
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": properties}}}}}]
        }
    })
}

async fn world() -> (SimCluster, Cluster) {
    let sim = SimCluster::builder()
        .controllers(ControllerConfig::fast())
        .start()
        .await
        .expect("kube-sim starts");
    let cluster = crate::cluster::connect(&sim, Some(sim.url())).await;
    (sim, cluster)
}

#[tokio::test]
async fn crds_are_created_and_replaced_then_put_back_exactly() {
    let (sim, cluster) = world().await;
    // Installed at the old version: a property the new schema drops.
    let old_widgets = definition("widgets", "Widget", json!({"legacy": {"type": "string"}}));
    sim.load_yaml(&serde_json::to_string(&old_widgets).unwrap())
        .unwrap();
    let new_widgets = definition("widgets", "Widget", json!({"model": {"type": "string"}}));
    let new_gadgets = definition("gadgets", "Gadget", json!({"size": {"type": "integer"}}));
    let compared = compare(&cluster, &[new_widgets.clone(), new_gadgets.clone()])
        .await
        .unwrap();
    assert_eq!(
        compared[0].state,
        CrdState::Differs(vec!["version v1's schema differs".into()])
    );
    assert_eq!(compared[1].state, CrdState::Missing);

    let step = CrdApplyStep {
        spec: CrdApplySpec {
            id: "sim/crds".into(),
            component: "sim".into(),
            definitions: vec![new_widgets.clone(), new_gadgets.clone()],
        },
        cluster: cluster.clone(),
    };
    let expected: Vec<CrdFingerprint> = [&new_widgets, &new_gadgets]
        .into_iter()
        .map(CrdFingerprint::of)
        .collect();
    let before = not_current(&cluster, &expected).await.unwrap();
    assert_eq!(before.len(), 2, "{before:?}");
    assert!(
        before[1].contains("CRD gadgets.sim.example.com is missing"),
        "{before:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path()).unwrap();
    let mut writer = store
        .begin(SnapshotKey {
            run_id: "run-1".into(),
            seq: 1,
            component: "sim".into(),
            step: "sim/crds".into(),
        })
        .unwrap();
    step.capture(&mut writer).await.unwrap();
    let snapshot = writer.commit().unwrap();
    step.apply().await.unwrap();
    step.apply().await.expect("applying again changes nothing");
    step.verify()
        .await
        .expect("the chart's definitions are served");
    // Replaced, not merged: the dropped property is gone.
    let live = live_crd(&cluster, "widgets.sim.example.com")
        .await
        .unwrap()
        .unwrap();
    let properties = &live["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["properties"];
    assert!(properties.get("legacy").is_none(), "{properties}");

    // An object of the created kind keeps its CRD through the rollback (deleting the CRD
    // would delete it); without one, the rollback deletes what the step created.
    let gvk = GroupVersionKind::gvk("sim.example.com", "v1", "Gadget");
    let gadgets: Api<DynamicObject> = Api::namespaced_with(
        cluster.client().clone(),
        "default",
        &ApiResource::from_gvk_with_plural(&gvk, "gadgets"),
    );
    gadgets
        .patch(
            "g",
            &PatchParams::apply("tester"),
            &Patch::Apply(json!({"apiVersion": "sim.example.com/v1", "kind": "Gadget",
                "metadata": {"name": "g"}, "spec": {"size": 1}})),
        )
        .await
        .unwrap();
    step.rollback(&snapshot).await.unwrap();
    let widgets = live_crd(&cluster, "widgets.sim.example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        CrdFingerprint::of(&widgets),
        CrdFingerprint::of(&old_widgets),
        "the old definition is back"
    );
    assert!(
        live_crd(&cluster, "gadgets.sim.example.com")
            .await
            .unwrap()
            .is_some(),
        "kept: a Gadget exists"
    );
    gadgets.delete("g", &Default::default()).await.unwrap();
    step.rollback(&snapshot)
        .await
        .expect("a rollback runs again");
    assert!(
        live_crd(&cluster, "gadgets.sim.example.com")
            .await
            .unwrap()
            .is_none(),
        "deleted once no Gadget exists"
    );
    sim.shutdown().await;
}

//! The storage reader against kube-sim, on release records written straight into the
//! simulator's store the way Helm's Secret and ConfigMap drivers write them. The real Helm 3
//! and Helm 4 read the same records: the reader must return exactly what `helm list -A` and
//! `helm history` return.

use crate::common::{HELMS, helm_builder, strip};
use kube_sim::{ControllerConfig, SimCluster};
use serde_json::{Value, json};
use upgrade_helm::storage::{StorageReader, encode_release, object_name};
use upgrade_helm::{HistoryEntry, ListOptions, ReleaseRef, ReleaseStatus, StorageDriver};
use upgrade_test::TestContext;

/// A real release record (Helm 4 `install --dry-run=client -o json`, no cluster needed).
fn record(ctx: &TestContext, chart: &str, version: &str) -> Value {
    let mut install = ctx.command("helm4");
    install
        .args(["install", "x"])
        .arg(
            TestContext::fixtures_dir()
                .join("charts")
                .join(chart)
                .join(version),
        )
        .args(["--namespace", "x", "--dry-run=client", "--output", "json"]);
    serde_json::from_slice(&install.exec().unwrap().stdout).unwrap()
}

struct Writer<'a> {
    sim: &'a SimCluster,
}

impl Writer<'_> {
    fn namespace(&self, name: &str) {
        let store = self.sim.store();
        let ty = store.registry().lookup("", "v1", "namespaces").unwrap();
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        let _ = store.create(&ty, None, ns, &Default::default());
    }

    /// Stores revision `v` of `name` in `ns` with `status`, like Helm's driver does.
    fn revision(
        &self,
        driver: StorageDriver,
        template: &Value,
        ns: &str,
        name: &str,
        v: u32,
        status: &str,
    ) {
        let mut rec = template.clone();
        rec["name"] = json!(name);
        rec["namespace"] = json!(ns);
        rec["version"] = json!(v);
        rec["info"]["status"] = json!(status);
        rec["info"]["description"] = json!(format!("revision {v} of {name}"));
        let payload = encode_release(&serde_json::to_vec(&rec).unwrap());
        let labels =
            json!({"name": name, "owner": "helm", "status": status, "version": v.to_string()});
        let store = self.sim.store();
        let (plural, object) = match driver {
            StorageDriver::Secret => (
                "secrets",
                json!({"apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
                    "metadata": {"name": object_name(name, v), "namespace": ns, "labels": labels},
                    "data": {"release": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, payload)}}),
            ),
            StorageDriver::ConfigMap => (
                "configmaps",
                json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": object_name(name, v), "namespace": ns, "labels": labels},
                    "data": {"release": payload}}),
            ),
        };
        let ty = store.registry().lookup("", "v1", plural).unwrap();
        store
            .create(&ty, Some(ns), object, &Default::default())
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_reader_returns_what_helm_list_and_history_return() {
    let ctx = TestContext::new();
    let sim = SimCluster::builder()
        .controllers(ControllerConfig::none())
        .start()
        .await
        .unwrap();
    let writer = Writer { sim: &sim };
    let karpenter = record(&ctx, "karpenter", "1.6.0");
    let kserve = record(&ctx, "kserve", "0.15.0");
    let argo = record(&ctx, "argo-workflows", "0.46.0");
    for ns in ["karpenter", "kserve", "argo"] {
        writer.namespace(ns);
    }
    let s = StorageDriver::Secret;
    writer.revision(s, &karpenter, "karpenter", "karpenter", 1, "superseded");
    writer.revision(s, &karpenter, "karpenter", "karpenter", 2, "superseded");
    writer.revision(s, &karpenter, "karpenter", "karpenter", 3, "failed");
    writer.revision(s, &karpenter, "karpenter", "karpenter", 4, "deployed");
    writer.revision(s, &kserve, "kserve", "kserve", 1, "deployed");
    writer.revision(s, &kserve, "kserve", "kserve", 2, "pending-upgrade");
    writer.revision(s, &argo, "argo", "argo-workflows", 1, "failed");
    // A Secret that is not a release record is ignored.
    let store = sim.store();
    let secrets = store.registry().lookup("", "v1", "secrets").unwrap();
    store
        .create(
            &secrets,
            Some("argo"),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "argo-token", "namespace": "argo",
                "labels": {"owner": "helm", "name": "argo-workflows"}}, "data": {"token": "eA=="}}),
            &Default::default(),
        )
        .unwrap();

    let reader = StorageReader::new(sim.client().unwrap(), StorageDriver::Secret);
    let latest = reader.releases(None).await.unwrap();
    let mut from_storage: Vec<_> = latest
        .iter()
        .map(|r| {
            (
                r.namespace.clone(),
                r.name.clone(),
                r.version,
                r.status(),
                r.chart_label(),
                r.app_version(),
            )
        })
        .collect();
    from_storage.sort();
    assert_eq!(
        from_storage
            .iter()
            .map(|e| (e.1.as_str(), e.2, e.3))
            .collect::<Vec<_>>(),
        [
            ("argo-workflows", 1, ReleaseStatus::Failed),
            ("karpenter", 4, ReleaseStatus::Deployed),
            ("kserve", 2, ReleaseStatus::PendingUpgrade)
        ]
    );
    for tool in HELMS {
        let helm = helm_builder(&ctx, tool)
            .kubeconfig(sim.kubeconfig_path())
            .build()
            .unwrap();
        let mut from_helm: Vec<_> = helm
            .list(&ListOptions::default())
            .await
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l.namespace.clone(),
                    l.name.clone(),
                    l.revision,
                    l.status,
                    l.chart.clone(),
                    l.app_version.clone(),
                )
            })
            .collect();
        from_helm.sort();
        assert_eq!(from_storage, from_helm, "{tool} list -A");
        for release in latest.iter().map(|r| r.release_ref()) {
            let from_helm: Vec<_> = helm
                .history(&release)
                .await
                .unwrap()
                .iter()
                .map(strip)
                .collect();
            let from_storage: Vec<_> = reader
                .history(&release)
                .await
                .unwrap()
                .iter()
                .map(|r| strip(&HistoryEntry::from(r)))
                .collect();
            assert_eq!(from_storage, from_helm, "{tool} history {release}");
        }
        // The storage view of the pending revision is what the preflight sees.
        let err = helm
            .preflight(&ReleaseRef::new("kserve", "kserve"))
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("helm rollback kserve 1 -n kserve --wait"),
            "{err}"
        );
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_configmap_driver_and_paging() {
    let ctx = TestContext::new();
    let sim = SimCluster::builder()
        .controllers(ControllerConfig::none())
        .start()
        .await
        .unwrap();
    let writer = Writer { sim: &sim };
    let mlflow = record(&ctx, "mlflow", "0.17.0");
    writer.namespace("mlops");
    // More than one page (250) of records, and more releases than `helm list`'s default
    // maximum (256).
    let mut expected = 0;
    for r in 0..270 {
        let revisions = if r < 10 { 5 } else { 1 };
        for v in 1..=revisions {
            let status = if v == revisions {
                "deployed"
            } else {
                "superseded"
            };
            let name = format!("mlflow-{r:03}");
            writer.revision(StorageDriver::ConfigMap, &mlflow, "mlops", &name, v, status);
            expected += 1;
        }
    }
    let reader = StorageReader::new(sim.client().unwrap(), StorageDriver::ConfigMap);
    let all = reader.all_revisions(None).await.unwrap();
    assert_eq!(all.len(), expected);
    assert_eq!(reader.releases(Some("mlops")).await.unwrap().len(), 270);
    let helm = helm_builder(&ctx, "helm4")
        .kubeconfig(sim.kubeconfig_path())
        .driver(StorageDriver::ConfigMap)
        .build()
        .unwrap();
    for tool in HELMS {
        let listing = helm_builder(&ctx, tool)
            .kubeconfig(sim.kubeconfig_path())
            .driver(StorageDriver::ConfigMap)
            .build()
            .unwrap()
            .list(&ListOptions::default())
            .await
            .unwrap();
        assert_eq!(
            listing.len(),
            270,
            "{tool}: --max 0 lists past Helm's default 256"
        );
    }
    let release = ReleaseRef::new("mlflow-007", "mlops");
    let from_helm: Vec<_> = helm
        .history(&release)
        .await
        .unwrap()
        .iter()
        .map(strip)
        .collect();
    let from_storage: Vec<_> = reader
        .history(&release)
        .await
        .unwrap()
        .iter()
        .map(|r| strip(&HistoryEntry::from(r)))
        .collect();
    assert_eq!(from_storage, from_helm);
    // The Secret driver sees none of them.
    let secrets = StorageReader::new(sim.client().unwrap(), StorageDriver::Secret);
    assert!(secrets.all_revisions(None).await.unwrap().is_empty());
    sim.shutdown().await;
}

//! Helm releases read from Helm's own storage: the `sh.helm.release.v1.<name>.v<revision>`
//! Secrets (label `owner=helm`; ConfigMaps with `HELM_DRIVER=configmap`), so the manifest scanned for removed APIs is the one Helm
//! really rendered and applied.
//!
//! Decoding is upgrade-helm-storage's ([`upgrade_helm_storage::codec::decode_release`], the one
//! decoder, shared with upgrade-helm); the listing is
//! this crate's, so it is paginated, retried on transient errors like every other facts
//! list, and an object that does not decode becomes a note instead of failing the whole
//! gathering. (upgrade-helm's `StorageReader` lists the same objects for Helm operations;
//! switching to it would only change [`releases`].)

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams};
use upgrade_checks::facts::HelmReleaseFacts;
use upgrade_helm_storage::codec::{StoredRelease, decode_release};

use crate::error::Result;
use crate::retry::list_pages;

/// The Secret type Helm 3 and 4 store releases in.
pub const RELEASE_SECRET_TYPE: &str = "helm.sh/release.v1";

/// The facts the checks need from one stored release revision.
pub fn release_facts(release: StoredRelease) -> HelmReleaseFacts {
    let status = release.status().as_str().to_string();
    let meta = release.chart.map(|c| c.metadata);
    HelmReleaseFacts {
        name: release.name,
        namespace: release.namespace,
        chart: meta.as_ref().map(|m| m.name.clone()).unwrap_or_default(),
        chart_version: meta.as_ref().map(|m| m.version.clone()).unwrap_or_default(),
        app_version: meta.as_ref().and_then(|m| m.app_version.clone()),
        status,
        kube_version: meta.and_then(|m| m.kube_version).filter(|k| !k.is_empty()),
        manifest: release.manifest,
        chart_ref: None,
        values_file: None,
    }
}

type Decoded = std::result::Result<(u32, HelmReleaseFacts), String>;

/// Decodes one storage object's `release` payload; `Err` is the note saying why it is left out.
fn decode_object(meta: &ObjectMeta, payload: Option<&[u8]>) -> Decoded {
    let id = format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    );
    let payload = payload
        .ok_or_else(|| format!("Helm release object {id} has no `release` key; left out"))?;
    let mut release =
        decode_release(&id, payload).map_err(|e| format!("Helm release left out: {e}"))?;
    // Old records may lack the namespace; the object's is authoritative.
    if release.namespace.is_empty() {
        release.namespace = meta.namespace.clone().unwrap_or_default();
    }
    Ok((release.version, release_facts(release)))
}

/// The latest revision of every release in the cluster, from both storage drivers (Secrets,
/// Helm's default, and ConfigMaps for `HELM_DRIVER=configmap`), and a note per object that
/// could not be decoded (those are left out, never guessed).
pub async fn releases(
    client: &kube::Client,
    page_size: u32,
) -> Result<(Vec<HelmReleaseFacts>, Vec<String>)> {
    let helm_owned = ListParams::default().labels("owner=helm");
    let (secrets, configmaps) = tokio::try_join!(
        list_pages(
            Api::<Secret>::all(client.clone()),
            &helm_owned,
            page_size,
            "list Helm release Secrets",
            |secret| {
                (secret.type_.as_deref() == Some(RELEASE_SECRET_TYPE)).then(|| {
                    let payload = secret.data.as_ref().and_then(|d| d.get("release"));
                    decode_object(&secret.metadata, payload.map(|p| p.0.as_slice()))
                })
            },
        ),
        list_pages(
            Api::<ConfigMap>::all(client.clone()),
            &helm_owned,
            page_size,
            "list Helm release ConfigMaps",
            |cm| {
                let name = cm.metadata.name.as_deref().unwrap_or_default();
                name.starts_with(upgrade_helm_storage::codec::OBJECT_PREFIX)
                    .then(|| {
                        let payload = cm.data.as_ref().and_then(|d| d.get("release"));
                        decode_object(&cm.metadata, payload.map(|p| p.as_bytes()))
                    })
            },
        ),
    )?;
    let decoded = secrets.into_iter().chain(configmaps);
    let mut latest: BTreeMap<(String, String), (u32, HelmReleaseFacts)> = BTreeMap::new();
    let mut notes = Vec::new();
    for item in decoded {
        match item {
            Ok((revision, facts)) => {
                let key = (facts.namespace.clone(), facts.name.clone());
                if latest.get(&key).is_none_or(|(seen, _)| *seen < revision) {
                    latest.insert(key, (revision, facts));
                }
            }
            Err(note) => notes.push(note),
        }
    }
    Ok((latest.into_values().map(|(_, f)| f).collect(), notes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_releases_become_facts_with_the_real_manifest() {
        let json = serde_json::json!({
            "name": "karpenter", "namespace": "kube-system", "version": 4,
            "info": {"status": "deployed", "first_deployed": "", "last_deployed": "", "deleted": "", "description": ""},
            "chart": {"metadata": {"apiVersion": "v2", "name": "karpenter", "version": "1.0.5", "appVersion": "1.0.5", "kubeVersion": ">=1.25.0-0"}},
            "manifest": "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget\n",
        });
        let payload = upgrade_helm_storage::codec::encode_release(json.to_string().as_bytes());
        let release = decode_release(
            "kube-system/sh.helm.release.v1.karpenter.v4",
            payload.as_bytes(),
        )
        .unwrap();
        let facts = release_facts(release);
        assert_eq!(facts.chart, "karpenter");
        assert_eq!(facts.chart_version, "1.0.5");
        assert_eq!(facts.kube_version.as_deref(), Some(">=1.25.0-0"));
        assert_eq!(facts.status, "deployed");
        assert!(facts.manifest.contains("policy/v1beta1"));
    }
}

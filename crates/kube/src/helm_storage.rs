//! Helm releases read from Helm's own storage: the `sh.helm.release.v1.<name>.v<revision>`
//! Secrets (label `owner=helm`), so the manifest scanned for removed APIs is the one Helm
//! really rendered and applied.
//!
//! Decoding is upgrade-helm's ([`upgrade_helm::storage::decode_release`]); the listing is
//! this crate's, so it is paginated, retried on transient errors like every other facts
//! list, and an object that does not decode becomes a note instead of failing the whole
//! gathering. (upgrade-helm's `StorageReader` lists the same objects for Helm operations;
//! switching to it would only change [`releases`].)

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use upgrade_core::facts::HelmReleaseFacts;
use upgrade_helm::storage::{StoredRelease, decode_release};

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

/// The latest revision of every release in the cluster, and a note per Secret that could
/// not be decoded (those are left out, never guessed).
pub async fn releases(
    client: &kube::Client,
    page_size: u32,
) -> Result<(Vec<HelmReleaseFacts>, Vec<String>)> {
    let api: Api<Secret> = Api::all(client.clone());
    let decoded = list_pages(
        api,
        &ListParams::default().labels("owner=helm"),
        page_size,
        "list Helm release Secrets",
        |secret| {
            if secret.type_.as_deref() != Some(RELEASE_SECRET_TYPE) {
                return None;
            }
            let id = format!(
                "{}/{}",
                secret.metadata.namespace.as_deref().unwrap_or_default(),
                secret.metadata.name.as_deref().unwrap_or_default()
            );
            let Some(payload) = secret.data.as_ref().and_then(|d| d.get("release")) else {
                return Some(Err(format!(
                    "Helm release Secret {id} has no `release` key; left out"
                )));
            };
            Some(match decode_release(&id, &payload.0) {
                Ok(mut release) => {
                    // Old records may lack the namespace; the object's is authoritative.
                    if release.namespace.is_empty() {
                        release.namespace = secret.metadata.namespace.clone().unwrap_or_default();
                    }
                    Ok((release.version, release_facts(release)))
                }
                Err(e) => Err(format!("Helm release left out: {e}")),
            })
        },
    )
    .await?;
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
        let payload = upgrade_helm::storage::encode_release(json.to_string().as_bytes());
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

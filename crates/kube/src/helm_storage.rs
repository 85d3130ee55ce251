//! Helm releases read from Helm's own storage: the `sh.helm.release.v1.<name>.v<revision>`
//! Secrets (label `owner=helm`), so the manifest scanned for removed APIs is the one Helm
//! really rendered and applied.
//!
//! This is the adapter point for the toolkit's Helm storage reader (package `upgrade-helm`):
//! when it is available, [`releases`] can delegate to it and keep its signature.

use std::collections::BTreeMap;
use std::io::Read;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use serde::Deserialize;
use upgrade_core::facts::HelmReleaseFacts;

use crate::error::Result;
use crate::retry::list_pages;

/// The Secret type Helm 3 and 4 store releases in.
pub const RELEASE_SECRET_TYPE: &str = "helm.sh/release.v1";

#[derive(Deserialize)]
struct Release {
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    version: u32,
    #[serde(default)]
    info: Option<Info>,
    #[serde(default)]
    chart: Option<Chart>,
    #[serde(default)]
    manifest: String,
}

#[derive(Deserialize)]
struct Info {
    #[serde(default)]
    status: String,
}

#[derive(Deserialize)]
struct Chart {
    #[serde(default)]
    metadata: Option<ChartMetadata>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChartMetadata {
    #[serde(default)]
    name: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    app_version: Option<String>,
    #[serde(default)]
    kube_version: Option<String>,
}

/// Decodes the `release` value of a Helm release Secret (after Kubernetes' own base64):
/// base64, then gzip when compressed, then JSON. Returns the revision with the facts.
pub fn decode_release(payload: &[u8]) -> std::result::Result<(u32, HelmReleaseFacts), String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(payload)
        .map_err(|e| format!("not base64: {e}"))?;
    let json = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| format!("not gzip: {e}"))?;
        out
    } else {
        raw
    };
    let release: Release =
        serde_json::from_slice(&json).map_err(|e| format!("not a Helm release: {e}"))?;
    let meta = release.chart.and_then(|c| c.metadata);
    Ok((
        release.version,
        HelmReleaseFacts {
            name: release.name,
            namespace: release.namespace,
            chart: meta.as_ref().map(|m| m.name.clone()).unwrap_or_default(),
            chart_version: meta.as_ref().map(|m| m.version.clone()).unwrap_or_default(),
            app_version: meta.as_ref().and_then(|m| m.app_version.clone()),
            status: release.info.map(|i| i.status).unwrap_or_default(),
            kube_version: meta.and_then(|m| m.kube_version).filter(|k| !k.is_empty()),
            manifest: release.manifest,
            chart_ref: None,
            values_file: None,
        },
    ))
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
            let payload = secret.data.as_ref().and_then(|d| d.get("release"));
            Some(match payload {
                Some(bytes) => decode_release(&bytes.0)
                    .map_err(|e| format!("Helm release Secret {id} left out: {e}")),
                None => Err(format!(
                    "Helm release Secret {id} has no `release` key; left out"
                )),
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
    use std::io::Write;

    fn encode(release: &serde_json::Value, gzip: bool) -> Vec<u8> {
        let json = release.to_string().into_bytes();
        let body = if gzip {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&json).unwrap();
            gz.finish().unwrap()
        } else {
            json
        };
        base64::engine::general_purpose::STANDARD
            .encode(body)
            .into_bytes()
    }

    #[test]
    fn decodes_compressed_and_plain_releases() {
        let release = serde_json::json!({
            "name": "karpenter", "namespace": "kube-system", "version": 4,
            "info": {"status": "deployed"},
            "chart": {"metadata": {"name": "karpenter", "version": "1.0.5", "appVersion": "1.0.5", "kubeVersion": ">=1.25.0-0"}},
            "manifest": "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget\n",
        });
        for gzip in [true, false] {
            let (revision, facts) = decode_release(&encode(&release, gzip)).unwrap();
            assert_eq!(revision, 4);
            assert_eq!(facts.chart, "karpenter");
            assert_eq!(facts.chart_version, "1.0.5");
            assert_eq!(facts.kube_version.as_deref(), Some(">=1.25.0-0"));
            assert_eq!(facts.status, "deployed");
            assert!(facts.manifest.contains("policy/v1beta1"));
        }
        let err = decode_release(b"%%%").unwrap_err();
        assert!(err.contains("not base64"), "{err}");
    }
}

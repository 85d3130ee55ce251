//! The platform as it runs, read into a [`PlatformLock`]: the `lock` operation behind
//! `upgrade-lock write` and `diff`, and the "did we get back to where we were" check of a
//! rollback.

use std::path::PathBuf;

use anyhow::Context;
use upgrade_core::lockfile::{ComponentLock, PlatformLock, values_digest};
use upgrade_helm::{Helm, ReleaseRef};

/// What the platform consists of (which releases, which Terraform folder).
#[derive(Debug, Clone)]
pub struct PlatformSpec {
    /// The cluster's name (EKS name or API URL).
    pub cluster_name: String,
    /// The control plane's minor, e.g. `1.30` (read from the API server by the caller).
    pub cluster_version: String,
    /// Helm-managed components: (component name, release, chart reference as written).
    pub components: Vec<(String, ReleaseRef, String)>,
    /// The Terraform working folder, if Terraform is part of the platform.
    pub terraform_dir: Option<PathBuf>,
}

/// Reads the live state of every part of `spec`.
pub async fn read_live(helm: &Helm, spec: &PlatformSpec) -> anyhow::Result<PlatformLock> {
    let mut lock = PlatformLock::new(&spec.cluster_name, &spec.cluster_version);
    for (component, release, chart) in &spec.components {
        let status = helm
            .status(release, None)
            .await
            .with_context(|| format!("read release {release}"))?;
        let meta = helm
            .metadata(release, None)
            .await
            .with_context(|| format!("read metadata of {release}"))?;
        lock.components.insert(
            component.clone(),
            ComponentLock {
                release: release.name.clone(),
                namespace: release.namespace.clone(),
                chart: chart.clone(),
                chart_version: meta.version,
                app_version: meta.app_version,
                images: images_in(&status.manifest),
                values_digest: values_digest(&serde_json::Value::Object(status.config)),
                helm_revision: status.version,
            },
        );
    }
    if let Some(dir) = &spec.terraform_dir {
        let path = dir.join(".terraform.lock.hcl");
        if let Some(file) = upgrade_tf::LockFile::read_optional(&path)
            .with_context(|| format!("read {}", path.display()))?
        {
            for (address, provider) in file.providers {
                lock.terraform.providers.insert(address, provider.version);
            }
        }
    }
    Ok(lock)
}

/// Container images in rendered manifests, by `workload/container`.
pub fn images_in(manifest: &str) -> std::collections::BTreeMap<String, String> {
    use serde::Deserialize;
    let mut images = std::collections::BTreeMap::new();
    for doc in serde_norway::Deserializer::from_str(manifest) {
        let Ok(value) = serde_json::Value::deserialize(doc) else {
            continue;
        };
        let name = value["metadata"]["name"].as_str().unwrap_or_default();
        let pod_spec = match value["kind"].as_str() {
            Some("Deployment" | "StatefulSet" | "DaemonSet" | "Job" | "ReplicaSet") => {
                &value["spec"]["template"]["spec"]
            }
            Some("CronJob") => &value["spec"]["jobTemplate"]["spec"]["template"]["spec"],
            Some("Pod") => &value["spec"],
            _ => continue,
        };
        for key in ["initContainers", "containers"] {
            for container in pod_spec[key].as_array().into_iter().flatten() {
                if let (Some(c), Some(image)) =
                    (container["name"].as_str(), container["image"].as_str())
                {
                    images.insert(format!("{name}/{c}"), image.to_string());
                }
            }
        }
    }
    images
}

/// Drift between two locks that matters for "the platform is back where it was": everything
/// except Helm revision numbers (a rollback is itself a new revision) and the state serial.
pub fn material_drift(
    desired: &PlatformLock,
    live: &PlatformLock,
) -> Vec<upgrade_core::lockfile::Drift> {
    desired
        .diff(live)
        .into_iter()
        .filter(|d| !d.path.ends_with(".helm_revision") && d.path != "terraform.state_serial")
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_by_workload_and_container() {
        let manifest = "---\nkind: Deployment\nmetadata: {name: karpenter}\nspec:\n  template:\n    spec:\n      containers:\n      - {name: controller, image: public.ecr.aws/karpenter/controller:1.5.0}\n---\nkind: Service\nmetadata: {name: karpenter}\n";
        let images = images_in(manifest);
        assert_eq!(
            images.into_iter().collect::<Vec<_>>(),
            [(
                "karpenter/controller".to_string(),
                "public.ecr.aws/karpenter/controller:1.5.0".to_string()
            )]
        );
    }
}

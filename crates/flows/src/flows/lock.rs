//! The platform lockfile: written from the live platform, or compared with it (drift), and
//! the "did we get back to where we were" check of a rollback.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use upgrade_core::lockfile::{ComponentLock, Drift, PlatformLock, values_digest};
use upgrade_helm::{Helm, ReleaseRef};

use crate::context::FlowContext;
use crate::error::{FlowError, Result};

/// One Helm-managed component of the platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedComponent {
    /// The component's name in the lockfile, e.g. `karpenter`.
    pub name: String,
    /// Its release.
    pub release: ReleaseRef,
    /// The chart reference as written (`oci://...`, `repo/chart`, a folder).
    pub chart: String,
}

impl LockedComponent {
    /// Parses `NAME=NAMESPACE/RELEASE=CHART`.
    pub fn parse(text: &str) -> Result<LockedComponent> {
        let bad = || {
            FlowError::invalid(
                "components",
                format!("`{text}` is not NAME=NAMESPACE/RELEASE=CHART"),
                "write it like kserve=kserve/kserve=kserve/kserve",
            )
        };
        let (name, rest) = text.split_once('=').ok_or_else(bad)?;
        let (release, chart) = rest.split_once('=').ok_or_else(bad)?;
        let (namespace, release) = release.split_once('/').ok_or_else(bad)?;
        if [name, namespace, release, chart]
            .iter()
            .any(|s| s.is_empty())
        {
            return Err(bad());
        }
        Ok(LockedComponent {
            name: name.into(),
            release: ReleaseRef::new(release, namespace),
            chart: chart.into(),
        })
    }
}

/// What the platform consists of: the cluster, its Helm components and Terraform folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformSpec {
    /// The cluster's name in the lockfile (EKS name or API URL).
    pub cluster_name: String,
    /// The Helm-managed components.
    pub components: Vec<LockedComponent>,
    /// The Terraform working folder, when Terraform is part of the platform.
    #[serde(default)]
    pub terraform_dir: Option<PathBuf>,
}

impl PlatformSpec {
    /// The platform a lockfile describes (its components), with `terraform_dir`.
    pub fn of_lock(lock: &PlatformLock, terraform_dir: Option<PathBuf>) -> PlatformSpec {
        PlatformSpec {
            cluster_name: lock.cluster.name.clone(),
            components: lock
                .components
                .iter()
                .map(|(name, c)| LockedComponent {
                    name: name.clone(),
                    release: ReleaseRef::new(&c.release, &c.namespace),
                    chart: c.chart.clone(),
                })
                .collect(),
            terraform_dir,
        }
    }
}

/// Reads the platform lockfile at `path` when it exists; an unreadable or malformed one is
/// bad input.
pub fn read_lockfile(path: &Path) -> Result<Option<PlatformLock>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(
            PlatformLock::parse(&text, path).map_err(FlowError::input)?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FlowError::invalid(
            "lockfile",
            format!("cannot read {}: {e}", path.display()),
            "fix its permissions or give another path",
        )),
    }
}

/// Reads the live state of every part of `spec`, with the control plane's minor.
pub async fn read_live(ctx: &FlowContext, spec: &PlatformSpec) -> Result<PlatformLock> {
    let minor = crate::flows::live_version(ctx).await?.minor.to_string();
    let helm = ctx.helm()?;
    read_live_with(&helm, spec, &minor).await
}

/// [`read_live`] with a given Helm and control-plane minor (no cluster needed beyond Helm's).
pub async fn read_live_with(
    helm: &Helm,
    spec: &PlatformSpec,
    cluster_version: &str,
) -> Result<PlatformLock> {
    let mut lock = PlatformLock::new(&spec.cluster_name, cluster_version);
    for component in &spec.components {
        let release = &component.release;
        let status = helm
            .status(release, None)
            .await
            .map_err(|e| FlowError::failed(format!("read release {release}"), e))?;
        let meta = helm
            .metadata(release, None)
            .await
            .map_err(|e| FlowError::failed(format!("read metadata of {release}"), e))?;
        lock.components.insert(
            component.name.clone(),
            ComponentLock {
                release: release.name.clone(),
                namespace: release.namespace.clone(),
                chart: component.chart.clone(),
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
            .map_err(|e| FlowError::failed(format!("read {}", path.display()), e))?
        {
            for (address, provider) in file.providers {
                lock.terraform.providers.insert(address, provider.version);
            }
        }
    }
    Ok(lock)
}

/// Writes the lockfile of the live platform to `path`.
pub async fn write(ctx: &FlowContext, spec: &PlatformSpec, path: &Path) -> Result<PlatformLock> {
    let live = read_live(ctx, spec).await?;
    live.write(path)
        .map_err(|e| FlowError::failed(format!("write {}", path.display()), e))?;
    Ok(live)
}

/// The drift between the lockfile `desired` and the live platform.
pub async fn diff(
    ctx: &FlowContext,
    desired: &PlatformLock,
    terraform_dir: Option<PathBuf>,
) -> Result<Vec<Drift>> {
    let live = read_live(ctx, &PlatformSpec::of_lock(desired, terraform_dir)).await?;
    Ok(desired.diff(&live))
}

/// Container images in rendered manifests, by `workload/container`.
pub fn images_in(manifest: &str) -> BTreeMap<String, String> {
    use serde::Deserialize;
    let mut images = BTreeMap::new();
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
pub fn material_drift(desired: &PlatformLock, live: &PlatformLock) -> Vec<Drift> {
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

    #[test]
    fn components_parse_or_name_the_expected_form() {
        let c = LockedComponent::parse(
            "karpenter=karpenter/karpenter=oci://public.ecr.aws/karpenter/karpenter",
        )
        .unwrap();
        assert_eq!(c.name, "karpenter");
        assert_eq!(c.release, ReleaseRef::new("karpenter", "karpenter"));
        assert_eq!(c.chart, "oci://public.ecr.aws/karpenter/karpenter");
        let err = LockedComponent::parse("kserve").unwrap_err();
        assert!(
            err.to_string()
                .contains("is not NAME=NAMESPACE/RELEASE=CHART"),
            "{err}"
        );
        assert!(LockedComponent::parse("a=/r=c").is_err());
    }
}

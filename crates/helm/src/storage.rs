//! Helm's release storage: the `sh.helm.release.v1.NAME.vN` records decoded by
//! `upgrade-helm-storage` (the one decoder, shared with `upgrade-kube`'s facts) and, with the
//! `kube` feature, [`StorageReader`] reading them straight from the cluster.
//!
//! Reading storage scans every release and revision with a few list calls instead of one
//! Helm process per release.

pub use upgrade_helm_storage::codec::*;

use crate::types::{HistoryEntry, ReleaseRef};

impl From<&StoredRelease> for HistoryEntry {
    /// A stored revision as `helm history` shows it.
    fn from(release: &StoredRelease) -> Self {
        HistoryEntry {
            revision: release.version,
            updated: release.info.last_deployed.clone(),
            status: release.info.status,
            chart: release.chart_label(),
            app_version: release.app_version(),
            description: release.info.description.clone(),
            rollback_revision: release.info.rollback_revision,
        }
    }
}

#[cfg(feature = "kube")]
pub use reader::StorageReader;

#[cfg(feature = "kube")]
mod reader {
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use kube::api::{Api, ListParams};

    use super::*;
    use crate::error::{Error, Result};

    /// Page size for list calls (keeps each response bounded on big clusters).
    const PAGE: u32 = 250;

    /// Reads Helm's release records through the Kubernetes API.
    #[derive(Clone)]
    pub struct StorageReader {
        client: kube::Client,
        driver: StorageDriver,
    }

    impl StorageReader {
        /// A reader using `client` for the given driver.
        pub fn new(client: kube::Client, driver: StorageDriver) -> Self {
            StorageReader { client, driver }
        }

        /// Every revision of every release, in `namespace` or in all namespaces, sorted by
        /// namespace, name and revision.
        pub async fn all_revisions(&self, namespace: Option<&str>) -> Result<Vec<StoredRelease>> {
            let mut out = self.list("owner=helm", namespace).await?;
            out.sort_by(|a, b| {
                (&a.namespace, &a.name, a.version).cmp(&(&b.namespace, &b.name, b.version))
            });
            Ok(out)
        }

        /// The newest revision of every release (what `helm list -A` shows on Helm 4).
        pub async fn releases(&self, namespace: Option<&str>) -> Result<Vec<StoredRelease>> {
            Ok(latest_revisions(self.all_revisions(namespace).await?))
        }

        /// Every revision of one release, ascending (what `helm history` shows).
        pub async fn history(&self, release: &ReleaseRef) -> Result<Vec<StoredRelease>> {
            let selector = format!("owner=helm,name={}", release.name);
            let mut out = self.list(&selector, Some(&release.namespace)).await?;
            out.sort_by_key(|r| r.version);
            Ok(out)
        }

        async fn list(
            &self,
            selector: &str,
            namespace: Option<&str>,
        ) -> Result<Vec<StoredRelease>> {
            match self.driver {
                StorageDriver::Secret => {
                    let items: Vec<Secret> = list_all(&self.api(namespace), selector).await?;
                    items
                        .iter()
                        .filter(|s| s.type_.as_deref() == Some("helm.sh/release.v1"))
                        .map(|s| {
                            let payload = s.data.as_ref().and_then(|d| d.get("release"));
                            decode_object(&s.metadata, payload.map(|p| p.0.as_slice()))
                        })
                        .collect()
                }
                StorageDriver::ConfigMap => {
                    let items: Vec<ConfigMap> = list_all(&self.api(namespace), selector).await?;
                    items
                        .iter()
                        .map(|cm| {
                            let payload = cm.data.as_ref().and_then(|d| d.get("release"));
                            decode_object(&cm.metadata, payload.map(|p| p.as_bytes()))
                        })
                        .collect()
                }
            }
        }

        fn api<K>(&self, namespace: Option<&str>) -> Api<K>
        where
            K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
            <K as kube::Resource>::DynamicType: Default,
        {
            match namespace {
                Some(ns) => Api::namespaced(self.client.clone(), ns),
                None => Api::all(self.client.clone()),
            }
        }
    }

    /// Decodes one storage object's `release` payload. Old records may lack the namespace
    /// field; the object's namespace is authoritative then.
    fn decode_object(meta: &ObjectMeta, payload: Option<&[u8]>) -> Result<StoredRelease> {
        let object = format!(
            "{}/{}",
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default()
        );
        let payload = payload.ok_or_else(|| StorageError::MissingPayload {
            object: object.clone(),
        })?;
        let mut release = decode_release(&object, payload)?;
        if release.namespace.is_empty() {
            release.namespace = meta.namespace.clone().unwrap_or_default();
        }
        Ok(release)
    }

    async fn list_all<K>(api: &Api<K>, selector: &str) -> Result<Vec<K>>
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let mut items = Vec::new();
        let mut params = ListParams::default().labels(selector).limit(PAGE);
        loop {
            let page = api.list(&params).await.map_err(|source| Error::Kube {
                action: format!("listing Helm release records ({selector})"),
                source: Box::new(source),
            })?;
            items.extend(page.items);
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
        Ok(items)
    }
}

//! Seed 002's forced renewal of a cert-manager Certificate as a reversible step: the secret
//! is captured, deleted so cert-manager issues a new one, and the new one awaited with the
//! Certificate Ready again; when none comes in time the step fails and its rollback puts the
//! old secret back (as it does after a renewal that is undone).
//!
//! The snapshot holds the old secret, private key included: it lives in the run's snapshot
//! folder, like the release snapshots that hold values.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use serde::{Deserialize, Serialize};
use upgrade_core::executor::{Step, StepFuture, StepRecord, StepSpec};
use upgrade_core::snapshot::{Snapshot, SnapshotWriter};

use crate::connect::Cluster;

/// What [`RenewCertificateStep`] renews.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewCertificateSpec {
    /// Step id.
    pub id: String,
    /// The Certificate's namespace.
    pub namespace: String,
    /// The Certificate.
    pub certificate: String,
    /// Its secret (`spec.secretName`).
    pub secret: String,
    /// How long cert-manager may take to issue the new one.
    pub timeout: std::time::Duration,
}

impl StepSpec for RenewCertificateSpec {
    const KIND: &'static str = "kube-certificate-renewal";
}

const SECRET_FILE: &str = "secret-before.json";

/// Deletes the Certificate's secret and waits for cert-manager to issue a new one.
#[derive(Debug, Clone)]
pub struct RenewCertificateStep {
    /// What it renews.
    pub spec: RenewCertificateSpec,
    /// The cluster.
    pub cluster: Cluster,
}

/// The cert-manager Certificate kind.
pub fn certificate_resource() -> kube::api::ApiResource {
    kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("cert-manager.io", "v1", "Certificate"),
        "certificates",
    )
}

impl RenewCertificateStep {
    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.cluster.client().clone(), &self.spec.namespace)
    }

    fn what(&self) -> String {
        format!("secret {}/{}", self.spec.namespace, self.spec.secret)
    }

    async fn secret(&self) -> Result<Option<Secret>, crate::Error> {
        self.secrets()
            .get_opt(&self.spec.secret)
            .await
            .map_err(|e| crate::Error::api(format!("read {}", self.what()), e))
    }

    async fn ready(&self) -> Result<bool, crate::Error> {
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.cluster.client().clone(),
            &self.spec.namespace,
            &certificate_resource(),
        );
        let cert = api.get(&self.spec.certificate).await.map_err(|e| {
            crate::Error::api(format!("read certificate {}", self.spec.certificate), e)
        })?;
        Ok(crate::health::Readiness::ReadyCondition
            .problem(&cert)
            .is_none())
    }

    /// Whether the secret now is a new issue (another uid than the captured one).
    async fn renewed(&self, old_uid: &str) -> Result<bool, crate::Error> {
        Ok(self
            .secret()
            .await?
            .is_some_and(|s| s.metadata.uid.as_deref() != Some(old_uid))
            && self.ready().await?)
    }
}

impl Step for RenewCertificateStep {
    fn id(&self) -> &str {
        &self.spec.id
    }

    fn component(&self) -> &str {
        "emergency"
    }

    fn record(&self) -> StepRecord {
        StepRecord::of(&self.spec)
    }

    fn description(&self) -> String {
        format!(
            "renew certificate {}/{}: delete {} and wait for cert-manager's new one (the old one is put back if none comes)",
            self.spec.namespace,
            self.spec.certificate,
            self.what()
        )
    }

    fn capture<'a>(&'a self, snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(async move {
            let secret = self
                .secret()
                .await?
                .ok_or_else(|| format!("{} does not exist", self.what()))?;
            snapshot.put_json(SECRET_FILE, &secret)?;
            Ok(())
        })
    }

    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async move {
            self.cluster.guard()?;
            let old: Secret = self.secret().await?.unwrap_or_default();
            // With no secret (a resumed run deleted it already) there is nothing to delete:
            // any secret that appears is the new issue.
            let old_uid = old.metadata.uid.clone().unwrap_or_default();
            if !old_uid.is_empty() {
                self.secrets()
                    .delete(&self.spec.secret, &DeleteParams::default())
                    .await
                    .map_err(|e| crate::Error::api(format!("delete {}", self.what()), e))?;
            }
            let deadline = tokio::time::Instant::now() + self.spec.timeout;
            loop {
                if self.renewed(&old_uid).await? {
                    return Ok(());
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(format!(
                        "cert-manager issued no new {} within {} s (is cert-manager running? kubectl describe certificate {} -n {})",
                        self.what(),
                        self.spec.timeout.as_secs(),
                        self.spec.certificate,
                        self.spec.namespace
                    )
                    .into());
                }
                self.cluster
                    .pause(std::time::Duration::from_millis(200))
                    .await?;
            }
        })
    }

    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async move {
            if self.secret().await?.is_some() && self.ready().await? {
                Ok(())
            } else {
                Err(format!("{} is missing or its Certificate is not Ready", self.what()).into())
            }
        })
    }

    fn rollback<'a>(&'a self, snapshot: &'a Snapshot) -> StepFuture<'a> {
        Box::pin(async move {
            self.cluster.guard()?;
            let mut old: Secret = snapshot.get_json(SECRET_FILE)?;
            if self.secret().await?.is_some() {
                self.secrets()
                    .delete(&self.spec.secret, &DeleteParams::default())
                    .await
                    .map_err(|e| crate::Error::api(format!("delete {}", self.what()), e))?;
            }
            old.metadata.uid = None;
            old.metadata.resource_version = None;
            old.metadata.creation_timestamp = None;
            old.metadata.managed_fields = None;
            match self.secrets().create(&PostParams::default(), &old).await {
                Ok(_) => Ok(()),
                // cert-manager may have issued again in between: the old one goes back anyway.
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    self.secrets()
                        .replace(&self.spec.secret, &PostParams::default(), &old)
                        .await
                        .map_err(|e| crate::Error::api(format!("restore {}", self.what()), e))?;
                    Ok(())
                }
                Err(e) => Err(crate::Error::api(format!("restore {}", self.what()), e).into()),
            }
        })
    }
}

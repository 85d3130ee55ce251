//! One upgrade at a time: a `coordination.k8s.io/v1` Lease held with a TTL and renewed.
//!
//! The lease records the holder's identity and its current step (annotation
//! [`STEP_ANNOTATION`]), so a second run is refused with who holds it and what it is doing.
//! A lease is taken over only after it expires (a holder that died); takeover and renewal
//! use optimistic concurrency (resourceVersion), so two runs can never both believe they
//! hold it.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, DeleteParams, PostParams, Preconditions};

use crate::connect::Cluster;
use crate::error::{Error, Result, api_code};

/// The annotation on the lease holding the holder's current step.
pub const STEP_ANNOTATION: &str = "upgrade.mlops.dev/step";

/// Where the lock lives and who we are.
#[derive(Debug, Clone)]
pub struct LockOptions {
    /// Namespace of the lease (default `kube-system`).
    pub namespace: String,
    /// Name of the lease (default `mlops-upgrade-lock`).
    pub name: String,
    /// Our identity, e.g. `ci-runner-7/run-2026-11-22T01:00:00Z` (shown to anyone refused).
    pub holder: String,
    /// How long the lease lasts without renewal.
    pub ttl: Duration,
}

impl LockOptions {
    /// The default lease for `holder`, with a 60 s TTL.
    pub fn new(holder: impl Into<String>) -> Self {
        LockOptions {
            namespace: "kube-system".into(),
            name: "mlops-upgrade-lock".into(),
            holder: holder.into(),
            ttl: Duration::from_secs(60),
        }
    }
}

/// A held lock. Renew it well within its TTL ([`renew`](Self::renew)), and release it at the end.
#[derive(Debug)]
pub struct UpgradeLock {
    api: Api<Lease>,
    options: LockOptions,
    resource_version: String,
    step: String,
}

impl UpgradeLock {
    /// Takes the lock, or fails with [`Error::LockHeld`] naming the holder and its step.
    pub async fn acquire(
        cluster: &Cluster,
        options: LockOptions,
        step: &str,
    ) -> Result<UpgradeLock> {
        // A burst of API errors (an API server restarting, throttling) is waited out for up to
        // one lease lifetime. Trying again is safe: a create that went through unanswered
        // left a lease that is ours, which the next try takes over.
        let deadline = std::time::Instant::now() + options.ttl;
        crate::retry::until_deadline(deadline, || {
            Self::acquire_once(cluster, options.clone(), step)
        })
        .await
    }

    async fn acquire_once(
        cluster: &Cluster,
        options: LockOptions,
        step: &str,
    ) -> Result<UpgradeLock> {
        cluster.guard()?;
        let api: Api<Lease> = Api::namespaced(cluster.client().clone(), &options.namespace);
        let action = format!(
            "take the upgrade lock {}/{}",
            options.namespace, options.name
        );
        let now = jiff::Timestamp::now();
        let current = api
            .get_opt(&options.name)
            .await
            .map_err(|e| Error::api(&action, e))?;
        let lease = match current {
            None => {
                let lease = new_lease(&options, step, now);
                match api.create(&PostParams::default(), &lease).await {
                    Ok(created) => created,
                    // Someone created it between our read and our write.
                    Err(e) if api_code(&e) == Some(409) => {
                        let theirs = api
                            .get(&options.name)
                            .await
                            .map_err(|e| Error::api(&action, e))?;
                        return Err(held(&options, &theirs));
                    }
                    Err(e) => return Err(Error::api(&action, e)),
                }
            }
            Some(existing) => {
                let holder = spec_holder(&existing);
                if holder.as_deref() != Some(options.holder.as_str()) && !expired(&existing, now) {
                    return Err(held(&options, &existing));
                }
                // Ours from before (a resumed run) or expired: take it over, guarded by its
                // resourceVersion so only one taker wins.
                let mut taken = new_lease(&options, step, now);
                taken.metadata.resource_version = existing.metadata.resource_version.clone();
                match api
                    .replace(&options.name, &PostParams::default(), &taken)
                    .await
                {
                    Ok(replaced) => replaced,
                    Err(e) if api_code(&e) == Some(409) => {
                        let theirs = api
                            .get(&options.name)
                            .await
                            .map_err(|e| Error::api(&action, e))?;
                        return Err(held(&options, &theirs));
                    }
                    Err(e) => return Err(Error::api(&action, e)),
                }
            }
        };
        tracing::info!(holder = %options.holder, lease = %options.name, "upgrade lock taken");
        Ok(UpgradeLock {
            api,
            resource_version: lease.metadata.resource_version.unwrap_or_default(),
            options,
            step: step.to_string(),
        })
    }

    /// Renews the lease (and records `step` as the current step). Fails with
    /// [`Error::LockLost`] when someone else took it meanwhile.
    pub async fn renew(&mut self, step: Option<&str>) -> Result<()> {
        if let Some(step) = step {
            self.step = step.to_string();
        }
        let mut lease = new_lease(&self.options, &self.step, jiff::Timestamp::now());
        lease.metadata.resource_version = Some(self.resource_version.clone());
        match self
            .api
            .replace(&self.options.name, &PostParams::default(), &lease)
            .await
        {
            Ok(renewed) => {
                self.resource_version = renewed.metadata.resource_version.unwrap_or_default();
                Ok(())
            }
            Err(e) if matches!(api_code(&e), Some(409) | Some(404)) => {
                let current = self
                    .api
                    .get_opt(&self.options.name)
                    .await
                    .map_err(|e| Error::api("read the upgrade lock", e))?;
                let holder = match &current {
                    // Still ours: an earlier renewal went through but its answer was lost
                    // (a dropped connection), so our resourceVersion is stale. Adopt it and
                    // renew again, unless the lease expired meanwhile (then anyone may have
                    // taken it and given it back; we cannot know).
                    Some(lease)
                        if spec_holder(lease).as_deref() == Some(self.options.holder.as_str())
                            && !expired(lease, jiff::Timestamp::now()) =>
                    {
                        self.resource_version =
                            lease.metadata.resource_version.clone().unwrap_or_default();
                        return Box::pin(self.renew(None)).await;
                    }
                    Some(lease) => spec_holder(lease).unwrap_or_default(),
                    None => "nobody (the lease was deleted)".to_string(),
                };
                Err(Error::LockLost {
                    namespace: self.options.namespace.clone(),
                    name: self.options.name.clone(),
                    holder,
                })
            }
            Err(e) => Err(Error::api("renew the upgrade lock", e)),
        }
    }

    /// Renews like [`renew`](Self::renew), retrying failed attempts (a 5xx, a 429, a dropped
    /// connection while the API servers roll) with backoff until `deadline`, the last moment
    /// the lease is surely still ours. Gives up at once only on [`Error::LockLost`].
    pub async fn renew_before(&mut self, deadline: tokio::time::Instant) -> Result<()> {
        let mut pause = Duration::from_millis(200);
        let mut attempt = 1u32;
        loop {
            match self.renew(None).await {
                Ok(()) => return Ok(()),
                Err(err @ Error::LockLost { .. }) => return Err(err),
                Err(err) => {
                    let now = tokio::time::Instant::now();
                    if now >= deadline {
                        return Err(err);
                    }
                    tracing::warn!(attempt, error = %err, "could not renew the upgrade lock; retrying");
                    // The last attempt is made at the deadline itself, not skipped.
                    tokio::time::sleep(pause.min(deadline - now)).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                    attempt += 1;
                }
            }
        }
    }

    /// The step recorded in the lease.
    pub fn step(&self) -> &str {
        &self.step
    }

    /// Releases the lock (deletes the lease if it is still ours).
    ///
    /// The delete is conditional on the lease's resourceVersion, so sending it again after a
    /// 5xx or a dropped connection is safe (a delete that went through answers 404 the second
    /// time). A 409 means the lease changed since we last saw it: a renewal whose answer was
    /// lost (or cut short when the run ended) bumped it. If it still names us, the delete is
    /// sent again with its current resourceVersion; otherwise it is not ours to release.
    pub async fn release(mut self) -> Result<()> {
        for _ in 0..3 {
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    resource_version: Some(self.resource_version.clone()),
                    uid: None,
                }),
                ..DeleteParams::default()
            };
            let deleted = crate::retry::idempotent_write("release the upgrade lock", || {
                self.api.delete(&self.options.name, &params)
            })
            .await;
            let code = match &deleted {
                Ok(_) => return Ok(()),
                Err(Error::Api { source, .. }) => api_code(source),
                Err(_) => None,
            };
            match code {
                Some(404) => return Ok(()),
                Some(409) => {
                    let current = crate::retry::read(
                        "read the upgrade lock",
                        self.api.get_opt(&self.options.name),
                    )
                    .await?;
                    match current {
                        Some(lease)
                            if spec_holder(&lease).as_deref()
                                == Some(self.options.holder.as_str()) =>
                        {
                            self.resource_version =
                                lease.metadata.resource_version.unwrap_or_default();
                        }
                        // Gone or someone else's: nothing of ours to release.
                        _ => return Ok(()),
                    }
                }
                _ => return deleted.map(drop),
            }
        }
        Err(Error::api(
            "release the upgrade lock",
            kube::Error::Api(Box::new(kube::core::Status {
                code: 409,
                reason: "Conflict".into(),
                message: "the lease kept changing while it was released".into(),
                ..Default::default()
            })),
        ))
    }
}

fn new_lease(options: &LockOptions, step: &str, now: jiff::Timestamp) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(options.name.clone()),
            namespace: Some(options.namespace.clone()),
            annotations: Some([(STEP_ANNOTATION.to_string(), step.to_string())].into()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(options.holder.clone()),
            lease_duration_seconds: Some(options.ttl.as_secs().max(1) as i32),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            ..LeaseSpec::default()
        }),
    }
}

fn spec_holder(lease: &Lease) -> Option<String> {
    lease.spec.as_ref().and_then(|s| s.holder_identity.clone())
}

fn expires_at(lease: &Lease) -> Option<jiff::Timestamp> {
    let spec = lease.spec.as_ref()?;
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref())?.0;
    let ttl = jiff::SignedDuration::from_secs(spec.lease_duration_seconds.unwrap_or(0).into());
    renewed.checked_add(ttl).ok()
}

fn expired(lease: &Lease, now: jiff::Timestamp) -> bool {
    // A lease without times is treated as expired: nobody is renewing it.
    expires_at(lease).is_none_or(|t| t <= now)
}

fn held(options: &LockOptions, lease: &Lease) -> Error {
    Error::LockHeld {
        namespace: options.namespace.clone(),
        name: options.name.clone(),
        holder: spec_holder(lease).unwrap_or_else(|| "(unknown)".into()),
        step: lease
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(STEP_ANNOTATION).cloned())
            .unwrap_or_else(|| "(not recorded)".into()),
        expires: expires_at(lease)
            .map(|t| t.to_string())
            .unwrap_or_else(|| "(unknown)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_follows_renew_time_and_duration() {
        let options = LockOptions::new("a");
        let then: jiff::Timestamp = "2026-11-22T01:00:00Z".parse().unwrap();
        let lease = new_lease(&options, "drain", then);
        assert!(!expired(&lease, "2026-11-22T01:00:59Z".parse().unwrap()));
        assert!(expired(&lease, "2026-11-22T01:01:00Z".parse().unwrap()));
        let err = held(&options, &lease).to_string();
        assert!(
            err.contains("held by `a` (step: drain) until 2026-11-22T01:01:00Z"),
            "{err}"
        );
    }
}

//! Seed 001's ACK step (`ack_helper.py`): blue's SageMaker endpoint resources are kept from
//! deleting their endpoints ([`upgrade_kube::ack::Protection`], chosen from the ACK runtime
//! version), then green adopts each endpoint through an `AdoptedResource`. Two reversible
//! steps, protection first, so no endpoint is ever deleted or created twice.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use upgrade_core::executor::{Step, StepFuture, StepRecord, StepSpec};
use upgrade_core::snapshot::{Snapshot, SnapshotWriter};
use upgrade_kube::ack::{self, ADOPTED_RESOURCE, ENDPOINT, Protection, ProtectionState};
use upgrade_kube::connect::Cluster;

use super::transfer::{GreenCluster, LazyGreen, connect_green};
use crate::context::FlowContext;
use crate::error::{FlowError, Result};
use crate::report::Plan;
use crate::run::Planned;

/// The flow's name in run records.
pub const ACK_FLOW: &str = "bluegreen-ack";

/// Blue's ACK SageMaker endpoints, protected on blue and adopted on green.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckSpec {
    /// The green cluster.
    pub green: GreenCluster,
    /// The ACK runtime version of blue's SageMaker controller (`0.26.0`, `v0.26.0`): above
    /// 0.22.1 the deletion-policy annotation, else the finalizer removal.
    pub ack_runtime: String,
}

/// What [`AckProtectStep`] changes on blue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckProtectSpec {
    /// Step id.
    pub id: String,
    /// How.
    pub method: Protection,
    /// The endpoints, `namespace/name`.
    pub endpoints: Vec<String>,
}

impl StepSpec for AckProtectSpec {
    const KIND: &'static str = "bluegreen-ack-protect";
}

/// Protects blue's endpoints; the rollback puts their annotation and finalizers back.
pub struct AckProtectStep {
    spec: AckProtectSpec,
    blue: Cluster,
}

impl AckProtectStep {
    /// The step of `spec` on `blue`.
    pub fn new(spec: AckProtectSpec, blue: Cluster) -> AckProtectStep {
        AckProtectStep { spec, blue }
    }
}

const PROTECTION_FILE: &str = "ack-protection-before.json";

impl Step for AckProtectStep {
    fn id(&self) -> &str {
        &self.spec.id
    }

    fn component(&self) -> &str {
        "bluegreen"
    }

    fn record(&self) -> StepRecord {
        StepRecord::of(&self.spec)
    }

    fn description(&self) -> String {
        let how = match self.spec.method {
            Protection::RetainAnnotation => "annotate services.k8s.aws/deletion-policy: retain on",
            Protection::RemoveFinalizer => "remove the ACK finalizer of",
        };
        format!(
            "{how} blue's SageMaker endpoint resources {} (they no longer delete their endpoints)",
            self.spec.endpoints.join(", ")
        )
    }

    fn capture<'a>(&'a self, snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(async move {
            let states = ack::protection_state(&self.blue, &self.spec.endpoints).await?;
            snapshot.put_json(PROTECTION_FILE, &states)?;
            Ok(())
        })
    }

    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let states = ack::protection_state(&self.blue, &self.spec.endpoints).await?;
            ack::protect(&self.blue, &states, self.spec.method).await?;
            Ok(())
        })
    }

    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let states = ack::protection_state(&self.blue, &self.spec.endpoints).await?;
            let open: Vec<&str> = states
                .iter()
                .filter(|s| !ack::is_protected(s, self.spec.method))
                .map(|s| s.endpoint.as_str())
                .collect();
            if open.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "still able to delete their SageMaker endpoints: {}",
                    open.join(", ")
                )
                .into())
            }
        })
    }

    fn rollback<'a>(&'a self, snapshot: &'a Snapshot) -> StepFuture<'a> {
        Box::pin(async move {
            let before: Vec<ProtectionState> = snapshot.get_json(PROTECTION_FILE)?;
            ack::restore_protection(&self.blue, &before).await?;
            Ok(())
        })
    }
}

/// What [`AckAdoptStep`] creates on green.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckAdoptSpec {
    /// Step id.
    pub id: String,
    /// The green cluster.
    pub green: GreenCluster,
    /// The `AdoptedResource` manifests.
    pub adopted: Vec<Value>,
}

impl StepSpec for AckAdoptSpec {
    const KIND: &'static str = "bluegreen-ack-adopt";
}

/// Creates the adopted resources on green; the rollback deletes the ones it created.
pub struct AckAdoptStep {
    spec: AckAdoptSpec,
    green: LazyGreen,
}

impl AckAdoptStep {
    /// The step of `spec`; green is connected on first use.
    pub fn new(spec: AckAdoptSpec, stop: upgrade_core::process::StopSignal) -> AckAdoptStep {
        let green = LazyGreen::new(spec.green.clone(), stop);
        AckAdoptStep { spec, green }
    }

    async fn green(&self) -> std::result::Result<&Cluster, upgrade_kube::Error> {
        self.green.get().await
    }

    fn keys(&self) -> Vec<String> {
        self.spec
            .adopted
            .iter()
            .map(|m| {
                format!(
                    "{}/{}",
                    m["metadata"]["namespace"].as_str().unwrap_or("default"),
                    m["metadata"]["name"].as_str().unwrap_or_default()
                )
            })
            .collect()
    }
}

const ADOPTED_FILE: &str = "ack-adopted-before.json";

impl Step for AckAdoptStep {
    fn id(&self) -> &str {
        &self.spec.id
    }

    fn component(&self) -> &str {
        "bluegreen"
    }

    fn record(&self) -> StepRecord {
        StepRecord::of(&self.spec)
    }

    fn description(&self) -> String {
        format!(
            "adopt the SageMaker endpoints on green {} ({})",
            self.spec.green.expect_cluster,
            self.spec
                .adopted
                .iter()
                .map(|m| m["spec"]["aws"]["nameOrID"].as_str().unwrap_or_default())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }

    fn capture<'a>(&'a self, snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(async move {
            let before = ack::present(self.green().await?, ADOPTED_RESOURCE, &self.keys()).await?;
            snapshot.put_json(ADOPTED_FILE, &before)?;
            Ok(())
        })
    }

    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async move {
            ack::create_adopted(self.green().await?, &self.spec.adopted).await?;
            Ok(())
        })
    }

    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let keys = self.keys();
            let present = ack::present(self.green().await?, ADOPTED_RESOURCE, &keys).await?;
            let missing: Vec<&String> = keys.iter().filter(|k| !present.contains(k)).collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("adopted resources missing on green: {missing:?}").into())
            }
        })
    }

    fn rollback<'a>(&'a self, snapshot: &'a Snapshot) -> StepFuture<'a> {
        Box::pin(async move {
            let before: Vec<String> = snapshot.get_json(ADOPTED_FILE)?;
            let created: Vec<String> = self
                .keys()
                .into_iter()
                .filter(|k| !before.contains(k))
                .collect();
            ack::delete_adopted(self.green().await?, &created).await?;
            Ok(())
        })
    }
}

/// Plans the ACK stage: the runtime version read, blue's endpoints listed (each must name its
/// SageMaker endpoint), green able to adopt (the ACK runtime installed) and holding no
/// endpoint resource of the same name that would manage a second endpoint.
pub async fn plan_ack(ctx: &FlowContext, spec: &AckSpec) -> Result<Planned> {
    let runtime =
        upgrade_core::version::parse_loose_semver(&spec.ack_runtime).ok_or_else(|| {
            FlowError::invalid(
                "ack_runtime",
                format!("`{}` is not a version", spec.ack_runtime),
                "give the ACK runtime version of blue's SageMaker controller, e.g. 0.26.0",
            )
        })?;
    let method = Protection::for_runtime(&runtime);
    let (green_spec, green) = connect_green(ctx, &spec.green).await?;
    let blue = ctx.cluster();
    let endpoints = ack::endpoints(blue).await?.unwrap_or_default();
    if endpoints.is_empty() {
        return Err(FlowError::invalid(
            "ack_runtime",
            format!(
                "blue has no ACK SageMaker endpoint resources ({}.{})",
                ENDPOINT.3, ENDPOINT.0
            ),
            "nothing to protect or adopt: skip this stage",
        ));
    }
    let key = |e: &Value| {
        format!(
            "{}/{}",
            e["metadata"]["namespace"].as_str().unwrap_or("default"),
            e["metadata"]["name"].as_str().unwrap_or_default()
        )
    };
    let keys: Vec<String> = endpoints.iter().map(key).collect();
    let (mut changes, mut findings, mut blockers) = (Vec::new(), Vec::new(), Vec::new());
    if !ack::serves_adoption(&green).await? {
        blockers.push(format!(
            "green does not serve {}.{}: install the ACK runtime and SageMaker controller on green first",
            ADOPTED_RESOURCE.3, ADOPTED_RESOURCE.0
        ));
    }
    let namespaces: std::collections::BTreeSet<&str> = keys
        .iter()
        .filter_map(|k| k.split_once('/').map(|(ns, _)| ns))
        .collect();
    for ns in namespaces {
        let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
            kube::Api::all(green.client().clone());
        let found = namespaces
            .get_opt(ns)
            .await
            .map_err(|e| FlowError::failed(format!("read namespace {ns} on green"), e))?;
        if found.is_none() {
            blockers.push(format!(
                "namespace {ns} does not exist on green: move it first (upgrade-bluegreen transfer --namespace {ns})"
            ));
        }
    }
    let on_green = ack::present(&green, ENDPOINT, &keys).await?;
    let mut adopted = Vec::new();
    for endpoint in &endpoints {
        let k = key(endpoint);
        match ack::adopted_resource(endpoint) {
            Ok(manifest) => {
                let adopted_key = format!(
                    "{}/{}",
                    manifest["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or_default(),
                    manifest["metadata"]["name"].as_str().unwrap_or_default()
                );
                let already =
                    ack::present(&green, ADOPTED_RESOURCE, std::slice::from_ref(&adopted_key))
                        .await
                        .unwrap_or_default();
                if on_green.contains(&k) && already.is_empty() {
                    blockers.push(format!(
                        "green has endpoint resource {k} already, not adopted: it manages (or has created) a SageMaker endpoint of its own; delete it on green with the deletion-policy annotation set, then adopt"
                    ));
                }
                changes.push(format!(
                    "endpoint {k} (SageMaker {}): protected on blue, adopted on green as {adopted_key}",
                    manifest["spec"]["aws"]["nameOrID"].as_str().unwrap_or_default()
                ));
                adopted.push(manifest);
            }
            Err(why) => blockers.push(format!("{why}: it cannot be adopted by name")),
        }
    }
    findings.push(match method {
        Protection::RetainAnnotation => format!(
            "ACK runtime {runtime} > 0.22.1: blue's resources get services.k8s.aws/deletion-policy: retain"
        ),
        Protection::RemoveFinalizer => format!(
            "ACK runtime {runtime} <= 0.22.1: blue's resources lose their ACK finalizer (the annotation needs a newer runtime)"
        ),
    });
    findings.push("green's endpoint resources are created with deletion-policy retain too: remove it once blue is retired".into());
    let protect = AckProtectStep::new(
        AckProtectSpec {
            id: "bluegreen/ack-protect".into(),
            method,
            endpoints: keys,
        },
        blue.clone(),
    );
    let adopt = AckAdoptStep::new(
        AckAdoptSpec {
            id: "bluegreen/ack-adopt".into(),
            green: green_spec.clone(),
            adopted,
        },
        ctx.stop_signal().clone(),
    );
    let refs: [&dyn Step; 2] = [&protect, &adopt];
    let mut plan = Plan::new(
        "upgrade-bluegreen",
        ctx.cluster_name(),
        ctx.new_run_id("bluegreen-ack")?,
        &refs,
    );
    plan.changes = changes;
    plan.findings = findings;
    plan.blockers = blockers;
    let mut recorded = spec.clone();
    recorded.green = green_spec;
    Ok(Planned::new(
        ACK_FLOW,
        &recorded,
        plan,
        vec![Box::new(protect), Box::new(adopt)],
    ))
}

//! Seed 001's resource transfer (its Velero backup of blue and restore into green): the user
//! namespaces, the kinds in scope, the cluster-scoped profiles and the claims' volumes move
//! from blue (the run's cluster) to green, with Velero's scope semantics
//! ([`upgrade_kube::transfer`]). One reversible step: its rollback deletes from green what
//! the step created and keeps what green had before.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;
use upgrade_core::executor::{Step, StepFuture, StepRecord, StepSpec};
use upgrade_core::process::StopSignal;
use upgrade_core::snapshot::{Snapshot, SnapshotWriter};
use upgrade_kube::connect::{Cluster, ConnectOptions};
use upgrade_kube::transfer::{self, KindSlice, TransferScope};

use crate::context::FlowContext;
use crate::error::{FlowError, Result};
use crate::events::{Event, EventSink};
use crate::report::Plan;
use crate::run::Planned;

/// The flow's name in run records.
pub const TRANSFER_FLOW: &str = "bluegreen-transfer";

/// How to reach the green cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GreenCluster {
    /// Its kubeconfig (default: `KUBECONFIG` or `~/.kube/config`).
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// Its context (default: the kubeconfig's current one).
    #[serde(default)]
    pub context: Option<String>,
    /// The green cluster changes are allowed on (EKS name, kubeconfig cluster or API URL).
    pub expect_cluster: String,
}

impl GreenCluster {
    fn options(&self) -> ConnectOptions {
        ConnectOptions {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            expect_cluster: Some(self.expect_cluster.clone()),
        }
    }

    /// Connects, refusing a context that is not the expected green cluster.
    pub async fn connect(&self) -> std::result::Result<Cluster, upgrade_kube::Error> {
        Cluster::connect(&self.options()).await
    }
}

/// Green as a step reaches it: connected on first use (a step rebuilt from a run record
/// makes no network call until it runs), stopped with the run.
pub(crate) struct LazyGreen {
    green: GreenCluster,
    stop: StopSignal,
    cluster: OnceCell<Cluster>,
}

impl LazyGreen {
    pub(crate) fn new(green: GreenCluster, stop: StopSignal) -> LazyGreen {
        LazyGreen {
            green,
            stop,
            cluster: OnceCell::new(),
        }
    }

    pub(crate) async fn get(&self) -> std::result::Result<&Cluster, upgrade_kube::Error> {
        self.cluster
            .get_or_try_init(|| async {
                Ok(self
                    .green
                    .connect()
                    .await?
                    .with_stop_signal(self.stop.clone()))
            })
            .await
    }
}

/// What moves from blue to green.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferSpec {
    /// The green cluster.
    pub green: GreenCluster,
    /// The user namespaces.
    pub namespaces: Vec<String>,
    /// The kinds, as Velero's `--include-resources` names them (default: seed 001's list).
    #[serde(default = "seed_kinds")]
    pub kinds: Vec<String>,
    /// Move every object of the cluster-scoped kinds asked for, e.g. all profiles (default).
    #[serde(default = "yes")]
    pub include_cluster_resources: bool,
    /// Copy claims whose volume's data cannot move (not on a shared file system) unbound, so
    /// green gives them new, empty volumes. Without it such a claim blocks.
    #[serde(default)]
    pub allow_fresh_volumes: bool,
    /// CSI drivers of shared file systems (default: EFS and FSx).
    #[serde(default = "shared_drivers")]
    pub shared_drivers: Vec<String>,
}

fn seed_kinds() -> Vec<String> {
    transfer::SEED_KINDS.iter().map(|k| k.to_string()).collect()
}

fn shared_drivers() -> Vec<String> {
    transfer::SHARED_FILE_SYSTEM_DRIVERS
        .iter()
        .map(|k| k.to_string())
        .collect()
}

fn yes() -> bool {
    true
}

/// What [`TransferStep`] moves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferStepSpec {
    /// Step id.
    pub id: String,
    /// The green cluster.
    pub green: GreenCluster,
    /// The objects, by kind, in restore order.
    pub slices: Vec<KindSlice>,
    /// Claims copied unbound (new, empty volumes), `namespace/name`.
    #[serde(default)]
    pub fresh_claims: BTreeSet<String>,
}

impl StepSpec for TransferStepSpec {
    const KIND: &'static str = "bluegreen-transfer";
}

/// Copies the objects from blue to green; the rollback deletes the ones green did not have.
pub struct TransferStep {
    spec: TransferStepSpec,
    blue: Cluster,
    green: LazyGreen,
    events: Arc<dyn EventSink>,
}

const PRESENT_FILE: &str = "green-present-before.json";

impl TransferStep {
    /// The step of `spec`, reading from `blue`; green is connected on first use.
    pub fn new(spec: TransferStepSpec, blue: Cluster, events: Arc<dyn EventSink>) -> TransferStep {
        let green = LazyGreen::new(spec.green.clone(), blue.stop_signal().clone());
        TransferStep {
            spec,
            blue,
            green,
            events,
        }
    }

    async fn green(&self) -> std::result::Result<&Cluster, upgrade_kube::Error> {
        self.green.get().await
    }

    fn count(&self) -> usize {
        self.spec.slices.iter().map(|s| s.objects.len()).sum()
    }
}

impl Step for TransferStep {
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
            "copy {} objects ({}) from blue to green {}",
            self.count(),
            self.spec
                .slices
                .iter()
                .map(|s| format!("{} {}", s.objects.len(), s.kind.resource()))
                .collect::<Vec<_>>()
                .join(", "),
            self.spec.green.expect_cluster
        )
    }

    fn capture<'a>(&'a self, snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(async move {
            let present = transfer::present(self.green().await?, &self.spec.slices).await?;
            snapshot.put_json(PRESENT_FILE, &present)?;
            Ok(())
        })
    }

    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let green = self.green().await?;
            let outcome = transfer::copy(
                &self.blue,
                green,
                &self.spec.slices,
                &self.spec.fresh_claims,
            )
            .await?;
            let mut message = format!(
                "transfer: {} created on green, {} kept as green had them",
                outcome.created,
                outcome.existed.len()
            );
            if !outcome.existed.is_empty() {
                message.push_str(&format!(" ({})", outcome.existed.join(", ")));
            }
            if !outcome.gone.is_empty() {
                message.push_str(&format!(
                    "; gone from blue since the plan: {}",
                    outcome.gone.join(", ")
                ));
            }
            self.events.event(&Event::Note { message });
            Ok(())
        })
    }

    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let present = transfer::present(self.green().await?, &self.spec.slices).await?;
            let missing: Vec<String> = self
                .spec
                .slices
                .iter()
                .flat_map(|s| {
                    let resource = s.kind.resource();
                    s.objects.iter().map(move |o| format!("{resource} {o}"))
                })
                .filter(|o| !present.contains(o))
                .take(20)
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("not on green after the copy: {}", missing.join(", ")).into())
            }
        })
    }

    fn rollback<'a>(&'a self, snapshot: &'a Snapshot) -> StepFuture<'a> {
        Box::pin(async move {
            let before: BTreeSet<String> = snapshot.get_json(PRESENT_FILE)?;
            let deleted = transfer::remove(self.green().await?, &self.spec.slices, &before).await?;
            self.events.event(&Event::Note {
                message: format!(
                    "transfer undone: {deleted} objects deleted from green, {} it had before kept",
                    before.len()
                ),
            });
            Ok(())
        })
    }
}

/// Connects to green (its kubeconfig made absolute for the run record), refusing a context
/// that is not the green cluster named, or that is the run's own (blue) cluster.
pub(crate) async fn connect_green(
    ctx: &FlowContext,
    green: &GreenCluster,
) -> Result<(GreenCluster, Cluster)> {
    let mut green_spec = green.clone();
    if let Some(path) = &green_spec.kubeconfig {
        green_spec.kubeconfig = Some(std::path::absolute(path).unwrap_or_else(|_| path.clone()));
    }
    let green = green_spec
        .connect()
        .await
        .map_err(|e| match e {
            upgrade_kube::Error::WrongCluster { expected, actual, context } => FlowError::invalid(
                "green",
                format!("the green context `{context}` reaches `{actual}`, not the green cluster `{expected}`"),
                "point --green-kubeconfig and --green-context at green, or correct --green-cluster",
            ),
            e => FlowError::from(e),
        })?
        .with_stop_signal(ctx.stop_signal().clone());
    let blue = ctx.cluster();
    if green.identity().server_url == blue.identity().server_url {
        return Err(FlowError::invalid(
            "green",
            format!(
                "the green context reaches the run's own cluster ({})",
                blue.identity().server_url
            ),
            "point --green-context (and --green-kubeconfig) at the green cluster",
        ));
    }
    Ok((green_spec, green))
}

/// Plans the transfer: green connected and told apart from blue, the scope resolved on blue,
/// each object decided (moved, or skipped with the reason), what green lacks blocks.
pub async fn plan_transfer(ctx: &FlowContext, spec: &TransferSpec) -> Result<Planned> {
    if spec.namespaces.is_empty() {
        return Err(FlowError::invalid(
            "namespaces",
            "no namespace given",
            "name each user namespace to move (--namespace)",
        ));
    }
    if let Some(ack) = spec.kinds.iter().find(|k| k.contains("services.k8s.aws")) {
        return Err(FlowError::invalid(
            "kinds",
            format!("`{ack}` is an ACK kind: a copy on green would create a second AWS resource"),
            "leave ACK kinds out; `upgrade-bluegreen ack` protects them on blue and adopts them on green",
        ));
    }
    let (green_spec, green) = connect_green(ctx, &spec.green).await?;
    let blue = ctx.cluster();
    let scope = TransferScope {
        namespaces: spec.namespaces.clone(),
        kinds: spec.kinds.clone(),
        include_cluster_resources: spec.include_cluster_resources,
        shared_drivers: spec.shared_drivers.clone(),
    };
    let planned = transfer::plan(blue, &green, &scope)
        .await
        .map_err(|e| match e {
            upgrade_kube::Error::Backup(problem) => FlowError::invalid(
                "namespaces",
                problem,
                "name namespaces that exist on blue (kubectl get namespaces)",
            ),
            e => FlowError::from(e),
        })?;

    let mut changes = vec![format!(
        "copy {} objects from blue ({}) to green ({}), Velero's restore order; objects green has already are kept as they are ({} now)",
        planned.object_count(),
        blue.identity().display_name(),
        green.identity().display_name(),
        planned.existing_on_target
    )];
    for slice in &planned.slices {
        changes.push(format!(
            "  {} {}",
            slice.objects.len(),
            slice.kind.resource()
        ));
    }
    for volume in &planned.rebound_volumes {
        changes.push(format!(
            "  re-bind {volume} by its handle on green, reclaim policy Retain (green never deletes blue's data)"
        ));
    }
    let mut findings: Vec<String> = planned
        .skipped
        .iter()
        .map(|s| format!("skipped {}: {}", s.object, s.reason))
        .collect();
    findings.extend(
        planned
            .not_served
            .iter()
            .map(|k| format!("blue does not serve `{k}`: nothing of it to move")),
    );
    let mut blockers: Vec<String> = planned
        .missing_on_target
        .iter()
        .map(|k| {
            format!("green does not serve {k}: install the platform (its CRDs) on green first")
        })
        .collect();
    let fresh_claims: BTreeSet<String> = if spec.allow_fresh_volumes {
        for (claim, why) in &planned.unshared_claims {
            findings.push(format!(
                "claim {claim} is {why}: copied unbound, green gives it a new, empty volume (allowed)"
            ));
        }
        planned.unshared_claims.keys().cloned().collect()
    } else {
        for (claim, why) in &planned.unshared_claims {
            blockers.push(format!(
                "claim {claim} is {why}; move its data with Velero's snapshots, or accept a new, empty volume (`allow_fresh_volumes`, --allow-fresh-volumes)"
            ));
        }
        BTreeSet::new()
    };
    let step = TransferStep::new(
        TransferStepSpec {
            id: "bluegreen/transfer".into(),
            green: green_spec.clone(),
            slices: planned.slices,
            fresh_claims,
        },
        blue.clone(),
        ctx.events_handle(),
    );
    let refs: [&dyn Step; 1] = [&step];
    let mut plan = Plan::new(
        "upgrade-bluegreen",
        ctx.cluster_name(),
        ctx.new_run_id("bluegreen-transfer")?,
        &refs,
    );
    plan.changes = changes;
    plan.findings = findings;
    plan.blockers = blockers;
    let mut recorded = spec.clone();
    recorded.green = green_spec;
    Ok(Planned::new(
        TRANSFER_FLOW,
        &recorded,
        plan,
        vec![Box::new(step)],
    ))
}

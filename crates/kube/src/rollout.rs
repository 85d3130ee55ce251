//! Node rollout: replace nodes one (or N) at a time, a canary first, with surge, validating
//! the cluster after each batch (twice, as kOps does), pausing between batches, and stopping
//! at the first failure with a recorded, explained state.
//!
//! The infrastructure side is pluggable through [`NodeReplacer`]: an EKS managed node group
//! driven by Terraform, an Auto Scaling group, or kube-sim in tests. The rollout owns the
//! Kubernetes side: surge first (new capacity joins and is Ready before anything is
//! drained), then the PDB-aware [`drain`] of the batch, then the
//! replacer retires the drained nodes, then validation. Each step is written to the
//! `upgrade-status` ConfigMap, and the lock (when given) is renewed with the current step.

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde::Serialize;

use crate::connect::Cluster;
use crate::drain::{DrainOptions, DrainReport, drain};
use crate::error::{Error, Result};
use crate::lock::UpgradeLock;
use crate::retry::list_all;
use crate::status::{PartState, UpgradeStatus};

/// What a [`NodeReplacer`] returns when it fails: its own error, kept as the source.
pub type ReplacerError = Box<dyn std::error::Error + Send + Sync>;

/// The infrastructure half of a node rollout.
///
/// `surge` adds replacement capacity for a batch *before* it is drained (a managed node
/// group's surge, a Terraform apply of a larger desired size, a new blue node group); it
/// returns the names of the nodes that joined, when it knows them. `retire` removes a node
/// that has been drained (terminate the instance, scale the group in). `finish` runs once
/// after the last batch (remove an empty old node group, restore the desired size).
pub trait NodeReplacer: Send + Sync {
    /// Adds capacity for `batch` (nodes about to be drained); returns the new nodes' names.
    fn surge(
        &self,
        batch: &[String],
    ) -> impl Future<Output = Result<Vec<String>, ReplacerError>> + Send;
    /// Removes `node`, which is drained.
    fn retire(&self, node: &str) -> impl Future<Output = Result<(), ReplacerError>> + Send;
    /// Runs after the last batch.
    fn finish(&self) -> impl Future<Output = Result<(), ReplacerError>> + Send {
        async { Ok(()) }
    }
}

/// How the cluster is validated after each batch.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ValidationOptions {
    /// Consecutive passing validations needed (kOps: 2).
    pub passes: u32,
    /// Time between two validations.
    pub interval: Duration,
    /// How long validation may take before the rollout stops.
    pub timeout: Duration,
}

impl Default for ValidationOptions {
    fn default() -> Self {
        ValidationOptions {
            passes: 2,
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(15 * 60),
        }
    }
}

/// How to roll.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct RolloutOptions {
    /// Nodes per batch after the canary.
    pub batch_size: usize,
    /// Roll one node alone first and validate it (plus `canary_soak`) before the rest.
    pub canary: bool,
    /// Extra wait after the canary has validated.
    pub canary_soak: Duration,
    /// Pause between batches.
    pub pause: Duration,
    /// The drain used on every node.
    pub drain: DrainOptions,
    /// Validation after each batch.
    pub validation: ValidationOptions,
    /// The version nodes come from, for the status (`1.30`).
    pub from_version: String,
    /// The version nodes go to, for the status (`1.31`).
    pub to_version: String,
    /// The run, for the status ConfigMap.
    pub run_id: String,
}

impl Default for RolloutOptions {
    fn default() -> Self {
        RolloutOptions {
            batch_size: 1,
            canary: true,
            canary_soak: Duration::ZERO,
            pause: Duration::from_secs(30),
            drain: DrainOptions::default(),
            validation: ValidationOptions::default(),
            from_version: String::new(),
            to_version: String::new(),
            run_id: String::new(),
        }
    }
}

/// The step of a node's replacement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Adding replacement capacity.
    Surge,
    /// Draining.
    Drain,
    /// Removing the drained node.
    Retire,
    /// Validating the cluster.
    Validate,
    /// The replacer's final step.
    Finish,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::Surge => "surge",
            Step::Drain => "drain",
            Step::Retire => "retire",
            Step::Validate => "validate",
            Step::Finish => "finish",
        })
    }
}

/// What happened to one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeOutcome {
    /// The node.
    pub node: String,
    /// Whether it was the canary.
    pub canary: bool,
    /// Its drain, when it ran.
    pub drain: Option<DrainReport>,
    /// Its state.
    pub state: PartState,
}

/// Where and why a rollout stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stop {
    /// The batch being rolled.
    pub batch: Vec<String>,
    /// The step that failed.
    pub step: Step,
    /// Why, in full (a drain names every blocking pod and budget).
    pub reason: String,
    /// The state the cluster was left in and what to do next.
    pub left: String,
}

/// What a rollout did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RolloutReport {
    /// Every node asked for, in order, with its outcome.
    pub nodes: Vec<NodeOutcome>,
    /// Nodes the replacer added.
    pub added: Vec<String>,
    /// Validations run (each counts once, passing or not).
    pub validations: u32,
    /// Set when the rollout stopped early.
    pub stopped: Option<Stop>,
    /// How long it took.
    #[serde(skip)]
    pub elapsed: Duration,
}

impl RolloutReport {
    /// A summary for a terminal or a log.
    pub fn render(&self) -> String {
        let done = self
            .nodes
            .iter()
            .filter(|n| n.state == PartState::Complete)
            .count();
        let mut out = format!(
            "node rollout: {done}/{} nodes replaced, {} validations, {:.1}s",
            self.nodes.len(),
            self.validations,
            self.elapsed.as_secs_f64()
        );
        if let Some(stop) = &self.stopped {
            out.push_str(&format!(
                "\nstopped at {} of {}: {}\nleft: {}",
                stop.step,
                stop.batch.join(", "),
                stop.reason,
                stop.left
            ));
        }
        out
    }
}

/// Why the cluster did not validate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValidationFailure {
    /// `Kind namespace/name` of each unhealthy object, with what is wrong.
    pub problems: Vec<String>,
}

/// One validation pass: every node Ready, every Deployment and StatefulSet with all its
/// replicas available, every PodDisruptionBudget with at least its desired healthy pods.
/// Nodes in `leaving` (cordoned and about to go) are not required to be Ready.
pub async fn validate_once(cluster: &Cluster, leaving: &[String]) -> Result<ValidationFailure> {
    let client = cluster.client();
    let (nodes, deployments, statefulsets, pdbs) = tokio::try_join!(
        list_all::<Node, _>(client, 500, "list nodes", |n| {
            let name = n.metadata.name.clone().unwrap_or_default();
            let ready = crate::health::node_ready(&n);
            (!ready && !leaving.contains(&name)).then(|| format!("Node {name} is not Ready"))
        }),
        list_all::<Deployment, _>(client, 500, "list Deployments", |d| {
            crate::health::deployment_available(&d).err().map(|why| {
                format!(
                    "Deployment {}/{}: {why}",
                    d.metadata.namespace.as_deref().unwrap_or_default(),
                    d.metadata.name.as_deref().unwrap_or_default()
                )
            })
        }),
        list_all::<StatefulSet, _>(client, 500, "list StatefulSets", |s| {
            crate::health::statefulset_ready(&s).err().map(|why| {
                format!(
                    "StatefulSet {}/{}: {why}",
                    s.metadata.namespace.as_deref().unwrap_or_default(),
                    s.metadata.name.as_deref().unwrap_or_default()
                )
            })
        }),
        list_all::<PodDisruptionBudget, _>(client, 500, "list PodDisruptionBudgets", |p| {
            let status = p.status.as_ref()?;
            (status.current_healthy < status.desired_healthy).then(|| {
                format!(
                    "PodDisruptionBudget {}/{}: {}/{} healthy pods",
                    p.metadata.namespace.as_deref().unwrap_or_default(),
                    p.metadata.name.as_deref().unwrap_or_default(),
                    status.current_healthy,
                    status.desired_healthy
                )
            })
        }),
    )?;
    let mut problems = nodes;
    problems.extend(deployments);
    problems.extend(statefulsets);
    problems.extend(pdbs);
    Ok(ValidationFailure { problems })
}

/// Validates until `passes` consecutive validations pass, or the timeout; returns how many
/// validations ran, or the last problems.
async fn validate(
    cluster: &Cluster,
    options: &ValidationOptions,
    leaving: &[String],
) -> Result<std::result::Result<u32, (u32, ValidationFailure)>> {
    let deadline = Instant::now() + options.timeout;
    let (mut runs, mut streak) = (0, 0);
    loop {
        let result = validate_once(cluster, leaving).await?;
        runs += 1;
        if result.problems.is_empty() {
            streak += 1;
            if streak >= options.passes.max(1) {
                return Ok(Ok(runs));
            }
        } else {
            streak = 0;
            if Instant::now() + options.interval > deadline {
                return Ok(Err((runs, result)));
            }
        }
        cluster.pause(options.interval).await?;
    }
}

/// The nodes whose kubelet minor is below `target` (`1.31`), in name order: what a rollout
/// to `target` has to replace.
pub async fn nodes_below(
    cluster: &Cluster,
    target: upgrade_core::version::KubeMinor,
) -> Result<Vec<String>> {
    let mut names = list_all::<Node, _>(cluster.client(), 500, "list nodes", |n| {
        let version: upgrade_core::version::KubeVersion = n
            .status
            .as_ref()?
            .node_info
            .as_ref()?
            .kubelet_version
            .parse()
            .ok()?;
        (version.minor < target).then(|| n.metadata.name.clone().unwrap_or_default())
    })
    .await?;
    names.sort();
    Ok(names)
}

/// Splits `nodes` into batches: the canary alone first (when asked), then `batch_size` at a time.
pub fn batches(nodes: &[String], batch_size: usize, canary: bool) -> Vec<Vec<String>> {
    let size = batch_size.max(1);
    let (first, rest) = match (canary, nodes.split_first()) {
        (true, Some((first, rest))) => (Some(vec![first.clone()]), rest),
        _ => (None, nodes),
    };
    first
        .into_iter()
        .chain(rest.chunks(size).map(<[String]>::to_vec))
        .collect()
}

struct Run<'a> {
    cluster: &'a Cluster,
    options: &'a RolloutOptions,
    status: UpgradeStatus,
    report: RolloutReport,
    lock: Option<&'a mut UpgradeLock>,
}

impl Run<'_> {
    async fn record(&mut self, nodes: &[String], state: PartState) -> Result<()> {
        for node in nodes {
            self.status.set(
                &format!("Node {node}"),
                &self.options.from_version,
                &self.options.to_version,
                state,
            );
            if let Some(outcome) = self.report.nodes.iter_mut().find(|n| &n.node == node) {
                outcome.state = state;
            }
        }
        self.status.publish(self.cluster).await
    }

    async fn step(&mut self, step: Step, batch: &[String]) -> Result<()> {
        tracing::info!(%step, batch = ?batch, "rollout step");
        if let Some(lock) = self.lock.as_deref_mut() {
            lock.renew(Some(&format!("{step} {}", batch.join(","))))
                .await?;
        }
        Ok(())
    }

    /// Records the stop in the report and the ConfigMap, and returns the error.
    async fn stop(&mut self, batch: &[String], step: Step, reason: String, left: String) -> Error {
        self.status.timeline.push((
            jiff::Timestamp::now()
                .strftime("%Y-%m-%d %H:%M:%S UTC")
                .to_string(),
            format!(
                "rollout stopped at {step} of {}: {reason}",
                batch.join(", ")
            ),
        ));
        if let Err(e) = self.record(batch, PartState::Failed).await {
            tracing::warn!(error = %e, "could not record the stop in upgrade-status");
        }
        self.report.stopped = Some(Stop {
            batch: batch.to_vec(),
            step,
            reason,
            left,
        });
        Error::RolloutStopped(Box::new(self.report.clone()))
    }
}

/// Replaces `nodes` through `replacer`, batch by batch (see the module docs). On the first
/// failure it stops and returns [`Error::RolloutStopped`] with the report: which batch, which
/// step, why, and what state the cluster is in; the same is in the `upgrade-status` ConfigMap.
pub async fn rollout<R: NodeReplacer>(
    cluster: &Cluster,
    replacer: &R,
    nodes: &[String],
    options: &RolloutOptions,
    lock: Option<&mut UpgradeLock>,
) -> Result<RolloutReport> {
    cluster.guard()?;
    let started = Instant::now();
    let status = UpgradeStatus::read(cluster)
        .await
        .ok()
        .flatten()
        .filter(|s| s.run_id == options.run_id)
        .unwrap_or_else(|| UpgradeStatus {
            run_id: options.run_id.clone(),
            ..Default::default()
        });
    let plan = batches(nodes, options.batch_size, options.canary);
    let mut run = Run {
        cluster,
        options,
        status,
        report: RolloutReport {
            nodes: nodes
                .iter()
                .enumerate()
                .map(|(i, n)| NodeOutcome {
                    node: n.clone(),
                    canary: options.canary && i == 0,
                    drain: None,
                    state: PartState::Pending,
                })
                .collect(),
            added: Vec::new(),
            validations: 0,
            stopped: None,
            elapsed: Duration::ZERO,
        },
        lock,
    };
    run.record(nodes, PartState::Pending).await?;

    for (index, batch) in plan.iter().enumerate() {
        run.record(batch, PartState::InProgress).await?;

        run.step(Step::Surge, batch).await?;
        match replacer.surge(batch).await {
            Ok(added) => {
                // Recorded before anything else happens, so a rollback can retire them.
                run.status.surged.extend(added.iter().cloned());
                run.status.publish(cluster).await?;
                run.report.added.extend(added);
            }
            Err(e) => {
                let left = "nothing was drained; the batch's nodes still serve".to_string();
                return Err(run.stop(batch, Step::Surge, e.to_string(), left).await);
            }
        }
        // The new capacity must be Ready before anything moves onto it.
        wait_validated(&mut run, batch, &[]).await?;

        run.step(Step::Drain, batch).await?;
        let drains = futures::future::join_all(
            batch
                .iter()
                .map(|node| drain(cluster, node, &options.drain)),
        )
        .await;
        let mut failures = Vec::new();
        for (node, result) in batch.iter().zip(drains) {
            match result {
                Ok(report) => {
                    if let Some(o) = run.report.nodes.iter_mut().find(|o| &o.node == node) {
                        o.drain = Some(report);
                    }
                }
                Err(e) => failures.push(e.to_string()),
            }
        }
        if !failures.is_empty() {
            let left = format!(
                "{} cordoned by this run (annotation {}); pods that could leave have moved; new capacity stays. Fix the blockers and run again, or uncordon to give up",
                batch.join(", "),
                crate::cordon::CORDONED_BY
            );
            return Err(run
                .stop(batch, Step::Drain, failures.join("\n"), left)
                .await);
        }

        run.step(Step::Retire, batch).await?;
        for node in batch {
            if let Err(e) = replacer.retire(node).await {
                let left = format!(
                    "{node} is drained and cordoned but still exists; remove it, then run again"
                );
                return Err(run.stop(batch, Step::Retire, e.to_string(), left).await);
            }
        }

        // The batch's nodes are gone: its surge capacity is now their replacement.
        run.status.surged.clear();
        wait_validated(&mut run, batch, batch).await?;
        run.record(batch, PartState::Complete).await?;
        let last = index + 1 == plan.len();
        if !last {
            let pause = if index == 0 && options.canary {
                options.pause + options.canary_soak
            } else {
                options.pause
            };
            cluster.pause(pause).await?;
        }
    }
    run.step(Step::Finish, &[]).await?;
    if let Err(e) = replacer.finish().await {
        let left = "every node was replaced; only the replacer's final step failed".to_string();
        return Err(run.stop(&[], Step::Finish, e.to_string(), left).await);
    }
    run.report.elapsed = started.elapsed();
    Ok(run.report)
}

async fn wait_validated(run: &mut Run<'_>, batch: &[String], leaving: &[String]) -> Result<()> {
    run.step(Step::Validate, batch).await?;
    match validate(run.cluster, &run.options.validation, leaving).await? {
        Ok(runs) => {
            run.report.validations += runs;
            Ok(())
        }
        Err((runs, failure)) => {
            run.report.validations += runs;
            let reason = format!(
                "the cluster did not validate {} times in a row within {}s:\n  - {}",
                run.options.validation.passes,
                run.options.validation.timeout.as_secs(),
                failure.problems.join("\n  - ")
            );
            let left = format!(
                "{} handled so far; the rollout waits for you: fix what is listed, then run again",
                batch.join(", ")
            );
            Err(run.stop(batch, Step::Validate, reason, left).await)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    #[test]
    fn the_canary_goes_alone_then_batches() {
        let b = batches(&names(6), 2, true);
        assert_eq!(
            b,
            [vec!["n1"], vec!["n2", "n3"], vec!["n4", "n5"], vec!["n6"]]
        );
        assert_eq!(batches(&names(3), 1, false).len(), 3);
        assert_eq!(batches(&names(3), 0, false).len(), 3, "0 means 1");
        assert!(batches(&[], 2, true).is_empty());
    }
}

//! Fleet upgrades on Argo Workflows: one of the toolkit's commands run on many clusters, in
//! waves, by the engine the platform already runs instead of a scheduler of our own.
//!
//! - [`Inventory`]: the clusters (name, account, region, kube context or endpoint, Terraform
//!   folder, labels), from a YAML or JSON file.
//! - [`FleetSpec`] → [`plan`] → [`FleetPlan`]: canary clusters first, then waves by a label's
//!   values or by cumulative percentages; concurrency per AWS account and overall; soak time
//!   between waves; the failure threshold that stops the rollout; approval gates.
//! - [`workflow`]: the plan as an Argo `WorkflowTemplate` (and a `Workflow` that submits it):
//!   waves as DAG stages, each cluster's step running the command in a container through
//!   `upgrade-fleet run-cluster` (exit codes mapped to a result, state and report as output
//!   artifacts, Argo retrying only its own errors), `upgrade-rollback` on the failure path of a
//!   run left unfinished, a gate after each wave that stops the rollout past the threshold,
//!   `suspend` for soak and approval, a semaphore per account and the workflow's parallelism.
//! - [`cluster`]: what a cluster's step runs (the command, its exit code mapped, its report).
//! - [`report`]: one report across clusters from the steps' artifacts.
//! - [`rehearse`]: runs the generated template itself, locally (its DAG, depends, gates,
//!   parallelism and semaphores), on simulated or real clusters: the workflow's semantics,
//!   not a second design.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{FlowError, Result};

pub mod cluster;
pub mod rehearse;
pub mod report;
pub mod workflow;

/// One cluster of the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FleetCluster {
    /// A name unique in the inventory: lowercase letters, digits and `-` (it names the
    /// cluster's DAG task).
    pub name: String,
    /// Its AWS account (12 digits): the concurrency limit is per account.
    pub account: String,
    /// Its AWS region.
    pub region: String,
    /// Its kube context (in the kubeconfig the steps mount; default: its current one).
    #[serde(default)]
    pub context: Option<String>,
    /// Its API server's URL (the commands' `--expect-cluster` interlock); required.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Its Terraform folder (relative to the steps' working folder).
    #[serde(default)]
    pub terraform_dir: Option<String>,
    /// Labels the waves select on (`env: prod`, `canary: "true"`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl FleetCluster {
    /// The value of a command placeholder for this cluster (`{cluster}`, `{account}`,
    /// `{region}`, `{context}`, `{endpoint}`, `{terraform_dir}`).
    pub fn placeholder(&self, name: &str) -> Option<String> {
        match name {
            "cluster" => Some(self.name.clone()),
            "account" => Some(self.account.clone()),
            "region" => Some(self.region.clone()),
            "context" => self.context.clone(),
            "endpoint" => self.endpoint.clone(),
            "terraform_dir" => self.terraform_dir.clone(),
            _ => None,
        }
    }
}

/// The command placeholders, in the order the workflow passes them.
pub const PLACEHOLDERS: [&str; 6] = [
    "cluster",
    "account",
    "region",
    "context",
    "endpoint",
    "terraform_dir",
];

/// The clusters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    /// Every cluster.
    pub clusters: Vec<FleetCluster>,
}

impl Inventory {
    /// Reads and checks an inventory file (YAML or JSON).
    pub fn read(path: &Path) -> Result<Inventory> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            FlowError::invalid(
                "inventory",
                format!("{shown} cannot be read: {e}"),
                "give the inventory file's path",
            )
        })?;
        let inventory: Inventory = serde_norway::from_str(&text).map_err(|e| {
            FlowError::invalid(
                "inventory",
                format!("{shown} is not an inventory: {e}"),
                "write `clusters:` as a list of {name, account, region, endpoint, context, terraformDir, labels}",
            )
        })?;
        inventory.check()?;
        Ok(inventory)
    }

    /// Names unique and task-safe, accounts of 12 digits, a region, an endpoint.
    pub fn check(&self) -> Result<()> {
        if self.clusters.is_empty() {
            return Err(FlowError::invalid(
                "inventory",
                "lists no cluster",
                "add the fleet's clusters under `clusters:`",
            ));
        }
        let mut seen = BTreeSet::new();
        for c in &self.clusters {
            let bad = |problem: String, fix: &str| {
                FlowError::invalid("inventory", format!("cluster {}: {problem}", c.name), fix)
            };
            let task_safe = !c.name.is_empty()
                && c.name.len() <= 40
                && c.name
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
                && !c.name.starts_with('-');
            if !task_safe {
                return Err(bad(
                    "the name is not 1 to 40 lowercase letters, digits and `-`".into(),
                    "rename it (it names the cluster's task in the workflow)",
                ));
            }
            if !seen.insert(c.name.as_str()) {
                return Err(bad(
                    "the name appears twice".into(),
                    "give every cluster its own name",
                ));
            }
            if c.account.len() != 12 || !c.account.chars().all(|ch| ch.is_ascii_digit()) {
                return Err(bad(
                    format!("account `{}` is not 12 digits", c.account),
                    "give the AWS account id (quote it in YAML)",
                ));
            }
            if c.region.trim().is_empty() {
                return Err(bad("has no region".into(), "give its AWS region"));
            }
            if c.endpoint.as_deref().is_none_or(|e| e.trim().is_empty()) {
                return Err(bad(
                    "has no endpoint".into(),
                    "give its API server's URL: every changing command's --expect-cluster interlock, the failure path's rollback included",
                ));
            }
        }
        Ok(())
    }
}

/// How the clusters after the canaries are split into waves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WavesBy {
    /// One wave per value of the label, in this order; clusters with another value or none
    /// go last.
    Label {
        /// The label.
        key: String,
        /// Its values, in wave order.
        values: Vec<String>,
    },
    /// Cumulative percentages of the clusters (by name), e.g. 25, 50, 100.
    Percent(Vec<u8>),
}

impl WavesBy {
    /// Parses `KEY=V1,V2,...` (waves by a label's values).
    pub fn parse_label(text: &str) -> std::result::Result<WavesBy, String> {
        let (key, values) = parse_label(text)?;
        Ok(WavesBy::Label {
            key,
            values: values.split(',').map(str::to_string).collect(),
        })
    }

    /// Parses `P1,P2,...` (cumulative percentages; a trailing `%` is allowed).
    pub fn parse_percent(text: &str) -> std::result::Result<WavesBy, String> {
        text.split(',')
            .map(|p| p.trim().trim_end_matches('%').parse::<u8>())
            .collect::<std::result::Result<_, _>>()
            .map(WavesBy::Percent)
            .map_err(|_| format!("`{text}` is not percentages such as 25,50,100"))
    }
}

/// Parses a `KEY=VALUE` label.
pub fn parse_label(text: &str) -> std::result::Result<(String, String), String> {
    text.split_once('=')
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{text}` is not KEY=VALUE"))
}

/// How many failed clusters stop the rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Threshold {
    /// More than this many failed clusters stop it (0: the first failure).
    Count(u32),
    /// More than this percentage of the fleet failed stops it.
    Percent(u8),
}

impl Threshold {
    /// Parses `N` or `N%`.
    pub fn parse(text: &str) -> std::result::Result<Threshold, String> {
        let bad = || format!("`{text}` is not a count (2) or a percentage (10%)");
        match text.strip_suffix('%') {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= 100)
                .map(Threshold::Percent)
                .ok_or_else(bad),
            None => text.trim().parse().map(Threshold::Count).map_err(|_| bad()),
        }
    }

    /// The most failed clusters tolerated in a fleet of `total`.
    pub fn max_failures(self, total: usize) -> u32 {
        match self {
            Threshold::Count(n) => n,
            Threshold::Percent(p) => (total * p as usize / 100) as u32,
        }
    }
}

/// What to roll out and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetSpec {
    /// The clusters.
    pub inventory: Inventory,
    /// The command each cluster runs (program first), e.g. `upgrade-eks --target 1.31
    /// --kube-context {context} --expect-cluster {endpoint} --apply --yes`; placeholders in
    /// braces are the cluster's (see [`PLACEHOLDERS`]), and `{state_dir}` the step's state
    /// folder (give it as `--snapshot-dir {state_dir}`: the workflow keeps it as the step's
    /// `state` artifact, from which the failure path rolls back).
    pub command: Vec<String>,
    /// The image the steps run (it holds the toolkit's commands).
    pub image: String,
    /// Clusters with this label (`key=value`) go first, alone in the canary wave.
    #[serde(default)]
    pub canary: Option<(String, String)>,
    /// The waves after the canaries.
    pub waves: WavesBy,
    /// Clusters of one AWS account upgraded at once, at most.
    pub concurrency_per_account: u32,
    /// Clusters upgraded at once, at most.
    pub parallelism: u32,
    /// Wait between waves.
    pub soak: Duration,
    /// Failed clusters that stop the rollout (a canary's failure always does).
    pub failure_threshold: Threshold,
    /// A person approves before these waves start (1 is the first after the canaries).
    #[serde(default)]
    pub approval_before: Vec<usize>,
}

/// One wave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wave {
    /// `canary`, `wave-1`, …
    pub name: String,
    /// Its clusters, by name.
    pub clusters: Vec<String>,
    /// Failed clusters so far (this wave included) past which the rollout stops.
    pub max_failures: u32,
    /// A soak after it (none after the last).
    pub soak: Duration,
    /// A person approves before it starts.
    pub approval: bool,
}

/// The waves, ready to be a workflow or a rehearsal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetPlan {
    /// The spec it came from.
    pub spec: FleetSpec,
    /// The waves, in order.
    pub waves: Vec<Wave>,
}

impl FleetPlan {
    /// The cluster of `name`.
    pub fn cluster(&self, name: &str) -> Option<&FleetCluster> {
        self.spec.inventory.clusters.iter().find(|c| c.name == name)
    }

    /// The plan for people.
    pub fn render(&self) -> String {
        let total = self.spec.inventory.clusters.len();
        let mut out = format!(
            "fleet: {total} cluster(s) in {} wave(s); at most {} at once, {} per account; command: {}\n",
            self.waves.len(),
            self.spec.parallelism,
            self.spec.concurrency_per_account,
            self.spec.command.join(" ")
        );
        for wave in &self.waves {
            out.push_str(&format!(
                "  {}{}: {} (the rollout stops past {} failed){}\n",
                wave.name,
                if wave.approval {
                    " [approval first]"
                } else {
                    ""
                },
                wave.clusters.join(", "),
                wave.max_failures,
                if wave.soak.is_zero() {
                    String::new()
                } else {
                    format!("; then soak {}s", wave.soak.as_secs())
                }
            ));
        }
        out
    }
}

/// Splits the inventory into waves and checks the spec (bad input changes nothing: a plan
/// touches no cluster).
pub fn plan(spec: &FleetSpec) -> Result<FleetPlan> {
    spec.inventory.check()?;
    if spec.command.is_empty() {
        return Err(FlowError::invalid(
            "command",
            "is empty",
            "give the command each cluster runs, e.g. \"upgrade-eks --target 1.31 --kube-context {context} --expect-cluster {endpoint} --apply --yes\"",
        ));
    }
    for word in &spec.command {
        for name in placeholders_in(word) {
            // The step's own state folder, filled in where the step runs.
            if name == "state_dir" {
                continue;
            }
            if !PLACEHOLDERS.contains(&name.as_str()) {
                return Err(FlowError::invalid(
                    "command",
                    format!("{{{name}}} is not a placeholder"),
                    format!(
                        "use one of {}, {{state_dir}}",
                        PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
                    ),
                ));
            }
            if let Some(c) = spec
                .inventory
                .clusters
                .iter()
                .find(|c| c.placeholder(&name).is_none())
            {
                return Err(FlowError::invalid(
                    "command",
                    format!("uses {{{name}}}, which cluster {} has no value for", c.name),
                    "give it in the inventory, or leave the placeholder out",
                ));
            }
        }
    }
    if !spec.command.iter().any(|w| w.contains("{state_dir}")) {
        return Err(FlowError::invalid(
            "command",
            "never names {state_dir}",
            "add --snapshot-dir {state_dir}: the run's journal and snapshots become the step's state artifact, from which the failure path rolls back",
        ));
    }
    super::check_secrets("command", &spec.command)?;
    if spec.image.trim().is_empty() {
        return Err(FlowError::invalid(
            "image",
            "is empty",
            "give the image that holds the toolkit's commands",
        ));
    }
    if spec.parallelism == 0 || spec.concurrency_per_account == 0 {
        return Err(FlowError::invalid(
            "parallelism",
            "0 clusters at once would never start",
            "give 1 or more (and 1 or more per account)",
        ));
    }
    let total = spec.inventory.clusters.len();
    let max_failures = spec.failure_threshold.max_failures(total);
    let mut names: Vec<String> = spec
        .inventory
        .clusters
        .iter()
        .map(|c| c.name.clone())
        .collect();
    names.sort();
    let mut groups: Vec<(String, Vec<String>, bool)> = Vec::new();
    if let Some((key, value)) = &spec.canary {
        let canaries: Vec<String> = names
            .iter()
            .filter(|n| {
                spec.inventory
                    .clusters
                    .iter()
                    .any(|c| &c.name == *n && c.labels.get(key) == Some(value))
            })
            .cloned()
            .collect();
        if canaries.is_empty() {
            return Err(FlowError::invalid(
                "canary",
                format!("no cluster has label {key}={value}"),
                "label the canary clusters in the inventory, or leave --canary out",
            ));
        }
        names.retain(|n| !canaries.contains(n));
        groups.push(("canary".into(), canaries, true));
    }
    match &spec.waves {
        WavesBy::Label { key, values } => {
            for value in values {
                let wave: Vec<String> = names
                    .iter()
                    .filter(|n| {
                        spec.inventory
                            .clusters
                            .iter()
                            .any(|c| &c.name == *n && c.labels.get(key) == Some(value))
                    })
                    .cloned()
                    .collect();
                names.retain(|n| !wave.contains(n));
                if !wave.is_empty() {
                    groups.push((format!("{key}-{value}"), wave, false));
                }
            }
            if !names.is_empty() {
                groups.push(("rest".into(), std::mem::take(&mut names), false));
            }
        }
        WavesBy::Percent(steps) => {
            let mut last = 0u8;
            for p in steps {
                if *p <= last || *p > 100 {
                    return Err(FlowError::invalid(
                        "waves",
                        format!("{steps:?} is not rising percentages up to 100"),
                        "give cumulative percentages such as 25,50,100",
                    ));
                }
                last = *p;
            }
            if last != 100 {
                return Err(FlowError::invalid(
                    "waves",
                    format!("{steps:?} ends below 100: some clusters would never be upgraded"),
                    "end the percentages with 100",
                ));
            }
            let rest = std::mem::take(&mut names);
            let mut taken = 0;
            for p in steps {
                let upto = (rest.len() * *p as usize).div_ceil(100);
                if upto > taken {
                    groups.push((format!("{p}pct"), rest[taken..upto].to_vec(), false));
                    taken = upto;
                }
            }
        }
    }
    let count = groups.len();
    // Waves after the canaries, numbered from 1 as the plan shows them.
    let after_canaries = count - usize::from(spec.canary.is_some());
    if let Some(bad) = spec
        .approval_before
        .iter()
        .find(|n| **n == 0 || **n > after_canaries)
    {
        return Err(FlowError::invalid(
            "approval_before",
            format!(
                "wave {bad} does not exist: the plan has {after_canaries} wave(s) after the canaries"
            ),
            "number the waves from 1, the first after the canaries, as the plan shows them",
        ));
    }
    let waves = groups
        .into_iter()
        .enumerate()
        .map(|(i, (name, clusters, canary))| Wave {
            name,
            clusters,
            // A canary's failure stops the rollout whatever the threshold.
            max_failures: if canary { 0 } else { max_failures },
            soak: if i + 1 == count {
                Duration::ZERO
            } else {
                spec.soak
            },
            approval: spec
                .approval_before
                .contains(&(i + usize::from(spec.canary.is_none()))),
        })
        .collect();
    Ok(FleetPlan {
        spec: spec.clone(),
        waves,
    })
}

/// The `{name}` placeholders in `word` (a `${env:NAME}` secret reference is none).
pub fn placeholders_in(word: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = word;
    while let Some(start) = rest.find('{') {
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        if !rest[..start].ends_with('$') {
            out.push(rest[start + 1..start + end].to_string());
        }
        rest = &rest[start + end + 1..];
    }
    out
}

/// `word` with each placeholder replaced by `value(name)` (`${env:NAME}` left as it is).
pub fn fill(word: &str, value: impl Fn(&str) -> String) -> String {
    let mut out = String::new();
    let mut rest = word;
    while let Some(start) = rest.find('{') {
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        out.push_str(&rest[..start]);
        if rest[..start].ends_with('$') {
            out.push_str(&rest[start..start + end + 1]);
        } else {
            out.push_str(&value(&rest[start + 1..start + end]));
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(name: &str, account: &str, labels: &[(&str, &str)]) -> FleetCluster {
        FleetCluster {
            name: name.into(),
            account: account.into(),
            region: "us-east-1".into(),
            context: Some(name.into()),
            endpoint: Some(format!("https://{name}.example")),
            terraform_dir: None,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn spec(clusters: Vec<FleetCluster>, waves: WavesBy) -> FleetSpec {
        FleetSpec {
            inventory: Inventory { clusters },
            command: [
                "upgrade-eks",
                "--kube-context",
                "{context}",
                "--snapshot-dir",
                "{state_dir}",
            ]
            .map(String::from)
            .to_vec(),
            image: "img".into(),
            canary: None,
            waves,
            concurrency_per_account: 1,
            parallelism: 4,
            soak: Duration::from_secs(60),
            failure_threshold: Threshold::Count(1),
            approval_before: Vec::new(),
        }
    }

    fn waves(plan: &FleetPlan) -> Vec<(String, Vec<String>, u32, bool)> {
        plan.waves
            .iter()
            .map(|w| {
                (
                    w.name.clone(),
                    w.clusters.clone(),
                    w.max_failures,
                    w.approval,
                )
            })
            .collect()
    }

    #[test]
    fn canaries_go_first_then_label_waves_then_the_rest() {
        let a = "111111111111";
        let mut s = spec(
            vec![
                cluster("p2", a, &[("env", "prod")]),
                cluster("s1", a, &[("env", "staging")]),
                cluster("d1", a, &[("env", "dev"), ("canary", "yes")]),
                cluster("x1", a, &[]),
                cluster("p1", a, &[("env", "prod")]),
            ],
            WavesBy::Label {
                key: "env".into(),
                values: vec!["staging".into(), "prod".into()],
            },
        );
        s.canary = Some(("canary".into(), "yes".into()));
        s.approval_before = vec![2];
        let plan = plan(&s).unwrap();
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            waves(&plan),
            vec![
                ("canary".into(), names(&["d1"]), 0, false),
                ("env-staging".into(), names(&["s1"]), 1, false),
                ("env-prod".into(), names(&["p1", "p2"]), 1, true),
                ("rest".into(), names(&["x1"]), 1, false),
            ]
        );
        assert_eq!(plan.waves.last().unwrap().soak, Duration::ZERO);
        assert_eq!(plan.waves[0].soak, Duration::from_secs(60));
    }

    #[test]
    fn percentages_are_cumulative_and_thresholds_scale() {
        let clusters: Vec<FleetCluster> = (0..10)
            .map(|i| cluster(&format!("c{i}"), "111111111111", &[]))
            .collect();
        let mut s = spec(clusters, WavesBy::Percent(vec![10, 50, 100]));
        s.failure_threshold = Threshold::Percent(20);
        let plan = plan(&s).unwrap();
        let sizes: Vec<usize> = plan.waves.iter().map(|w| w.clusters.len()).collect();
        assert_eq!(sizes, [1, 4, 5]);
        assert!(plan.waves.iter().all(|w| w.max_failures == 2));
        assert_eq!(Threshold::parse("10%"), Ok(Threshold::Percent(10)));
        assert_eq!(Threshold::parse("3"), Ok(Threshold::Count(3)));
        assert!(Threshold::parse("lots").is_err());
        assert!(Threshold::parse("150%").is_err());
    }

    #[test]
    fn bad_input_names_the_problem() {
        let one = || vec![cluster("a", "111111111111", &[])];
        let err = |s: FleetSpec| plan(&s).unwrap_err().to_string();
        assert!(err(spec(one(), WavesBy::Percent(vec![50]))).contains("ends below 100"));
        assert!(err(spec(one(), WavesBy::Percent(vec![50, 40, 100]))).contains("rising"));
        let mut s = spec(one(), WavesBy::Percent(vec![100]));
        s.command.push("{kontext}".into());
        assert!(err(s).contains("{kontext} is not a placeholder"));
        let mut s = spec(one(), WavesBy::Percent(vec![100]));
        s.command.push("{terraform_dir}".into());
        assert!(err(s).contains("cluster a has no value for"));
        let mut s = spec(one(), WavesBy::Percent(vec![100]));
        s.command.truncate(3);
        assert!(err(s).contains("never names {state_dir}"));
        let mut s = spec(one(), WavesBy::Percent(vec![100]));
        s.command.push("--token=${env:HOME}".into());
        assert!(plan(&s).is_ok(), "a secret reference is no placeholder");
        let mut s = spec(one(), WavesBy::Percent(vec![100]));
        s.approval_before = vec![2];
        assert!(err(s).contains("wave 2 does not exist"));
        let mut s = spec(one(), WavesBy::Percent(vec![100]));
        s.inventory.clusters[0].endpoint = None;
        assert!(err(s).contains("has no endpoint"));
        let mut s = spec(one(), WavesBy::Percent(vec![100]));
        s.inventory.clusters.push(cluster("a", "111111111111", &[]));
        assert!(err(s).contains("appears twice"));
        let mut s = spec(one(), WavesBy::Percent(vec![100]));
        s.inventory.clusters[0].account = "12".into();
        assert!(err(s).contains("is not 12 digits"));
        let mut s = spec(one(), WavesBy::Percent(vec![100]));
        s.canary = Some(("tier".into(), "canary".into()));
        assert!(err(s).contains("no cluster has label tier=canary"));
        let mut s = spec(one(), WavesBy::Percent(vec![100]));
        s.inventory.clusters[0].name = "Prod_1".into();
        assert!(err(s).contains("lowercase"));
    }
}

//! `upgrade-eks`: one EKS control-plane hop (seed 000's procedure): preflight, add-on
//! compatibility, the `cluster_version` edit with plan review and apply, the wait for the
//! control plane, the node rollout (or the managed node group following in Terraform), the
//! add-on bumps, and post-checks.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use upgrade_checks::addons::AddonCatalog;
use upgrade_checks::config::Config;
use upgrade_checks::data::Data;
use upgrade_checks::report;
use upgrade_core::ProcessBuilder;
use upgrade_core::executor::{Step, StepFuture};
use upgrade_core::snapshot::{Snapshot, SnapshotWriter};
use upgrade_core::version::KubeMinor;
use upgrade_kube::connect::Cluster;
use upgrade_kube::facts::{GatherOptions, gather};
use upgrade_tf::HclFile;
use upgrade_tf::review::ReviewRules;
use upgrade_tf::step::{ApplyPolicy, TfvarsChangeStep};

use crate::cli::{CommonArgs, OutputFormat};
use crate::exit::{CliError, OK};
use crate::progress::wait_until;
use crate::replacer::{Commands, RolloutArgs};
use crate::session::{Plan, Session, live_version};

/// The component every step of this command belongs to.
const COMPONENT: &str = "eks";

/// How the nodes follow the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NodesMode {
    /// Roll the nodes below the new minor (canary, PDB-aware drain, validation) with --replacer.
    Rollout,
    /// A managed node group whose version follows the cluster in Terraform: the apply rolls it.
    Managed,
}

/// `upgrade-eks`: one EKS control-plane minor hop, end to end.
#[derive(Debug, clap::Parser)]
#[command(
    name = "upgrade-eks",
    version,
    about = "Upgrade an EKS cluster one Kubernetes minor: preflight, control plane via Terraform, nodes, add-ons, post-checks",
    after_help = "EKS moves one minor per hop: --target must be the live minor + 1 (run again for the next).\n\
                  The control-plane step cannot be undone: a failure after it rolls back the later steps and stops there.\n\
                  Exit codes: 0 done (or planned), 1 failed (rolled back as far as EKS allows), 2 bad input (nothing changed), 3 done with post-check warnings, 4 preflight blockers (nothing changed)."
)]
pub struct Args {
    /// The Kubernetes minor to move to: the live minor + 1, e.g. 1.31.
    #[arg(long, value_name = "MINOR")]
    pub target: String,
    /// The Terraform environment that owns the cluster.
    #[arg(long, value_name = "DIR")]
    pub terraform_dir: PathBuf,
    /// The variables file with the cluster version (default: DIR/terraform.tfvars).
    #[arg(long, value_name = "FILE")]
    pub tfvars: Option<PathBuf>,
    /// The variable that holds the control plane's minor.
    #[arg(long, value_name = "NAME", default_value = "cluster_version")]
    pub cluster_version_var: String,
    /// An installed EKS add-on and the tfvars variable with its version, e.g.
    /// coredns=coredns_version. Repeatable.
    #[arg(long = "addon", value_name = "NAME=VARIABLE")]
    pub addons: Vec<String>,
    /// `aws eks describe-addon-versions` JSON (default: run `aws` for the target when on PATH).
    #[arg(long, value_name = "FILE")]
    pub addon_versions: Option<PathBuf>,
    /// How the nodes follow the control plane.
    #[arg(long, value_enum, default_value_t = NodesMode::Rollout)]
    pub nodes: NodesMode,
    /// Node rollout flags (with --nodes rollout).
    #[command(flatten)]
    pub rollout: RolloutArgs,
    /// Check configuration for the preflight: thresholds, severities, ignores.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Flags every command shares.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// An add-on the run moves, from `--addon NAME=VARIABLE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddonVar {
    /// The EKS add-on name, e.g. `coredns`.
    pub name: String,
    /// The tfvars variable with its version.
    pub variable: String,
    /// Its version in the tfvars now.
    pub current: String,
}

/// Everything read and checked from the arguments and files, before the cluster is touched.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The target minor.
    pub target: KubeMinor,
    /// The tfvars file.
    pub tfvars: PathBuf,
    /// The control-plane minor the tfvars hold now.
    pub tfvars_minor: KubeMinor,
    /// The add-ons to move.
    pub addons: Vec<AddonVar>,
    /// The replacer's commands (`--replacer command`).
    pub commands: Option<Commands>,
    /// The preflight's configuration.
    pub config: Config,
}

fn usage(error: anyhow::Error) -> CliError {
    CliError::usage(error)
}

/// Checks every argument and file without touching the cluster: the target parses and EKS
/// knows it, the tfvars file parses and has the variables, the replacer flags fit together.
pub fn validate(args: &Args) -> Result<Inputs, CliError> {
    let target: KubeMinor = args.target.parse().map_err(|e| {
        usage(anyhow::anyhow!(
            "--target {}: {e}; give a Kubernetes minor such as 1.31",
            args.target
        ))
    })?;
    let data = Data::embedded();
    if data.eks_release(target).is_none() {
        return Err(usage(anyhow::anyhow!(
            "--target {target}: EKS's release calendar (embedded data) does not list {target}; pick a minor EKS offers (newest known: {})",
            data.newest_known_minor()
        )));
    }
    if !args.terraform_dir.is_dir() {
        return Err(usage(anyhow::anyhow!(
            "--terraform-dir {}: not a folder; pass the Terraform environment that owns the cluster",
            args.terraform_dir.display()
        )));
    }
    let tfvars = args
        .tfvars
        .clone()
        .unwrap_or_else(|| args.terraform_dir.join("terraform.tfvars"));
    let vars = HclFile::read(&tfvars).map_err(|e| {
        usage(anyhow::anyhow!(
            "{}: {e}; fix the file or pass --tfvars with the environment's variables file",
            tfvars.display()
        ))
    })?;
    let read_var = |name: &str, flag: &str| {
        vars.get_string(name).ok_or_else(|| {
            usage(anyhow::anyhow!(
                "{} has no string variable `{name}`; add it, or name the right one with {flag}",
                tfvars.display()
            ))
        })
    };
    let version_text = read_var(&args.cluster_version_var, "--cluster-version-var")?;
    let tfvars_minor: KubeMinor = version_text.parse().map_err(|e| {
        usage(anyhow::anyhow!(
            "{}: {} = \"{version_text}\" is not a Kubernetes minor ({e}); set it to e.g. \"1.30\"",
            tfvars.display(),
            args.cluster_version_var
        ))
    })?;
    let mut addons = Vec::new();
    for spec in &args.addons {
        let (name, variable) = spec
            .split_once('=')
            .filter(|(n, v)| !n.is_empty() && !v.is_empty())
            .ok_or_else(|| {
                usage(anyhow::anyhow!(
                    "--addon {spec}: expected NAME=VARIABLE, e.g. coredns=coredns_version"
                ))
            })?;
        let current = read_var(variable, "--addon NAME=VARIABLE")?;
        addons.push(AddonVar {
            name: name.into(),
            variable: variable.into(),
            current,
        });
    }
    let commands = match args.nodes {
        NodesMode::Rollout => args.rollout.validate()?,
        NodesMode::Managed => None,
    };
    let config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| {
                    format!(
                        "cannot read the check configuration {}; fix the path",
                        path.display()
                    )
                })
                .map_err(usage)?;
            Config::from_yaml(&text)
                .with_context(|| format!("check configuration {}", path.display()))
                .map_err(usage)?
        }
        None => Config::default(),
    };
    Ok(Inputs {
        target,
        tfvars,
        tfvars_minor,
        addons,
        commands,
        config,
    })
}

/// The add-on catalog for `target`: `--addon-versions FILE`, else `aws eks
/// describe-addon-versions --kubernetes-version <target>` when `aws` is on PATH.
pub fn addon_catalog(args: &Args, target: KubeMinor) -> Result<Option<AddonCatalog>, CliError> {
    if args.addons.is_empty() {
        return Ok(None);
    }
    let text = match &args.addon_versions {
        Some(path) => std::fs::read_to_string(path).map_err(|e| {
            usage(anyhow::anyhow!(
                "cannot read --addon-versions {}: {e}; fix the path",
                path.display()
            ))
        })?,
        None => {
            let aws = which::which("aws").map_err(|_| {
                usage(anyhow::anyhow!(
                    "--addon needs the add-on versions: pass --addon-versions FILE (the JSON of `aws eks describe-addon-versions --kubernetes-version {target}`), or put `aws` on PATH"
                ))
            })?;
            let mut cmd = ProcessBuilder::new(aws);
            cmd.args([
                "eks",
                "describe-addon-versions",
                "--kubernetes-version",
                &target.to_string(),
                "--output",
                "json",
            ])
            .timeout(Duration::from_secs(120));
            let out = cmd.exec().map_err(|e| {
                usage(anyhow::anyhow!(
                    "aws eks describe-addon-versions failed: {e}; check your AWS credentials, or pass --addon-versions FILE"
                ))
            })?;
            out.stdout_lossy()
        }
    };
    let catalog = AddonCatalog::from_json(&text).map_err(|e| {
        let from = args
            .addon_versions
            .as_deref()
            .map_or("aws eks describe-addon-versions".into(), |p| {
                p.display().to_string()
            });
        usage(anyhow::anyhow!("{from}: {e}"))
    })?;
    Ok(Some(catalog))
}

/// The add-on versions for `target`, one per `--addon`: (add-on, version to set, why); an
/// add-on EKS has no version of for the target is bad input.
pub fn addon_moves(
    inputs: &Inputs,
    catalog: Option<&AddonCatalog>,
) -> Result<Vec<(AddonVar, String, String)>, CliError> {
    let Some(catalog) = catalog else {
        return Ok(Vec::new());
    };
    let mut moves = Vec::new();
    for addon in &inputs.addons {
        let choice = catalog
            .choose(&addon.name, &addon.current, inputs.target)
            .ok_or_else(|| {
                usage(anyhow::anyhow!(
                    "add-on {}: the add-on versions list no version for Kubernetes {}; check the name, or fetch the list for {} again",
                    addon.name,
                    inputs.target,
                    inputs.target
                ))
            })?;
        // Kept when unchanged too: the steps (and their ids) depend on the arguments only,
        // so `upgrade-rollback` rebuilds the same list after the run.
        moves.push((addon.clone(), choice.version, choice.why));
    }
    Ok(moves)
}

/// Waits until the API server reports the hop's minor (EKS takes minutes).
#[derive(Debug, Clone)]
pub struct ControlPlaneWaitStep {
    /// Step id.
    pub id: String,
    /// The cluster.
    pub cluster: Cluster,
    /// The minor to wait for.
    pub minor: KubeMinor,
    /// How long to wait.
    pub timeout: Duration,
    /// Between two reads.
    pub interval: Duration,
}

impl Step for ControlPlaneWaitStep {
    fn id(&self) -> &str {
        &self.id
    }

    fn component(&self) -> &str {
        COMPONENT
    }

    fn description(&self) -> String {
        format!(
            "wait until the API server reports {} (at most {}s)",
            self.minor,
            self.timeout.as_secs()
        )
    }

    fn capture<'a>(&'a self, _snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(async { Ok(()) })
    }

    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let what = format!("control plane at {}", self.minor);
            wait_until(&what, self.timeout, self.interval, || async {
                let version = live_version(&self.cluster)
                    .await
                    .map_err(|e| e.error.to_string())?;
                if version.minor >= self.minor {
                    Ok(true)
                } else {
                    Err(format!("the API server reports {}", version.minor))
                }
            })
            .await?;
            Ok(())
        })
    }

    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let version = live_version(&self.cluster)
                .await
                .map_err(|e| e.error.to_string())?;
            if version.minor != self.minor {
                return Err(format!(
                    "the API server reports {}, not {}",
                    version.minor, self.minor
                )
                .into());
            }
            Ok(())
        })
    }

    fn rollback<'a>(&'a self, _snapshot: &'a Snapshot) -> StepFuture<'a> {
        // Waiting changed nothing.
        Box::pin(async { Ok(()) })
    }
}

/// Plan review for EKS changes: the cluster, its node groups and add-ons are never replaced
/// or destroyed by an upgrade.
fn review_rules() -> ReviewRules {
    ReviewRules::default()
        .protect_type("aws_eks_cluster")
        .protect_type("aws_eks_node_group")
        .protect_type("aws_eks_addon")
}

/// The steps of the hop, in order. Ids come from the arguments only (`eks/control-plane-1.31`).
pub async fn steps(args: &Args, session: &Session) -> Result<Vec<Box<dyn Step>>, CliError> {
    let inputs = validate(args)?;
    let catalog = addon_catalog(args, inputs.target)?;
    let moves = addon_moves(&inputs, catalog.as_ref())?;
    build_steps(args, &inputs, &moves, session, "").await
}

async fn build_steps(
    args: &Args,
    inputs: &Inputs,
    moves: &[(AddonVar, String, String)],
    session: &Session,
    run_id: &str,
) -> Result<Vec<Box<dyn Step>>, CliError> {
    let tf = session.terraform(&args.terraform_dir)?;
    let target = inputs.target;
    let timeout = session.timeout_or(Duration::from_secs(30 * 60));
    let policy = ApplyPolicy {
        rules: review_rules(),
        ..ApplyPolicy::default()
    };
    let mut steps: Vec<Box<dyn Step>> = vec![
        Box::new(TfvarsChangeStep {
            id: format!("eks/control-plane-{target}"),
            component: COMPONENT.into(),
            tf: tf.clone(),
            tfvars: inputs.tfvars.clone(),
            variable: args.cluster_version_var.clone(),
            value: target.to_string(),
            irreversible: Some(format!(
                "EKS cannot move a control plane back from {target}"
            )),
            policy: policy.clone(),
        }),
        Box::new(ControlPlaneWaitStep {
            id: format!("eks/wait-control-plane-{target}"),
            cluster: session.cluster.clone(),
            minor: target,
            timeout,
            interval: Duration::from_millis(500),
        }),
    ];
    if args.nodes == NodesMode::Rollout {
        let step = args
            .rollout
            .rollout_step(
                format!("eks/nodes-{target}"),
                COMPONENT,
                session,
                target,
                Vec::new(),
                inputs.commands.clone(),
                run_id,
            )
            .await?;
        steps.push(Box::new(step));
    }
    for (addon, version, _) in moves {
        steps.push(Box::new(TfvarsChangeStep {
            id: format!("eks/addon-{}-{target}", addon.name),
            component: COMPONENT.into(),
            tf: tf.clone(),
            tfvars: inputs.tfvars.clone(),
            variable: addon.variable.clone(),
            value: version.clone(),
            irreversible: None,
            policy: policy.clone(),
        }));
    }
    Ok(steps)
}

fn render_report(
    report: &upgrade_checks::checks::Report,
    facts: &upgrade_checks::facts::Facts,
    format: OutputFormat,
) -> String {
    match format {
        OutputFormat::Text => report::text(report),
        OutputFormat::Json => report::json(report),
        OutputFormat::Markdown => report::playbook(report, facts),
        OutputFormat::Junit => report::junit(report),
    }
}

/// Runs the command; returns the exit code.
pub async fn run(args: &Args, out: &mut dyn std::io::Write) -> Result<u8, CliError> {
    let inputs = validate(args)?;
    let catalog = addon_catalog(args, inputs.target)?;
    let moves = addon_moves(&inputs, catalog.as_ref())?;
    let session = Session::open(&args.common).await?;
    let target = inputs.target;
    let live = live_version(&session.cluster).await?;
    if target <= live.minor {
        return Err(usage(anyhow::anyhow!(
            "--target {target}: the control plane already runs {}; pick a newer minor",
            live.minor
        )));
    }
    if live.minor.next() != target {
        return Err(usage(anyhow::anyhow!(
            "--target {target} skips a minor: EKS moves one minor at a time and the control plane runs {}; run with --target {} first, then {target}",
            live.minor,
            live.minor.next()
        )));
    }
    if inputs.tfvars_minor != live.minor {
        return Err(usage(anyhow::anyhow!(
            "{} sets {} = \"{}\" but the control plane runs {}; reconcile the two (terraform plan) before upgrading",
            inputs.tfvars.display(),
            args.cluster_version_var,
            inputs.tfvars_minor,
            live.minor
        )));
    }

    // Preflight: the checks for the hop on live facts; blockers stop here with the report.
    let gathered = gather(&session.cluster, &GatherOptions::default())
        .await
        .context("gather the cluster's facts for the preflight")
        .map_err(CliError::failed)?;
    let preflight =
        upgrade_checks::checks::run(&gathered.facts, target, &inputs.config, Data::embedded())
            .map_err(|e| usage(anyhow::anyhow!("--target {target}: {e}")))?;
    if preflight.exit_code() == upgrade_checks::checks::EXIT_BLOCKERS {
        out.write_all(render_report(&preflight, &gathered.facts, args.common.output).as_bytes())
            .context("write the report")
            .map_err(CliError::failed)?;
        return Ok(upgrade_checks::checks::EXIT_BLOCKERS);
    }

    let run_id = Session::new_run_id(COMPONENT);
    let steps = build_steps(args, &inputs, &moves, &session, &run_id).await?;
    let mut changes = vec![format!(
        "control plane {} -> {target} ({} = \"{target}\" in {})",
        live.minor,
        args.cluster_version_var,
        inputs.tfvars.display()
    )];
    match args.nodes {
        NodesMode::Managed => changes.push(format!(
            "nodes: the managed node group follows the cluster version in Terraform ({})",
            args.terraform_dir.display()
        )),
        NodesMode::Rollout => {
            let below: Vec<&str> = gathered
                .facts
                .nodes
                .iter()
                .filter(|n| n.kubelet_version.minor < target)
                .map(|n| n.name.as_str())
                .collect();
            changes.push(format!(
                "nodes: replace {} node(s) below {target}: {}",
                below.len(),
                below.join(", ")
            ));
            for d in gathered.drains.iter().filter(|d| !d.drains()) {
                changes.push(format!(
                    "  drain of {} would block now: {}",
                    d.node,
                    d.blocked
                        .iter()
                        .map(|b| format!("{}/{} ({})", b.namespace, b.name, b.reason))
                        .collect::<Vec<_>>()
                        .join("; ")
                ));
            }
        }
    }
    for (addon, version, why) in &moves {
        changes.push(if *version == addon.current {
            format!("add-on {} stays at {version} ({why})", addon.name)
        } else {
            format!(
                "add-on {} {} -> {version} ({why})",
                addon.name, addon.current
            )
        });
    }
    let findings = preflight
        .findings
        .iter()
        .filter(|f| f.severity == upgrade_checks::checks::Severity::Warning)
        .map(|f| match &f.subject {
            Some(subject) => format!("{} {subject}: {}", f.code, f.message),
            None => format!("{} {}: {}", f.code, f.title, f.message),
        })
        .collect();
    let plan = Plan {
        command: "upgrade-eks".into(),
        run_id,
        changes,
        findings,
    };
    let refs: Vec<&dyn Step> = steps.iter().map(|s| s.as_ref()).collect();
    let code = session.execute(&plan, &refs, out).await?;
    if code != OK || !args.common.apply {
        return Ok(code);
    }
    post_checks(&session.cluster, out).await
}

/// After the hop: cluster health, and no node more than the allowed skew behind.
async fn post_checks(cluster: &Cluster, out: &mut dyn std::io::Write) -> Result<u8, CliError> {
    let health = upgrade_kube::health::check(cluster)
        .await
        .context("post-check: cluster health")
        .map_err(CliError::failed)?;
    let text = if health.healthy() {
        "post-checks: the cluster is healthy\n".to_string()
    } else {
        format!(
            "post-checks: problems after the upgrade\n{}",
            health.render()
        )
    };
    out.write_all(text.as_bytes())
        .context("write the report")
        .map_err(CliError::failed)?;
    Ok(if health.healthy() {
        OK
    } else {
        upgrade_checks::checks::EXIT_WARNINGS
    })
}

impl crate::cli::Command for Args {
    fn common(&self) -> &crate::cli::CommonArgs {
        &self.common
    }

    async fn run(&self, out: &mut dyn std::io::Write) -> Result<u8, crate::exit::CliError> {
        run(self, out).await
    }
}

//! One EKS control-plane hop (seed 000's procedure): preflight, add-on versions for the
//! target, the `cluster_version` edit with plan review and apply, the wait for the control
//! plane, the node rollout (or the managed node group following in Terraform), the add-on
//! bumps, and post-checks.
//!
//! Every add-on version is chosen while planning and written into the run record, so a later
//! rollback needs neither `aws` nor the add-on list.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use upgrade_checks::addons::{AddonCatalog, NoAddonChoice};
use upgrade_checks::checks::Severity;
use upgrade_checks::config::Config;
use upgrade_checks::data::Data;
use upgrade_core::executor::{Step, StepFuture, StepRecord, StepSpec};
use upgrade_core::snapshot::{Snapshot, SnapshotWriter};
use upgrade_core::version::KubeMinor;
use upgrade_kube::connect::Cluster;
use upgrade_kube::facts::{GatherOptions, gather};
use upgrade_tf::HclFile;
use upgrade_tf::review::ReviewRules;
use upgrade_tf::step::{ApplyPolicy, TfvarsChangeSpec, TfvarsChangeStep};

use crate::context::FlowContext;
use crate::error::{FlowError, Result, field};
use crate::events::{EventSink, wait_until};
use crate::flows::nodes::{
    ReplacerCommands, RolloutSpec, drain_predictions, replacement_notes, rollout_step,
};
use crate::report::Plan;
use crate::run::{Planned, PostCheck};

/// The flow's name in run records.
pub const FLOW: &str = "eks-hop";

/// The component every step of the hop belongs to.
const COMPONENT: &str = "eks";

/// How managed node groups' nodes follow the control plane. Karpenter's nodes are always
/// rolled (Karpenter replaces them), self-managed nodes with the rollout's commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodesMode {
    /// Roll them like self-managed nodes, with the rollout's surge/retire commands (canary,
    /// PDB-aware drain, validation).
    #[default]
    Rollout,
    /// Their version follows the cluster in Terraform: the apply rolls them, and the node
    /// rollout leaves them alone.
    Managed,
}

/// An EKS add-on the hop moves, and the tfvars variable holding its version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddonVar {
    /// The EKS add-on, e.g. `coredns`.
    pub name: String,
    /// The variable with its version, e.g. `coredns_version`.
    pub variable: String,
}

impl AddonVar {
    /// Parses `NAME=VARIABLE` (e.g. `coredns=coredns_version`).
    pub fn parse(text: &str) -> Result<AddonVar> {
        text.split_once('=')
            .filter(|(n, v)| !n.is_empty() && !v.is_empty())
            .map(|(name, variable)| AddonVar {
                name: name.into(),
                variable: variable.into(),
            })
            .ok_or_else(|| {
                FlowError::invalid(
                    "addons",
                    format!("`{text}` is not NAME=VARIABLE"),
                    "write it like coredns=coredns_version",
                )
            })
    }
}

/// Where the add-on versions come from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AddonVersions {
    /// `aws eks describe-addon-versions --kubernetes-version <target>`, run while planning.
    #[default]
    Aws,
    /// A saved output of it.
    File(PathBuf),
}

/// One EKS minor hop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EksHopSpec {
    /// The minor to move to: the live minor + 1, e.g. `1.31`.
    pub target: String,
    /// The Terraform environment that owns the cluster.
    pub terraform_dir: PathBuf,
    /// The variables file with the cluster version (default: `terraform_dir/terraform.tfvars`).
    #[serde(default)]
    pub tfvars: Option<PathBuf>,
    /// The variable that holds the control plane's minor.
    pub cluster_version_var: String,
    /// The add-ons to move, with the variables holding their versions.
    #[serde(default)]
    pub addons: Vec<AddonVar>,
    /// Where their versions for the target come from.
    #[serde(default)]
    pub addon_versions: AddonVersions,
    /// Move an add-on to an older version when the installed one does not run on the
    /// target and only older ones do. Off: such a hop is blocked (an installed version that
    /// runs on the target is never moved down either way).
    #[serde(default)]
    pub allow_addon_downgrade: bool,
    /// How the nodes follow.
    #[serde(default)]
    pub nodes: NodesMode,
    /// The node rollout (with [`NodesMode::Rollout`]).
    #[serde(default)]
    pub rollout: RolloutSpec,
    /// The preflight's check configuration (thresholds, severities, ignores).
    #[serde(default)]
    pub config: Option<PathBuf>,
    /// A folder with newer version data files (see the preflight's `data`).
    #[serde(default)]
    pub data: Option<PathBuf>,
    /// EKS's own API (Upgrade Insights), reached through the AWS CLI.
    #[serde(default)]
    pub eks_api: crate::flows::insights::EksApi,
    /// Go past `ERROR` upgrade-readiness insights: EKS's `force` on `UpdateClusterVersion`,
    /// set through [`EksHopSpec::force_update_var`] before the control plane moves, and
    /// recorded in the run. Only when asked.
    #[serde(default)]
    pub force: bool,
    /// The tfvars variable the Terraform environment passes to `aws_eks_cluster`'s
    /// `force_update_version` (used with `force`).
    #[serde(default = "default_force_update_var")]
    pub force_update_var: String,
    /// EKS managed add-ons moved through EKS's API (`UpdateAddon`), not the tfvars, e.g.
    /// `vpc-cni`, `aws-ebs-csi-driver`.
    #[serde(default)]
    pub managed_addons: Vec<String>,
    /// What EKS does with add-on fields changed by hand: `PRESERVE` (default), `OVERWRITE`
    /// or `NONE`.
    #[serde(default = "default_resolve_conflicts")]
    pub resolve_conflicts: String,
    /// The limit of each wait (control plane, drains, validation).
    pub timeout: Duration,
}

impl EksHopSpec {
    /// A hop to `target` of the environment in `terraform_dir`, with the defaults.
    pub fn new(target: &str, terraform_dir: impl Into<PathBuf>) -> EksHopSpec {
        EksHopSpec {
            target: target.into(),
            terraform_dir: terraform_dir.into(),
            tfvars: None,
            cluster_version_var: "cluster_version".into(),
            addons: Vec::new(),
            addon_versions: AddonVersions::Aws,
            allow_addon_downgrade: false,
            nodes: NodesMode::Rollout,
            rollout: RolloutSpec::default(),
            config: None,
            data: None,
            eks_api: crate::flows::insights::EksApi::default(),
            force: false,
            force_update_var: default_force_update_var(),
            managed_addons: Vec::new(),
            resolve_conflicts: default_resolve_conflicts(),
            timeout: Duration::from_secs(30 * 60),
        }
    }
}

fn default_force_update_var() -> String {
    "force_update_version".into()
}

fn default_resolve_conflicts() -> String {
    "PRESERVE".into()
}

/// The spec checked against its files, without touching the cluster.
#[derive(Debug, Clone)]
struct Inputs {
    target: KubeMinor,
    terraform_dir: PathBuf,
    tfvars: PathBuf,
    tfvars_minor: KubeMinor,
    /// Each add-on with its version in the tfvars now.
    addons: Vec<(AddonVar, String)>,
    commands: Option<ReplacerCommands>,
    config: Config,
    data: std::borrow::Cow<'static, Data>,
}

fn absolute(path: &std::path::Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn validate(spec: &EksHopSpec) -> Result<Inputs> {
    let target: KubeMinor = spec.target.parse().map_err(|e| {
        FlowError::invalid(
            "target",
            format!("{}: {e}", spec.target),
            "give a Kubernetes minor such as 1.31",
        )
    })?;
    let data = crate::flows::preflight::load_data(spec.data.as_deref())?;
    if data.eks_release(target).is_none() {
        let upstream = data
            .upstream_release(target)
            .map(|u| format!(" ({u})"))
            .unwrap_or_default();
        return Err(FlowError::invalid(
            "target",
            format!(
                "{target}: the EKS release calendar of the version data does not list {target}{upstream}"
            ),
            format!(
                "pick a minor EKS offers (newest known: {}), or give newer data with {}",
                data.newest_known_minor(),
                field("data")
            ),
        ));
    }
    let terraform_dir = absolute(&spec.terraform_dir);
    if !terraform_dir.is_dir() {
        return Err(FlowError::invalid(
            "terraform_dir",
            format!("{}: not a folder", spec.terraform_dir.display()),
            "give the Terraform environment that owns the cluster",
        ));
    }
    let tfvars = absolute(
        &spec
            .tfvars
            .clone()
            .unwrap_or_else(|| terraform_dir.join("terraform.tfvars")),
    );
    let vars = HclFile::read(&tfvars).map_err(|e| {
        FlowError::invalid(
            "tfvars",
            format!("{}: {e}", tfvars.display()),
            format!(
                "fix the file or set {} to the environment's variables file",
                field("tfvars")
            ),
        )
    })?;
    let read_var = |name: &str, which: &str| {
        vars.get_string(name).ok_or_else(|| {
            FlowError::invalid(
                which,
                format!("{} has no string variable `{name}`", tfvars.display()),
                format!("add it, or name the right one with {}", field(which)),
            )
        })
    };
    let version_text = read_var(&spec.cluster_version_var, "cluster_version_var")?;
    let tfvars_minor: KubeMinor = version_text.parse().map_err(|e| {
        FlowError::invalid(
            "cluster_version_var",
            format!(
                "{}: {} = \"{version_text}\" is not a Kubernetes minor ({e})",
                tfvars.display(),
                spec.cluster_version_var
            ),
            "set it to e.g. \"1.30\"",
        )
    })?;
    let mut addons = Vec::new();
    for addon in &spec.addons {
        let current = read_var(&addon.variable, "addons")?;
        addons.push((addon.clone(), current));
    }
    let commands = spec.rollout.validate()?;
    let config = match &spec.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                FlowError::invalid(
                    "config",
                    format!(
                        "cannot read the check configuration {}: {e}",
                        path.display()
                    ),
                    "fix the path",
                )
            })?;
            Config::from_yaml(&text).map_err(|e| {
                FlowError::invalid(
                    "config",
                    format!("check configuration {}: {e}", path.display()),
                    "fix the file",
                )
            })?
        }
        None => Config::default(),
    };
    Ok(Inputs {
        target,
        terraform_dir,
        tfvars,
        tfvars_minor,
        addons,
        commands,
        config,
        data,
    })
}

/// The add-on catalog for the target: the file, else `aws eks describe-addon-versions`.
async fn addon_catalog(
    ctx: &FlowContext,
    spec: &EksHopSpec,
    target: KubeMinor,
) -> Result<Option<AddonCatalog>> {
    if spec.addons.is_empty() {
        return Ok(None);
    }
    if let AddonVersions::File(_) = &spec.addon_versions {
        return addon_catalog_file(spec).map(Some);
    }
    // `DescribeAddonVersions` needs no cluster name, only the CLI's settings.
    let eks = spec
        .eks_api
        .resolved(ctx)
        .builder(String::new())
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|_| {
            FlowError::invalid(
                "addon_versions",
                "the add-on versions are needed and `aws` is not on PATH",
                format!(
                    "give {} (the JSON of `aws eks describe-addon-versions --kubernetes-version {target}`), or put `aws` on PATH",
                    field("addon_versions")
                ),
            )
        })?;
    let json = eks
        .describe_addon_versions(&target.to_string(), None)
        .await
        .map_err(|e| {
            FlowError::invalid(
                "addon_versions",
                format!("aws eks describe-addon-versions failed: {e}"),
                format!(
                    "check your AWS credentials, or give {} as a file",
                    field("addon_versions")
                ),
            )
        })?;
    let catalog = AddonCatalog::from_json(&json.to_string()).map_err(|e| {
        FlowError::invalid(
            "addon_versions",
            format!("aws eks describe-addon-versions: {e}"),
            "",
        )
    })?;
    Ok(Some(catalog))
}

/// The catalog from the add-on versions file (`AddonVersions::File`).
fn addon_catalog_file(spec: &EksHopSpec) -> Result<AddonCatalog> {
    let AddonVersions::File(path) = &spec.addon_versions else {
        unreachable!("called for a file only");
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        FlowError::invalid(
            "addon_versions",
            format!("cannot read {}: {e}", path.display()),
            "fix the path",
        )
    })?;
    AddonCatalog::from_json(&text)
        .map_err(|e| FlowError::invalid("addon_versions", format!("{}: {e}", path.display()), ""))
}

/// One add-on's move: the add-on, its version now, the version to set, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AddonMove {
    addon: AddonVar,
    current: String,
    version: String,
    why: String,
}

/// The add-on moves of the hop, and the blockers of add-ons only a downgrade would move.
fn addon_moves(
    inputs: &Inputs,
    catalog: Option<&AddonCatalog>,
    allow_downgrade: bool,
) -> Result<(Vec<AddonMove>, Vec<String>)> {
    let Some(catalog) = catalog else {
        return Ok((Vec::new(), Vec::new()));
    };
    let (mut moves, mut blockers) = (Vec::new(), Vec::new());
    for (addon, current) in &inputs.addons {
        match catalog.choose(&addon.name, current, inputs.target, allow_downgrade) {
            Ok(choice) => moves.push(AddonMove {
                addon: addon.clone(),
                current: current.clone(),
                version: choice.version,
                why: choice.why,
            }),
            Err(why @ NoAddonChoice::OnlyDowngrades { .. }) => blockers.push(format!(
                "add-on {}: {why}; allow it (`allow_addon_downgrade`, `--allow-addon-downgrade`) if that is intended",
                addon.name
            )),
            Err(why @ NoAddonChoice::NotListed { .. }) => {
                return Err(FlowError::invalid(
                    "addons",
                    format!("add-on {}: {why}", addon.name),
                    format!(
                        "check the name, or fetch the list for {} again",
                        inputs.target
                    ),
                ));
            }
        }
    }
    Ok((moves, blockers))
}

/// What [`ControlPlaneWaitStep`] waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlPlaneWaitSpec {
    /// Step id, e.g. `eks/wait-control-plane-1.31`.
    pub id: String,
    /// The minor to wait for.
    pub minor: KubeMinor,
    /// How long to wait.
    pub timeout: Duration,
    /// Between two reads.
    pub interval: Duration,
}

impl StepSpec for ControlPlaneWaitSpec {
    const KIND: &'static str = "eks-control-plane-wait";
}

/// Waits until the API server reports the hop's minor (EKS takes minutes).
pub struct ControlPlaneWaitStep {
    spec: ControlPlaneWaitSpec,
    cluster: Cluster,
    events: Arc<dyn EventSink>,
}

impl ControlPlaneWaitStep {
    /// The step of `spec` on `ctx`'s cluster, reporting to its event sink.
    pub fn new(spec: ControlPlaneWaitSpec, ctx: &FlowContext) -> ControlPlaneWaitStep {
        ControlPlaneWaitStep {
            spec,
            cluster: ctx.cluster().clone(),
            events: ctx.events_handle(),
        }
    }

    async fn minor(&self) -> std::result::Result<KubeMinor, String> {
        let info = self
            .cluster
            .client()
            .apiserver_version()
            .await
            .map_err(|e| format!("read the API server version: {e}"))?;
        info.git_version
            .parse::<KubeMinor>()
            .map_err(|e| format!("API server version {}: {e}", info.git_version))
    }
}

impl Step for ControlPlaneWaitStep {
    fn id(&self) -> &str {
        &self.spec.id
    }

    fn component(&self) -> &str {
        COMPONENT
    }

    fn description(&self) -> String {
        format!(
            "wait until the API server reports {} (at most {}s)",
            self.spec.minor,
            self.spec.timeout.as_secs()
        )
    }

    fn record(&self) -> StepRecord {
        StepRecord::of(&self.spec)
    }

    fn capture<'a>(&'a self, _snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(async { Ok(()) })
    }

    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let what = format!("control plane at {}", self.spec.minor);
            wait_until(
                self.events.as_ref(),
                self.cluster.stop_signal(),
                &what,
                self.spec.timeout,
                self.spec.interval,
                || async {
                    let minor = self.minor().await?;
                    if minor >= self.spec.minor {
                        Ok(true)
                    } else {
                        Err(format!("the API server reports {minor}"))
                    }
                },
            )
            .await?;
            Ok(())
        })
    }

    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let minor = self.minor().await?;
            if minor != self.spec.minor {
                return Err(
                    format!("the API server reports {minor}, not {}", self.spec.minor).into(),
                );
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

/// The hop's node rollout: Karpenter's nodes by Karpenter, the others by the rollout's
/// commands, managed node groups' by their own update with [`NodesMode::Managed`].
async fn node_rollout(
    ctx: &FlowContext,
    spec: &EksHopSpec,
    inputs: &Inputs,
    run_id: &str,
) -> Result<upgrade_kube::step::NodeRolloutStep> {
    let mut rollout = spec.rollout.clone();
    if spec.nodes == NodesMode::Managed {
        rollout.managed_node_groups = upgrade_kube::replace::ManagedNodeGroups::OwnUpdate;
    }
    rollout_step(
        ctx,
        format!("eks/nodes-{}", inputs.target),
        COMPONENT,
        &rollout,
        inputs.target,
        Vec::new(),
        inputs.commands.clone(),
        run_id,
        spec.timeout,
    )
    .await
}

async fn build_steps(
    ctx: &FlowContext,
    spec: &EksHopSpec,
    inputs: &Inputs,
    moves: &[AddonMove],
    managed: &[AddonMove],
    run_id: &str,
) -> Result<Vec<Box<dyn Step>>> {
    let tf = ctx.terraform("terraform_dir", &inputs.terraform_dir)?;
    let target = inputs.target;
    let policy = ApplyPolicy {
        rules: review_rules(),
        ..ApplyPolicy::default()
    };
    let tfvars_step = |id: String, variable: &str, value: String, irreversible: Option<String>| {
        Box::new(TfvarsChangeStep {
            spec: TfvarsChangeSpec {
                id,
                component: COMPONENT.into(),
                terraform_dir: inputs.terraform_dir.clone(),
                tfvars: inputs.tfvars.clone(),
                variable: variable.to_string(),
                value,
                irreversible,
                policy: policy.clone(),
            },
            tf: tf.clone(),
        }) as Box<dyn Step>
    };
    let mut steps: Vec<Box<dyn Step>> = Vec::new();
    if spec.force {
        // EKS's `force` for this update only: set before the control plane moves, off again
        // right after it; the rollback puts the file back.
        steps.push(tfvars_step(
            format!("eks/force-update-{target}"),
            &spec.force_update_var,
            "true".into(),
            None,
        ));
    }
    // Reversible with EKS's version rollback when the run knows the EKS cluster to call.
    let eks_api = spec.eks_api.resolved(ctx);
    let irreversible = eks_api.cluster_name.is_none().then(|| {
        format!(
            "EKS rolls a control plane back from {target} only through its API, and the EKS cluster name is unknown (give --eks-cluster to make this step reversible for 7 days)"
        )
    });
    let change = TfvarsChangeSpec {
        id: format!("eks/control-plane-{target}"),
        component: COMPONENT.into(),
        terraform_dir: inputs.terraform_dir.clone(),
        tfvars: inputs.tfvars.clone(),
        variable: spec.cluster_version_var.clone(),
        value: target.to_string(),
        irreversible,
        policy: policy.clone(),
    };
    steps.extend([
        Box::new(crate::flows::control_plane::ControlPlaneStep::new(
            crate::flows::control_plane::ControlPlaneSpec {
                change,
                previous: inputs.tfvars_minor,
                target,
                eks_api,
            },
            tf.clone(),
            ctx.cluster().clone(),
            ctx.events_handle(),
        )) as Box<dyn Step>,
        Box::new(ControlPlaneWaitStep::new(
            ControlPlaneWaitSpec {
                id: format!("eks/wait-control-plane-{target}"),
                minor: target,
                timeout: spec.timeout,
                interval: Duration::from_millis(500),
            },
            ctx,
        )),
    ]);
    if spec.force {
        // Off again once the control plane moved: a later hop is never forced by accident.
        steps.push(tfvars_step(
            format!("eks/force-reset-{target}"),
            &spec.force_update_var,
            "false".into(),
            None,
        ));
    }
    steps.push(Box::new(node_rollout(ctx, spec, inputs, run_id).await?));
    for m in moves {
        // Kept when unchanged too, so the step list depends on the spec only.
        steps.push(tfvars_step(
            format!("eks/addon-{}-{target}", m.addon.name),
            &m.addon.variable,
            m.version.clone(),
            None,
        ));
    }
    let eks_api = spec.eks_api.resolved(ctx);
    for m in managed {
        steps.push(Box::new(
            crate::flows::managed_addons::ManagedAddonStep::new(
                crate::flows::managed_addons::ManagedAddonSpec {
                    id: format!("eks/managed-addon-{}-{target}", m.addon.name),
                    component: COMPONENT.into(),
                    eks_api: eks_api.clone(),
                    addon: m.addon.name.clone(),
                    version: m.version.clone(),
                    resolve_conflicts: spec.resolve_conflicts.clone(),
                    timeout: spec.timeout,
                },
                ctx.events_handle(),
                ctx.stop_signal().clone(),
            ),
        ));
    }
    Ok(steps)
}

/// The managed add-ons' moves: each one's live version (`DescribeAddon`) and the version for
/// the target from the catalog (the file, else `DescribeAddonVersions` through the AWS CLI),
/// and the blockers of add-ons only a downgrade would move.
async fn managed_addon_moves(
    ctx: &FlowContext,
    spec: &EksHopSpec,
    target: KubeMinor,
    chosen_before: &std::collections::BTreeMap<String, String>,
) -> Result<(Vec<AddonMove>, Vec<String>)> {
    if spec.managed_addons.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    if !["PRESERVE", "OVERWRITE", "NONE"].contains(&spec.resolve_conflicts.as_str()) {
        return Err(FlowError::invalid(
            "resolve_conflicts",
            format!(
                "`{}` is not PRESERVE, OVERWRITE or NONE",
                spec.resolve_conflicts
            ),
            "PRESERVE keeps fields changed by hand (EKS refuses the update on a conflict); OVERWRITE replaces them",
        ));
    }
    let api = spec.eks_api.resolved(ctx);
    let eks = api.recorded_handle().map_err(|why| {
        FlowError::invalid(
            "managed_addons",
            why,
            format!(
                "name the EKS cluster ({}, --eks-cluster) to move managed add-ons",
                field("eks_api")
            ),
        )
    })?;
    let catalog = match &spec.addon_versions {
        AddonVersions::File(_) => addon_catalog_file(spec)?,
        AddonVersions::Aws => {
            let json = eks
                .describe_addon_versions(&target.to_string(), None)
                .await
                .map_err(|e| FlowError::failed("read the add-on versions from EKS", e))?;
            AddonCatalog::from_json(&json.to_string())
                .map_err(|e| FlowError::failed("read the add-on versions from EKS", e))?
        }
    };
    let (mut moves, mut blockers) = (Vec::new(), Vec::new());
    for name in &spec.managed_addons {
        let live = eks
            .describe_addon(name)
            .await
            .map_err(|e| FlowError::failed(format!("describe add-on {name}"), e))?
            .ok_or_else(|| {
                FlowError::invalid(
                    "managed_addons",
                    format!("{name} is not installed as an EKS managed add-on of {}", eks.cluster()),
                    "check the name (aws eks list-addons), or manage its version in the tfvars with --addon",
                )
            })?;
        let addon = AddonVar {
            name: name.clone(),
            variable: String::new(),
        };
        // A later hop starts from the version the previous hop sets.
        let current = chosen_before
            .get(name)
            .cloned()
            .unwrap_or_else(|| live.addon_version.clone());
        match catalog.choose(name, &current, target, spec.allow_addon_downgrade) {
            Ok(choice) => moves.push(AddonMove {
                addon,
                current: current.clone(),
                version: choice.version,
                why: choice.why,
            }),
            Err(why @ NoAddonChoice::OnlyDowngrades { .. }) => blockers.push(format!(
                "managed add-on {name}: {why}; allow it (`allow_addon_downgrade`, `--allow-addon-downgrade`) if that is intended"
            )),
            Err(why @ NoAddonChoice::NotListed { .. }) => {
                return Err(FlowError::invalid(
                    "managed_addons",
                    format!("add-on {name}: {why}"),
                    format!("check the name, or fetch the list for {target} again"),
                ));
            }
        }
    }
    Ok((moves, blockers))
}

/// Where the unfinished run being resumed started: the `previous` minor of its first
/// control-plane step (`None` when not resuming an EKS run).
fn resumed_start(ctx: &FlowContext) -> Result<Option<KubeMinor>> {
    if !ctx.resume() {
        return Ok(None);
    }
    let Some(run) = upgrade_core::journal::Journal::unfinished(&ctx.state().journal())
        .map_err(|e| FlowError::failed("read the journal", e))?
    else {
        return Ok(None);
    };
    let Ok(record) = crate::record::RunRecord::read(&ctx.state().runs(), &run.run_id) else {
        return Ok(None);
    };
    Ok(record
        .steps
        .iter()
        .filter(|s| s.record.kind == crate::flows::control_plane::ControlPlaneSpec::KIND)
        .filter_map(|s| {
            s.record.spec["previous"]
                .as_str()?
                .parse::<KubeMinor>()
                .ok()
        })
        .min())
}

/// The reviewed Terraform plan of the hop's change (the cluster version, and `force` when
/// set) on a scratch copy of the environment, so the plan shows what the apply will do before
/// `--apply`; `None` when the tfvars file lives outside the environment's folder.
async fn terraform_preview(
    ctx: &FlowContext,
    spec: &EksHopSpec,
    inputs: &Inputs,
) -> Result<Option<crate::flows::tf_providers::RenderedReview>> {
    let Ok(relative) = inputs.tfvars.strip_prefix(&inputs.terraform_dir) else {
        return Ok(None);
    };
    let scratch = tempfile::Builder::new()
        .prefix("upgrade-eks-plan-")
        .tempdir()
        .map_err(|e| FlowError::failed("create a temporary folder", e))?;
    let copy = scratch.path().join("env");
    crate::flows::tf_providers::copy_for_preview(&inputs.terraform_dir, &copy).map_err(|e| {
        FlowError::failed(
            format!("copy {} for the plan", inputs.terraform_dir.display()),
            e,
        )
    })?;
    let copied_tfvars = copy.join(relative);
    let edit = || -> std::result::Result<(), upgrade_tf::Error> {
        let mut vars = HclFile::read(&copied_tfvars)?;
        vars.set_string(&spec.cluster_version_var, &inputs.target.to_string())?;
        if spec.force {
            vars.set_string(&spec.force_update_var, "true")?;
        }
        vars.write()
    };
    edit().map_err(|e| FlowError::failed("edit the copied tfvars", e))?;
    let tf = ctx.terraform("terraform_dir", &copy)?;
    tf.init(upgrade_tf::InitOptions::default())
        .await
        .map_err(|e| FlowError::failed("terraform init (plan preview)", e))?;
    let run = tf
        .plan(upgrade_tf::PlanOptions::default())
        .await
        .map_err(|e| FlowError::failed("terraform plan (plan preview)", e))?;
    if !run.has_changes {
        return Ok(Some(crate::flows::tf_providers::RenderedReview {
            summary: "terraform plan of the hop: no changes".into(),
            changes: Vec::new(),
            blockers: Vec::new(),
        }));
    }
    let reviewed = tf
        .review(run.plan, review_rules())
        .await
        .map_err(|e| FlowError::failed("review the plan", e))?;
    Ok(Some(crate::flows::tf_providers::render_review(
        reviewed.review(),
        "of the hop",
    )))
}

/// Checks the spec against its files without a cluster; [`plan`] checks it again.
pub fn check(spec: &EksHopSpec) -> Result<()> {
    validate(spec).map(drop)
}

/// Plans one EKS hop: the spec checked, the live version and the tfvars reconciled, the
/// preflight's blockers and warnings, the add-on versions chosen, the steps built.
pub async fn plan(ctx: &FlowContext, spec: &EksHopSpec) -> Result<Planned> {
    let inputs = validate(spec)?;
    let target = inputs.target;
    let live = crate::flows::live_version(ctx).await?;
    if target <= live.minor {
        return Err(FlowError::invalid(
            "target",
            format!("{target}: the control plane already runs {}", live.minor),
            "pick a newer minor",
        ));
    }
    // A resumed run replans from where it started (its step ids must be the same), and its
    // failed step may have moved the tfvars one minor ahead of the control plane.
    let start = resumed_start(ctx)?.unwrap_or(live.minor);
    let ahead_by_the_failed_step = ctx.resume() && inputs.tfvars_minor == live.minor.next();
    if inputs.tfvars_minor != live.minor && !ahead_by_the_failed_step {
        return Err(FlowError::invalid(
            "tfvars",
            format!(
                "{} sets {} = \"{}\" but the control plane runs {}",
                inputs.tfvars.display(),
                spec.cluster_version_var,
                inputs.tfvars_minor,
                live.minor
            ),
            "reconcile the two (terraform plan) before upgrading",
        ));
    }
    // The first hop's add-on versions before anything else runs (a missing `aws` or file is
    // bad input, named before Terraform is looked for).
    let mut first_catalog = Some(addon_catalog(ctx, spec, start.next()).await?);
    // EKS moves one minor at a time: a farther target is every hop on the way, in one run.
    let mut hops = vec![start.next()];
    while *hops.last().expect("one hop") < target {
        let next = hops.last().expect("one hop").next();
        hops.push(next);
    }

    // The Terraform environment must be this cluster's, before anything plans with it.
    let tf = ctx.terraform("terraform_dir", &inputs.terraform_dir)?;
    let state = crate::flows::terraform_state(&tf, &inputs.terraform_dir).await?;
    let binding = crate::flows::terraform_binding(
        state.as_ref(),
        ctx.cluster().identity(),
        &inputs.terraform_dir,
        true,
    )?
    .expect("required");

    // Preflight: the checks for every hop of the path on live facts.
    // The drain prediction uses the drain the rollout will run.
    let options = GatherOptions {
        drain: spec.rollout.drain.options(spec.timeout),
        ..GatherOptions::default()
    };
    let gathered = gather(ctx.cluster(), &options)
        .await
        .map_err(|e| FlowError::failed("gather the cluster's facts for the preflight", e))?;
    let preflight =
        upgrade_checks::checks::run(&gathered.facts, target, &inputs.config, &inputs.data)
            .map_err(|e| FlowError::invalid("target", format!("{target}: {e}"), ""))?;
    let line = |f: &upgrade_checks::checks::Finding| match &f.subject {
        Some(subject) => format!("{} {subject}: {}", f.code, f.message),
        None => format!("{} {}: {}", f.code, f.title, f.message),
    };
    let mut blockers: Vec<String> = preflight
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Blocker)
        .map(line)
        .collect();
    let mut findings: Vec<String> = preflight
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Warning)
        .map(line)
        .collect();

    let run_id = ctx.new_run_id(COMPONENT)?;
    let multi = hops.len() > 1;
    let mut steps: Vec<Box<dyn Step>> = Vec::new();
    let mut changes = Vec::new();
    if multi {
        changes.push(format!(
            "{} hops in one run: {}; a failure stops the run at its hop (the hops done stay, recorded): --resume continues there, upgrade-rollback undoes it",
            hops.len(),
            std::iter::once(start)
                .chain(hops.iter().copied())
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join(" -> ")
        ));
    }
    let window_ends = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(
            crate::flows::control_plane::ROLLBACK_WINDOW.as_secs() as i64,
        ))
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_default();
    changes.push(match spec.eks_api.resolved(ctx).cluster_name {
        Some(name) => format!(
            "control plane reversible with EKS's version rollback of {name} for 7 days after the update (until about {window_ends}): upgrade-rollback moves managed node groups back first, then the control plane; EKS does not roll back add-ons or other nodes, so their steps are undone before it; after the window it cannot be undone"
        ),
        None => "control plane cannot be undone by this run: the EKS cluster name is unknown (give --eks-cluster to make it reversible for 7 days with EKS's version rollback)".to_string(),
    });
    if spec.force {
        changes.push(format!(
            "force: {} = \"true\" in {} before each control-plane update, off right after (EKS's force on UpdateClusterVersion; recorded in the run)",
            spec.force_update_var,
            inputs.tfvars.display()
        ));
    }
    if spec.nodes == NodesMode::Managed {
        changes.push(format!(
            "nodes: managed node groups follow the cluster version in Terraform ({})",
            inputs.terraform_dir.display()
        ));
    }

    // Each hop: its add-on versions from the previous hop's, its insights, its steps.
    let mut addon_now = inputs.addons.clone();
    let mut managed_now: std::collections::BTreeMap<String, String> = Default::default();
    let mut first_inputs = None;
    for (i, &hop) in hops.iter().enumerate() {
        let previous = if i == 0 { start } else { hops[i - 1] };
        let hop_inputs = Inputs {
            target: hop,
            tfvars_minor: previous,
            addons: addon_now.clone(),
            ..inputs.clone()
        };
        let prefix = if multi {
            changes.push(format!("hop {previous} -> {hop}:"));
            "  "
        } else {
            ""
        };
        let catalog = match first_catalog.take() {
            Some(first) => first,
            None => addon_catalog(ctx, spec, hop).await?,
        };
        let (moves, downgrades) =
            addon_moves(&hop_inputs, catalog.as_ref(), spec.allow_addon_downgrade)?;
        blockers.extend(downgrades);
        addon_now = moves
            .iter()
            .map(|m| (m.addon.clone(), m.version.clone()))
            .collect();

        // EKS's own readiness checks for the hop (it refuses the update on an ERROR one).
        let insights = crate::flows::insights::for_hop(ctx, &spec.eks_api, hop).await;
        if spec.force {
            findings.extend(insights.errors.iter().map(|e| {
                format!("{e} (forced past it: `force` is set, EKS will not refuse the update)")
            }));
        } else {
            blockers.extend(insights.errors.iter().map(|e| {
                format!("{e}; EKS refuses UpdateClusterVersion (InvalidStateException) until it passes: fix it, or force the update knowingly (`force`, --force)")
            }));
        }
        findings.extend(insights.warnings.iter().cloned());

        let (managed, managed_downgrades) =
            managed_addon_moves(ctx, spec, hop, &managed_now).await?;
        blockers.extend(managed_downgrades);
        for m in &managed {
            managed_now.insert(m.addon.name.clone(), m.version.clone());
        }
        steps.extend(build_steps(ctx, spec, &hop_inputs, &moves, &managed, &run_id).await?);

        changes.push(format!(
            "{prefix}control plane {previous} -> {hop} ({} = \"{hop}\" in {}; Terraform manages it as {binding})",
            spec.cluster_version_var,
            inputs.tfvars.display()
        ));
        changes.extend(insights.notes.iter().map(|n| format!("{prefix}{n}")));
        let nodes = node_rollout(ctx, spec, &hop_inputs, &run_id).await?;
        let rolled = &nodes.spec.planned_nodes;
        changes.push(format!(
            "{prefix}nodes: replace {} node(s) below {hop}: {}",
            rolled.len(),
            if rolled.is_empty() {
                "none".to_string()
            } else {
                rolled.join(", ")
            }
        ));
        if i == 0 {
            changes.extend(
                drain_predictions(&gathered, rolled)
                    .into_iter()
                    .filter(|line| line.contains("blocked now"))
                    .map(|line| format!("{prefix}  {line}")),
            );
            let (node_blockers, node_findings) = replacement_notes(&nodes).await?;
            blockers.extend(node_blockers);
            findings.extend(node_findings);
        }
        for m in &moves {
            changes.push(if m.version == m.current {
                format!(
                    "{prefix}add-on {} stays at {} ({})",
                    m.addon.name, m.version, m.why
                )
            } else {
                format!(
                    "{prefix}add-on {} {} -> {} ({})",
                    m.addon.name, m.current, m.version, m.why
                )
            });
        }
        for m in &managed {
            changes.push(if m.version == m.current {
                format!(
                    "{prefix}managed add-on {} stays at {} ({})",
                    m.addon.name, m.version, m.why
                )
            } else {
                format!(
                    "{prefix}managed add-on {} {} -> {} ({}; UpdateAddon, resolve conflicts {}, configuration kept; the rollback puts back the version and configuration before)",
                    m.addon.name, m.current, m.version, m.why, spec.resolve_conflicts
                )
            });
        }
        if i == 0 {
            first_inputs = Some(hop_inputs);
        }
    }
    // What the first hop's apply will do, from Terraform itself, before anything changes
    // (the later hops' plans depend on the state the earlier ones leave).
    if let Some(first) = &first_inputs
        && let Some(preview) = terraform_preview(ctx, spec, first).await?
    {
        changes.push(preview.summary);
        changes.extend(preview.changes.into_iter().map(|c| format!("  {c}")));
        blockers.extend(preview.blockers);
    }
    let refs: Vec<&dyn Step> = steps.iter().map(|s| s.as_ref()).collect();
    let mut plan = Plan::new("upgrade-eks", ctx.cluster_name(), run_id, &refs);
    plan.changes = changes;
    plan.findings = findings;
    plan.blockers = blockers;
    let mut recorded = spec.clone();
    recorded.terraform_dir = inputs.terraform_dir.clone();
    recorded.tfvars = Some(inputs.tfvars.clone());
    let planned =
        Planned::new(FLOW, &recorded, plan, steps).with_post_checks(vec![PostCheck::ClusterHealth]);
    Ok(if multi {
        planned.stopping_on_failure()
    } else {
        planned
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addons_parse_as_name_and_variable() {
        assert_eq!(
            AddonVar::parse("coredns=coredns_version").unwrap(),
            AddonVar {
                name: "coredns".into(),
                variable: "coredns_version".into()
            }
        );
        let err = AddonVar::parse("coredns").unwrap_err();
        assert!(err.to_string().contains("is not NAME=VARIABLE"), "{err}");
    }

    #[test]
    fn the_spec_is_checked_against_its_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("terraform.tfvars"),
            "cluster_version = \"1.30\"\ncoredns_version = \"v1.11.1-eksbuild.1\"\n",
        )
        .unwrap();
        let spec = |target: &str| EksHopSpec::new(target, dir.path());
        let inputs = validate(&spec("1.31")).unwrap();
        assert_eq!(inputs.tfvars_minor.to_string(), "1.30");
        assert!(inputs.tfvars.is_absolute());
        let err = validate(&spec("one")).unwrap_err();
        assert!(err.to_string().starts_with("`target`: one:"), "{err}");
        let err = validate(&spec("1.99")).unwrap_err();
        assert!(err.to_string().contains("does not list 1.99"), "{err}");
        let err = validate(&spec("1.37")).unwrap_err();
        assert!(
            err.to_string().contains(
                "does not list 1.37 (Kubernetes 1.37 was released upstream on 2026-08-26 but is not on EKS yet)"
            ),
            "{err}"
        );
        let mut missing = spec("1.31");
        missing.cluster_version_var = "version".into();
        let err = validate(&missing).unwrap_err();
        assert!(
            err.to_string().contains("has no string variable `version`"),
            "{err}"
        );
        let mut addon = spec("1.31");
        addon.addons = vec![AddonVar::parse("vpc-cni=vpc_cni_version").unwrap()];
        let err = validate(&addon).unwrap_err();
        assert!(
            err.to_string()
                .contains("no string variable `vpc_cni_version`"),
            "{err}"
        );
    }
}

//! Version-neutral options, rendered to Helm 3 or Helm 4 flags.
//!
//! The structs say *what* is wanted ("roll back on failure", "wait until ready"); the
//! `*_args` functions say how the Helm in use spells it:
//!
//! | wanted | Helm 3 | Helm 4 |
//! |---|---|---|
//! | roll back on failure | `--atomic` | `--rollback-on-failure` |
//! | wait until ready | `--wait` | `--wait=watcher` (`--wait=legacy` for the old poller) |
//! | replace resources | `--force` | `--force-replace` |
//! | force SSA conflicts | refused | `--force-conflicts` (only on a server-side-applied release) |
//! | server-side apply | refused | `--server-side=auto\|true\|false` |
//! | list every status | `--all` | default (`--all` was removed) |
//!
//! Values are always handled explicitly: an upgrade passes `--reset-values` (the values given
//! are the whole truth), `--reset-then-reuse-values` or `--reuse-values`, never nothing, so Helm
//! never silently reuses the previous revision's values.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::chart::ChartRef;
use crate::error::{Error, Result};
use crate::types::ReleaseRef;
use crate::version::{HelmMajor, HelmVersion};

/// Helm's default `--history-max` is 10, which can prune the revision a rollback needs; the
/// toolkit always passes one explicitly and defaults to this.
pub const DEFAULT_HISTORY_MAX: u32 = 20;

/// Default time for Helm's own waits.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// How long to wait for the release's resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WaitMode {
    /// Wait for hooks only (Helm's default in both majors).
    #[default]
    HooksOnly,
    /// Wait until resources are ready (v3 `--wait`, v4 `--wait=watcher`).
    Ready,
    /// Wait with Helm's legacy poller (v3 `--wait`, v4 `--wait=legacy`).
    ReadyLegacy,
}

impl WaitMode {
    fn render(self, version: &HelmVersion, argv: &mut Vec<OsString>) {
        match (self, version.major()) {
            (WaitMode::HooksOnly, _) => {}
            (_, HelmMajor::V3) => argv.push("--wait".into()),
            (WaitMode::Ready, HelmMajor::V4) => argv.push("--wait=watcher".into()),
            (WaitMode::ReadyLegacy, HelmMajor::V4) => argv.push("--wait=legacy".into()),
        }
    }
}

/// What Helm does when an upgrade fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    /// Leave the failed revision in place (the caller decides).
    Fail,
    /// Roll back to the last successful revision (v3 `--atomic`, v4 `--rollback-on-failure`).
    #[default]
    Rollback,
}

/// How the new revision's values relate to the previous revision's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ValuesStrategy {
    /// `--reset-values`: chart defaults plus exactly the values given now.
    #[default]
    Reset,
    /// `--reset-then-reuse-values` (Helm 3.14+): new chart defaults, the previous user values,
    /// then the values given now.
    ResetThenReuse,
    /// `--reuse-values`: the previous *computed* values replace the new chart's defaults, so new
    /// defaults of a newer chart version are lost. Only safe for the same chart version.
    Reuse,
}

/// Replacing or forcing resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForceMode {
    /// Normal apply.
    #[default]
    None,
    /// Delete and recreate resources that cannot be patched (v3 `--force`, v4 `--force-replace`).
    Replace,
    /// Take over fields owned by other managers (v4 `--force-conflicts`, server-side apply only).
    Conflicts,
}

/// Helm 4's server-side apply setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServerSide {
    /// Use what the previous revision used (Helm 4's default).
    Auto,
    /// Server-side apply.
    True,
    /// Client-side (three-way merge) apply.
    False,
}

impl ServerSide {
    fn as_str(self) -> &'static str {
        match self {
            ServerSide::Auto => "auto",
            ServerSide::True => "true",
            ServerSide::False => "false",
        }
    }
}

/// A dry run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DryRun {
    /// Render only.
    Client,
    /// Render and validate against the API server without persisting.
    Server,
}

/// How a `--set` value is interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SetKind {
    /// `--set` (types inferred; beware `1e+06` coercion of large numbers).
    #[default]
    Plain,
    /// `--set-string`.
    String,
    /// `--set-json`.
    Json,
    /// `--set-literal`.
    Literal,
    /// `--set-file` (the value is a path).
    File,
}

/// One `--set`-style value. Its value never reaches a log, an error or a report.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SetValue {
    /// The dotted key.
    pub key: String,
    /// The value (secret).
    pub value: String,
    /// How Helm interprets it.
    pub kind: SetKind,
}

impl std::fmt::Debug for SetValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetValue")
            .field("key", &self.key)
            .field("value", &upgrade_core::redact::MASK)
            .field("kind", &self.kind)
            .finish()
    }
}

impl SetValue {
    /// A `--set key=value`.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        SetValue {
            key: key.into(),
            value: value.into(),
            kind: SetKind::Plain,
        }
    }

    /// A `--set-string key=value`.
    pub fn string(key: impl Into<String>, value: impl Into<String>) -> Self {
        SetValue {
            kind: SetKind::String,
            ..SetValue::new(key, value)
        }
    }

    fn render(&self, argv: &mut Vec<OsString>) {
        let flag = match self.kind {
            SetKind::Plain => "--set",
            SetKind::String => "--set-string",
            SetKind::Json => "--set-json",
            SetKind::Literal => "--set-literal",
            SetKind::File => "--set-file",
        };
        argv.push(flag.into());
        argv.push(format!("{}={}", self.key, self.value).into());
    }
}

/// Options of `helm upgrade` (with install by default).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct UpgradeOptions {
    /// Install when the release does not exist (`--install`).
    pub install: bool,
    /// Create the namespace on install.
    pub create_namespace: bool,
    /// Values files, applied in this order (later wins).
    pub values_files: Vec<PathBuf>,
    /// `--set`-style values, after the files (redacted everywhere).
    pub set: Vec<SetValue>,
    /// How previous values are treated; always explicit.
    pub values: ValuesStrategy,
    /// What to wait for.
    pub wait: WaitMode,
    /// Also wait for Jobs to complete (needs a [`WaitMode`] other than hooks only).
    pub wait_for_jobs: bool,
    /// Helm's `--timeout` for its waits and hooks.
    pub timeout: Duration,
    /// What happens when the upgrade fails.
    pub on_failure: OnFailure,
    /// Delete resources created by a failed upgrade.
    pub cleanup_on_fail: bool,
    /// `--history-max` (always passed).
    pub history_max: u32,
    /// Replace or force resources.
    pub force: ForceMode,
    /// Helm 4 server-side apply (refused on Helm 3).
    pub server_side: Option<ServerSide>,
    /// The current revision's apply method (`ssa`/`csa`, from `get metadata`), needed to allow
    /// [`ForceMode::Conflicts`] with `--server-side=auto`.
    pub previous_apply_method: Option<String>,
    /// A dry run instead of a change.
    pub dry_run: Option<DryRun>,
    /// Adopt existing resources (Helm 3.17+).
    pub take_ownership: bool,
    /// Skip the chart's values schema (Helm 3.16+).
    pub skip_schema_validation: bool,
    /// The revision's description (`--description`).
    pub description: Option<String>,
    /// Do not install CRDs from `crds/` on install (upgrade never touches them).
    pub skip_crds: bool,
    /// Do not run hooks.
    pub disable_hooks: bool,
    /// Accept pre-release chart versions.
    pub devel: bool,
    /// Stop the Helm process after this long (SIGINT, then SIGKILL after `kill_grace`); by
    /// default Helm's `timeout` plus a minute, so Helm's own timeout normally fires first.
    pub process_timeout: Option<Duration>,
    /// Time between SIGINT and SIGKILL when `process_timeout` fires.
    pub kill_grace: Duration,
}

impl Default for UpgradeOptions {
    fn default() -> Self {
        UpgradeOptions {
            install: true,
            create_namespace: false,
            values_files: Vec::new(),
            set: Vec::new(),
            values: ValuesStrategy::Reset,
            wait: WaitMode::Ready,
            wait_for_jobs: false,
            timeout: DEFAULT_TIMEOUT,
            on_failure: OnFailure::Rollback,
            cleanup_on_fail: false,
            history_max: DEFAULT_HISTORY_MAX,
            force: ForceMode::None,
            server_side: None,
            previous_apply_method: None,
            dry_run: None,
            take_ownership: false,
            skip_schema_validation: false,
            description: None,
            skip_crds: false,
            disable_hooks: false,
            devel: false,
            process_timeout: None,
            kill_grace: Duration::from_secs(30),
        }
    }
}

/// Options of `helm rollback`. The revision is always explicit (never Helm's "previous").
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct RollbackOptions {
    /// What to wait for.
    pub wait: WaitMode,
    /// Also wait for Jobs.
    pub wait_for_jobs: bool,
    /// Helm's `--timeout`.
    pub timeout: Duration,
    /// `--history-max` (always passed).
    pub history_max: u32,
    /// Delete resources created by a failed rollback.
    pub cleanup_on_fail: bool,
    /// Replace resources that cannot be patched.
    pub force: ForceMode,
    /// Helm 4 server-side apply.
    pub server_side: Option<ServerSide>,
    /// Do not run hooks.
    pub disable_hooks: bool,
}

impl Default for RollbackOptions {
    fn default() -> Self {
        RollbackOptions {
            wait: WaitMode::Ready,
            wait_for_jobs: false,
            timeout: DEFAULT_TIMEOUT,
            history_max: DEFAULT_HISTORY_MAX,
            cleanup_on_fail: false,
            force: ForceMode::None,
            server_side: None,
            disable_hooks: false,
        }
    }
}

/// Options of `helm uninstall`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct UninstallOptions {
    /// Keep the release history (status `uninstalled`).
    pub keep_history: bool,
    /// Wait for the resources to be deleted.
    pub wait: bool,
    /// Helm's `--timeout`.
    pub timeout: Duration,
    /// Do not run hooks.
    pub disable_hooks: bool,
}

impl Default for UninstallOptions {
    fn default() -> Self {
        UninstallOptions {
            keep_history: false,
            wait: true,
            timeout: DEFAULT_TIMEOUT,
            disable_hooks: false,
        }
    }
}

/// Options of `helm list`.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Only this namespace; `None` lists all namespaces.
    pub namespace: Option<String>,
    /// Only deployed and failed releases (Helm 3's default); otherwise every status.
    pub deployed_and_failed_only: bool,
}

/// Options of `helm template`.
#[derive(Debug, Clone, Default)]
pub struct TemplateOptions {
    /// `--kube-version`: the Kubernetes version to render for (and check kubeVersion against).
    pub kube_version: Option<String>,
    /// Extra `--api-versions` available to `.Capabilities`.
    pub api_versions: Vec<String>,
    /// Values files in order.
    pub values_files: Vec<PathBuf>,
    /// `--set`-style values.
    pub set: Vec<SetValue>,
    /// Include CRDs from `crds/` in the output.
    pub include_crds: bool,
}

pub(crate) fn duration_arg(d: Duration) -> String {
    format!("{}s", d.as_secs().max(1))
}

fn push(argv: &mut Vec<OsString>, items: &[&str]) {
    argv.extend(items.iter().map(OsString::from));
}

fn push_force(
    argv: &mut Vec<OsString>,
    version: &HelmVersion,
    force: ForceMode,
    server_side: Option<ServerSide>,
    previous_apply_method: Option<&str>,
) -> Result<()> {
    match (force, version.major()) {
        (ForceMode::None, _) => {}
        (ForceMode::Replace, HelmMajor::V3) => argv.push("--force".into()),
        (ForceMode::Replace, HelmMajor::V4) => {
            if server_side == Some(ServerSide::True) {
                return Err(Error::InvalidOptions {
                    message: "ForceMode::Replace cannot be combined with server-side apply; \
                              use ForceMode::Conflicts or ServerSide::False"
                        .into(),
                });
            }
            argv.push("--force-replace".into());
        }
        (ForceMode::Conflicts, HelmMajor::V3) => {
            return Err(Error::Unsupported {
                what: "ForceMode::Conflicts (--force-conflicts)".into(),
                requires: "Helm 4 with server-side apply".into(),
                actual: version.0.to_string(),
            });
        }
        (ForceMode::Conflicts, HelmMajor::V4) => {
            let ssa = match server_side {
                Some(ServerSide::True) => true,
                Some(ServerSide::False) => false,
                Some(ServerSide::Auto) | None => previous_apply_method == Some("ssa"),
            };
            if !ssa {
                return Err(Error::InvalidOptions {
                    message: "ForceMode::Conflicts needs server-side apply, but this release is \
                              applied client-side (written by Helm 3 or with --server-side=false); \
                              Helm would fail with `forceConflicts enabled when serverSideApply disabled`. \
                              Set server_side to ServerSide::True, or pass the release's apply \
                              method (get metadata) in previous_apply_method"
                        .into(),
                });
            }
            argv.push("--force-conflicts".into());
        }
    }
    Ok(())
}

fn push_server_side(
    argv: &mut Vec<OsString>,
    version: &HelmVersion,
    server_side: Option<ServerSide>,
) -> Result<()> {
    if let Some(mode) = server_side {
        if !version.is_v4() {
            return Err(Error::Unsupported {
                what: format!("server-side apply (--server-side={})", mode.as_str()),
                requires: "Helm 4".into(),
                actual: version.0.to_string(),
            });
        }
        argv.push(format!("--server-side={}", mode.as_str()).into());
    }
    Ok(())
}

fn check_wait_for_jobs(wait: WaitMode, wait_for_jobs: bool) -> Result<()> {
    if wait_for_jobs && wait == WaitMode::HooksOnly {
        return Err(Error::InvalidOptions {
            message: "wait_for_jobs needs a wait mode (WaitMode::Ready or ReadyLegacy); Helm \
                      ignores --wait-for-jobs without --wait"
                .into(),
        });
    }
    Ok(())
}

fn push_namespace(argv: &mut Vec<OsString>, release: &ReleaseRef) {
    push(argv, &["--namespace", &release.namespace]);
}

/// `helm upgrade` arguments (without the global kubeconfig/context flags).
pub fn upgrade_args(
    version: &HelmVersion,
    release: &ReleaseRef,
    chart: &ChartRef,
    o: &UpgradeOptions,
) -> Result<Vec<OsString>> {
    validate_release_name(&release.name)?;
    let mut argv: Vec<OsString> = vec!["upgrade".into(), release.name.clone().into()];
    argv.extend(chart.to_args()?);
    push_namespace(&mut argv, release);
    if o.install {
        argv.push("--install".into());
        if o.create_namespace {
            argv.push("--create-namespace".into());
        }
    } else if o.create_namespace {
        return Err(Error::InvalidOptions {
            message: "create_namespace only applies with install".into(),
        });
    }
    for file in &o.values_files {
        argv.push("--values".into());
        argv.push(file.clone().into());
    }
    for set in &o.set {
        set.render(&mut argv);
    }
    match o.values {
        ValuesStrategy::Reset => argv.push("--reset-values".into()),
        ValuesStrategy::ResetThenReuse => {
            version.require("--reset-then-reuse-values", (3, 14, 0))?;
            argv.push("--reset-then-reuse-values".into());
        }
        ValuesStrategy::Reuse => argv.push("--reuse-values".into()),
    }
    check_wait_for_jobs(o.wait, o.wait_for_jobs)?;
    o.wait.render(version, &mut argv);
    if o.wait_for_jobs {
        argv.push("--wait-for-jobs".into());
    }
    push(&mut argv, &["--timeout", &duration_arg(o.timeout)]);
    if o.on_failure == OnFailure::Rollback {
        argv.push(
            match version.major() {
                HelmMajor::V3 => "--atomic",
                HelmMajor::V4 => "--rollback-on-failure",
            }
            .into(),
        );
    }
    if o.cleanup_on_fail {
        argv.push("--cleanup-on-fail".into());
    }
    if o.history_max == 0 {
        return Err(Error::InvalidOptions {
            message: "history_max 0 keeps unlimited history, which slows every Helm operation; \
                      pass a bound (default 20)"
                .into(),
        });
    }
    push(&mut argv, &["--history-max", &o.history_max.to_string()]);
    push_server_side(&mut argv, version, o.server_side)?;
    push_force(
        &mut argv,
        version,
        o.force,
        o.server_side,
        o.previous_apply_method.as_deref(),
    )?;
    match o.dry_run {
        None => {}
        Some(DryRun::Client) => argv.push("--dry-run=client".into()),
        Some(DryRun::Server) => argv.push("--dry-run=server".into()),
    }
    if o.take_ownership {
        version.require("--take-ownership", (3, 17, 0))?;
        argv.push("--take-ownership".into());
    }
    if o.skip_schema_validation {
        version.require("--skip-schema-validation", (3, 16, 0))?;
        argv.push("--skip-schema-validation".into());
    }
    if let Some(description) = &o.description {
        push(&mut argv, &["--description", description]);
    }
    if o.skip_crds {
        argv.push("--skip-crds".into());
    }
    if o.disable_hooks {
        argv.push("--no-hooks".into());
    }
    if o.devel {
        argv.push("--devel".into());
    }
    push(&mut argv, &["--output", "json"]);
    Ok(argv)
}

/// `helm rollback` arguments; `revision` must be an explicit revision (1 or more).
pub fn rollback_args(
    version: &HelmVersion,
    release: &ReleaseRef,
    revision: u32,
    o: &RollbackOptions,
) -> Result<Vec<OsString>> {
    validate_release_name(&release.name)?;
    if revision == 0 {
        return Err(Error::InvalidOptions {
            message: "rollback needs an explicit revision: Helm's revision 0 means \"the previous \
                      one\", which may be a failed or pruned revision; pick one from history"
                .into(),
        });
    }
    let mut argv: Vec<OsString> = vec![
        "rollback".into(),
        release.name.clone().into(),
        revision.to_string().into(),
    ];
    push_namespace(&mut argv, release);
    check_wait_for_jobs(o.wait, o.wait_for_jobs)?;
    o.wait.render(version, &mut argv);
    if o.wait_for_jobs {
        argv.push("--wait-for-jobs".into());
    }
    push(&mut argv, &["--timeout", &duration_arg(o.timeout)]);
    push(&mut argv, &["--history-max", &o.history_max.to_string()]);
    if o.cleanup_on_fail {
        argv.push("--cleanup-on-fail".into());
    }
    push_server_side(&mut argv, version, o.server_side)?;
    if o.force == ForceMode::Conflicts {
        return Err(Error::InvalidOptions {
            message: "rollback does not take ForceMode::Conflicts; use ForceMode::Replace or None"
                .into(),
        });
    }
    push_force(&mut argv, version, o.force, o.server_side, None)?;
    if o.disable_hooks {
        argv.push("--no-hooks".into());
    }
    Ok(argv)
}

/// `helm uninstall` arguments.
pub fn uninstall_args(
    version: &HelmVersion,
    release: &ReleaseRef,
    o: &UninstallOptions,
) -> Result<Vec<OsString>> {
    validate_release_name(&release.name)?;
    let mut argv: Vec<OsString> = vec!["uninstall".into(), release.name.clone().into()];
    push_namespace(&mut argv, release);
    if o.keep_history {
        argv.push("--keep-history".into());
    }
    if o.wait {
        argv.push(
            match version.major() {
                HelmMajor::V3 => "--wait",
                HelmMajor::V4 => "--wait=watcher",
            }
            .into(),
        );
    }
    push(&mut argv, &["--timeout", &duration_arg(o.timeout)]);
    if o.disable_hooks {
        argv.push("--no-hooks".into());
    }
    Ok(argv)
}

/// `helm list` arguments. Helm 3 lists only deployed and failed releases unless `--all`;
/// Helm 4 lists every status and has no `--all`.
pub fn list_args(version: &HelmVersion, o: &ListOptions) -> Vec<OsString> {
    let mut argv: Vec<OsString> = vec!["list".into()];
    match &o.namespace {
        Some(ns) => push(&mut argv, &["--namespace", ns]),
        None => argv.push("--all-namespaces".into()),
    }
    if o.deployed_and_failed_only {
        push(&mut argv, &["--deployed", "--failed"]);
    } else if version.major() == HelmMajor::V3 {
        argv.push("--all".into());
    }
    // Helm lists at most 256 releases unless told otherwise; 0 means no limit.
    push(&mut argv, &["--max", "0", "--output", "json"]);
    argv
}

/// `helm template` arguments.
pub fn template_args(
    release: &ReleaseRef,
    chart: &ChartRef,
    o: &TemplateOptions,
) -> Result<Vec<OsString>> {
    validate_release_name(&release.name)?;
    let mut argv: Vec<OsString> = vec!["template".into(), release.name.clone().into()];
    argv.extend(chart.to_args()?);
    push_namespace(&mut argv, release);
    if let Some(kube) = &o.kube_version {
        push(&mut argv, &["--kube-version", kube]);
    }
    for api in &o.api_versions {
        push(&mut argv, &["--api-versions", api]);
    }
    for file in &o.values_files {
        argv.push("--values".into());
        argv.push(file.clone().into());
    }
    for set in &o.set {
        set.render(&mut argv);
    }
    if o.include_crds {
        argv.push("--include-crds".into());
    }
    Ok(argv)
}

/// Helm release names: lower-case DNS-1123 labels of at most 53 characters.
pub fn validate_release_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 53
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidOptions {
            message: format!(
                "`{name}` is not a valid release name: use at most 53 lower-case letters, digits, \
                 '-' or '.', starting and ending with a letter or digit"
            ),
        })
    }
}

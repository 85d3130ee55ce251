//! The [`Terraform`] handle: one binary, one working directory, one environment policy.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use upgrade_core::process::{ProcessBuilder, ProcessError, ProcessOutput, StopSignal, Stream};
use upgrade_core::tool::TERRAFORM;

use crate::diagnostics::{ChangeSummary, Diagnostic, UiMessage, UiStream};
use crate::error::{Error, Failure, FailureHint, Result};
use crate::lockfile::{LOCK_FILE_NAME, LockDiff, LockFile, LockSnapshot};
use crate::options::{
    ApplyOptions, BackendConfig, InitOptions, LockSource, LockfileMode, PlanOptions,
    ProvidersLockOptions, RefreshMode, VarSource,
};
use crate::plan::Plan;
use crate::review::{PlanReview, ReviewRules};
use crate::version::{Feature, TfVersion};

/// Environment variables that would change what Terraform does behind the typed API.
/// Setting them through the builder is refused.
const FORBIDDEN_ENV: &[(&str, &str)] = &[
    (
        "TF_CLI_ARGS",
        "it silently adds flags (e.g. -refresh=false) to the commands this tool builds",
    ),
    (
        "TF_VAR_",
        "variables go through PlanOptions::var / var_file so their order is explicit",
    ),
    ("TF_INPUT", "this tool never lets Terraform prompt"),
    ("TF_IN_AUTOMATION", "this tool always sets it"),
    ("TF_LOG", "logs would mix into the output this tool parses"),
    (
        "TF_WORKSPACE",
        "select the workspace with TerraformBuilder::workspace",
    ),
    (
        "TF_REATTACH_PROVIDERS",
        "a debugger-attached provider would bypass the lock file",
    ),
];

fn forbidden(name: &str) -> Option<&'static str> {
    FORBIDDEN_ENV.iter().find_map(|(prefix, reason)| {
        let matches = if prefix.ends_with('_') {
            name.starts_with(prefix)
        } else {
            name == *prefix || name.starts_with(&format!("{prefix}_"))
        };
        matches.then_some(*reason)
    })
}

/// Builds a [`Terraform`] handle.
#[derive(Debug, Clone)]
pub struct TerraformBuilder {
    dir: PathBuf,
    binary: Option<PathBuf>,
    base: Option<ProcessBuilder>,
    env: Vec<(String, String)>,
    workspace: Option<String>,
    timeout: Option<Duration>,
    grace: Option<Duration>,
    stop: Option<StopSignal>,
    inherited: Option<Vec<(String, String)>>,
}

impl TerraformBuilder {
    /// (chainable) The terraform binary. Default: `TERRAFORM_BIN`, else `terraform` on `PATH`.
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = Some(path.into());
        self
    }

    /// (chainable) A command template whose program and environment every call starts from
    /// (e.g. a test context's pinned environment). The environment policy is applied on top.
    pub fn base_command(mut self, template: ProcessBuilder) -> Self {
        self.base = Some(template);
        self
    }

    /// (chainable) An extra environment variable for every call (e.g. cloud credentials
    /// profile). Variables that would bypass the typed API are refused at [`build`](Self::build).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// (chainable) Runs every command in this workspace (`TF_WORKSPACE`).
    pub fn workspace(mut self, name: impl Into<String>) -> Self {
        self.workspace = Some(name.into());
        self
    }

    /// (chainable) Stops any command that runs longer (SIGINT, grace period, then SIGKILL).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// (chainable) Time between SIGINT and SIGKILL when a timeout stops Terraform; give it
    /// enough to release a remote state lock.
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace = Some(grace);
        self
    }

    /// (chainable) The stop signal every command watches (default: the process-wide one).
    pub fn stop_signal(mut self, stop: StopSignal) -> Self {
        self.stop = Some(stop);
        self
    }

    /// (chainable) Checks this environment instead of the process's own for stray
    /// `TF_CLI_ARGS*` (for tests and for callers that launch with a prepared environment).
    pub fn inherited_env(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        self.inherited = Some(vars.into_iter().collect());
        self
    }

    /// Resolves the binary and applies the environment policy.
    pub fn build(self) -> Result<Terraform> {
        let program = match (&self.binary, &self.base) {
            (Some(path), _) => TERRAFORM.resolve_with(Some(path)),
            (None, Some(base)) => TERRAFORM.resolve_with(Some(base.get_program())),
            (None, None) => TERRAFORM.resolve(),
        }
        .map_err(Error::NotFound)?;

        let mut cmd = match self.base {
            Some(base) => {
                let mut cmd = ProcessBuilder::new(&program);
                for (key, value) in base.get_envs() {
                    let name = key.to_string_lossy();
                    match value {
                        Some(v) => {
                            if let Some(reason) = forbidden(&name) {
                                return Err(forbidden_error(&name, reason));
                            }
                            cmd.env(key, v);
                        }
                        None => {
                            cmd.env_remove(key);
                        }
                    }
                }
                cmd
            }
            None => ProcessBuilder::new(&program),
        };
        for (key, value) in &self.env {
            if let Some(reason) = forbidden(key) {
                return Err(forbidden_error(key, reason));
            }
            cmd.env(key, value);
        }
        // Stray TF_CLI_ARGS* in the environment we would pass on: refused, not silently
        // dropped, because the caller believes they are in effect.
        let removed: Vec<String> = cmd
            .get_envs()
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        let inherited = self.inherited.unwrap_or_else(|| {
            std::env::vars_os()
                .map(|(k, v)| {
                    (
                        k.to_string_lossy().into_owned(),
                        v.to_string_lossy().into_owned(),
                    )
                })
                .collect()
        });
        for (name, value) in &inherited {
            if name.starts_with("TF_CLI_ARGS") && !value.is_empty() && !removed.contains(name) {
                return Err(Error::ForbiddenEnv {
                    name: name.clone(),
                    reason: "it silently adds flags (e.g. -refresh=false) to the commands this \
                             tool builds",
                    fix: "unset it for this process; pass the options through the typed API",
                });
            }
        }
        cmd.env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0")
            .env("CHECKPOINT_DISABLE", "1")
            // Blank, so logging cannot pollute the output this crate parses.
            .env("TF_LOG", "")
            .env("TF_LOG_CORE", "")
            .env("TF_LOG_PROVIDER", "")
            .env("TF_LOG_PATH", "");
        match &self.workspace {
            Some(ws) => cmd.env("TF_WORKSPACE", ws),
            None => cmd.env_remove("TF_WORKSPACE"),
        };
        if let Some(t) = self.timeout {
            cmd.timeout(t);
        }
        if let Some(g) = self.grace {
            cmd.grace_period(g);
        }
        if let Some(stop) = self.stop {
            cmd.stop_signal(stop);
        }
        let dir = std::path::absolute(&self.dir).unwrap_or(self.dir);
        cmd.cwd(&dir);
        Ok(Terraform {
            program,
            dir,
            template: cmd,
            version: OnceLock::new(),
        })
    }
}

fn forbidden_error(name: &str, reason: &'static str) -> Error {
    Error::ForbiddenEnv {
        name: name.to_string(),
        reason,
        fix: "drop the variable; use the typed option instead",
    }
}

/// A Terraform binary driving one working directory.
///
/// Every command runs with `-input=false -no-color`, `TF_IN_AUTOMATION=1`, blanked `TF_LOG*`,
/// through [`upgrade_core::process::ProcessBuilder`] (secrets in `-var` and
/// `-backend-config` redacted; SIGINT then SIGKILL on timeout). Calls are blocking; from
/// async code run them on a blocking pool.
#[derive(Debug)]
pub struct Terraform {
    program: PathBuf,
    dir: PathBuf,
    template: ProcessBuilder,
    version: OnceLock<TfVersion>,
}

/// A plan written to a file, with the digest of its bytes when it was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SavedPlan {
    /// The absolute path of the plan file.
    pub path: PathBuf,
    /// SHA-256 of the file, hex.
    pub sha256: String,
}

impl SavedPlan {
    fn from_file(path: PathBuf) -> Result<SavedPlan> {
        let sha256 = sha256_file(&path)?;
        Ok(SavedPlan { path, sha256 })
    }

    /// Fails unless the file still has the bytes it had when it was planned.
    pub fn verify(&self) -> Result<()> {
        let now = sha256_file(&self.path).map_err(|_| Error::PlanFileChanged {
            path: self.path.clone(),
            problem: "it cannot be read any more".into(),
        })?;
        if now == self.sha256 {
            Ok(())
        } else {
            Err(Error::PlanFileChanged {
                path: self.path.clone(),
                problem: format!("sha256 {} != reviewed {}", now, self.sha256),
            })
        }
    }
}

fn sha256_file(path: &Path) -> Result<String> {
    use sha2::Digest;
    let bytes = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
    Ok(hex(&sha2::Sha256::digest(&bytes)))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What `plan` produced.
#[derive(Debug, Clone)]
pub struct PlanRun {
    /// Whether the plan changes anything (exit code 2 of `-detailed-exitcode`).
    pub has_changes: bool,
    /// The plan file.
    pub plan: SavedPlan,
    /// Terraform's own change summary.
    pub summary: Option<ChangeSummary>,
    /// Warnings Terraform reported.
    pub warnings: Vec<Diagnostic>,
}

/// A saved plan together with its parsed JSON and its review. Only
/// [`Terraform::review`] makes one, so an approval always stands on a real review.
#[derive(Debug, Clone)]
pub struct ReviewedPlan {
    saved: SavedPlan,
    plan: Plan,
    review: PlanReview,
}

impl ReviewedPlan {
    /// The plan file that was shown and reviewed.
    pub fn saved(&self) -> &SavedPlan {
        &self.saved
    }

    /// The plan as Terraform showed it.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The review of every change.
    pub fn review(&self) -> &PlanReview {
        &self.review
    }

    /// Approves the plan for [`Terraform::apply`] when the review has no blockers.
    pub fn approve(&self) -> Result<ApprovedPlan> {
        let blockers = self.review.blocker_lines();
        if blockers.is_empty() {
            Ok(ApprovedPlan {
                saved: self.saved.clone(),
            })
        } else {
            Err(Error::Blocked { blockers })
        }
    }
}

/// A plan file whose review had no blockers: the only thing [`Terraform::apply`] accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovedPlan {
    saved: SavedPlan,
}

impl ApprovedPlan {
    /// The approved plan file.
    pub fn saved(&self) -> &SavedPlan {
        &self.saved
    }
}

/// What `apply` reported.
#[derive(Debug, Clone)]
pub struct ApplyRun {
    /// Terraform's change summary for the apply.
    pub summary: Option<ChangeSummary>,
    /// Warnings Terraform reported.
    pub warnings: Vec<Diagnostic>,
}

/// What `init` did to the lock file.
#[derive(Debug, Clone)]
pub struct InitReport {
    /// The raw lock file before init (restore it to roll back).
    pub lock_before: LockSnapshot,
    /// The lock file after init, parsed (`None` when there is none).
    pub lock_after: Option<LockFile>,
    /// Per-provider changes from before to after.
    pub lock_diff: LockDiff,
    /// Warnings Terraform reported.
    pub warnings: Vec<Diagnostic>,
}

/// One root module output, as `output -json` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputValue {
    /// Whether it is marked sensitive (its value is still in clear text here).
    #[serde(default)]
    pub sensitive: bool,
    /// Its type, as Terraform's JSON type expression.
    #[serde(default, rename = "type")]
    pub value_type: Option<serde_json::Value>,
    /// Its value.
    #[serde(default)]
    pub value: Option<serde_json::Value>,
}

/// The identity of the current state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateInfo {
    /// Incremented by every write.
    pub serial: u64,
    /// Identifies the state's history; changes only if the state is replaced.
    pub lineage: String,
}

/// The state as `terraform state pull` prints it (format 4), decoded as far as callers need:
/// its identity and every resource instance's attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Incremented by every write.
    pub serial: u64,
    /// Identifies the state's history.
    pub lineage: String,
    /// The resources (managed and data), in every module.
    #[serde(default)]
    pub resources: Vec<StateResource>,
}

/// One resource of a [`State`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateResource {
    /// The module path, e.g. `module.eks` (absent at the root).
    #[serde(default)]
    pub module: Option<String>,
    /// `managed` or `data`.
    pub mode: String,
    /// The resource type, e.g. `aws_eks_cluster`.
    #[serde(rename = "type")]
    pub resource_type: String,
    /// The resource name, e.g. `this`.
    pub name: String,
    /// Its instances (one, or one per `count`/`for_each` key).
    #[serde(default)]
    pub instances: Vec<StateInstance>,
}

/// One instance of a [`StateResource`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateInstance {
    /// The `count` index or `for_each` key, when there is one.
    #[serde(default)]
    pub index_key: Option<serde_json::Value>,
    /// Its attributes (sensitive ones in clear text: redact before logging).
    #[serde(default)]
    pub attributes: serde_json::Value,
}

impl State {
    /// The managed resources of `resource_type`, with their address, in state order.
    pub fn managed<'a>(
        &'a self,
        resource_type: &'a str,
    ) -> impl Iterator<Item = (String, &'a StateInstance)> + 'a {
        self.resources
            .iter()
            .filter(move |r| r.mode == "managed" && r.resource_type == resource_type)
            .flat_map(|r| {
                r.instances.iter().map(move |i| {
                    let prefix = r
                        .module
                        .as_deref()
                        .map(|m| format!("{m}."))
                        .unwrap_or_default();
                    let key = match &i.index_key {
                        Some(serde_json::Value::String(k)) => format!("[\"{k}\"]"),
                        Some(k) => format!("[{k}]"),
                        None => String::new(),
                    };
                    (format!("{prefix}{}.{}{key}", r.resource_type, r.name), i)
                })
            })
    }
}

/// What `validate -json` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidateOutput {
    /// Whether the configuration is valid.
    pub valid: bool,
    /// Number of errors.
    #[serde(default)]
    pub error_count: u64,
    /// Number of warnings.
    #[serde(default)]
    pub warning_count: u64,
    /// The diagnostics.
    #[serde(default)]
    pub diagnostics: Vec<Diagnostic>,
}

impl Terraform {
    /// A builder for a handle on `dir`.
    pub fn builder(dir: impl Into<PathBuf>) -> TerraformBuilder {
        TerraformBuilder {
            dir: dir.into(),
            binary: None,
            base: None,
            env: Vec::new(),
            workspace: None,
            timeout: None,
            grace: None,
            stop: None,
            inherited: None,
        }
    }

    /// The working directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The terraform binary.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// `.terraform.lock.hcl` in the working directory.
    pub fn lock_file_path(&self) -> PathBuf {
        self.dir.join(LOCK_FILE_NAME)
    }

    /// The detected version (`version -json`, once per handle).
    pub fn version(&self) -> Result<&TfVersion> {
        if let Some(v) = self.version.get() {
            return Ok(v);
        }
        let mut cmd = self.template.clone();
        cmd.args(["version", "-json"]);
        let out = self.run("version", &cmd, &[0], false)?;
        let parsed = TfVersion::parse(&out.stdout_lossy()).map_err(|e| Error::Json {
            command: cmd.to_string(),
            what: "version output",
            source: e.into(),
            snippet: out.stdout_lossy().chars().take(200).collect(),
        })?;
        Ok(self.version.get_or_init(|| parsed))
    }

    /// Fails with [`Error::UnsupportedVersion`] unless the detected version has `feature`.
    pub fn require(&self, feature: Feature) -> Result<()> {
        let v = self.version()?;
        if v.supports(feature) {
            Ok(())
        } else {
            Err(Error::UnsupportedVersion {
                feature,
                actual: v.version.clone(),
                requirement: feature.requirement(),
                path: self.program.clone(),
            })
        }
    }

    /// The argv of `init` for `options` (checked against the detected version).
    pub fn init_args(&self, options: &InitOptions) -> Result<Vec<OsString>> {
        if options.upgrade && options.lockfile == LockfileMode::ReadOnly {
            return Err(Error::invalid(
                "`upgrade` and a read-only lock file exclude each other (Terraform refuses \
                 `-upgrade -lockfile=readonly`)",
                "choose one: upgrade to write new selections, or read-only to verify them",
            ));
        }
        let mut args = args(["init", "-input=false", "-no-color"]);
        if self.version()?.supports(Feature::InitJson) {
            args.push("-json".into());
        }
        args.push(format!("-backend={}", options.backend).into());
        if options.upgrade {
            args.push("-upgrade".into());
        }
        if options.reconfigure {
            args.push("-reconfigure".into());
        }
        if options.lockfile == LockfileMode::ReadOnly {
            self.require(Feature::LockfileReadonly)?;
            args.push("-lockfile=readonly".into());
        }
        for config in &options.backend_config {
            args.push(match config {
                BackendConfig::File(path) => flag_path("-backend-config=", path),
                BackendConfig::Value { key, value } => {
                    format!("-backend-config={key}={value}").into()
                }
            });
        }
        for dir in &options.plugin_dirs {
            args.push(flag_path("-plugin-dir=", dir));
        }
        Ok(args)
    }

    /// `terraform init`; reports how `.terraform.lock.hcl` changed.
    pub fn init(&self, options: &InitOptions) -> Result<InitReport> {
        let args = self.init_args(options)?;
        let json = self.version()?.supports(Feature::InitJson);
        let lock_before = LockSnapshot::take(self.lock_file_path())?;
        let mut cmd = self.template.clone();
        cmd.args(&args);
        let out = self.run("init", &cmd, &[0], json)?;
        let lock_after = LockFile::read_optional(&self.lock_file_path())?;
        let before = lock_before.parse()?;
        let lock_diff = LockDiff::between(before.as_ref(), lock_after.as_ref());
        Ok(InitReport {
            lock_before,
            lock_after,
            lock_diff,
            warnings: warnings(&out, json),
        })
    }

    /// Rolls the lock file back: puts the snapshot's exact bytes back, then runs
    /// `init -lockfile=readonly` so `.terraform/providers` matches it again. Restore the
    /// configuration (e.g. `versions.tf`) first, or the read-only init refuses the mismatch.
    pub fn restore_lock_file(&self, snapshot: &LockSnapshot) -> Result<InitReport> {
        snapshot.restore()?;
        self.init(&InitOptions::default().lockfile(LockfileMode::ReadOnly))
    }

    /// `terraform validate -json`. An invalid configuration is a successful call with
    /// `valid: false` and its diagnostics.
    pub fn validate(&self) -> Result<ValidateOutput> {
        let mut cmd = self.template.clone();
        cmd.args(["validate", "-json", "-no-color"]);
        let out = self.run("validate", &cmd, &[0, 1], false)?;
        match serde_json::from_slice::<ValidateOutput>(&out.stdout) {
            Ok(v) => Ok(v),
            Err(_) if out.status.code() == Some(1) => {
                Err(self.failed("validate", &cmd, &out, false))
            }
            Err(e) => Err(json_error(&cmd, "validate JSON", e, &out.stdout)),
        }
    }

    /// The argv of `plan` for `options` (checked against the detected version).
    pub fn plan_args(&self, options: &PlanOptions) -> Result<Vec<OsString>> {
        self.require(Feature::JsonUi)?;
        if options.destroy && options.refresh == RefreshMode::Only {
            return Err(Error::invalid(
                "`destroy` and a refresh-only plan exclude each other",
                "plan the refresh on its own, then plan the destroy",
            ));
        }
        let mut args = args([
            "plan",
            "-input=false",
            "-no-color",
            "-json",
            "-detailed-exitcode",
        ]);
        args.push(flag_path("-out=", &self.plan_path(&options.out)));
        args.push(format!("-lock={}", options.lock).into());
        args.push(format!("-lock-timeout={}", go_duration(options.lock_timeout)).into());
        match options.refresh {
            RefreshMode::Normal => args.push("-refresh=true".into()),
            RefreshMode::Skip => args.push("-refresh=false".into()),
            RefreshMode::Only => {
                self.require(Feature::RefreshOnly)?;
                args.push("-refresh-only".into());
            }
        }
        if options.destroy {
            args.push("-destroy".into());
        }
        if let Some(n) = options.parallelism {
            args.push(format!("-parallelism={n}").into());
        }
        for target in &options.targets {
            args.push(format!("-target={target}").into());
        }
        if !options.replace.is_empty() {
            self.require(Feature::PlanReplace)?;
        }
        for address in &options.replace {
            args.push(format!("-replace={address}").into());
        }
        // One ordered list: Terraform lets later -var/-var-file win.
        for source in &options.vars {
            match source {
                VarSource::File(path) => args.push(flag_path("-var-file=", path)),
                VarSource::Value { name, value } => {
                    args.push("-var".into());
                    args.push(format!("{name}={value}").into());
                }
            }
        }
        Ok(args)
    }

    fn plan_path(&self, out: &Path) -> PathBuf {
        if out.is_absolute() {
            out.to_path_buf()
        } else {
            self.dir.join(out)
        }
    }

    /// `terraform plan` to a file, with `-detailed-exitcode`.
    pub fn plan(&self, options: &PlanOptions) -> Result<PlanRun> {
        self.plan_inner(options, None)
    }

    /// [`plan`](Self::plan), calling `on_message` for each line of Terraform's `-json` UI
    /// as it arrives (refresh and planned-change progress, diagnostics).
    pub fn plan_with_progress(
        &self,
        options: &PlanOptions,
        on_message: &mut dyn FnMut(&UiMessage),
    ) -> Result<PlanRun> {
        self.plan_inner(options, Some(on_message))
    }

    fn plan_inner(
        &self,
        options: &PlanOptions,
        progress: Option<&mut dyn FnMut(&UiMessage)>,
    ) -> Result<PlanRun> {
        let args = self.plan_args(options)?;
        let mut cmd = self.template.clone();
        cmd.args(&args);
        let out = self.run_with("plan", &cmd, &[0, 2], true, progress)?;
        let stream = UiStream::parse(&out.stdout_lossy());
        Ok(PlanRun {
            has_changes: out.status.code() == Some(2),
            plan: SavedPlan::from_file(self.plan_path(&options.out))?,
            summary: stream.change_summary,
            warnings: stream.warnings().cloned().collect(),
        })
    }

    /// `terraform show -json PLANFILE`, decoded; refuses a file that changed since `plan`.
    pub fn show_plan(&self, saved: &SavedPlan) -> Result<Plan> {
        self.require(Feature::ShowJson)?;
        saved.verify()?;
        let mut cmd = self.template.clone();
        cmd.args(["show", "-json", "-no-color"]).arg(&saved.path);
        // Parsed whole: a capped document would be unreadable.
        cmd.capture_limit(usize::MAX);
        let out = self.run("show", &cmd, &[0], false)?;
        Plan::from_slice(&out.stdout).map_err(|e| match e {
            crate::plan::PlanParseError::Json(source) => {
                json_error(&cmd, "plan JSON", source, &out.stdout)
            }
            crate::plan::PlanParseError::Format(format_version) => Error::UnsupportedFormat {
                what: "plan JSON",
                format_version,
            },
        })
    }

    /// Shows and reviews a saved plan against `rules`.
    pub fn review(&self, saved: &SavedPlan, rules: &ReviewRules) -> Result<ReviewedPlan> {
        let plan = self.show_plan(saved)?;
        let review = PlanReview::new(&plan, rules);
        Ok(ReviewedPlan {
            saved: saved.clone(),
            plan,
            review,
        })
    }

    /// Applies an approved saved plan, and nothing else.
    pub fn apply(&self, plan: &ApprovedPlan, options: &ApplyOptions) -> Result<ApplyRun> {
        self.apply_inner(plan, options, None)
    }

    /// [`apply`](Self::apply), calling `on_message` for each line of Terraform's `-json` UI
    /// as it arrives (`apply_start`, `apply_progress`, `apply_complete`, diagnostics): an
    /// EKS control-plane update runs for many minutes.
    pub fn apply_with_progress(
        &self,
        plan: &ApprovedPlan,
        options: &ApplyOptions,
        on_message: &mut dyn FnMut(&UiMessage),
    ) -> Result<ApplyRun> {
        self.apply_inner(plan, options, Some(on_message))
    }

    fn apply_inner(
        &self,
        plan: &ApprovedPlan,
        options: &ApplyOptions,
        progress: Option<&mut dyn FnMut(&UiMessage)>,
    ) -> Result<ApplyRun> {
        self.require(Feature::JsonUi)?;
        plan.saved.verify()?;
        let mut cmd = self.template.clone();
        cmd.args([
            "apply",
            "-input=false",
            "-no-color",
            "-json",
            "-auto-approve",
        ])
        .arg(format!("-lock={}", options.lock))
        .arg(format!(
            "-lock-timeout={}",
            go_duration(options.lock_timeout)
        ));
        if let Some(n) = options.parallelism {
            cmd.arg(format!("-parallelism={n}"));
        }
        cmd.arg(&plan.saved.path);
        let out = self.run_with("apply", &cmd, &[0], true, progress)?;
        let stream = UiStream::parse(&out.stdout_lossy());
        Ok(ApplyRun {
            summary: stream.change_summary,
            warnings: stream.warnings().cloned().collect(),
        })
    }

    /// `terraform output -json`: every root module output (sensitive values in clear text:
    /// redact before logging).
    pub fn output(&self) -> Result<BTreeMap<String, OutputValue>> {
        let mut cmd = self.template.clone();
        cmd.args(["output", "-json", "-no-color"]);
        // Parsed whole: a capped document would be unreadable.
        cmd.capture_limit(usize::MAX);
        let out = self.run("output", &cmd, &[0], false)?;
        serde_json::from_slice(&out.stdout)
            .map_err(|e| json_error(&cmd, "output JSON", e, &out.stdout))
    }

    /// The state's serial and lineage (`state pull`); `None` when there is no state yet.
    pub fn state_info(&self) -> Result<Option<StateInfo>> {
        Ok(self.state()?.map(|s| StateInfo {
            serial: s.serial,
            lineage: s.lineage,
        }))
    }

    /// The state (`state pull`): its identity and resources; `None` when there is no state
    /// yet. Holds sensitive values in clear text: never log it.
    pub fn state(&self) -> Result<Option<State>> {
        let mut cmd = self.template.clone();
        cmd.args(["state", "pull"]);
        // Parsed whole: a capped document would be unreadable.
        cmd.capture_limit(usize::MAX);
        let out = self.run("state pull", &cmd, &[0], false)?;
        if out.stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice(&out.stdout)
            .map(Some)
            .map_err(|e| json_error(&cmd, "state JSON", e, &out.stdout))
    }

    /// `terraform providers lock` for several platforms; reports how the lock file changed.
    pub fn providers_lock(&self, options: &ProvidersLockOptions) -> Result<LockDiff> {
        self.require(Feature::ProvidersLock)?;
        let mut cmd = self.template.clone();
        cmd.args(["providers", "lock", "-no-color"]);
        for platform in &options.platforms {
            cmd.arg(format!("-platform={platform}"));
        }
        match &options.source {
            LockSource::Registry => {}
            LockSource::FsMirror(dir) => {
                cmd.arg(flag_path("-fs-mirror=", dir));
            }
            LockSource::NetMirror(url) => {
                cmd.arg(format!("-net-mirror={url}"));
            }
        }
        cmd.args(&options.providers);
        let before = LockFile::read_optional(&self.lock_file_path())?;
        self.run("providers lock", &cmd, &[0], false)?;
        let after = LockFile::read_optional(&self.lock_file_path())?;
        Ok(LockDiff::between(before.as_ref(), after.as_ref()))
    }

    fn run(
        &self,
        subcommand: &'static str,
        cmd: &ProcessBuilder,
        accept: &[i32],
        json_ui: bool,
    ) -> Result<ProcessOutput> {
        self.run_with(subcommand, cmd, accept, json_ui, None)
    }

    fn run_with(
        &self,
        subcommand: &'static str,
        cmd: &ProcessBuilder,
        accept: &[i32],
        json_ui: bool,
        progress: Option<&mut dyn FnMut(&UiMessage)>,
    ) -> Result<ProcessOutput> {
        let result = match progress {
            Some(on_message) => cmd.output_with_streaming(&mut |stream, line| {
                if stream == Stream::Stdout && !line.trim().is_empty() {
                    on_message(&UiMessage::parse_line(line));
                }
            }),
            None => cmd.output(),
        };
        let out = result.map_err(ProcessError::into_tool_error::<Error>)?;
        match out.status.code() {
            Some(code) if accept.contains(&code) => Ok(out),
            _ => Err(self.failed(subcommand, cmd, &out, json_ui)),
        }
    }

    fn failed(
        &self,
        subcommand: &'static str,
        cmd: &ProcessBuilder,
        out: &ProcessOutput,
        json_ui: bool,
    ) -> Error {
        let (command, code, signal, stdout, stderr) = match cmd.exited_error(out) {
            ProcessError::Exited {
                command,
                code,
                signal,
                stdout,
                stderr,
            } => (command, code, signal, stdout, stderr),
            other => (other.to_string(), None, None, String::new(), String::new()),
        };
        let diagnostics = if json_ui {
            UiStream::parse(&stdout).diagnostics
        } else {
            Vec::new()
        };
        let hint = FailureHint::classify(&diagnostics, &stderr);
        Error::Failed(Box::new(Failure {
            subcommand,
            command,
            code,
            signal,
            diagnostics,
            hint,
            stdout,
            stderr,
        }))
    }
}

fn warnings(out: &ProcessOutput, json: bool) -> Vec<Diagnostic> {
    if json {
        UiStream::parse(&out.stdout_lossy())
            .warnings()
            .cloned()
            .collect()
    } else {
        Vec::new()
    }
}

fn json_error(
    cmd: &ProcessBuilder,
    what: &'static str,
    source: serde_json::Error,
    bytes: &[u8],
) -> Error {
    match cmd.parse_error(what, source, bytes) {
        ProcessError::Parse {
            command,
            source,
            snippet,
            ..
        } => Error::Json {
            command,
            what,
            source,
            snippet,
        },
        other => Error::Process(other),
    }
}

fn args<const N: usize>(items: [&str; N]) -> Vec<OsString> {
    items.iter().map(OsString::from).collect()
}

fn flag_path(flag: &str, path: &Path) -> OsString {
    let mut arg = OsString::from(flag);
    arg.push(path.as_os_str());
    arg
}

/// A Go duration string Terraform accepts, e.g. `0s`, `30s`, `1500ms`.
fn go_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_names_cover_prefixes_and_exact_names() {
        for name in [
            "TF_CLI_ARGS",
            "TF_CLI_ARGS_plan",
            "TF_VAR_password",
            "TF_LOG",
            "TF_LOG_PROVIDER",
            "TF_WORKSPACE",
            "TF_IN_AUTOMATION",
        ] {
            assert!(forbidden(name).is_some(), "{name}");
        }
        for name in [
            "TF_CLI_CONFIG_FILE",
            "TF_DATA_DIR",
            "AWS_PROFILE",
            "TF_LOGGER",
        ] {
            assert!(forbidden(name).is_none(), "{name}");
        }
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_secs(90)), "90s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1500ms");
    }
}

#[cfg(test)]
mod send_sync {
    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn handles_can_be_shared_across_threads() {
        assert_send_sync::<super::Terraform>();
        assert_send_sync::<super::ReviewedPlan>();
        assert_send_sync::<crate::Error>();
    }
}

//! The [`Helm`] handle: one Helm binary, its detected version, the cluster it talks to, and
//! every command the toolkit runs.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use upgrade_core::ProcessBuilder;
use upgrade_core::process::StopSignal;
use upgrade_core::tool::HELM;

use crate::chart::{
    ChartCompatibility, ChartMetadata, ChartRef, ChartSource, CrdInfo, CrdUpgradeNotice,
    check_kube_version, parse_crds,
};
use crate::error::{Error, FailureKind, Result};
use crate::options::{
    self, ListOptions, RollbackOptions, TemplateOptions, UninstallOptions, UpgradeOptions,
    ValuesStrategy, WaitMode,
};
use crate::snapshot::{
    PendingPolicy, ReleaseSnapshot, RestoreAction, RestorePlan, SNAPSHOT_FORMAT, pending_error,
    plan_restore,
};
use crate::storage::StorageDriver;
use crate::types::{
    ChartVersionEntry, HistoryEntry, ListEntry, Release, ReleaseMetadata, ReleaseRef,
    ReleaseStatus, Values,
};
use crate::version::HelmVersion;

/// Environment variables that silently redirect Helm (another namespace, context, cluster,
/// identity, storage or history limit). The handle removes them so that only its explicit
/// settings count.
pub const REDIRECTING_ENV: &[&str] = &[
    "HELM_NAMESPACE",
    "HELM_KUBECONTEXT",
    "HELM_KUBETOKEN",
    "HELM_KUBEASUSER",
    "HELM_KUBEASGROUPS",
    "HELM_KUBEAPISERVER",
    "HELM_KUBECAFILE",
    "HELM_KUBEINSECURE_SKIP_TLS_VERIFY",
    "HELM_KUBETLS_SERVER_NAME",
    "HELM_DRIVER",
    "HELM_DRIVER_SQL_CONNECTION_STRING",
    "HELM_MAX_HISTORY",
    "HELM_DEBUG",
    "HELM_POST_RENDERER",
];

/// How long a read (list, status, history, show, ...) may take unless configured.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(120);

/// Which values `get values` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValuesScope {
    /// Only the user-supplied values.
    User,
    /// Chart defaults coalesced with the user values (`--all`).
    All,
}

/// A Helm binary bound to a cluster. Cheap to share (`&Helm`); the version is detected once.
#[derive(Debug)]
pub struct Helm {
    program: PathBuf,
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
    driver: StorageDriver,
    extra_env: Vec<(OsString, OsString)>,
    read_timeout: Duration,
    plain_http: bool,
    stop: Option<StopSignal>,
    version: tokio::sync::OnceCell<HelmVersion>,
}

/// Builds a [`Helm`].
#[derive(Debug, Default)]
pub struct HelmBuilder {
    program: Option<PathBuf>,
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
    driver: StorageDriver,
    extra_env: Vec<(OsString, OsString)>,
    read_timeout: Option<Duration>,
    plain_http: bool,
    stop: Option<StopSignal>,
    version: Option<HelmVersion>,
}

impl HelmBuilder {
    /// The Helm binary (default: `HELM_BIN`, else `helm` on `PATH`).
    pub fn program(mut self, path: impl Into<PathBuf>) -> Self {
        self.program = Some(path.into());
        self
    }

    /// The kubeconfig file (`--kubeconfig`; default: Helm's own lookup, `KUBECONFIG` or `~/.kube/config`).
    pub fn kubeconfig(mut self, path: impl Into<PathBuf>) -> Self {
        self.kubeconfig = Some(path.into());
        self
    }

    /// The kubeconfig context (`--kube-context`).
    pub fn context(mut self, context: impl Into<String>) -> Self {
        self.context = Some(context.into());
        self
    }

    /// The storage driver Helm uses (`HELM_DRIVER`, set explicitly; default Secrets).
    pub fn driver(mut self, driver: StorageDriver) -> Self {
        self.driver = driver;
        self
    }

    /// An extra environment variable for every Helm run (e.g. `HELM_CONFIG_HOME`).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.extra_env.push((key.into(), value.into()));
        self
    }

    /// The timeout of read commands.
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = Some(timeout);
        self
    }

    /// Talks to OCI registries over plain HTTP (`--plain-http`, for local or in-cluster
    /// registries without TLS). Off by default.
    pub fn plain_http(mut self, plain_http: bool) -> Self {
        self.plain_http = plain_http;
        self
    }

    /// The stop signal every Helm command watches (default: the process-wide one).
    pub fn stop_signal(mut self, stop: StopSignal) -> Self {
        self.stop = Some(stop);
        self
    }

    /// Skips version detection (for argv construction without a binary, or a known Helm).
    pub fn version(mut self, version: HelmVersion) -> Self {
        self.version = Some(version);
        self
    }

    /// Resolves the binary and builds the handle.
    pub fn build(self) -> Result<Helm> {
        let program = match self.program {
            Some(path) => path,
            None => HELM.resolve()?,
        };
        Ok(Helm {
            program,
            kubeconfig: self.kubeconfig,
            context: self.context,
            driver: self.driver,
            extra_env: self.extra_env,
            read_timeout: self.read_timeout.unwrap_or(DEFAULT_READ_TIMEOUT),
            plain_http: self.plain_http,
            stop: self.stop,
            version: tokio::sync::OnceCell::new_with(self.version),
        })
    }
}

/// What [`Helm::safe_upgrade`] did.
#[derive(Debug)]
pub struct UpgradeOutcome {
    /// The snapshot taken before the upgrade (`None` on a first install).
    pub snapshot: Option<PathBuf>,
    /// The upgrade's result: the new revision, or the error (the snapshot is the way back).
    pub result: Result<Release>,
}

/// How many times a Helm command that failed on a transient API error is run in all.
pub const TRANSIENT_ATTEMPTS: u32 = 5;

/// How many times a restore's Helm command (the way back of a failed upgrade) is run in all:
/// more than for the upgrade, since giving up leaves the release half-done.
pub const RESTORE_ATTEMPTS: u32 = 12;

impl Helm {
    /// A builder.
    pub fn builder() -> HelmBuilder {
        HelmBuilder::default()
    }

    /// The binary.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// The detected version (`helm version --template '{{.Version}}'`, once).
    pub async fn version(&self) -> Result<&HelmVersion> {
        self.version
            .get_or_try_init(|| async {
                let mut cmd = self.base_command();
                cmd.args(["version", "--template", "{{.Version}}"])
                    .timeout(self.read_timeout);
                let out = cmd.exec_async().await?;
                match HelmVersion::parse(&out.stdout_lossy()) {
                    Ok(version) => Ok(version),
                    // A wrapper script or plugin may not pass --template through; --short
                    // prints `v3.17.3+ge4da497` on every Helm 3 and 4.
                    Err(template_err) => {
                        let mut short = self.base_command();
                        short
                            .args(["version", "--short"])
                            .timeout(self.read_timeout);
                        let out = short.exec_async().await?;
                        HelmVersion::parse(&out.stdout_lossy()).map_err(|_| template_err)
                    }
                }
            })
            .await
    }

    fn base_command(&self) -> ProcessBuilder {
        let mut cmd = ProcessBuilder::new(&self.program);
        for var in REDIRECTING_ENV {
            cmd.env_remove(var);
        }
        if self.kubeconfig.is_some() {
            cmd.env_remove("KUBECONFIG");
        }
        cmd.env("HELM_DRIVER", self.driver.as_env_value())
            .env("NO_COLOR", "1");
        for (key, value) in &self.extra_env {
            cmd.env(key, value);
        }
        cmd.grace_period(Duration::from_secs(10));
        if let Some(stop) = &self.stop {
            cmd.stop_signal(stop.clone());
        }
        cmd
    }

    /// A command for `args` with the global flags (kubeconfig, context) and environment set.
    pub fn command(&self, args: impl IntoIterator<Item = OsString>) -> ProcessBuilder {
        let mut cmd = self.base_command();
        cmd.args(args);
        if let Some(kubeconfig) = &self.kubeconfig {
            cmd.arg("--kubeconfig").arg(kubeconfig);
        }
        if let Some(context) = &self.context {
            cmd.arg("--kube-context").arg(context);
        }
        cmd
    }

    /// Flags a chart reference needs beyond its own arguments.
    fn chart_flags(&self, chart: &ChartRef, args: &mut Vec<OsString>) {
        if self.plain_http && matches!(chart.source, ChartSource::Oci(_)) {
            args.push("--plain-http".into());
        }
    }

    fn read_command(&self, args: Vec<OsString>) -> ProcessBuilder {
        let mut cmd = self.command(args);
        // Reads are parsed whole (JSON, manifests): a capped document would be unreadable.
        cmd.timeout(self.read_timeout).capture_limit(usize::MAX);
        cmd
    }

    /// Runs `cmd`, again (up to [`TRANSIENT_ATTEMPTS`] times, backing off) while it fails
    /// because the API server failed a request for now ([`FailureKind::ApiTransient`]):
    /// client-go retries only throttling and 5xx that carry Retry-After, and a dropped
    /// connection only on reads, so one 500 would otherwise fail a whole upgrade. Commands
    /// that change a release go through [`run_release_change`](Self::run_release_change).
    async fn run(&self, cmd: &ProcessBuilder) -> Result<upgrade_core::ProcessOutput> {
        tracing::info!(command = %cmd, "helm");
        let mut pause = Duration::from_millis(500);
        let mut attempt = 1;
        loop {
            match cmd.exec_async().await {
                Ok(out) => return Ok(out),
                Err(e) => {
                    let err = Error::from(e);
                    if attempt >= TRANSIENT_ATTEMPTS
                        || err.failure_kind() != Some(FailureKind::ApiTransient)
                    {
                        return Err(err);
                    }
                    tracing::warn!(command = %cmd, attempt, error = %err, "transient API error; running helm again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(8));
                    attempt += 1;
                }
            }
        }
    }

    /// Runs `cmd`, which changes `release` (an upgrade or a rollback), again while it fails
    /// for a transient reason ([`Error::worth_running_again`]), like [`run`](Self::run). A
    /// failed attempt may leave the release `pending-*`: Helm wrote the pending record, then
    /// could not write how the operation ended. No Helm is running on it any more (ours
    /// exited), so before running again that pending revision is settled, and only when it
    /// is newer than the release was before the first attempt: an older pending revision is
    /// someone else's and is refused as usual.
    async fn run_release_change(
        &self,
        cmd: &ProcessBuilder,
        release: &ReleaseRef,
        attempts: u32,
    ) -> Result<upgrade_core::ProcessOutput> {
        tracing::info!(command = %cmd, "helm");
        // Unknown when it cannot be read (the cluster unreachable): the command then fails
        // with its own error, and nothing is settled.
        let newest_before = self.newest_revision(release).await.ok();
        let mut pause = Duration::from_millis(500);
        let mut attempt = 1;
        loop {
            let err = match cmd.exec_async().await {
                Ok(out) => return Ok(out),
                Err(e) => Error::from(e),
            };
            if attempt >= attempts || !err.worth_running_again() {
                return Err(err);
            }
            tracing::warn!(command = %cmd, attempt, error = %err, "transient API error; running helm again");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(8));
            attempt += 1;
            if let Some(newest_before) = newest_before {
                self.settle_own_pending(release, newest_before).await?;
            }
        }
    }

    /// The release's history, empty when the release does not exist.
    async fn history_or_empty(&self, release: &ReleaseRef) -> Result<Vec<HistoryEntry>> {
        match self.history(release).await {
            Err(err) if err.failure_kind() == Some(crate::FailureKind::ReleaseNotFound) => {
                Ok(Vec::new())
            }
            other => other,
        }
    }

    /// The release's newest revision (`None` when it does not exist).
    async fn newest_revision(&self, release: &ReleaseRef) -> Result<Option<u32>> {
        let history = self.history_or_empty(release).await?;
        Ok(history.iter().map(|h| h.revision).max())
    }

    /// Clears a `pending-*` revision newer than `newest_before`, which only our own failed
    /// attempt can have written: a pending upgrade or rollback is rolled back to the newest
    /// deployed revision (what Helm's own `--atomic` does), a pending first install is
    /// uninstalled (what a failed `--atomic` install does).
    async fn settle_own_pending(
        &self,
        release: &ReleaseRef,
        newest_before: Option<u32>,
    ) -> Result<()> {
        let history = self.history_or_empty(release).await?;
        let Some(last) = history.iter().max_by_key(|h| h.revision) else {
            return Ok(());
        };
        if !last.status.is_pending() || newest_before.is_some_and(|n| last.revision <= n) {
            return Ok(());
        }
        let version = self.version().await?;
        let cmd = match ReleaseSnapshot::newest_deployed(&history) {
            Some(deployed) if last.status != ReleaseStatus::PendingInstall => {
                tracing::warn!(release = %release, pending = last.revision, to = deployed,
                    "our failed attempt left a pending revision; rolling back to the last deployed one before running again");
                let o = RollbackOptions {
                    wait: WaitMode::HooksOnly,
                    ..RollbackOptions::default()
                };
                let mut cmd = self.command(options::rollback_args(version, release, deployed, &o)?);
                cmd.timeout(o.timeout + Duration::from_secs(60));
                cmd
            }
            _ => {
                tracing::warn!(release = %release, pending = last.revision,
                    "our failed first install left a pending revision; uninstalling it before running again");
                let o = UninstallOptions::default();
                let mut cmd = self.command(options::uninstall_args(version, release, &o)?);
                cmd.timeout(o.timeout + Duration::from_secs(60));
                cmd
            }
        };
        self.run(&cmd).await.map(drop)
    }

    async fn run_json<T: serde::de::DeserializeOwned>(
        &self,
        cmd: &ProcessBuilder,
        what: &str,
    ) -> Result<T> {
        let out = self.run(cmd).await?;
        Ok(cmd.parse_json(what, &out.stdout)?)
    }

    // ---- reads -----------------------------------------------------------------------------

    /// `helm list` (all namespaces unless one is given; every status unless restricted).
    pub async fn list(&self, o: &ListOptions) -> Result<Vec<ListEntry>> {
        let version = self.version().await?;
        let cmd = self.read_command(options::list_args(version, o));
        self.run_json(&cmd, "helm list JSON").await
    }

    /// `helm status` of the current or a given revision.
    pub async fn status(&self, release: &ReleaseRef, revision: Option<u32>) -> Result<Release> {
        let mut args = release_args("status", release);
        push_revision(&mut args, revision);
        args.extend(["--output".into(), "json".into()]);
        self.run_json(&self.read_command(args), "helm status JSON")
            .await
    }

    /// `helm history`, ascending by revision.
    pub async fn history(&self, release: &ReleaseRef) -> Result<Vec<HistoryEntry>> {
        let mut args = release_args("history", release);
        args.extend(["--output".into(), "json".into()]);
        let mut entries: Vec<HistoryEntry> = self
            .run_json(&self.read_command(args), "helm history JSON")
            .await?;
        entries.sort_by_key(|e| e.revision);
        Ok(entries)
    }

    /// `helm get values` (`null` becomes an empty map).
    pub async fn values(
        &self,
        release: &ReleaseRef,
        revision: Option<u32>,
        scope: ValuesScope,
    ) -> Result<Values> {
        let mut args = vec!["get".into()];
        args.extend(release_args("values", release));
        push_revision(&mut args, revision);
        if scope == ValuesScope::All {
            args.push("--all".into());
        }
        args.extend(["--output".into(), "json".into()]);
        let values: Option<Values> = self
            .run_json(&self.read_command(args), "helm get values JSON")
            .await?;
        Ok(values.unwrap_or_default())
    }

    /// `helm get manifest`: the rendered manifests exactly as stored in the release.
    pub async fn manifest(&self, release: &ReleaseRef, revision: Option<u32>) -> Result<String> {
        let mut args = vec!["get".into()];
        args.extend(release_args("manifest", release));
        push_revision(&mut args, revision);
        let out = self.run(&self.read_command(args)).await?;
        // Helm prints the manifest with one newline appended; return it as stored.
        let mut manifest = out.stdout_lossy();
        if manifest.ends_with('\n') {
            manifest.pop();
        }
        Ok(manifest)
    }

    /// `helm get metadata` (chart name and version, appVersion, apply method).
    pub async fn metadata(
        &self,
        release: &ReleaseRef,
        revision: Option<u32>,
    ) -> Result<ReleaseMetadata> {
        let mut args = vec!["get".into()];
        args.extend(release_args("metadata", release));
        push_revision(&mut args, revision);
        args.extend(["--output".into(), "json".into()]);
        self.run_json(&self.read_command(args), "helm get metadata JSON")
            .await
    }

    /// `helm show chart`: the chart's Chart.yaml.
    pub async fn show_chart(&self, chart: &ChartRef) -> Result<ChartMetadata> {
        let mut args: Vec<OsString> = vec!["show".into(), "chart".into()];
        args.extend(chart.to_args()?);
        self.chart_flags(chart, &mut args);
        let cmd = self.read_command(args);
        let out = self.run(&cmd).await?;
        serde_norway::from_slice(&out.stdout).map_err(|e| {
            cmd.parse_error("Chart.yaml (helm show chart)", e, &out.stdout)
                .into()
        })
    }

    /// `helm show values`: the chart's own `values.yaml` (its defaults), as JSON; an empty
    /// file is an empty mapping.
    pub async fn show_values(&self, chart: &ChartRef) -> Result<serde_json::Value> {
        let mut args: Vec<OsString> = vec!["show".into(), "values".into()];
        args.extend(chart.to_args()?);
        self.chart_flags(chart, &mut args);
        let cmd = self.read_command(args);
        let out = self.run(&cmd).await?;
        let values: serde_json::Value = serde_norway::from_slice(&out.stdout)
            .map_err(|e| cmd.parse_error("values.yaml (helm show values)", e, &out.stdout))?;
        Ok(if values.is_null() {
            serde_json::json!({})
        } else {
            values
        })
    }

    /// `helm show crds`: the CRDs under the chart's `crds/`, which upgrades never update.
    pub async fn show_crds(&self, chart: &ChartRef) -> Result<Vec<CrdInfo>> {
        let mut args: Vec<OsString> = vec!["show".into(), "crds".into()];
        args.extend(chart.to_args()?);
        self.chart_flags(chart, &mut args);
        let out = self.run(&self.read_command(args)).await?;
        parse_crds(&out.stdout_lossy(), None)
    }

    /// `helm show crds`, whole: the definitions under the chart's `crds/`.
    pub async fn show_crd_definitions(&self, chart: &ChartRef) -> Result<Vec<serde_json::Value>> {
        let mut args: Vec<OsString> = vec!["show".into(), "crds".into()];
        args.extend(chart.to_args()?);
        self.chart_flags(chart, &mut args);
        let out = self.run(&self.read_command(args)).await?;
        crate::chart::manifest_crds(&out.stdout_lossy(), None)
    }

    /// Checks `chart` against a target Kubernetes version (the `gitVersion` the cluster reports,
    /// e.g. `v1.31.2-eks-7f9249a`) the way this Helm will at install time, and lists the CRDs
    /// the upgrade will not update.
    pub async fn chart_compatibility(
        &self,
        chart: &ChartRef,
        kube_version: &str,
    ) -> Result<ChartCompatibility> {
        let major = self.version().await?.major();
        let metadata = self.show_chart(chart).await?;
        let kube = check_kube_version(metadata.kube_version.as_deref(), kube_version, major)?;
        let crds = CrdUpgradeNotice::for_chart(chart, self.show_crds(chart).await?);
        Ok(ChartCompatibility {
            chart: metadata.name,
            version: metadata.version,
            app_version: metadata.app_version,
            deprecated: metadata.deprecated,
            kube_version: kube,
            crds,
        })
    }

    /// `helm template`: the rendered manifests (no cluster needed).
    pub async fn template(
        &self,
        release: &ReleaseRef,
        chart: &ChartRef,
        o: &TemplateOptions,
    ) -> Result<String> {
        // --set values are redacted by the runner (keys stay visible).
        let mut args = options::template_args(release, chart, o)?;
        self.chart_flags(chart, &mut args);
        let cmd = self.read_command(args);
        Ok(self.run(&cmd).await?.stdout_lossy())
    }

    // ---- repositories and charts -----------------------------------------------------------

    /// `helm repo add NAME URL --force-update`.
    pub async fn repo_add(&self, name: &str, url: &str) -> Result<()> {
        let args = ["repo", "add", name, url, "--force-update"].map(OsString::from);
        self.run(&self.read_command(args.to_vec())).await.map(drop)
    }

    /// `helm repo update` (all repositories when `names` is empty).
    pub async fn repo_update(&self, names: &[&str]) -> Result<()> {
        let mut args: Vec<OsString> = vec!["repo".into(), "update".into()];
        args.extend(names.iter().map(OsString::from));
        self.run(&self.read_command(args)).await.map(drop)
    }

    /// The versions of `repo/chart` the repository offers (from its index, after
    /// [`repo_update`](Self::repo_update)), newest first; `devel` includes pre-releases.
    pub async fn chart_versions(
        &self,
        repo: &str,
        chart: &str,
        devel: bool,
    ) -> Result<Vec<ChartVersionEntry>> {
        let wanted = format!("{repo}/{chart}");
        let mut args: Vec<OsString> = vec![
            "search".into(),
            "repo".into(),
            wanted.clone().into(),
            "--versions".into(),
            "--output".into(),
            "json".into(),
        ];
        if devel {
            args.push("--devel".into());
        }
        let entries: Vec<ChartVersionEntry> = self
            .run_json(&self.read_command(args), "helm search repo JSON")
            .await?;
        // Search matches substrings; keep the exact chart only.
        Ok(entries.into_iter().filter(|e| e.name == wanted).collect())
    }

    /// `helm pull` into `destination`; returns the `.tgz` (or, with `untar`, the folder).
    pub async fn pull(&self, chart: &ChartRef, destination: &Path, untar: bool) -> Result<PathBuf> {
        std::fs::create_dir_all(destination).map_err(|e| Error::Chart {
            path: destination.to_path_buf(),
            message: format!("cannot create the pull destination ({e})"),
        })?;
        let before = list_dir(destination);
        let mut args: Vec<OsString> = vec!["pull".into()];
        args.extend(chart.to_args()?);
        self.chart_flags(chart, &mut args);
        args.extend(["--destination".into(), destination.as_os_str().to_owned()]);
        if untar {
            args.push("--untar".into());
        }
        self.run(&self.read_command(args)).await?;
        let new: Vec<PathBuf> = list_dir(destination)
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        let expected = if untar {
            destination.join(chart.chart_name())
        } else {
            match &chart.version {
                Some(v) => destination.join(format!("{}-{v}.tgz", chart.chart_name())),
                None => new.first().cloned().unwrap_or_default(),
            }
        };
        if expected.exists() {
            Ok(expected)
        } else {
            new.into_iter().next().ok_or_else(|| Error::Chart {
                path: destination.to_path_buf(),
                message: format!("helm pull of {chart} succeeded but wrote nothing new there"),
            })
        }
    }

    // ---- writes ----------------------------------------------------------------------------

    /// The `helm upgrade` command these options produce for this Helm (not run).
    pub async fn upgrade_command(
        &self,
        release: &ReleaseRef,
        chart: &ChartRef,
        o: &UpgradeOptions,
    ) -> Result<ProcessBuilder> {
        let version = self.version().await?;
        let mut args = options::upgrade_args(version, release, chart, o)?;
        self.chart_flags(chart, &mut args);
        let mut cmd = self.command(args);
        cmd.timeout(
            o.process_timeout
                .unwrap_or(o.timeout + Duration::from_secs(60)),
        )
        .grace_period(o.kill_grace);
        Ok(cmd)
    }

    /// `helm upgrade` (installing when absent unless `install` is off); returns the new revision.
    ///
    /// With [`ForceMode::Conflicts`](crate::ForceMode::Conflicts) and no explicit
    /// `--server-side=true`, the release's apply method is read first (`get metadata`), so a
    /// release applied client-side (written by Helm 3) is refused before Helm runs.
    pub async fn upgrade(
        &self,
        release: &ReleaseRef,
        chart: &ChartRef,
        o: &UpgradeOptions,
    ) -> Result<Release> {
        let needs_apply_method = o.force == crate::ForceMode::Conflicts
            && o.server_side != Some(crate::ServerSide::True)
            && o.previous_apply_method.is_none()
            && self.version().await?.is_v4();
        let cmd = if needs_apply_method {
            let apply_method = match self.metadata(release, None).await {
                Ok(meta) => meta.apply_method,
                Err(err) if err.failure_kind() == Some(crate::FailureKind::ReleaseNotFound) => None,
                Err(err) => return Err(err),
            };
            let o = UpgradeOptions {
                previous_apply_method: apply_method,
                ..o.clone()
            };
            self.upgrade_command(release, chart, &o).await?
        } else {
            self.upgrade_command(release, chart, o).await?
        };
        let out = self
            .run_release_change(&cmd, release, TRANSIENT_ATTEMPTS)
            .await?;
        Ok(cmd.parse_json("helm upgrade JSON", &out.stdout)?)
    }

    /// `helm rollback` to an explicit revision, then its status.
    pub async fn rollback(
        &self,
        release: &ReleaseRef,
        revision: u32,
        o: &RollbackOptions,
    ) -> Result<Release> {
        self.rollback_with(release, revision, o, TRANSIENT_ATTEMPTS)
            .await
    }

    async fn rollback_with(
        &self,
        release: &ReleaseRef,
        revision: u32,
        o: &RollbackOptions,
        attempts: u32,
    ) -> Result<Release> {
        let version = self.version().await?;
        let mut cmd = self.command(options::rollback_args(version, release, revision, o)?);
        cmd.timeout(o.timeout + Duration::from_secs(60));
        self.run_release_change(&cmd, release, attempts).await?;
        self.status(release, None).await
    }

    /// `helm uninstall`.
    pub async fn uninstall(&self, release: &ReleaseRef, o: &UninstallOptions) -> Result<()> {
        let version = self.version().await?;
        let mut cmd = self.command(options::uninstall_args(version, release, o)?);
        cmd.timeout(o.timeout + Duration::from_secs(60));
        self.run(&cmd).await.map(drop)
    }

    // ---- snapshots and restore -------------------------------------------------------------

    /// Fails with [`Error::PendingOperation`] when the release's last revision is `pending-*`;
    /// returns the history otherwise (empty when the release does not exist).
    pub async fn preflight(&self, release: &ReleaseRef) -> Result<Vec<HistoryEntry>> {
        let history = self.history_or_empty(release).await?;
        match pending_error(release, &history) {
            Some(err) => Err(err),
            None => Ok(history),
        }
    }

    /// Captures the release's current revision: status, chart, values (user and all),
    /// manifest, hooks and history.
    pub async fn snapshot(&self, release: &ReleaseRef) -> Result<ReleaseSnapshot> {
        let version = self.version().await?.to_string();
        let history = self.history(release).await?;
        let status = self.status(release, None).await?;
        let revision = status.version;
        let metadata = self.metadata(release, Some(revision)).await?;
        let all_values = self
            .values(release, Some(revision), ValuesScope::All)
            .await?;
        let restore_revision = if status.info.status.was_deployed() {
            Some(revision)
        } else {
            ReleaseSnapshot::newest_deployed(&history)
        };
        Ok(ReleaseSnapshot {
            format: SNAPSHOT_FORMAT,
            taken_at_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default(),
            helm_version: version,
            release: release.clone(),
            revision,
            status: status.info.status,
            chart_name: metadata.chart,
            chart_version: metadata.version,
            app_version: metadata.app_version,
            apply_method: metadata.apply_method.or(status.apply_method),
            restore_revision,
            history,
            user_values: status.config,
            all_values,
            manifest: status.manifest,
            hooks: status.hooks,
        })
    }

    /// Upgrades with a recorded way back: refuses a `pending-*` release, snapshots the current
    /// revision into `snapshot_dir` (0600), then upgrades. The outcome carries the snapshot
    /// path whatever the upgrade's result.
    pub async fn safe_upgrade(
        &self,
        release: &ReleaseRef,
        chart: &ChartRef,
        o: &UpgradeOptions,
        snapshot_dir: &Path,
    ) -> Result<UpgradeOutcome> {
        let history = self.preflight(release).await?;
        let snapshot = if history.is_empty() {
            None
        } else {
            let snapshot = self.snapshot(release).await?;
            let path = snapshot.write(snapshot_dir)?;
            tracing::info!(release = %release, snapshot = %path.display(), summary = %snapshot.summary(), "snapshot taken");
            Some(path)
        };
        let result = self.upgrade(release, chart, o).await;
        Ok(UpgradeOutcome { snapshot, result })
    }

    /// Plans the restore of `snapshot` against the release's current history.
    pub async fn plan_restore(
        &self,
        snapshot: &ReleaseSnapshot,
        policy: PendingPolicy,
    ) -> Result<RestorePlan> {
        let history = self.history_or_empty(&snapshot.release).await?;
        plan_restore(snapshot, &history, policy)
    }

    /// Restores `snapshot`: a rollback to its revision while it is in history, otherwise an
    /// upgrade (install) of the recorded chart version from `chart_source` with the recorded
    /// user values (fed on stdin, never on the command line) and `--reset-values`.
    ///
    /// `chart_source` is needed only for the roll-forward; its version is replaced by the
    /// snapshot's. A pending release is handled per `policy`.
    pub async fn restore(
        &self,
        snapshot: &ReleaseSnapshot,
        chart_source: Option<&ChartRef>,
        policy: PendingPolicy,
        rollback: &RollbackOptions,
    ) -> Result<(RestorePlan, Release)> {
        let plan = self.plan_restore(snapshot, policy).await?;
        let release = &snapshot.release;
        if let Some(recovery) = &plan.recover_pending {
            tracing::warn!(release = %release, pending = recovery.revision, to = recovery.rollback_to,
                "clearing a pending revision under the explicit policy");
            self.rollback_with(release, recovery.rollback_to, rollback, RESTORE_ATTEMPTS)
                .await?;
        }
        let result = match &plan.action {
            RestoreAction::NothingToDo { .. } => self.status(release, None).await?,
            RestoreAction::Rollback { to_revision } => {
                self.rollback_with(release, *to_revision, rollback, RESTORE_ATTEMPTS)
                    .await?
            }
            RestoreAction::RollForward {
                chart_name,
                chart_version,
            } => {
                let source = chart_source.ok_or_else(|| Error::Restore {
                    release: release.clone(),
                    reason: format!(
                        "revision {} is no longer in history; rolling forward to {chart_name} {chart_version} \
                         needs the chart's source (repo/name, OCI or path)",
                        snapshot.revision
                    ),
                })?;
                let mut chart = source.clone();
                if let ChartSource::Oci(oci) = &mut chart.source {
                    oci.tag = None;
                }
                if !matches!(chart.source, ChartSource::Path(_)) {
                    chart.version = Some(chart_version.clone());
                }
                // The source must hold exactly the recorded chart version.
                let found = self.show_chart(&chart).await?;
                if found.name != *chart_name || found.version != *chart_version {
                    return Err(Error::Restore {
                        release: release.clone(),
                        reason: format!(
                            "the chart source {source} holds {}-{}, not the recorded {chart_name}-{chart_version}",
                            found.name, found.version
                        ),
                    });
                }
                let o = UpgradeOptions {
                    values: ValuesStrategy::Reset,
                    wait: rollback.wait,
                    wait_for_jobs: rollback.wait_for_jobs,
                    timeout: rollback.timeout,
                    history_max: rollback.history_max,
                    description: Some(format!(
                        "Restore of snapshot revision {} ({chart_name} {chart_version})",
                        snapshot.revision
                    )),
                    ..UpgradeOptions::default()
                };
                let mut cmd = self.upgrade_command(release, &chart, &o).await?;
                // Values go on stdin: they never appear in argv, logs or errors.
                cmd.arg("--values").arg("-");
                cmd.stdin(serde_json::to_vec(&snapshot.user_values).expect("values serialize"));
                let out = self
                    .run_release_change(&cmd, release, RESTORE_ATTEMPTS)
                    .await?;
                cmd.parse_json("helm upgrade JSON", &out.stdout)?
            }
        };
        Ok((plan, result))
    }
}

fn release_args(subcommand: &str, release: &ReleaseRef) -> Vec<OsString> {
    vec![
        subcommand.into(),
        release.name.clone().into(),
        "--namespace".into(),
        release.namespace.clone().into(),
    ]
}

fn push_revision(args: &mut Vec<OsString>, revision: Option<u32>) {
    if let Some(rev) = revision {
        args.extend(["--revision".into(), rev.to_string().into()]);
    }
}

fn list_dir(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    entries.sort();
    entries
}

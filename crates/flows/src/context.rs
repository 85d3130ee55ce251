//! What every flow runs with: the cluster (behind the interlock), the Helm and Terraform
//! handles, where runs keep their journal, snapshots and records, the stop signal, the event
//! sink and the step registry.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use upgrade_core::executor::ExecutorOptions;
use upgrade_core::journal::Journal;
use upgrade_core::process::StopSignal;
use upgrade_helm::Helm;
use upgrade_kube::connect::{Cluster, ConnectOptions};
use upgrade_tf::{AsyncTerraform, Terraform};

use crate::error::{FlowError, Result, field};
use crate::events::{EventSink, NoEvents};
use crate::record::StepRegistry;

/// Where runs keep their records: `journal.jsonl`, `snapshots/` and `runs/` under one folder
/// (the command line's `--snapshot-dir`, default `.upgrade`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// The state under `root` (made absolute, so records and reports name it wherever they
    /// are read from).
    pub fn new(root: impl AsRef<Path>) -> StateDir {
        let root = root.as_ref();
        StateDir {
            root: std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf()),
        }
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The journal (`<root>/journal.jsonl`).
    pub fn journal(&self) -> PathBuf {
        self.root.join("journal.jsonl")
    }

    /// The snapshot store (`<root>/snapshots`).
    pub fn snapshots(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    /// The run records (`<root>/runs`).
    pub fn runs(&self) -> PathBuf {
        self.root.join("runs")
    }
}

/// The context of every flow: build it once per cluster with [`FlowContext::connect`] or
/// [`FlowContext::builder`].
pub struct FlowContext {
    cluster: Cluster,
    connect: ConnectOptions,
    state: StateDir,
    events: Arc<dyn EventSink>,
    stop: StopSignal,
    helm: OnceLock<Arc<Helm>>,
    helm_program: Option<PathBuf>,
    terraform_program: Option<PathBuf>,
    terraform_env: Vec<(String, String)>,
    terraform_timeout: Duration,
    holder: String,
    lock_ttl: Duration,
    started_by: String,
    registry: Arc<StepRegistry>,
    executor: ExecutorOptions,
    resume: bool,
}

/// The default limit of each Terraform command: an EKS control-plane update alone can take
/// most of an hour.
pub const DEFAULT_TERRAFORM_TIMEOUT: Duration = Duration::from_secs(2 * 60 * 60);

impl std::fmt::Debug for FlowContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowContext")
            .field("cluster", &self.cluster)
            .field("state", &self.state)
            .field("started_by", &self.started_by)
            .field("resume", &self.resume)
            .finish_non_exhaustive()
    }
}

impl FlowContext {
    /// Connects to the cluster `options` name (the interlock checks `expect_cluster` when
    /// given) and returns a builder for the rest.
    pub async fn connect(options: ConnectOptions) -> Result<FlowContextBuilder> {
        let cluster = Cluster::connect(&options).await?;
        Ok(FlowContext::builder(cluster, options))
    }

    /// A builder for a context on an already connected `cluster`; `options` are the ones it
    /// was connected with (Helm is bound to the same kubeconfig and context).
    pub fn builder(cluster: Cluster, options: ConnectOptions) -> FlowContextBuilder {
        FlowContextBuilder {
            ctx: FlowContext {
                cluster,
                connect: options,
                state: StateDir::new(".upgrade"),
                events: Arc::new(NoEvents),
                stop: StopSignal::global().clone(),
                helm: OnceLock::new(),
                helm_program: None,
                terraform_program: None,
                terraform_env: Vec::new(),
                terraform_timeout: DEFAULT_TERRAFORM_TIMEOUT,
                holder: default_holder(),
                lock_ttl: Duration::from_secs(60),
                started_by: "library".into(),
                registry: Arc::new(StepRegistry::builtin()),
                executor: ExecutorOptions::default(),
                resume: false,
            },
        }
    }

    /// The cluster.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// How the cluster was reached.
    pub fn connect_options(&self) -> &ConnectOptions {
        &self.connect
    }

    /// Where runs keep their records.
    pub fn state(&self) -> &StateDir {
        &self.state
    }

    /// Where progress goes.
    pub fn events(&self) -> &dyn EventSink {
        self.events.as_ref()
    }

    /// Where progress goes, for a step that reports while it runs.
    pub fn events_handle(&self) -> Arc<dyn EventSink> {
        Arc::clone(&self.events)
    }

    /// The stop signal every subprocess of a run watches (Ctrl-C, a lost lease).
    pub fn stop_signal(&self) -> &StopSignal {
        &self.stop
    }

    /// Who this process is to the upgrade lock, e.g. `ci@runner-7/4242`.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// The upgrade lease's time to live (renewed every third of it).
    pub fn lock_ttl(&self) -> Duration {
        self.lock_ttl
    }

    /// What started runs, for their records: `upgrade-karpenter 0.1.0`, or `library`.
    pub fn started_by(&self) -> &str {
        &self.started_by
    }

    /// The registry that rebuilds recorded steps.
    pub fn registry(&self) -> &StepRegistry {
        &self.registry
    }

    /// The executor's options (test fault injection).
    pub fn executor_options(&self) -> &ExecutorOptions {
        &self.executor
    }

    /// Whether an unfinished run is to be resumed rather than refused.
    pub fn resume(&self) -> bool {
        self.resume
    }

    /// The cluster's name in reports: its EKS name and API server.
    pub fn cluster_name(&self) -> String {
        self.cluster.identity().display_name()
    }

    /// The Helm bound to the context's kubeconfig and context (built once); a missing or
    /// unsupported helm is bad input.
    pub fn helm(&self) -> Result<Arc<Helm>> {
        if let Some(helm) = self.helm.get() {
            return Ok(Arc::clone(helm));
        }
        let helm = self.helm_for(
            self.connect.kubeconfig.as_deref(),
            Some(&self.cluster.identity().context),
        )?;
        Ok(Arc::clone(self.helm.get_or_init(|| helm)))
    }

    /// A Helm like [`helm`](Self::helm) (the same program, stopped with the run) bound to
    /// another cluster's kubeconfig and context (the kubeconfig's current one when `None`):
    /// a blue/green run's green cluster.
    pub fn helm_for(&self, kubeconfig: Option<&Path>, context: Option<&str>) -> Result<Arc<Helm>> {
        let mut builder = Helm::builder();
        if let Some(context) = context {
            builder = builder.context(context);
        }
        if let Some(path) = kubeconfig {
            builder = builder.kubeconfig(path);
        }
        if let Some(program) = &self.helm_program {
            builder = builder.program(program);
        }
        builder = builder.stop_signal(self.stop.clone());
        Ok(Arc::new(builder.build().map_err(FlowError::input)?))
    }

    /// A Terraform handle on `dir`; a missing terraform or folder is bad input naming `field`.
    pub fn terraform(&self, field_name: &str, dir: &Path) -> Result<AsyncTerraform> {
        if !dir.is_dir() {
            return Err(FlowError::invalid(
                field_name,
                format!("{} is not a folder", dir.display()),
                format!(
                    "set {} to the Terraform environment's folder",
                    field(field_name)
                ),
            ));
        }
        let mut builder = Terraform::builder(dir)
            .stop_signal(self.stop.clone())
            .timeout(self.terraform_timeout);
        if let Some(program) = &self.terraform_program {
            builder = builder.binary(program);
        }
        for (key, value) in &self.terraform_env {
            builder = builder.env(key, value);
        }
        Ok(builder.build().map_err(FlowError::input)?.into())
    }

    /// A new run id for `component` (`<component>-<UTC time>`); when resuming, the id of the
    /// unfinished run, so the resumed run reports and records under it.
    pub fn new_run_id(&self, component: &str) -> Result<String> {
        if self.resume
            && let Some(run) = Journal::unfinished(&self.state.journal())
                .map_err(|e| FlowError::failed("read the journal", e))?
        {
            return Ok(run.run_id);
        }
        let now = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ");
        let base = format!("{component}-{now}");
        // Two runs of one component within a second (a pipeline's loop) must not share an id:
        // the second's journal entries and snapshots would land in the first's run.
        let journal = Journal::runs(&self.state.journal())
            .map_err(|e| FlowError::failed("read the journal", e))?;
        let taken = |id: &str| {
            journal.iter().any(|r| r.run_id == id)
                || crate::record::RunRecord::path(&self.state.runs(), id).exists()
                || self.state.snapshots().join(id).exists()
        };
        let mut id = base.clone();
        let mut n = 2;
        while taken(&id) {
            id = format!("{base}-{n}");
            n += 1;
        }
        Ok(id)
    }
}

/// Builds a [`FlowContext`]; every setting has a default.
pub struct FlowContextBuilder {
    ctx: FlowContext,
}

impl FlowContextBuilder {
    /// (chainable) Where runs keep their journal, snapshots and records (default `.upgrade`).
    pub fn state_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.ctx.state = StateDir::new(dir);
        self
    }

    /// (chainable) Where progress goes (default: nowhere).
    pub fn events(mut self, events: Arc<dyn EventSink>) -> Self {
        self.ctx.events = events;
        self
    }

    /// (chainable) The stop signal runs watch (default: the process-wide one a Ctrl-C
    /// handler sets): the context's Helm, Terraform and cluster waits, and the lock keeper.
    /// A Helm given with [`helm`](Self::helm) keeps its own.
    pub fn stop_signal(mut self, stop: StopSignal) -> Self {
        self.ctx.stop = stop;
        self
    }

    /// (chainable) The Helm to use (default: `HELM_BIN` or `helm` on `PATH`, bound to the
    /// context's kubeconfig and context).
    pub fn helm(self, helm: Arc<Helm>) -> Self {
        let _ = self.ctx.helm.set(helm);
        self
    }

    /// (chainable) The helm binary for the default Helm.
    pub fn helm_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.ctx.helm_program = Some(program.into());
        self
    }

    /// (chainable) The terraform binary (default: `TERRAFORM_BIN` or `terraform` on `PATH`).
    pub fn terraform_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.ctx.terraform_program = Some(program.into());
        self
    }

    /// (chainable) An environment variable for every Terraform run (e.g.
    /// `TF_CLI_CONFIG_FILE` for a provider mirror).
    pub fn terraform_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.ctx.terraform_env.push((key.into(), value.into()));
        self
    }

    /// (chainable) The limit of each Terraform command (`init`, `plan`, `apply`, ...;
    /// default [`DEFAULT_TERRAFORM_TIMEOUT`]). One that outlives it gets SIGINT (Terraform
    /// stops cleanly and releases its state lock), then SIGKILL after a grace period, and
    /// its step fails, so the run rolls back.
    pub fn terraform_timeout(mut self, timeout: Duration) -> Self {
        self.ctx.terraform_timeout = timeout;
        self
    }

    /// (chainable) Who holds the upgrade lock (default: `user@host/pid`).
    pub fn lock_holder(mut self, holder: impl Into<String>) -> Self {
        self.ctx.holder = holder.into();
        self
    }

    /// (chainable) The upgrade lease's time to live (default 60 s).
    pub fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.ctx.lock_ttl = ttl;
        self
    }

    /// (chainable) What starts the runs, for their records (default `library`).
    pub fn started_by(mut self, who: impl Into<String>) -> Self {
        self.ctx.started_by = who.into();
        self
    }

    /// (chainable) The registry that rebuilds recorded steps (default: every step kind of
    /// the toolkit; add your own kinds to it).
    pub fn registry(mut self, registry: StepRegistry) -> Self {
        self.ctx.registry = Arc::new(registry);
        self
    }

    /// (chainable) Executor options (tests: kill the process at a step boundary).
    pub fn executor_options(mut self, options: ExecutorOptions) -> Self {
        self.ctx.executor = options;
        self
    }

    /// (chainable) Resume the unfinished run instead of refusing to start.
    pub fn resume(mut self, resume: bool) -> Self {
        self.ctx.resume = resume;
        self
    }

    /// The context.
    pub fn build(mut self) -> FlowContext {
        // One signal for everything a run does: its commands, its waits, its lock keeper.
        self.ctx.cluster = self.ctx.cluster.with_stop_signal(self.ctx.stop.clone());
        self.ctx
    }
}

fn default_holder() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{user}@{host}/{}", std::process::id())
}

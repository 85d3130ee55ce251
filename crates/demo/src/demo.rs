//! The demo (`./dev demo`): a sample MLOps platform on the simulated cluster, upgraded with
//! the same commands a platform engineer runs, each a real process with real terraform and
//! helm underneath: preflight, the EKS control plane and node rollout, the component
//! upgrades, and one failing upgrade that rolls itself back.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use upgrade_core::ProcessBuilder;

use crate::sample::{EksEnvironment, SamplePlatform, Tools};

/// Where `upgrade-demo` finds the commands it runs: its own folder.
pub fn commands_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locate upgrade-demo")?;
    Ok(exe
        .parent()
        .context("upgrade-demo has no folder")?
        .to_path_buf())
}

/// The commands that change the platform (they take `--snapshot-dir`).
const CHANGING: &[&str] = &[
    "upgrade-eks",
    "upgrade-nodes",
    "upgrade-karpenter",
    "upgrade-kserve",
    "upgrade-argo-workflows",
    "upgrade-mlflow",
    "upgrade-tf-providers",
    "upgrade-rollback",
    "upgrade-bluegreen",
];

/// Runs one command the way a person would, showing its command line, its report and its
/// exit code.
pub(crate) struct Shell<'a> {
    pub(crate) bin_dir: PathBuf,
    pub(crate) cwd: PathBuf,
    pub(crate) env: Vec<(OsString, OsString)>,
    /// The cluster flags every command here takes.
    pub(crate) cluster: Vec<String>,
    /// Where runs keep their journal, snapshots and records.
    pub(crate) state: PathBuf,
    /// The platform lockfile (`upgrade-lock`).
    pub(crate) lockfile: PathBuf,
    pub(crate) out: &'a mut dyn Write,
}

impl Shell<'_> {
    /// Sets (or replaces) one environment variable of the commands that follow.
    pub(crate) fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
    }

    /// The flags added to `command`: the cluster's, and the state folder or the lockfile
    /// for the commands that have them.
    fn common(&self, command: &str) -> Vec<String> {
        let mut flags = self.cluster.clone();
        if CHANGING.contains(&command) {
            flags.extend(["--snapshot-dir".into(), self.state.display().to_string()]);
        }
        if command == "upgrade-lock" {
            flags.extend(["--lockfile".into(), self.lockfile.display().to_string()]);
        }
        flags
    }

    /// Runs `command args.. <its common flags>`; returns its exit code.
    fn run(&mut self, command: &str, args: &[&str]) -> anyhow::Result<i32> {
        let program = self.bin_dir.join(command);
        let mut cmd = ProcessBuilder::new(&program);
        cmd.cwd(&self.cwd).args(args).args(self.common(command));
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        writeln!(self.out, "\n$ {command} {}", args.join(" "))?;
        let started = Instant::now();
        let output = cmd
            .output()
            .with_context(|| format!("run {}", program.display()))?;
        for line in output.stdout_lossy().lines() {
            writeln!(self.out, "  | {line}")?;
        }
        let stderr = output.stderr_lossy();
        let stderr = stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .collect::<Vec<_>>();
        for line in stderr {
            writeln!(self.out, "  ! {line}")?;
        }
        let code = output.status.code().unwrap_or(-1);
        writeln!(
            self.out,
            "  => exit {code} ({:.1}s)",
            started.elapsed().as_secs_f64()
        )?;
        Ok(code)
    }

    /// Like [`run`](Self::run), failing the demo unless the exit code is one of `expected`.
    pub(crate) fn expect(
        &mut self,
        expected: &[i32],
        command: &str,
        args: &[&str],
    ) -> anyhow::Result<i32> {
        let code = self.run(command, args)?;
        anyhow::ensure!(
            expected.contains(&code),
            "{command} exited {code}, expected {expected:?}"
        );
        Ok(code)
    }
}

/// How the demo runs, beyond where.
#[derive(Debug, Clone, Default)]
pub struct DemoOptions {
    /// API faults the simulated cluster injects once the platform is deployed, for every
    /// command of the demo (e.g. 10 % of 429, 5xx and dropped connections on every resource).
    pub faults: Option<kube_sim::FaultConfig>,
    /// Leave out the blue/green scene (its clusters never get the faults above, so a run
    /// with faults has nothing to add there).
    pub without_bluegreen: bool,
}

/// Runs the demo in `work` (kept afterwards) with the commands built in `bin_dir` and the real
/// `tools`, writing what happens to `out`.
pub async fn run(
    repo_root: &Path,
    bin_dir: &Path,
    tools: Tools,
    work: &Path,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    run_with(
        repo_root,
        bin_dir,
        tools,
        work,
        &DemoOptions::default(),
        out,
    )
    .await
}

/// [`run`] with `options`.
pub async fn run_with(
    repo_root: &Path,
    bin_dir: &Path,
    tools: Tools,
    work: &Path,
    options: &DemoOptions,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let platform = SamplePlatform {
        root: work.to_path_buf(),
        fixtures: repo_root.join("fixtures"),
        tools: tools.clone(),
    };
    writeln!(
        out,
        "MLOps platform upgrade demo (everything runs locally; nothing touches a real cloud)\n"
    )?;

    let sim = kube_sim::SimCluster::builder()
        .server_version("v1.30.4-eks-a737599")
        // Karpenter's part (new nodes for pods that cannot be scheduled) is simulated too.
        .controllers(kube_sim::ControllerConfig {
            karpenter: true,
            ..kube_sim::ControllerConfig::fast()
        })
        .kubeconfig_path(platform.kubeconfig())
        .start()
        .await?;
    for node in ["ip-10-0-1-10", "ip-10-0-2-20", "ip-10-0-3-30"] {
        sim.add_node(node, "v1.30.4-eks-a737599")?;
        // The demo's nodes are Karpenter's, so upgrade-eks's node rollout replaces them (a
        // managed node group's are rolled by EKS itself).
        sim.make_karpenter_node(node, "default")?;
    }
    writeln!(
        out,
        "1. Simulated EKS cluster {} (v1.30.4), 3 nodes\n   kubeconfig: {} (try: kubectl --kubeconfig {} get pods -A)",
        sim.url(),
        platform.kubeconfig().display(),
        platform.kubeconfig().display()
    )?;

    platform.build_full(&sim).await?;
    writeln!(
        out,
        "2. Platform deployed with the real helm: karpenter 1.5.0, kserve 0.14.1 (2 InferenceServices), argo-workflows 0.45.0 (2 WorkflowTemplates), mlflow 0.16.0, PodDisruptionBudgets"
    )?;

    let bin_dir = bin_dir.to_path_buf();
    let eks = EksEnvironment::create(&platform, &sim, &bin_dir).await?;
    writeln!(
        out,
        "   Terraform environment {} applied on the simulated AWS provider: EKS cluster mlops-platform-dev at 1.30, managed node group, CoreDNS add-on",
        eks.dir.display()
    )?;

    let state = work.join(".upgrade");
    let cluster = vec![
        "--kubeconfig".to_string(),
        platform.kubeconfig().display().to_string(),
        "--kube-context".into(),
        kube_sim::CONTEXT_NAME.into(),
        "--expect-cluster".into(),
        sim.url().to_string(),
    ];
    writeln!(
        out,
        "3. The commands below run in {} with these flags added to each:\n   {}\n   and `--snapshot-dir {}` to those that change the platform, `--lockfile {}` to upgrade-lock",
        work.display(),
        cluster.join(" "),
        state.display(),
        platform.lockfile().display()
    )?;
    if let Some(faults) = &options.faults {
        sim.set_faults(faults.clone());
        writeln!(
            out,
            "   From here on the API server fails requests on purpose: {} fault rule(s), seed {}",
            faults.rules.len(),
            faults.seed
        )?;
    }
    let mut shell = Shell {
        bin_dir,
        cwd: work.to_path_buf(),
        env: vec![
            ("HOME".into(), platform.home().into()),
            ("HELM_BIN".into(), tools.helm.clone().into()),
            ("TERRAFORM_BIN".into(), tools.terraform.clone().into()),
            ("NO_COLOR".into(), "1".into()),
            ("TF_CLI_CONFIG_FILE".into(), eks.cli_config.clone().into()),
            (
                upgrade_tf_sim_provider::SIM_KUBE_URL_VAR.into(),
                sim.url().into(),
            ),
        ],
        cluster,
        state: state.clone(),
        lockfile: platform.lockfile(),
        out,
    };

    let charts = platform.fixtures.join("charts");
    let chart = |name: &str, version: &str| charts.join(name).join(version).display().to_string();
    let lock_components = FULL_LOCK_COMPONENTS
        .iter()
        .flat_map(|(name, ns)| {
            [
                "--component".to_string(),
                format!("{name}={ns}/{name}={}", charts.join(name).display()),
            ]
        })
        .collect::<Vec<_>>();
    let mut lock_args = vec!["write"];
    lock_args.extend(lock_components.iter().map(String::as_str));
    shell.expect(&[0], "upgrade-lock", &lock_args)?;

    shell.expect(&[0, 3], "upgrade-preflight", &["--target", "1.31"])?;
    writeln!(
        shell.out,
        "\nFirst the components, to versions that support both 1.30 and 1.31 (plan, then apply):"
    )?;

    let karpenter = chart("karpenter", "1.6.0");
    shell.expect(
        &[0],
        "upgrade-karpenter",
        &[
            "--chart",
            &karpenter,
            "--chart-version",
            "1.6.0",
            "--image-tag",
            "1.6.0",
        ],
    )?;
    shell.expect(
        &[0],
        "upgrade-karpenter",
        &[
            "--chart",
            &karpenter,
            "--chart-version",
            "1.6.0",
            "--image-tag",
            "1.6.0",
            "--apply",
            "--yes",
        ],
    )?;
    let kserve = chart("kserve", "0.15.0");
    shell.expect(
        &[0],
        "upgrade-kserve",
        &[
            "upgrade",
            "--chart",
            &kserve,
            "--chart-version",
            "0.15.0",
            "--image-tag",
            "v0.15.0",
            "--apply",
            "--yes",
        ],
    )?;
    let argo = chart("argo-workflows", "0.46.0");
    shell.expect(
        &[0],
        "upgrade-argo-workflows",
        &[
            "--chart",
            &argo,
            "--chart-version",
            "0.46.0",
            "--image-tag",
            "v3.6.5",
            "--apply",
            "--yes",
        ],
    )?;

    // MLflow: a real tracking server (from the verification venv) answers /health; its
    // database snapshot and restore are plain copies of a SQLite store made by MLflow 2.9.
    let server = MlflowServer::start(repo_root, work).await?;
    let store = work.join("mlflow/mlflow.db");
    let db_snapshots = work.join("mlflow/snapshots");
    std::fs::create_dir_all(&db_snapshots)?;
    std::fs::copy(
        platform.fixtures.join("mlflow/store-mlflow-2.9.2.db"),
        &store,
    )?;
    let snapshot_file = db_snapshots.join("mlops-pre-upgrade-{run_id}.db");
    let snapshot_command = format!("cp {} {}", store.display(), snapshot_file.display());
    let restore_command = format!("cp {} {}", snapshot_file.display(), store.display());
    shell.expect(
        &[0],
        "upgrade-mlflow",
        &[
            "--container",
            "controller",
            "--image",
            "ghcr.io/mlflow/mlflow:2.22.0",
            "--db-snapshot-command",
            &snapshot_command,
            "--db-restore-command",
            &restore_command,
            "--health-url",
            &server.url,
            "--apply",
            "--yes",
        ],
    )?;
    drop(server);

    writeln!(
        shell.out,
        "\nThe components are at versions tested with 1.31 (preflight's COMPAT002 asked for KServe 0.15); now the EKS hop."
    )?;
    let tf_dir = eks.dir.display().to_string();
    let addon_versions = platform
        .fixtures
        .join("eks/addon-versions.json")
        .display()
        .to_string();
    let eks_args = [
        "--target",
        "1.31",
        "--terraform-dir",
        &tf_dir,
        "--addon",
        "coredns=coredns_version",
        "--addon-versions",
        &addon_versions,
        "--pause",
        "0s",
        "--validation-interval",
        "500ms",
    ];
    shell.expect(&[0, 3], "upgrade-eks", &eks_args)?;
    let mut apply = eks_args.to_vec();
    apply.extend(["--apply", "--yes"]);
    shell.expect(&[0, 3], "upgrade-eks", &apply)?;
    writeln!(
        shell.out,
        "   nodes now: {}",
        sim.list("v1", "Node", None)
            .iter()
            .map(|n| format!(
                "{} ({})",
                n["metadata"]["name"].as_str().unwrap_or("?"),
                n["status"]["nodeInfo"]["kubeletVersion"]
                    .as_str()
                    .unwrap_or("?")
            ))
            .collect::<Vec<_>>()
            .join(", ")
    )?;

    let broken = work.join("kserve-broken-values.yaml");
    std::fs::write(
        &broken,
        "# Pods that never become Ready: the rollout fails.\ncontroller:\n  image:\n    tag: \"v0.15.0\"\npodAnnotations:\n  kube-sim.dev/never-ready: \"true\"\n",
    )?;
    let broken = broken.display().to_string();
    writeln!(
        shell.out,
        "\n4. A deliberately failing KServe upgrade (its pods never become Ready): it must roll back by itself."
    )?;
    shell.expect(
        &[1],
        "upgrade-kserve",
        &[
            "upgrade",
            "--chart",
            &kserve,
            "--chart-version",
            "0.15.0",
            "--values",
            &broken,
            "--timeout",
            "10s",
            "--apply",
            "--yes",
        ],
    )?;
    shell.expect(&[0, 3], "upgrade-lock", &["diff"])?;

    let out = shell.out;
    if !options.without_bluegreen {
        crate::bluegreen::scene(
            repo_root,
            &shell.bin_dir,
            &tools,
            &eks.cli_config,
            work,
            out,
        )
        .await?;
    }
    writeln!(out, "\nLockfile:  {}", platform.lockfile().display())?;
    writeln!(out, "Journal:   {}", state.join("journal.jsonl").display())?;
    writeln!(out, "Snapshots: {}", state.join("snapshots").display())?;
    writeln!(
        out,
        "Run records (for upgrade-rollback): {}",
        state.join("runs").display()
    )?;
    writeln!(
        out,
        "Finished in {:.0}s. The cluster stops with the demo; the files stay.",
        started.elapsed().as_secs_f64()
    )?;
    sim.shutdown().await;
    Ok(())
}

/// A server from the verification venv (MLflow's tracking server, a KServe model server) on
/// a free local port, stopped when dropped.
pub(crate) struct VenvServer {
    stop: upgrade_core::process::StopSignal,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl VenvServer {
    /// The venv's python, as a command to add the server's arguments to.
    pub(crate) fn command(repo_root: &Path) -> anyhow::Result<ProcessBuilder> {
        let python = std::env::var_os(upgrade_core::env_vars::UPGRADE_TOOLS_DIR)
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root.join(".tools"))
            .join("venv-verify/bin/python");
        anyhow::ensure!(
            python.exists(),
            "the verification venv is missing ({}); run ./dev tools",
            python.display()
        );
        Ok(ProcessBuilder::new(python))
    }

    /// Starts `cmd` and waits until `ready` passes (a minute at most).
    pub(crate) async fn start(
        what: &str,
        mut cmd: ProcessBuilder,
        ready: upgrade_verify::probe::Check,
    ) -> anyhow::Result<VenvServer> {
        let stop = upgrade_core::process::StopSignal::new();
        cmd.stop_signal(stop.clone())
            .timeout(std::time::Duration::from_secs(1800))
            .grace_period(std::time::Duration::from_secs(5));
        let thread = std::thread::spawn(move || {
            let _ = cmd.output();
        });
        let server = VenvServer {
            stop,
            thread: Some(thread),
        };
        let prober = upgrade_verify::probe::Prober::new()?;
        let spec = upgrade_verify::probe::ProbeSpec::new(what, ready).with_retry(
            upgrade_verify::probe::Retry {
                attempts: 120,
                backoff: std::time::Duration::from_millis(500),
                max_backoff: std::time::Duration::from_secs(1),
            },
        );
        let finding = prober.run(&spec).await;
        anyhow::ensure!(
            finding.status == upgrade_verify::Status::Pass,
            "{what} did not start: {finding:?}"
        );
        Ok(server)
    }
}

impl Drop for VenvServer {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A real MLflow tracking server on a free local port.
pub(crate) struct MlflowServer {
    pub(crate) url: String,
    _server: VenvServer,
}

impl MlflowServer {
    pub(crate) async fn start(repo_root: &Path, work: &Path) -> anyhow::Result<MlflowServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut cmd = VenvServer::command(repo_root)?;
        cmd.args(["-m", "mlflow", "server", "--backend-store-uri"])
            .arg(format!(
                "sqlite:///{}",
                work.join("mlflow/server.db").display()
            ))
            .arg("--default-artifact-root")
            .arg(work.join("mlflow/artifacts"))
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--workers",
                "1",
            ]);
        std::fs::create_dir_all(work.join("mlflow"))?;
        let url = format!("http://127.0.0.1:{port}");
        let server = VenvServer::start(
            "the MLflow server",
            cmd,
            upgrade_verify::probe::Check::mlflow_health(&url),
        )
        .await?;
        Ok(MlflowServer {
            url,
            _server: server,
        })
    }
}

/// The lockfile's components: (release = component name, namespace).
const FULL_LOCK_COMPONENTS: [(&str, &str); 4] = [
    ("karpenter", "karpenter"),
    ("kserve", "kserve"),
    ("argo-workflows", "argo"),
    ("mlflow", "mlops"),
];

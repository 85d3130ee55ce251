//! One cluster's step of a fleet rollout (`upgrade-fleet run-cluster`, in the workflow's
//! container and in a rehearsal alike): the API server's version read before and after, the
//! command run with `--output json`, its exit code mapped to a [`ClusterResult`], and its
//! report and result written where the workflow collects them as outputs.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use upgrade_core::ProcessBuilder;
use upgrade_core::process::StopSignal;
use upgrade_kube::connect::{Cluster, ConnectOptions};

/// What a cluster's run came to, from the command's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClusterResult {
    /// 0: done.
    Ok,
    /// 3: done with warnings; the rollout goes on.
    Warning,
    /// 4: blocked, nothing changed; counts as failed.
    Blocked,
    /// 2: bad input, nothing changed; counts as failed.
    BadInput,
    /// 1: failed, and everything it applied was rolled back.
    Failed,
    /// 5: failed and stopped with a recorded way back (a step that cannot be undone, a
    /// multi-hop run stopped at its failed hop): resuming or undoing it is a person's
    /// decision, so it is left for them (its state is the step's artifact).
    Unfinished,
    /// 130 (or killed): stopped midway; the failure path runs `upgrade-rollback`.
    Stopped,
    /// The cluster's API server did not answer before anything ran: the workflow retries
    /// the step (exit 75), then counts it failed.
    Unreachable,
}

/// The exit code of `run-cluster` for an unreachable cluster (`EX_TEMPFAIL`): the only one
/// the workflow retries.
pub const EXIT_UNREACHABLE: u8 = 75;

impl ClusterResult {
    /// From a command's exit code (`None`: killed by a signal).
    pub fn of_exit(code: Option<i32>) -> ClusterResult {
        match code {
            Some(0) => ClusterResult::Ok,
            Some(3) => ClusterResult::Warning,
            Some(4) => ClusterResult::Blocked,
            Some(2) => ClusterResult::BadInput,
            Some(5) => ClusterResult::Unfinished,
            Some(130) | None => ClusterResult::Stopped,
            Some(_) => ClusterResult::Failed,
        }
    }

    /// Its name in outputs (`ok`, `warning`, `blocked`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterResult::Ok => "ok",
            ClusterResult::Warning => "warning",
            ClusterResult::Blocked => "blocked",
            ClusterResult::BadInput => "bad-input",
            ClusterResult::Failed => "failed",
            ClusterResult::Unfinished => "unfinished",
            ClusterResult::Stopped => "stopped",
            ClusterResult::Unreachable => "unreachable",
        }
    }

    /// Parses [`as_str`](Self::as_str); anything else (a step that died before writing it)
    /// is `Stopped`.
    pub fn parse(text: &str) -> ClusterResult {
        match text.trim() {
            "ok" => ClusterResult::Ok,
            "warning" => ClusterResult::Warning,
            "blocked" => ClusterResult::Blocked,
            "bad-input" => ClusterResult::BadInput,
            "failed" => ClusterResult::Failed,
            "unfinished" => ClusterResult::Unfinished,
            "unreachable" => ClusterResult::Unreachable,
            _ => ClusterResult::Stopped,
        }
    }

    /// Whether it counts toward the failure threshold.
    pub fn counts_as_failed(self) -> bool {
        !matches!(self, ClusterResult::Ok | ClusterResult::Warning)
    }

    /// Whether the failure path undoes the run: a run stopped midway (a run that stopped
    /// by itself with a recorded way back is left to a person).
    pub fn needs_rollback(self) -> bool {
        self == ClusterResult::Stopped
    }

    /// `run-cluster`'s exit code: 0 for `ok` and `warning`, 75 for `unreachable` (retried),
    /// 1 otherwise.
    pub fn step_exit_code(self) -> u8 {
        match self {
            ClusterResult::Ok | ClusterResult::Warning => 0,
            ClusterResult::Unreachable => EXIT_UNREACHABLE,
            _ => 1,
        }
    }
}

/// What one cluster's step ran and found: its `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterRun {
    /// The cluster.
    pub cluster: String,
    /// The command, secrets redacted.
    pub command: String,
    /// Its exit code (`None`: killed).
    pub exit_code: Option<i32>,
    /// What it came to.
    pub result: ClusterResult,
    /// The API server's version before.
    pub from: Option<String>,
    /// The API server's version after.
    pub to: Option<String>,
    /// When it started (RFC 3339).
    pub started: String,
    /// How long it ran.
    pub duration_secs: f64,
    /// The command's findings (from its JSON report).
    #[serde(default)]
    pub findings: Vec<String>,
    /// The command's outcome line, or its error's last line.
    #[serde(default)]
    pub outcome: String,
}

/// How to run one cluster's step.
#[derive(Debug, Clone)]
pub struct RunClusterSpec {
    /// The cluster's name.
    pub cluster: String,
    /// The command with the cluster's values filled in (program first).
    pub command: Vec<String>,
    /// The kubeconfig to read versions with (default: the usual one).
    pub kubeconfig: Option<PathBuf>,
    /// The context to read versions with.
    pub context: Option<String>,
    /// The command's time limit.
    pub timeout: Duration,
    /// Stops the command (Ctrl-C, a rehearsal stopping).
    pub stop: StopSignal,
    /// Extra environment for the command.
    pub env: Vec<(String, String)>,
}

async fn server_version(spec: &RunClusterSpec) -> Option<String> {
    let cluster = Cluster::connect(&ConnectOptions {
        kubeconfig: spec.kubeconfig.clone(),
        context: spec.context.clone(),
        ..ConnectOptions::default()
    })
    .await
    .ok()?;
    cluster
        .client()
        .apiserver_version()
        .await
        .ok()
        .map(|v| v.git_version)
}

/// Runs the step (see the module docs). Never fails: a program not on PATH is a `BadInput`
/// result (nothing ran), a command that cannot start or is killed a `Stopped` one, each with
/// its outcome saying why.
pub async fn run_cluster(spec: &RunClusterSpec) -> ClusterRun {
    let started = jiff::Timestamp::now();
    let clock = std::time::Instant::now();
    let from = server_version(spec).await;
    // A run that never started: nothing changed, the versions are as found.
    let not_run = |command: &[String], result, outcome: String| ClusterRun {
        cluster: spec.cluster.clone(),
        command: upgrade_core::redact::scrub_credentials(&command.join(" ")),
        exit_code: None,
        result,
        from: from.clone(),
        to: from.clone(),
        started: started.to_string(),
        duration_secs: clock.elapsed().as_secs_f64(),
        findings: Vec::new(),
        outcome,
    };
    let mut words = spec.command.clone();
    if from.is_none() {
        return not_run(
            &words,
            ClusterResult::Unreachable,
            "its API server did not answer (GET /version); nothing ran".into(),
        );
    }
    if !words
        .iter()
        .any(|w| w == "--output" || w.starts_with("--output="))
    {
        words.extend(["--output".into(), "json".into()]);
    }
    // Looked up on the step's PATH (its own environment's when it sets one).
    let path = spec
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| std::ffi::OsString::from(v))
        .or_else(|| std::env::var_os("PATH"));
    let cwd = std::env::current_dir().unwrap_or_default();
    let Ok(program) = which::which_in(&words[0], path, cwd) else {
        return not_run(
            &words,
            ClusterResult::BadInput,
            format!("`{}` is not an executable on PATH", words[0]),
        );
    };
    let shown = upgrade_core::redact::scrub_credentials(&words.join(" "));
    let mut cmd = ProcessBuilder::new(program);
    cmd.args(&words[1..])
        .timeout(spec.timeout)
        .stop_signal(spec.stop.clone());
    for (key, value) in &spec.env {
        cmd.env(key, value);
    }
    let (exit_code, stdout, stderr) = match cmd.output_async().await {
        Ok(out) => (out.status.code(), out.stdout_lossy(), out.stderr_lossy()),
        Err(e) => (None, String::new(), e.to_string()),
    };
    let result = ClusterResult::of_exit(exit_code);
    let report: Option<serde_json::Value> = serde_json::from_str(&stdout).ok();
    let findings = report
        .as_ref()
        .and_then(|r| r["findings"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(upgrade_core::redact::scrub_credentials))
        .collect();
    let outcome = report
        .as_ref()
        .and_then(|r| {
            r["outcome"]
                .as_str()
                .map(upgrade_core::redact::scrub_credentials)
        })
        .unwrap_or_else(|| {
            stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(upgrade_core::redact::scrub_credentials)
                .unwrap_or_default()
        });
    let to = server_version(spec).await;
    ClusterRun {
        cluster: spec.cluster.clone(),
        command: shown,
        exit_code,
        result,
        from,
        to,
        started: started.to_string(),
        duration_secs: clock.elapsed().as_secs_f64(),
        findings,
        outcome,
    }
}

/// Writes `report.json` and the bare result into `dir` (created): what the workflow's step
/// outputs (parameter `result`, artifact `report`).
pub fn write_outputs(run: &ClusterRun, dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    upgrade_core::atomic_file::write(
        &dir.join("report.json"),
        (serde_json::to_string_pretty(run).expect("serialises") + "\n").as_bytes(),
    )?;
    upgrade_core::atomic_file::write(&dir.join("result"), run.result.as_str().as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cluster whose API server does not answer: nothing runs (the command would fail
    /// loudly if it did), the result is `unreachable`, the step's exit code the retried 75.
    #[tokio::test]
    async fn an_unreachable_cluster_runs_nothing_and_is_retried() {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        // Port 9 (discard) on loopback: nothing listens in the test environment.
        std::fs::write(
            &kubeconfig,
            r#"{"apiVersion": "v1", "kind": "Config", "current-context": "gone",
                "clusters": [{"name": "gone", "cluster": {"server": "http://127.0.0.1:9"}}],
                "users": [{"name": "gone", "user": {}}],
                "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "gone"}}]}"#,
        )
        .unwrap();
        let marker = dir.path().join("ran");
        let run = run_cluster(&RunClusterSpec {
            cluster: "gone".into(),
            command: vec!["touch".into(), marker.display().to_string()],
            kubeconfig: Some(kubeconfig),
            context: Some("gone".into()),
            timeout: Duration::from_secs(30),
            stop: StopSignal::new(),
            env: Vec::new(),
        })
        .await;
        assert_eq!(run.result, ClusterResult::Unreachable, "{run:?}");
        assert!(!marker.exists(), "the command never ran");
        assert_eq!(run.result.step_exit_code(), EXIT_UNREACHABLE);
        write_outputs(&run, dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("result")).unwrap(),
            "unreachable"
        );
    }

    #[test]
    fn exit_codes_map_to_results() {
        use ClusterResult::*;
        for (code, result, failed, rollback) in [
            (Some(0), Ok, false, false),
            (Some(3), Warning, false, false),
            (Some(4), Blocked, true, false),
            (Some(2), BadInput, true, false),
            (Some(1), Failed, true, false),
            (Some(5), Unfinished, true, false),
            (Some(130), Stopped, true, true),
            (None, Stopped, true, true),
            (Some(101), Failed, true, false),
        ] {
            let r = ClusterResult::of_exit(code);
            assert_eq!(r, result, "{code:?}");
            assert_eq!(r.counts_as_failed(), failed, "{code:?}");
            assert_eq!(r.needs_rollback(), rollback, "{code:?}");
            assert_eq!(ClusterResult::parse(r.as_str()), r);
        }
        assert_eq!(ClusterResult::parse("unreachable"), Unreachable);
        assert!(Unreachable.counts_as_failed() && !Unreachable.needs_rollback());
        assert_eq!(Unreachable.step_exit_code(), EXIT_UNREACHABLE);
        assert_eq!(Warning.step_exit_code(), 0);
        assert_eq!(Blocked.step_exit_code(), 1);
        assert_eq!(ClusterResult::parse(""), Stopped);
    }
}

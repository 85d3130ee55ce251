//! A rehearsal: the generated `WorkflowTemplate` itself, run locally the way Argo runs it:
//! its DAG tasks started when their `depends` holds (and omitted when it cannot), `when`
//! conditions, the template's `parallelism`, the per-account semaphores of its ConfigMap,
//! the gates, `suspend` for soak (scaled) and approval (granted, and recorded), and each
//! container step's `upgrade-fleet` call run in-process by the same code as in the
//! container, retried as its `retryStrategy` says (an unreachable cluster only). Only the
//! Argo features the generator emits are understood (templates, `depends` over task phases,
//! `when` equalities, `{{…}}` references, one semaphore per template, `suspend`); others are
//! an error. One difference: a `depends` is decided as soon as its outcome is certain, where
//! Argo waits for every task it names; for the generated DAG the outcome is the same.
//!
//! A step's `/work/out` is a folder per cluster under the rehearsal's output folder, the
//! layout [`super::report`] reads.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::Semaphore;
use upgrade_core::process::StopSignal;

use super::cluster::{ClusterResult, ClusterRun, RunClusterSpec, run_cluster, write_outputs};
use super::workflow::OUT_DIR;
use crate::error::{FlowError, Result};

/// How to rehearse.
#[derive(Debug, Clone)]
pub struct RehearsalOptions {
    /// Where each cluster's outputs go (`<dir>/<cluster>/`).
    pub out_dir: PathBuf,
    /// The kubeconfig whose contexts the inventory names.
    pub kubeconfig: Option<PathBuf>,
    /// Soak durations are multiplied by this (0: no wait).
    pub soak_scale: f64,
    /// Each command's time limit.
    pub timeout: Duration,
    /// Environment for every command (`PATH` to the toolkit's binaries, credentials).
    pub env: Vec<(String, String)>,
    /// Stops the rehearsal.
    pub stop: StopSignal,
}

/// A task's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Phase {
    /// It ran and succeeded (a suspend resumed).
    Succeeded,
    /// It ran and failed.
    Failed,
    /// Its `when` was false.
    Skipped,
    /// Its `depends` could no longer hold.
    Omitted,
}

/// One task of the rehearsal.
#[derive(Debug, Clone, Serialize)]
pub struct TaskRun {
    /// The task.
    pub task: String,
    /// How it ended.
    pub phase: Phase,
    /// Milliseconds from the rehearsal's start to its start (once its semaphore and
    /// parallelism slot were free) and its end.
    pub started_ms: u64,
    /// See `started_ms`.
    pub ended_ms: u64,
    /// What it said (a gate's decision, an approval).
    pub message: String,
}

/// What the rehearsal did.
#[derive(Debug, Clone, Serialize)]
pub struct Rehearsal {
    /// Every task, in the order they ended.
    pub tasks: Vec<TaskRun>,
    /// Each cluster's run.
    pub clusters: Vec<ClusterRun>,
    /// The gate that stopped the rollout, with its decision.
    pub stopped: Option<String>,
    /// Clusters rolled back on the failure path.
    pub rolled_back: Vec<String>,
    /// The most clusters upgrading at once.
    pub peak_parallel: usize,
    /// Wall time.
    pub elapsed: Duration,
}

impl Rehearsal {
    /// The workflow's phase: `Succeeded`, or `Failed` when a gate stopped it.
    pub fn succeeded(&self) -> bool {
        self.stopped.is_none()
    }

    /// The rehearsal for people.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for t in &self.tasks {
            out.push_str(&format!(
                "{:>7.1}s {:<22} {:?}{}\n",
                t.ended_ms as f64 / 1000.0,
                t.task,
                t.phase,
                if t.message.is_empty() {
                    String::new()
                } else {
                    format!(": {}", t.message)
                }
            ));
        }
        out.push_str(&format!(
            "\nrehearsal {} in {:.1}s; at most {} cluster(s) at once{}\n",
            if self.succeeded() {
                "succeeded"
            } else {
                "failed"
            },
            self.elapsed.as_secs_f64(),
            self.peak_parallel,
            self.stopped
                .as_deref()
                .map(|s| format!("; {s}"))
                .unwrap_or_default()
        ));
        out
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Running,
    Done(Phase),
}

fn unsupported(what: String) -> FlowError {
    FlowError::invalid(
        "workflow",
        format!("the rehearsal does not run {what}"),
        "rehearse a template upgrade-fleet generated",
    )
}

/// Evaluates a `depends` expression: `Some(value)` once every task it names has ended.
fn depends(expr: &str, phases: &HashMap<String, State>) -> Result<Option<bool>> {
    let tokens = tokenize(expr);
    let mut pos = 0;
    let value = parse_or(&tokens, &mut pos, phases)?;
    if pos != tokens.len() {
        return Err(unsupported(format!("the depends expression `{expr}`")));
    }
    Ok(value)
}

fn tokenize(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        if c == '(' || c == ')' || two == "||" || two == "&&" || c.is_whitespace() {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            if two == "||" || two == "&&" {
                out.push(two);
                i += 2;
                continue;
            }
            if !c.is_whitespace() {
                out.push(c.to_string());
            }
        } else {
            word.push(c);
        }
        i += 1;
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

// Three-valued: None while a named task has not ended.
fn parse_or(t: &[String], pos: &mut usize, p: &HashMap<String, State>) -> Result<Option<bool>> {
    let mut value = parse_and(t, pos, p)?;
    while t.get(*pos).is_some_and(|s| s == "||") {
        *pos += 1;
        let right = parse_and(t, pos, p)?;
        value = match (value, right) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        };
    }
    Ok(value)
}

fn parse_and(t: &[String], pos: &mut usize, p: &HashMap<String, State>) -> Result<Option<bool>> {
    let mut value = parse_atom(t, pos, p)?;
    while t.get(*pos).is_some_and(|s| s == "&&") {
        *pos += 1;
        let right = parse_atom(t, pos, p)?;
        value = match (value, right) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        };
    }
    Ok(value)
}

fn parse_atom(t: &[String], pos: &mut usize, p: &HashMap<String, State>) -> Result<Option<bool>> {
    let token = t
        .get(*pos)
        .ok_or_else(|| unsupported("an empty depends term".into()))?;
    *pos += 1;
    if token == "(" {
        let value = parse_or(t, pos, p)?;
        if t.get(*pos).map(String::as_str) != Some(")") {
            return Err(unsupported("an unclosed parenthesis".into()));
        }
        *pos += 1;
        return Ok(value);
    }
    let (task, wanted) = token
        .rsplit_once('.')
        .unwrap_or((token.as_str(), "Succeeded"));
    let state = p
        .get(task)
        .ok_or_else(|| unsupported(format!("a dependency on unknown task {task}")))?;
    Ok(match state {
        State::Done(phase) => Some(match wanted {
            "Succeeded" => *phase == Phase::Succeeded,
            "Failed" => *phase == Phase::Failed,
            // A rehearsal's steps fail; Argo's own errors do not happen here.
            "Errored" => false,
            "Skipped" => *phase == Phase::Skipped,
            "Omitted" => *phase == Phase::Omitted,
            other => return Err(unsupported(format!("the task result {other}"))),
        }),
        _ => None,
    })
}

/// Replaces `{{…}}` references.
fn substitute(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let end = rest[start..]
            .find("}}")
            .ok_or_else(|| unsupported(format!("`{text}`")))?;
        out.push_str(&rest[..start]);
        let key = rest[start + 2..start + end].trim();
        out.push_str(
            &lookup(key).ok_or_else(|| unsupported(format!("the reference {{{{{key}}}}}")))?,
        );
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `'a' == 'b' || 'c' == 'd'`, the only `when` form the generator writes.
fn when(expr: &str) -> Result<bool> {
    let mut any = false;
    for clause in expr.split("||") {
        let (left, right) = clause
            .split_once("==")
            .ok_or_else(|| unsupported(format!("the when expression `{expr}`")))?;
        let unquote = |s: &str| s.trim().trim_matches('\'').to_string();
        any |= unquote(left) == unquote(right);
    }
    Ok(any)
}

/// What a container step does, from its `upgrade-fleet` arguments (one parser for the
/// binary and the rehearsal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepCall {
    /// `run-cluster --cluster C [--context X] --out-dir D -- COMMAND…`
    RunCluster {
        /// The cluster.
        cluster: String,
        /// Its context (empty: the kubeconfig's current one).
        context: String,
        /// The step's output folder.
        out_dir: PathBuf,
        /// The command.
        command: Vec<String>,
    },
    /// `rollback-cluster --cluster C [--context X] [--endpoint U] --state-dir D`
    RollbackCluster {
        /// The cluster.
        cluster: String,
        /// Its context.
        context: String,
        /// Its API server (the interlock).
        endpoint: String,
        /// The run's state folder.
        state_dir: PathBuf,
    },
    /// `gate --wave W --max-failures N --results r1,r2,… [--rollbacks phase,…]`
    Gate {
        /// The wave.
        wave: String,
        /// The threshold.
        max_failures: u32,
        /// The results so far.
        results: Vec<ClusterResult>,
        /// The wave's rollback tasks' phases.
        rollbacks: Vec<String>,
    },
}

impl StepCall {
    /// Parses the arguments after `upgrade-fleet`.
    pub fn parse(args: &[String]) -> Result<StepCall> {
        let bad = |why: String| {
            FlowError::invalid(
                "arguments",
                why,
                "see upgrade-fleet run-cluster|rollback-cluster|gate --help",
            )
        };
        let (sub, rest) = args
            .split_first()
            .ok_or_else(|| bad("no step named".into()))?;
        let (flags, command) = match rest.iter().position(|a| a == "--") {
            Some(i) => (&rest[..i], rest[i + 1..].to_vec()),
            None => (rest, Vec::new()),
        };
        let mut values: BTreeMap<&str, String> = BTreeMap::new();
        let mut it = flags.iter();
        while let Some(flag) = it.next() {
            let value = it
                .next()
                .ok_or_else(|| bad(format!("{flag} needs a value")))?;
            values.insert(flag.trim_start_matches("--"), value.clone());
        }
        let take = |key: &str| values.get(key).cloned().unwrap_or_default();
        let need = |key: &str| {
            values
                .get(key)
                .cloned()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| bad(format!("--{key} is required")))
        };
        Ok(match sub.as_str() {
            "run-cluster" => {
                if command.is_empty() {
                    return Err(bad("no command after --".into()));
                }
                StepCall::RunCluster {
                    cluster: need("cluster")?,
                    context: take("context"),
                    out_dir: need("out-dir")?.into(),
                    command,
                }
            }
            "rollback-cluster" => StepCall::RollbackCluster {
                cluster: need("cluster")?,
                context: take("context"),
                endpoint: take("endpoint"),
                state_dir: need("state-dir")?.into(),
            },
            "gate" => StepCall::Gate {
                wave: need("wave")?,
                max_failures: need("max-failures")?
                    .parse()
                    .map_err(|_| bad("--max-failures is not a number".into()))?,
                results: take("results")
                    .split(',')
                    .filter(|r| !r.is_empty())
                    .map(ClusterResult::parse)
                    .collect(),
                rollbacks: take("rollbacks")
                    .split(',')
                    .filter(|r| !r.is_empty())
                    .map(str::to_string)
                    .collect(),
            },
            other => return Err(bad(format!("unknown step {other}"))),
        })
    }
}

/// What running a step came to: success, and a message.
pub struct StepOutcome {
    /// Whether the step succeeded (its container would exit 0).
    pub succeeded: bool,
    /// What it said.
    pub message: String,
    /// A cluster run, for `run-cluster`.
    pub run: Option<ClusterRun>,
}

/// Runs one step's call (the container's work): in the container with `out_dir` as given,
/// in a rehearsal with `out_dir` mapped per cluster.
pub async fn run_step(
    call: &StepCall,
    kubeconfig: Option<&Path>,
    timeout: Duration,
    env: &[(String, String)],
    stop: &StopSignal,
) -> StepOutcome {
    match call {
        StepCall::RunCluster {
            cluster,
            context,
            out_dir,
            command,
        } => {
            let run = run_cluster(&RunClusterSpec {
                cluster: cluster.clone(),
                command: command.clone(),
                kubeconfig: kubeconfig.map(Path::to_path_buf),
                context: Some(context.clone()).filter(|c| !c.is_empty()),
                timeout,
                stop: stop.clone(),
                env: env.to_vec(),
            })
            .await;
            let written = write_outputs(&run, out_dir);
            StepOutcome {
                succeeded: !run.result.counts_as_failed() && written.is_ok(),
                message: match written {
                    Ok(()) => format!("{}: {}", run.result.as_str(), run.outcome),
                    Err(e) => format!("its outputs could not be written: {e}"),
                },
                run: Some(run),
            }
        }
        StepCall::RollbackCluster {
            cluster,
            context,
            endpoint,
            state_dir,
        } => {
            let mut words = vec![
                "upgrade-rollback".to_string(),
                "--snapshot-dir".into(),
                state_dir.display().to_string(),
                "--apply".into(),
                "--yes".into(),
            ];
            if !context.is_empty() {
                words.extend(["--kube-context".into(), context.clone()]);
            }
            if !endpoint.is_empty() {
                words.extend(["--expect-cluster".into(), endpoint.clone()]);
            }
            let run = run_cluster(&RunClusterSpec {
                cluster: cluster.clone(),
                command: words,
                kubeconfig: kubeconfig.map(Path::to_path_buf),
                context: Some(context.clone()).filter(|c| !c.is_empty()),
                timeout,
                stop: stop.clone(),
                env: env.to_vec(),
            })
            .await;
            StepOutcome {
                succeeded: !run.result.counts_as_failed(),
                message: format!("rollback {}: {}", run.result.as_str(), run.outcome),
                run: None,
            }
        }
        StepCall::Gate {
            wave,
            max_failures,
            results,
            rollbacks,
        } => match super::workflow::gate(wave, *max_failures, results, rollbacks) {
            Ok(message) => StepOutcome {
                succeeded: true,
                message,
                run: None,
            },
            Err(message) => StepOutcome {
                succeeded: false,
                message,
                run: None,
            },
        },
    }
}

struct Shared {
    started: Instant,
    parallel: std::sync::atomic::AtomicUsize,
    peak: std::sync::atomic::AtomicUsize,
}

/// Runs `template` (a generated `WorkflowTemplate`) with the limits of `semaphores` (its
/// ConfigMap) as Argo would (see the module docs).
pub async fn rehearse(
    template: &Value,
    semaphores: &Value,
    options: &RehearsalOptions,
) -> Result<Rehearsal> {
    let spec = &template["spec"];
    let templates: HashMap<String, Value> = spec["templates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| Some((t["name"].as_str()?.to_string(), t.clone())))
        .collect();
    let entry = spec["entrypoint"].as_str().unwrap_or_default();
    let dag_tasks: Vec<Value> = templates
        .get(entry)
        .and_then(|t| t["dag"]["tasks"].as_array().cloned())
        .ok_or_else(|| unsupported(format!("an entrypoint `{entry}` that is no DAG")))?;
    let workflow_parameters: HashMap<String, String> = spec["arguments"]["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some((
                p["name"].as_str()?.to_string(),
                p["value"].as_str().unwrap_or_default().to_string(),
            ))
        })
        .collect();
    let parallelism = Arc::new(Semaphore::new(
        spec["parallelism"].as_u64().unwrap_or(u32::MAX as u64) as usize,
    ));
    let account_limits: HashMap<String, Arc<Semaphore>> = semaphores["data"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            let limit = v.as_str().and_then(|n| n.parse().ok()).unwrap_or(1);
            (k.clone(), Arc::new(Semaphore::new(limit)))
        })
        .collect();

    let shared = Arc::new(Shared {
        started: Instant::now(),
        parallel: Default::default(),
        peak: Default::default(),
    });
    let mut states: HashMap<String, State> = dag_tasks
        .iter()
        .filter_map(|t| Some((t["name"].as_str()?.to_string(), State::Waiting)))
        .collect();
    let mut outputs: HashMap<String, String> = HashMap::new();
    let mut report = Rehearsal {
        tasks: Vec::new(),
        clusters: Vec::new(),
        stopped: None,
        rolled_back: Vec::new(),
        peak_parallel: 0,
        elapsed: Duration::ZERO,
    };
    let mut running = tokio::task::JoinSet::new();
    loop {
        // Start (or omit, or skip) every task whose dependencies have settled.
        for task in &dag_tasks {
            let name = task["name"].as_str().unwrap_or_default().to_string();
            if states[&name] != State::Waiting {
                continue;
            }
            let ready = match task["depends"].as_str() {
                None => Some(true),
                Some(expr) => depends(expr, &states)?,
            };
            let now = shared.started.elapsed().as_millis() as u64;
            match ready {
                None => continue,
                Some(false) => {
                    states.insert(name.clone(), State::Done(Phase::Omitted));
                    report.tasks.push(TaskRun {
                        task: name,
                        phase: Phase::Omitted,
                        started_ms: now,
                        ended_ms: now,
                        message: String::new(),
                    });
                    continue;
                }
                Some(true) => {}
            }
            let lookup = |key: &str| -> Option<String> {
                if let Some(p) = key.strip_prefix("workflow.parameters.") {
                    return workflow_parameters.get(p).cloned();
                }
                let rest = key.strip_prefix("tasks.")?;
                if let Some(task) = rest.strip_suffix(".status") {
                    return match states.get(task)? {
                        State::Done(phase) => Some(format!("{phase:?}")),
                        _ => None,
                    };
                }
                let (task, field) = rest.split_once(".outputs.")?;
                match field {
                    "parameters.result" => Some(
                        outputs
                            .get(task)
                            .cloned()
                            .unwrap_or_else(|| "stopped".into()),
                    ),
                    _ => None,
                }
            };
            if let Some(condition) = task["when"].as_str()
                && !when(&substitute(condition, &lookup)?)?
            {
                states.insert(name.clone(), State::Done(Phase::Skipped));
                report.tasks.push(TaskRun {
                    task: name,
                    phase: Phase::Skipped,
                    started_ms: now,
                    ended_ms: now,
                    message: String::new(),
                });
                continue;
            }
            let template_name = task["template"].as_str().unwrap_or_default();
            let template = templates
                .get(template_name)
                .ok_or_else(|| unsupported(format!("unknown template {template_name}")))?;
            // The task's inputs: its arguments over the template's defaults.
            let mut inputs: HashMap<String, String> = template["inputs"]["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| {
                    Some((
                        p["name"].as_str()?.to_string(),
                        p["default"].as_str().unwrap_or_default().to_string(),
                    ))
                })
                .collect();
            for p in task["arguments"]["parameters"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if let Some(n) = p["name"].as_str() {
                    inputs.insert(
                        n.to_string(),
                        substitute(p["value"].as_str().unwrap_or_default(), &lookup)?,
                    );
                }
            }
            let input_lookup = |key: &str| -> Option<String> {
                if let Some(p) = key.strip_prefix("inputs.parameters.") {
                    return inputs.get(p).cloned();
                }
                lookup(key)
            };
            let cluster = inputs.get("cluster").cloned().unwrap_or_default();
            let work = if let Some(container) = template.get("container") {
                let args: Vec<String> = container["args"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| {
                        substitute(a.as_str().unwrap_or_default(), &input_lookup).map(|a| {
                            // The container's output folder, per cluster here (also inside
                            // `--flag=/work/out/...`).
                            a.replace(
                                OUT_DIR,
                                &options.out_dir.join(&cluster).display().to_string(),
                            )
                        })
                    })
                    .collect::<Result<_>>()?;
                if container["command"] != serde_json::json!(["upgrade-fleet"]) {
                    return Err(unsupported(format!(
                        "a container that is not upgrade-fleet ({})",
                        container["command"]
                    )));
                }
                let semaphores = template["synchronization"]["semaphores"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                if semaphores.len() > 1 {
                    return Err(unsupported(format!(
                        "template {template_name}'s several semaphores"
                    )));
                }
                let account = match semaphores.first() {
                    None => None,
                    Some(s) => {
                        let key = substitute(
                            s["configMapKeyRef"]["key"].as_str().unwrap_or_default(),
                            &input_lookup,
                        )?;
                        // Argo fails a step whose semaphore has no limit.
                        Some(account_limits.get(&key).cloned().ok_or_else(|| {
                            unsupported(format!("a semaphore key {key} its ConfigMap lacks"))
                        })?)
                    }
                };
                Work::Step {
                    call: StepCall::parse(&args)?,
                    account,
                    retries: template["retryStrategy"]["limit"].as_u64().unwrap_or(0) as u32,
                }
            } else if template.get("suspend").is_some() {
                let seconds = template["suspend"]["duration"]
                    .as_str()
                    .map(|d| substitute(d, &input_lookup))
                    .transpose()?;
                Work::Suspend(seconds.and_then(|s| s.parse::<u64>().ok()))
            } else {
                return Err(unsupported(format!("template {template_name}")));
            };
            states.insert(name.clone(), State::Running);
            let (shared, parallelism, options) = (
                Arc::clone(&shared),
                Arc::clone(&parallelism),
                options.clone(),
            );
            running.spawn(async move {
                let (started_ms, outcome) = work.run(&shared, &parallelism, &options).await;
                let ended_ms = shared.started.elapsed().as_millis() as u64;
                (name, started_ms, ended_ms, outcome)
            });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let (name, started_ms, ended_ms, outcome) =
            joined.map_err(|e| FlowError::failed("a rehearsal task", e))?;
        let phase = if outcome.succeeded {
            Phase::Succeeded
        } else {
            Phase::Failed
        };
        if let Some(run) = outcome.run {
            outputs.insert(name.clone(), run.result.as_str().to_string());
            report.clusters.push(run);
        }
        if name.starts_with("gate-") && phase == Phase::Failed {
            report.stopped = Some(outcome.message.clone());
        }
        if name.starts_with("rb-") && phase == Phase::Succeeded {
            report
                .rolled_back
                .push(name.trim_start_matches("rb-").to_string());
        }
        states.insert(name.clone(), State::Done(phase));
        report.tasks.push(TaskRun {
            task: name,
            phase,
            started_ms,
            ended_ms,
            message: outcome.message,
        });
    }
    report.peak_parallel = shared.peak.load(std::sync::atomic::Ordering::SeqCst);
    report.elapsed = shared.started.elapsed();
    Ok(report)
}

enum Work {
    Step {
        call: StepCall,
        account: Option<Arc<Semaphore>>,
        /// Retries of a cluster that did not answer (the template's retryStrategy).
        retries: u32,
    },
    Suspend(Option<u64>),
}

impl Work {
    /// Runs it; returns when it started (after its semaphore and slot: a pod waiting for
    /// them has not started) and how it ended.
    async fn run(
        self,
        shared: &Shared,
        parallelism: &Semaphore,
        options: &RehearsalOptions,
    ) -> (u64, StepOutcome) {
        let now = || shared.started.elapsed().as_millis() as u64;
        match self {
            Work::Suspend(Some(seconds)) => {
                let started = now();
                let wait = Duration::from_secs_f64(seconds as f64 * options.soak_scale);
                let _ = options.stop.pause(wait).await;
                (
                    started,
                    StepOutcome {
                        succeeded: true,
                        message: format!(
                            "soaked {seconds}s (x{} in the rehearsal)",
                            options.soak_scale
                        ),
                        run: None,
                    },
                )
            }
            Work::Suspend(None) => (
                now(),
                StepOutcome {
                    succeeded: true,
                    message: "approval granted by the rehearsal".into(),
                    run: None,
                },
            ),
            Work::Step {
                call,
                account,
                retries,
            } => {
                // Argo takes the semaphore first, then a parallelism slot.
                let _account = match &account {
                    Some(s) => Some(s.acquire().await.expect("never closed")),
                    None => None,
                };
                let cluster_step = matches!(call, StepCall::RunCluster { .. });
                let _slot = parallelism.acquire().await.expect("never closed");
                let started = now();
                if cluster_step {
                    use std::sync::atomic::Ordering;
                    let now = shared.parallel.fetch_add(1, Ordering::SeqCst) + 1;
                    shared.peak.fetch_max(now, Ordering::SeqCst);
                }
                let mut outcome = run_step(
                    &call,
                    options.kubeconfig.as_deref(),
                    options.timeout,
                    &options.env,
                    &options.stop,
                )
                .await;
                // The retryStrategy's expression: only an unreachable cluster is retried.
                for _ in 0..retries {
                    let unreachable = outcome
                        .run
                        .as_ref()
                        .is_some_and(|r| r.result == ClusterResult::Unreachable);
                    if !unreachable || options.stop.pause(Duration::from_secs(1)).await.is_err() {
                        break;
                    }
                    outcome = run_step(
                        &call,
                        options.kubeconfig.as_deref(),
                        options.timeout,
                        &options.env,
                        &options.stop,
                    )
                    .await;
                }
                if cluster_step {
                    shared
                        .parallel
                        .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                }
                (started, outcome)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_is_three_valued() {
        let mut p = HashMap::new();
        p.insert("a".to_string(), State::Done(Phase::Failed));
        p.insert("b".to_string(), State::Running);
        p.insert("c".to_string(), State::Done(Phase::Omitted));
        assert_eq!(depends("a.Failed", &p).unwrap(), Some(true));
        assert_eq!(depends("a", &p).unwrap(), Some(false));
        assert_eq!(depends("(a.Succeeded || a.Failed) && b", &p).unwrap(), None);
        assert_eq!(depends("a.Succeeded && b", &p).unwrap(), Some(false));
        assert_eq!(depends("(c.Skipped || c.Omitted)", &p).unwrap(), Some(true));
        assert!(depends("zz", &p).is_err());
        assert!(when("'unfinished' == 'unfinished' || 'x' == 'stopped'").unwrap());
        assert!(!when("'ok' == 'unfinished' || 'ok' == 'stopped'").unwrap());
    }

    #[test]
    fn step_calls_parse_and_refuse_what_they_do_not_know() {
        let args = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
        assert_eq!(
            StepCall::parse(&args("gate --wave w --max-failures 1 --results ok,failed")).unwrap(),
            StepCall::Gate {
                wave: "w".into(),
                max_failures: 1,
                results: vec![ClusterResult::Ok, ClusterResult::Failed],
                rollbacks: Vec::new(),
            }
        );
        assert!(StepCall::parse(&args("run-cluster --cluster a --out-dir /o")).is_err());
        assert!(StepCall::parse(&args("dance")).is_err());
    }
}

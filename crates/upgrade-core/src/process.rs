//! The one process runner every subprocess of the project goes through.
//!
//! Shaped after cargo's `ProcessBuilder`/`ProcessError`: an owned builder that knows its
//! program (an absolute path, see [`crate::tool::Tool`]), argv, environment changes, working
//! directory and stdin, and whose [`Display`](fmt::Display) is the command line with secrets
//! redacted. That redacted form is the only one that reaches logs and errors.
//!
//! Execution drains stdout and stderr together on two threads (no pipe deadlock, whatever the
//! child writes), optionally streams lines to a callback, and enforces a timeout with a
//! graceful stop: one `SIGINT`, a grace period, then `SIGKILL`. Never a second `SIGINT`:
//! Terraform treats a second interrupt as "exit now" and may leave its state locked.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock, mpsc};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::redact::Redactor;

/// How long a stopped child gets between `SIGINT` and `SIGKILL` unless the caller says otherwise.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30);

/// How many trailing stderr lines an error message shows (the whole stderr stays in the error).
const STDERR_TAIL_LINES: usize = 20;

/// After the child exits, how long to keep reading pipes that a grandchild may still hold open.
const ORPHAN_PIPE_WAIT: Duration = Duration::from_secs(2);

const TICK: Duration = Duration::from_millis(20);

/// Which pipe a streamed line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The child's standard output.
    Stdout,
    /// The child's standard error.
    Stderr,
}

/// A callback that receives each line of output as it arrives.
pub type LineCallback<'a> = dyn FnMut(Stream, &str) + 'a;

/// A request to stop running work gracefully, shared between threads.
///
/// Children run in their own process group, so a Ctrl-C at the terminal reaches only our
/// process. A binary's signal handler calls `StopSignal::global().stop()`; every running
/// command that watches the signal (all do, unless given another) then gets the same
/// graceful stop as a timeout: one `SIGINT` to its group, the grace period, then `SIGKILL`,
/// and returns [`ProcessError::Stopped`]. Waits that poll (drains, rollouts) check it too.
///
/// A stop is a request, and requests are counted. Work that must run to completion after a
/// stop (the rollback of what the stopped run applied) first [acknowledges](Self::acknowledge)
/// the requests so far; it watches the same signal and is stopped only by a further request
/// (a second Ctrl-C). [`abort`](Self::abort) stops everything for good, acknowledged or not
/// (the upgrade lock is lost: nothing may change the cluster any more).
#[derive(Clone, Debug, Default)]
pub struct StopSignal(Arc<StopState>);

#[derive(Debug, Default)]
struct StopState {
    requests: AtomicU32,
    acknowledged: AtomicU32,
    aborted: AtomicBool,
}

impl StopSignal {
    /// A new, unset signal (for a caller that stops its own commands).
    pub fn new() -> Self {
        Self::default()
    }

    /// The process-wide signal every command watches by default.
    pub fn global() -> &'static StopSignal {
        static GLOBAL: OnceLock<StopSignal> = OnceLock::new();
        GLOBAL.get_or_init(StopSignal::new)
    }

    /// Asks every command watching this signal to stop; returns how many stops have been
    /// asked for so far (1 for the first).
    pub fn stop(&self) -> u32 {
        self.0.requests.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Stops everything watching this signal for good: acknowledging no longer clears it.
    pub fn abort(&self) {
        self.0.aborted.store(true, Ordering::SeqCst);
        self.stop();
    }

    /// Whether a stop was asked for and not yet acknowledged, or the signal was aborted.
    pub fn is_stopped(&self) -> bool {
        self.is_aborted()
            || self.0.requests.load(Ordering::SeqCst) > self.0.acknowledged.load(Ordering::SeqCst)
    }

    /// Whether [`abort`](Self::abort) was called.
    pub fn is_aborted(&self) -> bool {
        self.0.aborted.load(Ordering::SeqCst)
    }

    /// How many stops have been asked for since the signal was made (a caller compares two
    /// readings to learn whether its own work was stopped).
    pub fn requests(&self) -> u32 {
        self.0.requests.load(Ordering::SeqCst)
    }

    /// Marks every stop asked for so far as handled, so the work that handles it (a rollback)
    /// can run: it is stopped only by a further request, or by an abort. Call it only when
    /// nothing that was asked to stop is still running.
    pub fn acknowledge(&self) {
        let requests = self.0.requests.load(Ordering::SeqCst);
        self.0.acknowledged.fetch_max(requests, Ordering::SeqCst);
    }

    /// Settles the signal after the work it stopped has ended: the abort is lifted and every
    /// request so far acknowledged, so the next piece of work starts afresh (the caller
    /// learned of the stop from that work's result).
    pub fn settle(&self) {
        self.0.aborted.store(false, Ordering::SeqCst);
        self.acknowledge();
    }

    /// Waits up to `duration`, returning early (`Err(Stopped)`) when a stop is asked for;
    /// the pause of every polling wait, so Ctrl-C never has to outwait it.
    pub async fn pause(&self, duration: Duration) -> Result<(), Stopped> {
        let until = tokio::time::Instant::now() + duration;
        loop {
            if self.is_stopped() {
                return Err(Stopped);
            }
            let now = tokio::time::Instant::now();
            if now >= until {
                return Ok(());
            }
            tokio::time::sleep((until - now).min(STOP_POLL)).await;
        }
    }
}

/// How often a [`StopSignal::pause`] looks at the signal.
const STOP_POLL: Duration = Duration::from_millis(50);

/// A wait ended early because a stop was asked for ([`StopSignal::pause`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stopped on request")]
pub struct Stopped;

/// How a timed-out or stopped child was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMethod {
    /// It exited within the grace period after one `SIGINT`.
    Interrupt,
    /// It ignored `SIGINT` for the whole grace period and was killed.
    Kill,
}

impl fmt::Display for StopMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopMethod::Interrupt => f.write_str("stopped by SIGINT"),
            StopMethod::Kill => f.write_str("killed after ignoring SIGINT for the grace period"),
        }
    }
}

/// Everything a finished child left behind.
#[derive(Debug, Clone)]
pub struct ProcessOutput {
    /// The exit status.
    pub status: ExitStatus,
    /// All of stdout, unredacted (callers parse it).
    pub stdout: Vec<u8>,
    /// All of stderr, unredacted.
    pub stderr: Vec<u8>,
    /// Wall time from start to exit.
    pub elapsed: Duration,
}

impl ProcessOutput {
    /// Stdout as text (invalid UTF-8 replaced).
    pub fn stdout_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Stderr as text (invalid UTF-8 replaced).
    pub fn stderr_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// A subprocess failure. Spawn failure, non-zero exit, timeout and unparseable output are
/// distinct variants; every string in them is already redacted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// The program could not be found; the hint says how to install it or point to it.
    #[error("`{program}` was not found ({searched})\nhint: {hint}")]
    NotFound {
        /// The program's name, e.g. `terraform`.
        program: String,
        /// What was searched, e.g. "TERRAFORM_BIN is unset and it is not on PATH".
        searched: String,
        /// How to install it or where to point the override variable.
        hint: String,
    },
    /// The program exists but could not be started.
    #[error("could not start `{command}`: {source}")]
    Start {
        /// The redacted command line.
        command: String,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
    /// The program ran and failed.
    #[error("`{command}` {}{}", status_text(*.code, *.signal), render_streams(stdout, stderr))]
    Exited {
        /// The redacted command line.
        command: String,
        /// The exit code, when it exited normally.
        code: Option<i32>,
        /// The signal that ended it, when one did.
        signal: Option<i32>,
        /// All of stdout, redacted.
        stdout: String,
        /// All of stderr, redacted.
        stderr: String,
    },
    /// The program outlived its timeout and was stopped.
    #[error(
        "`{command}` timed out after {after:?} and was {how}{}",
        render_streams(stdout, stderr)
    )]
    TimedOut {
        /// The redacted command line.
        command: String,
        /// The timeout that elapsed.
        after: Duration,
        /// Whether SIGINT sufficed or it had to be killed.
        how: StopMethod,
        /// Stdout up to the stop, redacted.
        stdout: String,
        /// Stderr up to the stop, redacted.
        stderr: String,
    },
    /// The program was stopped on request (Ctrl-C in the calling program, see [`StopSignal`]).
    #[error(
        "`{command}` was stopped on request and was {how}{}",
        render_streams(stdout, stderr)
    )]
    Stopped {
        /// The redacted command line.
        command: String,
        /// Whether SIGINT sufficed or it had to be killed.
        how: StopMethod,
        /// The exit code it chose when SIGINT sufficed (130 for a graceful stop).
        code: Option<i32>,
        /// Stdout up to the stop, redacted.
        stdout: String,
        /// Stderr up to the stop, redacted.
        stderr: String,
    },
    /// The program succeeded but its output could not be understood.
    #[error(
        "could not parse the output of `{command}` as {what}: {source}\noutput starts with: {snippet}"
    )]
    Parse {
        /// The redacted command line.
        command: String,
        /// What was expected, e.g. "terraform version JSON".
        what: String,
        /// The parser's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
        /// The first bytes of the output, redacted.
        snippet: String,
    },
    /// Reading the child's pipes or waiting for it failed.
    #[error("lost track of `{command}`: {source}")]
    Io {
        /// The redacted command line.
        command: String,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
}

/// The one adapter from the runner's failures to a tool wrapper's typed error.
///
/// Each wrapper's error type (`upgrade_tf::Error`, `upgrade_helm::Error`) implements it and
/// converts with [`ProcessError::into_tool_error`], so every wrapper tells a program that never
/// ran, a non-zero exit (classified from its output), a timeout, a stop on request and
/// unparseable output apart the same way, and none of them falls into a catch-all: a caller
/// can always tell a Ctrl-C from a failure.
pub trait ToolError: Sized {
    /// The program ran and exited non-zero ([`ProcessError::Exited`]): the wrapper
    /// classifies its stderr into a failure with a hint.
    fn exited(error: ProcessError) -> Self;
    /// It outlived its timeout and was stopped ([`ProcessError::TimedOut`]).
    fn timed_out(error: ProcessError) -> Self;
    /// It was stopped on request, by Ctrl-C or a lost lease ([`ProcessError::Stopped`]).
    fn stopped(error: ProcessError) -> Self;
    /// It never ran to an exit: not found, could not start, or lost track of
    /// ([`ProcessError::NotFound`], [`ProcessError::Start`], [`ProcessError::Io`]).
    fn not_run(error: ProcessError) -> Self;
    /// It succeeded but its output could not be understood ([`ProcessError::Parse`]).
    fn unparseable(error: ProcessError) -> Self;
}

impl ProcessError {
    /// Converts into a tool wrapper's error through its [`ToolError`] implementation.
    pub fn into_tool_error<E: ToolError>(self) -> E {
        match self {
            error @ ProcessError::Exited { .. } => E::exited(error),
            error @ ProcessError::TimedOut { .. } => E::timed_out(error),
            error @ ProcessError::Stopped { .. } => E::stopped(error),
            error @ (ProcessError::NotFound { .. }
            | ProcessError::Start { .. }
            | ProcessError::Io { .. }) => E::not_run(error),
            error @ ProcessError::Parse { .. } => E::unparseable(error),
        }
    }

    /// Whether the program was stopped on request (Ctrl-C, a lost lease), not by a failure.
    pub fn is_stopped(&self) -> bool {
        matches!(self, ProcessError::Stopped { .. })
    }

    /// The last lines of stderr, for hints and short messages.
    pub fn stderr_tail(&self) -> Option<String> {
        match self {
            ProcessError::Exited { stderr, .. }
            | ProcessError::TimedOut { stderr, .. }
            | ProcessError::Stopped { stderr, .. } => Some(tail_lines(stderr, STDERR_TAIL_LINES)),
            _ => None,
        }
    }

    /// The full (redacted) stderr, when the child ran.
    pub fn stderr(&self) -> Option<&str> {
        match self {
            ProcessError::Exited { stderr, .. }
            | ProcessError::TimedOut { stderr, .. }
            | ProcessError::Stopped { stderr, .. } => Some(stderr),
            _ => None,
        }
    }

    /// The exit code, when the child exited normally with one.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            ProcessError::Exited { code, .. } => *code,
            _ => None,
        }
    }
}

fn status_text(code: Option<i32>, signal: Option<i32>) -> String {
    match (code, signal) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal} ({})", signal_name(signal)),
        (None, None) => "ended without an exit code".to_string(),
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGHUP => "SIGHUP",
        _ => "signal",
    }
}

fn render_streams(stdout: &str, stderr: &str) -> String {
    // Like cargo: a block per stream, only when it has something in it.
    let mut out = String::new();
    if !stdout.trim().is_empty() {
        out.push_str("\n--- stdout\n");
        out.push_str(&tail_lines(stdout, STDERR_TAIL_LINES));
    }
    if !stderr.trim().is_empty() {
        out.push_str("\n--- stderr\n");
        out.push_str(&tail_lines(stderr, STDERR_TAIL_LINES));
    }
    out
}

fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let start = lines.len().saturating_sub(n);
    let mut tail = String::new();
    if start > 0 {
        tail.push_str(&format!("[... {start} earlier lines]\n"));
    }
    tail.push_str(&lines[start..].join("\n"));
    tail
}

/// How much of each stream a command keeps by default (see
/// [`ProcessBuilder::capture_limit`]).
pub const DEFAULT_CAPTURE_LIMIT: usize = 64 * 1024 * 1024;

/// A command to run: program, argv, environment changes, working directory, stdin, timeout
/// and the secrets to keep out of every log and error.
///
/// Setters are chainable and take `&mut self`, so a builder can be kept and re-run.
#[derive(Clone, Debug)]
pub struct ProcessBuilder {
    program: PathBuf,
    args: Vec<OsString>,
    env: BTreeMap<OsString, Option<OsString>>,
    cwd: Option<PathBuf>,
    stdin: Option<Vec<u8>>,
    timeout: Option<Duration>,
    grace: Duration,
    secrets: Vec<String>,
    stop: Option<StopSignal>,
    capture_limit: usize,
}

impl ProcessBuilder {
    /// A command for `program`, which should be an absolute path (see [`crate::tool::Tool`]).
    pub fn new(program: impl Into<PathBuf>) -> Self {
        ProcessBuilder {
            program: program.into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            cwd: None,
            stdin: None,
            timeout: None,
            grace: DEFAULT_GRACE_PERIOD,
            capture_limit: DEFAULT_CAPTURE_LIMIT,
            secrets: Vec::new(),
            stop: None,
        }
    }

    /// (chainable) Appends one argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    /// (chainable) Appends arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// (chainable) Sets an environment variable for the child.
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        self.env.insert(
            key.as_ref().to_os_string(),
            Some(value.as_ref().to_os_string()),
        );
        self
    }

    /// (chainable) Removes an environment variable the child would otherwise inherit.
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Self {
        self.env.insert(key.as_ref().to_os_string(), None);
        self
    }

    /// (chainable) Sets an environment variable whose value is secret (kept out of logs and errors).
    pub fn env_secret(&mut self, key: impl AsRef<OsStr>, value: impl Into<String>) -> &mut Self {
        let value = value.into();
        self.env(key, &value);
        self.secret(value)
    }

    /// (chainable) Sets the working directory.
    pub fn cwd(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.cwd = Some(dir.into());
        self
    }

    /// (chainable) Bytes written to the child's stdin (otherwise stdin is null, so nothing can prompt).
    pub fn stdin(&mut self, bytes: impl Into<Vec<u8>>) -> &mut Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// (chainable) Stops the child once this much time has passed.
    pub fn timeout(&mut self, timeout: Duration) -> &mut Self {
        self.timeout = Some(timeout);
        self
    }

    /// (chainable) Time between the `SIGINT` and the `SIGKILL` when a timeout stops the child.
    pub fn grace_period(&mut self, grace: Duration) -> &mut Self {
        self.grace = grace;
        self
    }

    /// (chainable) Keeps at most `bytes` of each stream ([`DEFAULT_CAPTURE_LIMIT`] unless
    /// set): the first quarter and the last three quarters, with a line naming how much was
    /// dropped between them. Machine-readable output that must be parsed whole (a plan's
    /// JSON) sets `usize::MAX`.
    pub fn capture_limit(&mut self, bytes: usize) -> &mut Self {
        self.capture_limit = bytes;
        self
    }

    /// (chainable) Watches `signal` instead of [`StopSignal::global`].
    pub fn stop_signal(&mut self, signal: StopSignal) -> &mut Self {
        self.stop = Some(signal);
        self
    }

    /// (chainable) Marks a value as secret: it is replaced by `***` wherever it appears in the
    /// command line, stdout or stderr that reach a log or an error.
    pub fn secret(&mut self, value: impl Into<String>) -> &mut Self {
        let value = value.into();
        if !value.is_empty() {
            self.secrets.push(value);
        }
        self
    }

    /// (chainable) Replaces each `${env:NAME}` in the arguments with the variable's value
    /// and marks those values secret ([`crate::redact::expand_env_refs`]): the command as
    /// written (in plans, records, `Display`) keeps the reference, the process gets the value.
    pub fn resolve_env_refs(&mut self) -> Result<&mut Self, crate::redact::MissingSecret> {
        let mut args = Vec::with_capacity(self.args.len());
        for arg in &self.args {
            match arg.to_str() {
                Some(text) if text.contains("${env:") => {
                    let expanded = crate::redact::expand_env_refs(text)?;
                    self.secrets.extend(expanded.secrets);
                    args.push(OsString::from(expanded.text));
                }
                _ => args.push(arg.clone()),
            }
        }
        self.args = args;
        Ok(self)
    }

    /// The program to run.
    pub fn get_program(&self) -> &Path {
        &self.program
    }

    /// The arguments, unredacted (for tests of argv construction).
    pub fn get_args(&self) -> &[OsString] {
        &self.args
    }

    /// The environment changes (`None` = removed).
    pub fn get_envs(&self) -> &BTreeMap<OsString, Option<OsString>> {
        &self.env
    }

    /// The working directory, if set.
    pub fn get_cwd(&self) -> Option<&Path> {
        self.cwd.as_deref()
    }

    /// The timeout, if set.
    pub fn get_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    fn redactor(&self) -> Redactor {
        Redactor::for_command(&self.args, &self.secrets)
    }

    /// The arguments as they may be shown: secrets replaced by `***`.
    pub fn redacted_args(&self) -> Vec<String> {
        self.redactor().redact_args(&self.args)
    }

    /// Runs the command and requires success (exit code 0).
    pub fn exec(&self) -> Result<ProcessOutput, ProcessError> {
        let output = self.run(None)?;
        self.check(output)
    }

    /// Runs the command and returns its output whatever the exit code (a timeout or a failure
    /// to start is still an error).
    pub fn output(&self) -> Result<ProcessOutput, ProcessError> {
        self.run(None)
    }

    /// Like [`exec`](Self::exec), calling `on_line` for each line of either stream as it arrives.
    pub fn exec_with_streaming(
        &self,
        on_line: &mut dyn FnMut(Stream, &str),
    ) -> Result<ProcessOutput, ProcessError> {
        let output = self.run(Some(on_line))?;
        self.check(output)
    }

    /// Like [`output`](Self::output), calling `on_line` for each line of either stream.
    pub fn output_with_streaming(
        &self,
        on_line: &mut dyn FnMut(Stream, &str),
    ) -> Result<ProcessOutput, ProcessError> {
        self.run(Some(on_line))
    }

    /// [`exec`](Self::exec) on tokio's blocking pool, so a slow child never stalls the runtime.
    pub async fn exec_async(&self) -> Result<ProcessOutput, ProcessError> {
        let this = self.clone();
        join_blocking(tokio::task::spawn_blocking(move || this.exec()).await)
    }

    /// [`output`](Self::output) on tokio's blocking pool.
    pub async fn output_async(&self) -> Result<ProcessOutput, ProcessError> {
        let this = self.clone();
        join_blocking(tokio::task::spawn_blocking(move || this.output()).await)
    }

    /// [`exec_with_streaming`](Self::exec_with_streaming) on tokio's blocking pool.
    pub async fn exec_with_streaming_async<F>(
        &self,
        mut on_line: F,
    ) -> Result<ProcessOutput, ProcessError>
    where
        F: FnMut(Stream, &str) + Send + 'static,
    {
        let this = self.clone();
        join_blocking(
            tokio::task::spawn_blocking(move || this.exec_with_streaming(&mut on_line)).await,
        )
    }

    /// Runs the command, requires success, and parses stdout as JSON.
    pub fn exec_json<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
    ) -> Result<(T, ProcessOutput), ProcessError> {
        let output = self.exec()?;
        let value = self.parse_json(what, &output.stdout)?;
        Ok((value, output))
    }

    /// Parses `bytes` (this command's output) as JSON, with a [`ProcessError::Parse`] on failure.
    pub fn parse_json<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        bytes: &[u8],
    ) -> Result<T, ProcessError> {
        serde_json::from_slice(bytes).map_err(|e| self.parse_error(what, e, bytes))
    }

    /// A [`ProcessError::Parse`] for this command, with a redacted snippet of the output.
    pub fn parse_error(
        &self,
        what: &str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
        output: &[u8],
    ) -> ProcessError {
        let redactor = self.redactor();
        let text = String::from_utf8_lossy(output);
        let snippet: String = text.chars().take(200).collect();
        ProcessError::Parse {
            command: self.to_string(),
            what: what.to_string(),
            source: source.into(),
            snippet: redactor.scrub(&snippet),
        }
    }

    /// Turns a non-zero exit into [`ProcessError::Exited`].
    pub fn check(&self, output: ProcessOutput) -> Result<ProcessOutput, ProcessError> {
        if output.status.success() {
            Ok(output)
        } else {
            Err(self.exited_error(&output))
        }
    }

    /// The [`ProcessError::Exited`] for `output` (for callers that accept some non-zero codes,
    /// such as `terraform plan -detailed-exitcode`'s 2).
    pub fn exited_error(&self, output: &ProcessOutput) -> ProcessError {
        use std::os::unix::process::ExitStatusExt;
        let redactor = self.redactor();
        ProcessError::Exited {
            command: self.to_string(),
            code: output.status.code(),
            signal: output.status.signal(),
            stdout: redactor.scrub(&output.stdout_lossy()),
            stderr: redactor.scrub(&output.stderr_lossy()),
        }
    }

    fn run(
        &self,
        mut on_line: Option<&mut LineCallback<'_>>,
    ) -> Result<ProcessOutput, ProcessError> {
        tracing::debug!(command = %self, cwd = ?self.cwd, "running");
        let started = Instant::now();
        let io_err = |source: io::Error| ProcessError::Io {
            command: self.to_string(),
            source,
        };
        let (out_reader, out_writer) = os_pipe::pipe().map_err(io_err)?;
        let (err_reader, err_writer) = os_pipe::pipe().map_err(io_err)?;

        let handle = {
            #[allow(clippy::disallowed_methods)] // this is the runner
            let mut expr = duct::cmd(&self.program, &self.args)
                .stdout_file(out_writer)
                .stderr_file(err_writer)
                .unchecked()
                // Its own process group, so a stop reaches everything it started, as Ctrl-C
                // in a terminal would (Terraform's provider plugins ignore SIGINT and are
                // shut down by Terraform itself).
                .before_spawn(|cmd| {
                    use std::os::unix::process::CommandExt;
                    cmd.process_group(0);
                    Ok(())
                });
            if let Some(dir) = &self.cwd {
                expr = expr.dir(dir);
            }
            for (key, value) in &self.env {
                expr = match value {
                    Some(value) => expr.env(key, value),
                    None => expr.env_remove(key),
                };
            }
            expr = match &self.stdin {
                Some(bytes) => expr.stdin_bytes(bytes.clone()),
                None => expr.stdin_null(),
            };
            expr.start().map_err(|source| ProcessError::Start {
                command: self.to_string(),
                source,
            })?
            // `expr` drops here, closing our copies of the pipes' write ends so the readers
            // see end-of-file when the child (and anything it spawned) is done.
        };

        let (tx, rx) = mpsc::channel::<(Stream, Vec<u8>)>();
        spawn_reader(out_reader, Stream::Stdout, tx.clone());
        spawn_reader(err_reader, Stream::Stderr, tx);

        let mut stdout = Capture::new(self.capture_limit);
        let mut stderr = Capture::new(self.capture_limit);
        let mut partial: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
        let deadline = self.timeout.map(|t| started + t);
        let stop = self.stop.as_ref().unwrap_or(StopSignal::global());
        // Why the child is being stopped, once it is: a timeout or a stop request.
        let mut stopping: Option<StopReason> = None;
        let mut interrupted_at: Option<Instant> = None;
        let mut killed = false;
        let mut readers_done = false;
        let mut exited_at: Option<Instant> = None;
        let mut status: Option<ExitStatus> = None;

        loop {
            if readers_done {
                if status.is_none() {
                    status = handle.wait_timeout(TICK).map_err(io_err)?.map(|o| o.status);
                }
            } else {
                // Not `continue` after a chunk: a child that never stops writing must still
                // meet its deadline and a stop request, so every pass checks both below.
                match rx.recv_timeout(TICK) {
                    Ok((stream, chunk)) => {
                        let (buf, idx) = match stream {
                            Stream::Stdout => (&mut stdout, 0),
                            Stream::Stderr => (&mut stderr, 1),
                        };
                        buf.push(&chunk);
                        if let Some(cb) = on_line.as_mut() {
                            emit_lines(&mut partial[idx], &chunk, stream, &mut **cb);
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => readers_done = true,
                }
                if status.is_none() {
                    status = handle.try_wait().map_err(io_err)?.map(|o| o.status);
                }
            }
            let now = Instant::now();
            if status.is_some() && exited_at.is_none() {
                exited_at = Some(now);
            }
            if status.is_some() && readers_done {
                break;
            }
            // A grandchild that inherited the pipes may keep them open after the child exits;
            // do not wait for it forever.
            if exited_at.is_some_and(|t| now.duration_since(t) > ORPHAN_PIPE_WAIT) {
                break;
            }
            if status.is_none() {
                if stopping.is_none() {
                    if deadline.is_some_and(|d| now >= d) {
                        stopping = Some(StopReason::Timeout);
                    } else if stop.is_stopped() {
                        stopping = Some(StopReason::Requested);
                    }
                }
                match interrupted_at {
                    None if stopping.is_some() => {
                        tracing::warn!(command = %self, reason = ?stopping, "stopping; sending SIGINT");
                        // Ignore failure: the child may have exited in between.
                        signal_group(&handle, Signal::SIGINT);
                        interrupted_at = Some(now);
                    }
                    Some(at) if !killed && now.duration_since(at) >= self.grace => {
                        tracing::warn!(command = %self, "ignored SIGINT; killing");
                        signal_group(&handle, Signal::SIGKILL);
                        killed = true;
                    }
                    _ => {}
                }
            }
        }
        if let Some(cb) = on_line.as_mut() {
            for (idx, stream) in [(0, Stream::Stdout), (1, Stream::Stderr)] {
                if !partial[idx].is_empty() {
                    let line = String::from_utf8_lossy(&partial[idx]).into_owned();
                    cb(stream, line.trim_end_matches('\r'));
                }
            }
        }
        let status = match status {
            Some(status) => status,
            None => handle.wait().map_err(io_err)?.status,
        };
        let output = ProcessOutput {
            status,
            stdout: stdout.finish(),
            stderr: stderr.finish(),
            elapsed: started.elapsed(),
        };
        tracing::debug!(command = %self, status = %output.status, elapsed = ?output.elapsed, "finished");
        let how = if killed {
            StopMethod::Kill
        } else {
            StopMethod::Interrupt
        };
        let redactor = self.redactor();
        match stopping {
            None => Ok(output),
            Some(StopReason::Timeout) => Err(ProcessError::TimedOut {
                command: self.to_string(),
                after: self.timeout.unwrap_or_default(),
                how,
                stdout: redactor.scrub(&output.stdout_lossy()),
                stderr: redactor.scrub(&output.stderr_lossy()),
            }),
            Some(StopReason::Requested) => Err(ProcessError::Stopped {
                command: self.to_string(),
                how,
                code: output.status.code(),
                stdout: redactor.scrub(&output.stdout_lossy()),
                stderr: redactor.scrub(&output.stderr_lossy()),
            }),
        }
    }
}

/// One stream's captured bytes, bounded: the first quarter of the limit, then the latest
/// bytes up to the rest of it, and how many were dropped between the two.
struct Capture {
    head: Vec<u8>,
    tail: Vec<u8>,
    head_limit: usize,
    tail_limit: usize,
    dropped: u64,
}

impl Capture {
    fn new(limit: usize) -> Capture {
        let head_limit = limit / 4;
        Capture {
            head: Vec::new(),
            tail: Vec::new(),
            head_limit,
            tail_limit: limit - head_limit,
            dropped: 0,
        }
    }

    fn push(&mut self, mut chunk: &[u8]) {
        if self.head.len() < self.head_limit {
            let take = chunk.len().min(self.head_limit - self.head.len());
            self.head.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
        }
        self.tail.extend_from_slice(chunk);
        // Trimmed in bulk (at twice the limit), so a chatty child costs amortised O(1) per byte.
        if self.tail.len() > self.tail_limit.saturating_mul(2).max(64 * 1024) {
            let excess = self.tail.len() - self.tail_limit;
            self.tail.drain(..excess);
            self.dropped += excess as u64;
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.tail.len() > self.tail_limit {
            let excess = self.tail.len() - self.tail_limit;
            self.tail.drain(..excess);
            self.dropped += excess as u64;
        }
        let mut out = self.head;
        if self.dropped > 0 {
            out.extend_from_slice(
                format!("\n[... {} bytes of output dropped ...]\n", self.dropped).as_bytes(),
            );
        }
        out.extend_from_slice(&self.tail);
        out
    }
}

#[derive(Debug, Clone, Copy)]
enum StopReason {
    Timeout,
    Requested,
}

fn signal_group(handle: &duct::Handle, signal: Signal) {
    for pid in handle.pids() {
        // The child leads its own group (process_group(0)), so its pid is the group id.
        let _ = nix::sys::signal::killpg(Pid::from_raw(pid as i32), signal);
    }
}

fn join_blocking<T>(joined: Result<T, tokio::task::JoinError>) -> T {
    match joined {
        Ok(value) => value,
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(err) => panic!("blocking process task was cancelled: {err}"),
    }
}

fn spawn_reader(
    mut reader: os_pipe::PipeReader,
    stream: Stream,
    tx: mpsc::Sender<(Stream, Vec<u8>)>,
) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx.send((stream, buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
    });
}

fn emit_lines(
    partial: &mut Vec<u8>,
    chunk: &[u8],
    stream: Stream,
    cb: &mut dyn FnMut(Stream, &str),
) {
    let mut rest = chunk;
    while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
        partial.extend_from_slice(&rest[..pos]);
        let line = String::from_utf8_lossy(partial).into_owned();
        cb(stream, line.trim_end_matches('\r'));
        partial.clear();
        rest = &rest[pos + 1..];
    }
    partial.extend_from_slice(rest);
}

impl fmt::Display for ProcessBuilder {
    /// The command line, shell-quoted, with secrets replaced by `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&shell_quote(&self.program.to_string_lossy()))?;
        for arg in self.redacted_args() {
            write!(f, " {}", shell_quote(&arg))?;
        }
        Ok(())
    }
}

/// Quotes `s` for a POSIX shell when it needs quoting, so a displayed command can be pasted.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '-' | '_' | '.' | '/' | ':' | '=' | ',' | '+' | '@' | '%')
        });
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

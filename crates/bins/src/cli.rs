//! The flags the commands share, in three groups so each command offers only the ones it
//! uses, and the one `main`: parse, log, Ctrl-C, run, exit code.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use upgrade_flows::context::{FlowContext, FlowContextBuilder};
use upgrade_flows::report::{Format, Plan, RunReport};
use upgrade_flows::run::Planned;
use upgrade_kube::connect::ConnectOptions;

use crate::exit::{CliError, Flags};

/// Which cluster, and the interlock.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// Kubeconfig file (default: KUBECONFIG or ~/.kube/config).
    #[arg(long, value_name = "FILE", global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use; named explicitly so the current context is never used by accident.
    #[arg(long, value_name = "NAME", global = true)]
    pub kube_context: Option<String>,
    /// The cluster changes are allowed on (EKS cluster name or API server URL); any other is refused.
    #[arg(long, value_name = "CLUSTER", global = true)]
    pub expect_cluster: Option<String>,
}

impl ClusterArgs {
    /// The connection options these flags name.
    pub fn connect_options(&self) -> ConnectOptions {
        ConnectOptions {
            kubeconfig: self.kubeconfig.clone(),
            context: self.kube_context.clone(),
            expect_cluster: self.expect_cluster.clone(),
        }
    }
}

/// How a changing command runs.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Where the journal, snapshots and run records are written.
    #[arg(long, value_name = "DIR", default_value = ".upgrade", global = true)]
    pub snapshot_dir: PathBuf,
    /// Make the changes. Without it the command only shows what it would do.
    #[arg(long, global = true)]
    pub apply: bool,
    /// Answer yes to every question (for pipelines).
    #[arg(long, global = true)]
    pub yes: bool,
    /// Continue the unfinished run recorded in the journal (repeats nothing already done).
    #[arg(long, global = true)]
    pub resume: bool,
}

/// The limit of each wait of a command (Helm's wait, rollouts, drains, Jobs, checks).
#[derive(Debug, Clone, clap::Args)]
pub struct TimeoutArgs {
    /// The limit of each wait (Helm's, a rollout's, a drain's, a Job's), e.g. `90s`, `15m`, `1h`.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, global = true)]
    pub timeout: Option<Duration>,
}

/// The limit of each Terraform command, apart from the waits' `--timeout`.
#[derive(Debug, Clone, clap::Args)]
pub struct TerraformTimeoutArgs {
    /// The limit of each Terraform command (`init`, `plan`, `apply`), e.g. `45m`; one that
    /// outlives it is interrupted (SIGINT, then SIGKILL after a grace period), its step
    /// fails and the run rolls back what can be undone. An EKS control-plane update alone
    /// can take most of an hour, and carries on inside EKS when Terraform is stopped.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "2h")]
    pub terraform_timeout: Duration,
}

/// The flag groups of a command that changes the platform and waits: cluster, run, timeout,
/// output.
#[derive(Debug, Clone, clap::Args)]
pub struct ChangeFlags {
    /// Which cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// How the run runs.
    #[command(flatten)]
    pub run: RunArgs,
    /// The limit of each wait.
    #[command(flatten)]
    pub timeout: TimeoutArgs,
    /// Output and logging.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Output and logging.
#[derive(Debug, Clone, clap::Args)]
pub struct OutputArgs {
    /// Report format; stdout carries only the report in that format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text, global = true)]
    pub output: OutputFormat,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// More logging (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

/// How a report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// A table for terminals.
    Text,
    /// JSON for pipelines.
    Json,
    /// A Markdown upgrade playbook.
    Markdown,
    /// JUnit XML for CI dashboards.
    Junit,
}

impl From<OutputFormat> for Format {
    fn from(format: OutputFormat) -> Format {
        match format {
            OutputFormat::Text => Format::Text,
            OutputFormat::Json => Format::Json,
            OutputFormat::Markdown => Format::Markdown,
            OutputFormat::Junit => Format::Junit,
        }
    }
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Parses `90s`, `15m`, `1h`, `500ms` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration; use e.g. 90s, 15m or 1h"))?;
    let seconds = match unit {
        "" | "s" => number,
        "m" => number * 60,
        "h" => number * 3600,
        "ms" => return Ok(Duration::from_millis(number)),
        _ => {
            return Err(format!(
                "`{text}` has an unknown unit `{unit}`; use ms, s, m or h"
            ));
        }
    };
    Ok(Duration::from_secs(seconds))
}

/// A command: clap arguments, run to an exit code.
pub trait Command: clap::Parser {
    /// Its output and logging flags.
    fn output(&self) -> &OutputArgs;
    /// Runs the command, printing its report to `out`.
    fn run(&self, out: &mut dyn Write) -> impl std::future::Future<Output = Result<u8, CliError>>;
}

/// The whole `main` of a command's binary: parse the arguments, set up logging, turn Ctrl-C
/// into a graceful stop, run, and map the result to the exit code (see [`crate::exit`]).
pub fn main<C: Command>() -> std::process::ExitCode {
    let args = C::parse();
    init_logging(args.output());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return std::process::ExitCode::from(upgrade_flows::error::EXIT_FAILED);
        }
    };
    runtime.block_on(async {
        stop_on_ctrl_c();
        crate::exit::report(args.run(&mut std::io::stdout()).await)
    })
}

/// Turns Ctrl-C into a graceful stop (call inside the runtime): the running command gets
/// one SIGINT and a grace period, and the run rolls back what it applied. A second Ctrl-C
/// stops that rollback too; what it did not undo stays recorded for `upgrade-rollback`.
pub fn stop_on_ctrl_c() {
    tokio::spawn(async {
        while tokio::signal::ctrl_c().await.is_ok() {
            if upgrade_flows::run::runs_in_progress() == 0 {
                // Planning, reading or waiting for a confirmation: nothing to undo.
                eprintln!("Ctrl-C: stopped; nothing was changed");
                std::process::exit(i32::from(upgrade_flows::error::EXIT_STOPPED));
            }
            let asked = upgrade_core::process::StopSignal::global().stop();
            // On stderr, unconditionally: whatever the log level, say what happens next.
            if asked == 1 {
                eprintln!(
                    "Ctrl-C: stopping the running command; the run then rolls back what it applied (Ctrl-C again stops the rollback)"
                );
            } else {
                eprintln!(
                    "Ctrl-C again: stopping the rollback; what it has not undone stays recorded: finish it with `upgrade-rollback`"
                );
            }
        }
    });
}

/// Sets up logging on stderr per the flags (`RUST_LOG` overrides the level).
pub fn init_logging(args: &OutputArgs) {
    // kube-rs logs every failed request at ERROR, including each one its retry layer sends
    // again; the error that ends a command says what failed, so those lines wait for -vv.
    let level = match args.verbose {
        0 => "warn,kube_client::client::builder=off",
        1 => "info,kube_client::client::builder=off",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // Ignore a second initialisation (tests call commands in one process).
    let _ = match args.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
}

/// Connects and builds the flows' context for `command`: progress on stderr, the run state
/// under `--snapshot-dir`, `--resume`.
pub async fn context(
    command: &str,
    cluster: &ClusterArgs,
    run: Option<&RunArgs>,
) -> Result<FlowContext, CliError> {
    context_with(command, cluster, run, |builder| builder).await
}

/// As [`context`], with `configure` applied to the builder last (e.g. a Terraform timeout).
pub async fn context_with(
    command: &str,
    cluster: &ClusterArgs,
    run: Option<&RunArgs>,
    configure: impl FnOnce(FlowContextBuilder) -> FlowContextBuilder,
) -> Result<FlowContext, CliError> {
    if let Some(run) = run
        && run.apply
        && cluster.expect_cluster.is_none()
    {
        return Err(CliError::usage(
            "--apply changes a cluster, so it needs --expect-cluster NAME (the EKS cluster name or API server URL this change is meant for)",
        ));
    }
    let mut builder = FlowContext::connect(cluster.connect_options())
        .await
        .map_err(|e| CliError::from_flow(e, &Flags::default()))?
        .events(Arc::new(crate::progress::Spinners::default()))
        .started_by(format!("{command} {}", env!("CARGO_PKG_VERSION")));
    if let Some(run) = run {
        builder = builder.state_dir(&run.snapshot_dir).resume(run.resume);
    }
    Ok(configure(builder).build())
}

/// Prints `planned`'s plan, and with `--apply` (confirmed, or `--yes`) runs it and prints its
/// report. The exit code: a plan's 0 or 4; a run's 0 or 3; a failure's by its variant.
pub async fn execute(
    ctx: &FlowContext,
    planned: Planned,
    run: &RunArgs,
    output: &OutputArgs,
    flags: &Flags,
    out: &mut dyn Write,
) -> Result<u8, CliError> {
    let format = Format::from(output.output);
    if !run.apply || !planned.plan().blockers.is_empty() {
        print(out, &RunReport::of_plan(planned.plan()).render(format))?;
        return Ok(planned.plan().exit_code());
    }
    if !run.yes {
        confirm(planned.plan(), out)?;
    }
    match planned.apply(ctx).await {
        Ok(report) => {
            print(out, &report.render(format))?;
            Ok(report.exit_code())
        }
        Err(err) => {
            if let Some(report) = err.report() {
                print(out, &report.render(format))?;
            }
            Err(CliError::from_flow(err, flags))
        }
    }
}

/// Writes `text` to `out`.
pub fn print(out: &mut dyn Write, text: &str) -> Result<(), CliError> {
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| CliError::failed(format!("write the report: {e}")))
}

/// Asks on the terminal whether to apply `plan` (a pipeline without `--yes` is refused).
pub fn confirm(plan: &Plan, out: &mut dyn Write) -> Result<(), CliError> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(CliError::usage(
            "--apply asks for confirmation on a terminal; in a pipeline add --yes",
        ));
    }
    let irreversible = plan.irreversible_steps();
    write!(
        out,
        "Apply {} step(s) of run {}{}? [y/N] ",
        plan.steps.len(),
        plan.run_id,
        if irreversible > 0 {
            format!(" ({irreversible} cannot be undone)")
        } else {
            String::new()
        }
    )
    .and_then(|()| out.flush())
    .map_err(|e| CliError::failed(e.to_string()))?;
    let mut answer = String::new();
    stdin
        .read_line(&mut answer)
        .map_err(|e| CliError::failed(e.to_string()))?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(CliError::usage("not confirmed; nothing was changed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert!(
            parse_duration("5 minutes")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_duration("soon").unwrap_err().contains("use e.g. 90s"));
    }
}

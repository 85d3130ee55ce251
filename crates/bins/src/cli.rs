//! Flags every command shares, and their parsing.

use std::path::PathBuf;
use std::time::Duration;

/// Flags common to every upgrade command.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Kubeconfig file (default: KUBECONFIG or ~/.kube/config).
    #[arg(long, value_name = "FILE", global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use; named explicitly so the current context is never used by accident.
    #[arg(long, value_name = "NAME", global = true)]
    pub kube_context: Option<String>,
    /// The cluster changes are allowed on (EKS cluster name or API server URL); any other is refused.
    #[arg(long, value_name = "CLUSTER", global = true)]
    pub expect_cluster: Option<String>,
    /// The platform lockfile, kept next to the infrastructure code.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "platform.lock",
        global = true
    )]
    pub lockfile: PathBuf,
    /// Where snapshots and the journal are written.
    #[arg(long, value_name = "DIR", default_value = ".upgrade", global = true)]
    pub snapshot_dir: PathBuf,
    /// Make the changes. Without it the command only shows what it would do.
    #[arg(long, global = true)]
    pub apply: bool,
    /// Continue the unfinished run recorded in the journal (repeats nothing already done).
    #[arg(long, global = true)]
    pub resume: bool,
    /// Answer yes to every question (for pipelines).
    #[arg(long, global = true)]
    pub yes: bool,
    /// Report format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text, global = true)]
    pub output: OutputFormat,
    /// Overall time limit, e.g. `90s`, `15m`, `1h`.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, global = true)]
    pub timeout: Option<Duration>,
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

/// A command: clap arguments that include [`CommonArgs`], run to an exit code.
pub trait Command: clap::Parser {
    /// The flags every command shares.
    fn common(&self) -> &CommonArgs;
    /// Runs the command, printing its report to `out`.
    fn run(
        &self,
        out: &mut dyn std::io::Write,
    ) -> impl std::future::Future<Output = Result<u8, crate::exit::CliError>>;
}

/// The whole `main` of a command's binary: parse the arguments, set up logging, turn Ctrl-C
/// into a graceful stop, run, and map the result to the exit code (see [`crate::exit`]).
pub fn main<C: Command>() -> std::process::ExitCode {
    let args = C::parse();
    init_logging(args.common());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return std::process::ExitCode::from(crate::exit::FAILED);
        }
    };
    runtime.block_on(async {
        stop_on_ctrl_c();
        crate::exit::report(args.run(&mut std::io::stdout()).await)
    })
}

/// Turns Ctrl-C into a graceful stop: running commands get one SIGINT and a grace period,
/// the failing step is rolled back, and the run is left recorded (call inside the runtime).
pub fn stop_on_ctrl_c() {
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::warn!(
                "Ctrl-C: stopping the running command; the run rolls back what it applied"
            );
            upgrade_core::process::StopSignal::global().stop();
        }
    });
}

/// Sets up logging on stderr per the flags (`RUST_LOG` overrides the level).
pub fn init_logging(args: &CommonArgs) {
    let level = match args.verbose {
        0 => "warn",
        1 => "info",
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

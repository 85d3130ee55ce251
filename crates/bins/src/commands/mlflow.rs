//! `upgrade-mlflow`: the MLflow tracking server's upgrade (seed 000 "MLflow Upgrade", seed 002
//! "MLflow Database Backup"): a database snapshot through the site's own command, the image
//! update, `mlflow db upgrade` run in the cluster with the new image, and the `/health` check.

use std::io::Write;

use upgrade_flows::flows::mlflow::{self, MlflowSpec};

use crate::cli::{ChangeFlags, OutputArgs, context, execute};
use crate::exit::{CliError, Flags};

/// `upgrade-mlflow` arguments.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "upgrade-mlflow",
    version,
    about = "Upgrade the MLflow tracking server: database snapshot, `mlflow db upgrade` in the cluster, image, /health",
    after_help = "Steps: mlflow/db-snapshot (--db-snapshot-command, --db-snapshot-wait-command), [mlflow/scale-down],\n\
mlflow/db-upgrade (a Job from the Deployment's pod template with the new image), mlflow/image, [mlflow/scale-up],\n\
mlflow/health (--health-url). The migration runs before the rollout: the new server refuses an old schema.\n\
Rollback: rollout undo; then, only if the migration Job started, stop it and run --db-restore-command.\n\
Commands are split like a shell would (no shell runs them); {run_id} and {date} are replaced, and the\n\
run records them filled in, so upgrade-rollback restores the snapshot this run took.\n\
Secrets (a database password, a password in --health-url) are never written out: put them in an\n\
environment variable and write ${env:NAME} (e.g. http://mlflow:${env:MLFLOW_PASSWORD}@host:5000);\n\
plans, reports and the run record keep the reference, the value is read when the command runs, so\n\
upgrade-rollback needs the variable set again. A credential written out is refused (exit 2).\n\n\
Exit codes: 0 done (or planned), 1 failed and rolled back, 2 bad input (nothing changed),\n\
4 blocked, e.g. a downgrade (nothing changed), 5 failed with a recorded way back, 130 stopped by Ctrl-C."
)]
pub struct Args {
    /// The new image, e.g. `ghcr.io/mlflow/mlflow:v2.16.0`.
    #[arg(long, value_name = "IMAGE")]
    pub image: String,
    /// The namespace of the tracking server.
    #[arg(long, value_name = "NAME", default_value = "mlops")]
    pub namespace: String,
    /// The tracking server's Deployment.
    #[arg(long, value_name = "NAME", default_value = "mlflow")]
    pub deployment: String,
    /// The container running MLflow in that Deployment.
    #[arg(long, value_name = "NAME", default_value = "mlflow")]
    pub container: String,
    /// The container's environment variable holding the backend store URI (the database
    /// `mlflow db upgrade` migrates).
    #[arg(long, value_name = "NAME", default_value = "BACKEND_STORE_URI")]
    pub db_uri_env: String,
    /// Takes the database snapshot before anything changes, e.g. `aws rds
    /// create-db-snapshot --db-instance-identifier mlops --db-snapshot-identifier
    /// mlops-pre-upgrade-{run_id}`.
    #[arg(long, value_name = "COMMAND", conflicts_with = "no_db_snapshot")]
    pub db_snapshot_command: Option<String>,
    /// Waits until the snapshot is usable before anything changes, e.g. `aws rds wait
    /// db-snapshot-available --db-snapshot-identifier mlops-pre-upgrade-{run_id}` (an RDS
    /// snapshot takes minutes; the migration must not start before it is available).
    #[arg(long, value_name = "COMMAND", requires = "db_snapshot_command")]
    pub db_snapshot_wait_command: Option<String>,
    /// Restores the database from that snapshot on rollback (required with
    /// --db-snapshot-command).
    #[arg(long, value_name = "COMMAND")]
    pub db_restore_command: Option<String>,
    /// Upgrade without a database snapshot: the migration then cannot be undone.
    #[arg(long)]
    pub no_db_snapshot: bool,
    /// Stop the server (scale to 0) for the migration and start it again with the new
    /// image: downtime, but no old server runs on the migrated schema.
    #[arg(long)]
    pub scale_down: bool,
    /// The tracking server's URL whose `/health` must answer after the upgrade.
    #[arg(long, value_name = "URL")]
    pub health_url: Option<String>,
    /// An experiment that must still be readable after the upgrade (needs --health-url).
    #[arg(long, value_name = "NAME", requires = "health_url")]
    pub experiment: Option<String>,
    /// Attempts of the health check before it fails the run (backoff 1s doubling to 10s).
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub health_attempts: u32,
    /// Cluster, run, timeout and output flags.
    #[command(flatten)]
    pub flags: ChangeFlags,
}

impl Args {
    /// The spec these flags describe.
    pub fn spec(&self) -> MlflowSpec {
        let defaults = MlflowSpec::new(&self.image);
        MlflowSpec {
            namespace: self.namespace.clone(),
            deployment: self.deployment.clone(),
            container: self.container.clone(),
            db_uri_env: self.db_uri_env.clone(),
            db_snapshot_command: self.db_snapshot_command.clone(),
            db_snapshot_wait_command: self.db_snapshot_wait_command.clone(),
            db_restore_command: self.db_restore_command.clone(),
            no_db_snapshot: self.no_db_snapshot,
            scale_down: self.scale_down,
            health_url: self.health_url.clone(),
            experiment: self.experiment.clone(),
            health_attempts: self.health_attempts,
            timeout: self.flags.timeout.timeout.unwrap_or(defaults.timeout),
            ..defaults
        }
    }
}

impl crate::cli::Command for Args {
    fn output(&self) -> &OutputArgs {
        &self.flags.output
    }

    async fn run(&self, out: &mut dyn Write) -> Result<u8, CliError> {
        let flags = Flags::default();
        let spec = self.spec();
        mlflow::check(&spec).map_err(|e| CliError::from_flow(e, &flags))?;
        let ctx = context("upgrade-mlflow", &self.flags.cluster, Some(&self.flags.run)).await?;
        let planned = mlflow::plan(&ctx, &spec)
            .await
            .map_err(|e| CliError::from_flow(e, &flags))?;
        execute(
            &ctx,
            planned,
            &self.flags.run,
            &self.flags.output,
            &flags,
            out,
        )
        .await
    }
}

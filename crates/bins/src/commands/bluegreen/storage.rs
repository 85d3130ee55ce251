//! `upgrade-bluegreen storage`.

use upgrade_flows::flows::bluegreen::{BackupSpec, StorageSpec};

use super::ServicesArgs;

/// `storage`'s flags: an on-demand backup, an RDS clone, an S3 copy, or any of them.
#[derive(Debug, clap::Args)]
pub struct StorageArgs {
    /// Back up blue's stores into this AWS Backup vault first (seed 001's snapshot-state.sh).
    #[arg(long, value_name = "NAME", requires_all = ["backup_role_arn", "backup_resource"])]
    pub backup_vault: Option<String>,
    /// The role AWS Backup assumes for the jobs.
    #[arg(long, value_name = "ARN", requires = "backup_vault")]
    pub backup_role_arn: Option<String>,
    /// A store to back up: the bucket's, the database's or the file system's ARN (repeat).
    #[arg(long, value_name = "ARN", requires = "backup_vault")]
    pub backup_resource: Vec<String>,
    /// Blue's RDS instance, cloned through a snapshot.
    #[arg(long, value_name = "ID", requires = "rds_clone")]
    pub rds_instance: Option<String>,
    /// The clone's instance identifier.
    #[arg(long, value_name = "ID", requires = "rds_instance")]
    pub rds_clone: Option<String>,
    /// Blue's S3 bucket, copied.
    #[arg(long, value_name = "BUCKET", requires = "s3_clone")]
    pub s3_bucket: Option<String>,
    /// The copy's bucket name.
    #[arg(long, value_name = "BUCKET", requires = "s3_bucket")]
    pub s3_clone: Option<String>,
    /// How long a snapshot, an instance or a backup job may take.
    #[arg(long, value_name = "MINUTES", default_value_t = 120)]
    pub wait_minutes: u64,
    /// How to reach AWS.
    #[command(flatten)]
    pub aws: ServicesArgs,
}

impl StorageArgs {
    pub(crate) fn spec(&self) -> StorageSpec {
        StorageSpec {
            backup: self.backup_vault.as_ref().map(|vault| BackupSpec {
                vault: vault.clone(),
                role_arn: self.backup_role_arn.clone().unwrap_or_default(),
                resources: self.backup_resource.clone(),
            }),
            rds_instance: self.rds_instance.clone(),
            rds_clone: self.rds_clone.clone(),
            s3_bucket: self.s3_bucket.clone(),
            s3_clone: self.s3_clone.clone(),
            wait_minutes: self.wait_minutes,
            aws: self.aws.settings(),
        }
    }
}

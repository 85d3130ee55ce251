//! `upgrade-bluegreen storage`.

use upgrade_flows::flows::bluegreen::StorageSpec;

use super::AwsArgs;

/// `storage`'s flags: an RDS clone, an S3 copy, or both.
#[derive(Debug, clap::Args)]
pub struct StorageArgs {
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
    /// How long a snapshot or an instance may take to become available.
    #[arg(long, value_name = "MINUTES", default_value_t = 120)]
    pub wait_minutes: u64,
    /// How to reach AWS.
    #[command(flatten)]
    pub aws: AwsArgs,
}

impl StorageArgs {
    pub(crate) fn spec(&self) -> StorageSpec {
        StorageSpec {
            rds_instance: self.rds_instance.clone(),
            rds_clone: self.rds_clone.clone(),
            s3_bucket: self.s3_bucket.clone(),
            s3_clone: self.s3_clone.clone(),
            wait_minutes: self.wait_minutes,
            aws: self.aws.settings(),
        }
    }
}

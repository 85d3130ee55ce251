//! Blue/green cluster upgrades (seeds 001 and 003): a green cluster built beside the blue
//! one, state moved, traffic switched, fail-back possible. One module per stage of seed
//! 001, each planned as a run of its own whose steps are journaled and, where the world
//! allows it, reversible:
//!
//! - [`inputs`]: the green environment's variables from blue's Terraform outputs;
//! - [`storage`]: optional clones of blue's RDS instance and S3 bucket for green, and the
//!   on-demand backup of blue's stores ([`backup`]);
//! - [`configure`]: green's Knative domain and Prometheus scrape jobs;
//! - [`irsa`]: green's OIDC provider in the profile roles' trust policies;
//! - [`green_up`]: green's Terraform (reviewed plan, apply) and the wait for its API server;
//! - [`platform`]: the platform's Helm releases on green, with blue's values under green's;
//! - [`transfer`]: the user namespaces' objects from blue to green (seed 001's Velero step);
//! - [`ack`]: blue's ACK SageMaker endpoints protected, green adopting them;
//! - [`verify_green`](mod@verify_green): green's health, a predict call per InferenceService, the user's probes;
//! - [`retire`]: blue deleted after the soak, keeping what the guide and green need;
//! - [`switch`]: the platform's DNS record from blue to green (its rollback is the fail-back).

use serde::{Deserialize, Serialize};

pub mod ack;
pub mod alb;
pub mod backup;
pub mod configure;
pub mod fsx;
pub mod green_up;
pub mod inputs;
pub mod irsa;
pub mod platform;
pub mod retire;
pub mod storage;
pub mod switch;
pub mod transfer;
pub mod verify_green;

pub use ack::{
    ACK_FLOW, AckAdoptSpec, AckAdoptStep, AckProtectSpec, AckProtectStep, AckSpec, plan_ack,
};
pub use alb::{AlbRuleSpec, AlbRuleStep};
pub use backup::{BackupJobsSpec, BackupJobsStep, BackupSpec};
pub use configure::{CONFIGURE_FLOW, ConfigMapSpec, ConfigMapStep, ConfigureSpec, plan_configure};
pub use fsx::{FsxPermissionsSpec, FsxPermissionsStep};
pub use green_up::{
    GREEN_UP_FLOW, GreenApiSpec, GreenApiStep, GreenTerraformSpec, GreenTerraformStep, GreenUpSpec,
    plan_green_up,
};
pub use inputs::{
    BLUE_OUTPUTS, COGNITO_OUTPUTS, FLOW, GreenVarsSpec, GreenVarsStep, InputsSpec,
    OPTIONAL_OUTPUTS, plan_inputs,
};
pub use irsa::{IRSA_FLOW, IrsaSpec, IrsaTrustSpec, IrsaTrustStep, plan_irsa};
pub use platform::{
    GreenHelmSpec, GreenHelmStep, GreenRelease, PLATFORM_FLOW, PlatformSpec, plan_platform,
};
pub use retire::{KEPT_TYPES, RETIRE_FLOW, RetireSpec, RetireStep, RetireStepSpec, plan_retire};
pub use storage::{
    RdsCloneSpec, RdsCloneStep, S3CopySpec, S3CopyStep, STORAGE_FLOW, StorageSpec, plan_storage,
};
pub use switch::{
    SWITCH_FLOW, ServingRecord, SwitchSpec, SwitchStep, SwitchStepSpec, Window, latest_switch_run,
    plan_switch,
};
pub use transfer::{
    GreenCluster, TRANSFER_FLOW, TransferSpec, TransferStep, TransferStepSpec, plan_transfer,
};
pub use verify_green::{GreenVerification, VerifyGreenSpec, require_verified_green, verify_green};

/// A stage that cannot run the AWS CLI: bad input naming the fix.
pub(crate) fn aws_unavailable(problem: String) -> crate::error::FlowError {
    crate::error::FlowError::invalid("aws", problem, "install the AWS CLI or set AWS_BIN")
}

/// How a stage reaches AWS (the AWS CLI's settings).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwsSettings {
    /// The region.
    #[serde(default)]
    pub region: Option<String>,
    /// The CLI profile.
    #[serde(default)]
    pub profile: Option<String>,
    /// Another endpoint (moto in tests).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Another endpoint for one service (service → URL: a VPC endpoint, or a simulation of
    /// a service the local stand-in lacks), before `endpoint_url`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub service_endpoints: std::collections::BTreeMap<String, String>,
}

impl AwsSettings {
    pub(crate) fn builder(&self) -> upgrade_aws::EksBuilder {
        let mut builder = upgrade_aws::Eks::builder("").settings(
            self.region.as_deref(),
            self.profile.as_deref(),
            self.endpoint_url.as_deref(),
        );
        for (service, url) in &self.service_endpoints {
            builder = builder.service_endpoint(service, url);
        }
        builder
    }

    pub(crate) fn backup(&self) -> std::result::Result<upgrade_aws::Backup, String> {
        self.builder().build_backup().map_err(|e| e.to_string())
    }

    pub(crate) fn efs(&self) -> std::result::Result<upgrade_aws::Efs, String> {
        self.builder().build_efs().map_err(|e| e.to_string())
    }

    pub(crate) fn iam(&self) -> std::result::Result<upgrade_aws::Iam, String> {
        self.builder().build_iam().map_err(|e| e.to_string())
    }

    pub(crate) fn elbv2(&self) -> std::result::Result<upgrade_aws::Elbv2, String> {
        self.builder().build_elbv2().map_err(|e| e.to_string())
    }

    pub(crate) fn rds(&self) -> std::result::Result<upgrade_aws::Rds, String> {
        self.builder().build_rds().map_err(|e| e.to_string())
    }

    pub(crate) fn s3(&self) -> std::result::Result<upgrade_aws::S3, String> {
        self.builder().build_s3().map_err(|e| e.to_string())
    }

    pub(crate) fn route53(&self) -> std::result::Result<upgrade_aws::Route53, String> {
        self.builder().build_route53().map_err(|e| e.to_string())
    }
}

//! `upgrade-bluegreen irsa`.

use upgrade_flows::flows::bluegreen::IrsaSpec;

use super::ServicesArgs;

/// `irsa`'s flags.
#[derive(Debug, clap::Args)]
pub struct IrsaArgs {
    /// A role the profiles' service accounts assume. Repeatable.
    #[arg(long = "role", value_name = "NAME", required = true)]
    pub roles: Vec<String>,
    /// The green cluster's IAM OIDC provider ARN.
    #[arg(long, value_name = "ARN")]
    pub green_oidc_provider_arn: String,
    /// How to reach AWS.
    #[command(flatten)]
    pub aws: ServicesArgs,
}

impl IrsaArgs {
    pub(crate) fn spec(&self) -> IrsaSpec {
        IrsaSpec {
            roles: self.roles.clone(),
            green_oidc_provider_arn: self.green_oidc_provider_arn.clone(),
            aws: self.aws.settings(),
        }
    }
}

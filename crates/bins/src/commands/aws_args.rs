//! The AWS flags the commands that call AWS share.

use upgrade_flows::flows::bluegreen::AwsSettings;

/// How a stage reaches AWS (the AWS CLI's settings).
#[derive(Debug, Clone, clap::Args)]
pub struct AwsArgs {
    /// The AWS region (default: the kubeconfig ARN's where the command reads the EKS cluster from it, else the AWS CLI's configuration).
    #[arg(long, value_name = "REGION")]
    pub aws_region: Option<String>,
    /// The AWS CLI profile.
    #[arg(long, value_name = "NAME")]
    pub aws_profile: Option<String>,
    /// Another AWS endpoint (a VPC endpoint; moto or a simulation in tests).
    #[arg(long, value_name = "URL")]
    pub aws_endpoint_url: Option<String>,
}

/// [`AwsArgs`] for the stages that call several AWS services, each of which may have an
/// endpoint of its own.
#[derive(Debug, Clone, clap::Args)]
pub struct ServicesArgs {
    /// How to reach AWS.
    #[command(flatten)]
    pub aws: AwsArgs,
    /// Another endpoint for one service, before --aws-endpoint-url (repeat; e.g.
    /// `backup=https://backup.vpce.example`).
    #[arg(long, value_name = "SERVICE=URL", value_parser = service_endpoint)]
    pub aws_service_endpoint: Vec<(String, String)>,
}

impl ServicesArgs {
    /// The flow's AWS settings.
    pub fn settings(&self) -> AwsSettings {
        AwsSettings {
            service_endpoints: self.aws_service_endpoint.iter().cloned().collect(),
            ..self.aws.settings()
        }
    }
}

fn service_endpoint(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((service, url)) if !service.is_empty() && !url.is_empty() => {
            Ok((service.to_string(), url.to_string()))
        }
        _ => Err(format!(
            "`{text}` is not SERVICE=URL (for example backup=http://127.0.0.1:4566)"
        )),
    }
}

impl AwsArgs {
    /// The flow's AWS settings.
    pub fn settings(&self) -> AwsSettings {
        AwsSettings {
            region: self.aws_region.clone(),
            profile: self.aws_profile.clone(),
            endpoint_url: self.aws_endpoint_url.clone(),
            service_endpoints: Default::default(),
        }
    }
}

/// How the command reaches EKS's own API.
#[derive(Debug, Clone, clap::Args)]
pub struct EksApiArgs {
    /// The EKS cluster name (default: the one the kubeconfig names, from its ARN or its
    /// `aws eks get-token --cluster-name`); Upgrade Insights are read for it.
    #[arg(long, value_name = "NAME")]
    pub eks_cluster: Option<String>,
    /// How to reach AWS (the region defaults to the kubeconfig ARN's).
    #[command(flatten)]
    pub aws: AwsArgs,
    /// Do not read EKS Upgrade Insights (the plan says they were not read).
    #[arg(long)]
    pub skip_insights: bool,
}

impl EksApiArgs {
    /// The spec part.
    pub fn spec(&self) -> upgrade_flows::flows::insights::EksApi {
        upgrade_flows::flows::insights::EksApi {
            cluster_name: self.eks_cluster.clone(),
            region: self.aws.aws_region.clone(),
            profile: self.aws.aws_profile.clone(),
            endpoint_url: self.aws.aws_endpoint_url.clone(),
            skip_insights: self.skip_insights,
        }
    }
}

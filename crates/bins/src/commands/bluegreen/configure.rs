//! `upgrade-bluegreen configure`.

use std::path::PathBuf;

use upgrade_flows::flows::bluegreen::ConfigureSpec;

use super::GreenArgs;

/// `configure`'s flags.
#[derive(Debug, clap::Args)]
pub struct ConfigureArgs {
    /// The green cluster.
    #[command(flatten)]
    pub green: GreenArgs,
    /// Knative's default domain on green (the platform's subdomain).
    #[arg(long, value_name = "DOMAIN")]
    pub knative_domain: Option<String>,
    /// The Prometheus server ConfigMap (NAMESPACE/NAME, key prometheus.yml) that gets seed
    /// 001's scrape jobs (ml-pipeline, katib-controller, notebook-controller).
    #[arg(long, value_name = "NAMESPACE/NAME")]
    pub prometheus_config: Option<String>,
    /// An object copied from blue as it is: RESOURCE/NAMESPACE/NAME (or RESOURCE/NAME), e.g.
    /// the model-serving ingress `ingresses/istio-system/istio-ingress` (same certificate) or
    /// an authorization policy
    /// `authorizationpolicies.security.istio.io/kubeflow-user-example-com/allow-predictor`.
    /// Repeat.
    #[arg(long, value_name = "RESOURCE/NS/NAME")]
    pub copy_from_blue: Vec<String>,
    /// A shared-file-system claim on green (NAMESPACE/NAME) whose root a Job gives the
    /// notebook user (seed 001's FSx permissions). Repeat.
    #[arg(long, value_name = "NAMESPACE/NAME")]
    pub fsx_permissions: Vec<String>,
    /// The permissions Job's image.
    #[arg(long, value_name = "IMAGE", default_value = upgrade_flows::flows::bluegreen::fsx::DEFAULT_PERMISSIONS_IMAGE)]
    pub permissions_image: String,
    /// The permissions Job's shell command (the volume is at /data).
    #[arg(long, value_name = "COMMAND", default_value = upgrade_flows::flows::bluegreen::fsx::DEFAULT_PERMISSIONS_COMMAND)]
    pub permissions_command: String,
}

impl ConfigureArgs {
    pub(crate) fn spec(&self, blue_kubeconfig: Option<&PathBuf>) -> ConfigureSpec {
        ConfigureSpec {
            green: self.green.cluster(blue_kubeconfig),
            knative_domain: self.knative_domain.clone(),
            prometheus_config: self.prometheus_config.clone(),
            copy_from_blue: self.copy_from_blue.clone(),
            fsx_permissions: self.fsx_permissions.clone(),
            permissions_image: self.permissions_image.clone(),
            permissions_command: self.permissions_command.clone(),
        }
    }
}

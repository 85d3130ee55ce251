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
}

impl ConfigureArgs {
    pub(crate) fn spec(&self, blue_kubeconfig: Option<&PathBuf>) -> ConfigureSpec {
        ConfigureSpec {
            green: self.green.cluster(blue_kubeconfig),
            knative_domain: self.knative_domain.clone(),
            prometheus_config: self.prometheus_config.clone(),
        }
    }
}

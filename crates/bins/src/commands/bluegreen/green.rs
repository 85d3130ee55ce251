//! The green cluster's flags, shared by the stages that reach it.

use std::path::PathBuf;

use upgrade_flows::flows::bluegreen::GreenCluster;

/// How a stage reaches the green cluster.
#[derive(Debug, clap::Args)]
pub struct GreenArgs {
    /// The green cluster's kubeconfig (default: the one blue's comes from).
    #[arg(long, value_name = "FILE")]
    pub green_kubeconfig: Option<PathBuf>,
    /// The green cluster's context in it.
    #[arg(long, value_name = "NAME")]
    pub green_context: Option<String>,
    /// The green cluster changes are allowed on (EKS name, kubeconfig cluster or API URL).
    #[arg(long, value_name = "NAME")]
    pub green_cluster: String,
}

impl GreenArgs {
    /// The green cluster, its kubeconfig defaulting to blue's.
    pub fn cluster(&self, blue_kubeconfig: Option<&PathBuf>) -> GreenCluster {
        GreenCluster {
            kubeconfig: self
                .green_kubeconfig
                .clone()
                .or_else(|| blue_kubeconfig.cloned()),
            context: self.green_context.clone(),
            expect_cluster: self.green_cluster.clone(),
        }
    }
}

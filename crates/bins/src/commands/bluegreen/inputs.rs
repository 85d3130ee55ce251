//! `upgrade-bluegreen inputs`.

use std::path::PathBuf;

use upgrade_flows::flows::bluegreen::InputsSpec;

/// `inputs`' flags.
#[derive(Debug, clap::Args)]
pub struct InputsArgs {
    /// The blue deployment's Terraform folder.
    #[arg(long, value_name = "DIR")]
    pub blue_terraform_dir: PathBuf,
    /// The green deployment's Terraform folder.
    #[arg(long, value_name = "DIR")]
    pub green_terraform_dir: PathBuf,
    /// The variables file to write (default: GREEN_DIR/bluegreen.auto.tfvars.json).
    #[arg(long, value_name = "FILE")]
    pub green_vars_file: Option<PathBuf>,
    /// The green cluster's name.
    #[arg(long, value_name = "NAME")]
    pub green_cluster: String,
    /// The green cluster's Kubernetes minor.
    #[arg(long, value_name = "MINOR")]
    pub eks_version: String,
    /// The green stage (the CNAME's stage part).
    #[arg(long, value_name = "STAGE")]
    pub stage: Option<String>,
    /// The redirect alias the switch points traffic through.
    #[arg(long, value_name = "NAME")]
    pub redirect_alias: Option<String>,
    /// The Velero (transfer) bucket.
    #[arg(long, value_name = "BUCKET")]
    pub velero_bucket: Option<String>,
    /// Blue uses Cognito: its user pool and certificate outputs are required.
    #[arg(long)]
    pub cognito: bool,
    /// The blue output that holds a green variable, when not the default, e.g.
    /// src_vpc_id=main_vpc_id. Repeatable.
    #[arg(long = "output-for", value_name = "VARIABLE=OUTPUT", value_parser = variable_output)]
    pub outputs: Vec<(String, String)>,
}

impl InputsArgs {
    pub(crate) fn spec(&self) -> InputsSpec {
        InputsSpec {
            blue_terraform_dir: self.blue_terraform_dir.clone(),
            green_terraform_dir: self.green_terraform_dir.clone(),
            green_vars_file: self.green_vars_file.clone(),
            green_cluster_name: self.green_cluster.clone(),
            eks_version: self.eks_version.clone(),
            stage: self.stage.clone(),
            redirect_alias: self.redirect_alias.clone(),
            velero_bucket: self.velero_bucket.clone(),
            cognito: self.cognito,
            outputs: self.outputs.iter().cloned().collect(),
        }
    }
}

fn variable_output(pair: &str) -> Result<(String, String), String> {
    pair.split_once('=')
        .map(|(var, output)| (var.to_string(), output.to_string()))
        .ok_or_else(|| format!("write VARIABLE=OUTPUT, e.g. src_vpc_id=main_vpc_id, not `{pair}`"))
}

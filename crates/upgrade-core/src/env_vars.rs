//! Every environment variable the toolkit reads, in one place.

/// Path (or name on `PATH`) of the `terraform` to run.
pub const TERRAFORM_BIN: &str = "TERRAFORM_BIN";
/// Path (or name on `PATH`) of the `helm` to run.
pub const HELM_BIN: &str = "HELM_BIN";
/// Path (or name on `PATH`) of the `kubectl` to run.
pub const KUBECTL_BIN: &str = "KUBECTL_BIN";
/// Path (or name on `PATH`) of the AWS CLI (`aws`) to run.
pub const AWS_BIN: &str = "AWS_BIN";
/// Where `./dev tools` installs the real tools for tests and the demo (default: `.tools/`).
pub const UPGRADE_TOOLS_DIR: &str = "UPGRADE_TOOLS_DIR";
/// Tests and the demo: the kube-sim URL (`http://127.0.0.1:<port>`) whose API server version
/// the simulated AWS provider moves when it creates or upgrades `aws_eks_cluster`, as EKS's
/// control plane does.
pub const UPGRADE_SIM_KUBE_URL: &str = "UPGRADE_SIM_KUBE_URL";

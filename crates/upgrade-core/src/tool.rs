//! Finding the external programs: `terraform`, `helm`, `kubectl`.
//!
//! A program is resolved once, when a handle is built, to an absolute path: from an explicit
//! path, else from its override variable (`TERRAFORM_BIN`, `HELM_BIN`, `KUBECTL_BIN`), else
//! from `PATH` with `which`. A relative name is never handed to the OS later, so a changed
//! working directory or `PATH` cannot swap the binary under us.

use std::path::{Path, PathBuf};

use crate::env_vars;
use crate::process::{ProcessBuilder, ProcessError};

/// An external program the toolkit runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    /// The program's name on `PATH`.
    pub program: &'static str,
    /// The environment variable that overrides the lookup with a path.
    pub override_var: &'static str,
    /// How to get it, shown when it is missing.
    pub install_hint: &'static str,
}

/// Terraform (1.5 or newer).
pub const TERRAFORM: Tool = Tool {
    program: "terraform",
    override_var: env_vars::TERRAFORM_BIN,
    install_hint: "install Terraform >= 1.5 (https://developer.hashicorp.com/terraform/install) \
                   or set TERRAFORM_BIN=/path/to/terraform; in this repository `./dev tools` \
                   installs one into .tools/bin",
};

/// Helm 3 or Helm 4.
pub const HELM: Tool = Tool {
    program: "helm",
    override_var: env_vars::HELM_BIN,
    install_hint: "install Helm 3.12+ or 4.x (https://helm.sh/docs/intro/install/) or set \
                   HELM_BIN=/path/to/helm; in this repository `./dev tools` installs helm3 and \
                   helm4 into .tools/bin",
};

/// kubectl.
pub const KUBECTL: Tool = Tool {
    program: "kubectl",
    override_var: env_vars::KUBECTL_BIN,
    install_hint: "install kubectl within one minor of the cluster \
                   (https://kubernetes.io/docs/tasks/tools/) or set KUBECTL_BIN=/path/to/kubectl; \
                   in this repository `./dev tools` installs one into .tools/bin",
};

/// The AWS CLI (v1 or v2).
pub const AWS: Tool = Tool {
    program: "aws",
    override_var: env_vars::AWS_BIN,
    install_hint: "install the AWS CLI (https://aws.amazon.com/cli/) or set AWS_BIN=/path/to/aws; \
                   in this repository `./dev tools` installs one into .tools/bin",
};

impl Tool {
    /// Resolves the program from its override variable or `PATH`.
    pub fn resolve(&self) -> Result<PathBuf, ProcessError> {
        self.resolve_with(None)
    }

    /// Resolves the program: `explicit` if given, else the override variable, else `PATH`.
    pub fn resolve_with(&self, explicit: Option<&Path>) -> Result<PathBuf, ProcessError> {
        if let Some(path) = explicit {
            return self.check_path(path, "the path given");
        }
        match std::env::var_os(self.override_var) {
            Some(value) if !value.is_empty() => {
                let path = PathBuf::from(value);
                let from = self.override_var.to_string();
                if path.components().count() == 1 {
                    // A bare name in the override: look it up on PATH.
                    return which::which(&path).map_err(|_| {
                        self.not_found(format!("{from}={} is not on PATH", path.display()))
                    });
                }
                self.check_path(&path, &from)
            }
            _ => which::which(self.program).map_err(|_| {
                self.not_found(format!(
                    "{} is unset and it is not on PATH",
                    self.override_var
                ))
            }),
        }
    }

    /// A [`ProcessBuilder`] for the resolved program.
    pub fn command(&self) -> Result<ProcessBuilder, ProcessError> {
        Ok(ProcessBuilder::new(self.resolve()?))
    }

    fn check_path(&self, path: &Path, from: &str) -> Result<PathBuf, ProcessError> {
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        if is_executable(&absolute) {
            Ok(absolute)
        } else {
            Err(self.not_found(format!(
                "{from} points to {}, which is not an executable file",
                absolute.display()
            )))
        }
    }

    fn not_found(&self, searched: String) -> ProcessError {
        ProcessError::NotFound {
            program: self.program.to_string(),
            searched,
            hint: self.install_hint.to_string(),
        }
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

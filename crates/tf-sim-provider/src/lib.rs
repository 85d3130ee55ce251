//! Installing the simulated AWS provider (the `terraform-provider-aws-sim` binary of this
//! package) where the real `terraform` finds it: a filesystem mirror that serves it as
//! `registry.terraform.io/hashicorp/aws`, and the CLI configuration that selects the mirror.
//!
//! ```no_run
//! use std::path::Path;
//!
//! let binary = Path::new("target/debug/terraform-provider-aws-sim");
//! let mirror = Path::new("/tmp/aws-sim-mirror");
//! upgrade_tf_sim_provider::install_mirror(binary, mirror, &["5.99.0", "6.0.0"], &[upgrade_tf_sim_provider::host_platform()])?;
//! std::fs::write("/tmp/terraformrc", upgrade_tf_sim_provider::cli_config(mirror))?;
//! // Then run terraform with TF_CLI_CONFIG_FILE=/tmp/terraformrc, and UPGRADE_SIM_KUBE_URL
//! // naming a kube-sim whose API server version should follow aws_eks_cluster.version.
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io;
use std::path::Path;

/// The provider binary's file name in the target folder.
pub const BINARY_NAME: &str = "terraform-provider-aws-sim";

/// The source address the mirror serves the simulation as.
pub const PROVIDER_SOURCE: &str = "registry.terraform.io/hashicorp/aws";

/// The environment variable naming the kube-sim whose version follows the cluster resource
/// (`upgrade_core::env_vars::UPGRADE_SIM_KUBE_URL`).
pub const SIM_KUBE_URL_VAR: &str = "UPGRADE_SIM_KUBE_URL";

/// Terraform's name for this machine's platform, e.g. `linux_amd64`.
pub fn host_platform() -> &'static str {
    match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => "linux_amd64",
        ("linux", "aarch64") => "linux_arm64",
        ("macos", "x86_64") => "darwin_amd64",
        ("macos", "aarch64") => "darwin_arm64",
        _ => "linux_amd64",
    }
}

/// Puts `binary` into a filesystem mirror at `mirror`, once per version and platform, as
/// `<mirror>/registry.terraform.io/hashicorp/aws/<version>/<platform>/terraform-provider-aws_v<version>`.
///
/// The mirror is built beside `mirror` and renamed into place, so a concurrent process never
/// sees half of it; when `mirror` already exists it is left as it is (whoever renames first
/// wins). Each platform's package gets a `PLATFORM` file, so each has its own hash.
pub fn install_mirror(
    binary: &Path,
    mirror: &Path,
    versions: &[&str],
    platforms: &[&str],
) -> io::Result<()> {
    if mirror.is_dir() {
        return Ok(());
    }
    if !binary.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{} does not exist; build it with `cargo build -p upgrade-tf-sim-provider`",
                binary.display()
            ),
        ));
    }
    let parent = mirror.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let staging = tempfile::Builder::new()
        .prefix(".tf-sim-mirror-")
        .tempdir_in(parent)?;
    for version in versions {
        for platform in platforms {
            let dir = staging
                .path()
                .join(PROVIDER_SOURCE)
                .join(version)
                .join(platform);
            std::fs::create_dir_all(&dir)?;
            std::fs::copy(
                binary,
                dir.join(format!("terraform-provider-aws_v{version}")),
            )?;
            std::fs::write(dir.join("PLATFORM"), platform)?;
        }
    }
    let staged = staging.keep();
    if std::fs::rename(&staged, mirror).is_err() {
        let _ = std::fs::remove_dir_all(&staged);
    }
    if mirror.is_dir() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "the mirror {} was not created",
            mirror.display()
        )))
    }
}

/// A Terraform CLI configuration (for `TF_CLI_CONFIG_FILE`) that installs `hashicorp/aws`
/// from `mirror` and every other provider directly.
pub fn cli_config(mirror: &Path) -> String {
    format!(
        "provider_installation {{\n  filesystem_mirror {{\n    path    = \"{}\"\n    \
         include = [\"{PROVIDER_SOURCE}\"]\n  }}\n  direct {{\n    \
         exclude = [\"{PROVIDER_SOURCE}\"]\n  }}\n}}\n",
        mirror.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mirror_holds_every_version_and_platform() {
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("provider");
        std::fs::write(&binary, b"#!/bin/true\n").unwrap();
        let mirror = dir.path().join("mirror");
        install_mirror(&binary, &mirror, &["5.99.0", "6.0.0"], &["linux_amd64"]).unwrap();
        for version in ["5.99.0", "6.0.0"] {
            let file = mirror
                .join(PROVIDER_SOURCE)
                .join(version)
                .join("linux_amd64")
                .join(format!("terraform-provider-aws_v{version}"));
            assert!(file.is_file(), "{} is missing", file.display());
        }
        // A second install keeps what is there.
        install_mirror(&binary, &mirror, &["7.0.0"], &["linux_amd64"]).unwrap();
        assert!(!mirror.join(PROVIDER_SOURCE).join("7.0.0").exists());
        let config = cli_config(&mirror);
        assert!(config.contains(&format!("path    = \"{}\"", mirror.display())));

        let missing = install_mirror(
            &dir.path().join("nope"),
            &dir.path().join("m2"),
            &["1.0.0"],
            &["linux_amd64"],
        )
        .unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("cargo build -p upgrade-tf-sim-provider")
        );
    }
}

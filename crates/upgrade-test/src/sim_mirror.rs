//! The simulated AWS provider (`crates/tf-sim-provider`) in a filesystem mirror, for tests that
//! run the real terraform from any crate: built once per test process (`cargo build -p
//! upgrade-tf-sim-provider`, a no-op when the workspace build already made it) and installed
//! at two versions, 5.99.0 and 6.0.0, so `init -upgrade` across `~> 5.0` → `~> 6.0` really
//! changes `.terraform.lock.hcl`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use upgrade_core::ProcessBuilder;

use crate::TestContext;

/// The provider versions the mirror offers.
pub const SIM_PROVIDER_VERSIONS: &[&str] = &["5.99.0", "6.0.0"];

/// The mirror's root (`registry.terraform.io/hashicorp/aws/<version>/<platform>/...` inside):
/// kept in the target folder beside the provider binary, keyed by its build time, built once
/// and reused by every test process.
pub fn sim_mirror() -> &'static Path {
    static MIRROR: OnceLock<PathBuf> = OnceLock::new();
    MIRROR.get_or_init(|| {
        let bin = sim_provider();
        let built = std::fs::metadata(&bin)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let parent = bin.parent().expect("the binary sits in the target folder");
        let root = parent.join(format!("tf-sim-mirror-{built}"));
        if root.is_dir() {
            return root;
        }
        upgrade_tf_sim_provider::install_mirror(
            &bin,
            &root,
            SIM_PROVIDER_VERSIONS,
            &["linux_amd64", "darwin_arm64"],
        )
        .unwrap_or_else(|e| panic!("the mirror {}: {e}", root.display()));
        root
    })
}

/// Points `ctx`'s Terraform CLI config (`TF_CLI_CONFIG_FILE`) at [`sim_mirror`] for
/// `hashicorp/aws`.
pub fn use_sim_mirror(ctx: &TestContext) {
    std::fs::write(
        ctx.root().join("terraformrc"),
        upgrade_tf_sim_provider::cli_config(sim_mirror()),
    )
    .expect("write terraformrc");
}

fn sim_provider() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // <target>/<profile>/deps/<test binary>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binaries live in <target>/<profile>/deps");
    let bin = profile_dir.join("terraform-provider-aws-sim");
    if is_fresh(&bin) {
        return bin;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = ProcessBuilder::new(PathBuf::from(cargo));
    build
        .args([
            "build",
            "--quiet",
            "-p",
            "upgrade-tf-sim-provider",
            "--bin",
            "terraform-provider-aws-sim",
        ])
        .cwd(TestContext::workspace_root());
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    build
        .exec()
        .unwrap_or_else(|e| panic!("building the simulated AWS provider failed: {e}"));
    assert!(bin.is_file(), "{} was not built", bin.display());
    bin
}

/// Whether `bin` exists and is newer than the provider crate's own files.
fn is_fresh(bin: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let Some(built) = modified(bin) else {
        return false;
    };
    let crate_dir = TestContext::workspace_root().join("crates/tf-sim-provider");
    let mut inputs = vec![crate_dir.join("Cargo.toml")];
    if let Ok(entries) = std::fs::read_dir(crate_dir.join("src")) {
        inputs.extend(entries.flatten().map(|e| e.path()));
    }
    inputs
        .iter()
        .all(|input| modified(input).is_some_and(|m| m <= built))
}

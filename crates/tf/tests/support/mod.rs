//! Shared set-up for the tests that run the real terraform.
//!
//! The simulated AWS provider (`crates/tf-sim-provider`) is built once per test process with
//! `cargo build -p upgrade-tf-sim-provider` (a no-op when `cargo test --workspace` already
//! built it) and installed into one filesystem mirror at two versions, 5.99.0 and 6.0.0, so
//! `init -upgrade` across a constraint bump really changes `.terraform.lock.hcl`.

#![allow(dead_code)] // each test file uses a different part

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use upgrade_core::ProcessBuilder;
use upgrade_test::TestContext;
use upgrade_tf::Terraform;

/// The provider versions the mirror offers.
pub const PROVIDER_VERSIONS: &[&str] = &["5.99.0", "6.0.0"];

/// The platforms the mirror offers (the second one for `providers lock -platform`).
pub const MIRROR_PLATFORMS: &[&str] = &["linux_amd64", "darwin_arm64"];

/// The built provider binary.
pub fn sim_provider() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test binary's path");
        // <target>/<profile>/deps/<test binary>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binaries live in <target>/<profile>/deps");
        let bin = profile_dir.join("terraform-provider-aws-sim");
        // `cargo test --workspace --all-targets` has just built it: a nested `cargo build -p`
        // would resolve features differently and rebuild its dependencies once more.
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
    })
}

/// Whether `bin` exists and is newer than the provider's sources.
fn is_fresh(bin: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let Some(built) = modified(bin) else {
        return false;
    };
    let root = TestContext::workspace_root();
    let crate_dir = root.join("crates/tf-sim-provider");
    // Only the provider's own files: a workspace build relinks the binary when a dependency
    // changes anyway, and counting Cargo.lock would send every test run after any dependency
    // edit through a nested `cargo build -p`, whose different feature set rebuilds the
    // plugin's whole gRPC stack.
    let mut inputs = vec![crate_dir.join("Cargo.toml")];
    if let Ok(entries) = std::fs::read_dir(crate_dir.join("src")) {
        inputs.extend(entries.flatten().map(|e| e.path()));
    }
    inputs
        .iter()
        .all(|input| modified(input).is_some_and(|m| m <= built))
}

/// A filesystem mirror holding the simulated provider at every version in
/// [`PROVIDER_VERSIONS`]: kept next to the binary in the target folder (no temp litter),
/// keyed by the binary's build time, built once and reused by every test process.
pub fn mirror() -> &'static Path {
    static MIRROR: OnceLock<PathBuf> = OnceLock::new();
    MIRROR.get_or_init(|| {
        let bin = sim_provider();
        let built = std::fs::metadata(bin)
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
        // Built aside and renamed into place, so a concurrent test process never sees half a
        // mirror.
        upgrade_tf_sim_provider::install_mirror(bin, &root, PROVIDER_VERSIONS, MIRROR_PLATFORMS)
            .unwrap_or_else(|e| panic!("the mirror {}: {e}", root.display()));
        root
    })
}

/// A test's world: a context, a copy of a fixture module, a CLI config that installs
/// `hashicorp/aws` from the mirror, and a [`Terraform`] handle on the copy.
pub struct World {
    /// The test context (temp root, pinned environment).
    pub ctx: TestContext,
    /// The copied module.
    pub dir: PathBuf,
    /// The handle.
    pub tf: Terraform,
}

impl World {
    /// A world on `fixtures/terraform/<fixture>`.
    pub fn new(fixture: &str) -> World {
        let ctx = TestContext::new();
        let dir = ctx.copy_fixture(&format!("terraform/{fixture}"));
        std::fs::write(
            ctx.root().join("terraformrc"),
            upgrade_tf_sim_provider::cli_config(mirror()),
        )
        .unwrap();
        let tf = Terraform::builder(&dir)
            .base_command(ctx.command("terraform"))
            .build()
            .expect("a terraform handle");
        World { ctx, dir, tf }
    }

    /// A file in the module.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

//! Shared set-up for the tests that run the real terraform.
//!
//! The simulated AWS provider (`crates/tf-sim-provider`) comes from `upgrade_test::sim_mirror`:
//! built once per test process and installed into one filesystem mirror at two versions,
//! 5.99.0 and 6.0.0, so `init -upgrade` across a constraint bump really changes
//! `.terraform.lock.hcl`.

#![allow(dead_code)] // each test file uses a different part

use std::path::{Path, PathBuf};

use upgrade_test::TestContext;
use upgrade_tf::Terraform;

/// The filesystem mirror with the simulated provider at 5.99.0 and 6.0.0
/// ([`upgrade_test::sim_mirror`], shared with the other crates' tests).
pub fn mirror() -> &'static Path {
    upgrade_test::sim_mirror()
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
        upgrade_test::use_sim_mirror(&ctx);
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

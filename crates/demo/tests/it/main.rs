//! `upgrade-demo` as a user first meets it. The demo itself runs in `./dev demo` and in the
//! root crate's tests; this binary covers what must work before any tool is installed.

use upgrade_core::ProcessBuilder;
use upgrade_test::{CommandOutput, TestContext};

fn without_tools(args: &[&str]) -> (i32, String, String) {
    let ctx = TestContext::new();
    let mut cmd = ProcessBuilder::new(env!("CARGO_BIN_EXE_upgrade-demo"));
    ctx.apply_env_without_tools(&mut cmd);
    cmd.args(args);
    CommandOutput::run(&cmd).parts()
}

#[test]
fn help_and_version_work_without_the_tools() {
    let (code, stdout, stderr) = without_tools(&["--help"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("Usage: upgrade-demo"), "{stdout}");
    let (code, stdout, stderr) = without_tools(&["--version"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        stdout,
        format!("upgrade-demo {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn without_the_tools_the_demo_names_what_is_missing() {
    let (code, stdout, stderr) = without_tools(&["--work-dir", "demo-work"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("`terraform` was not found"), "{stderr}");
}

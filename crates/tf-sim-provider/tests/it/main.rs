//! The provider binary as a person meets it: Terraform starts it with no arguments, so any
//! argument is someone asking what it is.

use upgrade_core::ProcessBuilder;

/// Runs the provider with no tool on `PATH`; (code, stdout, stderr).
fn run(args: &[&str]) -> (i32, String, String) {
    let mut cmd = ProcessBuilder::new(env!("CARGO_BIN_EXE_terraform-provider-aws-sim"));
    cmd.args(args).env("PATH", "/nonexistent");
    let out = cmd.output().expect("the provider binary runs");
    (
        out.status.code().unwrap_or(-1),
        out.stdout_lossy(),
        out.stderr_lossy(),
    )
}

#[test]
fn help_and_version_answer_instead_of_starting_the_plugin_server() {
    let (code, stdout, stderr) = run(&["--help"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("takes no arguments"), "{stdout}");
    assert!(!stdout.contains("|grpc"), "no plugin handshake: {stdout}");
    let (code, stdout, _) = run(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(
        stdout,
        format!("terraform-provider-aws-sim {}\n", env!("CARGO_PKG_VERSION"))
    );
    let (code, stdout, stderr) = run(&["serve"]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("unexpected argument `serve`"), "{stderr}");
}

//! `upgrade-preflight` end to end: the real binary, its exit codes, help and reports.

use upgrade_core::ProcessBuilder;
use upgrade_test::TestContext;

fn preflight(ctx: &TestContext, args: &[&str]) -> (i32, String, String) {
    let mut cmd = ProcessBuilder::new(env!("CARGO_BIN_EXE_upgrade-preflight"));
    ctx.apply_env(&mut cmd);
    cmd.cwd(TestContext::workspace_root()).args(args);
    let out = cmd.output().expect("upgrade-preflight runs");
    (
        out.status.code().unwrap_or(-1),
        out.stdout_lossy(),
        out.stderr_lossy(),
    )
}

#[test]
fn help_is_stable() {
    let ctx = TestContext::new();
    let (code, stdout, _) = preflight(&ctx, &["--help"]);
    assert_eq!(code, 0);
    insta::assert_snapshot!(stdout);
}

#[test]
fn exit_code_follows_the_worst_finding() {
    let ctx = TestContext::new();
    let (code, stdout, _) = preflight(
        &ctx,
        &[
            "--target",
            "1.31",
            "--facts",
            "fixtures/facts/unhealthy.yaml",
        ],
    );
    assert_eq!(code, 4, "blockers: {stdout}");
    assert!(stdout.contains("BLOCKER  PDB001"), "{stdout}");
    let (code, stdout, _) = preflight(
        &ctx,
        &[
            "--target",
            "1.33",
            "--facts",
            "fixtures/facts/healthy.yaml",
            "--output",
            "json",
        ],
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_eq!(report["schema"], "upgrade-report/v1");
    assert!(code == 0 || code == 3, "healthy: {code}");
}

#[test]
fn bad_input_is_one_line_naming_the_fix_and_exits_2() {
    let ctx = TestContext::new();
    for (args, expected) in [
        (
            vec!["--target", "1.3x", "--facts", "fixtures/facts/healthy.yaml"],
            "is not a Kubernetes version",
        ),
        (
            vec!["--target", "1.34", "--facts", "no/such/facts.yaml"],
            "cannot read the facts file no/such/facts.yaml",
        ),
        (vec!["--target", "1.34"], "pass --facts FILE"),
        (
            vec![
                "--target",
                "1.34",
                "--facts",
                "fixtures/facts/healthy.yaml",
                "--config",
                "Cargo.toml",
            ],
            "check configuration Cargo.toml",
        ),
    ] {
        let (code, stdout, stderr) = preflight(&ctx, &args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(
            stdout.is_empty(),
            "{args:?}: no report on bad input: {stdout}"
        );
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

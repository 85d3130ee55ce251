//! Every command's `--help` (and each subcommand's) is a reviewed snapshot: a flag renamed or
//! dropped shows up in review, since pipelines depend on them.

use upgrade_core::ProcessBuilder;
use upgrade_test::TestContext;

fn help(exe: &str, args: &[&str]) -> String {
    let ctx = TestContext::new();
    let mut cmd = ProcessBuilder::new(exe);
    ctx.apply_env(&mut cmd);
    cmd.args(args).arg("--help");
    let out = cmd.output().expect("the command runs");
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr_lossy());
    out.stdout_lossy()
}

#[test]
fn upgrade_lock() {
    let exe = env!("CARGO_BIN_EXE_upgrade-lock");
    insta::assert_snapshot!("upgrade_lock", help(exe, &[]));
    insta::assert_snapshot!("upgrade_lock_write", help(exe, &["write"]));
    insta::assert_snapshot!("upgrade_lock_diff", help(exe, &["diff"]));
}

#[test]
fn upgrade_verify() {
    let exe = env!("CARGO_BIN_EXE_upgrade-verify");
    insta::assert_snapshot!("upgrade_verify", help(exe, &[]));
    insta::assert_snapshot!("upgrade_verify_baseline", help(exe, &["baseline"]));
    insta::assert_snapshot!("upgrade_verify_check", help(exe, &["check"]));
}

#[test]
fn read_only_commands_offer_no_run_flags() {
    let run_flags = ["--apply", "--yes", "--resume", "--snapshot-dir"];
    for (exe, args) in [
        (env!("CARGO_BIN_EXE_upgrade-preflight"), &[][..]),
        (env!("CARGO_BIN_EXE_upgrade-lock"), &["write"][..]),
        (env!("CARGO_BIN_EXE_upgrade-lock"), &["diff"][..]),
        (env!("CARGO_BIN_EXE_upgrade-verify"), &["check"][..]),
        (env!("CARGO_BIN_EXE_upgrade-verify"), &["baseline"][..]),
    ] {
        let text = help(exe, args);
        for flag in run_flags {
            assert!(
                !text.contains(flag),
                "{exe} {args:?} offers {flag}:\n{text}"
            );
        }
    }
    // The changing commands do, and only upgrade-lock has --lockfile.
    for exe in [
        env!("CARGO_BIN_EXE_upgrade-eks"),
        env!("CARGO_BIN_EXE_upgrade-nodes"),
        env!("CARGO_BIN_EXE_upgrade-karpenter"),
        env!("CARGO_BIN_EXE_upgrade-mlflow"),
        env!("CARGO_BIN_EXE_upgrade-tf-providers"),
        env!("CARGO_BIN_EXE_upgrade-argo-workflows"),
    ] {
        let text = help(exe, &[]);
        for flag in run_flags {
            assert!(text.contains(flag), "{exe} lacks {flag}");
        }
        assert!(!text.contains("--lockfile"), "{exe} offers --lockfile");
    }
}

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
fn upgrade_release() {
    let exe = env!("CARGO_BIN_EXE_upgrade-release");
    insta::assert_snapshot!("upgrade_release", help(exe, &[]));
    let exe = env!("CARGO_BIN_EXE_upgrade-releases");
    insta::assert_snapshot!("upgrade_releases", help(exe, &[]));
    let exe = env!("CARGO_BIN_EXE_upgrade-map-apis");
    insta::assert_snapshot!("upgrade_map_apis", help(exe, &[]));
    let exe = env!("CARGO_BIN_EXE_upgrade-bluegreen");
    insta::assert_snapshot!("upgrade_bluegreen", help(exe, &[]));
    insta::assert_snapshot!("upgrade_bluegreen_inputs", help(exe, &["inputs"]));
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
        (env!("CARGO_BIN_EXE_upgrade-releases"), &[][..]),
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
        env!("CARGO_BIN_EXE_upgrade-release"),
        env!("CARGO_BIN_EXE_upgrade-map-apis"),
    ] {
        let text = help(exe, &[]);
        for flag in run_flags {
            assert!(text.contains(flag), "{exe} lacks {flag}");
        }
        assert!(!text.contains("--lockfile"), "{exe} offers --lockfile");
    }
}

/// Runs `exe args` on a machine with none of the tools; (code, stdout, stderr).
fn without_tools(exe: &str, args: &[&str]) -> (i32, String, String) {
    let ctx = TestContext::new();
    let mut cmd = ProcessBuilder::new(exe);
    ctx.apply_env_without_tools(&mut cmd);
    cmd.args(args);
    upgrade_test::CommandOutput::run(&cmd).parts()
}

#[test]
fn help_and_version_work_on_a_machine_without_the_tools() {
    let commands = [
        (
            "upgrade-argo-workflows",
            env!("CARGO_BIN_EXE_upgrade-argo-workflows"),
        ),
        ("upgrade-eks", env!("CARGO_BIN_EXE_upgrade-eks")),
        ("upgrade-karpenter", env!("CARGO_BIN_EXE_upgrade-karpenter")),
        ("upgrade-kserve", env!("CARGO_BIN_EXE_upgrade-kserve")),
        ("upgrade-bluegreen", env!("CARGO_BIN_EXE_upgrade-bluegreen")),
        ("upgrade-lock", env!("CARGO_BIN_EXE_upgrade-lock")),
        ("upgrade-map-apis", env!("CARGO_BIN_EXE_upgrade-map-apis")),
        ("upgrade-mlflow", env!("CARGO_BIN_EXE_upgrade-mlflow")),
        ("upgrade-nodes", env!("CARGO_BIN_EXE_upgrade-nodes")),
        ("upgrade-preflight", env!("CARGO_BIN_EXE_upgrade-preflight")),
        ("upgrade-rollback", env!("CARGO_BIN_EXE_upgrade-rollback")),
        (
            "upgrade-tf-providers",
            env!("CARGO_BIN_EXE_upgrade-tf-providers"),
        ),
        ("upgrade-verify", env!("CARGO_BIN_EXE_upgrade-verify")),
    ];
    for (name, exe) in commands {
        let (code, stdout, stderr) = without_tools(exe, &["--help"]);
        assert_eq!(code, 0, "{name} --help: {stdout}{stderr}");
        assert!(
            stdout.contains(&format!("Usage: {name}")),
            "{name}: {stdout}"
        );
        let (code, stdout, stderr) = without_tools(exe, &["--version"]);
        assert_eq!(code, 0, "{name} --version: {stdout}{stderr}");
        assert_eq!(
            stdout,
            format!("{name} {}\n", env!("CARGO_PKG_VERSION")),
            "{name} --version"
        );
    }
    // Subcommands' help too.
    for (exe, sub) in [
        (env!("CARGO_BIN_EXE_upgrade-kserve"), "upgrade"),
        (env!("CARGO_BIN_EXE_upgrade-kserve"), "canary"),
        (env!("CARGO_BIN_EXE_upgrade-lock"), "write"),
        (env!("CARGO_BIN_EXE_upgrade-verify"), "check"),
    ] {
        let (code, stdout, stderr) = without_tools(exe, &[sub, "--help"]);
        assert_eq!(code, 0, "{exe} {sub} --help: {stdout}{stderr}");
    }
}

#[test]
fn the_old_chart_version_spelling_is_refused_and_names_the_new_one() {
    // `--version` once took the chart version: a pipeline still passing one must not get
    // a version banner and exit 0 as if it had upgraded.
    for (exe, args) in [
        (
            env!("CARGO_BIN_EXE_upgrade-karpenter"),
            &["--version", "1.6.0", "--apply", "--yes"][..],
        ),
        (
            env!("CARGO_BIN_EXE_upgrade-argo-workflows"),
            &["--version", "0.46.0"][..],
        ),
        (
            env!("CARGO_BIN_EXE_upgrade-kserve"),
            &["upgrade", "--version", "0.15.0"][..],
        ),
    ] {
        let (code, stdout, stderr) = without_tools(exe, args);
        assert_eq!(code, 2, "{exe}: {stdout}{stderr}");
        let version = args[args.iter().position(|a| *a == "--version").unwrap() + 1];
        assert!(
            stderr.contains(&format!("`--chart-version {version}`")),
            "{exe}: {stderr}"
        );
        assert!(stdout.is_empty(), "{exe}: {stdout}");
    }
}

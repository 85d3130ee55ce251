//! `upgrade-karpenter` end to end: the real binary and the real helm against kube-sim, with
//! the fixture charts (karpenter 1.5.0 → 1.6.0).

use std::path::{Path, PathBuf};

use kube_sim::SimCluster;
use upgrade_core::ProcessBuilder;
use upgrade_helm::{ChartRef, Helm, ReleaseRef, UpgradeOptions, WaitMode};
use upgrade_test::TestContext;

use crate::support;

struct Platform {
    ctx: TestContext,
    sim: SimCluster,
}

fn chart(version: &str) -> PathBuf {
    TestContext::fixtures_dir()
        .join("charts/karpenter")
        .join(version)
}

fn values() -> PathBuf {
    TestContext::fixtures_dir().join("helm-values/karpenter-values.yaml")
}

impl Platform {
    /// kube-sim at `server_version` with karpenter 1.5.0 installed by the real helm.
    async fn start(server_version: &str) -> Platform {
        let ctx = TestContext::new();
        let sim = support::sim(&ctx, server_version).await;
        let platform = Platform { ctx, sim };
        let values = values();
        support::install(
            &platform.helm(),
            &release(),
            "karpenter",
            "1.5.0",
            &values.to_string_lossy(),
        )
        .await;
        platform
    }

    fn helm(&self) -> Helm {
        support::helm(&self.ctx, &self.sim)
    }

    /// (chart version, revision) of the live release.
    async fn live(&self) -> (String, u32) {
        let meta = self.helm().metadata(&release(), None).await.unwrap();
        (meta.version, meta.revision)
    }

    /// Runs upgrade-karpenter with the cluster flags and `args`; (code, stdout, stderr).
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        let mut cmd = ProcessBuilder::new(env!("CARGO_BIN_EXE_upgrade-karpenter"));
        self.ctx.apply_env(&mut cmd);
        cmd.cwd(self.ctx.work())
            .arg("--kubeconfig")
            .arg(self.sim.kubeconfig_path())
            .args(["--kube-context", kube_sim::CONTEXT_NAME])
            .args(args);
        for (key, value) in env {
            cmd.env(key, value);
        }
        upgrade_test::CommandOutput::run(&cmd).parts()
    }

    fn report_settings(&self) -> insta::Settings {
        let mut settings = self.ctx.insta_settings();
        settings.add_filter(r"karpenter-\d{8}T\d{6}Z", "[RUN_ID]");
        settings.add_filter(&upgrade_test::regex_escape(self.sim.url()), "[CLUSTER]");
        settings
    }
}

fn controller_image(p: &Platform) -> String {
    let deployment = p
        .sim
        .get("apps/v1", "Deployment", Some("karpenter"), "karpenter")
        .unwrap();
    deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_string()
}

fn release() -> ReleaseRef {
    ReleaseRef::new("karpenter", "karpenter")
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn help_is_stable() {
    insta::assert_snapshot!(support::help(env!("CARGO_BIN_EXE_upgrade-karpenter"), &[]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_then_fails_and_rolls_back_then_upgrades() {
    let p = Platform::start("v1.30.4-eks-a737599").await;
    let chart_160 = chart("1.6.0");
    // The platform's values file, which the run edits (the image tag pin).
    let values = p.ctx.work().join("karpenter-values.yaml");
    std::fs::copy(self::values(), &values).unwrap();
    let target = [
        "--chart",
        path(&chart_160),
        "--chart-version",
        "1.6.0",
        "--values",
        path(&values),
        "--image-tag",
        "1.6.0",
    ];

    // Plan only: current -> target, nothing changed.
    let (code, stdout, stderr) = p.run(&target, &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    p.report_settings()
        .bind(|| insta::assert_snapshot!("plan", stdout));
    assert_eq!(p.live().await, ("1.5.0".to_string(), 1));
    assert!(!p.ctx.work().join(".upgrade/journal.jsonl").exists());

    // Pods that never become Ready: the upgrade fails and the run rolls back by itself.
    let broken = p.ctx.work().join("never-ready.yaml");
    let broken_text = std::fs::read_to_string(&values).unwrap()
        + "podAnnotations:\n  kube-sim.dev/never-ready: \"true\"\n";
    std::fs::write(&broken, &broken_text).unwrap();
    let url = p.sim.url().to_string();
    let (code, stdout, stderr) = p.run(
        &[
            "--chart",
            path(&chart_160),
            "--chart-version",
            "1.6.0",
            "--image-tag",
            "1.6.0",
            "--values",
            path(&broken),
            "--apply",
            "--yes",
            "--expect-cluster",
            &url,
            "--timeout",
            "4s",
        ],
        &[],
    );
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains("outcome: failed at karpenter/helm-upgrade"),
        "{stdout}"
    );
    assert!(stdout.contains("rolled back"), "{stdout}");
    let (version, _) = p.live().await;
    assert_eq!(version, "1.5.0", "the live release is back at 1.5.0");
    let status = p.helm().status(&release(), None).await.unwrap();
    assert!(
        status.info.status.was_deployed(),
        "{:?}",
        status.info.status
    );
    assert_eq!(
        std::fs::read_to_string(&broken).unwrap(),
        broken_text,
        "the values file is back byte for byte"
    );
    assert!(
        stdout.contains("[rolled-back] karpenter/pin-image-tag"),
        "{stdout}"
    );

    // The real upgrade.
    let mut apply = target.to_vec();
    apply.extend(["--apply", "--yes", "--expect-cluster", &url]);
    let (code, stdout, stderr) = p.run(&apply, &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    p.report_settings()
        .bind(|| insta::assert_snapshot!("applied", stdout));
    assert_eq!(p.live().await.0, "1.6.0");
    assert_eq!(
        controller_image(&p),
        "public.ecr.aws/karpenter/controller:1.6.0"
    );
    let pinned = std::fs::read_to_string(&values).unwrap();
    assert_eq!(
        pinned,
        std::fs::read_to_string(self::values())
            .unwrap()
            .replace("tag: \"1.5.0\"", "tag: \"1.6.0\""),
        "only the tag changed, comments kept"
    );
    let records = std::fs::read_dir(p.ctx.work().join(".upgrade/runs"))
        .unwrap()
        .count();
    assert_eq!(records, 2, "both runs are recorded for upgrade-rollback");

    // Going back to 1.5.0 is planned as a downgrade.
    let chart_150 = chart("1.5.0");
    let (code, stdout, stderr) = p.run(
        &[
            "--chart",
            path(&chart_150),
            "--chart-version",
            "1.5.0",
            "--image-tag",
            "1.5.0",
            "--values",
            path(&values),
        ],
        &[],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("karpenter/karpenter: 1.6.0 -> 1.5.0 is a downgrade"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_exits_2_with_one_line_naming_the_fix_and_changes_nothing() {
    let p = Platform::start("v1.30.4-eks-a737599").await;
    let url = p.sim.url().to_string();
    let chart_160 = chart("1.6.0");
    let chart_150 = chart("1.5.0");
    let values = values();
    let malformed = p.ctx.work().join("malformed.yaml");
    std::fs::write(&malformed, "controller:\n  image: [unclosed\n").unwrap();
    let ok = |extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = [
            "--chart",
            path(&chart_160),
            "--chart-version",
            "1.6.0",
            "--values",
            path(&values),
            "--apply",
            "--yes",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    // (arguments, extra environment, what stderr must say)
    type Case<'a> = (Vec<String>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            ok(&["--expect-cluster", "https://prod.example:443"]),
            vec![],
            "--expect-cluster",
        ),
        (
            [
                "--chart",
                path(&chart_160),
                "--chart-version",
                "1.6.0",
                "--values",
                path(&malformed),
            ]
            .iter()
            .map(|s| s.to_string())
            .chain(["--apply", "--yes", "--expect-cluster", &url].map(String::from))
            .collect(),
            vec![],
            "is not valid YAML",
        ),
        (
            ok(&["--expect-cluster", &url]),
            vec![("HELM_BIN", "/nonexistent/helm")],
            "HELM_BIN",
        ),
        (
            ok(&["--expect-cluster", &url])
                .into_iter()
                .map(|a| {
                    if a == path(&chart_160) {
                        path(&chart_150).to_string()
                    } else {
                        a
                    }
                })
                .collect(),
            vec![],
            "is version 1.5.0, not 1.6.0",
        ),
        (
            ok(&["--expect-cluster", &url])
                .into_iter()
                .map(|a| {
                    if a == path(&values) {
                        "/no/such/values.yaml".to_string()
                    } else {
                        a
                    }
                })
                .collect(),
            vec![],
            "cannot read the values file /no/such/values.yaml",
        ),
        (
            ok(&[
                "--expect-cluster",
                &url,
                "--image-tag",
                "1.6.0",
                "--image-tag-key",
                "controller.nope",
            ]),
            vec![],
            "has no `controller.nope`",
        ),
        (
            vec!["--chart-version".into(), "1.6".into()],
            vec![],
            "write it as X.Y.Z",
        ),
    ];
    for (args, env, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, stdout, stderr) = p.run(&args, &env);
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
        assert!(stdout.is_empty(), "{args:?}: nothing planned: {stdout}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        if !expected.contains("X.Y.Z") {
            // clap's own usage errors add a hint line; ours are one line.
            assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        }
        assert_eq!(p.live().await, ("1.5.0".to_string(), 1), "{args:?}");
        assert!(!p.ctx.work().join(".upgrade").exists(), "{args:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_outside_the_supported_range_blocks_with_exit_4() {
    // Karpenter 1.6 supports Kubernetes 1.26-1.34 (the embedded compatibility data).
    let p = Platform::start("v1.35.1-eks-0a1b2c3").await;
    let url = p.sim.url().to_string();
    let chart_160 = chart("1.6.0");
    let values = values();
    let (code, stdout, stderr) = p.run(
        &[
            "--chart",
            path(&chart_160),
            "--chart-version",
            "1.6.0",
            "--values",
            path(&values),
            "--apply",
            "--yes",
            "--expect-cluster",
            &url,
        ],
        &[],
    );
    assert_eq!(code, 4, "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "BLOCKER: karpenter 1.6.0 is supported on Kubernetes 1.26–1.34, not this cluster's 1.35"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("nothing was changed"), "{stdout}");
    assert_eq!(p.live().await, ("1.5.0".to_string(), 1));
    assert!(!p.ctx.work().join(".upgrade").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_another_helm_is_upgrading_blocks_with_the_recovery_hint() {
    let p = Platform::start("v1.30.4-eks-a737599").await;
    // Another helm upgrade, waiting for pods that never become Ready: the release stays
    // `pending-upgrade` while it runs.
    let never_ready = p.ctx.work().join("never-ready.yaml");
    std::fs::write(
        &never_ready,
        "podAnnotations:\n  kube-sim.dev/never-ready: \"true\"\n",
    )
    .unwrap();
    let stop = upgrade_core::process::StopSignal::new();
    let mut other = p
        .helm()
        .upgrade_command(
            &release(),
            &ChartRef::path(chart("1.6.0")).with_version("1.6.0"),
            &UpgradeOptions {
                values_files: vec![values(), never_ready],
                wait: WaitMode::Ready,
                timeout: std::time::Duration::from_secs(60),
                on_failure: upgrade_helm::OnFailure::Fail,
                ..UpgradeOptions::default()
            },
        )
        .await
        .unwrap();
    other
        .stop_signal(stop.clone())
        .grace_period(std::time::Duration::from_secs(2));
    let running = tokio::task::spawn_blocking(move || other.output());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let history = p.helm().history(&release()).await.unwrap();
        if history.last().is_some_and(|r| r.status.is_pending()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no pending revision: {history:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let chart_160 = chart("1.6.0");
    let values = values();
    let url = p.sim.url().to_string();
    let (code, stdout, stderr) = p.run(
        &[
            "--chart",
            path(&chart_160),
            "--chart-version",
            "1.6.0",
            "--values",
            path(&values),
            "--apply",
            "--yes",
            "--expect-cluster",
            &url,
        ],
        &[],
    );
    stop.stop();
    let _ = running.await;
    assert_eq!(code, 4, "{stdout}{stderr}");
    assert!(stdout.contains("BLOCKER: "), "{stdout}");
    assert!(stdout.contains("pending-upgrade"), "{stdout}");
    assert!(
        stdout.contains("helm rollback"),
        "the recovery hint: {stdout}"
    );
    assert!(!p.ctx.work().join(".upgrade").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chart_whose_kube_version_refuses_the_cluster_blocks_with_exit_4() {
    // karpenter 1.5.0 installs on 1.28 (kubeVersion >=1.26.0-0); the 1.6.0 chart asks for
    // >=1.29.0-0, so Helm would refuse it: blocked before anything changes.
    let p = Platform::start("v1.28.15-eks-0a1b2c3").await;
    let url = p.sim.url().to_string();
    let chart_160 = chart("1.6.0");
    let values = values();
    let (code, stdout, stderr) = p.run(
        &[
            "--chart",
            path(&chart_160),
            "--chart-version",
            "1.6.0",
            "--values",
            path(&values),
            "--apply",
            "--yes",
            "--expect-cluster",
            &url,
        ],
        &[],
    );
    assert_eq!(code, 4, "{stdout}{stderr}");
    assert!(
        stdout.contains("BLOCKER: chart karpenter 1.6.0 refuses this cluster: `v1.28.15-eks-0a1b2c3` is outside the chart's kubeVersion `>=1.29.0-0`"),
        "{stdout}"
    );
    assert_eq!(p.live().await, ("1.5.0".to_string(), 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_the_helm_upgrade_rolls_it_back_and_exits_130() {
    let p = Platform::start("v1.30.4-eks-a737599").await;
    // New pods that never become Ready keep `helm upgrade --wait` running until the Ctrl-C.
    let never_ready = p.ctx.work().join("never-ready-values.yaml");
    std::fs::write(
        &never_ready,
        format!(
            "{}podAnnotations:\n  kube-sim.dev/never-ready: \"true\"\n",
            std::fs::read_to_string(values()).unwrap()
        ),
    )
    .unwrap();
    let chart_160 = chart("1.6.0");
    let mut cmd = ProcessBuilder::new(env!("CARGO_BIN_EXE_upgrade-karpenter"));
    p.ctx.apply_env(&mut cmd);
    let ctrl_c = upgrade_core::process::StopSignal::new();
    cmd.cwd(p.ctx.work())
        .arg("--kubeconfig")
        .arg(p.sim.kubeconfig_path())
        .args(["--kube-context", kube_sim::CONTEXT_NAME])
        .args([
            "--chart",
            path(&chart_160),
            "--chart-version",
            "1.6.0",
            "--image-tag",
            "1.6.0",
            "--values",
        ])
        .arg(&never_ready)
        .args(["--timeout", "2m", "--apply", "--yes", "--expect-cluster"])
        .arg(p.sim.url())
        // The runner's stop is one SIGINT to the binary's own process group: a Ctrl-C.
        .stop_signal(ctrl_c.clone())
        .grace_period(std::time::Duration::from_secs(120))
        .timeout(std::time::Duration::from_secs(300));
    let running = tokio::task::spawn_blocking(move || cmd.output());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let history = p.helm().history(&release()).await.unwrap();
        if history.last().is_some_and(|r| r.status.is_pending()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the upgrade never started: {history:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    ctrl_c.stop();
    let out = running.await.unwrap();
    // The runner reports its own stop, with the exit code the binary chose.
    let (code, stdout, stderr) = match out {
        Ok(out) => (out.status.code(), out.stdout_lossy(), out.stderr_lossy()),
        Err(upgrade_core::ProcessError::Stopped {
            code,
            stdout,
            stderr,
            ..
        }) => (code, stdout, stderr),
        Err(other) => panic!("{other}"),
    };
    assert_eq!(code, Some(130), "{stdout}{stderr}");
    assert!(
        stderr.contains("Ctrl-C: stopping the running command"),
        "{stderr}"
    );
    assert!(
        stdout.contains("outcome: stopped on request")
            && stdout.contains("rolled back 3 step(s)\n"),
        "{stdout}"
    );
    let history = p.helm().history(&release()).await.unwrap();
    assert_eq!(p.live().await.0, "1.5.0", "{history:?}");
    assert_eq!(
        history.last().unwrap().status,
        upgrade_helm::ReleaseStatus::Deployed,
        "{history:?}"
    );
}

/// `upgrade-releases` (read only) on the same platform: the newest chart of a folder or an
/// index, and the next minors its kubeVersion refuses (exit 3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_release_report_names_the_newest_chart_and_the_minors_it_refuses() {
    let p = Platform::start("v1.34.1-eks-a737599").await;
    let source = p.ctx.work().join("charts");
    for (version, constraint) in [("1.6.0", ">=1.29.0-0"), ("1.7.0", ">=1.29.0-0 <1.36.0-0")] {
        let dir = source.join("karpenter").join(version);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("Chart.yaml"),
            format!(
                "apiVersion: v2\nname: karpenter\nversion: {version}\nappVersion: {version}\nkubeVersion: \"{constraint}\"\n"
            ),
        )
        .unwrap();
    }
    let index = p.ctx.work().join("index.yaml");
    std::fs::write(
        &index,
        "apiVersion: v1\nentries:\n  karpenter:\n    - version: 1.6.0\n      appVersion: 1.6.0\n",
    )
    .unwrap();
    let report = |source_args: &[&str]| {
        let mut cmd = ProcessBuilder::new(env!("CARGO_BIN_EXE_upgrade-releases"));
        p.ctx.apply_env(&mut cmd);
        cmd.arg("--kubeconfig")
            .arg(p.sim.kubeconfig_path())
            .args(["--kube-context", kube_sim::CONTEXT_NAME])
            .args(source_args);
        upgrade_test::CommandOutput::run(&cmd).parts()
    };
    let (code, stdout, stderr) = report(&["--charts", path(&source)]);
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "karpenter/karpenter: karpenter 1.5.0 (app 1.5.0, deployed); newest 1.7.0 (app 1.7.0); kubeVersion: 1.35 ok, 1.36 refused"
        ),
        "{stdout}"
    );
    let (code, stdout, stderr) = report(&["--index", path(&index), "--output", "json"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        json["releases"][0]["newest"]["version"], "1.6.0",
        "{stdout}"
    );
    assert_eq!(
        json["releases"][0]["next_minors"][1]["allowed"], true,
        "{stdout}"
    );
    let (code, _, stderr) = report(&["--index", path(&p.ctx.work().join("nope.yaml"))]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--index: cannot read"), "{stderr}");
    assert_eq!(p.live().await, ("1.5.0".to_string(), 1), "nothing changed");
}

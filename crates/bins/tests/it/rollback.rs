//! `upgrade-rollback` end to end: runs of the real `upgrade-karpenter` and `upgrade-kserve`
//! against kube-sim with the real helm, then undone (a whole run, and one component) from
//! the journal and snapshots they left.

use upgrade_core::ProcessBuilder;
use upgrade_helm::ReleaseRef;
use upgrade_test::TestContext;

use crate::support;
use support::fixture;

#[test]
fn help_is_stable() {
    insta::assert_snapshot!(support::help(env!("CARGO_BIN_EXE_upgrade-rollback"), &[]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undoes_a_whole_run_and_one_component_and_refuses_bad_input() {
    let ctx = TestContext::new();
    let sim = support::sim(&ctx, support::V130).await;
    let helm = support::helm(&ctx, &sim);
    for (name, version) in [("karpenter", "1.5.0"), ("kserve", "0.14.1")] {
        let values = fixture(&format!("helm-values/{name}-values.yaml"));
        support::install(&helm, &ReleaseRef::new(name, name), name, version, &values).await;
    }
    let url = sim.url().to_string();
    let run = |program: &str, args: &[&str]| {
        let mut cmd = ProcessBuilder::new(program);
        ctx.apply_env(&mut cmd);
        cmd.cwd(ctx.work())
            .arg("--kubeconfig")
            .arg(sim.kubeconfig_path())
            .args(["--kube-context", kube_sim::CONTEXT_NAME])
            .args(args);
        upgrade_test::CommandOutput::run(&cmd).parts()
    };
    let versions = || async {
        let mut v = Vec::new();
        for name in ["karpenter", "kserve"] {
            let meta = helm
                .metadata(&ReleaseRef::new(name, name), None)
                .await
                .unwrap();
            v.push(meta.version);
        }
        v
    };
    let apply = [
        "--apply",
        "--yes",
        "--expect-cluster",
        &url,
        "--output",
        "json",
    ];
    let run_id_of = |stdout: &str| -> String {
        let report: serde_json::Value = serde_json::from_str(stdout).expect("a JSON report");
        report["run_id"].as_str().unwrap().to_string()
    };

    // Two runs: karpenter 1.5.0 -> 1.6.0, then kserve 0.14.1 -> 0.15.0.
    // Copies of the values files: the runs pin the image tags in them, the rollback puts
    // them back.
    let copy = |name: &str| {
        let to = ctx.work().join(format!("{name}-values.yaml"));
        std::fs::copy(fixture(&format!("helm-values/{name}-values.yaml")), &to).unwrap();
        to.to_string_lossy().into_owned()
    };
    let (karpenter_chart, karpenter_values) =
        (fixture("charts/karpenter/1.6.0"), copy("karpenter"));
    let karpenter_before = std::fs::read_to_string(&karpenter_values).unwrap();
    let mut args = vec![
        "--chart",
        &karpenter_chart,
        "--chart-version",
        "1.6.0",
        "--image-tag",
        "1.6.0",
        "--values",
        &karpenter_values,
    ];
    args.extend(apply);
    let (code, stdout, stderr) = run(env!("CARGO_BIN_EXE_upgrade-karpenter"), &args);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let karpenter_run = run_id_of(&stdout);
    let (kserve_chart, kserve_values) = (fixture("charts/kserve/0.15.0"), copy("kserve"));
    let kserve_before = std::fs::read_to_string(&kserve_values).unwrap();
    let mut args = vec![
        "upgrade",
        "--chart",
        &kserve_chart,
        "--chart-version",
        "0.15.0",
        "--image-tag",
        "v0.15.0",
        "--values",
        &kserve_values,
    ];
    args.extend(apply);
    let (code, stdout, stderr) = run(env!("CARGO_BIN_EXE_upgrade-kserve"), &args);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let kserve_run = run_id_of(&stdout);
    assert_eq!(versions().await, ["1.6.0", "0.15.0"]);

    let rollback = env!("CARGO_BIN_EXE_upgrade-rollback");
    // Plan only: the latest run (kserve's), newest step first; nothing changes.
    let (code, stdout, stderr) = run(rollback, &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let mut settings = ctx.insta_settings();
    settings.add_filter(r"(karpenter|kserve)-\d{8}T\d{6}Z", "[$1-RUN]");
    settings.add_filter(&url.replace('.', r"\."), "[CLUSTER]");
    settings.bind(|| insta::assert_snapshot!("plan", stdout));
    assert_eq!(versions().await, ["1.6.0", "0.15.0"]);

    // Bad input: exit 2, one line naming the fix, nothing changed.
    let empty = ctx.work().join("elsewhere");
    std::fs::create_dir(&empty).unwrap();
    let empty = empty.to_string_lossy().into_owned();
    for (args, expected) in [
        (vec!["--run", "no-such-run"], "name one of: "),
        (vec!["--snapshot-dir", &empty], "there is no journal at"),
        (
            vec!["--run", &kserve_run, "--component", "karpenter"],
            "has no component `karpenter`; its components: kserve",
        ),
        (
            vec!["--run", &kserve_run, "--apply", "--yes"],
            "needs --expect-cluster",
        ),
    ] {
        let (code, stdout, stderr) = run(rollback, &args);
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(versions().await, ["1.6.0", "0.15.0"], "{args:?}");
    }

    // One component of a run: only kserve goes back.
    let (code, stdout, stderr) = run(
        rollback,
        &[
            "--run",
            &kserve_run,
            "--component",
            "kserve",
            "--apply",
            "--yes",
            "--expect-cluster",
            &url,
        ],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    // The fixture's 0.15.0 chart adds a version to a CRD under crds/: that step is undone too.
    assert!(
        stdout.contains("outcome: rolled back 5 step(s)"),
        "{stdout}"
    );
    assert!(stdout.contains("[rolled-back] kserve/crds"), "{stdout}");
    assert!(
        stdout.contains("[rolled-back] kserve/helm-upgrade"),
        "{stdout}"
    );
    assert_eq!(versions().await, ["1.6.0", "0.14.1"]);
    assert_eq!(
        std::fs::read_to_string(&kserve_values).unwrap(),
        kserve_before,
        "the pinned values file is back"
    );

    // A whole run, by id.
    let (code, stdout, stderr) = run(
        rollback,
        &[
            "--run",
            &karpenter_run,
            "--apply",
            "--yes",
            "--expect-cluster",
            &url,
        ],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("outcome: rolled back 4 step(s)"),
        "{stdout}"
    );
    assert_eq!(versions().await, ["1.5.0", "0.14.1"]);
    assert_eq!(
        std::fs::read_to_string(&karpenter_values).unwrap(),
        karpenter_before,
        "the pinned values file is back"
    );

    // A record holding a step kind this rollback cannot rebuild, or of another format.
    let record = ctx
        .work()
        .join(".upgrade/runs")
        .join(format!("{karpenter_run}.json"));
    let original = std::fs::read_to_string(&record).unwrap();
    std::fs::write(
        &record,
        original.replace("\"kind\": \"helm-upgrade\"", "\"kind\": \"helm-nope\""),
    )
    .unwrap();
    let (code, _, stderr) = run(rollback, &["--run", &karpenter_run]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("holds a `helm-nope` step, which this registry cannot rebuild"),
        "{stderr}"
    );
    std::fs::write(&record, original.replace("\"format\": 1", "\"format\": 2")).unwrap();
    let (code, _, stderr) = run(rollback, &["--run", &karpenter_run]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("has format 2, and this version reads format 1"),
        "{stderr}"
    );
}

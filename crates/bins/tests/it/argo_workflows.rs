//! `upgrade-argo-workflows` end to end: the real binary and the real helm against kube-sim,
//! with the fixture charts (argo-workflows 0.45.0 → 0.46.0) and a WorkflowTemplate.

use upgrade_core::ProcessBuilder;
use upgrade_helm::ReleaseRef;
use upgrade_test::TestContext;

const TEMPLATE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: mlops}
---
apiVersion: argoproj.io/v1alpha1
kind: WorkflowTemplate
metadata: {name: train-model, namespace: mlops}
spec: {entrypoint: train, templates: [{name: train, container: {image: "python:3.12"}}]}
"#;

use crate::support;
use support::fixture;

fn release() -> ReleaseRef {
    ReleaseRef::new("argo-workflows", "argo")
}

#[test]
fn help_is_stable() {
    insta::assert_snapshot!(support::help(
        env!("CARGO_BIN_EXE_upgrade-argo-workflows"),
        &[]
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_rejects_bad_values_then_upgrades_with_the_templates_backed_up() {
    let ctx = TestContext::new();
    let sim = support::sim(&ctx, support::V130).await;
    let helm = support::helm(&ctx, &sim);
    // A copy: an applied upgrade pins the image tag in it.
    let values = ctx.work().join("argo-workflows-values.yaml");
    std::fs::copy(fixture("helm-values/argo-workflows-values.yaml"), &values).unwrap();
    let values = values.to_string_lossy().into_owned();
    support::install(&helm, &release(), "argo-workflows", "0.45.0", &values).await;
    sim.load_yaml(TEMPLATE)
        .expect("the WorkflowTemplate is created");
    // A Workflow the controller has reconciled: it has a phase.
    sim.load_yaml(&format!("{WORKFLOW}status: {{phase: Running}}\n"))
        .expect("the Workflow is created");
    let url = sim.url().to_string();
    let run = |args: &[&str]| upgrade(&ctx, &sim, args);
    let live = || async { helm.metadata(&release(), None).await.unwrap().version };

    // Plan only: Argo Workflows 3.6 is tested with 1.28-1.31, so 1.30 passes without findings
    // from the data; the plan names the backup of the three Argo kinds.
    let (code, stdout, stderr) = run(&["--values", &values]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("argo/argo-workflows: chart 0.45.0 (app v3.6.2, revision 1, deployed) -> 0.46.0 (app v3.6.5)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("back up Workflow, WorkflowTemplate, CronWorkflow"),
        "{stdout}"
    );
    assert_eq!(live().await, "0.45.0");

    // A values file that is a list, not a mapping: exit 2, nothing changed.
    let list = ctx.work().join("list.yaml");
    std::fs::write(&list, "- controller\n").unwrap();
    let (code, stdout, stderr) = run(&[
        "--values",
        list.to_str().unwrap(),
        "--apply",
        "--yes",
        "--expect-cluster",
        &url,
    ]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("not a mapping of values"), "{stderr}");
    assert_eq!(live().await, "0.45.0");

    // The upgrade.
    let (code, stdout, stderr) = run(&[
        "--values",
        &values,
        "--apply",
        "--yes",
        "--expect-cluster",
        &url,
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("[verified] argo-workflows/backup"),
        "{stdout}"
    );
    assert!(stdout.contains("outcome: completed"), "{stdout}");
    assert_eq!(live().await, "0.46.0");
    // The backup in the run's snapshot holds the template.
    let backups: Vec<String> = walk(&ctx.work().join(".upgrade/snapshots"))
        .into_iter()
        .filter(|p| p.ends_with("backup.yaml"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert!(backups[0].contains("name: train-model"), "{}", backups[0]);
}

const WORKFLOW: &str = r#"
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: train-nightly, namespace: mlops}
spec: {workflowTemplateRef: {name: train-model}}
"#;

/// Runs `upgrade-argo-workflows` to the 0.46.0 fixture chart with the image tag of its app;
/// (code, stdout, stderr).
fn upgrade(ctx: &TestContext, sim: &kube_sim::SimCluster, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["--image-tag", "v3.6.5"];
    all.extend_from_slice(args);
    upgrade_as_given(ctx, sim, &all)
}

/// [`upgrade`] without the image tag.
fn upgrade_as_given(
    ctx: &TestContext,
    sim: &kube_sim::SimCluster,
    args: &[&str],
) -> (i32, String, String) {
    let chart_046 = fixture("charts/argo-workflows/0.46.0");
    let mut cmd = ProcessBuilder::new(env!("CARGO_BIN_EXE_upgrade-argo-workflows"));
    ctx.apply_env(&mut cmd);
    cmd.cwd(ctx.work())
        .arg("--kubeconfig")
        .arg(sim.kubeconfig_path())
        .args(["--kube-context", kube_sim::CONTEXT_NAME])
        .args(["--chart", &chart_046, "--chart-version", "0.46.0"])
        .args(args);
    upgrade_test::CommandOutput::run(&cmd).parts()
}

/// Every key pinning the running app version moves with the image tag (seen: the server
/// left at v3.7.4 under a v3.7.11 controller, and the run said completed); without the tag
/// each is a blocker, and so is a digest, which wins over any tag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pin_of_the_running_version_moves_together_or_blocks() {
    let ctx = TestContext::new();
    let sim = support::sim(&ctx, support::V130).await;
    let helm = support::helm(&ctx, &sim);
    let pinned = "# the platform's pins\ncontroller:\n  image:\n    tag: \"v3.6.2\"\nserver:\n  image:\n    tag: v3.6.2 # the UI\nexecutor:\n  image:\n    registry: quay.io\n    tag: v3.6.2\n";
    let values = ctx.work().join("argo-workflows-values.yaml");
    std::fs::write(&values, pinned).unwrap();
    let values = values.to_string_lossy().into_owned();
    support::install(&helm, &release(), "argo-workflows", "0.45.0", &values).await;
    let url = sim.url().to_string();

    let (code, stdout, stderr) = upgrade_as_given(&ctx, &sim, &["--values", &values]);
    assert_eq!(code, 4, "{stdout}{stderr}");
    for key in [
        "controller.image.tag",
        "server.image.tag",
        "executor.image.tag",
    ] {
        assert!(
            stdout.contains(&format!("BLOCKER: `{key}` in {values} pins v3.6.2")),
            "{key}: {stdout}"
        );
    }

    let (code, stdout, stderr) = upgrade(&ctx, &sim, &["--values", &values]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        !stdout.contains("`controller.image.tag` is not in"),
        "the chart has it: {stdout}"
    );
    assert!(
        stdout.contains(&format!("{values}: server.image.tag v3.6.2 -> v3.6.5"))
            && stdout.contains(&format!("{values}: executor.image.tag v3.6.2 -> v3.6.5")),
        "{stdout}"
    );

    // A key the new chart does not know is named before anything changes.
    let misspelled = ctx.work().join("misspelled-values.yaml");
    std::fs::write(&misspelled, format!("{pinned}replicaz: 2\n")).unwrap();
    let misspelled = misspelled.to_string_lossy().into_owned();
    let (code, stdout, stderr) = upgrade(&ctx, &sim, &["--values", &misspelled]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("`replicaz` is in neither the running chart's values nor the 0.46.0 chart's values.yaml (misspelled?)"),
        "{stdout}"
    );

    let with_digest = ctx.work().join("digest-values.yaml");
    std::fs::write(
        &with_digest,
        format!("{pinned}    digest: sha256:0123abcd\n"),
    )
    .unwrap();
    let with_digest = with_digest.to_string_lossy().into_owned();
    let (code, stdout, stderr) = upgrade(&ctx, &sim, &["--values", &with_digest]);
    assert_eq!(code, 4, "{stdout}{stderr}");
    assert!(
        stdout.contains("`executor.image.digest`")
            && stdout.contains("pins the digest sha256:0123abcd"),
        "{stdout}"
    );

    let (code, stdout, stderr) = upgrade(
        &ctx,
        &sim,
        &[
            "--values",
            &values,
            "--apply",
            "--yes",
            "--expect-cluster",
            &url,
        ],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("outcome: completed"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(&values).unwrap(),
        pinned.replace("v3.6.2", "v3.6.5"),
        "every pin moved, quotes and comments kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_the_controller_never_picks_up_rolls_the_upgrade_back() {
    let ctx = TestContext::new();
    let sim = support::sim(&ctx, support::V130).await;
    let helm = support::helm(&ctx, &sim);
    // A copy: an applied upgrade pins the image tag in it.
    let values = ctx.work().join("argo-workflows-values.yaml");
    std::fs::copy(fixture("helm-values/argo-workflows-values.yaml"), &values).unwrap();
    let values = values.to_string_lossy().into_owned();
    support::install(&helm, &release(), "argo-workflows", "0.45.0", &values).await;
    sim.load_yaml(TEMPLATE).unwrap();
    // Submitted while the controller was being replaced, and never picked up: no phase.
    sim.load_yaml(WORKFLOW).unwrap();
    let url = sim.url().to_string();
    let (code, stdout, stderr) = upgrade(
        &ctx,
        &sim,
        &[
            "--values",
            &values,
            "--apply",
            "--yes",
            "--expect-cluster",
            &url,
            "--timeout",
            "3s",
        ],
    );
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains("Workflow mlops/train-nightly: no phase yet"),
        "{stdout}"
    );
    assert!(
        stdout.contains("[rolled-back] argo-workflows/helm-upgrade"),
        "{stdout}"
    );
    assert_eq!(
        helm.metadata(&release(), None).await.unwrap().version,
        "0.45.0"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

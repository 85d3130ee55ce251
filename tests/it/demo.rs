//! The README's main command, end to end: the demo runs every command as a process with the
//! real terraform and helm on kube-sim, and must leave the platform upgraded, the failing
//! KServe upgrade rolled back, and its records in place.

use std::path::{Path, PathBuf};

use upgrade_core::journal::Journal;
use upgrade_core::lockfile::PlatformLock;
use upgrade_test::TestContext;

/// The folder the workspace's binaries are built into (beside this test's `deps/`).
pub(crate) fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf();
    for name in [
        "upgrade-eks",
        "upgrade-kserve",
        "upgrade-rollback",
        "terraform-provider-aws-sim",
    ] {
        assert!(
            dir.join(name).is_file(),
            "{name} is not built in {}; run `cargo build --workspace --bins` (the README's test command builds it)",
            dir.display()
        );
    }
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_upgrades_the_platform_and_rolls_back_the_failing_upgrade() {
    let ctx = TestContext::new();
    let work = ctx.root().join("demo");
    let printed = run_demo(&work, &upgrade_demo::demo::DemoOptions::default()).await;
    check_the_outcome(&work, &printed);
    check_the_bluegreen_scene(&work, &printed);
}

/// The blue/green scene: every stage ran as its own recorded run, green's variables name
/// 1.31, the record pointed at green after the switch and at blue after the fail-back.
fn check_the_bluegreen_scene(work: &Path, printed: &str) {
    let journal = Journal::read_entries(&work.join("bluegreen/.upgrade/journal.jsonl")).unwrap();
    for prefix in [
        "bluegreen-inputs-",
        "bluegreen-storage-",
        "bluegreen-green-up-",
        "bluegreen-platform-",
        "bluegreen-transfer-",
        "bluegreen-switch-",
    ] {
        assert!(
            journal.iter().any(|e| e.run_id.starts_with(prefix)),
            "no {prefix}* run in the blue/green journal"
        );
    }
    let vars =
        std::fs::read_to_string(work.join("bluegreen/terraform/green/bluegreen.auto.tfvars.json"))
            .unwrap();
    assert!(vars.contains("\"eks_version\": \"1.31\""), "{vars}");
    let switched = printed
        .find("kubeflow.platform.example.com -> green-alb.us-east-1.elb.amazonaws.com")
        .unwrap_or_else(|| panic!("the switch did not reach green:\n{printed}"));
    let failed_back = printed
        .find("kubeflow.platform.example.com -> blue-alb.us-east-1.elb.amazonaws.com (failed back")
        .unwrap_or_else(|| panic!("no fail-back to blue:\n{printed}"));
    assert!(switched < failed_back);
    assert!(printed.contains("PASS predict-sklearn-iris"), "{printed}");
}

/// The same demo while the API server fails requests on purpose, seeded: about 5 % of the
/// reads (get and list) of every resource with 429, 503, 500 or a dropped connection, and
/// about 5 % of every other request (writes, watches, evictions, Helm's release records),
/// including writes carried out whose answer was lost. Every command still ends as it does
/// without faults, and the platform ends upgraded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_completes_while_the_api_server_fails_requests() {
    let ctx = TestContext::new();
    let work = ctx.root().join("demo");
    let options = upgrade_demo::demo::DemoOptions {
        faults: Some(
            [
                "seed=7",
                "get:*:429=2%,get:*:503=1%,get:*:500=1%,get:*:drop=1%",
                "list:*:429=2%,list:*:503=1%,list:*:500=1%,list:*:drop=1%",
                // Every other verb too: writes (Helm's release records, applies, evictions,
                // the lease), watches, and writes carried out whose answer was lost.
                "*:*:429=1%,*:*:503=1%,*:*:500=1%,*:*:drop=1%,*:*:drop-response=1%",
            ]
            .join(",")
            .parse()
            .unwrap(),
        ),
        without_bluegreen: true,
    };
    let printed = run_demo(&work, &options).await;
    assert!(
        printed.contains("From here on the API server fails requests on purpose"),
        "{printed}"
    );
    check_the_outcome(&work, &printed);
    // Nothing lost: the live platform is at the targets (the last command compares it with
    // the lockfile taken before the upgrades).
    for line in [
        "cluster.version: locked 1.30 but live 1.31",
        "components.karpenter.chart_version: locked 1.5.0 but live 1.6.0",
        "components.kserve.chart_version: locked 0.14.1 but live 0.15.0",
        "components.argo-workflows.chart_version: locked 0.45.0 but live 0.46.0",
    ] {
        assert!(printed.contains(line), "{line} missing:\n{printed}");
    }
}

/// Runs the demo in `work`; what it printed.
async fn run_demo(work: &Path, options: &upgrade_demo::demo::DemoOptions) -> String {
    let tools = upgrade_demo::sample::Tools {
        terraform: upgrade_test::require_tool("terraform"),
        helm: upgrade_test::require_tool("helm4"),
    };
    let mut out = Vec::new();
    let result = upgrade_demo::demo::run_with(
        &TestContext::workspace_root(),
        &bin_dir(),
        tools,
        work,
        options,
        &mut out,
    )
    .await;
    let printed = String::from_utf8_lossy(&out).to_string();
    result.unwrap_or_else(|e| panic!("the demo failed: {e:#}\n{printed}"));
    printed
}

/// What every demo run must leave: each command ran with its expected exit code, the
/// journal has every component's run, the nodes are at 1.31, the failing upgrade rolled back.
fn check_the_outcome(work: &Path, printed: &str) {
    // Every command ran with the exit code the demo expects, and said so.
    for command in [
        "$ upgrade-lock write",
        "$ upgrade-preflight --target 1.31",
        "$ upgrade-eks --target 1.31",
        "$ upgrade-karpenter",
        "$ upgrade-kserve upgrade",
        "$ upgrade-argo-workflows",
        "$ upgrade-mlflow",
        "$ upgrade-lock diff",
    ] {
        assert!(printed.contains(command), "{command} missing:\n{printed}");
    }

    // The control plane and every node are at 1.31 (read from the lockfile the demo's last
    // `upgrade-lock diff` compares against, and from the journal of the EKS run).
    let lock = PlatformLock::read(&work.join("platform.lock")).unwrap();
    assert_eq!(
        lock.components["karpenter"].chart_version, "1.5.0",
        "the lock is the pre-upgrade state"
    );
    let journal = Journal::read_entries(&work.join(".upgrade/journal.jsonl")).unwrap();
    let runs: std::collections::BTreeSet<&str> =
        journal.iter().map(|e| e.run_id.as_str()).collect();
    for prefix in [
        "eks-",
        "karpenter-",
        "kserve-",
        "argo-workflows-",
        "mlflow-",
    ] {
        assert!(
            runs.iter().any(|r| r.starts_with(prefix)),
            "no {prefix}* run in the journal: {runs:?}"
        );
    }
    let nodes = printed
        .lines()
        .find(|l| l.trim_start().starts_with("nodes now:"))
        .unwrap_or_else(|| panic!("no node list after upgrade-eks:\n{printed}"));
    assert!(
        nodes.contains("v1.31") && !nodes.contains("v1.30"),
        "a node is still at 1.30: {nodes}"
    );
    assert!(
        printed.contains("rolled back"),
        "the failing KServe upgrade did not report its rollback:\n{printed}"
    );
}

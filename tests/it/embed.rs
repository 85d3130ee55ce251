//! The embedding example (`crates/demo/examples/embed_flows.rs`), run as it is: a Karpenter
//! upgrade and an EKS hop through library calls, the Karpenter run undone by the
//! `upgrade-rollback` command from another folder. Then the EKS hop's later steps are undone
//! the same way with no `aws` on PATH and the add-on versions file gone: the run record holds
//! everything the rollback needs.

use std::path::PathBuf;
use std::time::Duration;

use upgrade_core::ProcessBuilder;
use upgrade_demo::sample::Tools;
use upgrade_helm::ReleaseRef;
use upgrade_test::TestContext;

#[allow(dead_code)] // its `main` is the example's, not the test's
#[path = "../../crates/demo/examples/embed_flows.rs"]
mod example;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_runs_and_upgrade_rollback_undoes_its_runs_from_their_records() {
    let ctx = TestContext::new();
    let tools = Tools {
        terraform: upgrade_test::require_tool("terraform"),
        helm: upgrade_test::require_tool("helm4"),
    };
    let setup = example::Setup {
        repo_root: TestContext::workspace_root(),
        bin_dir: crate::demo::bin_dir(),
        tools: tools.clone(),
        work: ctx.root().join("example"),
    };
    let mut out = Vec::new();
    let result = example::run(&setup, &mut out).await;
    let printed = String::from_utf8_lossy(&out).to_string();
    let done = result.unwrap_or_else(|e| panic!("the example failed: {e:#}\n{printed}"));

    // The EKS hop ran through the library: the control plane and every node are at 1.31.
    assert_eq!(
        done.sim.server_version(),
        "v1.31.0-eks-a737599",
        "{printed}"
    );
    // The Karpenter run was undone by the command, from its record, from another folder.
    let helm = done.platform.helm().unwrap();
    let karpenter = helm
        .metadata(&ReleaseRef::new("karpenter", "karpenter"), None)
        .await
        .unwrap();
    assert_eq!(karpenter.version, "1.5.0", "{printed}");
    let values =
        std::fs::read_to_string(done.platform.values_dir().join("karpenter-values.yaml")).unwrap();
    assert_eq!(
        values,
        std::fs::read_to_string(
            TestContext::fixtures_dir().join("helm-values/karpenter-values.yaml")
        )
        .unwrap(),
        "the values file has its bytes back"
    );
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            done.state
                .join("runs")
                .join(format!("{}.json", done.karpenter_run)),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(record["format"], 1);
    assert_eq!(record["started_by"], "library");
    let kinds: Vec<&str> = record["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "kube-cr-backup",
            "helm-values-pin",
            "helm-upgrade",
            "kube-workloads-ready"
        ]
    );

    // The EKS hop's later steps: no `aws` on PATH, the add-on versions file deleted, another
    // folder. The rollback undoes the add-on and the node rollout from the record and stops
    // at the control plane, which cannot go back (exit 5).
    let tfvars_after = std::fs::read_to_string(&done.tfvars).unwrap();
    assert!(
        tfvars_after.contains("coredns_version = \"v1.11.3-eksbuild.1\""),
        "{tfvars_after}"
    );
    std::fs::remove_file(&done.addon_versions).unwrap();
    let elsewhere = ctx.root().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    // The tools without `aws` (./dev tools installs one): the rollback must not need it.
    let no_aws = ctx.root().join("bin-without-aws");
    std::fs::create_dir_all(&no_aws).unwrap();
    for entry in std::fs::read_dir(TestContext::tools_bin_dir()).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name != "aws" && name != "moto_server" {
            std::os::unix::fs::symlink(entry.path(), no_aws.join(&name)).unwrap();
        }
    }
    let mut cmd = ProcessBuilder::new(crate::demo::bin_dir().join("upgrade-rollback"));
    cmd.cwd(&elsewhere)
        .env("PATH", &no_aws)
        .env("HOME", done.platform.home())
        .env("HELM_BIN", &tools.helm)
        .env("TERRAFORM_BIN", &tools.terraform)
        .env(
            "TF_CLI_CONFIG_FILE",
            done.platform.home().join("terraformrc-sim"),
        )
        .env(upgrade_tf_sim_provider::SIM_KUBE_URL_VAR, done.sim.url())
        .arg("--kubeconfig")
        .arg(done.platform.kubeconfig())
        .args([
            "--kube-context",
            kube_sim::CONTEXT_NAME,
            "--expect-cluster",
            done.sim.url(),
        ])
        .arg("--snapshot-dir")
        .arg(&done.state)
        .args(["--run", &done.eks_run, "--apply", "--yes"])
        .timeout(Duration::from_secs(300));
    assert!(
        which_aws(&no_aws).is_none(),
        "the rollback runs without aws"
    );
    let out = cmd.output().unwrap();
    let stdout = out.stdout_lossy();
    assert_eq!(out.status.code(), Some(5), "{stdout}{}", out.stderr_lossy());
    assert!(
        stdout.contains("[rolled-back] eks/addon-coredns-1.31"),
        "{stdout}"
    );
    assert!(stdout.contains("[rolled-back] eks/nodes-1.31"), "{stdout}");
    assert!(
        stdout.contains("stopped at eks/control-plane-1.31"),
        "{stdout}"
    );
    let tfvars = std::fs::read_to_string(&done.tfvars).unwrap();
    assert!(
        tfvars.contains("coredns_version = \"v1.11.1-eksbuild.9\""),
        "{tfvars}"
    );
    assert!(tfvars.contains("cluster_version = \"1.31\""), "{tfvars}");
    done.sim.shutdown().await;
}

fn which_aws(dir: &std::path::Path) -> Option<PathBuf> {
    Some(dir.join("aws")).filter(|p| p.exists())
}

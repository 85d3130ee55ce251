//! `upgrade-tf-providers` end to end: the real binary and the real terraform on the dev
//! environment with the simulated AWS provider mirrored at 5.99.0 and 6.0.0, the run lock on
//! an in-process kube-sim.

use std::path::{Path, PathBuf};

use kube_sim::{ControllerConfig, SimCluster};
use upgrade_core::ProcessBuilder;
use upgrade_test::{TestContext, use_sim_mirror};

/// One test's world: the context, the applied environment and the cluster.
struct World {
    ctx: TestContext,
    dir: PathBuf,
    sim: SimCluster,
}

/// Extra environment variables of one run.
type Env<'a> = Vec<(&'a str, &'a str)>;

/// The files the command may change, by name, with their bytes.
type Files = Vec<(String, Vec<u8>)>;

impl World {
    /// The dev environment applied at `~> 5.0` (aws 5.99.0), plus `extra` `.tf` files.
    async fn new(extra: &[(&str, &str)]) -> World {
        let ctx = TestContext::new();
        use_sim_mirror(&ctx);
        let dir = ctx.copy_fixture("terraform/environments/dev");
        for (name, text) in extra {
            std::fs::write(dir.join(name), text).unwrap();
        }
        let sim = SimCluster::builder()
            .controllers(ControllerConfig::fast())
            .kubeconfig_path(ctx.root().join("kubeconfig.yaml"))
            .start()
            .await
            .expect("kube-sim starts");
        // The simulated provider creates the cluster on kube-sim: its endpoint is kube-sim's
        // URL, which binds this folder to the cluster the commands connect to.
        for args in [
            &["init", "-input=false", "-no-color"][..],
            &["apply", "-input=false", "-no-color", "-auto-approve"][..],
        ] {
            let mut tf = ctx.command("terraform");
            tf.args(args)
                .cwd(&dir)
                .env(upgrade_tf_sim_provider::SIM_KUBE_URL_VAR, sim.url());
            tf.output_async()
                .await
                .and_then(|out| tf.check(out))
                .unwrap_or_else(|e| panic!("terraform {args:?}: {e}"));
        }
        World { ctx, dir, sim }
    }

    /// Runs the command with the shared flags first, then `args`.
    async fn run(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        let mut cmd = ProcessBuilder::new(env!("CARGO_BIN_EXE_upgrade-tf-providers"));
        self.ctx.apply_env(&mut cmd);
        let kubeconfig = self.ctx.root().join("kubeconfig.yaml");
        let state = self.ctx.root().join("state");
        cmd.arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--kube-context", kube_sim::CONTEXT_NAME])
            .arg("--snapshot-dir")
            .arg(&state)
            .arg("--terraform-dir")
            .arg(&self.dir)
            .args(args);
        for (name, value) in env {
            cmd.env(name, value);
        }
        upgrade_test::CommandOutput::run_async(&cmd).await.parts()
    }

    fn files(&self) -> Files {
        [
            "versions.tf",
            ".terraform.lock.hcl",
            "terraform.tfvars",
            "terraform.tfstate",
        ]
        .iter()
        .map(|name| {
            (
                name.to_string(),
                std::fs::read(self.dir.join(name)).unwrap(),
            )
        })
        .collect()
    }

    fn locked_aws(&self) -> String {
        let lock = std::fs::read_to_string(self.dir.join(".terraform.lock.hcl")).unwrap();
        let provider = lock
            .split("provider \"registry.terraform.io/hashicorp/aws\"")
            .nth(1)
            .expect("the lock file has the aws provider");
        let version = provider
            .lines()
            .find_map(|l| l.trim().strip_prefix("version"))
            .expect("a version line");
        version
            .trim_start_matches([' ', '='])
            .trim_matches('"')
            .to_string()
    }

    fn apply_args(&self) -> Vec<String> {
        vec![
            "--apply".into(),
            "--yes".into(),
            "--expect-cluster".into(),
            self.sim.url().to_string(),
        ]
    }

    fn settings(&self) -> insta::Settings {
        let mut settings = self.ctx.insta_settings();
        settings.add_filter(r"tf-providers-\d{8}T\d{6}Z", "tf-providers-[RUN]");
        settings.add_filter(r"https?://127\.0\.0\.1:\d+", "[CLUSTER]");
        settings
    }
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

#[test]
fn help_is_stable() {
    let ctx = TestContext::new();
    let mut cmd = ProcessBuilder::new(env!("CARGO_BIN_EXE_upgrade-tf-providers"));
    ctx.apply_env(&mut cmd);
    cmd.arg("--help");
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    insta::assert_snapshot!(out.stdout_lossy());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_shows_the_version_change_and_changes_nothing() {
    let world = World::new(&[]).await;
    let before = world.files();
    let (code, stdout, stderr) = world
        .run(&["--provider", "aws", "--constraint", "~> 6.0"], &[])
        .await;
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    assert_eq!(world.files(), before, "a plan changes no file");
    assert!(
        !world.ctx.root().join("state/journal.jsonl").exists(),
        "a plan writes no journal"
    );
    world.settings().bind(|| insta::assert_snapshot!(stdout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_upgrades_5_99_to_6_0() {
    let world = World::new(&[]).await;
    assert_eq!(world.locked_aws(), "5.99.0");
    let mut args = world.apply_args();
    args.extend(["--provider", "aws", "--constraint", "~> 6.0"].map(String::from));
    let (code, stdout, stderr) = world.run(&strs(&args), &[]).await;
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    assert_eq!(world.locked_aws(), "6.0.0");
    let versions = std::fs::read_to_string(world.dir.join("versions.tf")).unwrap();
    assert!(versions.contains("version = \"~> 6.0\""), "{versions}");
    assert!(
        versions.contains("# major bumps go through the provider upgrade procedure"),
        "the edit keeps the comments: {versions}"
    );
    world.settings().bind(|| insta::assert_snapshot!(stdout));
}

/// Fails the apply once the lock file selects aws 6.0.0, as a provider's breaking change
/// would; the condition is unknown at plan time (the replacement's id), so plans pass.
const GATE: &str = r#"
resource "terraform_data" "provider_gate" {
  triggers_replace = file("${path.module}/.terraform.lock.hcl")
  input            = file("${path.module}/.terraform.lock.hcl")
  lifecycle {
    postcondition {
      condition     = self.id == "" || !strcontains(self.input, "\"6.0.0\"")
      error_message = "The AWS provider 6.0.0 breaks this module."
    }
  }
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_apply_rolls_back_to_the_exact_files() {
    let world = World::new(&[("gate.tf", GATE)]).await;
    let versions = std::fs::read(world.dir.join("versions.tf")).unwrap();
    let lock = std::fs::read(world.dir.join(".terraform.lock.hcl")).unwrap();
    let mut args = world.apply_args();
    args.extend(["--provider", "aws", "--constraint", "~> 6.0"].map(String::from));
    let (code, stdout, stderr) = world.run(&strs(&args), &[]).await;
    assert_eq!(code, 1, "{stderr}\n{stdout}");
    assert!(
        stdout.contains("[rolled-back] terraform/provider-aws"),
        "{stdout}"
    );
    assert!(stdout.contains("rolled back 1 step(s)"), "{stdout}");
    assert_eq!(
        std::fs::read(world.dir.join("versions.tf")).unwrap(),
        versions,
        "versions.tf byte-identical"
    );
    assert_eq!(
        std::fs::read(world.dir.join(".terraform.lock.hcl")).unwrap(),
        lock,
        "the lock file byte-identical"
    );
    assert_eq!(world.locked_aws(), "5.99.0");
    // The restored configuration converges: nothing left to apply.
    let mut plan = world.ctx.command("terraform");
    plan.args(["plan", "-detailed-exitcode", "-input=false", "-no-color"])
        .cwd(&world.dir);
    let out = plan.output_async().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", out.stdout_lossy());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_that_replaces_the_cluster_is_refused_with_exit_4() {
    let world = World::new(&[]).await;
    // A pending rename replaces the EKS cluster, a protected type.
    let tfvars = world.dir.join("terraform.tfvars");
    let text = std::fs::read_to_string(&tfvars).unwrap();
    std::fs::write(
        &tfvars,
        text.replace("\"mlops-platform-dev\"", "\"mlops-platform-dev-2\""),
    )
    .unwrap();
    let before = world.files();
    let mut args = world.apply_args();
    args.extend(["--provider", "aws", "--constraint", "~> 6.0"].map(String::from));
    let (code, stdout, stderr) = world.run(&strs(&args), &[]).await;
    assert_eq!(code, 4, "{stderr}\n{stdout}");
    assert!(stdout.contains("BLOCKER: aws_eks_cluster.this"), "{stdout}");
    assert_eq!(world.files(), before, "nothing changed");
    assert!(!world.ctx.root().join("state/journal.jsonl").exists());

    // A deliberate replacement is let through by name (planned only here).
    let (code, stdout, stderr) = world
        .run(
            &[
                "--provider",
                "aws",
                "--constraint",
                "~> 6.0",
                "--allow-destroy",
                "aws_eks_cluster.this",
            ],
            &[],
        )
        .await;
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    assert!(!stdout.contains("BLOCKER"), "{stdout}");
    assert!(
        stdout.contains("plan: aws_eks_cluster.this delete+create"),
        "{stdout}"
    );
    assert_eq!(world.files(), before, "a plan changes nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_exits_2_with_one_line_naming_the_fix_and_changes_nothing() {
    let world = World::new(&[]).await;
    let before = world.files();
    let garbage = world.ctx.root().join("garbage.tf");
    std::fs::write(&garbage, "terraform {{{ required_providers").unwrap();
    let url = world.sim.url().to_string();
    let ok = ["--provider", "aws", "--constraint", "~> 6.0"];
    let cases: Vec<(Vec<String>, Env, &str)> = vec![
        (
            args(
                &["--apply", "--yes", "--expect-cluster", "prod-cluster"],
                &ok,
            ),
            vec![],
            "prod-cluster",
        ),
        (
            args(&["--constraint", "^6"], &["--provider", "aws"]),
            vec![],
            "e.g. `~> 6.0`",
        ),
        (
            args(&["--provider", "gcp"], &["--constraint", "~> 6.0"]),
            vec![],
            "check --provider",
        ),
        (
            args(&["--constraint", "~> 5.0"], &["--provider", "aws"]),
            vec![],
            "set --constraint to one that admits a newer version",
        ),
        (
            args(&["--versions-file", garbage.to_str().unwrap()], &ok),
            vec![],
            "fix the file",
        ),
        (
            args(&["--apply", "--yes", "--expect-cluster", &url], &ok),
            vec![("TERRAFORM_BIN", "/nonexistent/terraform")],
            "TERRAFORM_BIN",
        ),
        (
            args(&["--apply", "--expect-cluster", &url], &ok),
            vec![],
            "add --yes",
        ),
    ];
    for (args, env, expected) in cases {
        let (code, stdout, stderr) = world.run(&strs(&args), &env).await;
        assert_eq!(code, 2, "{args:?}: {stderr}\n{stdout}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(world.files(), before, "{args:?} changed a file");
        assert!(
            !world.ctx.root().join("state/journal.jsonl").exists(),
            "{args:?} started a run"
        );
    }
    let missing = world.ctx.root().join("no-such-env");
    let mut cmd = ProcessBuilder::new(env!("CARGO_BIN_EXE_upgrade-tf-providers"));
    world.ctx.apply_env(&mut cmd);
    cmd.arg("--terraform-dir").arg(&missing).args(ok);
    let out = cmd.output_async().await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stderr_lossy()
            .contains("--terraform-dir: the Terraform folder"),
        "{}",
        out.stderr_lossy()
    );
    assert!(!Path::new(&missing).exists());
}

fn args(first: &[&str], rest: &[&str]) -> Vec<String> {
    first.iter().chain(rest).map(|s| s.to_string()).collect()
}

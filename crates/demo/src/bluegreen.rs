//! The demo's blue/green scene (seeds 001 and 003): blue at 1.30 with a Kubeflow user
//! namespace and an MLflow release, green built beside it at 1.31 by `upgrade-bluegreen`'s
//! stages, traffic switched to green, then failed back to blue. Every stage is the command a
//! platform engineer runs; AWS is moto (S3, IAM, Route 53) plus kube-sim's simulated AWS
//! Backup, through the real AWS CLI.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use upgrade_core::ProcessBuilder;

use crate::demo::{Shell, VenvServer};
use crate::sample::Tools;

const BLUE_VERSION: &str = "v1.30.4-eks-a737599";
const GREEN_VERSION: &str = "v1.31.2-eks-7f9249a";
const USER_NAMESPACE: &str = "kubeflow-user-example-com";

/// Runs the scene in `work/bluegreen`, with the commands of `bin_dir` and the Terraform CLI
/// configuration `cli_config` (the simulated AWS provider's mirror).
pub(crate) async fn scene(
    repo_root: &Path,
    bin_dir: &Path,
    tools: &Tools,
    cli_config: &Path,
    work: &Path,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let root = work.join("bluegreen");
    let home = root.join("home");
    std::fs::create_dir_all(&home)?;
    let fixtures = repo_root.join("fixtures");
    let start = |name: &str, version: &str| {
        kube_sim::SimCluster::builder()
            .server_version(version)
            .controllers(kube_sim::ControllerConfig::fast())
            .kubeconfig_path(root.join(format!("{name}.kubeconfig")))
            .start()
    };
    let blue = start("blue", BLUE_VERSION).await?;
    let green = start("green", GREEN_VERSION).await?;
    blue.add_node("blue-node-1", BLUE_VERSION)?;
    green.add_node("green-node-1", GREEN_VERSION)?;
    let crds = std::fs::read_to_string(fixtures.join("bluegreen/kubeflow-crds.yaml"))?;
    // Green's Kubeflow install brings the same kinds (seed 001's `make deploy`).
    blue.load_yaml(&crds)?;
    green.load_yaml(&crds)?;
    blue.load_yaml(&std::fs::read_to_string(
        fixtures.join("bluegreen/blue-user-namespace.yaml"),
    )?)?;
    let mlflow_chart = fixtures.join("charts/mlflow/0.16.0");
    let mut helm = ProcessBuilder::new(&tools.helm);
    helm.env("HOME", &home)
        .args(["install", "mlflow"])
        .arg(&mlflow_chart)
        .args(["-n", "mlops", "--create-namespace", "--wait"])
        .args([
            "--set",
            "db.password=blue-db-password",
            "--set",
            "settings.clusterName=blue",
        ])
        .arg("--kubeconfig")
        .arg(blue.kubeconfig_path())
        .timeout(std::time::Duration::from_secs(180));
    helm.exec_async()
        .await
        .context("helm install mlflow on blue")?;

    // Blue's Terraform deployment (the simulated AWS provider, on blue's simulated EKS API).
    let blue_tf = root.join("terraform/blue");
    let green_tf = root.join("terraform/green");
    crate::sample::copy_environment(&fixtures, "blue", &blue_tf)?;
    crate::sample::copy_environment(&fixtures, "green", &green_tf)?;
    let mut base = ProcessBuilder::new(&tools.terraform);
    base.env("HOME", &home)
        .env("TF_CLI_CONFIG_FILE", cli_config)
        .env(upgrade_tf_sim_provider::SIM_KUBE_URL_VAR, blue.url())
        .env("NO_COLOR", "1");
    let tf: upgrade_tf::AsyncTerraform = upgrade_tf::Terraform::builder(&blue_tf)
        .base_command(base)
        .build()?
        .into();
    crate::sample::init_and_apply(&tf).await?;

    // AWS: moto for S3, IAM and Route 53; kube-sim's simulated AWS Backup for the backup
    // jobs moto lacks.
    let moto = upgrade_test::MotoServer::start();
    moto.aws(&["s3api", "create-bucket", "--bucket", "kf-artifacts"]);
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"backup.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    let role = moto.aws(&[
        "iam",
        "create-role",
        "--role-name",
        "kf-backup",
        "--assume-role-policy-document",
        trust,
    ])["Role"]["Arn"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    moto.aws_at(
        &blue.backup_endpoint(),
        &[
            "backup",
            "create-backup-vault",
            "--backup-vault-name",
            "kf-vault",
        ],
    );
    let zone = moto.aws(&[
        "route53",
        "create-hosted-zone",
        "--name",
        "platform.example.com",
        "--caller-reference",
        "demo",
    ])["HostedZone"]["Id"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches("/hostedzone/")
        .to_string();
    let record = "kubeflow.platform.example.com";
    let (blue_alb, green_alb) = (
        "blue-alb.us-east-1.elb.amazonaws.com",
        "green-alb.us-east-1.elb.amazonaws.com",
    );
    let change = serde_json::json!({"Changes": [{"Action": "CREATE", "ResourceRecordSet": {
        "Name": record, "Type": "CNAME", "TTL": 60, "ResourceRecords": [{"Value": blue_alb}]}}]});
    moto.aws(&[
        "route53",
        "change-resource-record-sets",
        "--hosted-zone-id",
        &zone,
        "--change-batch",
        &change.to_string(),
    ]);
    let points_at = || -> String {
        moto.aws(&[
            "route53",
            "list-resource-record-sets",
            "--hosted-zone-id",
            &zone,
        ])["ResourceRecordSets"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["Type"] == "CNAME")
            .and_then(|r| r["ResourceRecords"][0]["Value"].as_str())
            .unwrap_or("none")
            .to_string()
    };

    writeln!(
        out,
        "\n5. Blue/green (seeds 001 and 003): blue {} at 1.30 (a Kubeflow user namespace, MLflow with its database password, Terraform-managed), green {} to be built at 1.31; AWS on moto {} and the simulated AWS Backup. {record} -> {}",
        blue.url(),
        green.url(),
        moto.url(),
        points_at()
    )?;
    let mut env = vec![
        ("HOME".into(), home.clone().into()),
        ("HELM_BIN".into(), tools.helm.clone().into()),
        ("TERRAFORM_BIN".into(), tools.terraform.clone().into()),
        ("NO_COLOR".into(), "1".into()),
        ("TF_CLI_CONFIG_FILE".into(), cli_config.into()),
        (
            upgrade_tf_sim_provider::SIM_KUBE_URL_VAR.into(),
            blue.url().into(),
        ),
    ];
    for (key, value) in moto.aws_env() {
        env.push((key.into(), value.into()));
    }
    let mut shell = Shell {
        bin_dir: bin_dir.to_path_buf(),
        cwd: root.clone(),
        env,
        cluster: vec![
            "--kubeconfig".into(),
            blue.kubeconfig_path().display().to_string(),
            "--kube-context".into(),
            kube_sim::CONTEXT_NAME.into(),
            "--expect-cluster".into(),
            blue.url().into(),
        ],
        state: root.join(".upgrade"),
        lockfile: root.join("platform.lock.yaml"),
        out,
    };
    let bg = "upgrade-bluegreen";
    let (blue_dir, green_dir) = (
        blue_tf.display().to_string(),
        green_tf.display().to_string(),
    );
    shell.expect(
        &[0],
        bg,
        &[
            "inputs",
            "--blue-terraform-dir",
            &blue_dir,
            "--green-terraform-dir",
            &green_dir,
            "--green-cluster",
            "mlops-platform-green",
            "--eks-version",
            "1.31",
            "--apply",
            "--yes",
        ],
    )?;
    let backup_endpoint = format!("backup={}", blue.backup_endpoint());
    shell.expect(
        &[0],
        bg,
        &[
            "storage",
            "--backup-vault",
            "kf-vault",
            "--backup-role-arn",
            &role,
            "--backup-resource",
            "arn:aws:s3:::kf-artifacts",
            "--aws-endpoint-url",
            moto.url(),
            "--aws-service-endpoint",
            &backup_endpoint,
            "--apply",
            "--yes",
        ],
    )?;
    // Green's Terraform talks to green's simulated EKS API.
    shell.set_env(upgrade_tf_sim_provider::SIM_KUBE_URL_VAR, green.url());
    let green_kubeconfig = green.kubeconfig_path().display().to_string();
    let green_flags = [
        "--green-kubeconfig",
        &green_kubeconfig,
        "--green-cluster",
        green.url(),
    ];
    let with_green = |stage: &str, rest: &[&str]| -> Vec<String> {
        [stage]
            .iter()
            .chain(green_flags.iter())
            .chain(rest.iter())
            .map(|s| s.to_string())
            .collect()
    };
    let args = with_green(
        "green-up",
        &["--green-terraform-dir", &green_dir, "--apply", "--yes"],
    );
    shell.expect(&[0], bg, &refs(&args))?;
    shell.set_env(upgrade_tf_sim_provider::SIM_KUBE_URL_VAR, blue.url());
    let green_values = root.join("green-mlflow-values.yaml");
    std::fs::write(
        &green_values,
        "# green's own settings on top of blue's values (the cloned or shared stores)\nsettings:\n  clusterName: green\n",
    )?;
    let release = format!("mlops/mlflow={}", mlflow_chart.display());
    let values = format!("mlflow={}", green_values.display());
    let args = with_green(
        "platform",
        &[
            "--release",
            &release,
            "--values",
            &values,
            "--apply",
            "--yes",
        ],
    );
    shell.expect(&[0], bg, &refs(&args))?;
    let args = with_green(
        "transfer",
        &[
            "--namespace",
            USER_NAMESPACE,
            "--allow-fresh-volumes",
            "--apply",
            "--yes",
        ],
    );
    shell.expect(&[0], bg, &refs(&args))?;

    // KServe's controller is not simulated: the demo marks green's copy of the model Ready as
    // KServe would once its predictor runs, and a real KServe model server answers for it.
    green.set_status(
        "serving.kserve.io/v1beta1",
        "InferenceService",
        Some(USER_NAMESPACE),
        "sklearn-iris",
        serde_json::json!({"conditions": [{"type": "Ready", "status": "True"}]}),
    )?;
    let port = free_port()?;
    let model_url = format!("http://127.0.0.1:{port}");
    let mut model_server = VenvServer::command(repo_root)?;
    model_server
        .arg(fixtures.join("kserve/iris_server.py"))
        .args([
            "--model_name",
            "sklearn-iris",
            "--http_port",
            &port.to_string(),
        ])
        .args(["--grpc_port", &free_port()?.to_string()]);
    let _model = VenvServer::start(
        "the KServe model server",
        model_server,
        upgrade_verify::probe::Check::http_get(format!("{model_url}/v1/models/sklearn-iris")),
    )
    .await?;
    // Green's MLflow (the release the platform stage installed) answers through a real
    // tracking server: its health and an experiment read.
    let mlflow = crate::demo::MlflowServer::start(repo_root, &root).await?;
    let checks = root.join("green-checks.yaml");
    std::fs::write(
        &checks,
        format!(
            "probes:\n- name: predict-sklearn-iris\n  check: {{type: kserve-v1, url: \"{model_url}\", model: sklearn-iris}}\n- name: mlflow-health\n  check: {{type: mlflow-health, url: \"{0}\"}}\n- name: mlflow-experiment\n  check: {{type: mlflow-experiment, url: \"{0}\", experiment: Default}}\n- name: green-api\n  check: {{type: http, url: \"{1}/version\"}}\n",
            mlflow.url,
            green.url().trim_end_matches('/')
        ),
    )?;
    let checks = checks.display().to_string();
    let args = with_green("verify-green", &["--config", &checks]);
    shell.expect(&[0, 3], bg, &refs(&args))?;

    let now = jiff::Timestamp::now();
    let window = format!(
        "{}/{}",
        now - jiff::SignedDuration::from_mins(5),
        now + jiff::SignedDuration::from_hours(1)
    );
    shell.expect(
        &[0, 3],
        bg,
        &[
            "switch",
            "--zone-id",
            &zone,
            "--record",
            record,
            "--green-target",
            green_alb,
            "--window",
            &window,
            "--aws-endpoint-url",
            moto.url(),
            "--apply",
            "--yes",
        ],
    )?;
    let after_switch = points_at();
    writeln!(shell.out, "   {record} -> {after_switch}")?;
    anyhow::ensure!(
        after_switch == green_alb,
        "the switch left {record} at {after_switch}"
    );
    shell.expect(&[0], bg, &["failback", "--apply", "--yes"])?;
    let after_failback = points_at();
    writeln!(
        shell.out,
        "   {record} -> {after_failback} (failed back; green stays up for the next try, `upgrade-bluegreen retire` deletes blue after a soak)"
    )?;
    anyhow::ensure!(
        after_failback == blue_alb,
        "the fail-back left {record} at {after_failback}"
    );
    writeln!(
        shell.out,
        "   Blue/green files: {} (journal, snapshots, run records, green's tfvars)",
        root.display()
    )?;
    blue.shutdown().await;
    green.shutdown().await;
    Ok(())
}

fn refs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

//! `upgrade-bluegreen inputs`: the green environment's variables from the blue deployment's
//! real Terraform outputs (real terraform, the simulated AWS provider, blue on kube-sim), the
//! sensitive ones never shown, bad input refused with nothing written, the file undone by
//! `upgrade-rollback`.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use kube_sim::{ControllerConfig, SimCluster};
use upgrade_core::ProcessBuilder;
use upgrade_test::TestContext;

const SECRET: &str = "mlops-blue-rds-secret-7Qz9Xw";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_come_from_blues_outputs_and_secrets_stay_in_the_file() {
    let ctx = TestContext::new();
    let sim = SimCluster::builder()
        .server_version("v1.30.4-eks-a737599")
        .controllers(ControllerConfig::fast())
        .kubeconfig_path(ctx.root().join("kubeconfig.yaml"))
        .start()
        .await
        .unwrap();
    let blue = ctx.copy_fixture("terraform/environments/blue");
    let green = ctx.work().join("green");
    std::fs::create_dir_all(&green).unwrap();
    let rc = ctx.root().join("terraformrc");
    std::fs::write(
        &rc,
        upgrade_tf_sim_provider::cli_config(crate::eks::provider_mirror()),
    )
    .unwrap();
    for args in [
        &["init", "-input=false"][..],
        &["apply", "-auto-approve", "-input=false"],
    ] {
        let mut tf = ctx.command("terraform");
        tf.args(args)
            .cwd(&blue)
            .env("TF_CLI_CONFIG_FILE", &rc)
            .env("UPGRADE_SIM_KUBE_URL", sim.url())
            .timeout(Duration::from_secs(120));
        tf.exec_async().await.unwrap_or_else(|e| panic!("{e}"));
    }
    let run = |exe: &str, args: &[&str]| {
        let mut cmd = ProcessBuilder::new(exe);
        ctx.apply_env(&mut cmd);
        cmd.arg("--kubeconfig")
            .arg(sim.kubeconfig_path())
            .args(["--kube-context", kube_sim::CONTEXT_NAME])
            .arg("--snapshot-dir")
            .arg(ctx.work().join(".upgrade"))
            .args(args)
            .env("TF_CLI_CONFIG_FILE", &rc)
            .env("UPGRADE_SIM_KUBE_URL", sim.url())
            .timeout(Duration::from_secs(120));
        upgrade_test::CommandOutput::run(&cmd).parts()
    };
    let exe = env!("CARGO_BIN_EXE_upgrade-bluegreen");
    let blue_dir = blue.display().to_string();
    let green_dir = green.display().to_string();
    let inputs = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "inputs",
            "--blue-terraform-dir",
            &blue_dir,
            "--green-terraform-dir",
            &green_dir,
            "--green-cluster",
            "mlops-platform-green",
            "--eks-version",
            "1.31",
            "--stage",
            "green",
            "--redirect-alias",
            "kubeflow",
            "--velero-bucket",
            "mlops-velero",
        ]
        .map(str::to_string)
        .to_vec();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let file = green.join("bluegreen.auto.tfvars.json");

    // The plan shows every variable, the sensitive one hidden, and writes nothing.
    let args = inputs(&[]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = run(exe, &refs);
    assert_eq!(code, 0, "{stdout}{stderr}");
    for expected in [
        "src_vpc_id = \"vpc-0b1e5a7c\" (blue output vpc_id)",
        "src_vpc_private_subnets = [\"subnet-0a1b2c3d\",\"subnet-4e5f6a7b\"] (blue output vpc_private_subnets)",
        "src_efs_fs_id = \"fs-0e1f2a3b\"",
        "src_rds_secret_name = (sensitive) (blue output rds_secret_name)",
        "eks_version = \"1.31\"",
        "cluster_name = \"mlops-platform-green\"",
    ] {
        assert!(stdout.contains(expected), "{expected} missing:\n{stdout}");
    }
    assert!(
        !format!("{stdout}{stderr}").contains(SECRET),
        "{stdout}{stderr}"
    );
    assert!(!file.exists(), "a plan writes nothing");

    // Bad input: an output blue does not have, green named as blue. Nothing written.
    for (extra, names) in [
        (
            &["--output-for", "src_vpc_id=main_vpc"][..],
            "blue's Terraform state",
        ),
        (&["--output-for", "src_nothing=x"][..], "src_nothing"),
    ] {
        let args = inputs(extra);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, stdout, stderr) = run(exe, &refs);
        assert_eq!(code, 2, "{stdout}{stderr}");
        assert!(stderr.contains(names), "{names}: {stderr}");
        assert!(!file.exists());
    }
    let args = inputs(&["--output-for", "src_vpc_id=main_vpc"]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_, _, stderr) = run(exe, &refs);
    assert!(
        stderr.contains("has no output `main_vpc` (for src_vpc_id)")
            && stderr.contains("--output-for"),
        "{stderr}"
    );
    let mut named_as_blue = inputs(&[]);
    let i = named_as_blue
        .iter()
        .position(|a| a == "mlops-platform-green")
        .unwrap();
    named_as_blue[i] = "mlops-platform-blue".into();
    let refs: Vec<&str> = named_as_blue.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = run(exe, &refs);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("is blue's own cluster name"), "{stderr}");

    // Applied: the file, 0600, with every value (the secret's name too, for Terraform).
    let args = inputs(&["--expect-cluster", sim.url(), "--apply", "--yes"]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = run(exe, &refs);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        !format!("{stdout}{stderr}").contains(SECRET),
        "{stdout}{stderr}"
    );
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(written["src_rds_secret_name"], SECRET);
    assert_eq!(written["src_vpc_cidr"], "10.0.0.0/16");
    assert_eq!(written["velero_bucket"], "mlops-velero");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The run record holds no secret: it names outputs, not values.
    let records = std::fs::read_dir(ctx.work().join(".upgrade/runs")).unwrap();
    for record in records {
        let text = std::fs::read_to_string(record.unwrap().path()).unwrap();
        assert!(!text.contains(SECRET), "{text}");
    }
    let run_id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("run: "))
        .unwrap()
        .to_string();
    let (code, stdout, stderr) = run(
        env!("CARGO_BIN_EXE_upgrade-rollback"),
        &[
            "--expect-cluster",
            sim.url(),
            "--run",
            &run_id,
            "--apply",
            "--yes",
        ],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(!file.exists(), "the file the run created is gone again");
    sim.shutdown().await;
}

/// `upgrade-bluegreen irsa` with the real AWS CLI against moto's IAM: the green provider is
/// trusted beside blue's (conditions moved to green's issuer), a role that is not an IRSA role
/// blocks, and `upgrade-rollback` puts the policy back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn irsa_trusts_green_beside_blue_and_rolls_back() {
    let ctx = TestContext::new();
    let sim = SimCluster::builder()
        .controllers(ControllerConfig::none())
        .kubeconfig_path(ctx.root().join("kubeconfig.yaml"))
        .start()
        .await
        .unwrap();
    let moto = upgrade_test::MotoServer::start();
    let blue = "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/BLUE";
    let green = "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/GREEN";
    let aws = |args: &[&str]| {
        let mut cmd = ProcessBuilder::new(ctx.require_tool("aws"));
        for (k, v) in moto.aws_env() {
            cmd.env(k, v);
        }
        cmd.args(args)
            .args(["--endpoint-url", moto.url(), "--output", "json"]);
        cmd.exec().unwrap_or_else(|e| panic!("{e}"))
    };
    let trust = serde_json::json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Federated": blue},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {
            "oidc.eks.us-east-1.amazonaws.com/id/BLUE:sub": "system:serviceaccount:kubeflow-user:default-editor"}}}]});
    aws(&[
        "iam",
        "create-role",
        "--role-name",
        "kf-user",
        "--assume-role-policy-document",
        &trust.to_string(),
    ]);
    let ec2 = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]});
    aws(&[
        "iam",
        "create-role",
        "--role-name",
        "nodes",
        "--assume-role-policy-document",
        &ec2.to_string(),
    ]);
    let policy = |role: &str| -> serde_json::Value {
        let out = aws(&["iam", "get-role", "--role-name", role]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["Role"]["AssumeRolePolicyDocument"].clone()
    };
    let run = |exe: &str, args: &[&str]| {
        let mut cmd = ProcessBuilder::new(exe);
        ctx.apply_env(&mut cmd);
        for (k, v) in moto.aws_env() {
            cmd.env(k, v);
        }
        cmd.arg("--kubeconfig")
            .arg(sim.kubeconfig_path())
            .args([
                "--kube-context",
                kube_sim::CONTEXT_NAME,
                "--expect-cluster",
                sim.url(),
            ])
            .arg("--snapshot-dir")
            .arg(ctx.work().join(".upgrade"))
            .args(args);
        upgrade_test::CommandOutput::run(&cmd).parts()
    };
    let exe = env!("CARGO_BIN_EXE_upgrade-bluegreen");
    let irsa = |roles: &[&str], apply: bool| -> Vec<String> {
        let mut a: Vec<String> = vec!["irsa".into()];
        for role in roles {
            a.extend(["--role".to_string(), role.to_string()]);
        }
        a.extend(
            [
                "--green-oidc-provider-arn",
                green,
                "--aws-endpoint-url",
                moto.url(),
            ]
            .map(str::to_string),
        );
        if apply {
            a.extend(["--apply".into(), "--yes".into()]);
        }
        a
    };
    // A role that is not an IRSA role blocks; a bad ARN is bad input.
    let args = irsa(&["kf-user", "nodes"], true);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = run(exe, &refs);
    assert_eq!(code, 4, "{stdout}{stderr}");
    assert!(
        stdout.contains("role nodes: the trust policy trusts no OIDC provider"),
        "{stdout}"
    );
    let before = policy("kf-user");

    let args = irsa(&["kf-user"], true);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = run(exe, &refs);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let after = policy("kf-user").to_string();
    assert!(
        after.contains("id/BLUE") && after.contains("id/GREEN"),
        "{after}"
    );
    assert!(
        after.contains("oidc.eks.us-east-1.amazonaws.com/id/GREEN:sub"),
        "the condition moved to green's issuer: {after}"
    );
    let run_id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("run: "))
        .unwrap()
        .to_string();
    let (code, stdout, stderr) = run(
        env!("CARGO_BIN_EXE_upgrade-rollback"),
        &["--run", &run_id, "--apply", "--yes"],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        policy("kf-user"),
        before,
        "the trust policy is back as it was"
    );
    sim.shutdown().await;
}

/// `switch` moves the platform's CNAME (moto's Route 53, the real AWS CLI) from blue to green
/// inside the maintenance window, refuses outside it unless forced, and `failback` points it
/// back at blue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_and_failback_move_the_record_inside_the_window() {
    let ctx = TestContext::new();
    let sim = SimCluster::builder()
        .controllers(ControllerConfig::none())
        .kubeconfig_path(ctx.root().join("kubeconfig.yaml"))
        .start()
        .await
        .unwrap();
    let moto = upgrade_test::MotoServer::start();
    let aws = |args: &[&str]| -> serde_json::Value {
        let mut cmd = ProcessBuilder::new(ctx.require_tool("aws"));
        for (k, v) in moto.aws_env() {
            cmd.env(k, v);
        }
        cmd.args(args)
            .args(["--endpoint-url", moto.url(), "--output", "json"]);
        let out = cmd.exec().unwrap_or_else(|e| panic!("{e}"));
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    };
    let zone = aws(&[
        "route53",
        "create-hosted-zone",
        "--name",
        "platform.example.com",
        "--caller-reference",
        "bluegreen-switch",
    ]);
    let zone_id = zone["HostedZone"]["Id"]
        .as_str()
        .unwrap()
        .trim_start_matches("/hostedzone/")
        .to_string();
    let blue_record = serde_json::json!({"Changes": [{"Action": "CREATE", "ResourceRecordSet": {
        "Name": "kubeflow.platform.example.com", "Type": "CNAME", "TTL": 60,
        "ResourceRecords": [{"Value": "blue-alb.us-east-1.elb.amazonaws.com"}]}}]});
    aws(&[
        "route53",
        "change-resource-record-sets",
        "--hosted-zone-id",
        &zone_id,
        "--change-batch",
        &blue_record.to_string(),
    ]);
    let points_at = || -> String {
        let sets = aws(&[
            "route53",
            "list-resource-record-sets",
            "--hosted-zone-id",
            &zone_id,
        ]);
        sets["ResourceRecordSets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["Type"] == "CNAME")
            .map(|r| {
                r["ResourceRecords"][0]["Value"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .unwrap()
    };
    let run = |args: &[&str]| {
        let mut cmd = ProcessBuilder::new(env!("CARGO_BIN_EXE_upgrade-bluegreen"));
        ctx.apply_env(&mut cmd);
        for (k, v) in moto.aws_env() {
            cmd.env(k, v);
        }
        cmd.arg("--kubeconfig")
            .arg(sim.kubeconfig_path())
            .args([
                "--kube-context",
                kube_sim::CONTEXT_NAME,
                "--expect-cluster",
                sim.url(),
            ])
            .arg("--snapshot-dir")
            .arg(ctx.work().join(".upgrade"))
            .args(args);
        upgrade_test::CommandOutput::run(&cmd).parts()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let rfc = |secs: i64| jiff::Timestamp::from_second(secs).unwrap().to_string();
    let switch = |window: &str, extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "switch",
            "--zone-id",
            &zone_id,
            "--record",
            "kubeflow.platform.example.com",
            "--green-target",
            "green-alb.us-east-1.elb.amazonaws.com",
            "--window",
            window,
            "--aws-endpoint-url",
            moto.url(),
            "--apply",
            "--yes",
        ]
        .map(str::to_string)
        .to_vec();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    // Outside the window (tomorrow): refused, nothing changed.
    let tomorrow = format!("{}/{}", rfc(now + 86_400), rfc(now + 90_000));
    let args = switch(&tomorrow, &[]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = run(&refs);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("outside the maintenance window") && stderr.contains("--force-window"),
        "{stderr}"
    );
    assert_eq!(points_at(), "blue-alb.us-east-1.elb.amazonaws.com");

    // Inside it: green.
    let open = format!("{}/{}", rfc(now - 600), rfc(now + 3600));
    let args = switch(&open, &[]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = run(&refs);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("blue-alb.us-east-1.elb.amazonaws.com (blue) -> green-alb.us-east-1.elb.amazonaws.com (green)"), "{stdout}");
    assert_eq!(points_at(), "green-alb.us-east-1.elb.amazonaws.com");

    // Fail back: blue again.
    let (code, stdout, stderr) = run(&["failback", "--apply", "--yes"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(points_at(), "blue-alb.us-east-1.elb.amazonaws.com");
    sim.shutdown().await;
}

//! `upgrade-bluegreen inputs`: the green environment's variables from the blue deployment's
//! real Terraform outputs (real terraform, the simulated AWS provider, blue on kube-sim), the
//! sensitive ones never shown, bad input refused with nothing written, the file undone by
//! `upgrade-rollback`.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use kube_sim::{ControllerConfig, SimCluster};
use upgrade_core::ProcessBuilder;
use upgrade_test::TestContext;

use crate::eks::reqwest_free_get;

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
    let aws = |args: &[&str]| moto.aws(args);
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
        aws(&["iam", "get-role", "--role-name", role])["Role"]["AssumeRolePolicyDocument"].clone()
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

/// `switch`, refused until green passed `verify-green`, moves the ALB listener rule's redirect
/// (moto's ELBv2) and the platform's CNAME (moto's Route 53, the real AWS CLI) from blue to green
/// inside the maintenance window, refuses outside it unless forced, and `failback` points it
/// back at blue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_and_failback_move_the_record_inside_the_window() {
    let ctx = TestContext::new();
    let (sim, green) = blue_and_green(&ctx).await;
    // A model on green that nothing has called yet, and not Ready.
    green
        .load_yaml(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: serving}\n---\napiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata: {name: sklearn-iris, namespace: serving}\nspec: {predictor: {model: {modelFormat: {name: sklearn}}}}\n",
        )
        .unwrap();
    let moto = upgrade_test::MotoServer::start();
    let aws = |args: &[&str]| moto.aws(args);
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
    // A model-serving CNAME (seed 001's "Add DNS records"), pointing at blue's ingress.
    let serving = "*.kubeflow-user-example-com.platform.example.com";
    let serving_record = serde_json::json!({"Changes": [{"Action": "CREATE", "ResourceRecordSet": {
        "Name": serving, "Type": "CNAME", "TTL": 60,
        "ResourceRecords": [{"Value": "blue-ingress.us-east-1.elb.amazonaws.com"}]}}]});
    aws(&[
        "route53",
        "change-resource-record-sets",
        "--hosted-zone-id",
        &zone_id,
        "--change-batch",
        &serving_record.to_string(),
    ]);
    let serving_points_at = || -> String {
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
            .find(|r| {
                r["Name"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("kubeflow-user-example-com")
            })
            .map(|r| {
                r["ResourceRecords"][0]["Value"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .unwrap()
    };
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
            .find(|r| r["Type"] == "CNAME" && r["Name"] == "kubeflow.platform.example.com.")
            .map(|r| {
                r["ResourceRecords"][0]["Value"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .unwrap()
    };
    // The ALB whose listener rule redirects users to the active cluster (seed 001).
    let vpc = aws(&["ec2", "create-vpc", "--cidr-block", "10.0.0.0/16"]);
    let vpc_id = vpc["Vpc"]["VpcId"].as_str().unwrap().to_string();
    let subnets: Vec<String> = [("10.0.1.0/24", "us-east-1a"), ("10.0.2.0/24", "us-east-1b")]
        .iter()
        .map(|(cidr, zone)| {
            let subnet = aws(&[
                "ec2",
                "create-subnet",
                "--vpc-id",
                &vpc_id,
                "--cidr-block",
                cidr,
                "--availability-zone",
                zone,
            ]);
            subnet["Subnet"]["SubnetId"].as_str().unwrap().to_string()
        })
        .collect();
    let lb = aws(&[
        "elbv2",
        "create-load-balancer",
        "--name",
        "platform-redirect",
        "--subnets",
        &subnets[0],
        &subnets[1],
    ]);
    let lb_arn = lb["LoadBalancers"][0]["LoadBalancerArn"]
        .as_str()
        .unwrap()
        .to_string();
    let listener = aws(&[
        "elbv2",
        "create-listener",
        "--load-balancer-arn",
        &lb_arn,
        "--protocol",
        "HTTP",
        "--port",
        "80",
        "--default-actions",
        r#"[{"Type":"fixed-response","FixedResponseConfig":{"StatusCode":"404"}}]"#,
    ]);
    let listener_arn = listener["Listeners"][0]["ListenerArn"]
        .as_str()
        .unwrap()
        .to_string();
    let rule = aws(&[
        "elbv2",
        "create-rule",
        "--listener-arn",
        &listener_arn,
        "--priority",
        "10",
        "--conditions",
        r#"[{"Field":"host-header","Values":["kflive.platform.example.com"]}]"#,
        "--actions",
        r##"[{"Type":"redirect","RedirectConfig":{"Protocol":"HTTPS","Port":"443","Host":"kubeflow.blue.platform.example.com","Path":"/#{path}","Query":"#{query}","StatusCode":"HTTP_302"}}]"##,
    ]);
    let rule_arn = rule["Rules"][0]["RuleArn"].as_str().unwrap().to_string();
    let redirects_to = || -> String {
        let rules = aws(&["elbv2", "describe-rules", "--rule-arns", &rule_arn]);
        rules["Rules"][0]["Actions"][0]["RedirectConfig"]["Host"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(redirects_to(), "kubeflow.blue.platform.example.com");
    // Blue's Terraform deployment (real terraform, the simulated AWS provider), for retire.
    let blue_tf = ctx.copy_fixture("terraform/environments/blue");
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
            .cwd(&blue_tf)
            .env("TF_CLI_CONFIG_FILE", &rc)
            .env("UPGRADE_SIM_KUBE_URL", sim.url())
            .timeout(Duration::from_secs(120));
        tf.exec_async().await.unwrap_or_else(|e| panic!("{e}"));
    }
    let run = |args: &[&str]| {
        let mut cmd = ProcessBuilder::new(env!("CARGO_BIN_EXE_upgrade-bluegreen"));
        ctx.apply_env(&mut cmd);
        cmd.env("TF_CLI_CONFIG_FILE", &rc)
            .env("UPGRADE_SIM_KUBE_URL", sim.url());
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
            "--listener-rule-arn",
            &rule_arn,
            "--green-host",
            "kubeflow.green.platform.example.com",
            "--serving-record",
            "*.kubeflow-user-example-com.platform.example.com=green-ingress.us-east-1.elb.amazonaws.com",
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
    let open = format!("{}/{}", rfc(now - 600), rfc(now + 3600));
    // Before green is verified: refused, nothing changed.
    let args = switch(&open, &[]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = run(&refs);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("green has not been verified") && stderr.contains("verify-green"),
        "{stderr}"
    );
    assert_eq!(points_at(), "blue-alb.us-east-1.elb.amazonaws.com");

    // Green verified: the model is neither Ready nor called, so it fails and the switch is
    // still refused, naming why.
    let config = ctx.work().join("green-checks.yaml");
    std::fs::write(
        &config,
        format!(
            "probes:\n- name: green-api\n  check: {{type: http, url: \"{}/version\"}}\n",
            green.url().trim_end_matches('/')
        ),
    )
    .unwrap();
    let green_kubeconfig = green.kubeconfig_path().display().to_string();
    let config_arg = config.display().to_string();
    let verify = [
        "verify-green",
        "--green-kubeconfig",
        &green_kubeconfig,
        "--green-cluster",
        green.url(),
        "--config",
        &config_arg,
    ];
    let (code, stdout, stderr) = run(&verify);
    assert_eq!(code, 4, "{stdout}{stderr}");
    assert!(
        stdout.contains("predict serving/sklearn-iris")
            && stdout.contains("InferenceService not ready"),
        "{stdout}"
    );
    let (code, stdout, stderr) = run(&refs);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("green's verification of") && stderr.contains("no probe calls it"),
        "{stderr}"
    );

    // The model removed from green (not serving yet), verified again: it passes.
    let isvcs: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
        green.client().unwrap(),
        "serving",
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("serving.kserve.io", "v1beta1", "InferenceService"),
            "inferenceservices",
        ),
    );
    isvcs
        .delete("sklearn-iris", &Default::default())
        .await
        .unwrap();
    let (code, stdout, stderr) = run(&verify);
    // Warnings only: the health checks of kinds green does not serve (cert-manager, Argo CD).
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(
        stdout.contains("PASS green-api") && stdout.contains("0 failed"),
        "{stdout}"
    );

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
    let args = switch(&open, &[]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = run(&refs);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("blue-alb.us-east-1.elb.amazonaws.com (blue) -> green-alb.us-east-1.elb.amazonaws.com (green)"), "{stdout}");
    assert!(stdout.contains("checks, with warnings)"), "{stdout}");
    assert!(stdout.contains("redirect kubeflow.blue.platform.example.com (blue) -> kubeflow.green.platform.example.com (green)"), "{stdout}");
    assert_eq!(points_at(), "green-alb.us-east-1.elb.amazonaws.com");
    assert_eq!(redirects_to(), "kubeflow.green.platform.example.com");
    assert_eq!(
        serving_points_at(),
        "green-ingress.us-east-1.elb.amazonaws.com"
    );

    // Fail back: blue again.
    let (code, stdout, stderr) = run(&["failback", "--apply", "--yes"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(points_at(), "blue-alb.us-east-1.elb.amazonaws.com");
    assert_eq!(redirects_to(), "kubeflow.blue.platform.example.com");
    assert_eq!(
        serving_points_at(),
        "blue-ingress.us-east-1.elb.amazonaws.com"
    );

    // Retire: refused while blue serves (failed back), then during the soak.
    let blue_dir = blue_tf.display().to_string();
    let retire = |extra: &[&str]| {
        let mut a = vec![
            "retire",
            "--blue-terraform-dir",
            &blue_dir,
            "--confirm-cluster",
            sim.url(),
        ];
        a.extend(extra);
        run(&a)
    };
    let (code, stdout, stderr) = retire(&[]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("is not in effect (failed or failed back)"),
        "{stderr}"
    );
    let (code, stdout, stderr) = run(&refs);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, stdout, stderr) = retire(&[]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("the soak ends at") && stderr.contains("--soak-minutes"),
        "{stderr}"
    );
    // The soak is over, but green has not been checked since traffic moved to it.
    let (code, stdout, stderr) = retire(&["--soak-minutes", "0"]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("has not passed verify-green since the switch"),
        "{stderr}"
    );
    let (code, stdout, stderr) = run(&verify);
    assert_eq!(code, 3, "{stdout}{stderr}");
    let (code, stdout, stderr) = run(&[
        "retire",
        "--blue-terraform-dir",
        &blue_dir,
        "--confirm-cluster",
        "mlops-platform-green",
        "--soak-minutes",
        "0",
    ]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("does not name the connected (blue) cluster"),
        "{stderr}"
    );
    // Keeping the add-on while its cluster goes: the destroy would take it along, so it blocks.
    let (code, stdout, stderr) =
        retire(&["--soak-minutes", "0", "--keep", "aws_eks_addon.coredns"]);
    assert_eq!(code, 4, "{stdout}{stderr}");
    assert!(stdout.contains("aws_eks_addon.coredns"), "{stdout}");
    let (code, stdout, stderr) = retire(&["--soak-minutes", "0", "--apply", "--yes"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("aws_eks_cluster.this delete") && stdout.contains("irreversible"),
        "{stdout}"
    );
    let mut list = ctx.command("terraform");
    list.args(["state", "list"])
        .cwd(&blue_tf)
        .env("TF_CLI_CONFIG_FILE", &rc);
    let listed = list
        .exec_async()
        .await
        .map(|o| o.stdout_lossy())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(listed.trim(), "", "blue's state is empty: {listed}");
    // The simulated EKS API no longer finds blue's cluster, as EKS would not.
    let eks_state = reqwest_free_get(&format!("{}/kube-sim/v1/eks", sim.url()));
    assert!(eks_state.contains("\"deleted\":true"), "{eks_state}");
    assert!(eks_state.contains("\"nodegroups\":{}"), "{eks_state}");
    // Nothing brings blue back: the rollback says so and changes nothing.
    let retire_id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("run: "))
        .unwrap()
        .to_string();
    let mut rollback = ProcessBuilder::new(env!("CARGO_BIN_EXE_upgrade-rollback"));
    ctx.apply_env(&mut rollback);
    rollback
        .arg("--kubeconfig")
        .arg(sim.kubeconfig_path())
        .args([
            "--kube-context",
            kube_sim::CONTEXT_NAME,
            "--expect-cluster",
            sim.url(),
        ])
        .arg("--snapshot-dir")
        .arg(ctx.work().join(".upgrade"))
        .args(["--run", &retire_id, "--apply", "--yes"])
        .env("TF_CLI_CONFIG_FILE", &rc);
    let (code, stdout, stderr) = upgrade_test::CommandOutput::run(&rollback).parts();
    assert_eq!(code, 5, "{stdout}{stderr}");
    assert!(
        stderr.contains("`bluegreen/retire` cannot be undone"),
        "{stderr}"
    );
    sim.shutdown().await;
    green.shutdown().await;
}

/// Two kube-sim clusters, blue with a Kubeflow user namespace (`fixtures/bluegreen`), green
/// with the platform's CRDs and one profile of its own.
async fn blue_and_green(ctx: &TestContext) -> (SimCluster, SimCluster) {
    let start = |name: &str| {
        SimCluster::builder()
            .controllers(ControllerConfig::none())
            .kubeconfig_path(ctx.root().join(format!("{name}.kubeconfig")))
            .start()
    };
    let (blue, green) = (start("blue").await.unwrap(), start("green").await.unwrap());
    let fixtures = TestContext::fixtures_dir().join("bluegreen");
    let crds = std::fs::read_to_string(fixtures.join("kubeflow-crds.yaml")).unwrap();
    for sim in [&blue, &green] {
        sim.load_yaml(&crds).unwrap();
    }
    blue.load_yaml(&std::fs::read_to_string(fixtures.join("blue-user-namespace.yaml")).unwrap())
        .unwrap();
    green
        .load_yaml(
            "apiVersion: kubeflow.org/v1\nkind: Profile\nmetadata: {name: kubeflow-user-example-com}\nspec: {owner: {kind: User, name: green-admin@example.com}}\n",
        )
        .unwrap();
    (blue, green)
}

/// `upgrade-bluegreen transfer` from blue to green with seed 001's Velero scope: the user
/// namespace's objects move (the EFS volume re-bound by handle and never reclaimed by green,
/// the StatefulSet's pod left to its controller, the EBS claim blocked until a fresh volume is
/// allowed, another team's namespace left, green's own profile kept); bad input changes
/// nothing; `upgrade-rollback` deletes what the transfer created and keeps what green had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_moves_the_user_namespace_with_velero_scope_and_is_undone() {
    let ctx = TestContext::new();
    let (blue, green) = blue_and_green(&ctx).await;
    let run = |exe: &str, args: &[&str]| {
        let mut cmd = ProcessBuilder::new(exe);
        ctx.apply_env(&mut cmd);
        cmd.arg("--kubeconfig")
            .arg(blue.kubeconfig_path())
            .args(["--kube-context", kube_sim::CONTEXT_NAME])
            .arg("--snapshot-dir")
            .arg(ctx.work().join(".upgrade"))
            .args(args)
            .timeout(Duration::from_secs(120));
        upgrade_test::CommandOutput::run(&cmd).parts()
    };
    let exe = env!("CARGO_BIN_EXE_upgrade-bluegreen");
    let green_kubeconfig = green.kubeconfig_path().display().to_string();
    let transfer_to = |green_url: &str, namespace: &str, kubeconfig: &str, extra: &[&str]| {
        let mut a: Vec<String> = [
            "transfer",
            "--green-kubeconfig",
            kubeconfig,
            "--green-cluster",
            green_url,
            "--namespace",
            namespace,
        ]
        .map(str::to_string)
        .to_vec();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let transfer = |namespace: &str, kubeconfig: &str, extra: &[&str]| {
        transfer_to(green.url(), namespace, kubeconfig, extra)
    };
    let call = |args: Vec<String>| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run(exe, &refs)
    };
    let user = "kubeflow-user-example-com";
    let green_objects = || green.dump_yaml();
    let before = green_objects();

    // The EBS claim's data cannot move: blocked, named with the fix.
    let (code, stdout, stderr) = call(transfer(user, &green_kubeconfig, &[]));
    assert_eq!(code, 4, "{stdout}{stderr}");
    let text = format!("{stdout}{stderr}");
    assert!(
        text.contains(&format!(
            "claim {user}/scratch is bound to ebs-scratch on ebs.csi.aws.com"
        )) && text.contains("--allow-fresh-volumes"),
        "{text}"
    );
    // Bad input: a namespace blue lacks; a green context that reaches blue; green named as blue.
    let blue_kubeconfig = blue.kubeconfig_path().display().to_string();
    for (args, names) in [
        (
            transfer("nope", &green_kubeconfig, &[]),
            "namespace nope does not exist",
        ),
        (
            transfer(user, &blue_kubeconfig, &[]),
            "reaches `http://127.0.0.1",
        ),
        (
            transfer_to(blue.url(), user, &blue_kubeconfig, &[]),
            "reaches the run's own cluster",
        ),
    ] {
        let (code, stdout, stderr) = call(args);
        assert_eq!(code, 2, "{stdout}{stderr}");
        assert!(stderr.contains(names), "{names}: {stderr}");
    }
    assert_eq!(green_objects(), before, "plans and refusals change nothing");

    // The plan, allowed a fresh volume: what moves, what is skipped and why.
    let (code, stdout, stderr) = call(transfer(
        user,
        &green_kubeconfig,
        &["--allow-fresh-volumes"],
    ));
    assert_eq!(code, 0, "{stdout}{stderr}");
    for expected in [
        "copy 11 objects from blue",
        "re-bind efs-mynb (efs.csi.aws.com fs-0e1f2a3b::fsap-0123) for claim kubeflow-user-example-com/mynb-volume",
        "skipped pods kubeflow-user-example-com/mynb-0: owned by StatefulSet mynb: its controller recreates it on the target; its volumes mynb-volume are moved with their claims",
        "skipped persistentvolumes ebs-scratch: not a shared file system (ebs.csi.aws.com)",
        "blue does not serve `image`",
        "copied unbound, green gives it a new, empty volume (allowed)",
    ] {
        assert!(stdout.contains(expected), "{expected} missing:\n{stdout}");
    }
    assert_eq!(green_objects(), before);

    let (code, stdout, stderr) = call(transfer(
        user,
        &green_kubeconfig,
        &[
            "--allow-fresh-volumes",
            "--expect-cluster",
            blue.url(),
            "--apply",
            "--yes",
        ],
    ));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        format!("{stdout}{stderr}").contains("10 created on green, 1 kept as green had them (profiles.kubeflow.org kubeflow-user-example-com)"),
        "{stdout}{stderr}"
    );
    let get = |api: &str, kind: &str, ns: Option<&str>, name: &str| green.get(api, kind, ns, name);
    let ns = get("v1", "Namespace", None, user).unwrap();
    assert_eq!(ns["metadata"]["annotations"]["owner"], "user@example.com");
    assert_eq!(
        ns["metadata"]["annotations"]["upgrade.mlops.dev/transferred-from"],
        blue.url().trim_end_matches('/')
    );
    let pv = get("v1", "PersistentVolume", None, "efs-mynb").unwrap();
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
    assert_eq!(pv["spec"]["csi"]["volumeHandle"], "fs-0e1f2a3b::fsap-0123");
    assert!(pv["spec"]["claimRef"].get("uid").is_none(), "{pv}");
    assert!(get("v1", "PersistentVolume", None, "ebs-scratch").is_err());
    let claim = |name| get("v1", "PersistentVolumeClaim", Some(user), name).unwrap();
    assert_eq!(claim("mynb-volume")["spec"]["volumeName"], "efs-mynb");
    assert!(claim("scratch")["spec"].get("volumeName").is_none());
    assert!(
        get("v1", "Pod", Some(user), "mynb-0").is_err(),
        "left to the controller"
    );
    let shell = get("v1", "Pod", Some(user), "debug-shell").unwrap();
    assert!(shell["spec"].get("nodeName").is_none(), "{shell}");
    assert_eq!(shell["spec"]["volumes"], serde_json::json!([]));
    let sa = get("v1", "ServiceAccount", Some(user), "default-editor").unwrap();
    assert_eq!(
        sa["secrets"],
        serde_json::json!([{"name": "registry-pull"}])
    );
    assert!(get("kubeflow.org/v1", "Notebook", Some(user), "mynb").is_ok());
    assert!(
        get(
            "serving.kserve.io/v1beta1",
            "InferenceService",
            Some(user),
            "sklearn-iris"
        )
        .is_ok()
    );
    assert!(get("v1", "ConfigMap", Some(user), "notebook-settings").is_ok());
    assert!(
        get("v1", "Namespace", None, "team-b").is_err(),
        "not in scope"
    );
    assert!(get("v1", "ConfigMap", Some("team-b"), "team-b-settings").is_err());
    assert!(
        get("kubeflow.org/v1", "Profile", None, "team-b").is_ok(),
        "cluster resources"
    );
    assert_eq!(
        get("kubeflow.org/v1", "Profile", None, user).unwrap()["spec"]["owner"]["name"],
        "green-admin@example.com",
        "what green had is kept"
    );

    // Rolled back: green as it was.
    let run_id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("run: "))
        .unwrap()
        .to_string();
    let (code, stdout, stderr) = run(
        env!("CARGO_BIN_EXE_upgrade-rollback"),
        &[
            "--expect-cluster",
            blue.url(),
            "--run",
            &run_id,
            "--apply",
            "--yes",
        ],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(green_objects(), before, "{stdout}{stderr}");
    blue.shutdown().await;
    green.shutdown().await;
}

/// `upgrade-bluegreen ack`: blue's SageMaker endpoint resources protected the way the ACK
/// runtime allows (the annotation above 0.22.1, the finalizer removed at or below), green
/// adopting each endpoint by its SageMaker name; green without the ACK runtime blocks; a bad
/// version changes nothing; `upgrade-rollback` puts both clusters back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_protects_blues_endpoints_and_adopts_them_on_green() {
    let ctx = TestContext::new();
    let (blue, green) = blue_and_green(&ctx).await;
    let fixtures = TestContext::fixtures_dir().join("bluegreen");
    let ack_crds = std::fs::read_to_string(fixtures.join("ack-crds.yaml")).unwrap();
    blue.load_yaml(&ack_crds).unwrap();
    blue.load_yaml(
        &std::fs::read_to_string(fixtures.join("blue-sagemaker-endpoints.yaml")).unwrap(),
    )
    .unwrap();
    let run = |exe: &str, args: &[&str]| {
        let mut cmd = ProcessBuilder::new(exe);
        ctx.apply_env(&mut cmd);
        cmd.arg("--kubeconfig")
            .arg(blue.kubeconfig_path())
            .args(["--kube-context", kube_sim::CONTEXT_NAME])
            .arg("--snapshot-dir")
            .arg(ctx.work().join(".upgrade"))
            .args(args)
            .timeout(Duration::from_secs(120));
        upgrade_test::CommandOutput::run(&cmd).parts()
    };
    let exe = env!("CARGO_BIN_EXE_upgrade-bluegreen");
    let green_kubeconfig = green.kubeconfig_path().display().to_string();
    let ack = |runtime: &str, apply: bool| {
        let mut a = vec![
            "ack",
            "--green-kubeconfig",
            &green_kubeconfig,
            "--green-cluster",
            green.url(),
            "--ack-runtime",
            runtime,
        ];
        if apply {
            a.extend(["--expect-cluster", blue.url(), "--apply", "--yes"]);
        }
        run(exe, &a)
    };
    let protection = || {
        blue.list(
            "sagemaker.services.k8s.aws/v1alpha1",
            "Endpoint",
            Some("ml-serving"),
        )
        .into_iter()
        .map(|e| {
            (
                e["metadata"]["name"].as_str().unwrap().to_string(),
                e["metadata"]["annotations"].clone(),
                e["metadata"]["finalizers"].clone(),
            )
        })
        .collect::<Vec<_>>()
    };
    let blue_before = protection();

    let (code, stdout, stderr) = ack("0.26.0", false);
    assert_eq!(code, 4, "{stdout}{stderr}");
    assert!(
        stdout.contains("green does not serve adoptedresources.services.k8s.aws"),
        "{stdout}"
    );
    green.load_yaml(&ack_crds).unwrap();
    let (code, stdout, stderr) = ack("0.26.0", false);
    assert_eq!(code, 4, "{stdout}{stderr}");
    assert!(
        stdout.contains("namespace ml-serving does not exist on green: move it first"),
        "{stdout}"
    );
    green
        .load_yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: ml-serving}\n")
        .unwrap();
    let green_before = green.dump_yaml();
    let (code, stdout, stderr) = ack("latest", false);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("`latest` is not a version"), "{stderr}");

    for (runtime, annotated) in [("v0.26.0", true), ("0.21.0", false)] {
        let (code, stdout, stderr) = ack(runtime, true);
        assert_eq!(code, 0, "{stdout}{stderr}");
        assert!(
            stdout.contains("endpoint ml-serving/churn (SageMaker churn-prod): protected on blue, adopted on green as ml-serving/churn-adopted"),
            "{stdout}"
        );
        for (name, annotations, finalizers) in protection() {
            if annotated {
                assert_eq!(
                    annotations["services.k8s.aws/deletion-policy"], "retain",
                    "{name}"
                );
                assert_eq!(
                    finalizers,
                    serde_json::json!(["finalizers.sagemaker.services.k8s.aws/Endpoint"])
                );
            } else {
                assert!(
                    annotations
                        .get("services.k8s.aws/deletion-policy")
                        .is_none(),
                    "{name}"
                );
                assert!(finalizers.is_null(), "{name}: {finalizers}");
            }
        }
        let adopted = green.list(
            "services.k8s.aws/v1alpha1",
            "AdoptedResource",
            Some("ml-serving"),
        );
        let names: Vec<&str> = adopted
            .iter()
            .map(|a| a["spec"]["aws"]["nameOrID"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["churn-prod", "fraud-prod"]);
        assert_eq!(
            adopted[0]["spec"]["kubernetes"]["metadata"]["annotations"]["services.k8s.aws/deletion-policy"],
            "retain"
        );
        assert_eq!(
            adopted[0]["spec"]["kubernetes"]["metadata"]["labels"]["team"],
            "growth"
        );

        let run_id = stdout
            .lines()
            .find_map(|l| l.strip_prefix("run: "))
            .unwrap()
            .to_string();
        let (code, stdout, stderr) = run(
            env!("CARGO_BIN_EXE_upgrade-rollback"),
            &[
                "--expect-cluster",
                blue.url(),
                "--run",
                &run_id,
                "--apply",
                "--yes",
            ],
        );
        assert_eq!(code, 0, "{stdout}{stderr}");
        assert_eq!(protection(), blue_before, "blue as it was");
        assert_eq!(green.dump_yaml(), green_before, "green as it was");
    }
    blue.shutdown().await;
    green.shutdown().await;
}

/// `upgrade-bluegreen storage` against moto's RDS and S3 through the real AWS CLI: blue's
/// instance is snapshotted and restored as a clone configured like it, its bucket copied;
/// names that are blue's or taken are refused; `upgrade-rollback` deletes the clone, its
/// snapshot and the copy, and blue's stores stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_clones_rds_and_copies_s3_and_rolls_back() {
    let ctx = TestContext::new();
    let sim = SimCluster::builder()
        .controllers(ControllerConfig::none())
        .kubeconfig_path(ctx.root().join("kubeconfig.yaml"))
        .start()
        .await
        .unwrap();
    let moto = upgrade_test::MotoServer::start();
    let aws = |args: &[&str]| moto.aws(args);
    for id in ["mlops-blue", "mlops-taken"] {
        aws(&[
            "rds",
            "create-db-instance",
            "--db-instance-identifier",
            id,
            "--engine",
            "mysql",
            "--db-instance-class",
            "db.t3.medium",
            "--allocated-storage",
            "20",
            "--master-username",
            "admin",
            "--master-user-password",
            "not-a-secret-1",
        ]);
    }
    aws(&["s3api", "create-bucket", "--bucket", "mlops-blue-artifacts"]);
    let body = ctx.work().join("model.bin");
    std::fs::write(&body, b"weights").unwrap();
    for key in [
        "models/iris/v1/model.bin",
        "models/churn/v3/model.bin",
        "mlflow/1/meta.yaml",
    ] {
        aws(&[
            "s3api",
            "put-object",
            "--bucket",
            "mlops-blue-artifacts",
            "--key",
            key,
            "--body",
            &body.display().to_string(),
        ]);
    }
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
            .args(args)
            .timeout(Duration::from_secs(120));
        upgrade_test::CommandOutput::run(&cmd).parts()
    };
    let exe = env!("CARGO_BIN_EXE_upgrade-bluegreen");
    let storage = |rds_clone: &str, s3_clone: &str, extra: &[&str]| {
        let mut a = vec![
            "storage",
            "--rds-instance",
            "mlops-blue",
            "--rds-clone",
            rds_clone,
            "--s3-bucket",
            "mlops-blue-artifacts",
            "--s3-clone",
            s3_clone,
            "--aws-endpoint-url",
            moto.url(),
        ];
        a.extend(extra);
        run(exe, &a)
    };
    let instances = || -> Vec<String> {
        let mut ids: Vec<String> = aws(&["rds", "describe-db-instances"])["DBInstances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["DBInstanceIdentifier"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    let buckets = || -> Vec<String> {
        aws(&["s3api", "list-buckets"])["Buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["Name"].as_str().unwrap().to_string())
            .collect()
    };

    let (code, stdout, stderr) = storage("mlops-blue", "mlops-green-artifacts", &[]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("is blue's own instance"), "{stderr}");
    let (code, stdout, stderr) = storage("mlops-taken", "mlops-green-artifacts", &[]);
    assert_eq!(code, 4, "{stdout}{stderr}");
    assert!(
        stdout.contains("RDS instance mlops-taken exists already"),
        "{stdout}"
    );
    assert_eq!(instances(), ["mlops-blue", "mlops-taken"]);

    let (code, stdout, stderr) = storage(
        "mlops-green",
        "mlops-green-artifacts",
        &["--apply", "--yes"],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("copy the 3 objects of mlops-blue-artifacts"),
        "{stdout}"
    );
    assert_eq!(instances(), ["mlops-blue", "mlops-green", "mlops-taken"]);
    let clone = aws(&[
        "rds",
        "describe-db-instances",
        "--db-instance-identifier",
        "mlops-green",
    ]);
    assert_eq!(clone["DBInstances"][0]["DBInstanceClass"], "db.t3.medium");
    let snapshots = aws(&[
        "rds",
        "describe-db-snapshots",
        "--db-instance-identifier",
        "mlops-blue",
        "--snapshot-type",
        "manual",
    ]);
    assert_eq!(
        snapshots["DBSnapshots"].as_array().unwrap().len(),
        1,
        "{snapshots}"
    );
    let copied = aws(&[
        "s3api",
        "list-objects-v2",
        "--bucket",
        "mlops-green-artifacts",
    ]);
    assert_eq!(copied["Contents"].as_array().unwrap().len(), 3, "{copied}");

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
    assert_eq!(instances(), ["mlops-blue", "mlops-taken"]);
    assert_eq!(buckets(), ["mlops-blue-artifacts"]);
    let snapshots = aws(&[
        "rds",
        "describe-db-snapshots",
        "--db-instance-identifier",
        "mlops-blue",
        "--snapshot-type",
        "manual",
    ]);
    assert_eq!(
        snapshots["DBSnapshots"],
        serde_json::json!([]),
        "{snapshots}"
    );
    sim.shutdown().await;
}

/// `upgrade-bluegreen storage --backup-vault`: seed 001's on-demand backup of blue's bucket,
/// database and file system (S3, RDS, EFS and IAM on moto; the backup jobs, which moto
/// lacks, on kube-sim's simulated AWS Backup). A missing vault or role, a role that is no
/// ARN, a store that does not exist and an ARN of no supported type exit 2 with no job
/// started; the run waits for every job; a failing job fails the run (exit 1); the rollback
/// keeps the recovery points.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_backs_up_blues_stores_into_the_vault_and_waits_for_the_jobs() {
    let ctx = TestContext::new();
    let sim = SimCluster::builder()
        .controllers(ControllerConfig::none())
        .kubeconfig_path(ctx.root().join("kubeconfig.yaml"))
        .start()
        .await
        .unwrap();
    sim.set_backup(serde_json::json!({"jobSeconds": 3}));
    let moto = upgrade_test::MotoServer::start();
    let aws = |args: &[&str]| moto.aws(args);
    aws(&["s3api", "create-bucket", "--bucket", "kf-artifacts"]);
    aws(&[
        "rds",
        "create-db-instance",
        "--db-instance-identifier",
        "kf-db",
        "--engine",
        "mysql",
        "--db-instance-class",
        "db.t3.medium",
        "--allocated-storage",
        "20",
        "--master-username",
        "admin",
        "--master-user-password",
        "not-a-secret-1",
    ]);
    let db_arn = aws(&[
        "rds",
        "describe-db-instances",
        "--db-instance-identifier",
        "kf-db",
    ])["DBInstances"][0]["DBInstanceArn"]
        .as_str()
        .unwrap()
        .to_string();
    let efs_arn = aws(&["efs", "create-file-system", "--creation-token", "kf"])["FileSystemArn"]
        .as_str()
        .unwrap()
        .to_string();
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"backup.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    let role_arn = aws(&[
        "iam",
        "create-role",
        "--role-name",
        "kf-backup",
        "--assume-role-policy-document",
        trust,
    ])["Role"]["Arn"]
        .as_str()
        .unwrap()
        .to_string();
    let backup_api = sim.backup_endpoint();
    let vault = |name: &str| {
        moto.aws_at(
            &backup_api,
            &[
                "backup",
                "describe-backup-vault",
                "--backup-vault-name",
                name,
            ],
        )
    };
    moto.aws_at(
        &backup_api,
        &[
            "backup",
            "create-backup-vault",
            "--backup-vault-name",
            "kf-vault",
        ],
    );
    let points = || {
        vault("kf-vault")["NumberOfRecoveryPoints"]
            .as_u64()
            .unwrap()
    };

    let aws_env = moto.aws_env();
    let state = ctx.work().join(".upgrade");
    let run =
        |exe: &str, args: &[&str]| crate::support::run_on(&ctx, &sim, &state, &aws_env, exe, args);
    let exe = env!("CARGO_BIN_EXE_upgrade-bluegreen");
    let service_endpoint = format!("backup={backup_api}");
    let backup = |vault: &str, role: &str, resources: &[&str], extra: &[&str]| {
        let mut a = vec![
            "storage",
            "--backup-vault",
            vault,
            "--backup-role-arn",
            role,
            "--aws-endpoint-url",
            moto.url(),
            "--aws-service-endpoint",
            &service_endpoint,
        ];
        for r in resources {
            a.extend(["--backup-resource", r]);
        }
        a.extend(extra);
        run(exe, &a)
    };
    let stores = [
        "arn:aws:s3:::kf-artifacts",
        db_arn.as_str(),
        efs_arn.as_str(),
    ];

    for (vault, role, resources, expected) in [
        (
            "kf-missing",
            role_arn.as_str(),
            &stores[..],
            "there is no backup vault kf-missing",
        ),
        (
            "kf-vault",
            "kf-backup",
            &stores[..],
            "kf-backup is not an IAM role ARN",
        ),
        (
            "kf-vault",
            "arn:aws:iam::123456789012:role/kf-gone",
            &stores[..],
            "there is no role kf-gone",
        ),
        (
            "kf-vault",
            role_arn.as_str(),
            &["arn:aws:s3:::kf-gone"][..],
            "there is no bucket kf-gone",
        ),
        (
            "kf-vault",
            role_arn.as_str(),
            &["arn:aws:sqs:us-east-1:123456789012:q"][..],
            "is not the ARN of a store AWS Backup backs up",
        ),
    ] {
        let (code, stdout, stderr) = backup(vault, role, resources, &["--apply", "--yes"]);
        assert_eq!(code, 2, "{expected}: {stdout}{stderr}");
        assert!(stderr.contains(expected), "{expected}: {stderr}");
    }
    assert_eq!(points(), 0, "a refused run starts no job");

    let (code, stdout, stderr) = backup("kf-vault", &role_arn, &stores, &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("AWS Backup: on-demand jobs for arn:aws:s3:::kf-artifacts"),
        "{stdout}"
    );
    assert_eq!(points(), 0, "a plan starts no job");

    let started = std::time::Instant::now();
    let (code, stdout, stderr) = backup("kf-vault", &role_arn, &stores, &["--apply", "--yes"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "the run waited for the jobs"
    );
    assert_eq!(points(), 3);
    let state = reqwest_free_get(&format!("{}/kube-sim/v1/backup", sim.url()));
    assert_eq!(
        state.matches("\"State\":\"COMPLETED\"").count(),
        3,
        "{state}"
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
    assert_eq!(points(), 3, "the rollback keeps the recovery points");

    sim.set_backup(serde_json::json!({"failResources": [db_arn], "jobSeconds": 0}));
    let (code, stdout, stderr) = backup("kf-vault", &role_arn, &stores, &["--apply", "--yes"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        format!("{stdout}{stderr}").contains(&format!("the backup of {db_arn}")),
        "{stdout}{stderr}"
    );
    assert!(
        format!("{stdout}{stderr}").contains("ended FAILED"),
        "{stdout}{stderr}"
    );
    sim.shutdown().await;
}

/// `upgrade-bluegreen platform` (seed 001's step 4, second half): blue's MLflow release
/// installed on green (real helm, two kube-sims) at the chart version blue runs, with blue's
/// values and green's values file on top; blue's secret values reach green but never the
/// output or the state folder. Bad flags, a release blue lacks and the wrong green cluster
/// exit 2; a chart whose kubeVersion refuses green and a release green has already block
/// (exit 4); `upgrade-rollback` uninstalls it from green.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_installs_blues_releases_on_green_and_rolls_back() {
    let ctx = TestContext::new();
    let start = |name: &str, version: &str| {
        SimCluster::builder()
            .server_version(version)
            .controllers(ControllerConfig::fast())
            .kubeconfig_path(ctx.root().join(format!("{name}.kubeconfig")))
            .start()
    };
    let blue = start("blue", "v1.30.4-eks-a737599").await.unwrap();
    let green = start("green", "v1.31.2-eks-7f9249a").await.unwrap();
    blue.add_node("blue-node", "v1.30.4-eks-a737599").unwrap();
    green.add_node("green-node", "v1.31.2-eks-7f9249a").unwrap();
    let chart = TestContext::fixtures_dir().join("charts/mlflow/0.16.0");
    let helm = |sim: &SimCluster, args: &[&str]| {
        let mut cmd = ctx.command("helm");
        cmd.args(args)
            .arg("--kubeconfig")
            .arg(sim.kubeconfig_path())
            .timeout(Duration::from_secs(120));
        cmd.exec()
            .unwrap_or_else(|e| panic!("helm {args:?}: {e}"))
            .stdout_lossy()
    };
    let secret = "blue-db-password-Zk81";
    helm(
        &blue,
        &[
            "install",
            "mlflow",
            &chart.display().to_string(),
            "-n",
            "mlops",
            "--create-namespace",
            "--wait",
            "--set",
            &format!("db.password={secret}"),
            "--set",
            "settings.clusterName=blue",
        ],
    );
    let green_values = ctx.work().join("green-mlflow.yaml");
    std::fs::write(&green_values, "settings:\n  clusterName: green\n").unwrap();
    let state = ctx.work().join(".upgrade");
    let run =
        |exe: &str, args: &[&str]| crate::support::run_on(&ctx, &blue, &state, &[], exe, args);
    let exe = env!("CARGO_BIN_EXE_upgrade-bluegreen");
    let green_kubeconfig = green.kubeconfig_path().display().to_string();
    let release = format!("mlops/mlflow={}", chart.display());
    let values = format!("mlflow={}", green_values.display());
    let platform = |release: &str, green_cluster: &str, extra: &[&str]| {
        let mut a = vec![
            "platform",
            "--green-kubeconfig",
            &green_kubeconfig,
            "--green-cluster",
            green_cluster,
            "--release",
            release,
        ];
        a.extend(extra);
        run(exe, &a)
    };

    for (release, green_cluster, extra, expected) in [
        (
            "mlflow",
            green.url(),
            &[][..],
            "is not NAMESPACE/NAME=CHART",
        ),
        (
            release.as_str(),
            green.url(),
            &["--values", "kserve=x.yaml"][..],
            "--values kserve: no --release of that name",
        ),
        (
            &format!("mlops/tracking={}", chart.display()),
            green.url(),
            &[][..],
            "blue runs no release mlops/tracking",
        ),
        (
            release.as_str(),
            blue.url(),
            &[][..],
            "not the green cluster",
        ),
    ] {
        let (code, stdout, stderr) = platform(release, green_cluster, extra);
        assert_eq!(code, 2, "{expected}: {stdout}{stderr}");
        assert!(stderr.contains(expected), "{expected}: {stderr}");
    }

    let (code, stdout, stderr) = platform(&release, green.url(), &["--values", &values]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("green: install mlops/mlflow from mlflow 0.16.0, with blue's values and"),
        "{stdout}"
    );

    // A chart whose kubeVersion stops below green's minor blocks.
    let old = ctx.copy_fixture("charts/mlflow/0.16.0");
    let chart_yaml = old.join("Chart.yaml");
    let text = std::fs::read_to_string(&chart_yaml).unwrap();
    std::fs::write(&chart_yaml, format!("{text}kubeVersion: \"<1.31.0-0\"\n")).unwrap();
    let (code, stdout, stderr) = platform(
        &format!("mlops/mlflow={}", old.display()),
        green.url(),
        &["--apply", "--yes"],
    );
    assert_eq!(code, 4, "{stdout}{stderr}");
    assert!(stdout.contains("does not install on green"), "{stdout}");

    let (code, stdout, stderr) = platform(
        &release,
        green.url(),
        &["--values", &values, "--apply", "--yes"],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    let on_green: serde_json::Value = serde_json::from_str(&helm(
        &green,
        &["get", "values", "mlflow", "-n", "mlops", "-o", "json"],
    ))
    .unwrap();
    assert_eq!(
        on_green["db"]["password"], secret,
        "blue's values reach green"
    );
    assert_eq!(
        on_green["settings"]["clusterName"], "green",
        "green's file wins"
    );
    let listed = helm(&green, &["list", "-n", "mlops", "-o", "json"]);
    assert!(listed.contains("\"chart\":\"mlflow-0.16.0\""), "{listed}");
    assert!(!format!("{stdout}{stderr}").contains(secret));
    for entry in walk(&state) {
        let text = std::fs::read_to_string(&entry).unwrap_or_default();
        assert!(
            !text.contains(secret),
            "blue's secret in {}",
            entry.display()
        );
    }

    let (code, stdout, stderr) = platform(
        &release,
        green.url(),
        &["--values", &values, "--apply", "--yes"],
    );
    assert_eq!(code, 4, "{stdout}{stderr}");
    assert!(stdout.contains("is installed on green already"), "{stdout}");

    let run_id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("run: "))
        .unwrap()
        .to_string();
    let _ = run_id;
    let (code, stdout, stderr) = run(
        env!("CARGO_BIN_EXE_upgrade-rollback"),
        &["--apply", "--yes"],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    let listed = helm(&green, &["list", "-A", "-o", "json"]);
    assert_eq!(listed.trim(), "[]", "uninstalled from green");
    let listed = helm(&blue, &["list", "-A", "-o", "json"]);
    assert!(
        listed.contains("mlflow"),
        "blue keeps its release: {listed}"
    );
    blue.shutdown().await;
    green.shutdown().await;
}

/// Every file under `dir`.
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

/// `upgrade-bluegreen configure`: Knative's domain and seed 001's Prometheus scrape jobs set
/// on green (a ConfigMap green lacks is refused first), then put back by `upgrade-rollback`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configure_sets_knative_domain_and_scrape_jobs_on_green_and_rolls_back() {
    let ctx = TestContext::new();
    let (blue, green) = blue_and_green(&ctx).await;
    let state = ctx.work().join(".upgrade");
    let run =
        |exe: &str, args: &[&str]| crate::support::run_on(&ctx, &blue, &state, &[], exe, args);
    let exe = env!("CARGO_BIN_EXE_upgrade-bluegreen");
    let green_kubeconfig = green.kubeconfig_path().display().to_string();
    let configure = |extra: &[&str]| {
        let mut a = vec![
            "configure",
            "--green-kubeconfig",
            &green_kubeconfig,
            "--green-cluster",
            green.url(),
            "--knative-domain",
            "platform.example.com",
            "--prometheus-config",
            "prometheus/prometheus-server",
        ];
        a.extend(extra);
        run(exe, &a)
    };
    let (code, stdout, stderr) = configure(&[]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("green has no ConfigMap knative-serving/config-domain"),
        "{stderr}"
    );
    green
        .load_yaml(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: knative-serving}\n---\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config-domain, namespace: knative-serving}\n\
             data: {_example: \"# the default domain\"}\n---\n\
             apiVersion: v1\nkind: Namespace\nmetadata: {name: prometheus}\n---\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata: {name: prometheus-server, namespace: prometheus}\n\
             data:\n  prometheus.yml: |\n    scrape_configs:\n    - job_name: kubernetes-pods\n",
        )
        .unwrap();
    let data = |ns: &str, name: &str| {
        green.get("v1", "ConfigMap", Some(ns), name).unwrap()["data"].clone()
    };
    let before = (
        data("knative-serving", "config-domain"),
        data("prometheus", "prometheus-server"),
    );
    let (code, stdout, stderr) = configure(&["--apply", "--yes"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        data("knative-serving", "config-domain")["platform.example.com"],
        ""
    );
    let prometheus = data("prometheus", "prometheus-server")["prometheus.yml"]
        .as_str()
        .unwrap()
        .to_string();
    for job in [
        "kubernetes-pods",
        "ml-pipeline",
        "katib-controller",
        "notebook-controller",
    ] {
        assert!(prometheus.contains(job), "{job}: {prometheus}");
    }
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
        (
            data("knative-serving", "config-domain"),
            data("prometheus", "prometheus-server")
        ),
        before
    );
    blue.shutdown().await;
    green.shutdown().await;
}

/// `upgrade-bluegreen configure`, seed 001's other green settings: blue's model-serving
/// ingress (its certificate annotation) and an Istio authorization policy copied to green as
/// they are, and the FSx permissions Job run on green against the moved claim. An object
/// blue lacks, a kind blue does not serve and a claim green lacks exit 2; a kind green does
/// not serve blocks (exit 4); `upgrade-rollback` deletes the copies and the Job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configure_copies_ingress_and_policy_from_blue_and_runs_fsx_permissions() {
    let ctx = TestContext::new();
    let blue = SimCluster::builder()
        .controllers(ControllerConfig::none())
        .kubeconfig_path(ctx.root().join("blue.kubeconfig"))
        .start()
        .await
        .unwrap();
    let green = SimCluster::builder()
        .controllers(ControllerConfig::fast())
        .kubeconfig_path(ctx.root().join("green.kubeconfig"))
        .start()
        .await
        .unwrap();
    green
        .add_node("green-node", kube_sim::DEFAULT_SERVER_VERSION)
        .unwrap();
    let policy_crd = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: authorizationpolicies.security.istio.io}\nspec:\n  group: security.istio.io\n  scope: Namespaced\n  names: {plural: authorizationpolicies, singular: authorizationpolicy, kind: AuthorizationPolicy, listKind: AuthorizationPolicyList}\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}\n";
    blue.load_yaml(policy_crd).unwrap();
    blue.load_yaml(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: istio-system}\n---\n\
         apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: istio-ingress\n  namespace: istio-system\n  annotations:\n    alb.ingress.kubernetes.io/certificate-arn: arn:aws:acm:us-east-1:123456789012:certificate/kf\n    alb.ingress.kubernetes.io/scheme: internet-facing\nspec:\n  ingressClassName: alb\n  rules:\n  - host: \"*.platform.example.com\"\n    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: istio-ingressgateway, port: {number: 80}}}}]}\n---\n\
         apiVersion: v1\nkind: Namespace\nmetadata: {name: kubeflow-user-example-com}\n---\n\
         apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: allow-predictor, namespace: kubeflow-user-example-com}\nspec:\n  action: ALLOW\n  selector: {matchLabels: {serving.knative.dev/service: sklearn-iris-predictor}}\n  rules: [{to: [{operation: {paths: [/v1/models/*, /v2/models/*]}}]}]\n",
    )
    .unwrap();
    green
        .load_yaml(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: istio-system}\n---\n\
             apiVersion: v1\nkind: Namespace\nmetadata: {name: kubeflow-user-example-com}\n---\n\
             apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: fsx-claim, namespace: kubeflow-user-example-com}\nspec: {accessModes: [ReadWriteMany], storageClassName: fsx-sc, resources: {requests: {storage: 1200Gi}}}\n",
        )
        .unwrap();
    let state = ctx.work().join(".upgrade");
    let run =
        |exe: &str, args: &[&str]| crate::support::run_on(&ctx, &blue, &state, &[], exe, args);
    let exe = env!("CARGO_BIN_EXE_upgrade-bluegreen");
    let green_kubeconfig = green.kubeconfig_path().display().to_string();
    let configure = |objects: &[&str], claims: &[&str], extra: &[&str]| {
        let mut a = vec![
            "configure",
            "--green-kubeconfig",
            &green_kubeconfig,
            "--green-cluster",
            green.url(),
        ];
        for o in objects {
            a.extend(["--copy-from-blue", o]);
        }
        for c in claims {
            a.extend(["--fsx-permissions", c]);
        }
        a.extend(extra);
        run(exe, &a)
    };
    let ingress = "ingresses/istio-system/istio-ingress";
    let policy =
        "authorizationpolicies.security.istio.io/kubeflow-user-example-com/allow-predictor";
    let claim = "kubeflow-user-example-com/fsx-claim";
    for (objects, claims, expected) in [
        (
            &["ingresses/istio-system/missing"][..],
            &[][..],
            "blue has no ingresses.networking.k8s.io istio-system/missing",
        ),
        (
            &["gateways.example.io/x/y"][..],
            &[][..],
            "blue does not serve `gateways.example.io`",
        ),
        (&["ingresses/istio-ingress"][..], &[][..], "is namespaced"),
        (
            &[][..],
            &["kubeflow-user-example-com/nope"][..],
            "green has no claim kubeflow-user-example-com/nope",
        ),
    ] {
        let (code, stdout, stderr) = configure(objects, claims, &["--apply", "--yes"]);
        assert_eq!(code, 2, "{expected}: {stdout}{stderr}");
        assert!(stderr.contains(expected), "{expected}: {stderr}");
    }
    let (code, stdout, stderr) = configure(&[ingress, policy], &[claim], &["--apply", "--yes"]);
    assert_eq!(code, 4, "{stdout}{stderr}");
    assert!(
        stdout.contains("green does not serve authorizationpolicies.security.istio.io"),
        "{stdout}"
    );
    assert!(
        green
            .list("networking.k8s.io/v1", "Ingress", None)
            .is_empty(),
        "nothing changed"
    );

    green.load_yaml(policy_crd).unwrap();
    let (code, stdout, stderr) = configure(&[ingress, policy], &[claim], &["--apply", "--yes"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let copied = green
        .get(
            "networking.k8s.io/v1",
            "Ingress",
            Some("istio-system"),
            "istio-ingress",
        )
        .unwrap();
    assert_eq!(
        copied["metadata"]["annotations"]["alb.ingress.kubernetes.io/certificate-arn"],
        "arn:aws:acm:us-east-1:123456789012:certificate/kf"
    );
    let copied_policy = green
        .get(
            "security.istio.io/v1",
            "AuthorizationPolicy",
            Some("kubeflow-user-example-com"),
            "allow-predictor",
        )
        .unwrap();
    assert_eq!(copied_policy["spec"]["action"], "ALLOW");
    let job = green
        .get(
            "batch/v1",
            "Job",
            Some("kubeflow-user-example-com"),
            "fsx-permissions-fsx-claim",
        )
        .unwrap();
    assert_eq!(
        job["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "fsx-claim"
    );
    assert!(
        job["status"]["succeeded"].as_i64().unwrap_or(0) >= 1,
        "{job}"
    );

    let (code, stdout, stderr) = run(
        env!("CARGO_BIN_EXE_upgrade-rollback"),
        &["--apply", "--yes"],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        green
            .list("networking.k8s.io/v1", "Ingress", None)
            .is_empty()
    );
    assert!(
        green
            .list("security.istio.io/v1", "AuthorizationPolicy", None)
            .is_empty()
    );
    assert!(
        green
            .get(
                "batch/v1",
                "Job",
                Some("kubeflow-user-example-com"),
                "fsx-permissions-fsx-claim"
            )
            .is_err()
            || green
                .list("batch/v1", "Job", None)
                .iter()
                .all(|j| !j["metadata"]["deletionTimestamp"].is_null()),
        "the Job is deleted"
    );
    assert_eq!(
        blue.list("networking.k8s.io/v1", "Ingress", None).len(),
        1,
        "blue keeps its own"
    );
    blue.shutdown().await;
    green.shutdown().await;
}

/// `upgrade-bluegreen green-up`: the green environment (its variables from `inputs`) planned
/// and reviewed on a copy, applied with the real terraform (the simulated AWS provider creates
/// green's cluster, whose API server is a second kube-sim at 1.31), green's API server awaited
/// at 1.31; `upgrade-rollback` destroys what the apply created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn green_up_creates_green_from_its_terraform_and_rolls_back() {
    let ctx = TestContext::new();
    let start = |name: &str, version: &str| {
        SimCluster::builder()
            .server_version(version)
            .controllers(ControllerConfig::fast())
            .kubeconfig_path(ctx.root().join(format!("{name}.kubeconfig")))
            .start()
    };
    let blue = start("blue", "v1.30.4-eks-a737599").await.unwrap();
    let green = start("green", "v1.31.2-eks-7f9249a").await.unwrap();
    let blue_tf = ctx.copy_fixture("terraform/environments/blue");
    let green_tf = ctx.copy_fixture("terraform/environments/green");
    let rc = ctx.root().join("terraformrc");
    std::fs::write(
        &rc,
        upgrade_tf_sim_provider::cli_config(crate::eks::provider_mirror()),
    )
    .unwrap();
    let terraform = |dir: &std::path::Path, sim: &SimCluster, args: &[&str]| {
        let mut tf = ctx.command("terraform");
        tf.args(args)
            .cwd(dir)
            .env("TF_CLI_CONFIG_FILE", &rc)
            .env("UPGRADE_SIM_KUBE_URL", sim.url())
            .timeout(Duration::from_secs(120));
        tf.exec().unwrap_or_else(|e| panic!("{e}")).stdout_lossy()
    };
    terraform(&blue_tf, &blue, &["init", "-input=false"]);
    terraform(&blue_tf, &blue, &["apply", "-auto-approve", "-input=false"]);
    let run = |exe: &str, sim: &SimCluster, args: &[&str]| {
        let mut cmd = ProcessBuilder::new(exe);
        ctx.apply_env(&mut cmd);
        cmd.arg("--kubeconfig")
            .arg(blue.kubeconfig_path())
            .args([
                "--kube-context",
                kube_sim::CONTEXT_NAME,
                "--expect-cluster",
                blue.url(),
            ])
            .arg("--snapshot-dir")
            .arg(ctx.work().join(".upgrade"))
            .args(args)
            .env("TF_CLI_CONFIG_FILE", &rc)
            .env("UPGRADE_SIM_KUBE_URL", sim.url())
            .timeout(Duration::from_secs(180));
        upgrade_test::CommandOutput::run(&cmd).parts()
    };
    let exe = env!("CARGO_BIN_EXE_upgrade-bluegreen");
    let (green_dir, blue_dir) = (
        green_tf.display().to_string(),
        blue_tf.display().to_string(),
    );
    let green_kubeconfig = green.kubeconfig_path().display().to_string();
    let green_up = |extra: &[&str]| {
        let mut a = vec![
            "green-up",
            "--green-terraform-dir",
            &green_dir,
            "--green-kubeconfig",
            &green_kubeconfig,
            "--green-cluster",
            green.url(),
        ];
        a.extend(extra);
        run(exe, &green, &a)
    };
    let (code, stdout, stderr) = green_up(&[]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("bluegreen.auto.tfvars.json is missing")
            && stderr.contains("upgrade-bluegreen inputs"),
        "{stderr}"
    );
    let (code, stdout, stderr) = run(
        exe,
        &blue,
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
    );
    assert_eq!(code, 0, "{stdout}{stderr}");

    let (code, stdout, stderr) = green_up(&[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("aws_eks_cluster.this create"), "{stdout}");
    assert!(
        !green_tf.join("terraform.tfstate").exists() && !green_tf.join(".terraform").exists(),
        "a plan changes nothing in green's folder"
    );
    let (code, stdout, stderr) = green_up(&["--apply", "--yes"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("wait until green's API server") && stdout.contains("at 1.31"),
        "{stdout}"
    );
    let listed = terraform(&green_tf, &green, &["state", "list"]);
    for address in [
        "aws_eks_cluster.this",
        "aws_eks_node_group.default",
        "aws_eks_addon.coredns",
    ] {
        assert!(listed.contains(address), "{address}: {listed}");
    }
    let run_id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("run: "))
        .unwrap()
        .to_string();
    let (code, stdout, stderr) = run(
        env!("CARGO_BIN_EXE_upgrade-rollback"),
        &green,
        &["--run", &run_id, "--apply", "--yes"],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        terraform(&green_tf, &green, &["state", "list"]).trim(),
        "",
        "green destroyed"
    );
    blue.shutdown().await;
    green.shutdown().await;
}

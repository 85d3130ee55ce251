//! The typed EKS API against the real AWS CLI and kube-sim's simulated EKS endpoint, whose
//! cluster version is the API server's: insights block an update until forced, a rollback
//! within the window goes back one minor, add-ons update and their versions are checked.

use std::time::Duration;

use kube_sim::{ControllerConfig, SimCluster};
use serde_json::json;
use upgrade_aws::{Eks, InsightFilter};

async fn sim() -> SimCluster {
    SimCluster::builder()
        .server_version("v1.30.4-eks-a737599")
        .controllers(ControllerConfig::none())
        .start()
        .await
        .expect("kube-sim starts")
}

fn eks(sim: &SimCluster) -> Eks {
    Eks::builder("dev")
        .program(upgrade_test::require_tool("aws"))
        .endpoint_url(sim.eks_endpoint())
        .region("us-east-1")
        // The CLI signs every request; the simulation accepts any key.
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

fn insight(id: &str, category: &str, version: &str, status: &str) -> serde_json::Value {
    json!({
        "id": id, "name": format!("{id} check"), "category": category,
        "kubernetesVersion": version, "insightStatus": {"status": status, "reason": "seen"},
        "recommendation": "Move the clients to the replacement API",
        "categorySpecificSummary": {"deprecationDetails": [{
            "usage": "/apis/flowcontrol.apiserver.k8s.io/v1beta3/flowschemas",
            "replacedWith": "/apis/flowcontrol.apiserver.k8s.io/v1/flowschemas",
            "stopServingVersion": "1.32",
            "clientStats": [{"userAgent": "argo-cd/v2.13", "numberOfRequestsLast30Days": 12}]}]}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insights_block_an_update_until_forced_and_a_rollback_goes_back_within_the_window() {
    let sim = sim().await;
    sim.set_eks(json!({
        "name": "dev", "createdVersion": "1.29",
        "insights": [
            insight("apis", "UPGRADE_READINESS", "1.31", "ERROR"),
            insight("addons", "UPGRADE_READINESS", "1.31", "WARNING"),
            insight("later", "UPGRADE_READINESS", "1.32", "ERROR"),
        ]
    }));
    let eks = eks(&sim);
    let cluster = eks.describe_cluster().await.unwrap();
    assert_eq!(
        (
            cluster.name.as_str(),
            cluster.version.as_str(),
            cluster.status.as_str()
        ),
        ("dev", "1.30", "ACTIVE")
    );

    let listed = eks
        .list_insights(&InsightFilter::for_version("1.31"))
        .await
        .unwrap();
    let names: Vec<(&str, &str)> = listed.iter().map(|i| (i.id.as_str(), i.status())).collect();
    assert_eq!(names, [("apis", "ERROR"), ("addons", "WARNING")]);
    let full = eks.describe_insight("apis").await.unwrap();
    let detail = &full.category_specific_summary.unwrap().deprecation_details[0];
    assert_eq!(detail.client_stats[0].user_agent, "argo-cd/v2.13");
    assert_eq!(detail.client_stats[0].number_of_requests_last30_days, 12);

    let refused = eks.update_cluster_version("1.31", false).await.unwrap_err();
    assert_eq!(
        refused.aws_code(),
        Some("InvalidStateException"),
        "{refused}"
    );
    assert!(refused.to_string().contains("apis check"), "{refused}");
    assert_eq!(
        sim.server_version(),
        "v1.30.4-eks-a737599",
        "nothing changed"
    );

    let update = eks.update_cluster_version("1.31", true).await.unwrap();
    assert_eq!(update.kind, "VersionUpdate");
    let done = eks.describe_update(&update.id, None).await.unwrap();
    assert_eq!(done.status, "Successful");
    assert_eq!(
        sim.server_version(),
        "v1.31.0-eks-a737599",
        "the API server moved"
    );

    // Back one minor within the window: a VersionRollback.
    let back = eks.update_cluster_version("1.30", false).await.unwrap();
    assert_eq!(back.kind, "VersionRollback");
    assert_eq!(eks.describe_cluster().await.unwrap().version, "1.30");
    // Not below the version the cluster was rolled back to without an upgrade to it.
    let err = eks.update_cluster_version("1.29", false).await.unwrap_err();
    assert_eq!(err.aws_code(), Some("InvalidRequestException"), "{err}");
    // Skipping a minor is refused the way EKS refuses it.
    let err = eks.update_cluster_version("1.32", false).await.unwrap_err();
    assert_eq!(err.aws_code(), Some("InvalidParameterException"), "{err}");

    eks.start_insights_refresh().await.unwrap();
    assert_eq!(
        eks.describe_insights_refresh().await.unwrap().status,
        "COMPLETED"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_addons_are_described_updated_and_checked_against_the_catalog() {
    let sim = sim().await;
    sim.set_eks(json!({
        "name": "dev",
        "addons": {"vpc-cni": {"addonVersion": "v1.19.0-eksbuild.1", "configurationValues": "{\"env\":{\"WARM_IP_TARGET\":\"5\"}}"}},
        "addonVersions": [{"addonName": "vpc-cni", "addonVersions": [
            {"addonVersion": "v1.20.1-eksbuild.3", "compatibilities": [{"clusterVersion": "1.30", "defaultVersion": true}, {"clusterVersion": "1.31", "defaultVersion": true}]},
            {"addonVersion": "v1.19.0-eksbuild.1", "compatibilities": [{"clusterVersion": "1.30", "defaultVersion": false}]}
        ]}]
    }));
    let eks = eks(&sim);
    let addon = eks.describe_addon("vpc-cni").await.unwrap().unwrap();
    assert_eq!(addon.addon_version, "v1.19.0-eksbuild.1");
    assert_eq!(addon.status, "ACTIVE");
    assert!(eks.describe_addon("coredns").await.unwrap().is_none());
    let catalog = eks
        .describe_addon_versions("1.31", Some("vpc-cni"))
        .await
        .unwrap();
    assert_eq!(
        catalog["addons"][0]["addonVersions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let update = eks
        .update_addon(
            "vpc-cni",
            "v1.20.1-eksbuild.3",
            addon.configuration_values.as_deref(),
            "PRESERVE",
        )
        .await
        .unwrap();
    assert_eq!(update.kind, "AddonUpdate");
    let now = eks.describe_addon("vpc-cni").await.unwrap().unwrap();
    assert_eq!(now.addon_version, "v1.20.1-eksbuild.3");
    assert_eq!(now.configuration_values, addon.configuration_values, "kept");
    let err = eks
        .update_addon("vpc-cni", "v9.9.9-eksbuild.1", None, "PRESERVE")
        .await
        .unwrap_err();
    assert_eq!(err.aws_code(), Some("InvalidParameterException"), "{err}");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_missing_cli_is_told_apart_from_an_aws_error() {
    let err = Eks::builder("dev")
        .program("/nonexistent/aws")
        .build()
        .unwrap_err();
    assert!(matches!(err, upgrade_aws::Error::NotRun(_)), "{err:?}");
    assert_eq!(err.aws_code(), None);
}

/// The AWS side of blue/green runs on moto's server: the real AWS CLI creates and reads an S3
/// bucket, an IAM role's trust policy, an RDS instance and its snapshot, a Route 53 zone and
/// record, and an AWS Backup vault there (the services the blue/green flow drives).
#[test]
fn the_aws_cli_runs_against_moto_for_the_blue_green_services() {
    let moto = upgrade_test::MotoServer::start();
    let aws = |args: &[&str]| moto.aws(args);
    aws(&["s3api", "create-bucket", "--bucket", "mlops-blue-artifacts"]);
    let buckets = aws(&["s3api", "list-buckets"]);
    assert_eq!(buckets["Buckets"][0]["Name"], "mlops-blue-artifacts");

    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Federated":"arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/BLUE"},"Action":"sts:AssumeRoleWithWebIdentity"}]}"#;
    aws(&[
        "iam",
        "create-role",
        "--role-name",
        "kf-profile",
        "--assume-role-policy-document",
        trust,
    ]);
    let role = aws(&["iam", "get-role", "--role-name", "kf-profile"]);
    assert!(
        role["Role"]["AssumeRolePolicyDocument"]
            .to_string()
            .contains("id/BLUE")
    );

    aws(&[
        "rds",
        "create-db-instance",
        "--db-instance-identifier",
        "mlops-blue",
        "--engine",
        "mysql",
        "--db-instance-class",
        "db.t3.micro",
        "--master-username",
        "admin",
        "--master-user-password",
        "not-a-real-password",
        "--allocated-storage",
        "20",
    ]);
    aws(&[
        "rds",
        "create-db-snapshot",
        "--db-instance-identifier",
        "mlops-blue",
        "--db-snapshot-identifier",
        "mlops-blue-before-green",
    ]);
    let snapshots = aws(&[
        "rds",
        "describe-db-snapshots",
        "--db-instance-identifier",
        "mlops-blue",
    ]);
    assert!(
        snapshots["DBSnapshots"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["DBSnapshotIdentifier"] == "mlops-blue-before-green"),
        "{snapshots}"
    );

    let zone = aws(&[
        "route53",
        "create-hosted-zone",
        "--name",
        "platform.example.com",
        "--caller-reference",
        "blue-green-test",
    ]);
    assert!(zone["HostedZone"]["Id"].as_str().is_some(), "{zone}");

    aws(&[
        "backup",
        "create-backup-vault",
        "--backup-vault-name",
        "mlops-vault",
    ]);
    let vaults = aws(&["backup", "list-backup-vaults"]);
    assert_eq!(
        vaults["BackupVaultList"][0]["BackupVaultName"],
        "mlops-vault"
    );
}

/// On-demand AWS Backup jobs (seed 001's snapshot-state.sh): moto 5.2 has no backup jobs, so
/// `backup` goes to kube-sim's simulated endpoint while EFS stays on moto, through one handle
/// with a per-service endpoint. A job runs, then completes; its idempotency token answers
/// with the same job; a missing vault, a role that is no ARN and a resource set to fail are
/// AWS's errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_jobs_run_on_the_simulated_endpoint_beside_moto() {
    let sim = sim().await;
    sim.set_backup(json!({"jobSeconds": 4}));
    let moto = upgrade_test::MotoServer::start();
    let file_system = moto.aws(&["efs", "create-file-system", "--creation-token", "kf"]);
    let fs_id = file_system["FileSystemId"].as_str().unwrap().to_string();
    let fs_arn = file_system["FileSystemArn"].as_str().unwrap().to_string();
    let mut builder = Eks::builder("")
        .program(upgrade_test::require_tool("aws"))
        .endpoint_url(moto.url())
        .service_endpoint("backup", sim.backup_endpoint())
        .timeout(Duration::from_secs(60));
    for (key, value) in moto.aws_env() {
        builder = builder.env(key, value);
    }
    let backup = builder.clone().build_backup().unwrap();
    let efs = builder.build_efs().unwrap();

    assert_eq!(
        efs.file_system(&fs_id).await.unwrap().unwrap()["FileSystemArn"],
        fs_arn.as_str()
    );
    assert!(efs.file_system("fs-00000000").await.unwrap().is_none());

    assert!(backup.vault("kubeflow-vault").await.unwrap().is_none());
    let role = "arn:aws:iam::123456789012:role/kubeflow-backup";
    let missing = backup
        .start_job("kubeflow-vault", &fs_arn, role, "t-1")
        .await
        .unwrap_err();
    assert_eq!(
        missing.aws_code(),
        Some("ResourceNotFoundException"),
        "{missing}"
    );

    let vault = moto.aws_at(
        &sim.backup_endpoint(),
        &[
            "backup",
            "create-backup-vault",
            "--backup-vault-name",
            "kubeflow-vault",
        ],
    );
    assert_eq!(vault["BackupVaultName"], "kubeflow-vault", "{vault}");
    assert!(backup.vault("kubeflow-vault").await.unwrap().is_some());
    let not_arn = backup
        .start_job("kubeflow-vault", &fs_arn, "kubeflow-backup", "t-2")
        .await
        .unwrap_err();
    assert_eq!(
        not_arn.aws_code(),
        Some("InvalidParameterValueException"),
        "{not_arn}"
    );

    let started = backup
        .start_job("kubeflow-vault", &fs_arn, role, "run-1-0")
        .await
        .unwrap();
    let id = started["BackupJobId"].as_str().unwrap().to_string();
    let again = backup
        .start_job("kubeflow-vault", &fs_arn, role, "run-1-0")
        .await
        .unwrap();
    assert_eq!(
        again["BackupJobId"],
        id.as_str(),
        "the same token answers with the same job"
    );
    assert_eq!(backup.job(&id).await.unwrap()["State"], "RUNNING");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let done = loop {
        let job = backup.job(&id).await.unwrap();
        if job["State"] != "RUNNING" || std::time::Instant::now() > deadline {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(done["State"], "COMPLETED", "{done}");
    assert_eq!(done["ResourceType"], "EFS");

    let bucket = "arn:aws:s3:::kubeflow-artifacts";
    sim.set_backup(json!({"failResources": [bucket], "jobSeconds": 0}));
    let failing = backup
        .start_job("kubeflow-vault", bucket, role, "run-1-1")
        .await
        .unwrap();
    let failed = backup
        .job(failing["BackupJobId"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(failed["State"], "FAILED", "{failed}");
    assert!(failed["StatusMessage"].as_str().unwrap().contains(bucket));
}

/// A node's instance replaced in its Auto Scaling group on moto: found in its group, then
/// terminated with the desired capacity kept, so the group launches another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_is_replaced_in_its_auto_scaling_group() {
    let moto = upgrade_test::MotoServer::start();
    let before = moto.auto_scaling_group("eks-default-ng", 2);
    assert_eq!(before.len(), 2, "{before:?}");
    let mut builder = Eks::builder("")
        .program(upgrade_test::require_tool("aws"))
        .endpoint_url(moto.url());
    for (key, value) in moto.aws_env() {
        builder = builder.env(key, value);
    }
    let asg = builder.build_autoscaling().unwrap();
    let found = asg.instance(&before[0]).await.unwrap().unwrap();
    assert_eq!(found.auto_scaling_group_name, "eks-default-ng");
    assert!(asg.instance("i-0000000000000dead").await.unwrap().is_none());
    asg.replace_instance(&before[0]).await.unwrap();
    let after = moto.auto_scaling_instances("eks-default-ng");
    assert_eq!(after.len(), 2, "the desired capacity stays: {after:?}");
    assert!(!after.contains(&before[0]), "{after:?}");
    assert!(after.contains(&before[1]));
    let listed = asg.group_instances("eks-default-ng").await.unwrap();
    assert_eq!(listed.len(), 2);
}

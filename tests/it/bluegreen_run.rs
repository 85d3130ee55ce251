//! The blue/green stages, each killed at every step boundary, then resumed (it must finish
//! as an unkilled run does) or rolled back (blue, green and AWS back as they were): the
//! cluster stages (transfer, ACK, configure) compared object by object, the platform's Helm
//! install on green, and the AWS stages (storage, IRSA, switch) against moto.
//!
//! The kill is real: the test binary re-executes itself as the run (`bluegreen_run_child`)
//! with `BLUEGREEN_RUN_KILL_AT`, which it turns into the executor's `kill_at` option. Both
//! kube-sims live in the parent, so the clusters outlive the killed run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube_sim::{ControllerConfig, SimCluster};
use serde_json::Value;
use upgrade_core::ProcessBuilder;
use upgrade_core::executor::{Boundary, ExecutorOptions};
use upgrade_flows::context::FlowContext;
use upgrade_flows::flows::bluegreen::{
    AckSpec, ConfigureSpec, GreenCluster, TransferSpec, plan_ack, plan_configure, plan_transfer,
};
use upgrade_flows::flows::rollback::{self, RollbackSpec};
use upgrade_flows::run::Planned;
use upgrade_kube::connect::ConnectOptions;
use upgrade_test::TestContext;

/// The upgrade lock's TTL in these runs; the parent waits it out after each kill.
const LOCK_TTL: Duration = Duration::from_secs(1);

const CHILD_VAR: &str = "BLUEGREEN_RUN_CHILD_DIR";
/// `<stage>:<step>:<boundary>` where the child run kills itself (the test's own variable).
const KILL_AT_VAR: &str = "BLUEGREEN_RUN_KILL_AT";
/// The storage or switch command's flags, for the child to plan the same run.
const ARGS_VAR: &str = "BLUEGREEN_RUN_ARGS";

/// Each stage and its steps, in run order.
const STAGES: &[(&str, &[&str])] = &[
    ("transfer", &["bluegreen/transfer"]),
    ("ack", &["bluegreen/ack-protect", "bluegreen/ack-adopt"]),
    (
        "configure",
        &[
            "bluegreen/knative-domain",
            "bluegreen/prometheus-scrape-jobs",
            "bluegreen/copy-from-blue",
        ],
    ),
];

/// Blue and green on kube-sim, as the bins tests build them, with the ACK kinds, the
/// endpoints, the namespace and the ConfigMaps the three stages need.
async fn clusters(root: &Path) -> (SimCluster, SimCluster) {
    std::fs::create_dir_all(root).unwrap();
    let start = |name: &str| {
        SimCluster::builder()
            .controllers(ControllerConfig::none())
            .kubeconfig_path(root.join(format!("{name}.kubeconfig")))
            .start()
    };
    let (blue, green) = (start("blue").await.unwrap(), start("green").await.unwrap());
    let fixtures = TestContext::fixtures_dir().join("bluegreen");
    let read = |name: &str| std::fs::read_to_string(fixtures.join(name)).unwrap();
    for sim in [&blue, &green] {
        sim.load_yaml(&read("kubeflow-crds.yaml")).unwrap();
        sim.load_yaml(&read("ack-crds.yaml")).unwrap();
    }
    blue.load_yaml(&read("blue-user-namespace.yaml")).unwrap();
    blue.load_yaml(&read("blue-sagemaker-endpoints.yaml"))
        .unwrap();
    // The model-serving ingress configure copies to green.
    blue.load_yaml(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: istio-system}\n---\n\
         apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: istio-ingress, namespace: istio-system, annotations: {alb.ingress.kubernetes.io/certificate-arn: arn:aws:acm:us-east-1:123456789012:certificate/kf}}\n\
         spec: {rules: [{host: \"*.platform.example.com\"}]}\n",
    )
    .unwrap();
    green
        .load_yaml(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: ml-serving}\n---\n\
             apiVersion: v1\nkind: Namespace\nmetadata: {name: istio-system}\n---\n\
             apiVersion: v1\nkind: Namespace\nmetadata: {name: knative-serving}\n---\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config-domain, namespace: knative-serving}\n\
             data: {_example: \"# the default domain\"}\n---\n\
             apiVersion: v1\nkind: Namespace\nmetadata: {name: prometheus}\n---\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata: {name: prometheus-server, namespace: prometheus}\n\
             data:\n  prometheus.yml: |\n    scrape_configs:\n    - job_name: kubernetes-pods\n",
        )
        .unwrap();
    std::fs::write(root.join("blue.url"), blue.url()).unwrap();
    std::fs::write(root.join("green.url"), green.url()).unwrap();
    (blue, green)
}

async fn context(root: &Path, resume: bool, kill_at: Option<(String, Boundary)>) -> FlowContext {
    let blue_url = std::fs::read_to_string(root.join("blue.url")).unwrap();
    FlowContext::connect(ConnectOptions {
        kubeconfig: Some(root.join("blue.kubeconfig")),
        context: Some(kube_sim::CONTEXT_NAME.into()),
        expect_cluster: Some(blue_url),
    })
    .await
    .unwrap()
    .state_dir(root.join(".upgrade"))
    // A killed run's lock frees itself after its TTL; a short one keeps the test short.
    .lock_ttl(LOCK_TTL)
    .resume(resume)
    .executor_options(ExecutorOptions { kill_at })
    .build()
}

async fn plan(root: &Path, ctx: &FlowContext, stage: &str) -> Planned {
    let green = GreenCluster {
        kubeconfig: Some(root.join("green.kubeconfig")),
        context: Some(kube_sim::CONTEXT_NAME.into()),
        expect_cluster: std::fs::read_to_string(root.join("green.url")).unwrap(),
    };
    match stage {
        "transfer" => {
            let spec: TransferSpec = serde_json::from_value(serde_json::json!({
                "green": green,
                "namespaces": ["kubeflow-user-example-com"],
                "allow_fresh_volumes": true,
            }))
            .unwrap();
            plan_transfer(ctx, &spec).await
        }
        "ack" => {
            plan_ack(
                ctx,
                &AckSpec {
                    green,
                    ack_runtime: "0.26.0".into(),
                },
            )
            .await
        }
        "configure" => {
            plan_configure(
                ctx,
                &ConfigureSpec {
                    green,
                    knative_domain: Some("platform.example.com".into()),
                    prometheus_config: Some("prometheus/prometheus-server".into()),
                    copy_from_blue: vec!["ingresses/istio-system/istio-ingress".into()],
                    fsx_permissions: Vec::new(),
                    permissions_image:
                        upgrade_flows::flows::bluegreen::fsx::DEFAULT_PERMISSIONS_IMAGE.into(),
                    permissions_command:
                        upgrade_flows::flows::bluegreen::fsx::DEFAULT_PERMISSIONS_COMMAND.into(),
                },
            )
            .await
        }
        other => panic!("no stage {other}"),
    }
    .unwrap_or_else(|e| panic!("{stage}: {e}"))
}

/// The run as a separate process (the test binary re-executed with `CHILD_VAR` set).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bluegreen_run_child() {
    let Some(root) = std::env::var_os(CHILD_VAR) else {
        return; // an ordinary test run: nothing to do
    };
    let root = PathBuf::from(root);
    let spec = std::env::var(KILL_AT_VAR).unwrap();
    let (stage, rest) = spec.split_once(':').unwrap();
    let (step, boundary) = rest.rsplit_once(':').unwrap();
    let kill_at = Some((step.to_string(), Boundary::from_name(boundary).unwrap()));
    let ctx = context(&root, false, kill_at).await;
    let planned = match std::env::var(ARGS_VAR) {
        Ok(args) => plan_aws_stage(&ctx, stage, &args).await,
        Err(_) => plan(&root, &ctx, stage).await,
    };
    let report = planned.apply(&ctx).await;
    panic!("the run was to be killed at {spec}, but ended: {report:?}");
}

/// The storage or switch stage from its command's flags (`--flag value ...`).
async fn plan_aws_stage(ctx: &FlowContext, stage: &str, args: &str) -> Planned {
    use upgrade_flows::flows::bluegreen::{AwsSettings, StorageSpec, SwitchSpec};
    let words: Vec<&str> = args.split(' ').collect();
    let value = |flag: &str| {
        let i = words.iter().position(|w| *w == flag)?;
        Some(words[i + 1].to_string())
    };
    let aws = AwsSettings {
        endpoint_url: value("--aws-endpoint-url"),
        service_endpoints: value("--aws-service-endpoint")
            .and_then(|e| {
                e.split_once('=')
                    .map(|(s, u)| (s.to_string(), u.to_string()))
            })
            .into_iter()
            .collect(),
        ..Default::default()
    };
    match stage {
        "storage" => {
            let spec = StorageSpec {
                backup: value("--backup-vault").map(|vault| {
                    upgrade_flows::flows::bluegreen::BackupSpec {
                        vault,
                        role_arn: value("--backup-role-arn").unwrap_or_default(),
                        resources: value("--backup-resource").into_iter().collect(),
                    }
                }),
                rds_instance: value("--rds-instance"),
                rds_clone: value("--rds-clone"),
                s3_bucket: value("--s3-bucket"),
                s3_clone: value("--s3-clone"),
                wait_minutes: 5,
                aws,
            };
            upgrade_flows::flows::bluegreen::plan_storage(ctx, &spec).await
        }
        "switch" => {
            let spec = SwitchSpec {
                listener_rule_arn: value("--listener-rule-arn"),
                green_host: value("--green-host"),
                zone_id: value("--zone-id"),
                record_name: value("--record"),
                record_type: "CNAME".into(),
                green_target: value("--green-target"),
                serving_records: Vec::new(),
                window: None,
                force_window: false,
                aws,
            };
            upgrade_flows::flows::bluegreen::plan_switch(ctx, &spec).await
        }
        "irsa" => {
            let spec = upgrade_flows::flows::bluegreen::IrsaSpec {
                roles: value("--role").into_iter().collect(),
                green_oidc_provider_arn: value("--green-oidc-provider-arn").unwrap_or_default(),
                aws,
            };
            upgrade_flows::flows::bluegreen::plan_irsa(ctx, &spec).await
        }
        "platform" => {
            use upgrade_flows::flows::bluegreen::{GreenRelease, PlatformSpec};
            let spec = PlatformSpec {
                green: GreenCluster {
                    kubeconfig: value("--green-kubeconfig").map(PathBuf::from),
                    context: Some(kube_sim::CONTEXT_NAME.into()),
                    expect_cluster: value("--green-cluster").unwrap(),
                },
                releases: vec![GreenRelease {
                    release: upgrade_helm::ReleaseRef::new("mlflow", "mlops"),
                    chart: upgrade_helm::ChartRef::path(value("--chart").unwrap()),
                    values_files: Vec::new(),
                    blue_values: true,
                }],
                timeout_secs: 120,
            };
            upgrade_flows::flows::bluegreen::plan_platform(ctx, &spec).await
        }
        "green-up" => {
            let spec = upgrade_flows::flows::bluegreen::GreenUpSpec {
                green_terraform_dir: PathBuf::from(value("--green-terraform-dir").unwrap()),
                green: GreenCluster {
                    kubeconfig: value("--green-kubeconfig").map(PathBuf::from),
                    context: Some(kube_sim::CONTEXT_NAME.into()),
                    expect_cluster: value("--green-cluster").unwrap(),
                },
                wait_minutes: 2,
            };
            upgrade_flows::flows::bluegreen::plan_green_up(ctx, &spec).await
        }
        "retire" => {
            let spec = upgrade_flows::flows::bluegreen::RetireSpec {
                blue_terraform_dir: PathBuf::from(value("--blue-terraform-dir").unwrap()),
                confirm_cluster: value("--confirm-cluster").unwrap(),
                soak_minutes: 0,
                keep: Vec::new(),
            };
            upgrade_flows::flows::bluegreen::plan_retire(ctx, &spec).await
        }
        other => panic!("no AWS stage {other}"),
    }
    .unwrap_or_else(|e| panic!("{stage}: {e}"))
}

/// Runs `stage` as the child (with `args`, the command's flags, for the AWS stages, and
/// `env`), which must die at `step`'s `boundary`; then waits out the dead run's lock.
async fn kill_run_at(
    root: &Path,
    stage: &str,
    step: &str,
    boundary: Boundary,
    args: Option<String>,
    env: Vec<(&'static str, String)>,
) {
    let mut child = ProcessBuilder::new(std::env::current_exe().unwrap());
    child
        .args([
            "bluegreen_run::bluegreen_run_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_VAR, root)
        .env(KILL_AT_VAR, format!("{stage}:{step}:{}", boundary.name()))
        .timeout(Duration::from_secs(120));
    if let Some(args) = args {
        child.env(ARGS_VAR, args);
    }
    for (key, value) in env {
        child.env(key, value);
    }
    match child.output_async().await {
        Ok(out) if out.status.code().is_none() => {}
        Ok(out) => panic!(
            "the run was to be killed at {stage}:{step}:{} but exited with {}:\n{}\n{}",
            boundary.name(),
            out.status,
            out.stdout_lossy(),
            out.stderr_lossy()
        ),
        Err(e) => panic!("{e}"),
    }
    tokio::time::sleep(LOCK_TTL + Duration::from_millis(300)).await;
}

/// Runs the project's binary `exe` on blue (and moto) with the scenario's state folder.
fn run_binary(
    ctx: &TestContext,
    moto: &upgrade_test::MotoServer,
    root: &Path,
    blue: &SimCluster,
    exe: &str,
    args: &[&str],
) -> (i32, String, String) {
    let mut cmd = ProcessBuilder::new(crate::demo::bin_dir().join(exe));
    ctx.apply_env(&mut cmd);
    for (k, v) in moto.aws_env() {
        cmd.env(k, v);
    }
    cmd.arg("--kubeconfig")
        .arg(root.join("blue.kubeconfig"))
        .args([
            "--kube-context",
            kube_sim::CONTEXT_NAME,
            "--expect-cluster",
            blue.url(),
        ])
        .arg("--snapshot-dir")
        .arg(root.join(".upgrade"))
        .args(args)
        .timeout(Duration::from_secs(120));
    upgrade_test::CommandOutput::run(&cmd).parts()
}

/// Every object of `sim` without what the server sets and without the run's own bookkeeping
/// (the upgrade lock and status in kube-system), the clusters' URLs written as BLUE and
/// GREEN, sorted: two clusters with the same fingerprint hold the same objects.
fn fingerprint(sim: &SimCluster, blue: &SimCluster, green: &SimCluster) -> Vec<Value> {
    use serde::Deserialize;
    let url = |s: &SimCluster| s.url().trim_end_matches('/').to_string();
    let text = sim
        .dump_yaml()
        .replace(&url(blue), "BLUE")
        .replace(&url(green), "GREEN");
    let mut objects: Vec<Value> = serde_norway::Deserializer::from_str(&text)
        .filter_map(|doc| Value::deserialize(doc).ok())
        .filter(|o| o.is_object())
        .map(|mut o| {
            if let Some(meta) = o["metadata"].as_object_mut() {
                for field in [
                    "uid",
                    "resourceVersion",
                    "creationTimestamp",
                    "managedFields",
                    "generation",
                ] {
                    meta.remove(field);
                }
            }
            without_times(&mut o);
            o
        })
        .filter(|o| o["metadata"]["namespace"] != "kube-system" && o["kind"] != "Event")
        .collect();
    objects.sort_by_key(|o| o.to_string());
    objects
}

/// Removes the times conditions carry (a CRD's, set when it was loaded).
fn without_times(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|k, _| !k.starts_with("last") || !k.ends_with("Time"));
            map.values_mut().for_each(without_times);
        }
        Value::Array(items) => items.iter_mut().for_each(without_times),
        _ => {}
    }
}

/// The objects one side has and the other not (both clusters), for the failure message.
fn differences(a: &(Vec<Value>, Vec<Value>), b: &(Vec<Value>, Vec<Value>)) -> String {
    let only = |x: &[Value], y: &[Value]| -> Vec<String> {
        x.iter()
            .filter(|o| !y.contains(o))
            .map(Value::to_string)
            .collect()
    };
    format!(
        "now only {:?}; expected only {:?}",
        [only(&a.0, &b.0), only(&a.1, &b.1)].concat(),
        [only(&b.0, &a.0), only(&b.1, &a.1)].concat()
    )
}

/// What an unkilled run of `stage` leaves behind: blue's and green's fingerprints.
async fn reference(root: &Path, stage: &str) -> (Vec<Value>, Vec<Value>) {
    let (blue, green) = clusters(root).await;
    let ctx = context(root, false, None).await;
    plan(root, &ctx, stage).await.apply(&ctx).await.unwrap();
    let after = (
        fingerprint(&blue, &blue, &green),
        fingerprint(&green, &blue, &green),
    );
    blue.shutdown().await;
    green.shutdown().await;
    after
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_boundary_of_the_bluegreen_stages_survives_a_kill() {
    let ctx = TestContext::new();
    let (mut scenarios, mut failures) = (0, Vec::new());
    for (stage, steps) in STAGES {
        let after = reference(&ctx.root().join(format!("{stage}-ref")), stage).await;
        for step in *steps {
            for boundary in Boundary::FORWARD {
                for resume in [true, false] {
                    scenarios += 1;
                    let name = format!("{stage}:{step}:{}", boundary.name());
                    let root = ctx.root().join(format!(
                        "{}-{}-{}",
                        step.replace('/', "_"),
                        boundary.name(),
                        u8::from(resume)
                    ));
                    let (blue, green) = clusters(&root).await;
                    let before = (
                        fingerprint(&blue, &blue, &green),
                        fingerprint(&green, &blue, &green),
                    );
                    kill_run_at(&root, stage, step, boundary, None, Vec::new()).await;
                    if resume {
                        let run = context(&root, true, None).await;
                        let outcome = plan(&root, &run, stage).await.apply(&run).await;
                        let now = (
                            fingerprint(&blue, &blue, &green),
                            fingerprint(&green, &blue, &green),
                        );
                        if outcome.is_err() || now != after {
                            failures.push(format!(
                                "{name} resume: {:?}; same as an unkilled run: blue {}, green {}; differs: {}",
                                outcome.err().map(|e| e.to_string()),
                                now.0 == after.0,
                                now.1 == after.1,
                                differences(&now, &after)
                            ));
                        }
                    } else {
                        let run = context(&root, false, None).await;
                        let undo = rollback::plan(&run, &RollbackSpec::default())
                            .await
                            .unwrap_or_else(|e| panic!("{name}: {e}"));
                        let outcome = undo.apply(&run).await;
                        let now = (
                            fingerprint(&blue, &blue, &green),
                            fingerprint(&green, &blue, &green),
                        );
                        if outcome.is_err() || now != before {
                            failures.push(format!(
                                "{name} rollback: {:?}; back as before: blue {}, green {}; differs: {}",
                                outcome.err().map(|e| e.to_string()),
                                now.0 == before.0,
                                now.1 == before.1,
                                differences(&now, &before)
                            ));
                        }
                    }
                    blue.shutdown().await;
                    green.shutdown().await;
                }
            }
        }
    }
    println!(
        "blue/green stages: {} of {scenarios} kill points survived",
        scenarios - failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The storage stage against moto (the on-demand backup, the RDS clone, the S3 copy; the
/// backup jobs on blue's simulated AWS Backup), killed at every step boundary, then resumed
/// with `upgrade-bluegreen storage --resume` or undone with `upgrade-rollback`: after a
/// resume the bucket's one backup job (never a second) has completed and the clone, its
/// snapshot and the copy exist; after a rollback none of them does and at most the one
/// recovery point is kept; blue's instance and bucket stay throughout. Each scenario uses its
/// own names on one moto.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_boundary_of_the_storage_stage_survives_a_kill() {
    let ctx = TestContext::new();
    let moto = upgrade_test::MotoServer::start();
    let aws = |args: &[&str]| moto.aws(args);
    let body = ctx.root().join("object.bin");
    std::fs::write(&body, b"weights").unwrap();
    let mut failures = Vec::new();
    let mut scenarios = 0;
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"backup.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    let role = aws(&[
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
    for step in [
        "bluegreen/backup",
        "bluegreen/rds-clone",
        "bluegreen/s3-copy",
    ] {
        for boundary in Boundary::FORWARD {
            for resume in [true, false] {
                scenarios += 1;
                let n = scenarios;
                let root = ctx.root().join(format!("storage-{n}"));
                let (blue, green) = clusters(&root).await;
                blue.set_backup(serde_json::json!({"jobSeconds": 0.5}));
                let backup_api = blue.backup_endpoint();
                moto.aws_at(
                    &backup_api,
                    &[
                        "backup",
                        "create-backup-vault",
                        "--backup-vault-name",
                        "kf-vault",
                    ],
                );
                let (db, db_clone) = (format!("blue-db-{n}"), format!("green-db-{n}"));
                let (bucket, copy) = (format!("blue-bucket-{n}"), format!("green-bucket-{n}"));
                aws(&[
                    "rds",
                    "create-db-instance",
                    "--db-instance-identifier",
                    &db,
                    "--engine",
                    "postgres",
                    "--db-instance-class",
                    "db.t3.medium",
                    "--allocated-storage",
                    "20",
                    "--master-username",
                    "admin",
                    "--master-user-password",
                    "not-a-secret-1",
                ]);
                aws(&["s3api", "create-bucket", "--bucket", &bucket]);
                for key in ["a/model.bin", "b/model.bin"] {
                    aws(&[
                        "s3api",
                        "put-object",
                        "--bucket",
                        &bucket,
                        "--key",
                        key,
                        "--body",
                        &body.display().to_string(),
                    ]);
                }
                let state = || {
                    let instance = |id: &str| {
                        aws(&["rds", "describe-db-instances"])["DBInstances"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|i| i["DBInstanceIdentifier"] == id)
                    };
                    let snapshots = aws(&[
                        "rds",
                        "describe-db-snapshots",
                        "--db-instance-identifier",
                        &db,
                        "--snapshot-type",
                        "manual",
                    ])["DBSnapshots"]
                        .as_array()
                        .map(Vec::len)
                        .unwrap_or(0);
                    let buckets: Vec<String> = aws(&["s3api", "list-buckets"])["Buckets"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|b| b["Name"].as_str().unwrap().to_string())
                        .collect();
                    let copied = if buckets.contains(&copy) {
                        aws(&["s3api", "list-objects-v2", "--bucket", &copy])["Contents"]
                            .as_array()
                            .map(Vec::len)
                            .unwrap_or(0)
                    } else {
                        0
                    };
                    let jobs = blue.backup_jobs();
                    let backups = (jobs.len(), jobs.iter().all(|j| j["State"] == "COMPLETED"));
                    let stores = (
                        instance(&db),
                        instance(&db_clone),
                        snapshots,
                        buckets.contains(&bucket),
                        buckets.contains(&copy),
                        copied,
                    );
                    (backups, stores)
                };
                let bucket_arn = format!("arn:aws:s3:::{bucket}");
                let service_endpoint = format!("backup={backup_api}");
                let spec_args = [
                    "storage",
                    "--backup-vault",
                    "kf-vault",
                    "--backup-role-arn",
                    &role,
                    "--backup-resource",
                    &bucket_arn,
                    "--aws-service-endpoint",
                    &service_endpoint,
                    "--rds-instance",
                    &db,
                    "--rds-clone",
                    &db_clone,
                    "--s3-bucket",
                    &bucket,
                    "--s3-clone",
                    &copy,
                    "--aws-endpoint-url",
                    moto.url(),
                ];
                let args = Some(spec_args[1..].join(" "));
                kill_run_at(&root, "storage", step, boundary, args, moto.aws_env()).await;
                let command =
                    |exe: &str, args: &[&str]| run_binary(&ctx, &moto, &root, &blue, exe, args);
                let name = format!("{step}:{}", boundary.name());
                if resume {
                    let mut args = spec_args.to_vec();
                    args.extend(["--resume", "--apply", "--yes"]);
                    let (code, stdout, stderr) = command("upgrade-bluegreen", &args);
                    let now = state();
                    if code != 0 || now != ((1, true), (true, true, 1, true, true, 2)) {
                        failures.push(format!(
                            "{name} resume: exit {code}, state {now:?}\n{stdout}{stderr}"
                        ));
                    }
                } else {
                    let (code, stdout, stderr) = command("upgrade-rollback", &["--apply", "--yes"]);
                    let now = state();
                    // A job that had started is kept (and finishes on its own): never two.
                    if code != 0 || now.0.0 > 1 || now.1 != (true, false, 0, true, false, 0) {
                        failures.push(format!(
                            "{name} rollback: exit {code}, state {now:?}\n{stdout}{stderr}"
                        ));
                    }
                }
                blue.shutdown().await;
                green.shutdown().await;
            }
        }
    }
    println!(
        "storage stage: {} of {scenarios} kill points survived",
        scenarios - failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The switch against moto (the ALB listener rule, then the Route 53 record), killed at every
/// step boundary, then resumed with `upgrade-bluegreen switch --resume` (both point at green)
/// or undone with `upgrade-rollback` (both point at blue again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_boundary_of_the_switch_survives_a_kill() {
    let ctx = TestContext::new();
    let moto = upgrade_test::MotoServer::start();
    let aws = |args: &[&str]| moto.aws(args);
    let vpc = aws(&["ec2", "create-vpc", "--cidr-block", "10.0.0.0/16"]);
    let vpc_id = vpc["Vpc"]["VpcId"].as_str().unwrap().to_string();
    let subnets: Vec<String> = [("10.0.1.0/24", "us-east-1a"), ("10.0.2.0/24", "us-east-1b")]
        .iter()
        .map(|(cidr, zone)| {
            aws(&[
                "ec2",
                "create-subnet",
                "--vpc-id",
                &vpc_id,
                "--cidr-block",
                cidr,
                "--availability-zone",
                zone,
            ])["Subnet"]["SubnetId"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let (mut scenarios, mut failures) = (0, Vec::new());
    for step in ["bluegreen/switch-alb", "bluegreen/switch"] {
        for boundary in Boundary::FORWARD {
            for resume in [true, false] {
                scenarios += 1;
                let n = scenarios;
                let root = ctx.root().join(format!("switch-{n}"));
                let (blue, green) = clusters(&root).await;
                let lb = aws(&[
                    "elbv2",
                    "create-load-balancer",
                    "--name",
                    &format!("redirect-{n}"),
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
                    r#"[{"Field":"host-header","Values":["kflive.example.com"]}]"#,
                    "--actions",
                    r#"[{"Type":"redirect","RedirectConfig":{"Host":"kubeflow.blue.example.com","StatusCode":"HTTP_302"}}]"#,
                ]);
                let rule_arn = rule["Rules"][0]["RuleArn"].as_str().unwrap().to_string();
                let zone = aws(&[
                    "route53",
                    "create-hosted-zone",
                    "--name",
                    &format!("z{n}.example.com"),
                    "--caller-reference",
                    &format!("switch-{n}"),
                ]);
                let zone_id = zone["HostedZone"]["Id"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("/hostedzone/")
                    .to_string();
                let record = format!("serving.z{n}.example.com");
                let batch = serde_json::json!({"Changes": [{"Action": "CREATE", "ResourceRecordSet": {
                    "Name": record, "Type": "CNAME", "TTL": 60,
                    "ResourceRecords": [{"Value": "blue-ingress.example.com"}]}}]});
                aws(&[
                    "route53",
                    "change-resource-record-sets",
                    "--hosted-zone-id",
                    &zone_id,
                    "--change-batch",
                    &batch.to_string(),
                ]);
                let points = || {
                    let host = aws(&["elbv2", "describe-rules", "--rule-arns", &rule_arn])["Rules"]
                        [0]["Actions"][0]["RedirectConfig"]["Host"]
                        .as_str()
                        .unwrap()
                        .to_string();
                    let sets = aws(&[
                        "route53",
                        "list-resource-record-sets",
                        "--hosted-zone-id",
                        &zone_id,
                    ]);
                    let value = sets["ResourceRecordSets"]
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
                        .unwrap();
                    (host, value)
                };
                let command =
                    |exe: &str, args: &[&str]| run_binary(&ctx, &moto, &root, &blue, exe, args);
                // Green verified first (the switch requires it).
                let config = root.join("checks.yaml");
                std::fs::write(
                    &config,
                    format!(
                        "probes:\n- name: green-api\n  check: {{type: http, url: \"{}/version\"}}\n",
                        green.url().trim_end_matches('/')
                    ),
                )
                .unwrap();
                let green_kubeconfig = root.join("green.kubeconfig").display().to_string();
                let (code, stdout, stderr) = command(
                    "upgrade-bluegreen",
                    &[
                        "verify-green",
                        "--green-kubeconfig",
                        &green_kubeconfig,
                        "--green-cluster",
                        green.url(),
                        "--config",
                        &config.display().to_string(),
                    ],
                );
                assert!(code == 0 || code == 3, "{stdout}{stderr}");
                let spec_args = [
                    "switch",
                    "--listener-rule-arn",
                    &rule_arn,
                    "--green-host",
                    "kubeflow.green.example.com",
                    "--zone-id",
                    &zone_id,
                    "--record",
                    &record,
                    "--green-target",
                    "green-ingress.example.com",
                    "--aws-endpoint-url",
                    moto.url(),
                ];
                let args = Some(spec_args[1..].join(" "));
                kill_run_at(&root, "switch", step, boundary, args, moto.aws_env()).await;
                let name = format!("{step}:{}", boundary.name());
                if resume {
                    let mut args = spec_args.to_vec();
                    args.extend(["--resume", "--apply", "--yes"]);
                    let (code, stdout, stderr) = command("upgrade-bluegreen", &args);
                    let now = points();
                    let green_now = (
                        "kubeflow.green.example.com".to_string(),
                        "green-ingress.example.com".to_string(),
                    );
                    if code != 0 || now != green_now {
                        failures.push(format!(
                            "{name} resume: exit {code}, {now:?}\n{stdout}{stderr}"
                        ));
                    }
                } else {
                    let (code, stdout, stderr) = command("upgrade-rollback", &["--apply", "--yes"]);
                    let now = points();
                    let blue_now = (
                        "kubeflow.blue.example.com".to_string(),
                        "blue-ingress.example.com".to_string(),
                    );
                    if code != 0 || now != blue_now {
                        failures.push(format!(
                            "{name} rollback: exit {code}, {now:?}\n{stdout}{stderr}"
                        ));
                    }
                }
                blue.shutdown().await;
                green.shutdown().await;
            }
        }
    }
    println!(
        "switch: {} of {scenarios} kill points survived",
        scenarios - failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The IRSA trust change against moto's IAM, killed at every step boundary, then resumed
/// with `upgrade-bluegreen irsa --resume` (the role trusts blue and green, the condition on
/// green's issuer) or undone with `upgrade-rollback` (the trust policy exactly as before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_boundary_of_the_irsa_stage_survives_a_kill() {
    let ctx = TestContext::new();
    let moto = upgrade_test::MotoServer::start();
    let aws = |args: &[&str]| moto.aws(args);
    let blue_oidc =
        "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/BLUE";
    let green_oidc =
        "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/GREEN";
    let (mut scenarios, mut failures) = (0, Vec::new());
    for boundary in Boundary::FORWARD {
        for resume in [true, false] {
            scenarios += 1;
            let n = scenarios;
            let root = ctx.root().join(format!("irsa-{n}"));
            let (blue, green) = clusters(&root).await;
            let role = format!("kf-user-{n}");
            let trust = serde_json::json!({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Federated": blue_oidc},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {"StringEquals": {
                    "oidc.eks.us-east-1.amazonaws.com/id/BLUE:sub": "system:serviceaccount:kubeflow-user:default-editor"}}}]});
            aws(&[
                "iam",
                "create-role",
                "--role-name",
                &role,
                "--assume-role-policy-document",
                &trust.to_string(),
            ]);
            let policy = || -> Value {
                aws(&["iam", "get-role", "--role-name", &role])["Role"]["AssumeRolePolicyDocument"]
                    .clone()
            };
            let before = policy();
            let spec_args = [
                "irsa",
                "--role",
                &role,
                "--green-oidc-provider-arn",
                green_oidc,
                "--aws-endpoint-url",
                moto.url(),
            ];
            let args = Some(spec_args[1..].join(" "));
            let step = "bluegreen/irsa-trust";
            kill_run_at(&root, "irsa", step, boundary, args, moto.aws_env()).await;
            let name = format!("{step}:{}", boundary.name());
            if resume {
                let mut args = spec_args.to_vec();
                args.extend(["--resume", "--apply", "--yes"]);
                let (code, stdout, stderr) =
                    run_binary(&ctx, &moto, &root, &blue, "upgrade-bluegreen", &args);
                let now = policy().to_string();
                let trusts_both = now.contains("id/BLUE") && now.contains("id/GREEN");
                let green_condition = now.contains("oidc.eks.us-east-1.amazonaws.com/id/GREEN:sub");
                if code != 0 || !trusts_both || !green_condition {
                    failures.push(format!(
                        "{name} resume: exit {code}, policy {now}\n{stdout}{stderr}"
                    ));
                }
            } else {
                let (code, stdout, stderr) = run_binary(
                    &ctx,
                    &moto,
                    &root,
                    &blue,
                    "upgrade-rollback",
                    &["--apply", "--yes"],
                );
                let now = policy();
                if code != 0 || now != before {
                    failures.push(format!(
                        "{name} rollback: exit {code}, policy {now}\n{stdout}{stderr}"
                    ));
                }
            }
            blue.shutdown().await;
            green.shutdown().await;
        }
    }
    println!(
        "irsa stage: {} of {scenarios} kill points survived",
        scenarios - failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The platform's Helm install on green (blue's MLflow release with its values, real helm,
/// kube-sims with controllers), killed at every step boundary, then resumed with
/// `upgrade-bluegreen platform --resume` (green runs the release at blue's chart version
/// with blue's values, one deployed revision) or undone with `upgrade-rollback` (green has
/// no release and no workload of it); blue keeps its release throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_boundary_of_the_platform_stage_survives_a_kill() {
    let ctx = TestContext::new();
    let helm_bin = upgrade_test::require_tool("helm");
    let chart = TestContext::fixtures_dir().join("charts/mlflow/0.16.0");
    let (mut scenarios, mut failures) = (0, Vec::new());
    let step = "bluegreen/helm/mlops/mlflow";
    for boundary in Boundary::FORWARD {
        for resume in [true, false] {
            scenarios += 1;
            let root = ctx.root().join(format!("platform-{scenarios}"));
            std::fs::create_dir_all(&root).unwrap();
            let start = |name: &str, version: &str| {
                SimCluster::builder()
                    .server_version(version)
                    .controllers(ControllerConfig::fast())
                    .kubeconfig_path(root.join(format!("{name}.kubeconfig")))
                    .start()
            };
            let blue = start("blue", "v1.30.4-eks-a737599").await.unwrap();
            let green = start("green", "v1.31.2-eks-7f9249a").await.unwrap();
            blue.add_node("blue-node", "v1.30.4-eks-a737599").unwrap();
            green.add_node("green-node", "v1.31.2-eks-7f9249a").unwrap();
            std::fs::write(root.join("blue.url"), blue.url()).unwrap();
            std::fs::write(root.join("green.url"), green.url()).unwrap();
            let helm = |sim: &SimCluster, args: &[&str]| -> String {
                let mut cmd = ctx.command("helm");
                cmd.args(args)
                    .arg("--kubeconfig")
                    .arg(sim.kubeconfig_path())
                    .timeout(Duration::from_secs(120));
                cmd.exec()
                    .unwrap_or_else(|e| panic!("helm {args:?}: {e}"))
                    .stdout_lossy()
            };
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
                    "db.password=blue-secret",
                ],
            );
            let green_kubeconfig = root.join("green.kubeconfig").display().to_string();
            let release = format!("mlops/mlflow={}", chart.display());
            let chart_text = chart.display().to_string();
            let child_args = [
                "--green-kubeconfig",
                green_kubeconfig.as_str(),
                "--green-cluster",
                green.url(),
                "--chart",
                chart_text.as_str(),
            ]
            .join(" ");
            let env = vec![("HELM_BIN", helm_bin.display().to_string())];
            kill_run_at(&root, "platform", step, boundary, Some(child_args), env).await;
            let name = format!("{step}:{}", boundary.name());
            let state = || {
                let listed: Value =
                    serde_json::from_str(&helm(&green, &["list", "-n", "mlops", "-o", "json"]))
                        .unwrap();
                let release = listed.as_array().and_then(|l| l.first()).map(|r| {
                    (
                        r["chart"].as_str().unwrap_or("").to_string(),
                        r["status"].as_str().unwrap_or("").to_string(),
                    )
                });
                let password = release.as_ref().map(|_| {
                    serde_json::from_str::<Value>(&helm(
                        &green,
                        &["get", "values", "mlflow", "-n", "mlops", "-o", "json"],
                    ))
                    .unwrap()["db"]["password"]
                        .clone()
                });
                let deployments = green.list("apps/v1", "Deployment", Some("mlops")).len();
                (release, password, deployments)
            };
            let args = [
                "platform",
                "--green-kubeconfig",
                &green_kubeconfig,
                "--green-cluster",
                green.url(),
                "--release",
                &release,
                "--apply",
                "--yes",
            ];
            let run = |exe: &str, args: &[&str]| {
                let mut cmd = ProcessBuilder::new(crate::demo::bin_dir().join(exe));
                ctx.apply_env(&mut cmd);
                cmd.arg("--kubeconfig")
                    .arg(root.join("blue.kubeconfig"))
                    .args([
                        "--kube-context",
                        kube_sim::CONTEXT_NAME,
                        "--expect-cluster",
                        blue.url(),
                    ])
                    .arg("--snapshot-dir")
                    .arg(root.join(".upgrade"))
                    .args(args)
                    .timeout(Duration::from_secs(180));
                upgrade_test::CommandOutput::run(&cmd).parts()
            };
            if resume {
                let mut resumed = args.to_vec();
                resumed.push("--resume");
                let (code, stdout, stderr) = run("upgrade-bluegreen", &resumed);
                let now = state();
                let expected = (
                    Some(("mlflow-0.16.0".to_string(), "deployed".to_string())),
                    Some(Value::from("blue-secret")),
                    1,
                );
                if code != 0 || now != expected {
                    failures.push(format!(
                        "{name} resume: exit {code}, state {now:?}\n{stdout}{stderr}"
                    ));
                }
            } else {
                let (code, stdout, stderr) = run("upgrade-rollback", &["--apply", "--yes"]);
                let now = state();
                if code != 0 || now != (None, None, 0) {
                    failures.push(format!(
                        "{name} rollback: exit {code}, state {now:?}\n{stdout}{stderr}"
                    ));
                }
            }
            assert!(
                helm(&blue, &["list", "-n", "mlops"]).contains("mlflow"),
                "blue keeps its release"
            );
            blue.shutdown().await;
            green.shutdown().await;
        }
    }
    println!(
        "platform stage: {} of {scenarios} kill points survived",
        scenarios - failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Green's Terraform and the wait for its API server (real terraform, the simulated AWS
/// provider on green's simulated EKS API), killed at every step boundary, then resumed with
/// `upgrade-bluegreen green-up --resume` (green's state holds the cluster, its node group and
/// add-on) or undone with `upgrade-rollback` (green's state is empty again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_boundary_of_the_green_up_stage_survives_a_kill() {
    let ctx = TestContext::new();
    let terraform = upgrade_test::require_tool("terraform");
    let rc = ctx.root().join("terraformrc");
    std::fs::write(
        &rc,
        upgrade_tf_sim_provider::cli_config(upgrade_test::sim_mirror()),
    )
    .unwrap();
    let tf = |dir: &Path, sim_url: &str, args: &[&str]| -> String {
        let mut cmd = ctx.command("terraform");
        cmd.args(args)
            .cwd(dir)
            .env("TF_CLI_CONFIG_FILE", &rc)
            .env(upgrade_tf_sim_provider::SIM_KUBE_URL_VAR, sim_url)
            .timeout(Duration::from_secs(120));
        cmd.exec()
            .unwrap_or_else(|e| panic!("terraform {args:?}: {e}"))
            .stdout_lossy()
    };
    // Green's variables, once, from blue's applied deployment (`upgrade-bluegreen inputs`).
    let template = ctx.root().join("template");
    let (template_blue, _) = clusters(&template).await;
    let blue_tf = ctx.copy_fixture("terraform/environments/blue");
    let green_template = ctx.copy_fixture("terraform/environments/green");
    tf(&blue_tf, template_blue.url(), &["init", "-input=false"]);
    tf(
        &blue_tf,
        template_blue.url(),
        &["apply", "-auto-approve", "-input=false"],
    );
    let run = |root: &Path, blue_url: &str, sim_url: &str, exe: &str, args: &[&str]| {
        let mut cmd = ProcessBuilder::new(crate::demo::bin_dir().join(exe));
        ctx.apply_env(&mut cmd);
        cmd.env("TF_CLI_CONFIG_FILE", &rc)
            .env(upgrade_tf_sim_provider::SIM_KUBE_URL_VAR, sim_url)
            .arg("--kubeconfig")
            .arg(root.join("blue.kubeconfig"))
            .args([
                "--kube-context",
                kube_sim::CONTEXT_NAME,
                "--expect-cluster",
                blue_url,
            ])
            .arg("--snapshot-dir")
            .arg(root.join(".upgrade"))
            .args(args)
            .timeout(Duration::from_secs(180));
        upgrade_test::CommandOutput::run(&cmd).parts()
    };
    let (code, stdout, stderr) = run(
        &template,
        template_blue.url(),
        template_blue.url(),
        "upgrade-bluegreen",
        &[
            "inputs",
            "--blue-terraform-dir",
            &blue_tf.display().to_string(),
            "--green-terraform-dir",
            &green_template.display().to_string(),
            "--green-cluster",
            "mlops-platform-green",
            "--eks-version",
            "1.31",
            "--apply",
            "--yes",
        ],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    template_blue.shutdown().await;

    let (mut scenarios, mut failures) = (0, Vec::new());
    for step in ["bluegreen/green-terraform", "bluegreen/green-api"] {
        for boundary in Boundary::FORWARD {
            for resume in [true, false] {
                scenarios += 1;
                let root = ctx.root().join(format!("green-up-{scenarios}"));
                let (blue, _) = clusters(&root).await;
                let green = SimCluster::builder()
                    .server_version("v1.31.2-eks-7f9249a")
                    .controllers(ControllerConfig::none())
                    .kubeconfig_path(root.join("green-131.kubeconfig"))
                    .start()
                    .await
                    .unwrap();
                let green_tf = root.join("green-tf");
                upgrade_test::copy_tree(&green_template, &green_tf);
                let green_kubeconfig = green.kubeconfig_path().display().to_string();
                let green_dir = green_tf.display().to_string();
                let flags = [
                    "--green-terraform-dir",
                    green_dir.as_str(),
                    "--green-kubeconfig",
                    green_kubeconfig.as_str(),
                    "--green-cluster",
                    green.url(),
                ];
                let env = vec![
                    ("TERRAFORM_BIN", terraform.display().to_string()),
                    ("TF_CLI_CONFIG_FILE", rc.display().to_string()),
                    (
                        upgrade_tf_sim_provider::SIM_KUBE_URL_VAR,
                        green.url().to_string(),
                    ),
                ];
                kill_run_at(
                    &root,
                    "green-up",
                    step,
                    boundary,
                    Some(flags.join(" ")),
                    env,
                )
                .await;
                let name = format!("{step}:{}", boundary.name());
                let listed = || {
                    if green_tf.join("terraform.tfstate").exists() {
                        tf(&green_tf, green.url(), &["state", "list"])
                    } else {
                        String::new()
                    }
                };
                let mut args = vec!["green-up"];
                args.extend(flags);
                if resume {
                    args.extend(["--resume", "--apply", "--yes"]);
                    let (code, stdout, stderr) =
                        run(&root, blue.url(), green.url(), "upgrade-bluegreen", &args);
                    let now = listed();
                    let complete = [
                        "aws_eks_cluster.this",
                        "aws_eks_node_group.default",
                        "aws_eks_addon.coredns",
                    ]
                    .iter()
                    .all(|a| now.contains(a));
                    if code != 0 || !complete {
                        failures.push(format!(
                            "{name} resume: exit {code}, state {now:?}\n{stdout}{stderr}"
                        ));
                    }
                } else {
                    let (code, stdout, stderr) = run(
                        &root,
                        blue.url(),
                        green.url(),
                        "upgrade-rollback",
                        &["--apply", "--yes"],
                    );
                    let now = listed();
                    if code != 0 || !now.trim().is_empty() {
                        failures.push(format!(
                            "{name} rollback: exit {code}, state {now:?}\n{stdout}{stderr}"
                        ));
                    }
                }
                blue.shutdown().await;
                green.shutdown().await;
            }
        }
    }
    println!(
        "green-up stage: {} of {scenarios} kill points survived",
        scenarios - failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Retire (irreversible: a targeted destroy of blue's Terraform state after a verified soak),
/// killed at every step boundary: resumed with `upgrade-bluegreen retire --resume` it
/// finishes the destroy (blue's state empty); `upgrade-rollback` either finds nothing applied
/// (blue intact, exit 0) or stops with exit 5 because nothing brings blue back, changing
/// nothing. Each scenario starts from the same recorded switch and verification (a template
/// state folder and blue's applied deployment, copied).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_boundary_of_retire_resumes_or_stops_with_a_recorded_way_back() {
    let ctx = TestContext::new();
    let terraform = upgrade_test::require_tool("terraform");
    let moto = upgrade_test::MotoServer::start();
    let rc = ctx.root().join("terraformrc");
    std::fs::write(
        &rc,
        upgrade_tf_sim_provider::cli_config(upgrade_test::sim_mirror()),
    )
    .unwrap();
    let tf = |dir: &Path, sim_url: &str, args: &[&str]| -> String {
        let mut cmd = ctx.command("terraform");
        cmd.args(args)
            .cwd(dir)
            .env("TF_CLI_CONFIG_FILE", &rc)
            .env(upgrade_tf_sim_provider::SIM_KUBE_URL_VAR, sim_url)
            .timeout(Duration::from_secs(120));
        cmd.exec()
            .unwrap_or_else(|e| panic!("terraform {args:?}: {e}"))
            .stdout_lossy()
    };
    let run = |root: &Path, blue_url: &str, exe: &str, args: &[&str]| {
        let mut cmd = ProcessBuilder::new(crate::demo::bin_dir().join(exe));
        ctx.apply_env(&mut cmd);
        for (k, v) in moto.aws_env() {
            cmd.env(k, v);
        }
        cmd.env("TF_CLI_CONFIG_FILE", &rc)
            .env(upgrade_tf_sim_provider::SIM_KUBE_URL_VAR, blue_url)
            .arg("--kubeconfig")
            .arg(root.join("blue.kubeconfig"))
            .args([
                "--kube-context",
                kube_sim::CONTEXT_NAME,
                "--expect-cluster",
                blue_url,
            ])
            .arg("--snapshot-dir")
            .arg(root.join(".upgrade"))
            .args(args)
            .timeout(Duration::from_secs(180));
        upgrade_test::CommandOutput::run(&cmd).parts()
    };
    // The template: blue's deployment applied, green verified, the record switched to green,
    // green verified again (the soak's checks).
    let template = ctx.root().join("template");
    let (template_blue, template_green) = clusters(&template).await;
    let blue_tf = template.join("blue-tf");
    upgrade_test::copy_tree(
        &TestContext::fixtures_dir().join("terraform/environments/blue"),
        &blue_tf,
    );
    tf(&blue_tf, template_blue.url(), &["init", "-input=false"]);
    tf(
        &blue_tf,
        template_blue.url(),
        &["apply", "-auto-approve", "-input=false"],
    );
    let full = tf(&blue_tf, template_blue.url(), &["state", "list"]);
    assert!(full.contains("aws_eks_cluster.this"), "{full}");
    let zone = moto.aws(&[
        "route53",
        "create-hosted-zone",
        "--name",
        "platform.example.com",
        "--caller-reference",
        "retire",
    ])["HostedZone"]["Id"]
        .as_str()
        .unwrap()
        .trim_start_matches("/hostedzone/")
        .to_string();
    let record = serde_json::json!({"Changes": [{"Action": "CREATE", "ResourceRecordSet": {
        "Name": "kubeflow.platform.example.com", "Type": "CNAME", "TTL": 60,
        "ResourceRecords": [{"Value": "blue-alb.us-east-1.elb.amazonaws.com"}]}}]});
    moto.aws(&[
        "route53",
        "change-resource-record-sets",
        "--hosted-zone-id",
        &zone,
        "--change-batch",
        &record.to_string(),
    ]);
    let checks = template.join("checks.yaml");
    std::fs::write(
        &checks,
        format!(
            "probes:\n- name: green-api\n  check: {{type: http, url: \"{}/version\"}}\n",
            template_green.url().trim_end_matches('/')
        ),
    )
    .unwrap();
    let green_kubeconfig = template.join("green.kubeconfig").display().to_string();
    let checks = checks.display().to_string();
    let verify = [
        "verify-green",
        "--green-kubeconfig",
        &green_kubeconfig,
        "--green-cluster",
        template_green.url(),
        "--config",
        &checks,
    ];
    let now = jiff::Timestamp::now();
    let window = format!(
        "{}/{}",
        now - jiff::SignedDuration::from_mins(5),
        now + jiff::SignedDuration::from_hours(2)
    );
    for args in [
        &verify[..],
        &[
            "switch",
            "--zone-id",
            &zone,
            "--record",
            "kubeflow.platform.example.com",
            "--green-target",
            "green-alb.us-east-1.elb.amazonaws.com",
            "--window",
            &window,
            "--aws-endpoint-url",
            moto.url(),
            "--apply",
            "--yes",
        ][..],
        &verify[..],
    ] {
        let (code, stdout, stderr) = run(&template, template_blue.url(), "upgrade-bluegreen", args);
        assert!(code == 0 || code == 3, "{args:?}: {stdout}{stderr}");
    }
    template_blue.shutdown().await;
    template_green.shutdown().await;

    let (mut scenarios, mut failures) = (0, Vec::new());
    let step = "bluegreen/retire";
    for boundary in Boundary::FORWARD {
        for resume in [true, false] {
            scenarios += 1;
            let root = ctx.root().join(format!("retire-{scenarios}"));
            let (blue, green) = clusters(&root).await;
            for folder in [".upgrade", "blue-tf"] {
                upgrade_test::copy_tree(&template.join(folder), &root.join(folder));
            }
            let scenario_tf = root.join("blue-tf");
            let dir = scenario_tf.display().to_string();
            let env = vec![
                ("TERRAFORM_BIN", terraform.display().to_string()),
                ("TF_CLI_CONFIG_FILE", rc.display().to_string()),
                (
                    upgrade_tf_sim_provider::SIM_KUBE_URL_VAR,
                    blue.url().to_string(),
                ),
            ];
            let flags = format!(
                "--blue-terraform-dir {dir} --confirm-cluster {}",
                blue.url()
            );
            kill_run_at(&root, "retire", step, boundary, Some(flags), env).await;
            let name = format!("{step}:{}", boundary.name());
            let listed = || tf(&scenario_tf, blue.url(), &["state", "list"]);
            let after_kill = listed();
            if resume {
                let (code, stdout, stderr) = run(
                    &root,
                    blue.url(),
                    "upgrade-bluegreen",
                    &[
                        "retire",
                        "--blue-terraform-dir",
                        &dir,
                        "--confirm-cluster",
                        blue.url(),
                        "--soak-minutes",
                        "0",
                        "--resume",
                        "--apply",
                        "--yes",
                    ],
                );
                let now = listed();
                if code != 0 || !now.trim().is_empty() {
                    failures.push(format!(
                        "{name} resume: exit {code}, state {now:?}\n{stdout}{stderr}"
                    ));
                }
            } else {
                let (code, stdout, stderr) =
                    run(&root, blue.url(), "upgrade-rollback", &["--apply", "--yes"]);
                let now = listed();
                let nothing_applied = code == 0 && now == full;
                let stopped = code == 5 && now == after_kill && stderr.contains("cannot be undone");
                if !(nothing_applied || stopped) {
                    failures.push(format!(
                        "{name} rollback: exit {code}, state {now:?}\n{stdout}{stderr}"
                    ));
                }
            }
            blue.shutdown().await;
            green.shutdown().await;
        }
    }
    println!(
        "retire: {} of {scenarios} kill points resumed or stopped with a way back",
        scenarios - failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

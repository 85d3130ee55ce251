//! The real Helm 3.17 and Helm 4.1 against kube-sim: snapshot, upgrade, a failing upgrade
//! rolled back, restore (rollback and roll-forward), a release left pending by a killed Helm,
//! and the storage reader against `helm list -A` and `helm history`.

use std::time::Duration;

use crate::common::{HELMS, fixture_chart, helm_builder, kube_version_chart, strip};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube_sim::SimCluster;
use upgrade_core::ProcessBuilder;
use upgrade_helm::storage::StorageReader;
use upgrade_helm::{
    ChartRef, Error, FailureKind, Helm, HistoryEntry, ListOptions, OnFailure, PendingPolicy,
    ReleaseRef, ReleaseSnapshot, ReleaseStatus, RestoreAction, RollbackOptions, SetValue,
    StorageDriver, UpgradeOptions, ValuesScope, WaitMode,
};
use upgrade_test::TestContext;

async fn start_sim() -> SimCluster {
    let sim = SimCluster::builder()
        .controllers(kube_sim::ControllerConfig::fast())
        .start()
        .await
        .expect("kube-sim starts");
    for node in ["node-a", "node-b"] {
        sim.add_node(node, &sim.server_version())
            .expect("add a node");
    }
    sim
}

fn helm_on(ctx: &TestContext, tool: &str, sim: &SimCluster) -> Helm {
    helm_builder(ctx, tool)
        .kubeconfig(sim.kubeconfig_path())
        .context(kube_sim::CONTEXT_NAME)
        .build()
        .unwrap()
}

/// Installs or upgrades with the quick defaults and expects success.
async fn deploy(helm: &Helm, release: &ReleaseRef, chart: &ChartRef) -> upgrade_helm::Release {
    helm.upgrade(release, chart, &quick(UpgradeOptions::default()))
        .await
        .unwrap_or_else(|e| panic!("deploy {release} {chart}: {e}"))
}

fn chart(name: &str, version: &str) -> ChartRef {
    ChartRef::path(fixture_chart(name, version))
}

fn quick(o: UpgradeOptions) -> UpgradeOptions {
    UpgradeOptions {
        timeout: Duration::from_secs(60),
        create_namespace: true,
        ..o
    }
}

fn quick_rollback() -> RollbackOptions {
    RollbackOptions {
        timeout: Duration::from_secs(60),
        ..RollbackOptions::default()
    }
}

/// The values file the seeds keep, with the image tag pinned.
fn values_file(ctx: &TestContext, tool: &str, tag: &str) -> std::path::PathBuf {
    let path = ctx
        .work()
        .join(format!("karpenter-values-{tool}-{tag}.yaml"));
    let original = std::fs::read_to_string(
        TestContext::fixtures_dir().join("helm-values/karpenter-values.yaml"),
    )
    .unwrap();
    std::fs::write(
        &path,
        original.replace("tag: \"1.5.0\"", &format!("tag: \"{tag}\"")),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_upgrade_failed_upgrade_and_restore_on_both_majors() {
    let ctx = TestContext::new();
    let sim = start_sim().await;
    for tool in HELMS {
        let helm = helm_on(&ctx, tool, &sim);
        let release = ReleaseRef::new("karpenter", format!("karpenter-{tool}"));
        let snapshots = ctx.work().join(format!("snapshots-{tool}"));

        // Install 1.5.0 with the seeds' values file.
        let installed = helm
            .upgrade(
                &release,
                &chart("karpenter", "1.5.0"),
                &quick(UpgradeOptions {
                    values_files: vec![values_file(&ctx, tool, "1.5.0")],
                    ..UpgradeOptions::default()
                }),
            )
            .await
            .unwrap();
        assert_eq!(installed.version, 1);
        assert_eq!(installed.info.status, ReleaseStatus::Deployed);

        // Upgrade to 1.6.0 with a recorded way back.
        let outcome = helm
            .safe_upgrade(
                &release,
                &chart("karpenter", "1.6.0"),
                &quick(UpgradeOptions {
                    values_files: vec![values_file(&ctx, tool, "1.6.0")],
                    ..UpgradeOptions::default()
                }),
                &snapshots,
            )
            .await
            .unwrap();
        let upgraded = outcome.result.unwrap();
        assert_eq!(upgraded.version, 2);
        assert!(upgraded.manifest.contains("controller:1.6.0"));
        let snapshot_path = outcome.snapshot.expect("a snapshot before the upgrade");
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&snapshot_path)
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600);
        }
        let snapshot = ReleaseSnapshot::read(&snapshot_path).unwrap();
        assert_eq!(snapshot.revision, 1);
        assert_eq!(snapshot.status, ReleaseStatus::Deployed);
        assert_eq!(
            (
                snapshot.chart_name.as_str(),
                snapshot.chart_version.as_str()
            ),
            ("karpenter", "1.5.0")
        );
        assert_eq!(snapshot.app_version, "1.5.0");
        assert_eq!(snapshot.user_values["controller"]["image"]["tag"], "1.5.0");
        assert_eq!(snapshot.all_values["service"]["port"], 8080);
        assert!(snapshot.manifest.contains("controller:1.5.0"));
        assert_eq!(snapshot.restore_revision, Some(1));

        // A failing upgrade (pods never become ready) is rolled back by Helm.
        let err = helm
            .upgrade(
                &release,
                &chart("karpenter", "1.6.0"),
                &UpgradeOptions {
                    values_files: vec![values_file(&ctx, tool, "1.6.0")],
                    set: vec![SetValue::string(
                        "podAnnotations.kube-sim\\.dev/never-ready",
                        "true",
                    )],
                    timeout: Duration::from_secs(5),
                    ..UpgradeOptions::default()
                },
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.failure_kind(),
            Some(FailureKind::RolledBack),
            "{tool}: {err}"
        );
        let history = helm.history(&release).await.unwrap();
        let statuses: Vec<(u32, ReleaseStatus)> =
            history.iter().map(|h| (h.revision, h.status)).collect();
        assert_eq!(
            statuses,
            [
                (1, ReleaseStatus::Superseded),
                (2, ReleaseStatus::Superseded),
                (3, ReleaseStatus::Failed),
                (4, ReleaseStatus::Deployed),
            ],
            "{tool}"
        );
        assert_eq!(history[3].description, "Rollback to 2");

        // Restore the snapshot: revision 1 is still in history, so a rollback.
        let (plan, restored) = helm
            .restore(&snapshot, None, PendingPolicy::Refuse, &quick_rollback())
            .await
            .unwrap();
        assert_eq!(plan.action, RestoreAction::Rollback { to_revision: 1 });
        assert_eq!(restored.version, 5);
        assert_eq!(restored.info.status, ReleaseStatus::Deployed);
        let meta = helm.metadata(&release, None).await.unwrap();
        assert_eq!(meta.version, "1.5.0");
        assert_eq!(
            helm.values(&release, None, ValuesScope::User)
                .await
                .unwrap(),
            snapshot.user_values
        );
        assert_eq!(
            helm.manifest(&release, None).await.unwrap(),
            snapshot.manifest
        );

        // Prune revision 1 away with a short history, then restore again: a roll-forward.
        for _ in 0..2 {
            helm.upgrade(
                &release,
                &chart("karpenter", "1.6.0"),
                &quick(UpgradeOptions {
                    values_files: vec![values_file(&ctx, tool, "1.6.0")],
                    history_max: 2,
                    ..UpgradeOptions::default()
                }),
            )
            .await
            .unwrap();
        }
        let remaining: Vec<u32> = helm
            .history(&release)
            .await
            .unwrap()
            .iter()
            .map(|h| h.revision)
            .collect();
        assert!(!remaining.contains(&1), "{remaining:?}");
        let err = helm
            .restore(&snapshot, None, PendingPolicy::Refuse, &quick_rollback())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Restore { .. }), "{err}");
        let wrong = helm
            .restore(
                &snapshot,
                Some(&chart("karpenter", "1.6.0")),
                PendingPolicy::Refuse,
                &quick_rollback(),
            )
            .await
            .unwrap_err();
        assert!(
            wrong
                .to_string()
                .contains("holds karpenter-1.6.0, not the recorded karpenter-1.5.0"),
            "{wrong}"
        );
        let (plan, rolled) = helm
            .restore(
                &snapshot,
                Some(&chart("karpenter", "1.5.0")),
                PendingPolicy::Refuse,
                &quick_rollback(),
            )
            .await
            .unwrap();
        assert!(
            matches!(plan.action, RestoreAction::RollForward { .. }),
            "{plan:?}"
        );
        assert_eq!(rolled.info.status, ReleaseStatus::Deployed);
        assert_eq!(
            helm.metadata(&release, None).await.unwrap().version,
            "1.5.0"
        );
        assert_eq!(
            helm.values(&release, None, ValuesScope::User)
                .await
                .unwrap(),
            snapshot.user_values
        );
        assert_eq!(
            helm.manifest(&release, None).await.unwrap(),
            snapshot.manifest
        );
    }
    sim.shutdown().await;
}

/// Runs `helm upgrade` in the background and SIGKILLs it as soon as its revision is recorded
/// as pending (read from Helm's storage), as a crashed CI runner would: Helm gets no chance to
/// mark the release failed.
async fn kill_upgrade_once_pending(
    cmd: &ProcessBuilder,
    sim: &SimCluster,
    release: &ReleaseRef,
    pid_file: &std::path::Path,
) {
    use upgrade_core::process::shell_quote;
    let mut script = String::new();
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => script.push_str(&format!(
                "export {}={}; ",
                key.to_string_lossy(),
                shell_quote(&v.to_string_lossy())
            )),
            None => script.push_str(&format!("unset {}; ", key.to_string_lossy())),
        }
    }
    script.push_str(&shell_quote(&cmd.get_program().to_string_lossy()));
    for arg in cmd.get_args() {
        script.push(' ');
        script.push_str(&shell_quote(&arg.to_string_lossy()));
    }
    script.push_str(&format!(
        " >/dev/null 2>&1 & echo $! > {}; wait $!; exit 0",
        shell_quote(&pid_file.to_string_lossy())
    ));
    let mut sh = ProcessBuilder::new("/bin/sh");
    sh.arg("-c").arg(script).timeout(Duration::from_secs(120));
    let running = tokio::spawn(async move { sh.exec_async().await });

    let reader = StorageReader::new(sim.client().unwrap(), StorageDriver::Secret);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let history = reader.history(release).await.unwrap();
        if history.last().map(|r| r.status()) == Some(ReleaseStatus::PendingUpgrade) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no pending revision appeared: {history:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = std::fs::read_to_string(pid_file).unwrap();
    let mut kill = ProcessBuilder::new("/bin/sh");
    kill.arg("-c").arg(format!("kill -9 {}", pid.trim()));
    kill.exec().unwrap();
    running.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_left_pending_by_a_killed_helm_is_detected_and_explained() {
    let ctx = TestContext::new();
    let sim = start_sim().await;
    for tool in HELMS {
        let helm = helm_on(&ctx, tool, &sim);
        let release = ReleaseRef::new("mlflow", format!("mlops-{tool}"));
        deploy(&helm, &release, &chart("mlflow", "0.16.0")).await;
        let snapshot = helm.snapshot(&release).await.unwrap();

        // An upgrade that waits for pods that never become ready, killed mid-wait.
        let stuck = UpgradeOptions {
            set: vec![SetValue::string(
                "podAnnotations.kube-sim\\.dev/never-ready",
                "true",
            )],
            on_failure: OnFailure::Fail,
            wait: WaitMode::Ready,
            timeout: Duration::from_secs(120),
            ..UpgradeOptions::default()
        };
        let cmd = helm
            .upgrade_command(&release, &chart("mlflow", "0.17.0"), &stuck)
            .await
            .unwrap();
        let pid_file = ctx.work().join(format!("helm-{tool}.pid"));
        kill_upgrade_once_pending(&cmd, &sim, &release, &pid_file).await;
        let history = helm.history(&release).await.unwrap();
        assert_eq!(
            history.last().unwrap().status,
            ReleaseStatus::PendingUpgrade,
            "{tool}: {history:?}"
        );

        // Helm itself refuses; the preflight says what to do.
        let err = helm
            .upgrade(
                &release,
                &chart("mlflow", "0.17.0"),
                &quick(UpgradeOptions::default()),
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.failure_kind(),
            Some(FailureKind::OperationInProgress),
            "{tool}: {err}"
        );
        let err = helm
            .safe_upgrade(
                &release,
                &chart("mlflow", "0.17.0"),
                &quick(UpgradeOptions::default()),
                ctx.work(),
            )
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, Error::PendingOperation { revision: 2, .. }),
            "{text}"
        );
        assert!(
            text.contains(&format!("helm rollback mlflow 1 -n mlops-{tool} --wait")),
            "{text}"
        );

        // Restore refuses under the default policy and recovers under the explicit one.
        assert!(matches!(
            helm.restore(&snapshot, None, PendingPolicy::Refuse, &quick_rollback())
                .await,
            Err(Error::PendingOperation { .. })
        ));
        let (plan, restored) = helm
            .restore(
                &snapshot,
                None,
                PendingPolicy::RollbackToLastDeployed,
                &quick_rollback(),
            )
            .await
            .unwrap();
        assert_eq!(plan.action, RestoreAction::Rollback { to_revision: 1 });
        assert_eq!(restored.info.status, ReleaseStatus::Deployed);
        assert_eq!(restored.version, 3);
        assert!(helm.preflight(&release).await.is_ok());
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_storage_reader_returns_what_helm_list_and_history_return() {
    let ctx = TestContext::new();
    let sim = start_sim().await;
    let helm3 = helm_on(&ctx, "helm3", &sim);
    let helm4 = helm_on(&ctx, "helm4", &sim);
    // A mix of majors, charts, revisions and statuses.
    let described = |v: &'static str| {
        quick(UpgradeOptions {
            description: Some(format!("fixture {v}")),
            ..UpgradeOptions::default()
        })
    };
    let specs: [(&Helm, &str, &str, &str, &str); 4] = [
        (&helm3, "karpenter", "karpenter", "karpenter", "1.5.0"),
        (&helm4, "kserve", "kserve", "kserve", "0.14.1"),
        (&helm3, "argo-workflows", "argo", "argo-workflows", "0.45.0"),
        (&helm4, "mlflow", "mlops", "mlflow", "0.16.0"),
    ];
    for (helm, name, ns, chart_name, version) in specs {
        let release = ReleaseRef::new(name, ns);
        helm.upgrade(&release, &chart(chart_name, version), &described(version))
            .await
            .unwrap();
    }
    helm4
        .upgrade(
            &ReleaseRef::new("kserve", "kserve"),
            &chart("kserve", "0.15.0"),
            &described("0.15.0"),
        )
        .await
        .unwrap();
    let failed = helm3
        .upgrade(
            &ReleaseRef::new("karpenter", "karpenter"),
            &chart("karpenter", "1.6.0"),
            &UpgradeOptions {
                set: vec![SetValue::string(
                    "podAnnotations.kube-sim\\.dev/never-ready",
                    "true",
                )],
                on_failure: OnFailure::Fail,
                timeout: Duration::from_secs(3),
                ..UpgradeOptions::default()
            },
        )
        .await;
    assert_eq!(
        failed.unwrap_err().failure_kind(),
        Some(FailureKind::Timeout)
    );

    let reader = StorageReader::new(sim.client().unwrap(), StorageDriver::Secret);
    let stored = reader.releases(None).await.unwrap();
    for helm in [&helm3, &helm4] {
        let listed = helm.list(&ListOptions::default()).await.unwrap();
        let from_helm: Vec<_> = listed
            .iter()
            .map(|l| {
                (
                    l.namespace.clone(),
                    l.name.clone(),
                    l.revision,
                    l.status,
                    l.chart.clone(),
                    l.app_version.clone(),
                )
            })
            .collect();
        let mut from_storage: Vec<_> = stored
            .iter()
            .map(|r| {
                (
                    r.namespace.clone(),
                    r.name.clone(),
                    r.version,
                    r.status(),
                    r.chart_label(),
                    r.app_version(),
                )
            })
            .collect();
        let mut sorted_helm = from_helm.clone();
        sorted_helm.sort();
        from_storage.sort();
        assert_eq!(from_storage, sorted_helm);
        assert_eq!(from_storage.len(), 4);

        for entry in &listed {
            let release = entry.release_ref();
            let history = helm.history(&release).await.unwrap();
            let stored: Vec<_> = reader
                .history(&release)
                .await
                .unwrap()
                .iter()
                .map(HistoryEntry::from)
                .collect();
            assert_eq!(
                stored.iter().map(strip).collect::<Vec<_>>(),
                history.iter().map(strip).collect::<Vec<_>>(),
                "{release}"
            );
        }
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_configmap_driver_is_read_too() {
    let ctx = TestContext::new();
    let sim = start_sim().await;
    let helm = helm_builder(&ctx, "helm4")
        .kubeconfig(sim.kubeconfig_path())
        .driver(StorageDriver::ConfigMap)
        .build()
        .unwrap();
    let release = ReleaseRef::new("mlflow", "mlops");
    deploy(&helm, &release, &chart("mlflow", "0.16.0")).await;
    deploy(&helm, &release, &chart("mlflow", "0.17.0")).await;
    let configmaps: Api<ConfigMap> = Api::namespaced(sim.client().unwrap(), "mlops");
    assert!(configmaps.get("sh.helm.release.v1.mlflow.v2").await.is_ok());
    let reader = StorageReader::new(sim.client().unwrap(), StorageDriver::ConfigMap);
    let stored: Vec<_> = reader
        .history(&release)
        .await
        .unwrap()
        .iter()
        .map(|r| strip(&HistoryEntry::from(r)))
        .collect();
    let listed: Vec<_> = helm
        .history(&release)
        .await
        .unwrap()
        .iter()
        .map(strip)
        .collect();
    assert_eq!(stored, listed);
    assert_eq!(stored.len(), 2);
    sim.shutdown().await;
}

/// A live cluster reports its full gitVersion: on EKS a pre-release to Helm, so a kubeVersion
/// without a `-0` suffix refuses it at install time, although `helm template --kube-version`
/// with the same version passes. `check_kube_version` agrees with the live install.
#[tokio::test(flavor = "multi_thread")]
async fn kube_version_on_a_live_eks_like_cluster() {
    let ctx = TestContext::new();
    let sim = start_sim().await;
    let eks = sim.server_version().to_string();
    assert!(eks.contains("-eks-"), "{eks}");
    // (constraint, Helm 3 installs, Helm 4 installs): measured with the real binaries.
    let cases = [
        (">=1.28.0", false, false),
        (">=1.28.0-0", true, true),
        (">=1.28.0-0 <1.32.0", false, true),
        (">=1.28.0-0 <1.32.0-0", true, true),
        ("<1.28.0 || >=1.29.0-0", true, true),
    ];
    for (i, (constraint, helm3_installs, helm4_installs)) in cases.into_iter().enumerate() {
        let dir = ctx.work().join(format!("kv{i}"));
        kube_version_chart(&dir, &format!("kv{i}"), constraint);
        for (tool, installs) in [("helm3", helm3_installs), ("helm4", helm4_installs)] {
            let helm = helm_on(&ctx, tool, &sim);
            let major = helm.version().await.unwrap().major();
            let check =
                upgrade_helm::chart::check_kube_version(Some(constraint), &eks, major).unwrap();
            assert_eq!(check.compatible, installs, "{tool} {check:?}");
            let release = ReleaseRef::new(format!("kv{i}"), format!("kv-{tool}"));
            let result = helm
                .upgrade(
                    &release,
                    &ChartRef::path(&dir),
                    &quick(UpgradeOptions::default()),
                )
                .await;
            match (installs, result) {
                (true, Ok(r)) => assert_eq!(r.info.status, ReleaseStatus::Deployed),
                (false, Err(err)) => assert_eq!(
                    err.failure_kind(),
                    Some(FailureKind::KubeVersionIncompatible),
                    "{tool}: {err}"
                ),
                (expected, got) => {
                    panic!("{tool} {constraint} on {eks}: expected install {expected}, got {got:?}")
                }
            }
        }
    }
    sim.shutdown().await;
}

/// `helm upgrade` leaves CRDs under crds/ as they were; the notice lists them with the way to
/// apply them.
#[tokio::test(flavor = "multi_thread")]
async fn crds_are_not_updated_by_upgrades_and_the_notice_says_how() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let ctx = TestContext::new();
    let sim = start_sim().await;
    let crds: Api<CustomResourceDefinition> = Api::all(sim.client().unwrap());
    let served = |crd: CustomResourceDefinition| -> Vec<String> {
        crd.spec
            .versions
            .into_iter()
            .filter(|v| v.served)
            .map(|v| v.name)
            .collect()
    };
    for tool in HELMS {
        let helm = helm_on(&ctx, tool, &sim);
        let release = ReleaseRef::new("kserve", format!("kserve-{tool}"));
        deploy(&helm, &release, &chart("kserve", "0.14.1")).await;
        deploy(&helm, &release, &chart("kserve", "0.15.0")).await;
        let live = served(
            crds.get("inferenceservices.serving.kserve.io")
                .await
                .unwrap(),
        );
        assert_eq!(live, ["v1beta1"], "{tool}: helm upgrade changed the CRD");

        let target = chart("kserve", "0.15.0");
        let shipped = helm.show_crds(&target).await.unwrap();
        assert_eq!(shipped[0].versions, ["v1beta1", "v1beta2"]);
        let notice = upgrade_helm::CrdUpgradeNotice::for_chart(&target, shipped).unwrap();
        let text = notice.to_string();
        assert!(
            text.contains(
                "inferenceservices.serving.kserve.io (InferenceService, versions v1beta1, v1beta2)"
            ),
            "{text}"
        );
        assert!(
            text.contains("| kubectl apply --server-side --force-conflicts -f -"),
            "{text}"
        );
    }
    sim.shutdown().await;
}

/// Errors provoked on a live cluster, classified from the real stderr of both majors.
#[tokio::test(flavor = "multi_thread")]
async fn live_cluster_errors_are_classified_on_both_majors() {
    let ctx = TestContext::new();
    let sim = start_sim().await;
    let configmaps: Api<ConfigMap> = Api::namespaced(sim.client().unwrap(), "default");
    let taken: ConfigMap = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "taken", "namespace": "default"}
    }))
    .unwrap();
    configmaps
        .create(&Default::default(), &taken)
        .await
        .unwrap();
    let mut report = String::new();
    for tool in HELMS {
        let helm = helm_on(&ctx, tool, &sim);
        let missing = ReleaseRef::new("nothing-here", "default");
        let mut expect = |what: &str, result: Result<String, Error>, kind: FailureKind| {
            let err = result.expect_err(what);
            assert_eq!(err.failure_kind(), Some(kind), "{tool} {what}: {err}");
            let first = err
                .stderr()
                .unwrap_or_default()
                .lines()
                .next()
                .unwrap_or_default()
                .to_string();
            report.push_str(&format!("{tool} {what}: {kind:?}\n  {first}\n"));
        };
        expect(
            "status",
            helm.status(&missing, None).await.map(|r| r.name),
            FailureKind::ReleaseNotFound,
        );
        expect(
            "history",
            helm.history(&missing).await.map(|h| h.len().to_string()),
            FailureKind::ReleaseNotFound,
        );
        expect(
            "rollback",
            helm.rollback(&missing, 1, &quick_rollback())
                .await
                .map(|r| r.name),
            FailureKind::ReleaseNotFound,
        );
        expect(
            "upgrade without install",
            helm.upgrade(
                &missing,
                &chart("mlflow", "0.16.0"),
                &UpgradeOptions {
                    install: false,
                    create_namespace: false,
                    ..quick(UpgradeOptions::default())
                },
            )
            .await
            .map(|r| r.name),
            FailureKind::NoDeployedReleases,
        );
        let release = ReleaseRef::new("mlflow", "default");
        expect(
            "invalid manifest",
            helm.upgrade(
                &release,
                &chart("mlflow", "0.16.0"),
                &UpgradeOptions {
                    set: vec![SetValue::string("extraConfigMap.name", "Not_A_Valid_Name")],
                    on_failure: OnFailure::Fail,
                    ..quick(UpgradeOptions::default())
                },
            )
            .await
            .map(|r| r.name),
            FailureKind::ManifestValidation,
        );
        expect(
            "existing resource",
            helm.upgrade(
                &release,
                &chart("mlflow", "0.16.0"),
                &UpgradeOptions {
                    set: vec![SetValue::string("extraConfigMap.name", "taken")],
                    on_failure: OnFailure::Fail,
                    ..quick(UpgradeOptions::default())
                },
            )
            .await
            .map(|r| r.name),
            FailureKind::ResourceExists,
        );
        helm.uninstall(&release, &Default::default()).await.unwrap();
        expect(
            "status after uninstall",
            helm.status(&release, None).await.map(|r| r.name),
            FailureKind::ReleaseNotFound,
        );
        expect(
            "uninstall again",
            helm.uninstall(&release, &Default::default())
                .await
                .map(|()| String::new()),
            FailureKind::ReleaseNotFound,
        );
    }
    let mut settings = ctx.insta_settings();
    settings.add_filter(r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]");
    settings.bind(|| insta::assert_snapshot!(report));
    sim.shutdown().await;
}

/// Why values are always explicit: `--reuse-values` across chart versions drops the new
/// chart's defaults (1.6.0 adds `logging.level`) and fails to render; `--reset-then-reuse-values`
/// keeps the user's values and takes the new defaults; the default (`--reset-values` with the
/// values given) upgrades cleanly.
#[tokio::test(flavor = "multi_thread")]
async fn reuse_values_across_chart_versions_breaks_and_the_explicit_strategies_do_not() {
    use upgrade_helm::ValuesStrategy;
    let ctx = TestContext::new();
    let sim = start_sim().await;
    for tool in HELMS {
        let helm = helm_on(&ctx, tool, &sim);
        let release = ReleaseRef::new("karpenter", format!("reuse-{tool}"));
        let mut base = quick(UpgradeOptions::default());
        base.set = vec![SetValue::new("settings.clusterName", "mlops-dev")];
        helm.upgrade(&release, &chart("karpenter", "1.5.0"), &base)
            .await
            .unwrap();

        let reuse = UpgradeOptions {
            values: ValuesStrategy::Reuse,
            set: Vec::new(),
            on_failure: OnFailure::Fail,
            ..base.clone()
        };
        let err = helm
            .upgrade(&release, &chart("karpenter", "1.6.0"), &reuse)
            .await
            .unwrap_err();
        assert_eq!(
            err.failure_kind(),
            Some(FailureKind::RenderFailed),
            "{tool}: {err}"
        );

        let reset_then_reuse = UpgradeOptions {
            values: ValuesStrategy::ResetThenReuse,
            set: Vec::new(),
            ..base.clone()
        };
        let upgraded = helm
            .upgrade(&release, &chart("karpenter", "1.6.0"), &reset_then_reuse)
            .await
            .unwrap();
        assert_eq!(upgraded.config["settings"]["clusterName"], "mlops-dev");
        assert!(upgraded.manifest.contains("logLevel: \"info\""));
    }
    sim.shutdown().await;
}

/// The runner's timeout stops Helm with SIGINT first: Helm traps it, cancels, and marks the
/// revision failed, so the release is not left pending (unlike a SIGKILL).
#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_interrupts_helm_gracefully_and_leaves_no_pending_revision() {
    let ctx = TestContext::new();
    let sim = start_sim().await;
    // Both majors at once: the timeout below leaves room for a loaded machine.
    let (ctx, sim) = (&ctx, &sim);
    let interrupt = |tool: &'static str| async move {
        let helm = helm_on(ctx, tool, sim);
        let release = ReleaseRef::new("argo-workflows", format!("argo-{tool}"));
        deploy(&helm, &release, &chart("argo-workflows", "0.45.0")).await;
        let interrupted = UpgradeOptions {
            set: vec![SetValue::string(
                "podAnnotations.kube-sim\\.dev/never-ready",
                "true",
            )],
            on_failure: OnFailure::Fail,
            timeout: Duration::from_secs(120),
            process_timeout: Some(Duration::from_secs(10)),
            kill_grace: Duration::from_secs(30),
            ..UpgradeOptions::default()
        };
        let err = helm
            .upgrade(&release, &chart("argo-workflows", "0.46.0"), &interrupted)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::TimedOut { .. }), "{tool}: {err}");
        assert!(err.to_string().contains("helm history"), "{err}");
        let history = helm.history(&release).await.unwrap();
        let last = history.last().unwrap();
        assert_eq!(
            (last.revision, last.status),
            (2, ReleaseStatus::Failed),
            "{tool}: {history:?}"
        );
        assert!(helm.preflight(&release).await.is_ok());
    };
    tokio::join!(interrupt("helm3"), interrupt("helm4"));
}

/// `--force-conflicts` needs server-side apply: on a release Helm 3 wrote (client-side apply)
/// the upgrade is refused before Helm runs, with the error Helm 4 itself would give; on a
/// release Helm 4 wrote (server-side apply) it goes through.
#[tokio::test(flavor = "multi_thread")]
async fn force_conflicts_is_gated_on_the_release_apply_method() {
    use upgrade_helm::{ForceMode, ServerSide};
    let ctx = TestContext::new();
    let sim = start_sim().await;
    let helm3 = helm_on(&ctx, "helm3", &sim);
    let helm4 = helm_on(&ctx, "helm4", &sim);
    let by_helm3 = ReleaseRef::new("mlflow", "written-by-helm3");
    let by_helm4 = ReleaseRef::new("mlflow", "written-by-helm4");
    let install = quick(UpgradeOptions::default());
    helm3
        .upgrade(&by_helm3, &chart("mlflow", "0.16.0"), &install)
        .await
        .unwrap();
    helm4
        .upgrade(&by_helm4, &chart("mlflow", "0.16.0"), &install)
        .await
        .unwrap();
    // No user values: `get values -o json` prints `null` on both majors.
    for (helm, release) in [(&helm3, &by_helm3), (&helm4, &by_helm4)] {
        let values = helm.values(release, None, ValuesScope::User).await.unwrap();
        assert!(values.is_empty(), "{values:?}");
    }
    assert_eq!(
        helm4.metadata(&by_helm3, None).await.unwrap().apply_method,
        None
    );
    assert_eq!(
        helm4
            .metadata(&by_helm4, None)
            .await
            .unwrap()
            .apply_method
            .as_deref(),
        Some("ssa")
    );

    let conflicts = UpgradeOptions {
        force: ForceMode::Conflicts,
        server_side: Some(ServerSide::Auto),
        ..quick(UpgradeOptions::default())
    };
    let err = helm4
        .upgrade(&by_helm3, &chart("mlflow", "0.17.0"), &conflicts)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidOptions { .. }), "{err}");

    // What Helm 4 says when asked anyway.
    let mut raw = ctx.command("helm4");
    raw.args(["upgrade", "mlflow"])
        .arg(fixture_chart("mlflow", "0.17.0"))
        .args(["--namespace", "written-by-helm3", "--force-conflicts"])
        .args(["--server-side=auto", "--kubeconfig"])
        .arg(sim.kubeconfig_path());
    let out = raw.output().unwrap();
    assert!(!out.status.success());
    let stderr = out.stderr_lossy();
    assert!(
        stderr.contains("forceConflicts enabled when serverSideApply disabled"),
        "{stderr}"
    );

    let upgraded = helm4
        .upgrade(&by_helm4, &chart("mlflow", "0.17.0"), &conflicts)
        .await
        .unwrap();
    assert_eq!(upgraded.version, 2);
    assert_eq!(upgraded.apply_method.as_deref(), Some("ssa"));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_commands_are_run_again_when_the_api_server_fails_a_request_for_now() {
    use kube_sim::{FaultConfig, FaultKind};
    let ctx = TestContext::new();
    let sim = start_sim().await;
    let helm = helm_on(&ctx, "helm4", &sim);
    let release = ReleaseRef::new("karpenter", "karpenter");
    let options = |tag: &str| {
        quick(UpgradeOptions {
            values_files: vec![values_file(&ctx, "helm4", tag)],
            ..UpgradeOptions::default()
        })
    };
    helm.upgrade(&release, &chart("karpenter", "1.5.0"), &options("1.5.0"))
        .await
        .expect("installed");
    // From here the API server fails a third of the reads of Helm's release storage and of
    // its writes with a 503 or 500, which Helm itself does not retry (no Retry-After).
    sim.set_faults(
        FaultConfig {
            seed: 11,
            ..FaultConfig::default()
        }
        .rule(
            Some("list"),
            Some("secrets"),
            0.3,
            FaultKind::ServiceUnavailable,
        )
        .rule(
            Some("create"),
            Some("secrets"),
            0.3,
            FaultKind::InternalError,
        ),
    );
    let history = helm.history(&release).await.expect("history, run again");
    assert_eq!(history.len(), 1);
    helm.upgrade(&release, &chart("karpenter", "1.6.0"), &options("1.6.0"))
        .await
        .expect("the upgrade, run again");
    sim.set_faults(FaultConfig::default());
    let now = helm.metadata(&release, None).await.unwrap();
    assert_eq!(
        (now.version.as_str(), now.status),
        ("1.6.0", ReleaseStatus::Deployed)
    );
}

#[test]
fn api_server_failures_are_told_apart_from_other_failures() {
    use upgrade_helm::FailureKind;
    for stderr in [
        "Error: query: failed to query with labels: the server is currently unable to handle the request",
        "Error: UPGRADE FAILED: create: failed to create: Internal error occurred: etcdserver: leader changed",
        "Error: an error on the server (\"unknown\") has prevented the request from succeeding",
        "Error: read tcp 127.0.0.1:5555->127.0.0.1:6443: read: connection reset by peer",
        "Error: UPGRADE FAILED: create: failed to create: Post \"https://127.0.0.1:6443/api/v1/namespaces/mlops/secrets\": EOF",
    ] {
        assert_eq!(
            FailureKind::classify(stderr),
            FailureKind::ApiTransient,
            "{stderr}"
        );
    }
    assert_eq!(
        FailureKind::classify(
            "Error: Kubernetes cluster unreachable: dial tcp: connection refused"
        ),
        FailureKind::ClusterUnreachable
    );
    assert_eq!(
        FailureKind::classify(
            "Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress"
        ),
        FailureKind::OperationInProgress
    );
}

/// A fault to inject: verb, resource, how many times in a row.
type Fault = (&'static str, &'static str, u32);

/// A failed write of the release record is what leaves a release `pending-*` without any Helm
/// running: the upgrade's objects were applied (or failed to apply) and Helm could not record
/// how it ended. Run again as it is, the upgrade would stop at "another operation is in
/// progress"; the wrapper settles its own pending revision first, then runs the upgrade again.
/// And a failure Helm rolled back (`--atomic`) whose cause was transient is run again too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_revision_left_by_a_failed_record_write_is_settled_before_helm_runs_again() {
    use kube_sim::{FaultConfig, FaultKind};
    let ctx = TestContext::new();
    let sim = start_sim().await;
    for tool in HELMS {
        // (what fails: verb, resource, how many times in a row; what Helm does on a failure)
        let scenarios: [(&str, &[Fault], OnFailure); 5] = [
            (
                "the first watches of the wait",
                &[("watch", "*", 3)],
                OnFailure::Rollback,
            ),
            (
                "the record writes after the objects were applied",
                &[("update", "secrets", 2)],
                OnFailure::Rollback,
            ),
            (
                "an object write, then Helm's own rollback",
                &[("patch", "deployments", 1)],
                OnFailure::Rollback,
            ),
            (
                "an object write and the record of the failure",
                &[("patch", "deployments", 1), ("update", "secrets", 2)],
                OnFailure::Fail,
            ),
            (
                "the pending record's creation",
                &[("create", "secrets", 1)],
                OnFailure::Fail,
            ),
        ];
        for (index, (what, faults, on_failure)) in scenarios.into_iter().enumerate() {
            let helm = helm_on(&ctx, tool, &sim);
            let release = ReleaseRef::new("mlflow", format!("record-{tool}-{index}"));
            deploy(&helm, &release, &chart("mlflow", "0.16.0")).await;
            let config =
                faults
                    .iter()
                    .fold(FaultConfig::default(), |config, (verb, resource, times)| {
                        config.next(
                            Some(verb),
                            Some(resource),
                            *times,
                            FaultKind::ServiceUnavailable,
                        )
                    });
            sim.set_faults(config);
            let options = quick(UpgradeOptions {
                on_failure,
                ..UpgradeOptions::default()
            });
            let upgraded = helm
                .upgrade(&release, &chart("mlflow", "0.17.0"), &options)
                .await;
            sim.set_faults(FaultConfig::default());
            let history = helm.history(&release).await.unwrap();
            let upgraded = upgraded.unwrap_or_else(|e| panic!("{tool}, {what}: {e}\n{history:#?}"));
            assert_eq!(
                upgraded.info.status,
                ReleaseStatus::Deployed,
                "{tool}, {what}"
            );
            let now = helm.metadata(&release, None).await.unwrap();
            assert_eq!(
                (now.version.as_str(), now.status),
                ("0.17.0", ReleaseStatus::Deployed),
                "{tool}, {what}: {history:#?}"
            );
            // Helm itself decides by the newest revision; a settled pending one stays in the
            // history underneath (as after `helm rollback` by hand).
            helm.preflight(&release)
                .await
                .unwrap_or_else(|e| panic!("{tool}, {what}: {e}"));
        }
    }
    sim.shutdown().await;
}

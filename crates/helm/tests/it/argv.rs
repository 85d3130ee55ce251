//! The argv each version-neutral option renders to, for Helm 3.17 and Helm 4.1 side by side.

use std::path::PathBuf;
use std::time::Duration;

use upgrade_helm::{
    ChartRef, DryRun, Error, ForceMode, Helm, HelmVersion, ListOptions, OnFailure, ReleaseRef,
    RollbackOptions, ServerSide, SetValue, UninstallOptions, UpgradeOptions, ValuesStrategy,
    WaitMode, options,
};

fn helm(version: HelmVersion) -> Helm {
    Helm::builder()
        .program("/opt/helm/bin/helm")
        .kubeconfig("/home/ops/.kube/config")
        .context("mlops-dev")
        .version(version)
        .build()
        .unwrap()
}

fn v3() -> HelmVersion {
    HelmVersion::new(3, 17, 3)
}

fn v4() -> HelmVersion {
    HelmVersion::new(4, 1, 4)
}

fn karpenter() -> (ReleaseRef, ChartRef) {
    (
        ReleaseRef::new("karpenter", "karpenter"),
        ChartRef::parse("oci://public.ecr.aws/karpenter/karpenter")
            .unwrap()
            .with_version("1.6.0"),
    )
}

/// The redacted command line of an upgrade on both majors.
async fn upgrade_lines(o: &UpgradeOptions) -> String {
    let (release, chart) = karpenter();
    let mut out = String::new();
    for version in [v3(), v4()] {
        let line = match helm(version.clone())
            .upgrade_command(&release, &chart, o)
            .await
        {
            Ok(cmd) => cmd.to_string(),
            Err(err) => format!("error: {err}"),
        };
        out.push_str(&format!("{version}: {line}\n"));
    }
    out
}

#[tokio::test]
async fn default_upgrade_waits_rolls_back_on_failure_and_resets_values() {
    let o = UpgradeOptions {
        values_files: vec![
            PathBuf::from("infrastructure/helm/aws/karpenter-values.yaml"),
            PathBuf::from("overrides/prod.yaml"),
        ],
        ..UpgradeOptions::default()
    };
    insta::assert_snapshot!(upgrade_lines(&o).await);
}

#[tokio::test]
async fn set_values_are_redacted_in_the_displayed_command() {
    let o = UpgradeOptions {
        set: vec![
            SetValue::new("settings.clusterName", "mlops-prod-east"),
            SetValue::string("db.password", "hunter2-very-secret"),
        ],
        wait: WaitMode::HooksOnly,
        on_failure: OnFailure::Fail,
        ..UpgradeOptions::default()
    };
    let lines = upgrade_lines(&o).await;
    assert!(!lines.contains("hunter2"), "{lines}");
    insta::assert_snapshot!(lines);
    let debug = format!("{:?}", o.set);
    assert!(!debug.contains("hunter2"), "{debug}");
}

#[tokio::test]
async fn legacy_wait_force_replace_and_jobs() {
    let o = UpgradeOptions {
        install: false,
        wait: WaitMode::ReadyLegacy,
        wait_for_jobs: true,
        force: ForceMode::Replace,
        values: ValuesStrategy::ResetThenReuse,
        cleanup_on_fail: true,
        timeout: Duration::from_secs(600),
        history_max: 15,
        description: Some("karpenter 1.6.0 via upgrade-karpenter".into()),
        ..UpgradeOptions::default()
    };
    insta::assert_snapshot!(upgrade_lines(&o).await);
}

#[tokio::test]
async fn server_side_apply_and_conflicts_only_on_helm4() {
    let o = UpgradeOptions {
        server_side: Some(ServerSide::True),
        force: ForceMode::Conflicts,
        dry_run: Some(DryRun::Server),
        ..UpgradeOptions::default()
    };
    insta::assert_snapshot!(upgrade_lines(&o).await);

    // auto + a release written by Helm 3 (client-side apply): --force-conflicts would fail.
    let auto = UpgradeOptions {
        server_side: Some(ServerSide::Auto),
        force: ForceMode::Conflicts,
        ..UpgradeOptions::default()
    };
    let (release, chart) = karpenter();
    let err = options::upgrade_args(&v4(), &release, &chart, &auto).unwrap_err();
    assert!(matches!(err, Error::InvalidOptions { .. }));
    assert!(
        err.to_string().contains("serverSideApply disabled"),
        "{err}"
    );
    let ssa = UpgradeOptions {
        previous_apply_method: Some("ssa".into()),
        ..auto
    };
    let argv = options::upgrade_args(&v4(), &release, &chart, &ssa).unwrap();
    assert!(argv.iter().any(|a| a == "--force-conflicts"));
}

#[tokio::test]
async fn version_gates_and_contradictions_are_refused() {
    let (release, chart) = karpenter();
    let old = HelmVersion::new(3, 13, 0);
    let reset_then_reuse = UpgradeOptions {
        values: ValuesStrategy::ResetThenReuse,
        ..UpgradeOptions::default()
    };
    let err = options::upgrade_args(&old, &release, &chart, &reset_then_reuse).unwrap_err();
    assert_eq!(
        err.to_string(),
        "--reset-then-reuse-values needs Helm 3.14.0, but this Helm is 3.13.0\nhint: drop the option or use a Helm that has it"
    );
    let take = UpgradeOptions {
        take_ownership: true,
        ..UpgradeOptions::default()
    };
    assert!(options::upgrade_args(&HelmVersion::new(3, 16, 0), &release, &chart, &take).is_err());
    assert!(options::upgrade_args(&v3(), &release, &chart, &take).is_ok());

    let jobs_without_wait = UpgradeOptions {
        wait: WaitMode::HooksOnly,
        wait_for_jobs: true,
        ..UpgradeOptions::default()
    };
    assert!(options::upgrade_args(&v4(), &release, &chart, &jobs_without_wait).is_err());
    let unlimited = UpgradeOptions {
        history_max: 0,
        ..UpgradeOptions::default()
    };
    assert!(options::upgrade_args(&v4(), &release, &chart, &unlimited).is_err());
    let bad_name = ReleaseRef::new("Karpenter_Prod", "karpenter");
    let err =
        options::upgrade_args(&v4(), &bad_name, &chart, &UpgradeOptions::default()).unwrap_err();
    assert!(
        err.to_string().contains("not a valid release name"),
        "{err}"
    );
}

#[tokio::test]
async fn rollback_is_always_to_an_explicit_revision() {
    let release = ReleaseRef::new("kserve", "kserve");
    let o = RollbackOptions {
        force: ForceMode::Replace,
        ..RollbackOptions::default()
    };
    let mut lines = String::new();
    for version in [v3(), v4()] {
        let argv = options::rollback_args(&version, &release, 7, &o).unwrap();
        lines.push_str(&format!("{version}: {}\n", join(&argv)));
    }
    insta::assert_snapshot!(lines);
    let err = options::rollback_args(&v4(), &release, 0, &o).unwrap_err();
    assert!(err.to_string().contains("explicit revision"), "{err}");
}

#[tokio::test]
async fn list_all_is_only_emitted_on_helm3() {
    let mut lines = String::new();
    for version in [v3(), v4()] {
        let all = options::list_args(&version, &ListOptions::default());
        let restricted = options::list_args(
            &version,
            &ListOptions {
                namespace: Some("argo".into()),
                deployed_and_failed_only: true,
            },
        );
        lines.push_str(&format!(
            "{version}: {}\n{version}: {}\n",
            join(&all),
            join(&restricted)
        ));
    }
    insta::assert_snapshot!(lines);
}

#[tokio::test]
async fn uninstall_waits_per_major() {
    let release = ReleaseRef::new("mlflow", "mlops");
    let o = UninstallOptions {
        keep_history: true,
        ..UninstallOptions::default()
    };
    let lines: Vec<String> = [v3(), v4()]
        .into_iter()
        .map(|v| join(&options::uninstall_args(&v, &release, &o).unwrap()))
        .collect();
    assert_eq!(
        lines,
        [
            "uninstall mlflow --namespace mlops --keep-history --wait --timeout 300s",
            "uninstall mlflow --namespace mlops --keep-history --wait=watcher --timeout 300s",
        ]
    );
}

#[tokio::test]
async fn the_environment_cannot_redirect_helm() {
    let helm = helm(v4());
    let cmd = helm.command(["list".into()]);
    let envs = cmd.get_envs();
    for var in upgrade_helm::REDIRECTING_ENV {
        if *var == "HELM_DRIVER" {
            continue;
        }
        assert_eq!(
            envs.get(std::ffi::OsStr::new(var)),
            Some(&None),
            "{var} is not removed"
        );
    }
    // An explicit kubeconfig wins over KUBECONFIG; the driver is explicit.
    assert_eq!(envs.get(std::ffi::OsStr::new("KUBECONFIG")), Some(&None));
    assert_eq!(
        envs.get(std::ffi::OsStr::new("HELM_DRIVER")),
        Some(&Some("secret".into()))
    );
    assert_eq!(
        envs.get(std::ffi::OsStr::new("NO_COLOR")),
        Some(&Some("1".into()))
    );
}

fn join(argv: &[std::ffi::OsString]) -> String {
    argv.iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

//! The real Helm 3.17 and Helm 4.1, without a cluster: version detection, error
//! classification from real stderr, charts (show, template, CRDs, kubeVersion), and a local
//! chart repository (repo add/update, versions offered, pull).

use crate::common::{
    HELMS, closed_kubeconfig, fixture_chart, helm_builder, helm_for, kube_version_chart, serve_dir,
    serve_oci_chart,
};
use upgrade_helm::chart::check_kube_version;
use upgrade_helm::{
    ChartRef, Error, FailureKind, HelmMajor, ListOptions, LocalChart, ReleaseRef, SetValue,
    TemplateOptions, UpgradeOptions,
};
use upgrade_test::TestContext;

#[tokio::test(flavor = "multi_thread")]
async fn detects_both_majors() {
    let ctx = TestContext::new();
    let helm3 = helm_for(&ctx, "helm3");
    let helm4 = helm_for(&ctx, "helm4");
    let v3 = helm3.version().await.unwrap();
    assert_eq!(v3.major(), HelmMajor::V3);
    assert_eq!(v3.to_string(), "v3.17.3");
    let v4 = helm4.version().await.unwrap();
    assert_eq!(v4.major(), HelmMajor::V4);
    assert!(v4.at_least(4, 1, 0), "{v4}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_cluster_is_classified_on_both_majors() {
    let ctx = TestContext::new();
    let kubeconfig = closed_kubeconfig(&ctx);
    let mut rendered = String::new();
    for tool in HELMS {
        let helm = helm_builder(&ctx, tool)
            .kubeconfig(&kubeconfig)
            .build()
            .unwrap();
        let err = helm.list(&ListOptions::default()).await.unwrap_err();
        assert_eq!(
            err.failure_kind(),
            Some(FailureKind::ClusterUnreachable),
            "{err}"
        );
        let release = ReleaseRef::new("karpenter", "karpenter");
        let err = helm.status(&release, None).await.unwrap_err();
        assert_eq!(
            err.failure_kind(),
            Some(FailureKind::ClusterUnreachable),
            "{err}"
        );
        rendered.push_str(&format!("{err}\n\n"));
    }
    let mut settings = ctx.insta_settings();
    settings.add_filter(r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]");
    settings.add_filter(r"/[^ ]*/\.tools/bin/", "[TOOLS]/");
    settings.bind(|| insta::assert_snapshot!(rendered));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_set_password_never_reaches_an_error() {
    let ctx = TestContext::new();
    let kubeconfig = closed_kubeconfig(&ctx);
    for tool in HELMS {
        let helm = helm_builder(&ctx, tool)
            .kubeconfig(&kubeconfig)
            .build()
            .unwrap();
        let o = UpgradeOptions {
            set: vec![SetValue::string("db.password", "pw-9f8e7d6c-do-not-leak")],
            ..UpgradeOptions::default()
        };
        let err = helm
            .upgrade(
                &ReleaseRef::new("mlflow", "mlops"),
                &ChartRef::path(fixture_chart("mlflow", "0.17.0")),
                &o,
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.failure_kind(),
            Some(FailureKind::ClusterUnreachable),
            "{err}"
        );
        for shown in [err.to_string(), format!("{err:?}")] {
            assert!(
                !shown.contains("pw-9f8e7d6c"),
                "{tool} leaked the password: {shown}"
            );
            assert!(shown.contains("db.password=***"), "{shown}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn chart_not_found_and_render_failures_are_classified() {
    let ctx = TestContext::new();
    let release = ReleaseRef::new("karpenter", "karpenter");
    for tool in HELMS {
        let helm = helm_for(&ctx, tool);
        let missing = ChartRef::path(ctx.work().join("no-such-chart"));
        let err = helm.show_chart(&missing).await.unwrap_err();
        assert_eq!(
            err.failure_kind(),
            Some(FailureKind::ChartNotFound),
            "{err}"
        );
        assert!(
            err.to_string().contains("hint: check the chart reference"),
            "{err}"
        );

        let chart = ChartRef::path(fixture_chart("karpenter", "1.6.0"));
        let too_old = TemplateOptions {
            kube_version: Some("1.28.0".into()),
            ..TemplateOptions::default()
        };
        let err = helm.template(&release, &chart, &too_old).await.unwrap_err();
        assert_eq!(
            err.failure_kind(),
            Some(FailureKind::KubeVersionIncompatible),
            "{err}"
        );

        // 1.6.0 reads logging.level, a default new in 1.6.0: nulling it breaks rendering,
        // as `--reuse-values` from 1.5.0 would.
        let broken = TemplateOptions {
            set: vec![SetValue::new("logging", "null")],
            ..TemplateOptions::default()
        };
        let err = helm.template(&release, &chart, &broken).await.unwrap_err();
        assert_eq!(
            err.failure_kind(),
            Some(FailureKind::RenderFailed),
            "{tool}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn show_chart_crds_and_template_on_fixture_charts() {
    let ctx = TestContext::new();
    for tool in HELMS {
        let helm = helm_for(&ctx, tool);
        let chart = ChartRef::path(fixture_chart("kserve", "0.15.0"));
        let meta = helm.show_chart(&chart).await.unwrap();
        assert_eq!(meta.name, "kserve");
        assert_eq!(meta.version, "0.15.0");
        assert_eq!(meta.app_version.as_deref(), Some("v0.15.0"));
        assert_eq!(meta.kube_version.as_deref(), Some(">=1.27.0-0"));

        let crds = helm.show_crds(&chart).await.unwrap();
        let names: Vec<&str> = crds.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["inferenceservices.serving.kserve.io"]);
        assert_eq!(crds[0].versions, ["v1beta1", "v1beta2"]);

        let argo = ChartRef::path(fixture_chart("argo-workflows", "0.46.0"));
        let kinds: Vec<String> = helm
            .show_crds(&argo)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.kind)
            .collect();
        assert_eq!(kinds, ["Workflow", "WorkflowTemplate"]);

        let values = TestContext::fixtures_dir().join("helm-values/karpenter-values.yaml");
        let manifest = helm
            .template(
                &ReleaseRef::new("karpenter", "karpenter"),
                &ChartRef::path(fixture_chart("karpenter", "1.6.0")),
                &TemplateOptions {
                    kube_version: Some("v1.30.4-eks-a737599".into()),
                    values_files: vec![values],
                    ..TemplateOptions::default()
                },
            )
            .await
            .unwrap();
        // The values file pins the image tag: the chart upgrade alone does not move it.
        assert!(
            manifest.contains("image: \"public.ecr.aws/karpenter/controller:1.5.0\""),
            "{manifest}"
        );
        for kind in ["Deployment", "Service", "ServiceAccount", "ConfigMap"] {
            assert!(
                manifest.contains(&format!("kind: {kind}\n")),
                "{kind} missing"
            );
        }
    }
}

#[test]
fn local_chart_crds_match_what_helm_shows() {
    let argo = LocalChart::load(fixture_chart("argo-workflows", "0.45.0")).unwrap();
    assert_eq!(argo.metadata.version, "0.45.0");
    let listed: Vec<(String, String)> = argo
        .crds
        .iter()
        .map(|c| (c.kind.clone(), c.file.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        listed,
        [
            (
                "Workflow".to_string(),
                "crds/argoproj.io_workflows.yaml".to_string()
            ),
            (
                "WorkflowTemplate".to_string(),
                "crds/argoproj.io_workflowtemplates.yaml".to_string()
            ),
        ]
    );
    let karpenter = LocalChart::load(fixture_chart("karpenter", "1.5.0")).unwrap();
    assert!(karpenter.crds.is_empty());
    let err = LocalChart::load(fixture_chart("karpenter", "9.9.9")).unwrap_err();
    assert!(err.to_string().contains("no readable Chart.yaml"), "{err}");
}

/// Our kubeVersion evaluation agrees with Helm's own on a matrix of constraints and versions
/// (charts generated on the fly, rendered with `helm template --kube-version`). Pre-release
/// versions are given too: Helm's `--kube-version` drops their pre-release part, so
/// `template` passes on an EKS version where a live install may not.
#[tokio::test(flavor = "multi_thread")]
async fn kube_version_checks_agree_with_helm() {
    let ctx = TestContext::new();
    let helm = helm_for(&ctx, "helm4");
    let constraints = [
        ">=1.28.0",
        ">=1.28.0-0",
        ">= 1.25.0-0, < 1.31.0-0",
        "~1.30.0",
        "^1.29",
        "1.29.x || >=1.31",
        "1.28 - 1.30",
        ">1.30",
        "<=1.30",
        "!=1.30.4",
    ];
    let versions = [
        "v1.28.0",
        "v1.30.4",
        "v1.30.4-eks-a737599",
        "v1.31.2",
        "v1.32.0-gke.1",
    ];
    let mut disagreements = Vec::new();
    for (i, constraint) in constraints.iter().enumerate() {
        let dir = ctx.work().join(format!("c{i}"));
        kube_version_chart(&dir, &format!("c{i}"), constraint);
        for version in versions {
            let helm_says = match helm
                .template(
                    &ReleaseRef::new("x", "default"),
                    &ChartRef::path(&dir),
                    &TemplateOptions {
                        kube_version: Some(version.into()),
                        ..TemplateOptions::default()
                    },
                )
                .await
            {
                Ok(_) => true,
                Err(err) if err.failure_kind() == Some(FailureKind::KubeVersionIncompatible) => {
                    false
                }
                Err(err) => panic!("helm template failed unexpectedly: {err}"),
            };
            // `--kube-version` goes through Kubernetes' generic version parser, which drops the
            // pre-release part; a live cluster's gitVersion keeps it (see the kube-sim tests).
            let mut generic = upgrade_core::constraint::parse_version(version).unwrap();
            generic.pre = semver::Prerelease::EMPTY;
            let generic = generic.to_string();
            let we_say = check_kube_version(Some(constraint), &generic, HelmMajor::V4)
                .unwrap()
                .compatible;
            if helm_says != we_say {
                disagreements.push(format!(
                    "{constraint} vs {version}: helm {helm_says}, us {we_say}"
                ));
            }
        }
    }
    assert!(disagreements.is_empty(), "{disagreements:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_local_repository_offers_versions_and_pulls() {
    let ctx = TestContext::new();
    let repo_dir = ctx.work().join("repo");
    std::fs::create_dir_all(&repo_dir).unwrap();
    for version in ["1.5.0", "1.6.0"] {
        let mut package = ctx.command("helm4");
        package
            .arg("package")
            .arg(fixture_chart("karpenter", version))
            .arg("--destination")
            .arg(&repo_dir);
        package.exec().unwrap();
    }
    let url = serve_dir(&repo_dir).await;
    let mut index = ctx.command("helm4");
    index
        .args(["repo", "index"])
        .arg(&repo_dir)
        .args(["--url", &url]);
    index.exec().unwrap();

    for tool in HELMS {
        let helm = helm_for(&ctx, tool);
        helm.repo_add("fixtures", &url).await.unwrap();
        helm.repo_update(&["fixtures"]).await.unwrap();
        let versions: Vec<String> = helm
            .chart_versions("fixtures", "karpenter", false)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.version)
            .collect();
        assert_eq!(versions, ["1.6.0", "1.5.0"], "{tool}");

        let chart = ChartRef::parse("fixtures/karpenter")
            .unwrap()
            .with_version("1.5.0");
        let meta = helm.show_chart(&chart).await.unwrap();
        assert_eq!(meta.kube_version.as_deref(), Some(">=1.26.0-0"));

        let dest = ctx.work().join(format!("pulled-{tool}"));
        let tgz = helm.pull(&chart, &dest, false).await.unwrap();
        assert_eq!(tgz, dest.join("karpenter-1.5.0.tgz"));
        let untarred = helm
            .pull(
                &chart.clone().with_version("1.6.0"),
                &dest.join("src"),
                true,
            )
            .await
            .unwrap();
        assert_eq!(
            LocalChart::load(&untarred).unwrap().metadata.version,
            "1.6.0"
        );

        let err = helm
            .pull(&chart.clone().with_version("9.9.9"), &dest, false)
            .await
            .unwrap_err();
        assert_eq!(
            err.failure_kind(),
            Some(FailureKind::ChartVersionNotFound),
            "{tool}: {err}"
        );
        let err = helm
            .show_chart(&ChartRef::parse("fixtures/kserve").unwrap())
            .await
            .unwrap_err();
        assert_eq!(
            err.failure_kind(),
            Some(FailureKind::ChartNotFound),
            "{tool}: {err}"
        );
        let err = helm
            .show_chart(&ChartRef::parse("nosuchrepo/kserve").unwrap())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err.failure_kind(),
                Some(FailureKind::RepoNotFound | FailureKind::ChartNotFound)
            ),
            "{tool}: {err}"
        );
        assert!(matches!(err, Error::Failed(_)));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn chart_compatibility_for_an_upgrade_target() {
    let ctx = TestContext::new();
    for tool in HELMS {
        let helm = helm_for(&ctx, tool);
        let argo = ChartRef::path(fixture_chart("argo-workflows", "0.46.0"));
        let report = helm
            .chart_compatibility(&argo, "v1.30.4-eks-a737599")
            .await
            .unwrap();
        assert!(report.is_compatible(), "{report:?}");
        assert_eq!(
            (report.chart.as_str(), report.version.as_str()),
            ("argo-workflows", "0.46.0")
        );
        let crds = report.crds.expect("argo ships CRDs");
        let names: Vec<&str> = crds.crds.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["workflows.argoproj.io", "workflowtemplates.argoproj.io"]
        );

        let karpenter = ChartRef::path(fixture_chart("karpenter", "1.6.0"));
        let report = helm
            .chart_compatibility(&karpenter, "v1.28.9-eks-1")
            .await
            .unwrap();
        assert!(!report.is_compatible());
        assert!(report.crds.is_none());
        let reason = report.kube_version.reason.unwrap();
        assert!(
            reason.contains("outside the chart's kubeVersion `>=1.29.0-0`"),
            "{reason}"
        );
    }
}

/// `oci://` references as the seeds' Karpenter uses them, pulled by both majors from a local
/// read-only registry.
#[tokio::test(flavor = "multi_thread")]
async fn oci_references_are_pulled_and_shown() {
    let ctx = TestContext::new();
    let mut package = ctx.command("helm4");
    package
        .arg("package")
        .arg(fixture_chart("karpenter", "1.6.0"))
        .arg("--destination")
        .arg(ctx.work());
    package.exec().unwrap();
    let registry = serve_oci_chart(
        &ctx.work().join("karpenter-1.6.0.tgz"),
        "karpenter/karpenter",
        "1.6.0",
        "karpenter",
    )
    .await;
    for tool in HELMS {
        let helm = helm_builder(&ctx, tool).plain_http(true).build().unwrap();
        let chart = ChartRef::oci(&format!("oci://{registry}/karpenter/karpenter:1.6.0")).unwrap();
        assert_eq!(chart.version.as_deref(), Some("1.6.0"));
        let meta = helm.show_chart(&chart).await.unwrap();
        assert_eq!(
            (meta.name.as_str(), meta.version.as_str()),
            ("karpenter", "1.6.0")
        );
        let dest = ctx.work().join(format!("oci-{tool}"));
        let tgz = helm.pull(&chart, &dest, false).await.unwrap();
        assert_eq!(tgz, dest.join("karpenter-1.6.0.tgz"));
        let err = helm
            .pull(&chart.clone().with_version("9.9.9"), &dest, false)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("differs from the version"),
            "a tag and another version conflict: {err}"
        );
        let missing = ChartRef::oci(&format!("oci://{registry}/karpenter/karpenter"))
            .unwrap()
            .with_version("9.9.9");
        let err = helm.pull(&missing, &dest, false).await.unwrap_err();
        assert_eq!(
            err.failure_kind(),
            Some(FailureKind::ChartVersionNotFound),
            "{tool}: {err}"
        );
    }
}

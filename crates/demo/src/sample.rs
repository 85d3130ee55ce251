//! The sample platform the demo and the end-to-end tests run on: a Terraform environment, two
//! Helm components (Karpenter and KServe, from `fixtures/charts`) and an InferenceService, on
//! a kube-sim cluster; and the steps of its upgrade.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use upgrade_core::ProcessBuilder;
use upgrade_core::executor::Step;
use upgrade_flows::flows::lock::{LockedComponent, PlatformSpec};
use upgrade_helm::step::{HelmUpgradeSpec, HelmUpgradeStep};
use upgrade_helm::{ChartRef, Helm, ReleaseRef, RollbackOptions, UpgradeOptions, WaitMode};
use upgrade_kube::backup::platform_kinds;
use upgrade_kube::connect::{Cluster, ConnectOptions};
use upgrade_kube::step::{CrBackupSpec, CrBackupStep};
use upgrade_tf::step::{ApplyPolicy, TfvarsChangeSpec, TfvarsChangeStep};
use upgrade_tf::{AsyncTerraform, Terraform};

/// The ids of the upgrade's steps, in order.
pub const STEP_IDS: [&str; 4] = [
    "terraform/node-group-version",
    "kserve/backup-inferenceservices",
    "karpenter/helm-upgrade",
    "kserve/helm-upgrade",
];

/// The real tools the sample platform runs.
#[derive(Debug, Clone)]
pub struct Tools {
    /// terraform.
    pub terraform: PathBuf,
    /// helm (3 or 4).
    pub helm: PathBuf,
}

/// Where one sample platform keeps its files; everything lives under `root`.
#[derive(Debug, Clone)]
pub struct SamplePlatform {
    /// The folder of this platform.
    pub root: PathBuf,
    /// The repository's `fixtures/` folder.
    pub fixtures: PathBuf,
    /// The tools.
    pub tools: Tools,
}

const ISVC: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: mlops}
---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: sklearn-iris, namespace: mlops}
spec: {predictor: {model: {modelFormat: {name: sklearn}, storageUri: "s3://models/iris/v1"}}}
"#;

/// The demo's full platform: each Helm component as (name, namespace, chart version, values file).
pub const FULL_COMPONENTS: [(&str, &str, &str, &str); 4] = [
    ("karpenter", "karpenter", "1.5.0", "karpenter-values.yaml"),
    ("kserve", "kserve", "0.14.1", "kserve-values.yaml"),
    (
        "argo-workflows",
        "argo",
        "0.45.0",
        "argo-workflows-values.yaml",
    ),
    ("mlflow", "mlops", "0.16.0", "mlflow-values.yaml"),
];

/// What the full platform runs besides its charts: two InferenceServices with their predictor
/// pods, Argo WorkflowTemplates and a Workflow, and PodDisruptionBudgets that a node drain
/// must respect.
const FULL_OBJECTS: &str = r#"
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: sklearn-iris, namespace: mlops}
spec: {predictor: {model: {modelFormat: {name: sklearn}, storageUri: "s3://models/iris/v1"}}}
# kube-sim runs no KServe controller; the status is what KServe reports for a served model.
status: {conditions: [{type: Ready, status: "True"}]}
---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: fraud-xgb, namespace: mlops}
spec: {predictor: {model: {modelFormat: {name: xgboost}, storageUri: "s3://models/fraud/v7"}}}
status: {conditions: [{type: Ready, status: "True"}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: sklearn-iris-predictor, namespace: mlops, labels: {serving.kserve.io/inferenceservice: sklearn-iris}}
spec:
  replicas: 2
  selector: {matchLabels: {serving.kserve.io/inferenceservice: sklearn-iris}}
  template:
    metadata: {labels: {serving.kserve.io/inferenceservice: sklearn-iris}}
    spec: {containers: [{name: kserve-container, image: "kserve/sklearnserver:v0.14.1"}]}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: sklearn-iris-predictor, namespace: mlops}
spec: {minAvailable: 1, selector: {matchLabels: {serving.kserve.io/inferenceservice: sklearn-iris}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: fraud-xgb-predictor, namespace: mlops, labels: {serving.kserve.io/inferenceservice: fraud-xgb}}
spec:
  replicas: 2
  selector: {matchLabels: {serving.kserve.io/inferenceservice: fraud-xgb}}
  template:
    metadata: {labels: {serving.kserve.io/inferenceservice: fraud-xgb}}
    spec: {containers: [{name: kserve-container, image: "kserve/xgbserver:v0.14.1"}]}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: fraud-xgb-predictor, namespace: mlops}
spec: {maxUnavailable: 1, selector: {matchLabels: {serving.kserve.io/inferenceservice: fraud-xgb}}}
---
apiVersion: argoproj.io/v1alpha1
kind: WorkflowTemplate
metadata: {name: train-model, namespace: argo}
spec: {entrypoint: train, templates: [{name: train, container: {image: "python:3.11", command: [python, train.py]}}]}
---
apiVersion: argoproj.io/v1alpha1
kind: WorkflowTemplate
metadata: {name: batch-score, namespace: argo}
spec: {entrypoint: score, templates: [{name: score, container: {image: "python:3.11", command: [python, score.py]}}]}
---
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: train-model-nightly, namespace: argo}
spec: {workflowTemplateRef: {name: train-model}}
# What Argo's workflow controller wrote when it ran (kube-sim runs no Argo controller); the
# upgrade's verification requires every Workflow to have been picked up.
status: {phase: Succeeded, startedAt: "2026-11-30T02:00:00Z", finishedAt: "2026-11-30T02:41:13Z"}
"#;

impl SamplePlatform {
    /// `HOME` for the tools (Helm's caches, Terraform's CLI config).
    pub fn home(&self) -> PathBuf {
        self.root.join("home")
    }
    /// The Terraform environment.
    pub fn tf_dir(&self) -> PathBuf {
        self.root.join("terraform")
    }
    /// The kubeconfig kube-sim writes.
    pub fn kubeconfig(&self) -> PathBuf {
        self.root.join("kubeconfig.yaml")
    }
    /// The run journal.
    pub fn journal(&self) -> PathBuf {
        self.root.join("state/journal.jsonl")
    }
    /// The snapshot store.
    pub fn snapshots(&self) -> PathBuf {
        self.root.join("state/snapshots")
    }
    /// The platform lockfile.
    pub fn lockfile(&self) -> PathBuf {
        self.root.join("platform.lock")
    }

    /// A Terraform handle on the environment, with a pinned HOME and an empty CLI config.
    pub fn terraform(&self) -> anyhow::Result<AsyncTerraform> {
        let mut base = ProcessBuilder::new(&self.tools.terraform);
        base.env("HOME", self.home())
            .env("TF_CLI_CONFIG_FILE", self.home().join("terraformrc"))
            .env("NO_COLOR", "1")
            .env_remove("KUBECONFIG");
        Ok(Terraform::builder(self.tf_dir())
            .base_command(base)
            .build()?
            .into())
    }

    /// A Helm handle on the sample cluster.
    pub fn helm(&self) -> anyhow::Result<Arc<Helm>> {
        let home = self.home();
        Ok(Arc::new(
            Helm::builder()
                .program(&self.tools.helm)
                .env("HOME", &home)
                .env("XDG_CONFIG_HOME", home.join(".config"))
                .env("XDG_CACHE_HOME", home.join(".cache"))
                .env("XDG_DATA_HOME", home.join(".local/share"))
                .kubeconfig(self.kubeconfig())
                .context(kube_sim::CONTEXT_NAME)
                .build()?,
        ))
    }

    /// The cluster, with the interlock set to the sample cluster's URL.
    pub async fn cluster(&self) -> anyhow::Result<Cluster> {
        let text = std::fs::read_to_string(self.kubeconfig())
            .with_context(|| format!("read {}", self.kubeconfig().display()))?;
        let url = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: "))
            .context("the kubeconfig names no server")?
            .trim_matches('"')
            .to_string();
        Ok(Cluster::connect(&ConnectOptions {
            kubeconfig: Some(self.kubeconfig()),
            context: Some(kube_sim::CONTEXT_NAME.into()),
            expect_cluster: Some(url),
        })
        .await?)
    }

    /// A chart of `fixtures/charts` at a version.
    pub fn chart(&self, name: &str, version: &str) -> anyhow::Result<ChartRef> {
        let path = self.fixtures.join("charts").join(name).join(version);
        let mut chart = ChartRef::parse(&path.to_string_lossy())?;
        chart.version = Some(version.to_string());
        Ok(chart)
    }

    /// Upgrade options with the component's values file (and any extra files after it).
    pub fn upgrade_options(&self, values: &str, extra: &[PathBuf]) -> UpgradeOptions {
        let mut files = vec![self.fixtures.join("helm-values").join(values)];
        files.extend_from_slice(extra);
        UpgradeOptions {
            create_namespace: true,
            values_files: files,
            wait: WaitMode::Ready,
            timeout: Duration::from_secs(60),
            ..UpgradeOptions::default()
        }
    }

    /// What the lockfile covers.
    pub fn spec(&self) -> PlatformSpec {
        PlatformSpec {
            cluster_name: "kube-sim".into(),
            components: vec![
                LockedComponent {
                    name: "karpenter".into(),
                    release: ReleaseRef::new("karpenter", "karpenter"),
                    chart: "fixtures/charts/karpenter".into(),
                },
                LockedComponent {
                    name: "kserve".into(),
                    release: ReleaseRef::new("kserve", "kserve"),
                    chart: "fixtures/charts/kserve".into(),
                },
            ],
            terraform_dir: Some(self.tf_dir()),
        }
    }

    /// Builds the platform on `sim`: Terraform applied at node group 1.30, karpenter 1.5.0 and
    /// kserve 0.14.1 deployed, one InferenceService.
    pub async fn build(&self, sim: &kube_sim::SimCluster) -> anyhow::Result<()> {
        std::fs::create_dir_all(self.home().join(".config"))?;
        std::fs::write(self.home().join("terraformrc"), "")?;
        copy_dir(
            &self.fixtures.join("terraform/platform-run"),
            &self.tf_dir(),
        )?;
        init_and_apply(&self.terraform()?).await?;
        let helm = self.helm()?;
        for (name, version, values) in [
            ("karpenter", "1.5.0", "karpenter-values.yaml"),
            ("kserve", "0.14.1", "kserve-values.yaml"),
        ] {
            helm.upgrade(
                &ReleaseRef::new(name, name),
                &self.chart(name, version)?,
                &self.upgrade_options(values, &[]),
            )
            .await
            .with_context(|| format!("install {name} {version}"))?;
        }
        sim.load_yaml(ISVC).context("create the InferenceService")?;
        Ok(())
    }

    /// The platform's values files (`infrastructure/helm/aws/`, copied from
    /// `fixtures/helm-values` so the demo's pins edit its own copies).
    pub fn values_dir(&self) -> PathBuf {
        self.root.join("infrastructure/helm/aws")
    }

    /// Builds the demo's full platform on `sim`: the four Helm components of
    /// [`FULL_COMPONENTS`] with their values files copied to [`values_dir`](Self::values_dir),
    /// two InferenceServices, Argo templates and PodDisruptionBudgets.
    pub async fn build_full(&self, sim: &kube_sim::SimCluster) -> anyhow::Result<()> {
        std::fs::create_dir_all(self.home().join(".config"))?;
        copy_dir(&self.fixtures.join("helm-values"), &self.values_dir())?;
        let helm = self.helm()?;
        for (name, namespace, version, values) in FULL_COMPONENTS {
            let options = UpgradeOptions {
                values_files: vec![self.values_dir().join(values)],
                ..self.upgrade_options(values, &[])
            };
            helm.upgrade(
                &ReleaseRef::new(name, namespace),
                &self.chart(name, version)?,
                &options,
            )
            .await
            .with_context(|| format!("install {name} {version}"))?;
        }
        sim.load_yaml(FULL_OBJECTS)
            .context("create the InferenceServices, templates and budgets")?;
        Ok(())
    }

    /// The upgrade: node group 1.30 → 1.31 in Terraform, InferenceService backup, karpenter
    /// 1.5.0 → 1.6.0, kserve 0.14.1 → 0.15.0 (with `kserve_extra_values` after its values
    /// file, e.g. one that makes the rollout fail).
    pub async fn upgrade_steps(
        &self,
        kserve_extra_values: &[PathBuf],
    ) -> anyhow::Result<Vec<Box<dyn Step>>> {
        let helm = self.helm()?;
        let rollback = RollbackOptions {
            wait: WaitMode::Ready,
            timeout: Duration::from_secs(60),
            ..RollbackOptions::default()
        };
        let mut kserve_options = self.upgrade_options("kserve-values.yaml", kserve_extra_values);
        if !kserve_extra_values.is_empty() {
            // A broken rollout should fail fast in a demo.
            kserve_options.timeout = Duration::from_secs(5);
        }
        Ok(vec![
            Box::new(TfvarsChangeStep {
                spec: TfvarsChangeSpec {
                    id: STEP_IDS[0].into(),
                    component: "terraform".into(),
                    terraform_dir: self.tf_dir(),
                    tfvars: self.tf_dir().join("terraform.tfvars"),
                    variable: "node_group_version".into(),
                    value: "1.31".into(),
                    irreversible: None,
                    policy: ApplyPolicy::default(),
                },
                tf: self.terraform()?,
            }),
            Box::new(CrBackupStep {
                spec: CrBackupSpec {
                    id: STEP_IDS[1].into(),
                    component: "kserve".into(),
                    kinds: platform_kinds("kserve"),
                    namespace: None,
                },
                cluster: self.cluster().await?,
            }),
            Box::new(HelmUpgradeStep {
                spec: HelmUpgradeSpec {
                    id: STEP_IDS[2].into(),
                    component: "karpenter".into(),
                    release: ReleaseRef::new("karpenter", "karpenter"),
                    chart: self.chart("karpenter", "1.6.0")?,
                    options: self.upgrade_options("karpenter-values.yaml", &[]),
                    restore_source: Some(self.chart("karpenter", "1.5.0")?),
                    rollback: rollback.clone(),
                },
                helm: helm.clone(),
            }),
            Box::new(HelmUpgradeStep {
                spec: HelmUpgradeSpec {
                    id: STEP_IDS[3].into(),
                    component: "kserve".into(),
                    release: ReleaseRef::new("kserve", "kserve"),
                    chart: self.chart("kserve", "0.15.0")?,
                    options: kserve_options,
                    restore_source: Some(self.chart("kserve", "0.14.1")?),
                    rollback,
                },
                helm,
            }),
        ])
    }
}

/// `terraform init`, then a plan that is reviewed, approved and applied (how the sample
/// environments are stood up before an upgrade).
pub async fn init_and_apply(tf: &AsyncTerraform) -> anyhow::Result<()> {
    tf.init(Default::default())
        .await
        .context("terraform init")?;
    let run = tf
        .plan(Default::default())
        .await
        .context("terraform plan")?;
    let reviewed = tf.review(run.plan, Default::default()).await?;
    tf.apply(reviewed.approve()?, Default::default())
        .await
        .context("terraform apply")?;
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("read {}", from.display()))? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join(entry.file_name()))?;
    }
    Ok(())
}

/// Copies the files of `fixtures/terraform/environments/<name>` into `to` (created).
pub(crate) fn copy_environment(fixtures: &Path, name: &str, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(fixtures.join("terraform/environments").join(name))? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join(entry.file_name()))?;
    }
    Ok(())
}

/// The platform's Terraform environment on the simulated AWS provider, applied at 1.30.
pub struct EksEnvironment {
    /// The environment's folder (`infrastructure/terraform/environments/dev`).
    pub dir: PathBuf,
    /// The Terraform CLI configuration that installs the simulated provider from its mirror.
    pub cli_config: PathBuf,
}

impl EksEnvironment {
    /// Creates the environment under the platform (the simulated provider built in
    /// `bin_dir`, its mirror, the fixture files at 1.30) and applies it.
    pub async fn create(
        platform: &SamplePlatform,
        sim: &kube_sim::SimCluster,
        bin_dir: &Path,
    ) -> anyhow::Result<EksEnvironment> {
        let provider = bin_dir.join(upgrade_tf_sim_provider::BINARY_NAME);
        anyhow::ensure!(
            provider.exists(),
            "the simulated AWS provider is not built ({}); run ./dev demo, which builds it",
            provider.display()
        );
        let mirror = platform.root.join("terraform-mirror");
        upgrade_tf_sim_provider::install_mirror(
            &provider,
            &mirror,
            &["5.99.0"],
            &[upgrade_tf_sim_provider::host_platform()],
        )?;
        let cli_config = platform.home().join("terraformrc-sim");
        std::fs::write(&cli_config, upgrade_tf_sim_provider::cli_config(&mirror))?;
        let dir = platform
            .root
            .join("infrastructure/terraform/environments/dev");
        copy_environment(&platform.fixtures, "dev", &dir)?;
        let tfvars = dir.join("terraform.tfvars");
        let text = std::fs::read_to_string(&tfvars)?;
        std::fs::write(
            &tfvars,
            text.replace("cluster_version = \"1.29\"", "cluster_version = \"1.30\""),
        )?;
        let mut base = ProcessBuilder::new(&platform.tools.terraform);
        base.env("HOME", platform.home())
            .env("TF_CLI_CONFIG_FILE", &cli_config)
            .env(upgrade_tf_sim_provider::SIM_KUBE_URL_VAR, sim.url())
            .env("NO_COLOR", "1");
        let tf: upgrade_tf::AsyncTerraform = upgrade_tf::Terraform::builder(&dir)
            .base_command(base)
            .build()?
            .into();
        init_and_apply(&tf).await?;
        Ok(EksEnvironment { dir, cli_config })
    }
}

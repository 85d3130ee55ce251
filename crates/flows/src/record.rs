//! Run records: every applied run writes `<state>/runs/<run-id>.json` before its first step,
//! holding each step as data ([`StepRecord`]: kind and spec, with absolute paths, resolved
//! versions, the nodes and add-on versions chosen). `upgrade-rollback` (and any tool) rebuilds
//! the steps from the record alone through one [`StepRegistry`]: it never re-reads the
//! arguments, re-queries AWS or re-lists nodes to decide what to undo, and a run started from
//! the library is undone exactly like one started from a command.
//!
//! The record has a format version ([`RECORD_FORMAT`]); a record of another version is
//! refused with a clear error, never half-read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use upgrade_core::atomic_file;
use upgrade_core::command_step::CommandStep;
use upgrade_core::executor::{Step, StepRecord, StepSpec};
use upgrade_helm::step::{HelmUpgradeSpec, HelmUpgradeStep};
use upgrade_helm::values_pin::ValuesPinStep;
use upgrade_kube::crd::{CrdApplySpec, CrdApplyStep};
use upgrade_kube::job::{TemplateJobSpec, TemplateJobStep};
use upgrade_kube::release_apis::{ReleaseApiMapSpec, ReleaseApiMapStep};
use upgrade_kube::step::{
    CrBackupSpec, CrBackupStep, DeploymentImageSpec, DeploymentImageStep, DeploymentScaleSpec,
    DeploymentScaleStep, NodeRolloutSpec, NodeRolloutStep, WorkloadsReadySpec, WorkloadsReadyStep,
};
use upgrade_tf::step::{
    ProviderUpgradeSpec, ProviderUpgradeStep, TfvarsChangeSpec, TfvarsChangeStep,
};
use upgrade_verify::canary::{PromoteSpec, PromoteStep, TrafficSpec, TrafficStep};
use upgrade_verify::step::ProbeStep;

use crate::context::FlowContext;
use crate::error::{FlowError, Result};
use crate::flows::bluegreen::{
    AckAdoptSpec, AckAdoptStep, AckProtectSpec, AckProtectStep, AlbRuleSpec, AlbRuleStep,
    GreenVarsSpec, GreenVarsStep, IrsaTrustSpec, IrsaTrustStep, SwitchStep, SwitchStepSpec,
    TransferStep, TransferStepSpec,
};
use crate::flows::bluegreen::{
    BackupJobsSpec, BackupJobsStep, ConfigMapSpec, ConfigMapStep, FsxPermissionsSpec,
    FsxPermissionsStep, GreenApiSpec, GreenApiStep, GreenHelmSpec, GreenHelmStep,
    GreenTerraformSpec, GreenTerraformStep, RdsCloneSpec, RdsCloneStep, RetireStep, RetireStepSpec,
    S3CopySpec, S3CopyStep,
};
use crate::flows::control_plane::{ControlPlaneSpec, ControlPlaneStep};
use crate::flows::eks::{ControlPlaneWaitSpec, ControlPlaneWaitStep};
use crate::flows::managed_addons::{ManagedAddonSpec, ManagedAddonStep};

/// The record format this version writes and reads.
pub const RECORD_FORMAT: u32 = 1;

/// One step of a recorded run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedStep {
    /// The step id (as journaled).
    pub id: String,
    /// Its component.
    pub component: String,
    /// What it does.
    pub description: String,
    /// Why it cannot be undone, when it cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub irreversible: Option<String>,
    /// The step as data.
    #[serde(flatten)]
    pub record: StepRecord,
}

/// The cluster a run was made against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedCluster {
    /// The kubeconfig context.
    pub context: String,
    /// The API server URL.
    pub server: String,
    /// The EKS cluster name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eks_name: Option<String>,
}

/// What a run was, written before its first step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The record format ([`RECORD_FORMAT`]).
    pub format: u32,
    /// The run id.
    pub run_id: String,
    /// The flow, e.g. `helm-upgrade`.
    pub flow: String,
    /// The command that does this flow, e.g. `upgrade-karpenter`.
    pub command: String,
    /// What started it: `upgrade-karpenter 0.1.0`, or `library`.
    pub started_by: String,
    /// When it was written.
    pub created: jiff::Timestamp,
    /// The cluster.
    pub cluster: RecordedCluster,
    /// The flow's spec as given (paths absolute), for people and tools.
    pub spec: serde_json::Value,
    /// The steps, in order.
    pub steps: Vec<RecordedStep>,
}

#[derive(Deserialize)]
struct FormatOnly {
    format: Option<u32>,
}

impl RunRecord {
    /// The record of a run of `steps`.
    pub fn new(
        ctx: &FlowContext,
        run_id: &str,
        flow: &str,
        command: &str,
        spec: serde_json::Value,
        steps: &[&dyn Step],
    ) -> RunRecord {
        let identity = ctx.cluster().identity();
        RunRecord {
            format: RECORD_FORMAT,
            run_id: run_id.to_string(),
            flow: flow.to_string(),
            command: command.to_string(),
            started_by: ctx.started_by().to_string(),
            created: jiff::Timestamp::now(),
            cluster: RecordedCluster {
                context: identity.context.clone(),
                server: identity.server_url.clone(),
                eks_name: identity.eks_cluster_name.clone(),
            },
            spec,
            steps: steps
                .iter()
                .map(|s| RecordedStep {
                    id: s.id().to_string(),
                    component: s.component().to_string(),
                    description: s.description(),
                    irreversible: s.irreversible(),
                    record: s.record(),
                })
                .collect(),
        }
    }

    /// Where the record of `run_id` is kept under `runs_dir`.
    pub fn path(runs_dir: &Path, run_id: &str) -> PathBuf {
        runs_dir.join(format!("{run_id}.json"))
    }

    /// Writes the record (whole or not at all, `0600`: it names files and commands).
    pub fn write(&self, runs_dir: &Path) -> Result<PathBuf> {
        let path = RunRecord::path(runs_dir, &self.run_id);
        atomic_file::create_private_dir(runs_dir)
            .and_then(|()| {
                // Specs hold commands and URLs; their secrets are `${env:NAME}` references
                // (literal ones are refused as input), and this is the last guard.
                let text = upgrade_core::redact::scrub_credentials(
                    &serde_json::to_string_pretty(self).expect("a run record serialises"),
                );
                atomic_file::write_private(&path, text.as_bytes())
            })
            .map_err(|e| {
                FlowError::failed(format!("write the run record {}", path.display()), e)
            })?;
        Ok(path)
    }

    /// Reads the record of `run_id` from `runs_dir`; a missing, unreadable or other-format
    /// record is bad input naming the fix.
    pub fn read(runs_dir: &Path, run_id: &str) -> Result<RunRecord> {
        let path = RunRecord::path(runs_dir, run_id);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            FlowError::input(format!(
                "cannot read the record of run {run_id} at {} ({e}); it is written when a run starts, so point at the state folder (--snapshot-dir) the run used",
                path.display()
            ))
        })?;
        RunRecord::parse(&text, &path)
    }

    /// Parses a record's text (`path` names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<RunRecord> {
        let format = serde_json::from_str::<FormatOnly>(text)
            .map_err(|e| {
                FlowError::input(format!(
                    "the run record {} is not valid JSON ({e}); restore it from a backup of the state folder",
                    path.display()
                ))
            })?
            .format;
        match format {
            Some(RECORD_FORMAT) => {}
            Some(other) => {
                return Err(FlowError::input(format!(
                    "the run record {} has format {other}, and this version reads format {RECORD_FORMAT}; undo the run with the version of the toolkit that made it",
                    path.display()
                )));
            }
            None => {
                return Err(FlowError::input(format!(
                    "the run record {} has no `format`: it was written before run records held their steps (an argv record); undo it with the version of the toolkit that made it",
                    path.display()
                )));
            }
        }
        serde_json::from_str(text).map_err(|e| {
            FlowError::input(format!(
                "the run record {} does not read as format {RECORD_FORMAT} ({e}); it was edited or is damaged",
                path.display()
            ))
        })
    }

    /// Rebuilds the run's steps through `ctx`'s registry.
    pub fn steps(&self, ctx: &FlowContext) -> Result<Vec<Box<dyn Step>>> {
        self.steps
            .iter()
            .map(|step| {
                let built = ctx.registry().build(&step.record, ctx)?;
                if built.id() != step.id {
                    return Err(FlowError::input(format!(
                        "the record of run {} rebuilds step `{}` as `{}`; the record was edited",
                        self.run_id,
                        step.id,
                        built.id()
                    )));
                }
                Ok(built)
            })
            .collect()
    }
}

type Builder = Box<dyn Fn(&StepRecord, &FlowContext) -> Result<Box<dyn Step>> + Send + Sync>;

/// Rebuilds steps from their records: one builder per step kind, binding the handles the
/// step needs (cluster, Helm, Terraform) from the [`FlowContext`].
pub struct StepRegistry {
    builders: BTreeMap<&'static str, Builder>,
}

impl std::fmt::Debug for StepRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepRegistry")
            .field("kinds", &self.builders.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl StepRegistry {
    /// An empty registry.
    pub fn empty() -> StepRegistry {
        StepRegistry {
            builders: BTreeMap::new(),
        }
    }

    /// Every step kind this toolkit records.
    pub fn builtin() -> StepRegistry {
        let mut registry = StepRegistry::empty();
        registry.register(|spec: CommandStep, _| Ok(Box::new(spec)));
        registry.register(|spec: ValuesPinStep, _| Ok(Box::new(spec)));
        registry.register(|spec: ProbeStep, _| Ok(Box::new(spec)));
        registry.register(|spec: HelmUpgradeSpec, ctx| {
            Ok(Box::new(HelmUpgradeStep {
                spec,
                helm: ctx.helm()?,
            }))
        });
        registry.register(|spec: TfvarsChangeSpec, ctx| {
            let tf = ctx.terraform("terraform_dir", &spec.terraform_dir)?;
            Ok(Box::new(TfvarsChangeStep { spec, tf }))
        });
        registry.register(|spec: ProviderUpgradeSpec, ctx| {
            let tf = ctx.terraform("terraform_dir", &spec.terraform_dir)?;
            Ok(Box::new(ProviderUpgradeStep { spec, tf }))
        });
        registry.register(|spec: CrBackupSpec, ctx| {
            Ok(Box::new(CrBackupStep {
                spec,
                cluster: ctx.cluster().clone(),
            }))
        });
        registry.register(|spec: upgrade_helm::step::HelmRollbackSpec, ctx| {
            Ok(Box::new(upgrade_helm::step::HelmRollbackStep {
                spec,
                helm: ctx.helm()?,
            }))
        });
        registry.register(
            |spec: upgrade_kube::certificate::RenewCertificateSpec, ctx| {
                Ok(Box::new(upgrade_kube::certificate::RenewCertificateStep {
                    spec,
                    cluster: ctx.cluster().clone(),
                }))
            },
        );
        registry.register(|spec: upgrade_kube::mitigate::MitigationSpec, ctx| {
            Ok(Box::new(upgrade_kube::mitigate::MitigationStep {
                spec,
                cluster: ctx.cluster().clone(),
            }))
        });
        registry.register(|spec: DeploymentImageSpec, ctx| {
            Ok(Box::new(DeploymentImageStep {
                spec,
                cluster: ctx.cluster().clone(),
            }))
        });
        registry.register(|spec: DeploymentScaleSpec, ctx| {
            Ok(Box::new(DeploymentScaleStep {
                spec,
                cluster: ctx.cluster().clone(),
            }))
        });
        registry.register(|spec: NodeRolloutSpec, ctx| {
            Ok(Box::new(NodeRolloutStep {
                spec,
                cluster: ctx.cluster().clone(),
            }))
        });
        registry.register(|spec: CrdApplySpec, ctx| {
            Ok(Box::new(CrdApplyStep {
                spec,
                cluster: ctx.cluster().clone(),
            }))
        });
        registry.register(|spec: ReleaseApiMapSpec, ctx| {
            Ok(Box::new(ReleaseApiMapStep {
                spec,
                cluster: ctx.cluster().clone(),
            }))
        });
        registry.register(|spec: WorkloadsReadySpec, ctx| {
            Ok(Box::new(WorkloadsReadyStep {
                spec,
                cluster: ctx.cluster().clone(),
            }))
        });
        registry.register(|spec: TemplateJobSpec, ctx| {
            Ok(Box::new(TemplateJobStep {
                spec,
                cluster: ctx.cluster().clone(),
            }))
        });
        registry.register(|spec: TrafficSpec, ctx| {
            let step = TrafficStep::from_spec(spec, ctx.cluster().client().clone())
                .map_err(FlowError::input)?
                .with_stop_signal(ctx.stop_signal().clone());
            Ok(Box::new(step))
        });
        registry.register(|spec: PromoteSpec, ctx| {
            Ok(Box::new(
                PromoteStep::from_spec(spec, ctx.cluster().client().clone())
                    .with_stop_signal(ctx.stop_signal().clone()),
            ))
        });
        registry.register(|spec: ControlPlaneSpec, ctx| {
            let tf = ctx.terraform("terraform_dir", &spec.change.terraform_dir)?;
            Ok(Box::new(ControlPlaneStep::new(
                spec,
                tf,
                ctx.cluster().clone(),
                ctx.events_handle(),
            )))
        });
        registry.register(|spec: ManagedAddonSpec, ctx| {
            Ok(Box::new(ManagedAddonStep::new(
                spec,
                ctx.events_handle(),
                ctx.stop_signal().clone(),
            )))
        });
        registry.register(|spec: GreenVarsSpec, ctx| {
            let tf = ctx.terraform("blue_terraform_dir", &spec.blue_terraform_dir)?;
            Ok(Box::new(GreenVarsStep::new(spec, tf)))
        });
        registry.register(|spec: IrsaTrustSpec, _| Ok(Box::new(IrsaTrustStep::new(spec))));
        registry.register(|spec: SwitchStepSpec, _| Ok(Box::new(SwitchStep::new(spec))));
        registry.register(|spec: AlbRuleSpec, _| Ok(Box::new(AlbRuleStep::new(spec))));
        registry.register(|spec: RdsCloneSpec, _| Ok(Box::new(RdsCloneStep::new(spec))));
        registry.register(|spec: S3CopySpec, _| Ok(Box::new(S3CopyStep::new(spec))));
        registry.register(|spec: BackupJobsSpec, _| Ok(Box::new(BackupJobsStep::new(spec))));
        registry.register(|spec: FsxPermissionsSpec, ctx| {
            Ok(Box::new(FsxPermissionsStep::new(
                spec,
                ctx.stop_signal().clone(),
            )))
        });
        registry.register(|spec: GreenHelmSpec, ctx| {
            let green = ctx.helm_for(
                spec.green.kubeconfig.as_deref(),
                spec.green.context.as_deref(),
            )?;
            Ok(Box::new(GreenHelmStep::new(
                spec,
                green,
                ctx.helm()?,
                ctx.stop_signal().clone(),
            )))
        });
        registry.register(|spec: GreenTerraformSpec, ctx| {
            let tf = ctx.terraform("green_terraform_dir", &spec.green_terraform_dir)?;
            Ok(Box::new(GreenTerraformStep::new(spec, tf)))
        });
        registry.register(|spec: GreenApiSpec, ctx| {
            Ok(Box::new(GreenApiStep::new(spec, ctx.stop_signal().clone())))
        });
        registry.register(|spec: ConfigMapSpec, ctx| {
            Ok(Box::new(ConfigMapStep::new(
                spec,
                ctx.stop_signal().clone(),
            )))
        });
        registry.register(|spec: RetireStepSpec, ctx| {
            let tf = ctx.terraform("blue_terraform_dir", &spec.blue_terraform_dir)?;
            Ok(Box::new(RetireStep::new(spec, tf)))
        });
        registry.register(|spec: AckProtectSpec, ctx| {
            Ok(Box::new(AckProtectStep::new(spec, ctx.cluster().clone())))
        });
        registry.register(|spec: AckAdoptSpec, ctx| {
            Ok(Box::new(AckAdoptStep::new(spec, ctx.stop_signal().clone())))
        });
        registry.register(|spec: TransferStepSpec, ctx| {
            Ok(Box::new(TransferStep::new(
                spec,
                ctx.cluster().clone(),
                ctx.events_handle(),
            )))
        });
        registry.register(|spec: ControlPlaneWaitSpec, ctx| {
            Ok(Box::new(ControlPlaneWaitStep::new(spec, ctx)))
        });
        registry.register(
            |spec: crate::flows::replace_node::ReplaceNodeStepSpec, ctx| {
                Ok(Box::new(crate::flows::replace_node::ReplaceNodeStep {
                    spec,
                    cluster: ctx.cluster().clone(),
                }))
            },
        );
        registry
    }

    /// Adds (or replaces) the builder of the step kind `S`.
    pub fn register<S, F>(&mut self, build: F)
    where
        S: StepSpec + 'static,
        F: Fn(S, &FlowContext) -> Result<Box<dyn Step>> + Send + Sync + 'static,
    {
        self.builders.insert(
            S::KIND,
            Box::new(move |record, ctx| {
                let spec = record
                    .spec::<S>()
                    .expect("the registry only calls a builder for its own kind")
                    .map_err(|e| {
                        FlowError::input(format!(
                            "a recorded `{}` step does not read ({e}); the record was edited or written by another version",
                            S::KIND
                        ))
                    })?;
                build(spec, ctx)
            }),
        );
    }

    /// The step kinds it knows.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.builders.keys().copied()
    }

    /// Rebuilds the step `record` describes.
    pub fn build(&self, record: &StepRecord, ctx: &FlowContext) -> Result<Box<dyn Step>> {
        let build = self.builders.get(record.kind.as_str()).ok_or_else(|| {
            FlowError::input(format!(
                "the record holds a `{}` step, which this registry cannot rebuild (it knows: {}); undo the run with the tool that made it, or register that kind",
                record.kind,
                self.builders.keys().copied().collect::<Vec<_>>().join(", ")
            ))
        })?;
        build(record, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_of_another_format_are_refused_by_name() {
        let path = Path::new("/state/runs/karpenter-1.json");
        let err = RunRecord::parse(r#"{"format": 2, "run_id": "x"}"#, path).unwrap_err();
        assert!(
            err.to_string()
                .contains("has format 2, and this version reads format 1"),
            "{err}"
        );
        assert_eq!(err.exit_code(), crate::error::EXIT_INVALID);
        let err = RunRecord::parse(
            r#"{"run_id": "x", "command": "upgrade-karpenter", "args": []}"#,
            path,
        )
        .unwrap_err();
        assert!(err.to_string().contains("has no `format`"), "{err}");
        let err = RunRecord::parse("{not json", path).unwrap_err();
        assert!(err.to_string().contains("is not valid JSON"), "{err}");
        let err = RunRecord::parse(r#"{"format": 1, "run_id": 3}"#, path).unwrap_err();
        assert!(
            err.to_string().contains("does not read as format 1"),
            "{err}"
        );
    }

    #[test]
    fn the_builtin_registry_knows_every_step_kind_of_the_toolkit() {
        let registry = StepRegistry::builtin();
        let kinds: Vec<&str> = registry.kinds().collect();
        for kind in [
            CommandStep::KIND,
            ValuesPinStep::KIND,
            ProbeStep::KIND,
            HelmUpgradeSpec::KIND,
            TfvarsChangeSpec::KIND,
            ProviderUpgradeSpec::KIND,
            CrBackupSpec::KIND,
            DeploymentImageSpec::KIND,
            DeploymentScaleSpec::KIND,
            NodeRolloutSpec::KIND,
            WorkloadsReadySpec::KIND,
            CrdApplySpec::KIND,
            ReleaseApiMapSpec::KIND,
            TemplateJobSpec::KIND,
            TrafficSpec::KIND,
            PromoteSpec::KIND,
            ControlPlaneWaitSpec::KIND,
            ControlPlaneSpec::KIND,
            ManagedAddonSpec::KIND,
            GreenVarsSpec::KIND,
            IrsaTrustSpec::KIND,
            SwitchStepSpec::KIND,
            crate::flows::replace_node::ReplaceNodeStepSpec::KIND,
        ] {
            assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
        }
        assert_eq!(kinds.len(), 39, "{kinds:?}");
    }
}

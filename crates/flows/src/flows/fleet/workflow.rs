//! A [`FleetPlan`] as Argo Workflows objects: a `WorkflowTemplate`, the `ConfigMap` of its
//! per-account semaphores, and a `Workflow` that submits the template.
//!
//! The DAG, per wave: an approval (`suspend: {}`) when the wave needs one; a task per cluster
//! (template `upgrade-cluster`: `upgrade-fleet run-cluster`, which runs the command and maps
//! its exit code: 0 and 3 succeed, anything else fails the task; its result is the output
//! parameter `result`, its state folder and report the artifacts `state` and `report`;
//! `retryStrategy` retries only Argo's own errors, a pod lost with its node, never a failed
//! upgrade); on a cluster whose run was left unfinished or stopped, a rollback task
//! (`upgrade-rollback` through `upgrade-fleet rollback-cluster`, from the `state` artifact);
//! a gate (`upgrade-fleet gate`) counting the failed clusters so far against the wave's
//! threshold, whose failure stops the rollout (the next wave depends on it); then the soak
//! (`suspend` with a duration). The template's `parallelism` caps clusters at once, and the
//! semaphore keyed by the cluster's account caps each account.
//!
//! Argo Workflows 3.6 or newer (`synchronization.semaphores`).

use serde_json::{Value, json};

use super::{FleetPlan, PLACEHOLDERS, fill};

/// Where a step keeps its outputs inside its container.
pub const OUT_DIR: &str = "/work/out";

/// The ConfigMap holding the per-account semaphore limits of template `name`.
pub fn semaphore_config_map_name(name: &str) -> String {
    format!("{name}-accounts")
}

fn task(cluster: &str) -> String {
    format!("c-{cluster}")
}

fn rollback_task(cluster: &str) -> String {
    format!("rb-{cluster}")
}

fn done(task: &str) -> String {
    format!("({task}.Succeeded || {task}.Failed || {task}.Errored)")
}

fn resolved(task: &str) -> String {
    format!(
        "({task}.Succeeded || {task}.Failed || {task}.Errored || {task}.Skipped || {task}.Omitted)"
    )
}

fn result_of(cluster: &str) -> String {
    format!("{{{{tasks.{}.outputs.parameters.result}}}}", task(cluster))
}

/// The `WorkflowTemplate` named `name`.
pub fn workflow_template(plan: &FleetPlan, name: &str) -> Value {
    let mut tasks: Vec<Value> = Vec::new();
    let mut previous: Option<String> = None;
    let mut results_so_far: Vec<String> = Vec::new();
    for (i, wave) in plan.waves.iter().enumerate() {
        let mut start = previous.clone();
        if wave.approval {
            let approve = format!("approve-{i}");
            let mut t = json!({"name": approve, "template": "approve"});
            if let Some(p) = &start {
                t["depends"] = json!(format!("{p}.Succeeded"));
            }
            tasks.push(t);
            start = Some(approve);
        }
        for cluster_name in &wave.clusters {
            let cluster = plan
                .cluster(cluster_name)
                .expect("planned from the inventory");
            let parameters: Vec<Value> = PLACEHOLDERS
                .iter()
                .map(|p| json!({"name": p, "value": cluster.placeholder(p).unwrap_or_default()}))
                .collect();
            let mut t = json!({
                "name": task(cluster_name),
                "template": "upgrade-cluster",
                "arguments": {"parameters": parameters},
            });
            if let Some(p) = &start {
                t["depends"] = json!(format!("{p}.Succeeded"));
            }
            tasks.push(t);
            let result = result_of(cluster_name);
            tasks.push(json!({
                "name": rollback_task(cluster_name),
                "template": "rollback-cluster",
                "depends": format!("{}.Failed || {}.Errored", task(cluster_name), task(cluster_name)),
                "when": format!("'{result}' == 'stopped'"),
                "arguments": {
                    "parameters": [
                        {"name": "cluster", "value": cluster_name},
                        {"name": "context", "value": cluster.context.clone().unwrap_or_default()},
                        {"name": "endpoint", "value": cluster.endpoint.clone().unwrap_or_default()},
                    ],
                    "artifacts": [{
                        "name": "state",
                        "from": format!("{{{{tasks.{}.outputs.artifacts.state}}}}", task(cluster_name)),
                    }],
                },
            }));
            results_so_far.push(result);
        }
        let gate = format!("gate-{i}");
        let rollbacks: Vec<String> = wave
            .clusters
            .iter()
            .map(|c| format!("{{{{tasks.{}.status}}}}", rollback_task(c)))
            .collect();
        let waits: Vec<String> = wave
            .clusters
            .iter()
            .flat_map(|c| [done(&task(c)), resolved(&rollback_task(c))])
            .collect();
        tasks.push(json!({
            "name": gate,
            "template": "gate",
            "depends": waits.join(" && "),
            "arguments": {"parameters": [
                {"name": "wave", "value": wave.name},
                {"name": "max-failures", "value": wave.max_failures.to_string()},
                {"name": "results", "value": results_so_far.join(",")},
                {"name": "rollbacks", "value": rollbacks.join(",")},
            ]},
        }));
        previous = Some(gate.clone());
        if !wave.soak.is_zero() {
            let soak = format!("soak-{i}");
            tasks.push(json!({
                "name": soak,
                "template": "soak",
                "depends": format!("{gate}.Succeeded"),
                "arguments": {"parameters": [{"name": "seconds", "value": wave.soak.as_secs().to_string()}]},
            }));
            previous = Some(soak);
        }
    }

    let command: Vec<String> = plan
        .spec
        .command
        .iter()
        .map(|word| {
            fill(word, |p| {
                if p == "state_dir" {
                    format!("{OUT_DIR}/state")
                } else {
                    format!("{{{{inputs.parameters.{p}}}}}")
                }
            })
        })
        .collect();
    let mut run_args = vec![
        json!("run-cluster"),
        json!("--cluster"),
        json!("{{inputs.parameters.cluster}}"),
        json!("--context"),
        json!("{{inputs.parameters.context}}"),
        json!("--out-dir"),
        json!(OUT_DIR),
        json!("--"),
    ];
    run_args.extend(command.into_iter().map(Value::from));
    let image = "{{workflow.parameters.image}}";
    let kube_env = json!([{"name": "KUBECONFIG", "value": "/kube/config"}]);
    let kube_mount = json!([{"name": "kubeconfig", "mountPath": "/kube", "readOnly": true}]);
    let inputs: Vec<Value> = PLACEHOLDERS
        .iter()
        .map(|p| json!({"name": p, "default": ""}))
        .collect();
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "WorkflowTemplate",
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/managed-by": "upgrade-fleet"},
        },
        "spec": {
            "entrypoint": "fleet",
            "parallelism": plan.spec.parallelism,
            "arguments": {"parameters": [
                {"name": "image", "value": plan.spec.image},
                {"name": "kubeconfig-secret", "value": "fleet-kubeconfig"},
            ]},
            "volumes": [{"name": "kubeconfig", "secret": {"secretName": "{{workflow.parameters.kubeconfig-secret}}"}}],
            "templates": [
                {"name": "fleet", "dag": {"tasks": tasks}},
                {
                    "name": "upgrade-cluster",
                    "inputs": {"parameters": inputs},
                    "synchronization": {"semaphores": [{"configMapKeyRef": {
                        "name": semaphore_config_map_name(name),
                        "key": "{{inputs.parameters.account}}",
                    }}]},
                    // Only a cluster that did not answer before anything ran is retried: a
                    // rerun of a half-done upgrade would start without its state.
                    "retryStrategy": {
                        "limit": 3,
                        "retryPolicy": "Always",
                        "expression": format!("asInt(lastRetry.exitCode) == {}", super::cluster::EXIT_UNREACHABLE),
                        "backoff": {"duration": "30s", "factor": 2},
                    },
                    "container": {
                        "image": image,
                        "command": ["upgrade-fleet"],
                        "args": run_args,
                        "env": kube_env,
                        "volumeMounts": kube_mount,
                    },
                    "outputs": {
                        "parameters": [{"name": "result", "valueFrom": {"path": format!("{OUT_DIR}/result"), "default": "stopped"}}],
                        "artifacts": [
                            {"name": "state", "path": format!("{OUT_DIR}/state"), "optional": true},
                            {"name": "report", "path": format!("{OUT_DIR}/report.json"), "optional": true},
                        ],
                    },
                },
                {
                    "name": "rollback-cluster",
                    "inputs": {
                        "parameters": [{"name": "cluster"}, {"name": "context", "default": ""}, {"name": "endpoint", "default": ""}],
                        "artifacts": [{"name": "state", "path": format!("{OUT_DIR}/state"), "optional": true}],
                    },
                    "retryStrategy": {"limit": 2, "retryPolicy": "OnError"},
                    "container": {
                        "image": image,
                        "command": ["upgrade-fleet"],
                        "args": [
                            "rollback-cluster", "--cluster", "{{inputs.parameters.cluster}}",
                            "--context", "{{inputs.parameters.context}}",
                            "--endpoint", "{{inputs.parameters.endpoint}}",
                            "--state-dir", format!("{OUT_DIR}/state"),
                        ],
                        "env": kube_env,
                        "volumeMounts": kube_mount,
                    },
                },
                {
                    "name": "gate",
                    "inputs": {"parameters": [{"name": "wave"}, {"name": "max-failures"}, {"name": "results"}, {"name": "rollbacks", "default": ""}]},
                    "container": {
                        "image": image,
                        "command": ["upgrade-fleet"],
                        "args": [
                            "gate", "--wave", "{{inputs.parameters.wave}}",
                            "--max-failures", "{{inputs.parameters.max-failures}}",
                            "--results", "{{inputs.parameters.results}}",
                            "--rollbacks", "{{inputs.parameters.rollbacks}}",
                        ],
                    },
                },
                {
                    "name": "soak",
                    "inputs": {"parameters": [{"name": "seconds"}]},
                    "suspend": {"duration": "{{inputs.parameters.seconds}}"},
                },
                {"name": "approve", "suspend": {}},
            ],
        },
    })
}

/// The Argo objects of a plan: the template, its semaphores' ConfigMap, the Workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetObjects {
    /// The `WorkflowTemplate`.
    pub template: Value,
    /// The `ConfigMap` of the per-account semaphores.
    pub semaphores: Value,
    /// The `Workflow` that submits the template.
    pub workflow: Value,
}

impl FleetObjects {
    /// The objects of `plan`, the template named `name`.
    pub fn new(plan: &FleetPlan, name: &str) -> FleetObjects {
        FleetObjects {
            template: workflow_template(plan, name),
            semaphores: semaphore_config_map(plan, name),
            workflow: workflow(plan, name),
        }
    }

    /// The files `write` creates, with their objects.
    fn files(&self) -> [(&'static str, &Value); 3] {
        [
            ("workflowtemplate.yaml", &self.template),
            ("semaphores.yaml", &self.semaphores),
            ("workflow.yaml", &self.workflow),
        ]
    }

    /// Writes them as YAML into `dir` (created): `workflowtemplate.yaml`,
    /// `semaphores.yaml`, `workflow.yaml`.
    pub fn write(&self, dir: &std::path::Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        for (file, value) in self.files() {
            let yaml = serde_norway::to_string(value).map_err(std::io::Error::other)?;
            upgrade_core::atomic_file::write(&dir.join(file), yaml.as_bytes())?;
        }
        Ok(())
    }
}

/// The ConfigMap of the per-account semaphores: each account's limit.
pub fn semaphore_config_map(plan: &FleetPlan, name: &str) -> Value {
    let data: serde_json::Map<String, Value> = plan
        .spec
        .inventory
        .clusters
        .iter()
        .map(|c| {
            (
                c.account.clone(),
                json!(plan.spec.concurrency_per_account.to_string()),
            )
        })
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": semaphore_config_map_name(name), "labels": {"app.kubernetes.io/managed-by": "upgrade-fleet"}},
        "data": data,
    })
}

/// A `Workflow` that runs the template `name`.
pub fn workflow(plan: &FleetPlan, name: &str) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {
            "generateName": format!("{name}-"),
            "labels": {"app.kubernetes.io/managed-by": "upgrade-fleet"},
        },
        "spec": {
            "workflowTemplateRef": {"name": name},
            "arguments": {"parameters": [{"name": "image", "value": plan.spec.image}]},
        },
    })
}

/// A gate's decision: the failed clusters among `results` against `max_failures`, and the
/// wave's rollback tasks (`rollbacks`: their Argo phases). `Err` when more failed than
/// allowed, or a rollback failed (a cluster is left half-changed): the rollout stops.
pub fn gate(
    wave: &str,
    max_failures: u32,
    results: &[super::cluster::ClusterResult],
    rollbacks: &[String],
) -> std::result::Result<String, String> {
    let failed = results.iter().filter(|r| r.counts_as_failed()).count();
    let line = format!(
        "after {wave}: {failed} of {} cluster(s) failed; the rollout stops past {max_failures}",
        results.len()
    );
    let broken = rollbacks
        .iter()
        .filter(|p| matches!(p.as_str(), "Failed" | "Error"))
        .count();
    if broken > 0 {
        Err(format!(
            "{line}; {broken} rollback(s) failed, leaving a cluster half-changed: stopped"
        ))
    } else if failed as u32 > max_failures {
        Err(format!("{line}: stopped"))
    } else {
        Ok(format!("{line}: going on"))
    }
}

#[cfg(test)]
mod tests {
    use super::super::cluster::ClusterResult::*;
    use super::*;

    #[test]
    fn the_gate_stops_past_the_threshold_or_on_a_failed_rollback() {
        let done = |s: &str| s.to_string();
        assert!(gate("w", 1, &[Ok, Failed], &[done("Omitted"), done("Skipped")]).is_ok());
        assert!(gate("w", 1, &[Ok, Failed, Blocked], &[]).is_err());
        assert!(gate("w", 0, &[Warning, Ok], &[]).is_ok(), "warnings go on");
        let err = gate("w", 5, &[Stopped], &[done("Failed")]).unwrap_err();
        assert!(err.contains("1 rollback(s) failed"), "{err}");
    }
}

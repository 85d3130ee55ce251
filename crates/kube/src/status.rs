//! The `upgrade-status` ConfigMap of seed 004, kept current at every step.
//!
//! Anyone with `kubectl get configmap upgrade-status -n kube-system -o yaml` sees what is
//! being upgraded, from which version to which, the state of each part and a timeline. The
//! `status` key is the human summary; `status.json` is the same as JSON for tools.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use serde::{Deserialize, Serialize};

use crate::connect::Cluster;
use crate::cordon::FIELD_MANAGER;
use crate::error::{Error, Result};
use crate::retry::{idempotent_write, read};

/// Name of the ConfigMap.
pub const NAME: &str = "upgrade-status";

/// The state of one part of the upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartState {
    /// Not started.
    Pending,
    /// Under way.
    InProgress,
    /// Done and verified.
    Complete,
    /// Failed.
    Failed,
    /// Undone.
    RolledBack,
}

impl PartState {
    fn label(self) -> &'static str {
        match self {
            PartState::Pending => "pending",
            PartState::InProgress => "in-progress",
            PartState::Complete => "complete",
            PartState::Failed => "failed",
            PartState::RolledBack => "rolled-back",
        }
    }
}

/// One part (the control plane, a node, a component).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// e.g. `Control Plane`, `Node ip-10-0-1-5`, `kserve`.
    pub name: String,
    /// Version before.
    pub from: String,
    /// Version after.
    pub to: String,
    /// Its state.
    pub state: PartState,
}

/// The whole status document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeStatus {
    /// The run it describes.
    pub run_id: String,
    /// The parts, in upgrade order.
    pub parts: Vec<Part>,
    /// (time, event) in order.
    pub timeline: Vec<(String, String)>,
    /// Whether a recorded way back exists for what is applied.
    pub rollback_available: bool,
    /// Why there is none, when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_note: Option<String>,
    /// Nodes a node rollout's surge added for the batch in progress: extra capacity until
    /// the batch's nodes are retired, which a rollback retires.
    #[serde(default)]
    pub surged: Vec<String>,
}

impl UpgradeStatus {
    /// Sets a part's state (adding the part if new) and records it in the timeline.
    pub fn set(&mut self, name: &str, from: &str, to: &str, state: PartState) {
        match self.parts.iter_mut().find(|p| p.name == name) {
            Some(part) => part.state = state,
            None => self.parts.push(Part {
                name: name.into(),
                from: from.into(),
                to: to.into(),
                state,
            }),
        }
        self.event(format!("{name}: {}", state.label()));
    }

    /// Adds `event` to the timeline, now.
    pub fn event(&mut self, event: impl Into<String>) {
        self.timeline.push((
            jiff::Timestamp::now()
                .strftime("%Y-%m-%d %H:%M:%S UTC")
                .to_string(),
            event.into(),
        ));
    }

    /// The human summary, in the shape of seed 004's example.
    pub fn render(&self) -> String {
        let mut out = format!("Cluster Upgrade Status (run {}):\n", self.run_id);
        for p in &self.parts {
            let versions = match (p.from.is_empty(), p.to.is_empty()) {
                (true, true) => String::new(),
                (true, false) => format!(": → {}", p.to),
                (false, true) => format!(": {}", p.from),
                (false, false) => format!(": {} → {}", p.from, p.to),
            };
            out.push_str(&format!("- {}{versions} ({})\n", p.name, p.state.label()));
        }
        out.push_str("\nTimeline:\n");
        for (at, event) in &self.timeline {
            out.push_str(&format!("- {at}: {event}\n"));
        }
        out.push_str(&format!(
            "\nRollback Available: {}{}\n",
            if self.rollback_available { "Yes" } else { "No" },
            self.rollback_note
                .as_deref()
                .map(|why| format!(" ({why})"))
                .unwrap_or_default()
        ));
        out
    }

    /// Writes it to `kube-system/upgrade-status` (server-side apply; creates it if absent).
    pub async fn publish(&self, cluster: &Cluster) -> Result<()> {
        cluster.guard()?;
        let api: Api<ConfigMap> = Api::namespaced(cluster.client().clone(), "kube-system");
        let mut data = BTreeMap::new();
        data.insert("status".to_string(), self.render());
        data.insert(
            "status.json".to_string(),
            serde_json::to_string_pretty(self).expect("status serialises"),
        );
        let cm = serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": { "name": NAME, "namespace": "kube-system" },
            "data": data,
        });
        // A server-side apply of the whole document is idempotent: retried when the server is busy.
        let (params, patch) = (PatchParams::apply(FIELD_MANAGER).force(), Patch::Apply(&cm));
        idempotent_write("update kube-system/upgrade-status", || {
            api.patch(NAME, &params, &patch)
        })
        .await?;
        Ok(())
    }

    /// Reads it back (`None` when there is none).
    pub async fn read(cluster: &Cluster) -> Result<Option<UpgradeStatus>> {
        let api: Api<ConfigMap> = Api::namespaced(cluster.client().clone(), "kube-system");
        let Some(cm) = read("read kube-system/upgrade-status", api.get_opt(NAME)).await? else {
            return Ok(None);
        };
        let json = cm
            .data
            .as_ref()
            .and_then(|d| d.get("status.json"))
            .ok_or_else(|| {
                Error::Backup("kube-system/upgrade-status has no status.json key".into())
            })?;
        serde_json::from_str(json)
            .map(Some)
            .map_err(|e| Error::Backup(format!("kube-system/upgrade-status is not readable: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_the_seed() {
        let mut s = UpgradeStatus {
            run_id: "r1".into(),
            rollback_available: true,
            ..Default::default()
        };
        s.set("Control Plane", "1.30", "1.31", PartState::Complete);
        s.set(
            "Node ip-10-0-1-5",
            "1.30.4",
            "1.31.2",
            PartState::InProgress,
        );
        let text = s.render();
        let text: String = text
            .lines()
            .map(|l| {
                if l.starts_with("- 20") {
                    "- [TIME]: ..."
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        insta::assert_snapshot!(text, @r"
        Cluster Upgrade Status (run r1):
        - Control Plane: 1.30 → 1.31 (complete)
        - Node ip-10-0-1-5: 1.30.4 → 1.31.2 (in-progress)

        Timeline:
        - [TIME]: ...
        - [TIME]: ...

        Rollback Available: Yes
        ");
    }
}

//! The upgrade path: from the current minor to the target one minor at a time.
//!
//! EKS runs a highly available control plane and "can update only one minor version at a
//! time" (update-cluster.adoc); upstream forbids skipping minors too. Before each control-plane
//! hop, managed node groups and Fargate nodes must already run the control plane's minor
//! (EKS `UpdateClusterVersion` refuses otherwise), so each [`Hop`] lists what must hold first.

use std::fmt;

use serde::Serialize;

use crate::data::Data;
use crate::skew::{self, Component};
use upgrade_core::version::KubeMinor;

/// The oldest minor the toolkit plans from (the platform's seeds support 1.28 to 1.34).
pub const OLDEST_SUPPORTED: KubeMinor = KubeMinor::new(1, 28);

/// A path that cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The target is not newer than the current version.
    #[error(
        "the target {target} is not newer than the current version {current}; nothing to upgrade (going back one minor is EKS's version rollback: upgrade-rollback of the hop's run, within 7 days)"
    )]
    NotNewer {
        /// The current minor.
        current: KubeMinor,
        /// The requested target.
        target: KubeMinor,
    },
    /// A hop that skips minors.
    #[error(
        "a single upgrade from {from} to {to} skips {skipped} minor version(s); EKS and Kubernetes upgrade one minor at a time ({from} → {next} first)"
    )]
    SkipsMinors {
        /// Where the hop starts.
        from: KubeMinor,
        /// Where it would end.
        to: KubeMinor,
        /// How many minors it skips.
        skipped: u32,
        /// The only allowed next minor.
        next: KubeMinor,
    },
    /// A change of major version, which no policy covers.
    #[error("{from} → {to} changes the major version; no upgrade policy covers that")]
    MajorChange {
        /// Where it starts.
        from: KubeMinor,
        /// Where it would end.
        to: KubeMinor,
    },
}

/// Something the planner wants the user to know; never fatal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum PlanNote {
    /// The current version is older than the toolkit's supported range.
    BelowSupportedRange {
        /// The current minor.
        current: KubeMinor,
        /// The oldest supported minor.
        oldest: KubeMinor,
    },
    /// The target lies beyond the embedded data.
    BeyondData {
        /// The requested target.
        target: KubeMinor,
        /// The newest minor the data covers.
        data_ends_at: KubeMinor,
        /// When the data was last checked.
        checked: String,
        /// What the data knows of the target upstream (released but not on EKS, or due).
        upstream: Option<String>,
    },
}

impl fmt::Display for PlanNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanNote::BelowSupportedRange { current, oldest } => write!(
                f,
                "the current version {current} is older than the oldest supported {oldest}; the checks still run, but the procedures were written for {oldest} and newer"
            ),
            PlanNote::BeyondData {
                target,
                data_ends_at,
                checked,
                upstream,
            } => {
                write!(
                    f,
                    "the target {target} is beyond the EKS calendar of the version data, which ends at {data_ends_at} (checked {checked})"
                )?;
                if let Some(upstream) = upstream {
                    write!(f, ": {upstream}")?;
                }
                write!(
                    f,
                    "; its support dates and component compatibility are unknown, not clean"
                )
            }
        }
    }
}

/// One control-plane upgrade by one minor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hop {
    /// The control plane's minor before the hop.
    pub from: KubeMinor,
    /// The control plane's minor after the hop.
    pub to: KubeMinor,
    /// The oldest kubelet the skew policy allows once the control plane is at `to`.
    pub oldest_kubelet_after: KubeMinor,
    /// The oldest kube-proxy the skew policy allows once the control plane is at `to`.
    pub oldest_kube_proxy_after: KubeMinor,
    /// What must hold before the control plane moves.
    pub prerequisites: Vec<String>,
    /// What to do after the control plane moved, before the next hop.
    pub follow_ups: Vec<String>,
}

impl Hop {
    /// A hop from `from` to `to`; refuses anything but exactly one minor forward.
    pub fn new(from: KubeMinor, to: KubeMinor) -> Result<Self, PlanError> {
        let delta = from
            .minors_until(to)
            .ok_or(PlanError::MajorChange { from, to })?;
        if delta <= 0 {
            return Err(PlanError::NotNewer {
                current: from,
                target: to,
            });
        }
        if delta > 1 {
            return Err(PlanError::SkipsMinors {
                from,
                to,
                skipped: u32::try_from(delta - 1).unwrap_or(u32::MAX),
                next: from.next(),
            });
        }
        let oldest_proxy = skew::oldest_allowed(Component::KubeProxy, to);
        let oldest_kubelet = skew::oldest_allowed(Component::Kubelet, to);
        Ok(Self {
            from,
            to,
            oldest_kubelet_after: oldest_kubelet,
            oldest_kube_proxy_after: oldest_proxy,
            prerequisites: vec![
                format!("the control plane is at {from} and healthy"),
                format!(
                    "every managed node group and Fargate node runs kubelet {from} (EKS refuses the control-plane update otherwise); self-managed and Karpenter nodes should too"
                ),
                format!(
                    "no kubelet older than {oldest_kubelet} and no kube-proxy older than {oldest_proxy}, none newer than {from} (skew policy once the control plane is at {to})"
                ),
                format!("no manifest uses an API removed in {to}"),
                format!("every chart's kubeVersion constraint accepts {to}"),
                format!("add-ons and platform components support {to}"),
            ],
            follow_ups: vec![
                format!(
                    "update the kube-proxy, CoreDNS and VPC CNI add-ons to their {to} versions"
                ),
                format!("roll every node group to {to} (drain respects PodDisruptionBudgets)"),
            ],
        })
    }
}

/// The ordered path from the current minor to the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpgradePlan {
    /// The control plane's minor now.
    pub current: KubeMinor,
    /// Where the plan ends.
    pub target: KubeMinor,
    /// One hop per minor, in order.
    pub hops: Vec<Hop>,
    /// Warnings about the range or the data.
    pub notes: Vec<PlanNote>,
}

impl UpgradePlan {
    /// Plans `current` → `target` one minor at a time, with notes about where `data` ends.
    pub fn new(current: KubeMinor, target: KubeMinor, data: &Data) -> Result<Self, PlanError> {
        let delta = current.minors_until(target).ok_or(PlanError::MajorChange {
            from: current,
            to: target,
        })?;
        if delta <= 0 {
            return Err(PlanError::NotNewer { current, target });
        }
        let mut hops = Vec::new();
        let mut from = current;
        while from < target {
            let hop = Hop::new(from, from.next())?;
            from = hop.to;
            hops.push(hop);
        }
        let mut notes = Vec::new();
        if current < OLDEST_SUPPORTED {
            notes.push(PlanNote::BelowSupportedRange {
                current,
                oldest: OLDEST_SUPPORTED,
            });
        }
        let coverage = data.coverage();
        if target > coverage.newest_calendar_minor {
            notes.push(PlanNote::BeyondData {
                target,
                data_ends_at: coverage.newest_calendar_minor,
                checked: coverage.checked.to_string(),
                upstream: data.upstream_release(target).map(ToString::to_string),
            });
        }
        Ok(Self {
            current,
            target,
            hops,
            notes,
        })
    }

    /// The minors the control plane passes through after the current one, in order.
    pub fn hop_targets(&self) -> impl Iterator<Item = KubeMinor> + '_ {
        self.hops.iter().map(|h| h.to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(minor: u32) -> KubeMinor {
        KubeMinor::new(1, minor)
    }

    #[test]
    fn refuses_to_skip_a_minor() {
        let err = Hop::new(m(29), m(31)).unwrap_err();
        assert_eq!(
            err,
            PlanError::SkipsMinors {
                from: m(29),
                to: m(31),
                skipped: 1,
                next: m(30)
            }
        );
        assert_eq!(
            err.to_string(),
            "a single upgrade from 1.29 to 1.31 skips 1 minor version(s); EKS and Kubernetes upgrade one minor at a time (1.29 → 1.30 first)"
        );
        assert!(Hop::new(m(29), m(30)).is_ok());
    }

    #[test]
    fn plans_three_hops_for_three_minors() {
        let plan = UpgradePlan::new(m(28), m(31), Data::embedded()).unwrap();
        let hops: Vec<_> = plan.hops.iter().map(|h| (h.from, h.to)).collect();
        assert_eq!(hops, [(m(28), m(29)), (m(29), m(30)), (m(30), m(31))]);
        assert!(plan.notes.is_empty(), "{:?}", plan.notes);
        assert!(plan.hops[0].prerequisites[1].contains("kubelet 1.28"));
        assert!(
            plan.hops[2].prerequisites[2].contains("no kubelet older than 1.28"),
            "{}",
            plan.hops[2].prerequisites[2]
        );
        assert_eq!(plan.hops[2].oldest_kube_proxy_after, m(28));
    }

    #[test]
    fn refuses_nothing_to_do_and_downgrades() {
        let data = Data::embedded();
        assert!(matches!(
            UpgradePlan::new(m(30), m(30), data),
            Err(PlanError::NotNewer { .. })
        ));
        assert!(matches!(
            UpgradePlan::new(m(30), m(29), data),
            Err(PlanError::NotNewer { .. })
        ));
        assert!(matches!(
            UpgradePlan::new(m(30), KubeMinor::new(2, 0), data),
            Err(PlanError::MajorChange { .. })
        ));
    }

    #[test]
    fn a_target_beyond_the_data_is_a_note_naming_where_it_ends() {
        let plan = UpgradePlan::new(m(35), m(37), Data::embedded()).unwrap();
        assert_eq!(plan.hops.len(), 2);
        assert_eq!(
            plan.notes,
            [PlanNote::BeyondData {
                target: m(37),
                data_ends_at: m(36),
                checked: "2026-12-02".into(),
                upstream: Some(
                    "Kubernetes 1.37 was released upstream on 2026-08-26 but is not on EKS yet"
                        .into()
                ),
            }]
        );
        assert!(
            plan.notes[0].to_string().contains(
                "ends at 1.36 (checked 2026-12-02): Kubernetes 1.37 was released upstream"
            )
        );
        let far = UpgradePlan::new(m(35), m(40), Data::embedded()).unwrap();
        assert!(
            matches!(&far.notes[0], PlanNote::BeyondData { upstream: None, .. }),
            "{:?}",
            far.notes
        );
        // The last known minor itself is inside the data.
        assert!(
            UpgradePlan::new(m(35), m(36), Data::embedded())
                .unwrap()
                .notes
                .is_empty()
        );
    }

    #[test]
    fn below_the_supported_range_is_a_note() {
        let plan = UpgradePlan::new(m(27), m(28), Data::embedded()).unwrap();
        assert_eq!(
            plan.notes,
            [PlanNote::BelowSupportedRange {
                current: m(27),
                oldest: m(28)
            }]
        );
    }
}

//! The Kubernetes version skew policy as rules with their source.
//!
//! Source: <https://kubernetes.io/releases/version-skew-policy/>
//! (`kubernetes/website@01bc097:content/en/releases/version-skew-policy.md`), and for EKS
//! `awsdocs/amazon-eks-user-guide:latest/ug/clusters/update-cluster.adoc`. All rules compare
//! minors; N is the kube-apiserver minor.

use std::fmt;

use serde::Serialize;

use upgrade_core::version::KubeMinor;

/// The source of the upstream skew rules.
pub const SKEW_POLICY_URL: &str = "https://kubernetes.io/releases/version-skew-policy/";

/// A cluster component whose version the policy constrains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Component {
    /// The node agent. Never newer than the API server; at most 3 minors older (2 when the
    /// kubelet is older than 1.25).
    Kubelet,
    /// The node proxy; same rule as the kubelet against the API server.
    KubeProxy,
    /// kube-controller-manager, kube-scheduler and cloud-controller-manager: never newer, at
    /// most 1 minor older.
    ControlPlane,
    /// The client: within one minor, older or newer.
    Kubectl,
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Component::Kubelet => "kubelet",
            Component::KubeProxy => "kube-proxy",
            Component::ControlPlane => "kube-controller-manager/kube-scheduler",
            Component::Kubectl => "kubectl",
        })
    }
}

/// One row of the skew policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SkewRule {
    /// The constrained component.
    pub component: Component,
    /// Whether the component may be newer than the API server (by `max_newer` minors).
    pub max_newer: u32,
    /// How many minors older than the API server the component may be, given its own minor.
    pub max_older_from_1_25: u32,
    /// The same before 1.25 (component minor < 1.25).
    pub max_older_before_1_25: u32,
    /// The policy's wording.
    pub text: &'static str,
}

/// The skew rules, as the policy page states them.
pub const RULES: [SkewRule; 4] = [
    SkewRule {
        component: Component::Kubelet,
        max_newer: 0,
        max_older_from_1_25: 3,
        max_older_before_1_25: 2,
        text: "kubelet must not be newer than kube-apiserver, and may be up to three minor versions older (kubelet < 1.25: two)",
    },
    SkewRule {
        component: Component::KubeProxy,
        max_newer: 0,
        max_older_from_1_25: 3,
        max_older_before_1_25: 2,
        text: "kube-proxy must not be newer than kube-apiserver, and may be up to three minor versions older (kube-proxy < 1.25: two)",
    },
    SkewRule {
        component: Component::ControlPlane,
        max_newer: 0,
        max_older_from_1_25: 1,
        max_older_before_1_25: 1,
        text: "kube-controller-manager, kube-scheduler and cloud-controller-manager must not be newer than kube-apiserver, and may be one minor older",
    },
    SkewRule {
        component: Component::Kubectl,
        max_newer: 1,
        max_older_from_1_25: 1,
        max_older_before_1_25: 1,
        text: "kubectl is supported within one minor version (older or newer) of kube-apiserver",
    },
];

/// The rule for a component.
pub fn rule(component: Component) -> &'static SkewRule {
    RULES
        .iter()
        .find(|r| r.component == component)
        .unwrap_or(&RULES[0])
}

/// Why a component version breaks the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum SkewViolation {
    /// The component is newer than the API server allows.
    TooNew {
        /// Minors ahead of the API server.
        ahead: u32,
        /// Minors ahead the policy allows.
        allowed: u32,
    },
    /// The component is older than the API server allows.
    TooOld {
        /// Minors behind the API server.
        behind: u32,
        /// Minors behind the policy allows.
        allowed: u32,
    },
    /// Different major versions; the policy has no rule for that.
    MajorMismatch,
}

impl fmt::Display for SkewViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkewViolation::TooNew { ahead, allowed } => write!(
                f,
                "{ahead} minor(s) newer than the API server (allowed: {allowed})"
            ),
            SkewViolation::TooOld { behind, allowed } => write!(
                f,
                "{behind} minor(s) older than the API server (allowed: {allowed})"
            ),
            SkewViolation::MajorMismatch => {
                f.write_str("a different major version than the API server")
            }
        }
    }
}

/// Checks `component` at `version` against an API server at `api`.
pub fn evaluate(
    component: Component,
    api: KubeMinor,
    version: KubeMinor,
) -> Result<(), SkewViolation> {
    let rule = rule(component);
    let Some(delta) = api.minors_until(version) else {
        return Err(SkewViolation::MajorMismatch);
    };
    if delta > 0 {
        let ahead = u32::try_from(delta).unwrap_or(u32::MAX);
        return if ahead <= rule.max_newer {
            Ok(())
        } else {
            Err(SkewViolation::TooNew {
                ahead,
                allowed: rule.max_newer,
            })
        };
    }
    let behind = u32::try_from(-delta).unwrap_or(u32::MAX);
    let allowed = if version >= KubeMinor::new(1, 25) {
        rule.max_older_from_1_25
    } else {
        rule.max_older_before_1_25
    };
    if behind <= allowed {
        Ok(())
    } else {
        Err(SkewViolation::TooOld { behind, allowed })
    }
}

/// Checks kube-proxy against the kubelet on the same node: up to three minors older or newer
/// (two when kube-proxy is older than 1.25). The violation is relative to the kubelet.
pub fn evaluate_proxy_with_kubelet(
    kubelet: KubeMinor,
    kube_proxy: KubeMinor,
) -> Result<(), SkewViolation> {
    let Some(delta) = kubelet.minors_until(kube_proxy) else {
        return Err(SkewViolation::MajorMismatch);
    };
    let allowed = if kube_proxy >= KubeMinor::new(1, 25) {
        3
    } else {
        2
    };
    let distance = u32::try_from(delta.unsigned_abs()).unwrap_or(u32::MAX);
    match delta {
        _ if distance <= allowed => Ok(()),
        d if d > 0 => Err(SkewViolation::TooNew {
            ahead: distance,
            allowed,
        }),
        _ => Err(SkewViolation::TooOld {
            behind: distance,
            allowed,
        }),
    }
}

/// The oldest version of `component` that is still within policy of an API server at `api`.
pub fn oldest_allowed(component: Component, api: KubeMinor) -> KubeMinor {
    let rule = rule(component);
    let candidate = api
        .offset(-i64::from(rule.max_older_from_1_25))
        .unwrap_or(KubeMinor::new(api.major, 0));
    if candidate >= KubeMinor::new(1, 25) {
        candidate
    } else {
        api.offset(-i64::from(rule.max_older_before_1_25))
            .unwrap_or(KubeMinor::new(api.major, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(minor: u32) -> KubeMinor {
        KubeMinor::new(1, minor)
    }

    #[test]
    fn kubelet_boundaries() {
        // Equal and up to three older from 1.25 on.
        assert_eq!(evaluate(Component::Kubelet, m(30), m(30)), Ok(()));
        assert_eq!(evaluate(Component::Kubelet, m(30), m(27)), Ok(()));
        assert_eq!(
            evaluate(Component::Kubelet, m(30), m(26)),
            Err(SkewViolation::TooOld {
                behind: 4,
                allowed: 3
            })
        );
        // Never newer.
        assert_eq!(
            evaluate(Component::Kubelet, m(30), m(31)),
            Err(SkewViolation::TooNew {
                ahead: 1,
                allowed: 0
            })
        );
        // A kubelet older than 1.25 may only be two behind: 1.24 with 1.27 is out, with 1.26 in.
        assert_eq!(
            evaluate(Component::Kubelet, m(27), m(24)),
            Err(SkewViolation::TooOld {
                behind: 3,
                allowed: 2
            })
        );
        assert_eq!(evaluate(Component::Kubelet, m(26), m(24)), Ok(()));
        // 1.25 kubelet with a 1.28 server: three behind is fine (the "n-3 since 1.28" case).
        assert_eq!(evaluate(Component::Kubelet, m(28), m(25)), Ok(()));
        assert_eq!(
            evaluate(Component::Kubelet, KubeMinor::new(2, 0), m(30)),
            Err(SkewViolation::MajorMismatch)
        );
    }

    #[test]
    fn kube_proxy_follows_the_kubelet_rule() {
        assert_eq!(evaluate(Component::KubeProxy, m(31), m(28)), Ok(()));
        assert!(evaluate(Component::KubeProxy, m(31), m(27)).is_err());
        assert!(evaluate(Component::KubeProxy, m(31), m(32)).is_err());
    }

    #[test]
    fn kube_proxy_with_the_kubelet_on_its_node() {
        assert_eq!(evaluate_proxy_with_kubelet(m(30), m(33)), Ok(()));
        assert_eq!(evaluate_proxy_with_kubelet(m(30), m(27)), Ok(()));
        assert_eq!(
            evaluate_proxy_with_kubelet(m(30), m(34)),
            Err(SkewViolation::TooNew {
                ahead: 4,
                allowed: 3
            })
        );
        assert_eq!(
            evaluate_proxy_with_kubelet(m(30), m(26)),
            Err(SkewViolation::TooOld {
                behind: 4,
                allowed: 3
            })
        );
        assert_eq!(
            evaluate_proxy_with_kubelet(m(27), m(24)),
            Err(SkewViolation::TooOld {
                behind: 3,
                allowed: 2
            })
        );
    }

    #[test]
    fn control_plane_components_one_older_never_newer() {
        assert_eq!(evaluate(Component::ControlPlane, m(31), m(30)), Ok(()));
        assert!(evaluate(Component::ControlPlane, m(31), m(29)).is_err());
        assert!(evaluate(Component::ControlPlane, m(31), m(32)).is_err());
    }

    #[test]
    fn kubectl_one_either_way() {
        assert_eq!(evaluate(Component::Kubectl, m(31), m(32)), Ok(()));
        assert_eq!(evaluate(Component::Kubectl, m(31), m(30)), Ok(()));
        assert_eq!(
            evaluate(Component::Kubectl, m(31), m(33)),
            Err(SkewViolation::TooNew {
                ahead: 2,
                allowed: 1
            })
        );
        assert!(evaluate(Component::Kubectl, m(31), m(29)).is_err());
    }

    #[test]
    fn oldest_allowed_matches_evaluate() {
        for api in 20..40 {
            for component in [
                Component::Kubelet,
                Component::KubeProxy,
                Component::ControlPlane,
            ] {
                let oldest = oldest_allowed(component, m(api));
                assert_eq!(
                    evaluate(component, m(api), oldest),
                    Ok(()),
                    "{component} {api}"
                );
                if let Some(older) = oldest.prev() {
                    assert!(
                        evaluate(component, m(api), older).is_err(),
                        "{component} {api}"
                    );
                }
            }
        }
    }
}

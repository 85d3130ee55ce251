//! Platform components (Karpenter, KServe, Argo Workflows, Argo CD, cert-manager) and EKS
//! add-ons against the compatibility data.

use super::{Applies, Category, CheckInfo, Context, Issue, Outcome, Severity, Subject};
use crate::data::{ComponentCompat, MinorRange};
use upgrade_core::version::{KubeMinor, parse_loose_semver};

pub(super) const CHECKS: &[CheckInfo] = &[
    CheckInfo {
        code: "COMPAT001",
        title: "Component outside its supported Kubernetes range",
        severity: Severity::Blocker,
        category: Category::Compatibility,
        applies: Applies::ALWAYS,
        inspects: "Karpenter, KServe and cert-manager versions (from `components`, or the app version of their Helm releases) against the vendor's published supported range, at every minor the control plane passes through. Reports the first hop outside the range and the oldest version line that supports it.",
        remediation: "Upgrade the component to a version that supports both the hop's minor and the current one before that hop (the finding names the oldest such line); upgrade it in steps if no single version spans both.",
        source: "crates/checks/data/compatibility.yaml (each row names its source)",
        run: outside_supported,
    },
    CheckInfo {
        code: "COMPAT002",
        title: "Component not tested with a version on the path",
        severity: Severity::Warning,
        category: Category::Compatibility,
        applies: Applies::ALWAYS,
        inspects: "Argo Workflows, Argo CD, KServe and cert-manager versions against the Kubernetes versions upstream tested or recommends, at every minor the control plane passes through.",
        remediation: "Upgrade the component to a release tested with the hop's minor, or test the combination yourself before the hop.",
        source: "crates/checks/data/compatibility.yaml (each row names its source)",
        run: outside_tested,
    },
    CheckInfo {
        code: "COMPAT003",
        title: "Component version not in the embedded data",
        severity: Severity::Warning,
        category: Category::Compatibility,
        applies: Applies::ALWAYS,
        inspects: "Component versions the compatibility data has no row for (newer than the data, or unparsable): their compatibility is unknown, not fine.",
        remediation: "Check the component's compatibility page (the data file names it) and update `crates/checks/data/compatibility.yaml`.",
        source: "crates/checks/data/compatibility.yaml",
        run: unknown_versions,
    },
    CheckInfo {
        code: "ADDON001",
        title: "EKS add-on reports health issues",
        severity: Severity::Blocker,
        category: Category::Compatibility,
        applies: Applies::ALWAYS,
        inspects: "`health.issues` of every EKS add-on (DescribeAddon).",
        remediation: "Resolve the add-on's issues first (`aws eks describe-addon --cluster-name <cluster> --addon-name <addon>`); an unhealthy add-on update during an upgrade is hard to tell apart from an upgrade failure.",
        source: "https://docs.aws.amazon.com/eks/latest/APIReference/API_AddonHealth.html",
        run: addon_health,
    },
    CheckInfo {
        code: "ADDON002",
        title: "EKS add-on behind the current control plane",
        severity: Severity::Warning,
        category: Category::Compatibility,
        applies: Applies::ALWAYS,
        inspects: "kube-proxy, CoreDNS and VPC CNI add-on versions against the versions documented for the current minor (kube-proxy: same minor as the control plane; CoreDNS: the documented minor line; VPC CNI: not older than the documented version). An add-on behind now means an earlier upgrade was not finished.",
        remediation: "Update the add-on to the version for the current minor first (`aws eks describe-addon-versions --kubernetes-version <minor> --addon-name <addon>`, then `aws eks update-addon`).",
        source: "crates/checks/data/eks.yaml (EKS add-on pages)",
        run: addons_behind,
    },
];

/// Components whose Helm chart name identifies them.
const KNOWN: [&str; 5] = [
    "karpenter",
    "kserve",
    "argo-workflows",
    "argo-cd",
    "cert-manager",
];

struct Installed {
    component: &'static str,
    version: String,
    subject: Subject,
}

/// Components from `components` first, then Helm releases of known charts not listed there.
fn installed(ctx: &Context<'_>) -> Vec<Installed> {
    let mut found: Vec<Installed> = Vec::new();
    for c in &ctx.facts.components {
        if let Some(component) = KNOWN.iter().find(|k| **k == c.component) {
            found.push(Installed {
                component,
                version: c.version.clone(),
                subject: Subject::cluster("Component", component),
            });
        }
    }
    for release in &ctx.facts.helm_releases {
        let Some(component) = KNOWN.iter().find(|k| **k == release.chart) else {
            continue;
        };
        if found.iter().any(|f| f.component == *component) {
            continue;
        }
        found.push(Installed {
            component,
            version: release
                .app_version
                .clone()
                .unwrap_or_else(|| release.chart_version.clone()),
            subject: Subject::namespaced("HelmRelease", &release.namespace, &release.name),
        });
    }
    found
}

/// The oldest version line, not older than the installed one, whose `range` contains
/// `minor`, as advice (never a downgrade).
fn oldest_line_for(
    ctx: &Context<'_>,
    component: &str,
    installed: &str,
    minor: KubeMinor,
    range: fn(&ComponentCompat) -> Option<MinorRange>,
) -> String {
    let installed_line = parse_loose_semver(installed).map(|v| (v.major, v.minor));
    ctx.data
        .components
        .iter()
        .filter(|r| r.component == component && range(r).is_some_and(|rr| rr.contains(minor)))
        .filter_map(|r| parse_loose_semver(r.version.trim_end_matches(".x")).map(|v| (v, r)))
        .filter(|(v, _)| installed_line.is_none_or(|line| (v.major, v.minor) >= line))
        .min_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, r)| {
            format!(
                "; {} {} is the oldest line that covers {minor}",
                component, r.version
            )
        })
        .unwrap_or_else(|| format!("; no newer {component} version in the data covers {minor}"))
}

fn outside(
    ctx: &Context<'_>,
    which: fn(&ComponentCompat) -> Option<MinorRange>,
    what: &str,
) -> Outcome {
    let mut issues = Vec::new();
    for item in installed(ctx) {
        let Some(row) = ctx.data.component_compat(item.component, &item.version) else {
            continue; // COMPAT003 reports it.
        };
        let Some(range) = which(row) else {
            continue;
        };
        let current = ctx.current();
        let first_out = std::iter::once(current)
            .chain(ctx.hop_targets())
            .find(|m| !range.contains(*m));
        if let Some(minor) = first_out {
            let advice = oldest_line_for(ctx, item.component, &item.version, minor, which);
            let already = if minor == current {
                " (already now)"
            } else {
                ""
            };
            let issue = Issue::new(
                Some(item.subject),
                format!(
                    "{} {} is {what} Kubernetes {range} (row {}, checked {}), not {minor}{already}{advice}",
                    item.component, item.version, row.version, row.checked
                ),
            );
            issues.push(if minor == current {
                issue
            } else {
                issue.at_hop(minor)
            });
        }
    }
    Outcome::Checked(issues)
}

fn outside_supported(ctx: &Context<'_>) -> Outcome {
    outside(ctx, |r| r.supported, "supported on")
}

fn outside_tested(ctx: &Context<'_>) -> Outcome {
    outside(ctx, |r| r.tested, "tested with")
}

fn unknown_versions(ctx: &Context<'_>) -> Outcome {
    let mut issues = Vec::new();
    for item in installed(ctx) {
        if ctx
            .data
            .component_compat(item.component, &item.version)
            .is_some()
        {
            continue;
        }
        let newest = ctx
            .data
            .newest_component_line(item.component)
            .map(|r| {
                format!(
                    "; the data ends at {} {} (checked {})",
                    item.component, r.version, r.checked
                )
            })
            .unwrap_or_default();
        issues.push(Issue::new(
            Some(item.subject),
            format!(
                "no compatibility row for {} {}, so its support of the path is unknown{newest}",
                item.component, item.version
            ),
        ));
    }
    Outcome::Checked(issues)
}

fn addon_health(ctx: &Context<'_>) -> Outcome {
    let issues = ctx
        .facts
        .addons
        .iter()
        .filter(|a| !a.health_issues.is_empty())
        .map(|a| {
            Issue::new(
                Some(Subject::cluster("Addon", &a.name)),
                a.health_issues.join("; "),
            )
        })
        .collect();
    Outcome::Checked(issues)
}

fn addons_behind(ctx: &Context<'_>) -> Outcome {
    if ctx.facts.addons.is_empty() {
        return Outcome::Skipped("no EKS add-ons in the facts".into());
    }
    let current = ctx.current();
    let mut issues = Vec::new();
    for addon in &ctx.facts.addons {
        let Some(documented) = ctx.data.addon_version(&addon.name, current) else {
            continue;
        };
        let (Some(have), Some(want)) = (
            parse_loose_semver(&addon.version),
            parse_loose_semver(&documented.version),
        ) else {
            continue;
        };
        let behind = match addon.name.as_str() {
            "kube-proxy" => {
                (have.major, have.minor) < (u64::from(current.major), u64::from(current.minor))
            }
            "coredns" => (have.major, have.minor) < (want.major, want.minor),
            _ => (have.major, have.minor, have.patch) < (want.major, want.minor, want.patch),
        };
        if behind {
            issues.push(Issue::new(
                Some(Subject::cluster("Addon", &addon.name)),
                format!(
                    "{} {} is behind {} documented for {current} (checked {})",
                    addon.name, addon.version, documented.version, documented.checked
                ),
            ));
        }
    }
    Outcome::Checked(issues)
}

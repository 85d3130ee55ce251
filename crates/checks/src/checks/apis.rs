//! Removed and deprecated APIs in rendered manifests, and Helm chart constraints and states.

use super::{Applies, Category, CheckInfo, Context, Issue, Outcome, Severity, Subject};
use crate::manifest::{self, ManifestObject};
use upgrade_core::constraint::{Constraint, PrereleaseRule, check_kube_version};
use upgrade_core::version::{KubeMinor, KubeVersion};

const GUIDE_URL: &str = "https://kubernetes.io/docs/reference/using-api/deprecation-guide/";

pub(super) const CHECKS: &[CheckInfo] = &[
    CheckInfo {
        code: "API001",
        title: "Manifest uses an API removed on the path",
        severity: Severity::Blocker,
        category: Category::Apis,
        applies: Applies::ALWAYS,
        inspects: "Every object of every rendered Helm release manifest and extra manifest: an apiVersion and kind removed at or before the target. The finding names the hop that removes it, the replacement (following replacements that are themselves removed) and whether the replacement is already served by the current version, so the migration can happen before the upgrade.",
        remediation: "Change the chart or manifest to the replacement apiVersion and redeploy before the hop that removes the old one. If Helm's stored release still holds the removed API, `helm upgrade` fails until the record is rewritten: `upgrade-map-apis --release NAME -n NAMESPACE --target MINOR` does it as a snapshotted, reversible step (what the helm-mapkubeapis plugin does).",
        source: GUIDE_URL,
        run: removed_apis,
    },
    CheckInfo {
        code: "API002",
        title: "Manifest uses a deprecated API",
        severity: Severity::Info,
        category: Category::Apis,
        applies: Applies::ALWAYS,
        inspects: "Objects whose apiVersion is deprecated at the target but not removed by it: the next upgrade will remove them.",
        remediation: "Migrate to the replacement apiVersion while both are served.",
        source: GUIDE_URL,
        run: deprecated_apis,
    },
    CheckInfo {
        code: "API003",
        title: "Manifest cannot be scanned",
        severity: Severity::Warning,
        category: Category::Apis,
        applies: Applies::ALWAYS,
        inspects: "Rendered manifests with a document that is not valid YAML or not an object (`kind` not a string…): their APIs cannot be checked, which is not the same as having none removed.",
        remediation: "Render the release again (`helm get manifest <release> -n <namespace>`) and check the output; fix the chart if it renders invalid YAML.",
        source: "https://helm.sh/docs/helm/helm_get_manifest/",
        run: unparsable_manifests,
    },
    CheckInfo {
        code: "HELM001",
        title: "Chart kubeVersion excludes a version on the path",
        severity: Severity::Blocker,
        category: Category::Apis,
        applies: Applies::ALWAYS,
        inspects: "Each release's chart `kubeVersion` constraint, evaluated with the toolkit's one Helm constraint evaluator (the one the component upgrades use) against every minor the control plane passes through, in the form the API server will report it (on EKS a pre-release-style version such as `v1.31.0-eks-…`, which only matches constraints written with `-0`), at patches .0 and .1 since a future patch is unknown. Helm 3 needs `-0` on every bound, Helm 4 on one per AND group: with the Helm major in the facts, its rule; without, a release either would refuse.",
        remediation: "Upgrade the chart to a version whose `kubeVersion` accepts the hop's minor before that hop (or, for your own charts, widen the constraint and add `-0`, e.g. `>=1.25.0-0`).",
        source: "https://helm.sh/docs/topics/charts/#the-kubeversion-field",
        run: chart_kube_version,
    },
    CheckInfo {
        code: "HELM002",
        title: "Chart kubeVersion cannot be parsed",
        severity: Severity::Warning,
        category: Category::Apis,
        applies: Applies::ALWAYS,
        inspects: "Chart `kubeVersion` constraints that are not valid Helm constraint syntax (Helm itself will refuse to install them).",
        remediation: "Fix the constraint in the chart's Chart.yaml, or upgrade to a chart version that has a valid one.",
        source: "https://helm.sh/docs/topics/charts/#the-kubeversion-field",
        run: chart_kube_version_syntax,
    },
    CheckInfo {
        code: "HELM003",
        title: "Helm release not in a deployed state",
        severity: Severity::Blocker,
        category: Category::Apis,
        applies: Applies::ALWAYS,
        inspects: "Releases whose status is `pending-install`, `pending-upgrade`, `pending-rollback`, `uninstalling` or `failed`. Helm refuses to upgrade a pending release (\"another operation is in progress\"), and a failed one hides what is actually deployed.",
        remediation: "Find out what interrupted the release (`helm history <release> -n <namespace>`), then roll back to the last deployed revision (`helm rollback <release> <revision> -n <namespace>`).",
        source: "https://helm.sh/docs/helm/helm_history/",
        run: release_states,
    },
];

/// Every scanned object with where it came from.
pub(crate) struct Scanned {
    source: Subject,
    object: ManifestObject,
}

/// The manifests' objects and the documents that could not be read, scanned once per run
/// (three checks use them).
pub(crate) struct Scan {
    objects: Vec<Scanned>,
    broken: Vec<(Subject, String)>,
}

fn scan<'a>(ctx: &'a Context<'_>) -> &'a Scan {
    ctx.scan.get_or_init(|| scan_all(ctx))
}

fn scan_all(ctx: &Context<'_>) -> Scan {
    let mut objects = Vec::new();
    let mut broken = Vec::new();
    let releases = ctx.facts.helm_releases.iter().map(|r| {
        (
            Subject::namespaced("HelmRelease", &r.namespace, &r.name),
            r.manifest.as_str(),
        )
    });
    let extra = ctx
        .facts
        .manifests
        .iter()
        .map(|m| (Subject::cluster("Manifest", &m.source), m.content.as_str()));
    for (source, text) in releases.chain(extra) {
        let (found, error) = manifest::objects_until_error(text);
        objects.extend(found.into_iter().map(|object| Scanned {
            source: source.clone(),
            object,
        }));
        if let Some(e) = error {
            broken.push((
                source,
                format!("{e}; this and later documents were not scanned"),
            ));
        }
    }
    Scan { objects, broken }
}

fn describe_object(o: &ManifestObject) -> String {
    let name = match &o.namespace {
        Some(ns) => format!("{ns}/{}", o.name),
        None => o.name.clone(),
    };
    let applied = match o.origin {
        crate::manifest::Origin::Manifest => String::new(),
        crate::manifest::Origin::Annotation(key) => format!(" as last applied ({key})"),
    };
    format!("{} `{name}` ({}){applied}", o.kind, o.api_version)
}

fn removed_apis(ctx: &Context<'_>) -> Outcome {
    let objects = &scan(ctx).objects;
    let (current, target) = (ctx.current(), ctx.target());
    let mut issues = Vec::new();
    for scanned in objects {
        let o = &scanned.object;
        let Some(row) = ctx.data.removed_api(&o.api_version, &o.kind) else {
            continue;
        };
        let Some(removed) = row.removed_in.filter(|r| *r <= target) else {
            continue;
        };
        let when = if removed <= current {
            format!("was removed in {removed} and is not served by the cluster now ({current})")
        } else {
            format!("is removed in {removed}")
        };
        let advice = match ctx.data.final_replacement(row, target) {
            (Some(replacement), Some(available)) if available <= current => format!(
                "use {replacement} (served since {available}, so you can migrate now on {current})"
            ),
            (Some(replacement), Some(available)) => format!(
                "use {replacement} (served from {available} only, not by {current}: migrate during the {available} hop, after the control plane update)"
            ),
            (Some(replacement), None) => format!("use {replacement}"),
            (None, _) => "there is no replacement API".to_owned(),
        };
        let note = row
            .note
            .as_deref()
            .filter(|_| row.replacement.is_none())
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        let issue = Issue::new(
            Some(scanned.source.clone()),
            format!("{} {when}; {advice}{note}", describe_object(o)),
        );
        // Already removed: it has to be fixed now, before any hop.
        issues.push(if removed <= current {
            issue
        } else {
            issue.at_hop(removed)
        });
    }
    Outcome::Checked(issues)
}

fn deprecated_apis(ctx: &Context<'_>) -> Outcome {
    let objects = &scan(ctx).objects;
    let target = ctx.target();
    let mut issues = Vec::new();
    for scanned in objects {
        let o = &scanned.object;
        let Some(row) = ctx.data.removed_api(&o.api_version, &o.kind) else {
            continue;
        };
        let deprecated = row.deprecated_in.is_some_and(|d| d <= target);
        let removed_by_target = row.removed_in.is_some_and(|r| r <= target);
        if !deprecated || removed_by_target {
            continue;
        }
        let removal = row
            .removed_in
            .map(|r| format!("removed in {r}"))
            .unwrap_or_else(|| "not yet scheduled for removal".into());
        let replacement = row
            .replacement
            .as_deref()
            .map(|r| format!("; use {r}"))
            .unwrap_or_default();
        issues.push(Issue::new(
            Some(scanned.source.clone()),
            format!(
                "{} is deprecated since {} and {removal}{replacement}",
                describe_object(o),
                row.deprecated_in.map(|d| d.to_string()).unwrap_or_default()
            ),
        ));
    }
    Outcome::Checked(issues)
}

fn unparsable_manifests(ctx: &Context<'_>) -> Outcome {
    Outcome::Checked(
        scan(ctx)
            .broken
            .iter()
            .map(|(source, message)| Issue::new(Some(source.clone()), message.clone()))
            .collect(),
    )
}

/// The versions Helm may compare against at `minor`: the server's own form with the hop's
/// minor, so an EKS suffix (a semver pre-release) is kept. The patch of a future minor is
/// unknown, so both `.0` and `.1` are tried: `1.33.0-eks-…` sorts *below* `1.33.0` and would
/// slip through a `<1.33.0` constraint that every later patch fails.
fn server_versions_at(ctx: &Context<'_>, minor: KubeMinor) -> Vec<KubeVersion> {
    let server = &ctx.facts.cluster.server_version;
    let patches = if minor == server.minor {
        vec![server.patch_or_zero()]
    } else {
        vec![0, 1]
    };
    patches
        .into_iter()
        .map(|patch| KubeVersion {
            minor,
            patch: Some(patch),
            suffix: server.suffix.clone(),
        })
        .collect()
}

fn chart_kube_version(ctx: &Context<'_>) -> Outcome {
    let rules: Vec<PrereleaseRule> = match ctx.facts.helm_major {
        Some(major) => vec![PrereleaseRule::for_helm_major(major)],
        None => vec![PrereleaseRule::PerTerm, PrereleaseRule::PerGroup],
    };
    let mut issues = Vec::new();
    for release in &ctx.facts.helm_releases {
        let Some(text) = release
            .kube_version
            .as_deref()
            .filter(|t| !t.trim().is_empty())
        else {
            continue;
        };
        if text.parse::<Constraint>().is_err() {
            continue; // HELM002 reports it.
        }
        let subject = Subject::namespaced("HelmRelease", &release.namespace, &release.name);
        let failing = ctx.hop_targets().find_map(|minor| {
            server_versions_at(ctx, minor).into_iter().find_map(|seen| {
                let version = format!("v{seen}");
                let verdicts: Vec<_> = rules
                    .iter()
                    .filter_map(|rule| check_kube_version(Some(text), &version, *rule).ok())
                    .collect();
                let refusing = verdicts.iter().filter(|c| !c.compatible).count();
                let first = rules
                    .iter()
                    .zip(&verdicts)
                    .find(|(_, check)| !check.compatible)?;
                // Name the Helm major only when the two disagree.
                let who = (refusing < verdicts.len()).then_some(*first.0);
                Some((minor, who, first.1.reason.clone().unwrap_or_default()))
            })
        });
        if let Some((minor, who, reason)) = failing {
            let who = who
                .map(|rule| format!(" under {}", rule.helm()))
                .unwrap_or_default();
            issues.push(
                Issue::new(
                    Some(subject),
                    format!(
                        "chart {}-{} excludes {minor}{who}: {reason}",
                        release.chart, release.chart_version
                    ),
                )
                .at_hop(minor),
            );
        }
    }
    Outcome::Checked(issues)
}

fn chart_kube_version_syntax(ctx: &Context<'_>) -> Outcome {
    let issues = ctx
        .facts
        .helm_releases
        .iter()
        .filter_map(|release| {
            let text = release.kube_version.as_deref()?;
            let err = text.parse::<Constraint>().err()?;
            Some(Issue::new(
                Some(Subject::namespaced(
                    "HelmRelease",
                    &release.namespace,
                    &release.name,
                )),
                format!("chart {}-{}: {err}", release.chart, release.chart_version),
            ))
        })
        .collect();
    Outcome::Checked(issues)
}

fn release_states(ctx: &Context<'_>) -> Outcome {
    let issues = ctx
        .facts
        .helm_releases
        .iter()
        .filter_map(|release| {
            let status = release.status.as_str();
            let why = match status {
                "deployed" | "superseded" => return None,
                s if s.starts_with("pending-") => "a Helm operation was interrupted; Helm refuses new upgrades (\"another operation is in progress\")",
                "uninstalling" => "an uninstall was interrupted",
                "failed" => "the last operation failed; what runs may not match the chart",
                _ => "the status is not `deployed`",
            };
            Some(Issue::new(
                Some(Subject::namespaced("HelmRelease", &release.namespace, &release.name)),
                format!("status `{status}`: {why}"),
            ))
        })
        .collect();
    Outcome::Checked(issues)
}

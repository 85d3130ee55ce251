//! The Markdown upgrade playbook: per hop, in order, the platform's procedure with this
//! cluster's names and versions filled in, and the findings that belong to each hop.
//!
//! The commands follow the platform's upgrade procedures (the project's seeds) with three
//! deliberate corrections: `kubectl version --short` was removed in kubectl 1.28, so plain
//! `kubectl version` is used; managed node groups are *not* upgraded by EKS with the control
//! plane, so their update is an explicit step; and add-ons get an explicit update per hop.

use std::fmt::Write;

use crate::checks::{Finding, Report, Severity};
use crate::data::Data;
use crate::facts::{Facts, HelmReleaseFacts, NodeProvisioner};
use crate::plan::Hop;

const EKS_ADDONS: [&str; 3] = ["vpc-cni", "coredns", "kube-proxy"];

/// Helm charts whose upgrade procedure the platform documents, with what to back up first.
const COMPONENT_BACKUPS: [(&str, &[&str]); 2] = [
    (
        "kserve",
        &["kubectl get inferenceservice -A -o yaml > inferenceservices-backup.yaml"],
    ),
    (
        "argo-workflows",
        &[
            "kubectl get workflows -A -o yaml > workflows-backup.yaml",
            "kubectl get workflowtemplates -A -o yaml > templates-backup.yaml",
        ],
    ),
];

fn findings_table(out: &mut String, findings: &[&Finding]) {
    if findings.is_empty() {
        out.push_str("No findings.\n\n");
        return;
    }
    out.push_str("| severity | code | subject | finding |\n|---|---|---|---|\n");
    for f in findings {
        let subject = f
            .subject
            .as_ref()
            .map(|s| format!("`{s}`"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "| {} | [{}]({}) | {subject} | {} |",
            f.severity,
            f.code,
            f.docs,
            f.message.replace('|', "\\|")
        );
    }
    out.push('\n');
}

fn code_block(out: &mut String, lang: &str, lines: &[String]) {
    let _ = writeln!(out, "```{lang}\n{}\n```\n", lines.join("\n"));
}

fn helm_upgrade(release: &HelmReleaseFacts) -> Vec<String> {
    let chart = release
        .chart_ref
        .clone()
        .unwrap_or_else(|| format!("<repo>/{}", release.chart));
    let mut command = format!(
        "helm upgrade {} {chart} \\\n  --namespace {}",
        release.name, release.namespace
    );
    if let Some(values) = &release.values_file {
        let _ = write!(command, " \\\n  -f {values}");
    }
    vec![command]
}

/// Renders the playbook for `report`, filling names from `facts`.
pub fn playbook(report: &Report, facts: &Facts) -> String {
    let data = Data::embedded();
    let cluster = &facts.cluster.name;
    let tf_dir = facts
        .cluster
        .terraform_dir
        .clone()
        .unwrap_or_else(|| "<terraform-dir>".to_owned());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Upgrade playbook: {cluster} {} → {}\n",
        report.plan.current, report.target
    );
    let s = &report.summary;
    let _ = writeln!(
        out,
        "Generated from the cluster facts for `{cluster}` (API server {}). Checks found {} blocker(s), {} warning(s) and {} info finding(s); exit code {}. {}\n",
        report.current,
        s.blockers,
        s.warnings,
        s.infos,
        report.exit_code(),
        if s.blockers > 0 {
            "**Fix every blocker before the hop it belongs to.**"
        } else {
            "No blockers."
        }
    );
    for note in &report.plan.notes {
        let _ = writeln!(out, "> **Note:** {note}\n");
    }

    out.push_str("## Path\n\nEKS upgrades the control plane one minor at a time; it rolls one back by one minor only within 7 days of an in-place upgrade (managed node groups first).\n\n");
    out.push_str(
        "| hop | control plane | EKS standard support ends | findings |\n|---|---|---|---|\n",
    );
    for (i, hop) in report.plan.hops.iter().enumerate() {
        let support = data
            .eks_release(hop.to)
            .map(|r| r.end_of_standard_support.to_string())
            .unwrap_or_else(|| "not in the data".into());
        let count = report.findings_for_hop(Some(hop.to)).count();
        let _ = writeln!(
            out,
            "| {} | {} → {} | {support} | {count} |",
            i + 1,
            hop.from,
            hop.to
        );
    }
    out.push('\n');

    out.push_str("## Before you start\n\n");
    for item in [
        "Review release notes for breaking changes",
        "Backup critical data (see Disaster Recovery)",
        "Test upgrade in non-production environment",
        "Schedule maintenance window",
        "Notify stakeholders",
        "Verify rollback procedure",
    ] {
        let _ = writeln!(out, "- [ ] {item}");
    }
    out.push('\n');
    out.push_str("Pre-upgrade health baseline:\n\n");
    code_block(
        &mut out,
        "bash",
        &[
            "kubectl get nodes -o wide".into(),
            "kubectl get poddisruptionbudgets -A".into(),
            "kubectl get pv -o wide".into(),
            "kubectl get pvc -A".into(),
            "kubectl get pods -A --field-selector=status.phase!=Running".into(),
            "kubectl get events -A --sort-by='.lastTimestamp' | tail -20".into(),
        ],
    );
    out.push_str("Findings to resolve before the first hop:\n\n");
    let now: Vec<&Finding> = report.findings_for_hop(None).collect();
    findings_table(&mut out, &now);

    for (index, hop) in report.plan.hops.iter().enumerate() {
        hop_section(&mut out, report, facts, hop, index + 1, &tf_dir);
    }

    out.push_str("## After the last hop\n\n");
    code_block(
        &mut out,
        "bash",
        &[
            "kubectl get nodes -o wide".into(),
            "kubectl get pods -A | grep -v Running".into(),
            "kubectl get pvc -A".into(),
            "kubectl get events -A --sort-by='.lastTimestamp' | tail -20".into(),
            "kubectl logs -n mlops -l app.kubernetes.io/part-of=mlops-platform --tail=100".into(),
        ],
    );
    out.push_str("Then run the integration tests (`pytest tests/ -v`), send a test inference request, and check error rates and latency against the baseline.\n");
    out
}

fn hop_section(
    out: &mut String,
    report: &Report,
    facts: &Facts,
    hop: &Hop,
    number: usize,
    tf_dir: &str,
) {
    let data = Data::embedded();
    let cluster = &facts.cluster.name;
    let (from, to) = (hop.from, hop.to);
    let _ = writeln!(out, "## Hop {number}: {from} → {to}\n");
    out.push_str("### Prerequisites\n\n");
    for p in &hop.prerequisites {
        let _ = writeln!(out, "- [ ] {p}");
    }
    out.push('\n');
    let findings: Vec<&Finding> = report.findings_for_hop(Some(to)).collect();
    let blockers = findings
        .iter()
        .filter(|f| f.severity == Severity::Blocker)
        .count();
    let _ = writeln!(out, "### Findings for this hop ({blockers} blocker(s))\n");
    findings_table(out, &findings);

    let mut step = 0;
    let mut heading = |out: &mut String, title: &str| {
        step += 1;
        let _ = writeln!(out, "### {step}. {title}\n");
    };

    heading(out, "Check the current version");
    code_block(
        out,
        "bash",
        &[
            "kubectl version".into(),
            format!("aws eks describe-cluster --name {cluster} --query cluster.version"),
        ],
    );
    let _ = writeln!(out, "Expect `\"{from}\"`.\n");

    heading(out, "Review add-on compatibility");
    let lines: Vec<String> = EKS_ADDONS
        .iter()
        .map(|a| {
            format!("aws eks describe-addon-versions --kubernetes-version {to} --addon-name {a}")
        })
        .collect();
    code_block(out, "bash", &lines);

    // Components whose compatibility findings land on this hop are upgraded before it.
    let components: Vec<&HelmReleaseFacts> = facts
        .helm_releases
        .iter()
        .filter(|r| {
            findings.iter().any(|f| {
                (f.code.starts_with("COMPAT") || f.code == "HELM001")
                    && f.subject.as_ref().is_some_and(|s| {
                        s.kind == "HelmRelease"
                            && s.name == r.name
                            && s.namespace.as_deref() == Some(&r.namespace)
                    })
            })
        })
        .collect();
    if !components.is_empty() {
        heading(out, &format!("Upgrade components that do not support {to}"));
        for release in components {
            let _ = writeln!(
                out,
                "**{}** (`{}` in `{}`), chart {} {}:\n",
                release.chart,
                release.name,
                release.namespace,
                release.chart,
                release.chart_version
            );
            if let Some((_, backups)) = COMPONENT_BACKUPS.iter().find(|(c, _)| *c == release.chart)
            {
                let lines: Vec<String> = backups.iter().map(|b| (*b).to_owned()).collect();
                code_block(out, "bash", &lines);
            }
            code_block(out, "bash", &helm_upgrade(release));
            let _ = writeln!(
                out,
                "Rollback: `helm rollback {} -n {}`\n",
                release.name, release.namespace
            );
        }
    }

    heading(out, "Update the Terraform variable");
    code_block(
        out,
        "hcl",
        &[
            format!("# {tf_dir}/terraform.tfvars"),
            format!("cluster_version = \"{to}\""),
        ],
    );

    heading(out, "Plan and apply");
    code_block(
        out,
        "bash",
        &[
            format!("cd {tf_dir}"),
            "terraform plan -out=upgrade.tfplan".into(),
            "terraform apply upgrade.tfplan".into(),
        ],
    );
    let _ = writeln!(
        out,
        "Before applying, the plan must change only the cluster version {from} → {to} and must not replace the cluster, node groups or add-ons (checks TF001–TF003).\n"
    );

    heading(out, "Update the EKS add-ons");
    let rows: Vec<_> = EKS_ADDONS
        .iter()
        .filter_map(|a| data.addon_version(a, to))
        .collect();
    let lines: Vec<String> = rows
        .iter()
        .map(|row| {
            format!(
                "aws eks update-addon --cluster-name {cluster} --addon-name {} --addon-version {} --resolve-conflicts PRESERVE",
                row.addon,
                row.default_version.as_deref().unwrap_or(&row.version)
            )
        })
        .collect();
    let checked = rows.iter().map(|r| &r.checked).max();
    if lines.is_empty() {
        let _ = writeln!(
            out,
            "The embedded data has no add-on versions for {to}; take them from `describe-addon-versions` above.\n"
        );
    } else {
        let _ = writeln!(
            out,
            "Versions are the default where the data has it, else the newest documented for {to} (checked {}); prefer what `describe-addon-versions` lists as the default.\n",
            checked.map(ToString::to_string).unwrap_or_default()
        );
        code_block(out, "bash", &lines);
    }

    heading(out, "Upgrade node groups");
    let mut managed: Vec<&str> = facts
        .nodes
        .iter()
        .filter(|n| n.provisioner == NodeProvisioner::ManagedNodeGroup)
        .filter_map(|n| n.group.as_deref())
        .collect();
    managed.sort_unstable();
    managed.dedup();
    out.push_str("EKS does not upgrade managed node groups with the control plane. The apply above updates them when their version follows `cluster_version`; otherwise update each one:\n\n");
    let mut lines: Vec<String> = managed
        .iter()
        .map(|g| format!("aws eks update-nodegroup-version --cluster-name {cluster} --nodegroup-name {g} --kubernetes-version {to}"))
        .collect();
    lines.push("# Monitor node replacement".into());
    lines.push("kubectl get nodes -w".into());
    code_block(out, "bash", &lines);
    let self_managed: Vec<&str> = facts
        .nodes
        .iter()
        .filter(|n| n.provisioner == NodeProvisioner::SelfManaged)
        .map(|n| n.name.as_str())
        .collect();
    for node in self_managed {
        let _ = writeln!(out, "Self-managed node `{node}`:\n");
        code_block(
            out,
            "bash",
            &[
                format!("kubectl cordon {node}"),
                format!(
                    "kubectl drain {node} \\\n  --ignore-daemonsets \\\n  --delete-emptydir-data \\\n  --force \\\n  --grace-period=300 \\\n  --timeout=5m"
                ),
                format!("kubectl get pods --field-selector=spec.nodeName={node}"),
                format!("# Replace the node with a {to} AMI, then:"),
                format!("kubectl get node {node} -o wide"),
                format!("kubectl uncordon {node}"),
            ],
        );
    }
    if facts
        .nodes
        .iter()
        .any(|n| n.provisioner == NodeProvisioner::Karpenter)
    {
        let _ = writeln!(
            out,
            "Karpenter nodes: point the EC2NodeClass AMI selector at {to} AMIs; drift replaces the nodes within the NodePool disruption budgets (pods annotated `karpenter.sh/do-not-disrupt` hold their nodes back).\n"
        );
    }

    heading(out, "Verify cluster health");
    code_block(
        out,
        "bash",
        &[
            "kubectl get nodes".into(),
            "kubectl get pods -A | grep -v Running".into(),
        ],
    );
    let _ = writeln!(
        out,
        "Every node must report kubelet {to} before the next hop.\n"
    );
    out.push_str("### Rollback\n\nWithin 7 days of the upgrade, EKS rolls the control plane back one minor (`aws eks update-cluster-version --kubernetes-version <previous>`, update type `VersionRollback`): move managed node groups back first (`aws eks update-nodegroup-version`), and self-managed nodes and add-ons yourself, since EKS does not; rollback-readiness insights can refuse it. `upgrade-rollback --run <id>` does this for a hop run by `upgrade-eks`. After the window, or for a cluster created at that version or upgraded by EKS itself: create a new cluster with the previous version, restore workloads from backup, and move DNS/routing to it. Helm releases roll back with `helm rollback <release> -n <namespace>`.\n\n");
}

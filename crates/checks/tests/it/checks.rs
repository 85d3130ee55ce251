//! Every check at its boundaries: the last value that passes and the first that fires.

use upgrade_checks::checks::{Finding, Report, Severity, run};
use upgrade_checks::config::Config;
use upgrade_checks::data::Data;
use upgrade_checks::facts::Facts;

/// Runs the checks on a cluster at `server` (an EKS-style version) with extra facts sections.
fn check_with(server: &str, target: &str, extra: &str, config: &Config) -> Report {
    let yaml = format!("cluster: {{name: c, server_version: v{server}-eks-1}}\n{extra}");
    let facts = Facts::from_yaml(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    run(&facts, target.parse().unwrap(), config, Data::embedded()).unwrap()
}

fn check(server: &str, target: &str, extra: &str) -> Report {
    check_with(server, target, extra, &Config::default())
}

fn found<'a>(report: &'a Report, code: &str) -> Vec<&'a Finding> {
    report.findings.iter().filter(|f| f.code == code).collect()
}

fn fires(report: &Report, code: &str) -> bool {
    !found(report, code).is_empty()
}

fn not_run(report: &Report, code: &str) -> bool {
    report.not_run.iter().any(|n| n.code == code)
}

fn node(name: &str, kubelet: &str, extra: &str) -> String {
    format!("  - {{name: {name}, kubelet_version: v{kubelet}-eks-1{extra}}}\n")
}

#[test]
fn skew001_kubelet_window_now_and_after_the_first_hop() {
    // 1.30 server: kubelet 1.27 is 3 behind (ok now) and 4 behind after the 1.31 hop.
    let r = check(
        "1.30.2",
        "1.31",
        &format!("nodes:\n{}", node("n", "1.27.1", "")),
    );
    let f = found(&r, "SKEW001");
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].hop.unwrap().to_string(), "1.31");
    assert!(
        f[0].message.contains("would be 4 minor(s) older"),
        "{}",
        f[0].message
    );
    // 1.28 stays within three after the hop.
    let r = check(
        "1.30.2",
        "1.31",
        &format!("nodes:\n{}", node("n", "1.28.1", "")),
    );
    assert!(!fires(&r, "SKEW001"));
    // Newer than the server is a violation now.
    let r = check(
        "1.30.2",
        "1.31",
        &format!("nodes:\n{}", node("n", "1.31.0", "")),
    );
    let f = found(&r, "SKEW001");
    assert_eq!(f[0].hop, None);
    assert!(f[0].message.contains("newer than the API server"));
    // No nodes: the check says it did not run.
    assert!(not_run(&check("1.30.2", "1.31", ""), "SKEW001"));
}

#[test]
fn skew002_and_003_split_by_provisioner() {
    let nodes = format!(
        "nodes:\n{}{}{}",
        node(
            "a",
            "1.29.0",
            ", provisioner: managed-node-group, group: general"
        ),
        node(
            "b",
            "1.29.0",
            ", provisioner: managed-node-group, group: general"
        ),
        node("k", "1.29.0", ", provisioner: karpenter, group: default"),
    );
    let r = check("1.30.2", "1.31", &nodes);
    let managed = found(&r, "SKEW002");
    assert_eq!(managed.len(), 1, "grouped per node group");
    assert_eq!(
        managed[0].subject.as_ref().unwrap().to_string(),
        "NodeGroup general"
    );
    assert!(
        managed[0]
            .message
            .starts_with("2 managed node group node(s)")
    );
    let other = found(&r, "SKEW003");
    assert_eq!(
        other[0].subject.as_ref().unwrap().to_string(),
        "NodePool default"
    );
    // On the control plane's minor: nothing.
    let r = check(
        "1.30.2",
        "1.31",
        &format!("nodes:\n{}", node("a", "1.30.0", ", provisioner: fargate")),
    );
    assert!(!fires(&r, "SKEW002") && !fires(&r, "SKEW003"));
}

#[test]
fn skew004_kube_proxy_image() {
    let kp = |tag: &str| {
        format!(
            "kube_proxy: {{image: \"602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/kube-proxy:{tag}\"}}\n"
        )
    };
    assert!(!fires(
        &check("1.30.2", "1.31", &kp("v1.28.2-minimal-eksbuild.2")),
        "SKEW004"
    ));
    let r = check("1.30.2", "1.31", &kp("v1.27.2-minimal-eksbuild.2"));
    assert_eq!(found(&r, "SKEW004")[0].hop.unwrap().to_string(), "1.31");
    let r = check("1.30.2", "1.31", &kp("v1.31.0-eksbuild.1"));
    assert_eq!(found(&r, "SKEW004")[0].hop, None);
    let r = check("1.30.2", "1.31", &kp("latest"));
    assert!(found(&r, "SKEW004")[0].message.contains("not a version"));
    // Per node: kube-proxy within three minors of the kubelet beside it.
    let nodes = |proxy: &str| {
        format!(
            "nodes:\n{}",
            node("n", "1.30.0", &format!(", kube_proxy_version: v{proxy}"))
        )
    };
    assert!(!fires(
        &check("1.30.2", "1.31", &nodes("1.27.0")),
        "SKEW004"
    ));
    let r = check("1.30.2", "1.31", &nodes("1.26.0"));
    assert_eq!(
        found(&r, "SKEW004")[0].message,
        "kube-proxy 1.26.0 is 4 minor(s) older than (allowed: 3) the kubelet 1.30.0-eks-1 on the same node"
    );
}

#[test]
fn eks005_notes_for_every_minor_on_the_path() {
    let r = check("1.31.0", "1.33", "");
    let hops: Vec<String> = found(&r, "EKS005")
        .iter()
        .map(|f| f.hop.unwrap().to_string())
        .collect();
    assert_eq!(hops, ["1.32", "1.32", "1.32", "1.33", "1.33", "1.33"]);
    assert!(
        !fires(&check("1.30.0", "1.31", ""), "EKS005"),
        "no notes recorded for 1.31"
    );
}

#[test]
fn skew005_kubectl_within_one_minor_of_every_hop() {
    let run_with = |kubectl: &str| {
        let yaml = format!(
            "cluster: {{name: c, server_version: v1.30.2-eks-1, kubectl_version: v{kubectl}}}"
        );
        let facts = Facts::from_yaml(&yaml).unwrap();
        run(
            &facts,
            "1.32".parse().unwrap(),
            &Config::default(),
            Data::embedded(),
        )
        .unwrap()
    };
    assert!(
        !fires(&run_with("1.31.0"), "SKEW005"),
        "1.31 is within one of 1.30, 1.31, 1.32"
    );
    let f = run_with("1.32.0");
    assert!(found(&f, "SKEW005")[0].message.ends_with("at 1.30"));
    assert!(not_run(&check("1.30.2", "1.31", ""), "SKEW005"));
}

#[test]
fn ver001_target_beyond_the_data() {
    assert!(!fires(&check("1.35.0", "1.36", ""), "VER001"));
    let r = check("1.35.0", "1.37", "");
    let f = found(&r, "VER001");
    assert_eq!(f[0].severity, Severity::Warning);
    assert!(
        f[0].message.contains(
            "ends at 1.36 (checked 2026-12-02): Kubernetes 1.37 was released upstream on 2026-08-26 but is not on EKS yet"
        ),
        "{}",
        f[0].message
    );
    assert_eq!(r.exit_code(), 3, "beyond the data is never a silent pass");
}

#[test]
fn ver002_below_the_supported_range() {
    assert!(fires(&check("1.27.9", "1.28", ""), "VER002"));
    assert!(!fires(&check("1.28.9", "1.29", ""), "VER002"));
}

#[test]
fn eks001_support_calendar_boundaries() {
    let on = |day: &str, server: &str, target: &str| {
        let yaml =
            format!("cluster: {{name: c, server_version: v{server}-eks-1, observed_on: {day}}}");
        let facts = Facts::from_yaml(&yaml).unwrap();
        run(
            &facts,
            target.parse().unwrap(),
            &Config::default(),
            Data::embedded(),
        )
        .unwrap()
    };
    // 1.32 standard support ends 2026-03-23, extended 2027-03-23; 1.33 standard ends 2026-07-29.
    assert!(!fires(&on("2026-03-22", "1.32.1", "1.33"), "EKS001"));
    let r = on("2026-03-23", "1.32.1", "1.33");
    assert!(
        found(&r, "EKS001")[0]
            .message
            .contains("extended support since 2026-03-23")
    );
    let r = on("2027-03-23", "1.32.1", "1.33");
    let messages: Vec<&str> = found(&r, "EKS001")
        .iter()
        .map(|f| f.message.as_str())
        .collect();
    assert!(
        messages[0].contains("left EKS extended support on 2027-03-23"),
        "{messages:?}"
    );
    assert!(
        messages[1].contains("the target 1.33 is itself in EKS extended support"),
        "{messages:?}"
    );
    assert!(not_run(&check("1.32.1", "1.33", ""), "EKS001"));
}

#[test]
fn eks002_to_004_apply_from_their_minor() {
    let al2 = format!(
        "nodes:\n{}",
        node("n", "1.32.0", ", os_image: Amazon Linux 2")
    );
    assert!(not_run(&check("1.31.0", "1.32", &al2), "EKS002"));
    let r = check("1.32.0", "1.33", &al2);
    assert_eq!(found(&r, "EKS002")[0].hop.unwrap().to_string(), "1.33");
    let al2023 = format!(
        "nodes:\n{}",
        node("n", "1.32.0", ", os_image: Amazon Linux 2023.7.20250512")
    );
    assert!(!fires(&check("1.32.0", "1.33", &al2023), "EKS002"));

    let ipvs = "kube_proxy: {image: \"kube-proxy:v1.34.0\", mode: ipvs}\n";
    assert!(not_run(&check("1.33.0", "1.34", ipvs), "EKS003"));
    assert!(fires(&check("1.34.0", "1.35", ipvs), "EKS003"));
    let iptables = "kube_proxy: {image: \"kube-proxy:v1.34.0\", mode: iptables}\n";
    assert!(!fires(&check("1.34.0", "1.35", iptables), "EKS003"));

    let containerd = |v: &str| {
        format!(
            "nodes:\n{}",
            node(
                "n",
                "1.35.0",
                &format!(", container_runtime: \"containerd://{v}\"")
            )
        )
    };
    assert!(not_run(
        &check("1.34.0", "1.35", &containerd("1.7.27")),
        "EKS004"
    ));
    assert!(fires(
        &check("1.35.0", "1.36", &containerd("1.7.27")),
        "EKS004"
    ));
    assert!(!fires(
        &check("1.35.0", "1.36", &containerd("2.1.4")),
        "EKS004"
    ));
}

fn release(name: &str, extra: &str, manifest: &str) -> String {
    let indented: String = manifest.lines().map(|l| format!("      {l}\n")).collect();
    format!(
        "  - name: {name}\n    namespace: ns\n    chart: {name}\n    chart_version: 1.0.0\n    status: deployed\n{extra}    manifest: |\n{indented}"
    )
}

#[test]
fn api001_and_002_removal_and_deprecation_boundaries() {
    let fs = release(
        "flow",
        "",
        "apiVersion: flowcontrol.apiserver.k8s.io/v1beta3\nkind: FlowSchema\nmetadata: {name: fs}",
    );
    let releases = format!("helm_releases:\n{fs}");
    // Removed in 1.32: a 1.31 target only sees the deprecation.
    let r = check("1.30.0", "1.31", &releases);
    assert!(!fires(&r, "API001"));
    assert!(
        found(&r, "API002")[0]
            .message
            .contains("deprecated since 1.29 and removed in 1.32")
    );
    // A 1.32 target is blocked at the 1.32 hop, and the replacement is served now.
    let r = check("1.30.0", "1.32", &releases);
    let f = found(&r, "API001");
    assert_eq!(f[0].hop.unwrap().to_string(), "1.32");
    assert!(f[0].message.contains("use flowcontrol.apiserver.k8s.io/v1 (served since 1.29, so you can migrate now on 1.30)"), "{}", f[0].message);
    assert!(!fires(&r, "API002"));
}

/// DRA's resource.k8s.io/v1beta1 (enabled on EKS since 1.33) is served until 1.37 and removed
/// in 1.38, with resource.k8s.io/v1 as its replacement; v1beta2 goes in 1.39.
#[test]
fn dra_beta_apis_are_removed_in_1_38_and_1_39() {
    let claims = release(
        "gpu",
        "",
        "apiVersion: resource.k8s.io/v1beta1\nkind: ResourceClaim\nmetadata: {name: a}\n---\napiVersion: resource.k8s.io/v1beta2\nkind: DeviceClass\nmetadata: {name: b}",
    );
    let releases = format!("helm_releases:\n{claims}");
    for target in ["1.36", "1.37"] {
        let r = check("1.35.0", target, &releases);
        assert!(!fires(&r, "API001"), "no removal by {target}");
        assert!(
            found(&r, "API002").iter().any(|f| f
                .message
                .contains("ResourceClaim `a` (resource.k8s.io/v1beta1) is deprecated since 1.35 and removed in 1.38; use resource.k8s.io/v1")),
            "{:?}",
            found(&r, "API002")
        );
    }
    let r = check("1.35.0", "1.38", &releases);
    let f = found(&r, "API001");
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].hop.unwrap().to_string(), "1.38");
    assert!(
        f[0].message
            .contains("use resource.k8s.io/v1 (served since 1.34, so you can migrate now on 1.35)"),
        "{}",
        f[0].message
    );
    assert!(
        found(&r, "API002").iter().any(|f| f.message.contains(
            "DeviceClass `b` (resource.k8s.io/v1beta2) is deprecated since 1.36 and removed in 1.39"
        )),
        "{:?}",
        found(&r, "API002")
    );
}

#[test]
fn api001_follows_removed_replacements_and_says_when_the_replacement_arrives() {
    let old = release(
        "old",
        "",
        "apiVersion: flowcontrol.apiserver.k8s.io/v1beta1\nkind: PriorityLevelConfiguration\nmetadata: {name: p}",
    );
    let r = check("1.28.0", "1.32", &format!("helm_releases:\n{old}"));
    let f = found(&r, "API001");
    assert!(
        f[0].message
            .contains("use flowcontrol.apiserver.k8s.io/v1 "),
        "{}",
        f[0].message
    );
    assert_eq!(f[0].hop, None, "already removed: fix now");

    let vap = release(
        "vap",
        "",
        "apiVersion: admissionregistration.k8s.io/v1alpha1\nkind: ValidatingAdmissionPolicy\nmetadata: {name: v}",
    );
    let r = check("1.29.0", "1.33", &format!("helm_releases:\n{vap}"));
    let f = found(&r, "API001");
    assert!(
        f[0].message
            .contains("served from 1.30 only, not by 1.29: migrate during the 1.30 hop"),
        "{}",
        f[0].message
    );
    // Unknown kinds and current APIs are never reported.
    let fine = release(
        "fine",
        "",
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: p}",
    );
    assert!(!fires(
        &check("1.29.0", "1.33", &format!("helm_releases:\n{fine}")),
        "API001"
    ));
}

#[test]
fn api003_broken_manifest_is_reported_and_earlier_documents_still_scanned() {
    let broken = release(
        "broken",
        "",
        "apiVersion: batch/v1beta1\nkind: CronJob\nmetadata: {name: c}\n---\nkind: [oops",
    );
    let r = check("1.29.0", "1.30", &format!("helm_releases:\n{broken}"));
    assert!(found(&r, "API003")[0].message.contains("document 2"));
    assert!(
        fires(&r, "API001"),
        "the CronJob before the broken document is still checked"
    );
}

#[test]
fn helm001_constraint_against_every_hop() {
    let constrained = |c: &str| {
        format!(
            "helm_releases:\n{}",
            release("app", &format!("    kube_version: \"{c}\"\n"), "{}")
        )
    };
    let r = check("1.30.0", "1.32", &constrained(">=1.25.0-0 <1.32.0-0"));
    let f = found(&r, "HELM001");
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].hop.unwrap().to_string(), "1.32");
    assert!(!fires(
        &check("1.30.0", "1.31", &constrained(">=1.25.0-0 <1.32.0-0")),
        "HELM001"
    ));
    // One `-0` per AND group is enough for Helm 4, not for Helm 3: with the Helm major
    // unknown, the first hop either refuses is reported, and which Helm refuses it.
    let mixed = constrained(">=1.25.0-0 <1.32.0");
    let r = check("1.30.0", "1.32", &mixed);
    let f = found(&r, "HELM001");
    assert_eq!(f[0].hop.unwrap().to_string(), "1.31");
    assert!(f[0].message.contains("under Helm 3"), "{}", f[0].message);
    assert!(
        f[0].message.contains("Helm 4 accepts it"),
        "{}",
        f[0].message
    );
    // With Helm 4 named: `1.32.0-eks-1` sorts below `1.32.0`, but every later patch does
    // not, so 1.32 is still excluded.
    let r = check("1.30.0", "1.32", &format!("helm_major: 4\n{mixed}"));
    let f = found(&r, "HELM001");
    assert_eq!(f[0].hop.unwrap().to_string(), "1.32");
    assert!(f[0].message.contains("`v1.32.1-eks-1`"), "{}", f[0].message);
    assert!(!f[0].message.contains("under Helm"), "{}", f[0].message);
    // Without `-0`, EKS's pre-release-style version never matches; the reason says why.
    let r = check("1.30.0", "1.31", &constrained(">=1.25.0"));
    assert!(
        found(&r, "HELM001")[0]
            .message
            .contains("should write every bound with a -0 suffix"),
        "{}",
        found(&r, "HELM001")[0].message
    );
    // A plain (non-EKS) server version matches it.
    let facts = Facts::from_yaml(&format!(
        "cluster: {{name: c, server_version: v1.30.0}}\n{}",
        constrained(">=1.25.0")
    ))
    .unwrap();
    let r = run(
        &facts,
        "1.31".parse().unwrap(),
        &Config::default(),
        Data::embedded(),
    )
    .unwrap();
    assert!(!fires(&r, "HELM001"));
    assert!(fires(
        &check("1.30.0", "1.31", &constrained(">= 1.2 <")),
        "HELM002"
    ));
}

#[test]
fn helm003_release_states() {
    for (status, blocked) in [
        ("deployed", false),
        ("superseded", false),
        ("pending-install", true),
        ("pending-rollback", true),
        ("failed", true),
    ] {
        let yaml = format!(
            "helm_releases:\n{}",
            release("app", "", "{}").replace("status: deployed", &format!("status: {status}"))
        );
        assert_eq!(
            fires(&check("1.30.0", "1.31", &yaml), "HELM003"),
            blocked,
            "{status}"
        );
    }
}

#[test]
fn compat_matrices() {
    let component = |name: &str, version: &str| {
        format!("components:\n  - {{component: {name}, version: \"{version}\"}}\n")
    };
    // Karpenter 1.0.x supports up to 1.30, 1.0.5+ up to 1.31.
    let r = check("1.30.0", "1.31", &component("karpenter", "1.0.4"));
    let f = found(&r, "COMPAT001");
    assert_eq!(f[0].hop.unwrap().to_string(), "1.31");
    assert!(
        f[0].message
            .contains("karpenter 1.0.5 is the oldest line that covers 1.31"),
        "{}",
        f[0].message
    );
    assert!(!fires(
        &check("1.30.0", "1.31", &component("karpenter", "1.0.5")),
        "COMPAT001"
    ));
    // Argo CD 3.0 is tested with 1.29–1.32.
    assert!(!fires(
        &check("1.31.0", "1.32", &component("argo-cd", "v3.0.12")),
        "COMPAT002"
    ));
    assert!(fires(
        &check("1.32.0", "1.33", &component("argo-cd", "v3.0.12")),
        "COMPAT002"
    ));
    // Newer than the data: unknown, not fine.
    let r = check("1.33.0", "1.34", &component("karpenter", "1.15.0"));
    assert!(
        found(&r, "COMPAT003")[0]
            .message
            .contains("the data ends at karpenter 1.14.x")
    );
    // Helm releases of known charts are picked up by their app version.
    let helm = format!(
        "helm_releases:\n{}",
        release("karpenter", "    app_version: 0.37.0\n", "{}")
    );
    assert!(fires(&check("1.30.0", "1.31", &helm), "COMPAT001"));
}

#[test]
fn addon_checks() {
    let addons = "addons:\n  - {name: kube-proxy, version: v1.29.15-eksbuild.16}\n  - {name: coredns, version: v1.11.4-eksbuild.2, health_issues: [degraded]}\n  - {name: vpc-cni, version: v1.20.1-eksbuild.3}\n";
    let r = check("1.30.0", "1.31", addons);
    let behind: Vec<String> = found(&r, "ADDON002")
        .iter()
        .map(|f| f.subject.as_ref().unwrap().name.clone())
        .collect();
    assert_eq!(
        behind,
        ["kube-proxy"],
        "coredns 1.11 is the 1.30 line; vpc-cni is current"
    );
    assert_eq!(found(&r, "ADDON001")[0].message, "degraded");
    assert!(not_run(&check("1.30.0", "1.31", ""), "ADDON002"));
}

fn workload(kind: &str, name: &str, replicas: i32, extra: &str) -> String {
    format!(
        "  - {{kind: {kind}, namespace: ns, name: {name}, replicas: {replicas}, pod_labels: {{app: {name}}}, containers: [{{name: c, readiness_probe: true}}]{extra}}}\n"
    )
}

#[test]
fn pdb_checks() {
    let pdb = |allowed: i32, expected: i32| {
        format!(
            "pdbs:\n  - {{namespace: ns, name: p, selector: {{match_labels: {{app: web}}}}, min_available: 2, disruptions_allowed: {allowed}, expected_pods: {expected}}}\n"
        )
    };
    assert!(fires(&check("1.30.0", "1.31", &pdb(0, 2)), "PDB001"));
    assert!(!fires(&check("1.30.0", "1.31", &pdb(1, 2)), "PDB001"));
    assert!(
        !fires(&check("1.30.0", "1.31", &pdb(0, 0)), "PDB001"),
        "covers no pods"
    );

    let web = format!(
        "workloads:\n{}",
        workload("Deployment", "web", 2, ", topology_spread: true")
    );
    let matching = "pdbs:\n  - {namespace: ns, name: p, selector: {match_expressions: [{key: app, operator: In, values: [web]}]}, max_unavailable: 1, disruptions_allowed: 1}\n";
    assert!(!fires(
        &check("1.30.0", "1.31", &format!("{web}{matching}")),
        "PDB002"
    ));
    let other_ns = matching.replace("namespace: ns", "namespace: other");
    assert!(fires(
        &check("1.30.0", "1.31", &format!("{web}{other_ns}")),
        "PDB002"
    ));
    let single = format!("workloads:\n{}", workload("Deployment", "web", 1, ""));
    assert!(!fires(&check("1.30.0", "1.31", &single), "PDB002"));
}

#[test]
fn workload_checks_and_the_replica_threshold() {
    let w = |replicas| {
        format!(
            "workloads:\n{}",
            workload("Deployment", "web", replicas, "")
        )
    };
    assert!(fires(&check("1.30.0", "1.31", &w(1)), "WL001"));
    assert!(!fires(&check("1.30.0", "1.31", &w(2)), "WL001"));
    assert!(
        !fires(&check("1.30.0", "1.31", &w(0)), "WL001"),
        "scaled to zero on purpose"
    );
    let strict = Config::from_yaml("thresholds: {min_replicas: 3}").unwrap();
    assert!(fires(
        &check_with("1.30.0", "1.31", &w(2), &strict),
        "WL001"
    ));

    assert!(fires(&check("1.30.0", "1.31", &w(2)), "WL003"));
    let spread = format!(
        "workloads:\n{}",
        workload("Deployment", "web", 2, ", pod_anti_affinity: true")
    );
    assert!(!fires(&check("1.30.0", "1.31", &spread), "WL003"));

    let no_probe = "workloads:\n  - {kind: StatefulSet, namespace: ns, name: db, replicas: 1, containers: [{name: db}]}\n";
    assert!(fires(&check("1.30.0", "1.31", no_probe), "WL002"));
    let daemon =
        "workloads:\n  - {kind: DaemonSet, namespace: ns, name: agent, containers: [{name: a}]}\n";
    assert!(
        !fires(&check("1.30.0", "1.31", daemon), "WL002"),
        "DaemonSets are not drained"
    );
}

fn pod(extra: &str) -> String {
    format!(
        "pods:\n  - {{namespace: ns, name: p, phase: Running, controller: {{kind: Job, name: j}}{extra}}}\n"
    )
}

/// gitRepo volumes block a path through 1.36 (one finding per controller); externalIPs warn.
#[test]
fn wl004_git_repo_and_svc001_external_ips_from_1_36() {
    let facts = "pods:
  - {namespace: ns, name: web-1, phase: Running, controller: {kind: ReplicaSet, name: web-5d}, git_repo_volumes: [site]}
  - {namespace: ns, name: web-2, phase: Running, controller: {kind: ReplicaSet, name: web-5d}, git_repo_volumes: [site]}
  - {namespace: ns, name: clean, phase: Running, controller: {kind: ReplicaSet, name: api-1}}
services:
  - {namespace: ns, name: legacy, external_ips: [203.0.113.7]}
";
    let r = check("1.34.0", "1.36", facts);
    let f = found(&r, "WL004");
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].severity, Severity::Blocker);
    assert_eq!(f[0].hop.unwrap().to_string(), "1.36");
    assert!(
        f[0].message.contains("gitRepo volume(s) site (pod web-1)"),
        "{}",
        f[0].message
    );
    let s = found(&r, "SVC001");
    assert!(
        s[0].message.contains("spec.externalIPs (203.0.113.7)"),
        "{}",
        s[0].message
    );
    assert_eq!(r.exit_code(), 4);
    // A path that stops before 1.36 does not run them.
    let r = check("1.34.0", "1.35", facts);
    assert!(not_run(&r, "WL004") && not_run(&r, "SVC001"));
}

#[test]
fn pod_checks() {
    assert!(fires(
        &check(
            "1.30.0",
            "1.31",
            "pods:\n  - {namespace: ns, name: p, phase: Running}\n"
        ),
        "POD001"
    ));
    assert!(!fires(
        &check(
            "1.30.0",
            "1.31",
            "pods:\n  - {namespace: ns, name: p, phase: Succeeded}\n"
        ),
        "POD001"
    ));
    assert!(!fires(&check("1.30.0", "1.31", &pod("")), "POD001"));

    assert!(fires(
        &check(
            "1.30.0",
            "1.31",
            &pod(", annotations: {karpenter.sh/do-not-disrupt: \"true\"}")
        ),
        "POD002"
    ));
    assert!(!fires(
        &check(
            "1.30.0",
            "1.31",
            &pod(", annotations: {karpenter.sh/do-not-disrupt: \"false\"}")
        ),
        "POD002"
    ));

    assert!(fires(
        &check("1.30.0", "1.31", &pod(", local_storage: true")),
        "POD003"
    ));
    let daemon = "pods:\n  - {namespace: ns, name: p, phase: Running, local_storage: true, controller: {kind: DaemonSet, name: d}}\n";
    assert!(!fires(&check("1.30.0", "1.31", daemon), "POD003"));

    // 15 minutes is the limit: 899 s passes, 900 s fires.
    assert!(!fires(
        &check("1.30.0", "1.31", &pod(", running_seconds: 899")),
        "POD004"
    ));
    assert!(fires(
        &check("1.30.0", "1.31", &pod(", running_seconds: 900")),
        "POD004"
    ));
    assert!(fires(
        &check(
            "1.30.0",
            "1.31",
            &pod(", termination_grace_period_seconds: 901")
        ),
        "POD004"
    ));
    let argo = "pods:\n  - {namespace: ns, name: p, phase: Running, controller: {kind: ReplicaSet, name: r}, labels: {workflows.argoproj.io/workflow: w}, running_seconds: 3600}\n";
    assert!(fires(&check("1.30.0", "1.31", argo), "POD004"));
    let service = "pods:\n  - {namespace: ns, name: p, phase: Running, controller: {kind: ReplicaSet, name: r}, running_seconds: 99999}\n";
    assert!(
        !fires(&check("1.30.0", "1.31", service), "POD004"),
        "long-running services are not batch"
    );

    let r = check(
        "1.30.0",
        "1.31",
        "pods:\n  - {namespace: ns, name: p, phase: Pending, controller: {kind: Job, name: j}}\n",
    );
    assert_eq!(found(&r, "POD005")[0].severity, Severity::Info);
}

#[test]
fn node_pvc_certificate_and_event_checks() {
    let nodes = format!(
        "nodes:\n{}{}",
        node("sick", "1.30.0", ", ready: false"),
        node(
            "full",
            "1.30.0",
            ", pressure: [DiskPressure], unschedulable: true"
        )
    );
    let r = check("1.30.0", "1.31", &nodes);
    assert_eq!(found(&r, "NODE001").len(), 2);
    assert_eq!(found(&r, "NODE002").len(), 1);

    assert!(fires(
        &check(
            "1.30.0",
            "1.31",
            "pvcs:\n  - {namespace: ns, name: c, phase: Lost}\n"
        ),
        "PVC001"
    ));
    assert!(!fires(
        &check(
            "1.30.0",
            "1.31",
            "pvcs:\n  - {namespace: ns, name: c, phase: Bound}\n"
        ),
        "PVC001"
    ));

    let cert = |not_after: &str| {
        let yaml = format!(
            "cluster: {{name: c, server_version: v1.30.0-eks-1, observed_on: 2026-01-01}}\ncertificates:\n  - {{namespace: ns, name: t, ready: true, not_after: {not_after}}}\n"
        );
        run(
            &Facts::from_yaml(&yaml).unwrap(),
            "1.31".parse().unwrap(),
            &Config::default(),
            Data::embedded(),
        )
        .unwrap()
    };
    assert!(
        fires(&cert("2026-01-15"), "CERT001"),
        "14 days is within the threshold"
    );
    assert!(!fires(&cert("2026-01-16"), "CERT001"));
    assert!(fires(
        &check(
            "1.30.0",
            "1.31",
            "certificates:\n  - {namespace: ns, name: t, ready: false}\n"
        ),
        "CERT001"
    ));

    let events = |count: u32| {
        format!(
            "warning_events:\n  - {{namespace: ns, object: Pod/p, reason: BackOff, count: {count}}}\n"
        )
    };
    assert!(fires(&check("1.30.0", "1.31", &events(5)), "EVT001"));
    assert!(!fires(&check("1.30.0", "1.31", &events(4)), "EVT001"));
}

#[test]
fn terraform_checks() {
    let tf = |change: &str, actions: &str, kind: &str| {
        format!(
            "terraform:\n  cluster_version_change: {change}\n  changes:\n    - {{address: a, resource_type: {kind}, actions: {actions}}}\n"
        )
    };
    let r = check(
        "1.30.0",
        "1.32",
        &tf(
            "{from: \"1.30\", to: \"1.31\"}",
            "[update]",
            "aws_eks_cluster",
        ),
    );
    assert!(!fires(&r, "TF001") && !fires(&r, "TF002") && !fires(&r, "TF003"));
    let r = check(
        "1.30.0",
        "1.32",
        &tf(
            "{from: \"1.30\", to: \"1.32\"}",
            "[delete, create]",
            "aws_eks_cluster",
        ),
    );
    assert!(fires(&r, "TF001") && fires(&r, "TF003"));
    assert!(found(&r, "TF001")[0].message.contains("replaces"));
    let r = check(
        "1.30.0",
        "1.31",
        &tf(
            "{from: \"1.30\", to: \"1.31\"}",
            "[delete]",
            "aws_eks_addon",
        ),
    );
    assert!(found(&r, "TF002")[0].message.contains("destroys"));
    assert!(not_run(&check("1.30.0", "1.31", ""), "TF001"));
}

#[test]
fn configuration_overrides_severity_and_ignores_by_resource() {
    let w = format!(
        "workloads:\n{}{}",
        workload("Deployment", "web", 1, ", topology_spread: true"),
        workload("Deployment", "api", 1, ", topology_spread: true")
    );
    assert_eq!(check("1.30.0", "1.31", &w).exit_code(), 3);
    let config = Config::from_yaml("severity: {WL001: blocker}\nignore:\n  - {check: WL001, resources: [ns/api], reason: leader elected}\n").unwrap();
    let r = check_with("1.30.0", "1.31", &w, &config);
    assert_eq!(found(&r, "WL001").len(), 1);
    assert_eq!(found(&r, "WL001")[0].severity, Severity::Blocker);
    assert_eq!(r.exit_code(), 4);
    assert_eq!(r.ignored.len(), 1);
    assert_eq!(r.ignored[0].reason.as_deref(), Some("leader elected"));
    let info = Config::from_yaml("severity: {WL001: info}").unwrap();
    assert_eq!(check_with("1.30.0", "1.31", &w, &info).exit_code(), 0);
}

#[test]
fn planner_errors_reach_the_caller() {
    let facts = Facts::from_yaml("cluster: {name: c, server_version: v1.31.0-eks-1}").unwrap();
    let err = run(
        &facts,
        "1.31".parse().unwrap(),
        &Config::default(),
        Data::embedded(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("not newer than the current version 1.31")
    );
}

#[test]
fn drain001_names_every_pod_that_would_stop_a_drain_per_node() {
    let facts = r#"pdbs:
  - {namespace: shop, name: web-pdb, selector: {match_labels: {app: web}}, min_available: 2, disruptions_allowed: 0}
pods:
  - {namespace: shop, name: web-1, node: a, phase: Running, labels: {app: web}, controller: {kind: ReplicaSet, name: web}}
  - {namespace: shop, name: api-1, node: a, phase: Running, labels: {app: api}, controller: {kind: ReplicaSet, name: api}}
  - {namespace: shop, name: debug, node: a, phase: Running}
  - {namespace: shop, name: cache, node: b, phase: Running, local_storage: true, controller: {kind: ReplicaSet, name: cache}}
  - {namespace: argo, name: train, node: b, phase: Running, controller: {kind: Workflow, name: t}, annotations: {karpenter.sh/do-not-disrupt: "true"}}
  - {namespace: kube-system, name: proxy, node: c, phase: Running, controller: {kind: DaemonSet, name: kube-proxy}}
  - {namespace: kube-system, name: etcd, node: c, phase: Running, annotations: {kubernetes.io/config.mirror: x}}
  - {namespace: shop, name: done, node: c, phase: Succeeded}
  - {namespace: shop, name: web-2, node: c, phase: Pending, labels: {app: web}, controller: {kind: ReplicaSet, name: web}}
"#;
    let r = check("1.30.0", "1.31", facts);
    let f = found(&r, "DRAIN001");
    let by_node: Vec<(String, &str)> = f
        .iter()
        .map(|f| (f.subject.as_ref().unwrap().key(), f.message.as_str()))
        .collect();
    assert_eq!(
        by_node,
        [
            (
                "a".to_string(),
                "a drain would stop on 2 pods: shop/web-1 (budget shop/web-pdb allows 0 disruptions), shop/debug (no controller)"
            ),
            (
                "b".to_string(),
                "a drain would stop on 2 pods: shop/cache (emptyDir data), argo/train (do-not-disrupt)"
            ),
        ],
        "node c has only pods a drain leaves or evicts regardless"
    );
}

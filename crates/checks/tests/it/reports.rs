//! Snapshots of every report format for a healthy and an unhealthy cluster
//! (`fixtures/facts/*.yaml`), so a change in wording or layout is a reviewed diff.

use std::path::PathBuf;

use upgrade_checks::checks::{Report, run};
use upgrade_checks::config::Config;
use upgrade_checks::data::Data;
use upgrade_checks::facts::Facts;
use upgrade_checks::report;

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/facts")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn healthy() -> (Facts, Report) {
    let facts = Facts::from_yaml(&fixture("healthy.yaml")).unwrap();
    let report = run(
        &facts,
        "1.33".parse().unwrap(),
        &Config::default(),
        Data::embedded(),
    )
    .unwrap();
    (facts, report)
}

fn unhealthy() -> (Facts, Report) {
    let facts = Facts::from_yaml(&fixture("unhealthy.yaml")).unwrap();
    let config = Config::from_yaml(&fixture("checks-config.yaml")).unwrap();
    let report = run(&facts, "1.33".parse().unwrap(), &config, Data::embedded()).unwrap();
    (facts, report)
}

#[test]
fn healthy_cluster_passes() {
    let (_, report) = healthy();
    assert_eq!(
        report
            .findings
            .iter()
            .filter(|f| f.severity > upgrade_checks::checks::Severity::Info)
            .count(),
        0,
        "{}",
        report::text(&report)
    );
    assert_eq!(report.exit_code(), 0);
}

#[test]
fn unhealthy_cluster_is_blocked() {
    let (_, report) = unhealthy();
    assert_eq!(report.exit_code(), 4);
    // Every registered check either found something, passed, or says why it did not run.
    let codes: std::collections::BTreeSet<&str> = report.findings.iter().map(|f| f.code).collect();
    for expected in [
        "EKS001",
        "EKS002",
        "SKEW001",
        "SKEW002",
        "SKEW003",
        "SKEW004",
        "SKEW005",
        "NODE001",
        "NODE002",
        "API001",
        "API003",
        "HELM001",
        "HELM002",
        "HELM003",
        "COMPAT001",
        "COMPAT002",
        "COMPAT003",
        "ADDON001",
        "ADDON002",
        "PDB001",
        "PDB002",
        "WL001",
        "WL002",
        "WL003",
        "POD002",
        "POD003",
        "POD004",
        "POD005",
        "PVC001",
        "CERT001",
        "EVT001",
        "TF001",
        "TF002",
        "TF003",
    ] {
        assert!(
            codes.contains(expected),
            "{expected} missing from {codes:?}"
        );
    }
}

#[test]
fn facts_round_trip_through_yaml_and_json() {
    for name in ["healthy.yaml", "unhealthy.yaml"] {
        let facts = Facts::from_yaml(&fixture(name)).unwrap();
        let yaml = serde_norway::to_string(&facts).unwrap();
        assert_eq!(Facts::from_yaml(&yaml).unwrap(), facts, "{name} via YAML");
        let json = serde_json::to_string(&facts).unwrap();
        assert_eq!(Facts::from_yaml(&json).unwrap(), facts, "{name} via JSON");
    }
}

#[test]
fn healthy_text() {
    insta::assert_snapshot!(report::text(&healthy().1));
}

#[test]
fn healthy_json() {
    insta::assert_snapshot!(report::json(&healthy().1));
}

#[test]
fn healthy_playbook() {
    let (facts, report) = healthy();
    insta::assert_snapshot!(report::playbook(&report, &facts));
}

#[test]
fn healthy_junit() {
    insta::assert_snapshot!(report::junit(&healthy().1));
}

#[test]
fn unhealthy_text() {
    insta::assert_snapshot!(report::text(&unhealthy().1));
}

#[test]
fn unhealthy_json() {
    insta::assert_snapshot!(report::json(&unhealthy().1));
}

#[test]
fn unhealthy_playbook() {
    let (facts, report) = unhealthy();
    insta::assert_snapshot!(report::playbook(&report, &facts));
}

#[test]
fn unhealthy_junit() {
    insta::assert_snapshot!(report::junit(&unhealthy().1));
}

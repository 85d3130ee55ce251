//! How bad input is reported: each error names the problem and the fix.

use upgrade_checks::config::Config;
use upgrade_checks::data::Data;
use upgrade_checks::facts::Facts;
use upgrade_checks::plan::{Hop, UpgradePlan};
use upgrade_core::constraint::Constraint;
use upgrade_core::version::KubeMinor;

fn m(s: &str) -> KubeMinor {
    s.parse().unwrap()
}

#[test]
fn plan_errors() {
    insta::assert_snapshot!(Hop::new(m("1.29"), m("1.31")).unwrap_err(), @"a single upgrade from 1.29 to 1.31 skips 1 minor version(s); EKS and Kubernetes upgrade one minor at a time (1.29 → 1.30 first)");
    insta::assert_snapshot!(UpgradePlan::new(m("1.31"), m("1.30"), Data::embedded()).unwrap_err(), @"the target 1.30 is not newer than the current version 1.31; nothing to upgrade (going back one minor is EKS's version rollback: upgrade-rollback of the hop's run, within 7 days)");
}

#[test]
fn version_and_constraint_errors() {
    insta::assert_snapshot!("1,30".parse::<KubeMinor>().unwrap_err(), @"`1,30` is not a Kubernetes version: the major version is not a number (expected forms: `1.30`, `v1.30.2`, `v1.30.2-eks-a5d2b1c`)");
    insta::assert_snapshot!(">= 1.21 <".parse::<Constraint>().unwrap_err(), @"`>= 1.21 <` is not a valid version constraint: operator `<` has no version (Helm syntax: `>=1.25.0-0`, `>= 1.21 < 1.33`, `^1.2`, `~1.30`, `a || b`)");
}

#[test]
fn facts_and_config_errors() {
    insta::assert_snapshot!(Facts::from_yaml("cluster: {name: c, server_version: 1.30}").unwrap_err(), @"the cluster facts do not parse: cluster.server_version: version 1.3 was written as a number; quote it (\"1.30\", not 1.30), a number loses trailing zeros at line 1 column 36 (see `fixtures/facts/healthy.yaml` for the shape)");
    insta::assert_snapshot!(Config::from_yaml("ignore: [{check: PDB009}]").unwrap_err().to_string().split("; known checks:").next().unwrap(), @"the check configuration names unknown check `PDB009` (in `ignore`)");
}

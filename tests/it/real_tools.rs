//! The real terraform, helm (both majors) and kubectl, run through the project's runner.

use upgrade_core::tool::Tool;
use upgrade_test::TestContext;

#[test]
fn terraform_version_through_the_runner() {
    let ctx = TestContext::new();
    let mut tf = ctx.command("terraform");
    tf.args(["version", "-json"]);
    let (version, _) = tf
        .exec_json::<serde_json::Value>("terraform version JSON")
        .unwrap();
    let v = version["terraform_version"].as_str().unwrap();
    assert!(v.starts_with("1.15."), "Terraform {v}");
}

#[test]
fn terraform_init_plan_and_show_json_on_a_fixture_module() {
    let ctx = TestContext::new();
    let module = ctx.copy_fixture("terraform/smoke");
    let run = |args: &[&str]| {
        let mut tf = ctx.command("terraform");
        tf.cwd(&module).env("TF_IN_AUTOMATION", "1").args(args);
        tf.exec().unwrap_or_else(|e| panic!("{e}"))
    };
    run(&["init", "-input=false", "-no-color"]);
    run(&["plan", "-input=false", "-no-color", "-out=smoke.tfplan"]);
    let shown = run(&["show", "-json", "smoke.tfplan"]);
    let plan: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert!(plan["format_version"].as_str().unwrap().starts_with("1."));
    let changes = plan["resource_changes"].as_array().unwrap();
    let addresses: Vec<&str> = changes
        .iter()
        .map(|c| c["address"].as_str().unwrap())
        .collect();
    assert_eq!(
        addresses,
        ["terraform_data.cluster", "terraform_data.node_group"]
    );
    assert!(
        changes
            .iter()
            .all(|c| c["change"]["actions"] == serde_json::json!(["create"]))
    );
}

#[test]
fn helm_version_for_both_majors() {
    let ctx = TestContext::new();
    for (tool, major) in [("helm3", "v3."), ("helm4", "v4.")] {
        let mut helm = ctx.command(tool);
        helm.args(["version", "--short"]);
        let out = helm.exec().unwrap();
        assert!(
            out.stdout_lossy().starts_with(major),
            "{tool}: {}",
            out.stdout_lossy()
        );
    }
}

#[test]
fn kubectl_client_version() {
    let ctx = TestContext::new();
    for (tool, minor) in [("kubectl", "1.34"), ("kubectl-1.31", "1.31")] {
        let mut kubectl = ctx.command(tool);
        kubectl.args(["version", "--client", "-o", "json"]);
        let (v, _) = kubectl
            .exec_json::<serde_json::Value>("kubectl version JSON")
            .unwrap();
        let got = format!(
            "{}.{}",
            v["clientVersion"]["major"].as_str().unwrap(),
            v["clientVersion"]["minor"].as_str().unwrap()
        );
        assert_eq!(got, minor, "{tool}");
    }
}

#[test]
fn tool_override_variable_points_at_the_installed_tool() {
    // The lookup a user's pipeline does: HELM_BIN names the binary; the result is absolute.
    let helm4 = upgrade_test::require_tool("helm4");
    let tool = Tool {
        program: "helm",
        override_var: "UPGRADE_TESTS_HELM_BIN_FOR_OVERRIDE",
        install_hint: "",
    };
    let resolved = tool.resolve_with(Some(&helm4)).unwrap();
    assert!(resolved.is_absolute());
    assert_eq!(resolved, helm4);
}

//! The handle's environment policy, version gates and argv, without a module to change.

use std::os::unix::fs::PermissionsExt;

use upgrade_test::TestContext;
use upgrade_tf::{Error, Feature, InitOptions, LockfileMode, PlanOptions, RefreshMode, Terraform};

fn handle(ctx: &TestContext) -> upgrade_tf::TerraformBuilder {
    Terraform::builder(ctx.work()).base_command(ctx.command("terraform"))
}

#[test]
fn stray_tf_cli_args_in_the_environment_are_refused() {
    let ctx = TestContext::new();
    let err = handle(&ctx)
        .inherited_env([("TF_CLI_ARGS_plan".to_string(), "-refresh=false".to_string())])
        .build()
        .unwrap_err();
    insta::assert_snapshot!(err.to_string());
    // An empty one is harmless.
    handle(&ctx)
        .inherited_env([("TF_CLI_ARGS".to_string(), String::new())])
        .build()
        .unwrap();
}

#[test]
fn variables_that_bypass_the_typed_api_are_refused() {
    let ctx = TestContext::new();
    for name in [
        "TF_VAR_cluster_version",
        "TF_LOG",
        "TF_WORKSPACE",
        "TF_CLI_ARGS",
    ] {
        let err = handle(&ctx).env(name, "x").build().unwrap_err();
        assert!(matches!(err, Error::ForbiddenEnv { .. }), "{name}: {err}");
    }
    handle(&ctx).env("AWS_PROFILE", "dev").build().unwrap();
}

#[test]
fn a_missing_binary_says_how_to_install_terraform() {
    let ctx = TestContext::new();
    let err = Terraform::builder(ctx.work())
        .binary(ctx.work().join("no-terraform-here"))
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    assert!(err.to_string().contains("install Terraform"), "{err}");
}

#[test]
fn argv_is_explicit_and_keeps_the_var_order() {
    let ctx = TestContext::new();
    let tf = handle(&ctx).build().unwrap();
    let options = PlanOptions::default()
        .var_file("env/dev.tfvars")
        .var("cluster_version", "1.31")
        .var_file("override.tfvars")
        .target("aws_eks_cluster.this")
        .refresh(RefreshMode::Only)
        .parallelism(4);
    let argv: Vec<String> = tf
        .plan_args(&options)
        .unwrap()
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let settings = ctx.insta_settings();
    settings.bind(|| insta::assert_debug_snapshot!(argv));
    let init: Vec<String> = tf
        .init_args(&InitOptions::default().lockfile(LockfileMode::ReadOnly))
        .unwrap()
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        init,
        [
            "init",
            "-input=false",
            "-no-color",
            "-json",
            "-backend=true",
            "-lockfile=readonly"
        ]
    );
    let err = tf
        .init_args(
            &InitOptions::default()
                .upgrade(true)
                .lockfile(LockfileMode::ReadOnly),
        )
        .unwrap_err();
    assert!(matches!(err, Error::InvalidOptions { .. }), "{err}");
}

/// Terraform 0.14 cannot be installed here, so a stand-in answers `version -json` as 0.14
/// does; everything else about the gate is the real code path.
#[test]
fn an_option_the_detected_version_lacks_is_refused() {
    let ctx = TestContext::new();
    let fake = ctx.root().join("terraform-0.14");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho '{\"terraform_version\":\"0.14.11\",\"platform\":\"linux_amd64\",\"provider_selections\":{}}'\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let tf = Terraform::builder(ctx.work())
        .binary(&fake)
        .build()
        .unwrap();
    let err = tf
        .init(&InitOptions::default().lockfile(LockfileMode::ReadOnly))
        .unwrap_err();
    match &err {
        Error::UnsupportedVersion {
            feature, actual, ..
        } => {
            assert_eq!(*feature, Feature::LockfileReadonly);
            assert_eq!(actual.to_string(), "0.14.11");
        }
        other => panic!("expected a version gate, got {other:?}"),
    }
    assert!(
        err.to_string().contains("needs Terraform >= 0.15.0"),
        "{err}"
    );
    let err = tf
        .plan(&PlanOptions::default().refresh(RefreshMode::Only))
        .unwrap_err();
    assert!(matches!(err, Error::UnsupportedVersion { .. }), "{err}");
}

/// Output a real terraform never prints: a stand-in shows that undecodable output is its
/// own error kind, with the start of the output for the record.
#[test]
fn undecodable_version_output_is_a_json_error() {
    let ctx = TestContext::new();
    let fake = ctx.root().join("terraform-garbled");
    std::fs::write(&fake, "#!/bin/sh\necho 'Welcome to not-terraform'\n").unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let tf = Terraform::builder(ctx.work())
        .binary(&fake)
        .build()
        .unwrap();
    let err = tf.version().unwrap_err();
    assert!(
        matches!(
            err,
            Error::Json {
                what: "version output",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("Welcome to not-terraform"),
        "{err}"
    );
}

#[test]
fn a_binary_that_cannot_start_is_a_start_error() {
    let ctx = TestContext::new();
    let broken = ctx.root().join("terraform-not-an-executable");
    std::fs::write(&broken, [0u8, 1, 2, 3]).unwrap();
    std::fs::set_permissions(&broken, std::fs::Permissions::from_mode(0o755)).unwrap();
    let tf = Terraform::builder(ctx.work())
        .binary(&broken)
        .build()
        .unwrap();
    let err = tf.version().unwrap_err();
    assert!(matches!(err, Error::Start { .. }), "{err:?}");
    assert!(err.to_string().starts_with("could not start"), "{err}");
}

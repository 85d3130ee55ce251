//! The typed API against the real terraform (1.15) and a real provider plugin (the
//! simulated AWS provider built from `crates/tf-sim-provider`).

use std::time::{Duration, Instant};

use crate::support::World;
use upgrade_tf::diagnostics::UiMessage;
use upgrade_tf::review::ChangeKind;
use upgrade_tf::{
    ApplyOptions, Error, FailureHint, HclFile, InitOptions, LockFile, LockSnapshot, LockSource,
    LockfileMode, PlanOptions, ProvidersLockOptions, ReviewRules, Severity,
};

/// init + plan + review + approve + apply, returning the review's table.
fn converge(world: &World, options: &PlanOptions) -> String {
    let run = world.tf.plan(options).unwrap_or_else(|e| panic!("{e}"));
    let reviewed = world
        .tf
        .review(&run.plan, &ReviewRules::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let approved = reviewed.approve().unwrap_or_else(|e| panic!("{e}"));
    world
        .tf
        .apply(&approved, &ApplyOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    reviewed.review().render_table()
}

/// The dev environment, initialised and applied at cluster_version 1.29.
fn applied_dev() -> World {
    let world = World::new("environments/dev");
    world
        .tf
        .init(&InitOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    converge(&world, &PlanOptions::default());
    world
}

fn set_cluster_version(world: &World, version: &str) {
    let mut vars = HclFile::read(world.file("terraform.tfvars")).unwrap();
    vars.set_string("cluster_version", version).unwrap();
    vars.write().unwrap();
}

#[test]
fn the_version_is_detected_with_version_json() {
    let world = World::new("smoke");
    let v = world.tf.version().unwrap();
    assert_eq!((v.version.major, v.version.minor), (1, 15), "{v:?}");
    assert!(v.platform.is_some());
}

#[test]
fn a_cluster_version_bump_plans_as_update_in_place_and_applies() {
    let world = applied_dev();
    let serial_before = world.tf.state_info().unwrap().expect("state exists").serial;

    set_cluster_version(&world, "1.30");
    let run = world.tf.plan(&PlanOptions::default()).unwrap();
    assert!(run.has_changes);
    assert_eq!(
        run.summary.map(|s| (s.add, s.change, s.remove)),
        Some((0, 2, 0))
    );
    let reviewed = world.tf.review(&run.plan, &ReviewRules::default()).unwrap();
    let cluster = reviewed.review().change("aws_eks_cluster.this").unwrap();
    assert_eq!(cluster.kind, ChangeKind::UpdateInPlace);
    assert_eq!(cluster.severity, Severity::Info);
    let version = cluster
        .attributes
        .iter()
        .find(|a| a.path == "version")
        .unwrap();
    assert_eq!(
        (version.before.as_str(), version.after.as_str()),
        ("\"1.29\"", "\"1.30\"")
    );
    assert!(!reviewed.review().is_blocked());

    let approved = reviewed.approve().unwrap();
    let mut progress = Vec::new();
    world
        .tf
        .apply_with_progress(&approved, &ApplyOptions::default(), &mut |m| {
            if let UiMessage::Other { kind, message } = m {
                progress.push(format!("{kind}: {message}"));
            }
        })
        .unwrap();
    assert!(
        progress
            .iter()
            .any(|p| p.starts_with("apply_start: aws_eks_cluster.this: Modifying")),
        "{progress:#?}"
    );
    assert!(
        progress
            .iter()
            .any(|p| p.starts_with("apply_complete: aws_eks_cluster.this: Modifications complete")),
        "{progress:#?}"
    );
    let outputs = world.tf.output().unwrap();
    assert_eq!(outputs["cluster_version"].value, Some("1.30".into()));
    let serial_after = world.tf.state_info().unwrap().unwrap().serial;
    assert!(
        serial_after > serial_before,
        "{serial_before} -> {serial_after}"
    );

    // Converged: nothing left to do.
    let again = world.tf.plan(&PlanOptions::default()).unwrap();
    assert!(!again.has_changes);
}

#[test]
fn a_subnet_change_plans_as_replace_and_the_review_blocks_it() {
    let world = applied_dev();
    let options =
        PlanOptions::default().var("subnet_ids", r#"["subnet-0a1b2c3d","subnet-99999999"]"#);
    let run = world.tf.plan(&options).unwrap();
    let reviewed = world.tf.review(&run.plan, &ReviewRules::default()).unwrap();
    let cluster = reviewed.review().change("aws_eks_cluster.this").unwrap();
    assert_eq!(cluster.kind, ChangeKind::Replace);
    assert_eq!(cluster.severity, Severity::Blocker);
    assert_eq!(cluster.replace_paths, ["vpc_config[0].subnet_ids"]);
    let nodes = reviewed
        .review()
        .change("aws_eks_node_group.default")
        .unwrap();
    assert_eq!(
        (nodes.kind, nodes.severity),
        (ChangeKind::Replace, Severity::Warning)
    );
    assert_eq!(nodes.replace_paths, ["subnet_ids"]);
    insta::assert_snapshot!(reviewed.review().render_table());

    match reviewed.approve() {
        Err(Error::Blocked { blockers }) => {
            assert_eq!(blockers.len(), 1, "{blockers:?}");
            assert!(blockers[0].starts_with("aws_eks_cluster.this: replaces protected"));
        }
        other => panic!("expected a blocked plan, got {other:?}"),
    }
    // An explicit allowance turns the blocker into a warning.
    let allowed = world
        .tf
        .review(
            &run.plan,
            &ReviewRules::default().allow_destroy("aws_eks_cluster.this"),
        )
        .unwrap();
    assert!(allowed.approve().is_ok());
}

#[test]
fn a_destroy_plan_is_blocked_and_a_refresh_only_plan_is_clean() {
    let world = applied_dev();
    let refresh = world
        .tf
        .plan(&PlanOptions::default().refresh(upgrade_tf::RefreshMode::Only))
        .unwrap();
    assert!(!refresh.has_changes, "nothing drifts in the simulation");

    let run = world
        .tf
        .plan(&PlanOptions::default().destroy(true))
        .unwrap();
    let reviewed = world.tf.review(&run.plan, &ReviewRules::default()).unwrap();
    assert_eq!(reviewed.review().counts.delete, 3);
    let cluster = reviewed.review().change("aws_eks_cluster.this").unwrap();
    assert_eq!(
        (cluster.kind, cluster.severity),
        (ChangeKind::Delete, Severity::Blocker)
    );
    assert_eq!(
        reviewed
            .review()
            .change("aws_eks_addon.coredns")
            .unwrap()
            .severity,
        Severity::Warning
    );
    assert!(matches!(reviewed.approve(), Err(Error::Blocked { .. })));
}

#[test]
fn a_two_minor_jump_fails_at_apply_with_the_providers_message() {
    let world = applied_dev();
    set_cluster_version(&world, "1.31");
    let run = world.tf.plan(&PlanOptions::default()).unwrap();
    let reviewed = world.tf.review(&run.plan, &ReviewRules::default()).unwrap();
    let approved = reviewed
        .approve()
        .expect("an in-place update is not blocked");
    let err = world
        .tf
        .apply(&approved, &ApplyOptions::default())
        .unwrap_err();
    let message = "Unsupported Kubernetes minor version update from 1.29 to 1.31";
    match &err {
        Error::Failed(failure) => {
            assert_eq!(failure.subcommand, "apply");
            let diag = failure.diagnostics.iter().find(|d| d.is_error()).unwrap();
            assert!(diag.summary.contains(message), "{diag:?}");
            assert_eq!(diag.address.as_deref(), Some("aws_eks_cluster.this"));
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert!(err.to_string().contains(message), "{err}");
    assert!(
        err.to_string().contains("InvalidParameterException"),
        "{err}"
    );
}

#[test]
fn a_provider_upgrade_changes_the_lock_file_and_restore_brings_back_the_exact_bytes() {
    let world = World::new("environments/dev");
    let first = world.tf.init(&InitOptions::default()).unwrap();
    assert_eq!(
        first
            .lock_after
            .as_ref()
            .and_then(|l| l.version_of("hashicorp/aws")),
        Some("5.99.0")
    );
    let lock_path = world.tf.lock_file_path();
    let original = std::fs::read(&lock_path).unwrap();
    let snapshot = LockSnapshot::take(&lock_path).unwrap();
    let versions_before = std::fs::read(world.file("versions.tf")).unwrap();

    let mut versions = HclFile::read(world.file("versions.tf")).unwrap();
    assert_eq!(
        versions
            .set_required_provider_version("aws", "~> 6.0")
            .unwrap()
            .as_deref(),
        Some("~> 5.0")
    );
    versions.write().unwrap();
    let upgraded = world
        .tf
        .init(&InitOptions::default().upgrade(true))
        .unwrap();
    assert_eq!(
        upgraded.lock_diff.version_change("hashicorp/aws"),
        Some(("5.99.0", "6.0.0"))
    );
    assert_eq!(upgraded.lock_diff.major_upgrades().len(), 1);
    assert_eq!(upgraded.lock_before.bytes(), Some(original.as_slice()));
    assert_ne!(std::fs::read(&lock_path).unwrap(), original);

    // A read-only init refuses to move the lock file back silently.
    snapshot.restore().unwrap();
    let err = world
        .tf
        .init(&InitOptions::default().lockfile(LockfileMode::ReadOnly))
        .unwrap_err();
    assert_eq!(err.hint(), Some(&FailureHint::LockFileWouldChange), "{err}");

    // Rollback: config and lock file back, then a read-only init resyncs the providers.
    std::fs::write(world.file("versions.tf"), &versions_before).unwrap();
    std::fs::write(&lock_path, b"garbage left by a failed upgrade").unwrap();
    let resynced = world.tf.restore_lock_file(&snapshot).unwrap();
    assert!(resynced.lock_diff.is_empty(), "{:?}", resynced.lock_diff);
    assert_eq!(std::fs::read(&lock_path).unwrap(), original, "exact bytes");
    assert_eq!(world.tf.version().unwrap().version.major, 1);
}

#[test]
fn init_with_a_plugin_dir_needs_no_cli_config() {
    let world = World::new("environments/dev");
    // No provider_installation at all: -plugin-dir alone must find the provider.
    std::fs::write(world.ctx.root().join("terraformrc"), "").unwrap();
    let report = world
        .tf
        .init(&InitOptions::default().plugin_dir(crate::support::mirror()))
        .unwrap();
    assert_eq!(
        report.lock_diff.changes,
        [upgrade_tf::ProviderLockChange::Added {
            provider: "registry.terraform.io/hashicorp/aws".into(),
            version: "5.99.0".into()
        }]
    );
}

#[test]
fn providers_lock_adds_hashes_for_other_platforms() {
    let world = World::new("environments/dev");
    world.tf.init(&InitOptions::default()).unwrap();
    let before = LockFile::read(&world.tf.lock_file_path()).unwrap();
    let options = ProvidersLockOptions::default()
        .platform("linux_amd64")
        .platform("darwin_arm64")
        .source(LockSource::FsMirror(crate::support::mirror().to_path_buf()));
    let diff = world.tf.providers_lock(&options).unwrap();
    let after = LockFile::read(&world.tf.lock_file_path()).unwrap();
    let hashes = |l: &LockFile| {
        l.providers["registry.terraform.io/hashicorp/aws"]
            .hashes
            .len()
    };
    assert_eq!((hashes(&before), hashes(&after)), (1, 2), "{diff:?}");
    assert_eq!(diff.changes.len(), 1);
}

#[test]
fn the_tfvars_edit_keeps_every_comment() {
    let world = World::new("environments/dev");
    set_cluster_version(&world, "1.30");
    let text = std::fs::read_to_string(world.file("terraform.tfvars")).unwrap();
    insta::assert_snapshot!(text);
    // Terraform reads the edited file as intended.
    world.tf.init(&InitOptions::default()).unwrap();
    let run = world.tf.plan(&PlanOptions::default()).unwrap();
    let plan = world.tf.show_plan(&run.plan).unwrap();
    assert_eq!(plan.variables["cluster_version"].value, "1.30");
}

#[test]
fn var_files_and_vars_keep_their_order_and_later_ones_win() {
    let world = World::new("smoke");
    std::fs::write(world.file("a.tfvars"), "cluster_version = \"1.30\"\n").unwrap();
    std::fs::write(world.file("b.tfvars"), "cluster_version = \"1.32\"\n").unwrap();
    for (options, expected) in [
        (
            PlanOptions::default()
                .var_file("a.tfvars")
                .var("cluster_version", "1.31")
                .var_file("b.tfvars"),
            "1.32",
        ),
        (
            PlanOptions::default()
                .var_file("b.tfvars")
                .var_file("a.tfvars")
                .var("cluster_version", "1.31"),
            "1.31",
        ),
    ] {
        let run = world.tf.plan(&options).unwrap();
        let plan = world.tf.show_plan(&run.plan).unwrap();
        assert_eq!(plan.variables["cluster_version"].value, expected);
    }
}

#[test]
fn a_held_state_lock_gives_the_typed_error_with_its_hint() {
    let world = World::new("state-lock");
    world.tf.init(&InitOptions::default()).unwrap();
    // A second, real terraform holds the lock while its provisioner sleeps.
    let mut holder = world.ctx.command("terraform");
    holder.cwd(&world.dir).args([
        "apply",
        "-auto-approve",
        "-input=false",
        "-no-color",
        "-var",
        "hold_seconds=8",
    ]);
    let handle = std::thread::spawn(move || holder.exec());
    let lock_info = world.file(".terraform.tfstate.lock.info");
    let started = Instant::now();
    while !lock_info.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the holder never took the lock"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let err = world.tf.plan(&PlanOptions::default()).unwrap_err();
    let Some(FailureHint::StateLocked {
        lock_id, operation, ..
    }) = err.hint()
    else {
        panic!("expected a state-lock hint: {err}");
    };
    let lock_id = lock_id.clone().expect("the lock ID");
    assert_eq!(operation.as_deref(), Some("OperationTypeApply"));
    let rendered = err.to_string();
    assert!(
        rendered.contains(&format!("terraform force-unlock {lock_id}")),
        "{rendered}"
    );
    let mut settings = world.ctx.insta_settings();
    settings.add_filter(&upgrade_test::regex_escape(&lock_id), "[LOCK_ID]");
    settings.add_filter(r"Who:\s+\S+", "Who: [WHO]");
    settings.add_filter(r" by \S+ \(", " by [WHO] (");
    settings.add_filter(r"Created:\s+.*", "Created: [CREATED]");
    settings.add_filter(r"Version:\s+\S+", "Version: [VERSION]");
    settings.add_filter(r"-out=\S+", "-out=[PLAN]");
    settings.bind(|| insta::assert_snapshot!(rendered));

    // Waiting on the lock longer than the handle's timeout: stopped (SIGINT first, so
    // Terraform can give up cleanly) and typed as a timeout.
    let impatient = upgrade_tf::Terraform::builder(&world.dir)
        .base_command(world.ctx.command("terraform"))
        .timeout(Duration::from_secs(1))
        .grace_period(Duration::from_secs(5))
        .build()
        .unwrap();
    let err = impatient
        .plan(&PlanOptions::default().lock_timeout(Duration::from_secs(30)))
        .unwrap_err();
    assert!(matches!(err, Error::TimedOut { .. }), "{err}");

    handle.join().unwrap().expect("the holder's apply succeeds");
}

#[test]
fn an_uninitialised_directory_gives_the_not_initialised_hint() {
    let world = World::new("environments/dev");
    let err = world.tf.plan(&PlanOptions::default()).unwrap_err();
    assert_eq!(err.hint(), Some(&FailureHint::NotInitialized), "{err}");
    assert!(err.to_string().contains("run `terraform init`"), "{err}");
}

#[test]
fn an_unsatisfiable_constraint_gives_the_no_matching_version_hint() {
    let world = World::new("environments/dev");
    let mut versions = HclFile::read(world.file("versions.tf")).unwrap();
    versions
        .set_required_provider_version("aws", "~> 7.0")
        .unwrap();
    versions.write().unwrap();
    let err = world.tf.init(&InitOptions::default()).unwrap_err();
    assert!(
        matches!(
            err.hint(),
            Some(FailureHint::NoMatchingProviderVersion { .. })
        ),
        "{err}"
    );
    // The raw output is kept whole.
    let Error::Failed(failure) = &err else {
        panic!("{err:?}")
    };
    assert!(
        failure
            .stdout
            .contains("Failed to query available provider packages")
    );
}

#[test]
fn validate_reports_an_invalid_configuration_as_data() {
    let world = World::new("smoke");
    assert!(world.tf.validate().unwrap().valid);
    assert_eq!(
        world.tf.state_info().unwrap(),
        None,
        "no state before the first apply"
    );
    std::fs::write(
        world.file("broken.tf"),
        "resource \"terraform_data\" \"x\" {\n  nope = 1\n}\n",
    )
    .unwrap();
    let report = world.tf.validate().unwrap();
    assert!(!report.valid);
    assert_eq!(report.error_count, 1);
    assert!(
        report.diagnostics[0]
            .summary
            .contains("Unsupported argument"),
        "{report:?}"
    );
}

#[test]
fn a_plan_file_changed_after_review_is_not_applied() {
    let world = World::new("smoke");
    let run = world.tf.plan(&PlanOptions::default()).unwrap();
    let approved = world
        .tf
        .review(&run.plan, &ReviewRules::default())
        .unwrap()
        .approve()
        .unwrap();
    let other = world
        .tf
        .plan(&PlanOptions::default().var("cluster_version", "1.99"))
        .unwrap();
    assert_eq!(other.plan.path, run.plan.path, "same file, new content");
    let err = world
        .tf
        .apply(&approved, &ApplyOptions::default())
        .unwrap_err();
    assert!(matches!(err, Error::PlanFileChanged { .. }), "{err}");
}

#[tokio::test]
async fn the_async_face_plans_reviews_and_applies() {
    let world = World::new("smoke");
    let tf = upgrade_tf::AsyncTerraform::from(world.tf);
    let run = tf.plan(PlanOptions::default()).await.unwrap();
    assert!(run.has_changes);
    let reviewed = tf.review(run.plan, ReviewRules::default()).await.unwrap();
    assert_eq!(reviewed.review().counts.create, 2);
    tf.apply(reviewed.approve().unwrap(), ApplyOptions::default())
        .await
        .unwrap();
    let outputs = tf.run(|tf| tf.output()).await.unwrap();
    assert_eq!(outputs["cluster_version"].value, Some("1.30".into()));
}

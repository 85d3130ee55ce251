//! `upgrade-map-apis` on pluto's real Helm 3 release Secrets (`../shared/upstream/removed-apis/
//! pluto/e2e-tests/assets/helm3`): the stored manifests that name `policy/v1beta1` and
//! `extensions/v1beta1` are rewritten to the replacements, the real helm 3 and helm 4 read the
//! rewritten records (`helm get manifest`, `helm history`), the same records moved to the
//! ConfigMap driver are rewritten alike, and `upgrade-rollback` puts every record back byte
//! for byte.

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, PostParams};
use upgrade_core::ProcessBuilder;

use super::World;
use crate::real_platform::charts_dir;

fn helm3_assets() -> std::path::PathBuf {
    charts_dir()
        .parent()
        .unwrap()
        .join("removed-apis/pluto/e2e-tests/assets/helm3")
}

/// `helm get manifest RELEASE -n NS` (and `helm history`) with `helm` (`HELM_DRIVER` set).
fn helm_reads(world: &World, helm: &str, driver: &str, release: &str, ns: &str) -> String {
    let run = |args: &[&str]| {
        let mut cmd = ProcessBuilder::new(world.ctx.require_tool(helm));
        world.ctx.apply_env(&mut cmd);
        cmd.env("HELM_DRIVER", driver)
            .args(args)
            .args(["-n", ns, "--kubeconfig"])
            .arg(world.sim.kubeconfig_path())
            .args(["--kube-context", kube_sim::CONTEXT_NAME]);
        let (code, stdout, stderr) = upgrade_test::CommandOutput::run(&cmd).parts();
        assert_eq!(code, 0, "{helm} {args:?}: {stdout}{stderr}");
        stdout
    };
    run(&["history", release]);
    run(&["get", "manifest", release])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the upstream suite: ./dev test-upstream"]
async fn removed_apis_in_real_helm3_records_are_mapped_and_rolled_back() {
    let world = World::new("helm3").await;
    world
        .sim
        .load_yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: demo2}\n")
        .unwrap();
    for file in [
        "secret.json",
        "secret-demo2.json",
        "secret_duplicate_name.json",
    ] {
        let text = std::fs::read_to_string(helm3_assets().join(file)).unwrap();
        world.sim.load_yaml(&text).unwrap();
    }
    // The same demo2 record under the ConfigMap driver, as `HELM_DRIVER=configmap` keeps it.
    let secrets: Api<Secret> = Api::namespaced(world.cluster.client().clone(), "demo2");
    let demo2 = secrets.get("sh.helm.release.v1.demo2.v1").await.unwrap();
    let payload = String::from_utf8(demo2.data.as_ref().unwrap()["release"].0.clone()).unwrap();
    world
        .sim
        .load_yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: cm-driver}\n")
        .unwrap();
    let configmaps: Api<ConfigMap> = Api::namespaced(world.cluster.client().clone(), "cm-driver");
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("sh.helm.release.v1.demo2.v1".into());
    cm.metadata.labels = demo2.metadata.labels.clone();
    cm.data = Some([("release".to_string(), payload.clone())].into());
    configmaps
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();

    let before =
        |ns: &str, driver: &str, release: &str| helm_reads(&world, "helm3", driver, release, ns);
    assert!(before("demo2", "secret", "demo2").contains("apiVersion: policy/v1beta1"));
    assert!(before("default", "secret", "test").contains("apiVersion: extensions/v1beta1"));

    // The plan names each object; nothing changes without --apply.
    let args = |release: &str, ns: &str, apply: bool| {
        let mut a: Vec<String> = ["--release", release, "--namespace", ns, "--target", "1.32"]
            .map(str::to_string)
            .to_vec();
        if apply {
            a.extend(["--apply".into(), "--yes".into()]);
        }
        a
    };
    let (code, stdout, stderr) = world.run("upgrade-map-apis", &args("demo2", "demo2", false));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("PodDisruptionBudget demo2-basic-demo: policy/v1beta1 -> policy/v1"),
        "{stdout}"
    );
    assert!(before("demo2", "secret", "demo2").contains("policy/v1beta1"));

    let mut runs = Vec::new();
    for (release, ns) in [
        ("demo2", "demo2"),
        ("test", "default"),
        ("demo2", "cm-driver"),
    ] {
        let (code, stdout, stderr) = world.run("upgrade-map-apis", &args(release, ns, true));
        assert_eq!(code, 0, "{release} in {ns}: {stdout}{stderr}");
        let run = stdout
            .lines()
            .find_map(|l| l.strip_prefix("run: "))
            .unwrap_or_else(|| panic!("no run id: {stdout}"));
        runs.push(run.to_string());
    }
    let mut unique = runs.clone();
    unique.dedup();
    assert_eq!(unique.len(), 3, "each run has its own id: {runs:?}");
    // Both Helm majors read the rewritten records.
    for helm in ["helm3", "helm4"] {
        let pdb = helm_reads(&world, helm, "secret", "demo2", "demo2");
        assert!(
            pdb.contains("apiVersion: policy/v1\n") && !pdb.contains("v1beta1"),
            "{pdb}"
        );
        let deploy = helm_reads(&world, helm, "secret", "test", "default");
        assert!(
            deploy.contains("apiVersion: apps/v1\n") && !deploy.contains("extensions/v1beta1"),
            "{deploy}"
        );
        let cm = helm_reads(&world, helm, "configmap", "demo2", "cm-driver");
        assert!(cm.contains("apiVersion: policy/v1\n"), "{cm}");
    }
    // Running it again finds nothing to rewrite.
    let (code, stdout, _) = world.run("upgrade-map-apis", &args("demo2", "demo2", false));
    assert_eq!(code, 0);
    assert!(stdout.contains("nothing to rewrite"), "{stdout}");

    // upgrade-rollback undoes each run from its record: every record byte for byte.
    for run in &runs {
        let (code, stdout, stderr) = world.run(
            "upgrade-rollback",
            &[
                "--run".into(),
                run.clone(),
                "--apply".into(),
                "--yes".into(),
            ],
        );
        assert_eq!(code, 0, "{stdout}{stderr}");
        assert!(stdout.contains("rolled back 1 step(s)"), "{stdout}");
    }
    let after = secrets.get("sh.helm.release.v1.demo2.v1").await.unwrap();
    assert!(
        after.data == demo2.data,
        "the Secret record is back exactly"
    );
    let cm_after = configmaps.get("sh.helm.release.v1.demo2.v1").await.unwrap();
    assert_eq!(cm_after.data.unwrap()["release"], payload);
    assert!(before("default", "secret", "test").contains("apiVersion: extensions/v1beta1"));
}

//! Blue/green resource transfer (issue 18 step 5), with printed figures (nothing asserts a
//! time).
//!
//! `cargo build --release -p upgrade-bins --bins && cargo bench -p upgrade-tests --bench
//! transfer` fills a blue kube-sim with Kubeflow user namespaces (a profile, an EFS claim and
//! its volume, config maps, service accounts, notebooks, InferenceServices and bare pods in
//! each: 40 objects per namespace) and moves them into an empty green kube-sim twice:
//! - with `upgrade-bluegreen transfer --apply` (its plan included), and
//! - by hand as people do without Velero: `kubectl get ... -o json` per namespace and for the
//!   cluster-scoped kinds, the server's fields stripped (what `kubectl neat` does), then
//!   `kubectl apply -f` of the file into green.
//!
//! It prints the wall time and the peak memory (`/usr/bin/time`'s maximum resident set) of
//! each, and the ratios, at 2,000 objects in 50 namespaces and at 8,000 in 200 (the
//! transfer's memory should not grow with the object count: it moves a list page at a time).
//! Without `--bench` (as under `cargo test --all-targets`) it only says how to run it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kube_sim::{ControllerConfig, SimCluster};
use upgrade_core::ProcessBuilder;
use upgrade_test::TestContext;

const PER_NAMESPACE: usize = 40;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "transfer benchmark: `cargo build --release -p upgrade-bins --bins && cargo bench -p upgrade-tests --bench transfer` runs it"
        );
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        println!(
            "blue/green resource transfer, {PER_NAMESPACE} objects per user namespace (kube-sim both sides):"
        );
        for namespaces in [50, 200] {
            let ours = measure(namespaces, Method::Transfer).await;
            let by_hand = measure(namespaces, Method::KubectlByHand).await;
            println!(
                "  {} objects in {namespaces} namespaces: upgrade-bluegreen transfer {:.1}s, {} MiB peak; \
                 kubectl get/apply by hand {:.1}s, {} MiB peak (kubectl apply's; get's {} MiB); \
                 time ratio {:.2}, memory ratio {:.2}",
                namespaces * PER_NAMESPACE,
                ours.wall.as_secs_f64(),
                ours.peak_kib / 1024,
                by_hand.wall.as_secs_f64(),
                by_hand.peak_kib / 1024,
                by_hand.other_peak_kib / 1024,
                ours.wall.as_secs_f64() / by_hand.wall.as_secs_f64(),
                ours.peak_kib as f64 / by_hand.peak_kib as f64,
            );
        }
    });
}

#[derive(Clone, Copy)]
enum Method {
    Transfer,
    KubectlByHand,
}

struct Figures {
    wall: Duration,
    peak_kib: u64,
    other_peak_kib: u64,
}

fn user_namespace(i: usize) -> String {
    let ns = format!("kubeflow-user-{i:03}");
    let mut yaml = format!(
        "apiVersion: kubeflow.org/v1\nkind: Profile\nmetadata: {{name: {ns}}}\nspec: {{owner: {{kind: User, name: u{i}@example.com}}}}\n---\n\
         apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, annotations: {{owner: u{i}@example.com}}}}\n---\n\
         apiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: efs-{ns}}}\nspec: {{capacity: {{storage: 10Gi}}, accessModes: [ReadWriteMany], \
         persistentVolumeReclaimPolicy: Delete, csi: {{driver: efs.csi.aws.com, volumeHandle: \"fs-0e1f::fsap-{i:04}\"}}, \
         claimRef: {{kind: PersistentVolumeClaim, namespace: {ns}, name: home}}}}\n---\n\
         apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: home, namespace: {ns}}}\nspec: {{accessModes: [ReadWriteMany], \
         resources: {{requests: {{storage: 10Gi}}}}, volumeName: efs-{ns}}}\n---\n"
    );
    for j in 0..10 {
        yaml.push_str(&format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings-{j}, namespace: {ns}, labels: {{team: t{i}}}}}\n\
             data: {{config.yaml: \"{}\"}}\n---\n",
            "x".repeat(512)
        ));
    }
    for j in 0..8 {
        yaml.push_str(&format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: runner-{j}, namespace: {ns}}}\n---\n\
             apiVersion: kubeflow.org/v1\nkind: Notebook\nmetadata: {{name: nb-{j}, namespace: {ns}}}\n\
             spec: {{template: {{spec: {{containers: [{{name: nb, image: \"kubeflownotebookswg/jupyter-scipy:v1.9.0\"}}]}}}}}}\n---\n\
             apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata: {{name: model-{j}, namespace: {ns}}}\n\
             spec: {{predictor: {{model: {{modelFormat: {{name: sklearn}}, storageUri: \"s3://models/{ns}/{j}\"}}}}}}\n---\n"
        ));
    }
    for j in 0..2 {
        yaml.push_str(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: shell-{j}, namespace: {ns}}}\n\
             spec: {{containers: [{{name: sh, image: \"busybox:1.36\"}}]}}\n---\n"
        ));
    }
    yaml
}

async fn measure(namespaces: usize, method: Method) -> Figures {
    let ctx = TestContext::new();
    let start = |name: &str| {
        SimCluster::builder()
            .controllers(ControllerConfig::none())
            .kubeconfig_path(ctx.root().join(format!("{name}.kubeconfig")))
            .start()
    };
    let (blue, green) = (start("blue").await.unwrap(), start("green").await.unwrap());
    let crds =
        std::fs::read_to_string(TestContext::fixtures_dir().join("bluegreen/kubeflow-crds.yaml"))
            .unwrap();
    blue.load_yaml(&crds).unwrap();
    green.load_yaml(&crds).unwrap();
    for i in 0..namespaces {
        blue.load_yaml(&user_namespace(i)).unwrap();
    }
    let names: Vec<String> = (0..namespaces)
        .map(|i| format!("kubeflow-user-{i:03}"))
        .collect();
    let started = Instant::now();
    let figures = match method {
        Method::Transfer => {
            let mut args = vec![
                "transfer".to_string(),
                "--green-kubeconfig".into(),
                green.kubeconfig_path().display().to_string(),
                "--green-cluster".into(),
                green.url().to_string(),
            ];
            for ns in &names {
                args.extend(["--namespace".to_string(), ns.clone()]);
            }
            args.extend(
                [
                    "--kubeconfig",
                    &blue.kubeconfig_path().display().to_string(),
                    "--kube-context",
                    kube_sim::CONTEXT_NAME,
                    "--expect-cluster",
                    blue.url(),
                    "--snapshot-dir",
                    &ctx.work().join(".upgrade").display().to_string(),
                    "--apply",
                    "--yes",
                ]
                .map(str::to_string),
            );
            let peak = timed(&ctx, &release_bin("upgrade-bluegreen"), &args, None);
            Figures {
                wall: started.elapsed(),
                peak_kib: peak,
                other_peak_kib: 0,
            }
        }
        Method::KubectlByHand => {
            let kubectl = ctx.require_tool("kubectl");
            let blue_config = blue.kubeconfig_path().display().to_string();
            let mut objects: Vec<serde_json::Value> = Vec::new();
            let mut get_peak = 0;
            let mut get = |args: Vec<String>| {
                let out = ctx.work().join("get.json");
                let peak = timed(&ctx, &kubectl, &args, Some(&out));
                get_peak = get_peak.max(peak);
                let list: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
                objects.extend(list["items"].as_array().cloned().unwrap_or_default());
            };
            let base = |what: &str| {
                vec![
                    "--kubeconfig".to_string(),
                    blue_config.clone(),
                    "get".into(),
                    what.into(),
                    "-o".into(),
                    "json".into(),
                ]
            };
            get(base("namespaces,persistentvolumes,profiles.kubeflow.org"));
            for ns in &names {
                let mut args = base(
                    "persistentvolumeclaims,configmaps,serviceaccounts,pods,notebooks.kubeflow.org,inferenceservices.serving.kserve.io",
                );
                args.extend(["-n".to_string(), ns.clone()]);
                get(args);
            }
            // What `kubectl neat` does, and what the scope keeps: the user namespaces and the
            // volumes of their claims, without the objects every namespace gets by itself.
            let kept: Vec<serde_json::Value> = objects
                .into_iter()
                .filter(|o| {
                    let name = o["metadata"]["name"].as_str().unwrap_or_default();
                    match o["kind"].as_str().unwrap_or_default() {
                        "Namespace" => name.starts_with("kubeflow-user-"),
                        "PersistentVolume" => name.starts_with("efs-"),
                        "ServiceAccount" => name != "default",
                        "ConfigMap" => name != "kube-root-ca.crt",
                        _ => true,
                    }
                })
                .map(upgrade_kube::backup::clean)
                .collect();
            let file = ctx.work().join("backup.json");
            std::fs::write(
                &file,
                serde_json::to_vec(
                    &serde_json::json!({"apiVersion": "v1", "kind": "List", "items": kept}),
                )
                .unwrap(),
            )
            .unwrap();
            let args = [
                "--kubeconfig",
                &green.kubeconfig_path().display().to_string(),
                "apply",
                "-f",
                &file.display().to_string(),
            ]
            .map(str::to_string)
            .to_vec();
            let peak = timed(&ctx, &kubectl, &args, None);
            Figures {
                wall: started.elapsed(),
                peak_kib: peak,
                other_peak_kib: get_peak,
            }
        }
    };
    let moved = green.list("kubeflow.org/v1", "Notebook", None).len();
    assert_eq!(moved, namespaces * 8, "every notebook reached green");
    blue.shutdown().await;
    green.shutdown().await;
    figures
}

/// Runs `program args` under `/usr/bin/time` (stdout to `stdout_to` when given) and returns
/// its peak resident memory in KiB.
fn timed(ctx: &TestContext, program: &Path, args: &[String], stdout_to: Option<&Path>) -> u64 {
    let time = Path::new("/usr/bin/time");
    assert!(
        time.is_file(),
        "/usr/bin/time is missing: install GNU time (`apt-get install time`) to measure peak memory"
    );
    let mut cmd = ProcessBuilder::new(time);
    ctx.apply_env(&mut cmd);
    cmd.args(["-f", "peak-kib=%M"])
        .arg(program)
        .args(args)
        .timeout(Duration::from_secs(900));
    let out = cmd.exec().unwrap_or_else(|e| panic!("{e}"));
    if let Some(path) = stdout_to {
        std::fs::write(path, &out.stdout).unwrap();
    }
    let stderr = out.stderr_lossy();
    stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("peak-kib="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak memory in: {stderr}"))
}

/// A binary of this workspace in the release profile `cargo bench` builds in.
fn release_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("bench binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf();
    let bin = dir.join(name);
    assert!(
        bin.is_file(),
        "{name} is not built in {}; run `cargo build --release -p upgrade-bins --bins` first",
        dir.display()
    );
    bin
}

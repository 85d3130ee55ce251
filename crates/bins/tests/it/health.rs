//! `upgrade-health` on kube-sim with the failures seed 002's daily check looks for injected:
//! a crash-looping pod, a NotReady node, a certificate about to expire, a failed workflow; in
//! every output format, with exit codes by severity, and a baseline saved before an
//! "upgrade" and compared after it.

use std::time::Duration;

use kube_sim::ControllerConfig;
use upgrade_core::ProcessBuilder;
use upgrade_test::TestContext;

const CRDS: &str = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: certificates.cert-manager.io}\nspec:\n  group: cert-manager.io\n  scope: Namespaced\n  names: {plural: certificates, singular: certificate, kind: Certificate, listKind: CertificateList}\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    subresources: {status: {}}\n    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}\n---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: workflows.argoproj.io}\nspec:\n  group: argoproj.io\n  scope: Namespaced\n  names: {plural: workflows, singular: workflow, kind: Workflow, listKind: WorkflowList}\n  versions:\n  - name: v1alpha1\n    served: true\n    storage: true\n    subresources: {status: {}}\n    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}\n";

fn certificate(name: &str, days: i64) -> String {
    let not_after = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * days);
    format!(
        "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {{name: {name}, namespace: mlops}}\nspec: {{secretName: {name}-tls, dnsNames: [{name}.platform.example.com]}}\nstatus: {{conditions: [{{type: Ready, status: 'True'}}], notAfter: '{not_after}'}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_check_finds_each_injected_failure_and_compares_with_the_baseline() {
    let ctx = TestContext::new();
    let sim = crate::support::sim_with(&ctx, ControllerConfig::none()).await;
    sim.add_node("node-b", kube_sim::DEFAULT_SERVER_VERSION)
        .unwrap();
    sim.load_yaml(CRDS).unwrap();
    sim.load_yaml(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: mlops}}\n---\n{}---\n{}",
        certificate("mlflow", 200),
        certificate("kserve-webhook", 200)
    ))
    .unwrap();
    let run = |args: &[&str]| {
        let mut cmd = ProcessBuilder::new(env!("CARGO_BIN_EXE_upgrade-health"));
        ctx.apply_env(&mut cmd);
        cmd.arg("--kubeconfig")
            .arg(sim.kubeconfig_path())
            .args(["--kube-context", kube_sim::CONTEXT_NAME])
            .args(args)
            .timeout(Duration::from_secs(60));
        upgrade_test::CommandOutput::run(&cmd).parts()
    };

    // Healthy: exit 0, headroom and budgets reported.
    let (code, stdout, stderr) = run(&[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("headroom: 2/2 nodes Ready"), "{stdout}");
    assert!(stdout.contains("0 failed, 0 warnings (exit 0)"), "{stdout}");

    // A certificate cert-manager did not renew: a warning (exit 3), by its days.
    sim.load_yaml(&certificate("argo-server", 5)).unwrap();
    let (code, stdout, stderr) = run(&[]);
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(
        stdout.contains("WARN  certificate expiring: Certificate mlops/argo-server - expires at")
            && (stdout.contains("(in 4 days)") || stdout.contains("(in 5 days)")),
        "{stdout}"
    );
    let (code, stdout, _) = run(&["--certificate-expiry-days", "3"]);
    assert_eq!(code, 0, "outside a 3-day window: {stdout}");

    // The baseline before the "upgrade" (the expiring certificate is in it).
    let baseline = ctx.work().join("baseline.json");
    let (code, stdout, stderr) = run(&["--save-baseline", &baseline.display().to_string()]);
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(stdout.contains("baseline saved:"), "{stdout}");

    // The failures: a crash-looping pod, a NotReady node, a failed workflow.
    sim.load_yaml(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: mlflow-5d9c7, namespace: mlops}\nspec: {nodeName: node-a, containers: [{name: mlflow, image: ghcr.io/mlflow/mlflow:2.22.0, resources: {requests: {cpu: 250m, memory: 512Mi}}}]}\nstatus: {phase: Running, containerStatuses: [{name: mlflow, image: ghcr.io/mlflow/mlflow:2.22.0, imageID: '', ready: false, restartCount: 9, state: {waiting: {reason: CrashLoopBackOff, message: back-off 5m0s restarting failed container}}}]}\n---\napiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata: {name: train-iris-x7k2p, namespace: mlops}\nspec: {entrypoint: main}\nstatus: {phase: Failed, message: 'child train-iris-x7k2p-123 failed with exit code 1'}\n",
    )
    .unwrap();
    sim.set_node_ready("node-b", false).unwrap();
    let (code, stdout, stderr) = run(&["--baseline", &baseline.display().to_string()]);
    assert_eq!(code, 4, "{stdout}{stderr}");
    for line in [
        "FAIL  pod not running: Pod mlops/mlflow-5d9c7 - container mlflow is CrashLoopBackOff",
        "FAIL  node not ready: Node node-b - Ready is Unknown",
        "WARN  workflow failed: Workflow mlops/train-iris-x7k2p - Failed: child train-iris-x7k2p-123 failed with exit code 1",
        "KNOWN certificate expiring: Certificate mlops/argo-server",
        "(so before the upgrade too)",
        "headroom: 1/2 nodes Ready; CPU 250m of",
        "baseline of ",
    ] {
        assert!(stdout.contains(line), "{line}:\n{stdout}");
    }

    // The same in JSON, Markdown and JUnit.
    let (code, json, _) = run(&[
        "--baseline",
        &baseline.display().to_string(),
        "--output",
        "json",
    ]);
    assert_eq!(code, 4);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let items = json["items"].as_array().unwrap();
    assert_eq!(items[0]["severity"], "failure", "failures first: {json}");
    assert!(
        items
            .iter()
            .any(|i| i["known_before"] == true && i["subject"] == "Certificate mlops/argo-server")
    );
    let (_, markdown, _) = run(&["--output", "markdown"]);
    assert!(
        markdown.contains("| FAIL | node not ready | Node node-b |"),
        "{markdown}"
    );
    let (_, junit, _) = run(&["--output", "junit"]);
    assert!(
        junit.contains("<testsuite name=\"health of") && junit.contains("failures=\"4\""),
        "{junit}"
    );
    assert!(
        junit.contains("<failure message=\"FAIL\">container mlflow is CrashLoopBackOff"),
        "{junit}"
    );

    // Fixed since the baseline: the certificate renewed.
    let not_after =
        (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 90)).to_string();
    sim.set_status(
        "cert-manager.io/v1",
        "Certificate",
        Some("mlops"),
        "argo-server",
        serde_json::json!({"conditions": [{"type": "Ready", "status": "True"}], "notAfter": not_after}),
    )
    .unwrap();
    let (_, stdout, _) = run(&["--baseline", &baseline.display().to_string()]);
    assert!(
        stdout.contains("FIXED certificate expiring: Certificate mlops/argo-server"),
        "{stdout}"
    );

    // A baseline that is not one: bad input, nothing read from the cluster.
    let bogus = ctx.work().join("bogus.json");
    std::fs::write(&bogus, "{}").unwrap();
    let (code, stdout, stderr) = run(&["--baseline", &bogus.display().to_string()]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("is not a health baseline") && stderr.contains("--save-baseline"),
        "{stderr}"
    );
    sim.shutdown().await;
}

/// `upgrade-health --log-source`: the controller's log read through the API (kube-sim serves
/// what the test sets, `tailLines` honoured) and compared with the baseline: a panic is a
/// failure, error lines that grew and repeated reconcile errors are warnings, what was
/// already there before is not counted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_scanned_for_panics_and_errors_against_the_baseline() {
    let ctx = TestContext::new();
    let sim = crate::support::sim_with(&ctx, ControllerConfig::none()).await;
    sim.load_yaml(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: karpenter}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: karpenter-7c9d, namespace: karpenter, labels: {app.kubernetes.io/name: karpenter}}\nspec: {nodeName: node-a, containers: [{name: controller, image: public.ecr.aws/karpenter/controller:1.6.0}]}\nstatus: {phase: Running, containerStatuses: [{name: controller, image: x, imageID: '', ready: true, restartCount: 0, state: {running: {}}}]}\n",
    )
    .unwrap();
    let before = "{\"level\":\"INFO\",\"msg\":\"starting controller\"}\n{\"level\":\"ERROR\",\"msg\":\"failed to discover instance types\"}\n{\"level\":\"INFO\",\"msg\":\"discovered 600 instance types\"}\n";
    sim.set_pod_log("karpenter", "karpenter-7c9d", "controller", before);
    let run = |args: &[&str]| {
        let mut cmd = ProcessBuilder::new(env!("CARGO_BIN_EXE_upgrade-health"));
        ctx.apply_env(&mut cmd);
        cmd.arg("--kubeconfig")
            .arg(sim.kubeconfig_path())
            .args(["--kube-context", kube_sim::CONTEXT_NAME])
            .args([
                "--log-source",
                "karpenter=karpenter/app.kubernetes.io/name=karpenter:100",
            ])
            .args(["--log-source", "mlflow=mlops/app.kubernetes.io/name=mlflow"])
            .args(args)
            .timeout(Duration::from_secs(60));
        upgrade_test::CommandOutput::run(&cmd).parts()
    };
    let baseline = ctx.work().join("baseline.json");
    let (code, stdout, stderr) = run(&["--save-baseline", &baseline.display().to_string()]);
    assert_eq!(code, 3, "one error line, no baseline yet: {stdout}{stderr}");
    assert!(
        stdout.contains("WARN  log error-level: logs of karpenter (karpenter-7c9d/controller) - 1 error-level line(s)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("SKIP  logs of mlflow: no pod in mlops matches"),
        "{stdout}"
    );
    // The same log after the "upgrade": nothing new.
    let (code, stdout, _) = run(&["--baseline", &baseline.display().to_string()]);
    assert_eq!(code, 0, "{stdout}");

    let reconcile = "{\"level\":\"ERROR\",\"msg\":\"Reconciler error\",\"controller\":\"nodeclaim.lifecycle\"}\n";
    let after = format!(
        "{before}{}{}panic: runtime error: index out of range [3] with length 3\n\ngoroutine 412 [running]:\n",
        reconcile.repeat(3),
        "{\"level\":\"ERROR\",\"msg\":\"failed to launch nodeclaim\"}\n"
    );
    sim.set_pod_log("karpenter", "karpenter-7c9d", "controller", &after);
    let (code, stdout, stderr) = run(&["--baseline", &baseline.display().to_string()]);
    assert_eq!(code, 4, "{stdout}{stderr}");
    for line in [
        "FAIL  log panic: logs of karpenter (karpenter-7c9d/controller) - 2 panic line(s) (before: 0), e.g. panic: runtime error: index out of range",
        "WARN  log reconcile error: logs of karpenter (karpenter-7c9d/controller) - 3 reconcile error line(s) (before: 0)",
        "WARN  log error-level: logs of karpenter (karpenter-7c9d/controller) - 2 error-level line(s) (before: 1)",
    ] {
        assert!(stdout.contains(line), "{line}:\n{stdout}");
    }
    // Only the last lines are read: a tail of 2 sees the panic, not the error lines before it.
    let (code, stdout, _) = run(&[
        "--log-source",
        "karpenter-tail=karpenter/app.kubernetes.io/name=karpenter:2",
    ]);
    assert_eq!(code, 4, "{stdout}");
    assert!(stdout.contains("logs of karpenter-tail"), "{stdout}");
    assert!(
        !stdout.contains("WARN  log error-level: logs of karpenter-tail"),
        "{stdout}"
    );
    sim.shutdown().await;
}

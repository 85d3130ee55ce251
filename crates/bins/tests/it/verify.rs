//! `upgrade-verify` end to end: the real binary probing a real HTTP endpoint the test serves.

use std::io::{Read, Write};
use std::net::TcpListener;

use upgrade_core::ProcessBuilder;
use upgrade_test::TestContext;

/// Serves `status` with a JSON body to every request, on a free port, in a thread.
fn serve(status: u16, body: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let reply = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    url
}

fn verify(ctx: &TestContext, args: &[&str]) -> (i32, String, String) {
    let mut cmd = ProcessBuilder::new(env!("CARGO_BIN_EXE_upgrade-verify"));
    ctx.apply_env(&mut cmd);
    cmd.args(args);
    upgrade_test::CommandOutput::run(&cmd).parts()
}

fn config(ctx: &TestContext, url: &str) -> String {
    let path = ctx.work().join("verify.yaml");
    std::fs::write(
        &path,
        format!("probes:\n  - name: mlflow-health\n    check: {{type: mlflow-health, url: \"{url}\"}}\n    retry: {{attempts: 1}}\n"),
    )
    .unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn a_healthy_endpoint_passes_and_a_failing_one_fails() {
    let ctx = TestContext::new();
    let ok = serve(200, "OK");
    let (code, stdout, stderr) = verify(&ctx, &["check", "--config", &config(&ctx, &ok)]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let bad = serve(503, "{\"error\": \"db unavailable\"}");
    let (code, stdout, stderr) = verify(&ctx, &["check", "--config", &config(&ctx, &bad)]);
    assert_eq!(code, 4, "{stdout}{stderr}");
    assert!(
        stdout.contains("503"),
        "the finding says what came back: {stdout}"
    );
}

#[test]
fn bad_input_exits_2_with_one_line() {
    let ctx = TestContext::new();
    let (code, _, stderr) = verify(&ctx, &["check", "--config", "no/such.yaml"]);
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with("error: --config: cannot read the verification config no/such.yaml"),
        "{stderr}"
    );
    let path = ctx.work().join("bad.yaml");
    std::fs::write(&path, "probes: 3\n").unwrap();
    let (code, _, stderr) = verify(&ctx, &["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("verification config"), "{stderr}");
    let ok = config(&ctx, "http://127.0.0.1:9");
    let (code, _, stderr) = verify(&ctx, &["baseline", "--config", &ok, "--out", "b.json"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no `prometheus` section"), "{stderr}");

    // The whole exchange, as the user sees it: nothing on stdout, one line naming the flag.
    let mut cmd = ProcessBuilder::new(env!("CARGO_BIN_EXE_upgrade-verify"));
    ctx.apply_env(&mut cmd);
    cmd.args(["check", "--config", path.to_str().unwrap()]);
    let out = upgrade_test::CommandOutput::run(&cmd);
    upgrade_test::assert_command_snapshot!(ctx.insta_settings(), "bad_config", out);
}

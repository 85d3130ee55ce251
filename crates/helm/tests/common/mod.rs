//! Shared helpers of the integration tests: a Helm handle pinned to the test's context, a
//! kubeconfig that points at a closed port, and a tiny HTTP server for a local chart repo.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use upgrade_helm::Helm;
use upgrade_test::TestContext;

/// Both majors, by their tool names.
pub const HELMS: [&str; 2] = ["helm3", "helm4"];

/// A [`Helm`] for `tool` ("helm3"/"helm4") with HOME and XDG folders in the test's root.
pub fn helm_for(ctx: &TestContext, tool: &str) -> Helm {
    helm_builder(ctx, tool).build().expect("helm handle")
}

/// The builder behind [`helm_for`], for tests that add a kubeconfig.
pub fn helm_builder(ctx: &TestContext, tool: &str) -> upgrade_helm::HelmBuilder {
    let home = ctx.home();
    Helm::builder()
        .program(ctx.require_tool(tool))
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
}

/// A port nothing listens on.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A kubeconfig whose only cluster is a closed port on localhost.
pub fn closed_kubeconfig(ctx: &TestContext) -> PathBuf {
    let port = closed_port();
    let path = ctx.work().join("closed-kubeconfig.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: closed\n  cluster:\n    server: https://127.0.0.1:{port}\n\
             contexts:\n- name: closed\n  context:\n    cluster: closed\n    user: nobody\n\
             current-context: closed\nusers:\n- name: nobody\n  user:\n    token: not-a-real-token\n"
        ),
    )
    .unwrap();
    path
}

/// A fixture chart folder: `fixtures/charts/<name>/<version>`.
pub fn fixture_chart(name: &str, version: &str) -> PathBuf {
    TestContext::fixtures_dir()
        .join("charts")
        .join(name)
        .join(version)
}

/// Serves `dir` over HTTP on localhost (GET only) until the runtime ends; returns the base URL.
pub async fn serve_dir(dir: &Path) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let root = dir.to_path_buf();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let root = root.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request);
                let path = text
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("/")
                    .split('?')
                    .next()
                    .unwrap_or("/")
                    .trim_start_matches('/')
                    .to_string();
                let file = root.join(&path);
                let response = match (path.contains(".."), std::fs::read(&file)) {
                    (false, Ok(body)) => {
                        let mut head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        head.extend(body);
                        head
                    }
                    _ => {
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_vec()
                    }
                };
                let _ = socket.write_all(&response).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    url
}

/// A history entry without its time (Helm prints times in its own format), for comparisons.
pub fn strip(
    h: &upgrade_helm::HistoryEntry,
) -> (u32, upgrade_helm::ReleaseStatus, String, String, String) {
    (
        h.revision,
        h.status,
        h.chart.clone(),
        h.app_version.clone(),
        h.description.clone(),
    )
}

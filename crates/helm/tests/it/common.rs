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

/// What a test HTTP server answers for a path: content type, extra headers and body.
pub type Response = (String, Vec<(String, String)>, Vec<u8>);

/// Serves `dir` over HTTP on localhost (GET and HEAD) until the runtime ends; returns the base URL.
pub async fn serve_dir(dir: &Path) -> String {
    let root = dir.to_path_buf();
    serve(move |path| {
        if path.contains("..") {
            return None;
        }
        let body = std::fs::read(root.join(path.trim_start_matches('/'))).ok()?;
        Some(("application/octet-stream".to_string(), Vec::new(), body))
    })
    .await
}

/// A read-only OCI registry holding one Helm chart archive at `repository:tag` (the
/// distribution API subset `helm pull` uses); returns `host:port`.
pub async fn serve_oci_chart(tgz: &Path, repository: &str, tag: &str, name: &str) -> String {
    use sha2::Digest;
    let digest = |bytes: &[u8]| format!("sha256:{:x}", sha2::Sha256::digest(bytes));
    let layer = std::fs::read(tgz).unwrap();
    let config =
        serde_json::to_vec(&serde_json::json!({"apiVersion": "v2", "name": name, "version": tag}))
            .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.cncf.helm.config.v1+json", "digest": digest(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip", "digest": digest(&layer), "size": layer.len()}],
    }))
    .unwrap();
    let manifest_digest = digest(&manifest);
    let mut routes = std::collections::HashMap::new();
    routes.insert(
        "/v2/".to_string(),
        ("application/json".to_string(), b"{}".to_vec()),
    );
    let manifest_entry = (
        "application/vnd.oci.image.manifest.v1+json".to_string(),
        manifest.clone(),
    );
    routes.insert(
        format!("/v2/{repository}/manifests/{tag}"),
        manifest_entry.clone(),
    );
    routes.insert(
        format!("/v2/{repository}/manifests/{manifest_digest}"),
        manifest_entry,
    );
    routes.insert(
        format!("/v2/{repository}/tags/list"),
        (
            "application/json".to_string(),
            serde_json::to_vec(&serde_json::json!({"name": repository, "tags": [tag]})).unwrap(),
        ),
    );
    for blob in [&config, &layer] {
        routes.insert(
            format!("/v2/{repository}/blobs/{}", digest(blob)),
            ("application/octet-stream".to_string(), blob.clone()),
        );
    }
    let url = serve(move |path| {
        let (content_type, body) = routes.get(path)?.clone();
        let headers = if path.contains("/manifests/") {
            vec![("Docker-Content-Digest".to_string(), manifest_digest.clone())]
        } else {
            Vec::new()
        };
        Some((content_type, headers, body))
    })
    .await;
    url.trim_start_matches("http://").to_string()
}

/// Serves what `resolve` answers (GET and HEAD; 404 for `None`) on localhost until the runtime
/// ends; returns the base URL.
pub async fn serve<F>(resolve: F) -> String
where
    F: Fn(&str) -> Option<Response> + Send + Sync + 'static,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let resolve = std::sync::Arc::new(resolve);
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let resolve = resolve.clone();
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
                let mut words = text.split_whitespace();
                let method = words.next().unwrap_or_default().to_string();
                let path = words
                    .next()
                    .unwrap_or("/")
                    .split('?')
                    .next()
                    .unwrap_or("/")
                    .to_string();
                let response = match resolve(&path) {
                    Some((content_type, headers, body)) => {
                        let mut head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
                            body.len()
                        );
                        for (k, v) in headers {
                            head.push_str(&format!("{k}: {v}\r\n"));
                        }
                        head.push_str("\r\n");
                        let mut bytes = head.into_bytes();
                        if method != "HEAD" {
                            bytes.extend(body);
                        }
                        bytes
                    }
                    None => {
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

/// Writes a one-ConfigMap chart named `name` with this `kubeVersion` into `dir`.
pub fn kube_version_chart(dir: &Path, name: &str, constraint: &str) {
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    std::fs::write(
        dir.join("Chart.yaml"),
        format!("apiVersion: v2\nname: {name}\nversion: 0.1.0\nkubeVersion: \"{constraint}\"\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("templates/cm.yaml"),
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n"),
    )
    .unwrap();
}

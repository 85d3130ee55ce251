//! Shared test support: servers run through upgrade-core's runner on a background thread,
//! free ports, readiness polling, and a metrics endpoint whose counters the test controls.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use upgrade_core::process::StopSignal;
use upgrade_core::{ProcessBuilder, ProcessError, ProcessOutput};

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// A program found on PATH (or at `fallback`); **fails the test** naming the install command.
pub fn require_path_tool(name: &str, fallback: &str) -> PathBuf {
    let from_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if let Some(path) = from_path {
        return path;
    }
    let fallback = PathBuf::from(fallback);
    if fallback.is_file() {
        return fallback;
    }
    panic!(
        "the test needs `{name}`, which is not on PATH nor at {}.\n\
         Run `./dev tools` (scripts/install-verify-tools.sh installs it from Debian: \
         apt-get update && apt-get install -y --no-install-recommends {name})",
        fallback.display()
    );
}

/// A long-running server started through the runner on its own thread; stopped (SIGINT, then
/// SIGKILL after the grace period) when dropped.
pub struct Server {
    name: String,
    stop: StopSignal,
    thread: Option<JoinHandle<Result<ProcessOutput, ProcessError>>>,
}

impl Server {
    /// Starts `cmd` (at most 10 minutes, as a safety net).
    pub fn start(name: &str, mut cmd: ProcessBuilder) -> Server {
        let stop = StopSignal::new();
        cmd.stop_signal(stop.clone())
            .timeout(Duration::from_secs(600))
            .grace_period(Duration::from_secs(5));
        let thread = std::thread::spawn(move || cmd.output());
        Server {
            name: name.to_string(),
            stop,
            thread: Some(thread),
        }
    }

    /// Waits until `url` answers 200; panics with the server's output if it exits or does
    /// not answer within `limit`.
    pub async fn wait_ready(&mut self, url: &str, limit: Duration) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(r) = client.get(url).timeout(Duration::from_secs(2)).send().await
                && r.status().is_success()
            {
                return;
            }
            if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
                let out = self.thread.take().expect("present").join();
                panic!("{} exited before it was ready at {url}: {out:?}", self.name);
            }
            if Instant::now() > deadline {
                let out = self.shutdown();
                panic!(
                    "{} did not answer {url} within {limit:?}; its output:\n{}",
                    self.name, out
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops the server and returns its output (for failure messages).
    pub fn shutdown(&mut self) -> String {
        self.stop.stop();
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(Ok(out))) => format!("{}\n{}", out.stdout_lossy(), out.stderr_lossy()),
            Some(Ok(Err(e))) => format!("{e}\n{}", e.stderr().unwrap_or_default()),
            Some(Err(_)) => "the runner thread panicked".into(),
            None => String::new(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Counters and a latency histogram a test sets, served in the Prometheus text format at
/// `/metrics` with the labels a Knative queue-proxy puts on KServe revisions.
#[derive(Clone, Default)]
pub struct FakeTraffic {
    inner: Arc<Mutex<Traffic>>,
}

#[derive(Default)]
struct Traffic {
    /// (revision, response_code_class) -> count
    requests: std::collections::BTreeMap<(String, String), u64>,
    /// revision -> observations in ms
    latencies: std::collections::BTreeMap<String, Vec<f64>>,
}

const BUCKETS: [f64; 8] = [5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0];

impl FakeTraffic {
    /// Records `ok` 2xx and `errors` 5xx requests of `revision`, each taking `latency_ms`.
    pub fn serve(&self, revision: &str, ok: u64, errors: u64, latency_ms: f64) {
        let mut t = self.inner.lock().unwrap();
        *t.requests
            .entry((revision.into(), "2xx".into()))
            .or_default() += ok;
        *t.requests
            .entry((revision.into(), "5xx".into()))
            .or_default() += errors;
        t.latencies
            .entry(revision.into())
            .or_default()
            .extend(std::iter::repeat_n(latency_ms, (ok + errors) as usize));
    }

    fn render(&self) -> String {
        let t = self.inner.lock().unwrap();
        let mut out = String::from("# TYPE revision_app_request_count counter\n");
        for ((rev, class), n) in &t.requests {
            out.push_str(&format!(
                "revision_app_request_count{{namespace=\"mlops\",revision_name=\"{rev}\",response_code_class=\"{class}\"}} {n}\n"
            ));
        }
        out.push_str("# TYPE revision_app_request_latencies histogram\n");
        for (rev, obs) in &t.latencies {
            let labels = format!("namespace=\"mlops\",revision_name=\"{rev}\"");
            for le in BUCKETS {
                let n = obs.iter().filter(|v| **v <= le).count();
                out.push_str(&format!(
                    "revision_app_request_latencies_bucket{{{labels},le=\"{le}\"}} {n}\n"
                ));
            }
            out.push_str(&format!(
                "revision_app_request_latencies_bucket{{{labels},le=\"+Inf\"}} {}\n",
                obs.len()
            ));
            out.push_str(&format!(
                "revision_app_request_latencies_sum{{{labels}}} {}\n",
                obs.iter().sum::<f64>()
            ));
            out.push_str(&format!(
                "revision_app_request_latencies_count{{{labels}}} {}\n",
                obs.len()
            ));
        }
        out
    }

    /// Serves `/metrics` on a free port; returns its address.
    pub async fn start(&self) -> SocketAddr {
        let this = self.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let body = this.render();
                async move { body }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    }
}

/// A real Prometheus scraping `target` every second, with its data in a temp folder.
pub struct PrometheusServer {
    /// Its base URL.
    pub url: String,
    _server: Server,
    _data: tempfile::TempDir,
}

impl PrometheusServer {
    /// Starts Prometheus scraping `target` as job `job` and waits for it to be ready.
    pub async fn start(
        ctx: &upgrade_test::TestContext,
        job: &str,
        target: SocketAddr,
    ) -> PrometheusServer {
        let prometheus = require_path_tool("prometheus", "/usr/bin/prometheus");
        let data = tempfile::tempdir().unwrap();
        let config = data.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let mut cmd = ProcessBuilder::new(prometheus);
        ctx.apply_env(&mut cmd);
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                data.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn");
        let mut server = Server::start("prometheus", cmd);
        let url = format!("http://127.0.0.1:{port}");
        server
            .wait_ready(&format!("{url}/-/ready"), Duration::from_secs(60))
            .await;
        PrometheusServer {
            url,
            _server: server,
            _data: data,
        }
    }
}

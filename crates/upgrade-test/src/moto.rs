//! moto's server (PyPI `moto[server]`, installed by `./dev tools`) on a loopback port: the
//! AWS services the real AWS CLI talks to in tests (S3, RDS, IAM, Route 53, ELBv2, Backup,
//! EC2 Auto Scaling),
//! stopped when dropped.

use std::time::{Duration, Instant};

use upgrade_core::ProcessBuilder;
use upgrade_core::process::StopSignal;

/// A running moto server.
pub struct MotoServer {
    url: String,
    stop: StopSignal,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MotoServer {
    /// Starts `moto_server` on a free loopback port and waits until it answers (panics,
    /// naming `./dev tools`, when it is not installed or does not start).
    pub fn start() -> MotoServer {
        let program = crate::require_tool("moto_server");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let stop = StopSignal::new();
        let mut cmd = ProcessBuilder::new(program);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stop_signal(stop.clone())
            .timeout(Duration::from_secs(3600))
            .grace_period(Duration::from_secs(2));
        let thread = std::thread::spawn(move || {
            let _ = cmd.output();
        });
        let server = MotoServer {
            url: format!("http://127.0.0.1:{port}"),
            stop,
            thread: Some(thread),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not start on port {port} within a minute"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// `http://127.0.0.1:<port>`, for `aws --endpoint-url` (awscli v1 honours
    /// `AWS_ENDPOINT_URL` for some services only, so pass the flag).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs the real AWS CLI against this server (`aws ARGS --endpoint-url URL --output
    /// json`) and returns its answer (null when it printed nothing); panics naming the
    /// command when it fails.
    pub fn aws(&self, args: &[&str]) -> serde_json::Value {
        self.aws_at(&self.url, args)
    }

    /// [`MotoServer::aws`] against another endpoint with the same test credentials (a
    /// simulated service moto lacks, such as kube-sim's `/backup`).
    pub fn aws_at(&self, endpoint: &str, args: &[&str]) -> serde_json::Value {
        let mut cmd = ProcessBuilder::new(crate::require_tool("aws"));
        for (key, value) in self.aws_env() {
            cmd.env(key, value);
        }
        cmd.args(args)
            .args(["--endpoint-url", endpoint, "--output", "json"])
            .env("AWS_PAGER", "")
            .timeout(Duration::from_secs(60));
        let out = cmd.exec().unwrap_or_else(|e| panic!("aws {args:?}: {e}"));
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// An Auto Scaling group `name` of `size` instances (a launch template of moto's default
    /// AMI; moto launches the instances at once), as an EKS managed node group's group; the
    /// instance ids, sorted.
    pub fn auto_scaling_group(&self, name: &str, size: u32) -> Vec<String> {
        let template = format!("{name}-template");
        self.aws(&[
            "ec2",
            "create-launch-template",
            "--launch-template-name",
            &template,
            "--launch-template-data",
            r#"{"ImageId":"ami-12c6146b","InstanceType":"m5.2xlarge"}"#,
        ]);
        let size = size.to_string();
        self.aws(&[
            "autoscaling",
            "create-auto-scaling-group",
            "--auto-scaling-group-name",
            name,
            "--launch-template",
            &format!("LaunchTemplateName={template}"),
            "--min-size",
            &size,
            "--max-size",
            "10",
            "--desired-capacity",
            &size,
            "--availability-zones",
            "us-east-1a",
        ]);
        self.auto_scaling_instances(name)
    }

    /// The instance ids of Auto Scaling group `name`, sorted.
    pub fn auto_scaling_instances(&self, name: &str) -> Vec<String> {
        let groups = self.aws(&[
            "autoscaling",
            "describe-auto-scaling-groups",
            "--auto-scaling-group-names",
            name,
        ]);
        let mut ids: Vec<String> = groups["AutoScalingGroups"][0]["Instances"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["InstanceId"].as_str().map(str::to_string))
            .collect();
        ids.sort();
        ids
    }

    /// The environment that points the AWS CLI at this server with test credentials.
    pub fn aws_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.url.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_DEFAULT_REGION", "us-east-1".into()),
            ("AWS_CONFIG_FILE", "/dev/null".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
        ]
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

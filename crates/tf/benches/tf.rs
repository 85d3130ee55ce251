//! Benchmarks for `upgrade-tf`, printed as figures (run: `cargo bench -p upgrade-tf`).
//!
//! 1. Wrapper overhead: `Terraform::plan` + `Terraform::show_plan` against the same raw
//!    terraform commands (the same `plan` argv + `show -json`) on the same module, median of several
//!    runs each, interleaved. Goal: ratio <= 1.05.
//! 2. Parsing a synthetic plan JSON with 100,000 resource changes: time and peak memory
//!    (peak RSS above the baseline, Linux `/proc/self/status` VmHWM after a reset), plus
//!    the review of that plan.

use std::time::{Duration, Instant};

use upgrade_test::TestContext;
use upgrade_tf::{Plan, PlanOptions, PlanReview, ReviewRules, Terraform};

const RUNS: usize = 21;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn wrapper_overhead() {
    let ctx = TestContext::new();
    let module = ctx.copy_fixture("terraform/smoke");
    let tf = Terraform::builder(&module)
        .base_command(ctx.command("terraform"))
        .build()
        .expect("a terraform handle");
    tf.version().expect("terraform runs"); // detected once per handle, as in real use
    // The raw side runs exactly the argv the wrapper builds (same flags, its own plan file),
    // so the ratio is the wrapper's own cost: env policy, digests, JSON decoding.
    let raw_plan_args = tf
        .plan_args(&PlanOptions::default().out("raw.tfplan"))
        .expect("plan argv");
    let raw = |args: &[std::ffi::OsString]| {
        let mut cmd = ctx.command("terraform");
        cmd.cwd(&module).env("TF_IN_AUTOMATION", "1").args(args);
        let out = cmd.output().expect("raw terraform runs");
        assert!(
            matches!(out.status.code(), Some(0 | 2)),
            "{}",
            out.stderr_lossy()
        );
        out
    };
    let show_args: Vec<std::ffi::OsString> = ["show", "-json", "-no-color", "raw.tfplan"]
        .iter()
        .map(Into::into)
        .collect();
    let run_raw = || {
        let start = Instant::now();
        raw(&raw_plan_args);
        let shown = raw(&show_args);
        let elapsed = start.elapsed();
        assert!(!shown.stdout.is_empty());
        elapsed
    };
    let run_wrapper = || {
        let start = Instant::now();
        let run = tf.plan(&PlanOptions::default()).expect("plan");
        let plan = tf.show_plan(&run.plan).expect("show");
        let elapsed = start.elapsed();
        assert_eq!(plan.resource_changes.len(), 2);
        elapsed
    };
    // Warm the page cache and terraform's plugin discovery once each.
    run_raw();
    run_wrapper();
    let (mut raw_samples, mut wrapper_samples) = (Vec::new(), Vec::new());
    for i in 0..RUNS {
        // Alternate who goes first, so neither side always runs on a warmer machine.
        if i % 2 == 0 {
            raw_samples.push(run_raw());
            wrapper_samples.push(run_wrapper());
        } else {
            wrapper_samples.push(run_wrapper());
            raw_samples.push(run_raw());
        }
    }
    let (r, w) = (median(raw_samples), median(wrapper_samples));
    println!("plan + show on fixtures/terraform/smoke, median of {RUNS} interleaved runs:");
    println!("  raw terraform : {:>8.1} ms", r.as_secs_f64() * 1e3);
    println!("  upgrade-tf    : {:>8.1} ms", w.as_secs_f64() * 1e3);
    println!(
        "  ratio         : {:>8.3}  (goal <= 1.05)",
        w.as_secs_f64() / r.as_secs_f64()
    );
}

fn synthetic_plan(changes: usize) -> String {
    let actions = [
        r#"["update"]"#,
        r#"["create"]"#,
        r#"["no-op"]"#,
        r#"["delete","create"]"#,
        r#"["read"]"#,
    ];
    let mut out = String::with_capacity(changes * 600);
    out.push_str(r#"{"format_version":"1.2","terraform_version":"1.15.5","resource_changes":["#);
    for i in 0..changes {
        if i > 0 {
            out.push(',');
        }
        let action = actions[i % actions.len()];
        out.push_str(&format!(
            r#"{{"address":"aws_eks_node_group.ng[{i}]","mode":"managed","type":"aws_eks_node_group","name":"ng","index":{i},"provider_name":"registry.terraform.io/hashicorp/aws","change":{{"actions":{action},"before":{{"version":"1.30","release_version":"1.30.0-20250101","scaling_config":[{{"desired_size":2,"min_size":1,"max_size":4}}],"tags":{{"team":"mlops","n":"{i}"}}}},"after":{{"version":"1.31","release_version":null,"scaling_config":[{{"desired_size":2,"min_size":1,"max_size":4}}],"tags":{{"team":"mlops","n":"{i}"}}}},"after_unknown":{{"release_version":true}},"before_sensitive":{{}},"after_sensitive":{{}},"replace_paths":[["subnet_ids"]]}}}}"#
        ));
    }
    out.push_str(r#"],"applyable":true,"complete":true,"errored":false}"#);
    out
}

/// (current RSS, peak RSS) in KiB, from /proc/self/status.
fn rss_kib() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn parse_100k() {
    const CHANGES: usize = 100_000;
    let json = synthetic_plan(CHANGES);
    // Reset the peak-RSS counter so VmHWM measures the parse alone (Linux >= 4.0).
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let baseline = rss_kib();
    let start = Instant::now();
    let plan = Plan::from_slice(json.as_bytes()).expect("the synthetic plan parses");
    let parse = start.elapsed();
    let after_parse = rss_kib();
    let start = Instant::now();
    let review = PlanReview::new(&plan, &ReviewRules::default());
    let review_time = start.elapsed();
    assert_eq!(plan.resource_changes.len(), CHANGES);
    println!(
        "synthetic plan JSON, {CHANGES} resource changes ({:.1} MiB):",
        json.len() as f64 / (1024.0 * 1024.0)
    );
    println!("  parse         : {:>8.1} ms", parse.as_secs_f64() * 1e3);
    match (reset, baseline, after_parse) {
        (true, Some((base, _)), Some((_, peak))) => println!(
            "  peak memory   : {:>8.1} MiB above the {:.1} MiB baseline (VmHWM)",
            peak.saturating_sub(base) as f64 / 1024.0,
            base as f64 / 1024.0
        ),
        _ => println!("  peak memory   : not measurable here (needs Linux /proc)"),
    }
    println!(
        "  review        : {:>8.1} ms ({} changes reviewed, {} no-ops skipped)",
        review_time.as_secs_f64() * 1e3,
        review.changes.len(),
        CHANGES - review.changes.len()
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this once quickly with no
    // flag, so only the real bench run does the slow part.
    if !std::env::args().any(|a| a == "--bench") {
        println!("upgrade-tf benches: run `cargo bench -p upgrade-tf` to measure");
        return;
    }
    wrapper_overhead();
    parse_100k();
}

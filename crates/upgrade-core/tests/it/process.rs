//! The runner's behaviours, each against a real child process (`/bin/sh`).

use std::time::{Duration, Instant};

use upgrade_core::process::{ProcessBuilder, ProcessError, StopMethod, Stream};
use upgrade_core::tool::Tool;

fn sh(script: &str) -> ProcessBuilder {
    let mut cmd = ProcessBuilder::new("/bin/sh");
    cmd.arg("-c").arg(script);
    cmd
}

#[test]
fn sleeping_child_is_interrupted_at_its_timeout() {
    let mut cmd = sh("echo started; sleep 30");
    cmd.timeout(Duration::from_millis(300))
        .grace_period(Duration::from_secs(5));
    let started = Instant::now();
    let err = cmd.exec().unwrap_err();
    let elapsed = started.elapsed();
    match &err {
        ProcessError::TimedOut {
            after, how, stdout, ..
        } => {
            assert_eq!(*after, Duration::from_millis(300));
            assert_eq!(
                *how,
                StopMethod::Interrupt,
                "sh dies on SIGINT, no kill needed"
            );
            assert!(
                stdout.contains("started"),
                "output before the stop is kept: {stdout:?}"
            );
        }
        other => panic!("expected TimedOut, got {other:?}"),
    }
    assert!(
        elapsed < Duration::from_secs(5),
        "stopped promptly, took {elapsed:?}"
    );
}

#[test]
fn child_ignoring_sigint_is_killed_after_the_grace_period() {
    // `exec` keeps SIGINT ignored in sleep itself, so only SIGKILL can stop it.
    let mut cmd = sh("trap '' INT; exec sleep 30");
    cmd.timeout(Duration::from_millis(200))
        .grace_period(Duration::from_millis(400));
    let started = Instant::now();
    let err = cmd.exec().unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(
            err,
            ProcessError::TimedOut {
                how: StopMethod::Kill,
                ..
            }
        ),
        "got {err:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(600),
        "waited the grace period: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(5), "then killed: {elapsed:?}");
}

#[test]
fn only_one_sigint_is_ever_sent() {
    // The child counts interrupts and exits on its own after the first; a second SIGINT
    // would be counted before the exit.
    let mut cmd = sh("n=0; trap 'n=$((n+1)); echo \"sigint $n\"' INT; \
         while [ $n -lt 1 ]; do sleep 0.05; done; sleep 0.5; echo \"total $n\"");
    cmd.timeout(Duration::from_millis(200))
        .grace_period(Duration::from_secs(3));
    let err = cmd.exec().unwrap_err();
    let ProcessError::TimedOut { stdout, how, .. } = &err else {
        panic!("expected TimedOut, got {err:?}");
    };
    assert_eq!(*how, StopMethod::Interrupt);
    assert!(stdout.contains("total 1"), "exactly one SIGINT: {stdout:?}");
}

#[test]
fn a_stop_request_interrupts_the_child_gracefully() {
    use upgrade_core::process::StopSignal;
    let signal = StopSignal::new();
    let mut cmd =
        sh("trap 'echo got-sigint; exit 130' INT; echo running; while :; do sleep 0.05; done");
    cmd.stop_signal(signal.clone())
        .grace_period(Duration::from_secs(5));
    let stopper = {
        let signal = signal.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            signal.stop();
        })
    };
    let err = cmd.exec().unwrap_err();
    stopper.join().unwrap();
    match &err {
        ProcessError::Stopped { how, stdout, .. } => {
            assert_eq!(*how, StopMethod::Interrupt);
            assert!(
                stdout.contains("got-sigint"),
                "the child saw SIGINT: {stdout:?}"
            );
        }
        other => panic!("expected Stopped, got {other:?}"),
    }
    // Another command does not watch that signal.
    assert!(sh("true").exec().is_ok());
}

#[test]
fn non_zero_exit_carries_code_and_stderr() {
    let err = sh("echo out-line; echo 'Error: state lock held' >&2; exit 3")
        .exec()
        .unwrap_err();
    match &err {
        ProcessError::Exited {
            code,
            stderr,
            stdout,
            ..
        } => {
            assert_eq!(*code, Some(3));
            assert!(stderr.contains("state lock held"));
            assert!(stdout.contains("out-line"));
        }
        other => panic!("expected Exited, got {other:?}"),
    }
    let rendered = err.to_string();
    assert!(rendered.contains("exited with code 3"), "{rendered}");
    assert!(
        rendered.contains("--- stderr\nError: state lock held"),
        "{rendered}"
    );
    assert_eq!(err.exit_code(), Some(3));
}

#[test]
fn killed_by_signal_is_reported_as_signal() {
    let err = sh("kill -TERM $$").exec().unwrap_err();
    assert!(
        matches!(
            err,
            ProcessError::Exited {
                code: None,
                signal: Some(15),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("killed by signal 15 (SIGTERM)"));
}

#[test]
fn set_password_never_reaches_display_or_errors() {
    // The "tool" echoes its argv to both streams and fails, as a careless tool might.
    let mut cmd = sh("echo \"$@\"; echo \"$@\" >&2; exit 1");
    cmd.arg("helm")
        .args([
            "upgrade",
            "mlflow",
            "chart",
            "--set",
            "auth.password=hunter2-secret,replicas=2",
        ])
        .args(["--set-string=token=abcd1234efgh"]);
    let shown = cmd.to_string();
    assert!(!shown.contains("hunter2-secret"), "{shown}");
    assert!(!shown.contains("abcd1234efgh"), "{shown}");
    assert!(shown.contains("auth.password=***,replicas=***"), "{shown}");

    let err = cmd.exec().unwrap_err();
    let debug = format!("{err:?}");
    let display = err.to_string();
    for text in [&debug, &display] {
        assert!(!text.contains("hunter2-secret"), "leaked: {text}");
        assert!(!text.contains("abcd1234efgh"), "leaked: {text}");
    }
    assert!(display.contains("auth.password=***"));
}

#[test]
fn marked_secret_is_scrubbed_from_timeouts_and_parse_errors() {
    let mut cmd = sh("echo 'token=tok-XYZ-123'; sleep 5");
    cmd.secret("tok-XYZ-123")
        .timeout(Duration::from_millis(200));
    let err = cmd.exec().unwrap_err();
    assert!(!format!("{err:?} {err}").contains("tok-XYZ-123"));

    let mut cmd = sh("echo 'not json tok-XYZ-123'");
    cmd.secret("tok-XYZ-123");
    let err = cmd
        .exec_json::<serde_json::Value>("a JSON object")
        .unwrap_err();
    assert!(matches!(err, ProcessError::Parse { .. }), "{err:?}");
    assert!(!format!("{err:?} {err}").contains("tok-XYZ-123"));
}

#[test]
fn missing_program_is_not_found_with_the_install_hint() {
    const FAKE: Tool = Tool {
        program: "definitely-not-installed-tool",
        override_var: "DEFINITELY_NOT_INSTALLED_TOOL_BIN",
        install_hint: "run `./dev tools`",
    };
    let err = FAKE.resolve().unwrap_err();
    match &err {
        ProcessError::NotFound { program, hint, .. } => {
            assert_eq!(program, "definitely-not-installed-tool");
            assert_eq!(hint, "run `./dev tools`");
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(err.to_string().contains("hint: run `./dev tools`"));

    let err = FAKE
        .resolve_with(Some(std::path::Path::new("/nonexistent/terraform")))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("/nonexistent/terraform, which is not an executable file")
    );
}

#[test]
fn a_program_that_cannot_start_is_a_start_error() {
    let err = ProcessBuilder::new("/nonexistent/bin/tool")
        .exec()
        .unwrap_err();
    assert!(matches!(err, ProcessError::Start { .. }), "{err:?}");
}

#[test]
fn resolved_paths_are_absolute() {
    let sh = Tool {
        program: "sh",
        override_var: "UPGRADE_TEST_UNSET_VAR",
        install_hint: "",
    }
    .resolve()
    .unwrap();
    assert!(sh.is_absolute(), "{}", sh.display());
}

#[test]
fn both_pipes_are_drained_without_deadlock() {
    // 2 MiB on each stream, far past the 64 KiB pipe buffer, interleaved.
    let out = sh("i=0; while [ $i -lt 2048 ]; do \
                 head -c 1023 /dev/zero | tr '\\0' o; echo; \
                 head -c 1023 /dev/zero | tr '\\0' e >&2; echo >&2; i=$((i+1)); done")
    .exec()
    .unwrap();
    assert_eq!(out.stdout.len(), 2048 * 1024);
    assert_eq!(out.stderr.len(), 2048 * 1024);
}

#[test]
fn lines_are_streamed_to_the_callback_in_order() {
    let mut seen = Vec::new();
    let out = sh("echo one; echo two >&2; sleep 0.2; printf 'three'")
        .exec_with_streaming(&mut |stream, line| seen.push((stream, line.to_string())))
        .unwrap();
    // Order holds within a stream; across streams, only for lines far enough apart in time.
    let of = |want: Stream| -> Vec<&str> {
        seen.iter()
            .filter(|(s, _)| *s == want)
            .map(|(_, l)| l.as_str())
            .collect()
    };
    assert_eq!(of(Stream::Stdout), ["one", "three"]);
    assert_eq!(of(Stream::Stderr), ["two"]);
    assert_eq!(seen.last().unwrap().1, "three");
    assert_eq!(out.stdout_lossy(), "one\nthree");
}

#[test]
fn env_cwd_and_stdin_reach_the_child() {
    let dir = tempfile::tempdir().unwrap();
    // SAFETY-free way to have an inherited variable to remove: the runner's own env map.
    let mut cmd = sh("printf '%s|%s|%s|' \"$GREETING\" \"${HOME-unset}\" \"$(pwd)\"; cat");
    cmd.env("GREETING", "hello")
        .env_remove("HOME")
        .cwd(dir.path())
        .stdin(b"from-stdin".to_vec());
    let out = cmd.exec().unwrap();
    let expected = format!(
        "hello|unset|{}|from-stdin",
        dir.path().canonicalize().unwrap().display()
    );
    assert_eq!(out.stdout_lossy(), expected);
}

#[test]
fn stdin_is_null_by_default_so_nothing_can_prompt() {
    let out = sh("read answer; echo \"got:$answer\"").output().unwrap();
    assert_eq!(out.stdout_lossy(), "got:\n");
}

#[test]
fn orphaned_grandchild_holding_the_pipes_does_not_hang_the_runner() {
    let started = Instant::now();
    let out = sh("sleep 20 & echo parent-done").exec().unwrap();
    assert!(out.stdout_lossy().contains("parent-done"));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn slow_child_does_not_starve_a_current_thread_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let child = tokio::spawn(async { sh("sleep 0.6; echo done").exec_async().await });
        // If the child ran on this (only) runtime thread, these ticks could not happen
        // until it finished.
        let started = Instant::now();
        let mut ticks = 0;
        while !child.is_finished() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            ticks += 1;
        }
        let out = child.await.unwrap().unwrap();
        assert_eq!(out.stdout_lossy(), "done\n");
        assert!(ticks >= 5, "only {ticks} ticks in {:?}", started.elapsed());
    });
}

#[test]
fn error_rendering() {
    let mut cmd = ProcessBuilder::new("/usr/bin/helm");
    cmd.args([
        "upgrade",
        "kserve",
        "kserve/kserve",
        "--set",
        "secret=abcdef",
    ]);
    let output = upgrade_core::ProcessOutput {
        status: std::os::unix::process::ExitStatusExt::from_raw(1 << 8),
        stdout: Vec::new(),
        stderr: b"Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress\nsecret abcdef\n".to_vec(),
        elapsed: Duration::ZERO,
    };
    insta::assert_snapshot!(cmd.exited_error(&output), @r"
    `/usr/bin/helm upgrade kserve kserve/kserve --set 'secret=***'` exited with code 1
    --- stderr
    Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress
    secret ***
    ");
}

/// What a wrapper's error made of each failure, to check the adapter's routing.
#[derive(Debug, PartialEq, Eq)]
enum Routed {
    Exited(Option<i32>),
    TimedOut,
    Stopped,
    NotRun,
    Unparseable,
}

impl upgrade_core::process::ToolError for Routed {
    fn exited(error: ProcessError) -> Self {
        Routed::Exited(error.exit_code())
    }
    fn timed_out(_: ProcessError) -> Self {
        Routed::TimedOut
    }
    fn stopped(error: ProcessError) -> Self {
        assert!(error.is_stopped());
        Routed::Stopped
    }
    fn not_run(_: ProcessError) -> Self {
        Routed::NotRun
    }
    fn unparseable(_: ProcessError) -> Self {
        Routed::Unparseable
    }
}

#[test]
fn every_runner_failure_reaches_its_own_adapter_method() {
    use upgrade_core::process::StopSignal;
    let routed = |err: ProcessError| err.into_tool_error::<Routed>();
    assert_eq!(
        routed(sh("exit 3").exec().unwrap_err()),
        Routed::Exited(Some(3))
    );
    let mut slow = sh("sleep 5");
    slow.timeout(Duration::from_millis(100));
    assert_eq!(routed(slow.exec().unwrap_err()), Routed::TimedOut);
    let stop = StopSignal::new();
    stop.stop();
    let mut stopped = sh("sleep 5");
    stopped.stop_signal(stop);
    assert_eq!(routed(stopped.exec().unwrap_err()), Routed::Stopped);
    assert_eq!(
        routed(
            ProcessBuilder::new("/nonexistent/program")
                .exec()
                .unwrap_err()
        ),
        Routed::NotRun
    );
    let parse = sh("echo not-json")
        .exec_json::<serde_json::Value>("a JSON document")
        .map(|(value, _)| value)
        .unwrap_err();
    assert_eq!(routed(parse), Routed::Unparseable);
}

/// Runs `cmd` on a thread; `None` when it has not returned after `limit` (the child is then
/// killed by its process group so the test run does not leak it).
fn exec_within(cmd: ProcessBuilder, limit: Duration) -> Option<Result<(), ProcessError>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(cmd.exec().map(drop));
    });
    rx.recv_timeout(limit).ok()
}

#[test]
fn a_child_that_never_stops_writing_is_still_timed_out_and_its_output_capped() {
    // `yes` writes as fast as the pipe drains: the runner must still see the deadline.
    let mut cmd = sh("exec yes 'chatty output line'");
    cmd.timeout(Duration::from_millis(300))
        .grace_period(Duration::from_secs(2));
    let started = Instant::now();
    let result = exec_within(cmd, Duration::from_secs(20));
    let Some(result) = result else {
        let _ = ProcessBuilder::new("/usr/bin/pkill")
            .args(["-f", "chatty output line"])
            .exec();
        panic!("a chatty child was never timed out (still running after 20s)");
    };
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped within the grace period: {:?}",
        started.elapsed()
    );
    match result.unwrap_err() {
        ProcessError::TimedOut { how, stdout, .. } => {
            assert_eq!(how, StopMethod::Interrupt, "yes dies on SIGINT");
            assert!(stdout.contains("chatty output line"), "the head is kept");
        }
        other => panic!("expected TimedOut, got {other:?}"),
    }
}

#[test]
fn captured_output_keeps_head_and_tail_and_says_what_was_dropped() {
    // 8 MiB of numbered lines through a 1 MiB cap.
    let mut cmd = sh("seq 1 1000000; echo the-last-line");
    cmd.capture_limit(1024 * 1024);
    let out = cmd.exec().unwrap();
    let text = out.stdout_lossy();
    assert!(
        text.len() < 1024 * 1024 + 200,
        "capped: {} bytes",
        text.len()
    );
    assert!(text.starts_with("1\n2\n3\n"), "the head is kept");
    assert!(
        text.trim_end().ends_with("the-last-line"),
        "the tail is kept"
    );
    assert!(text.contains("bytes of output dropped"), "the gap is named");
    // A stop request is also seen while the child writes.
    let stop = upgrade_core::process::StopSignal::new();
    let mut chatty = sh("exec yes 'stop me'");
    chatty
        .stop_signal(stop.clone())
        .grace_period(Duration::from_secs(2));
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        stop.stop();
    });
    let result = exec_within(chatty, Duration::from_secs(20));
    stopper.join().unwrap();
    let Some(result) = result else {
        let _ = ProcessBuilder::new("/usr/bin/pkill")
            .args(["-f", "stop me"])
            .exec();
        panic!("Ctrl-C was ignored while the child kept writing (still running after 20s)");
    };
    assert!(
        matches!(result, Err(ProcessError::Stopped { .. })),
        "{result:?}"
    );
}

//! The project's shell entry points (`dev`, `.ci/run`, `scripts/*.sh`) run under
//! `set -o pipefail`: a pipe into a reader that stops early (`head`) kills the writer with
//! SIGPIPE when it still has output, and the whole script then exits 141 with no message,
//! depending on timing. Seen: the first `./dev test` on a fresh machine did exactly that
//! after installing the tools (`terraform version | head -n1`).

use upgrade_test::TestContext;

#[test]
fn no_pipefail_script_pipes_into_a_reader_that_stops_early() {
    let root = TestContext::workspace_root();
    let mut scripts = vec![root.join("dev"), root.join(".ci/run")];
    for entry in std::fs::read_dir(root.join("scripts")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "sh") {
            scripts.push(path);
        }
    }
    let mut offending = Vec::new();
    for script in &scripts {
        let text = std::fs::read_to_string(script).unwrap();
        if !text.contains("pipefail") {
            continue;
        }
        for (n, line) in text.lines().enumerate() {
            let code = line.split(" #").next().unwrap_or_default();
            if ["| head", "| grep -q", "| grep -m"]
                .iter()
                .any(|early| code.contains(early))
            {
                offending.push(format!("{}:{}: {line}", script.display(), n + 1));
            }
        }
    }
    assert!(
        offending.is_empty(),
        "these pipes can exit 141 under pipefail (read the whole input instead, e.g. `sed -n 1p`):\n{}",
        offending.join("\n")
    );
}

//! Test support for the upgrade toolkit (internal; not published).
//!
//! [`TestContext`] gives each test a temporary root with its own `HOME` and XDG folders, the
//! real tools installed by `./dev tools` (terraform, helm3, helm4, kubectl, kubectl-1.31),
//! a pinned environment (`NO_COLOR`, no inherited kubeconfig or Helm/Terraform settings) and
//! insta filters that hide temp paths and durations.
//!
//! A test that needs a tool calls [`TestContext::require_tool`]: when the tool is missing the
//! test **fails** with the command that installs it. Tests never skip silently.
//!
//! ```no_run
//! use upgrade_test::TestContext;
//!
//! let ctx = TestContext::new();
//! let mut helm = ctx.command("helm4");
//! helm.arg("version").arg("--short");
//! let out = helm.exec().expect("helm runs");
//! assert!(out.stdout_lossy().starts_with("v4."));
//! ```

use std::path::{Path, PathBuf};

use upgrade_core::ProcessBuilder;

pub mod moto;
pub mod output;
pub mod sim_mirror;

pub use moto::MotoServer;
pub use output::CommandOutput;
pub use sim_mirror::{sim_mirror, use_sim_mirror};

/// The command that installs the tools, shown when one is missing.
pub const INSTALL_COMMAND: &str = "./dev tools";

/// The tools `./dev tools` installs, by the name tests ask for.
pub const KNOWN_TOOLS: &[&str] = &[
    "terraform",
    "helm",
    "helm3",
    "helm4",
    "kubectl",
    "kubectl-1.31",
    "aws",
    "moto_server",
];

/// A temporary root, pinned environment and the real tools, for one test.
pub struct TestContext {
    root: tempfile::TempDir,
    home: PathBuf,
    work: PathBuf,
}

impl Default for TestContext {
    fn default() -> Self {
        Self::new()
    }
}

impl TestContext {
    /// A fresh context: `<tmp>/home` (HOME and XDG folders) and `<tmp>/work` (a scratch folder).
    pub fn new() -> Self {
        let root = tempfile::Builder::new()
            .prefix("upgrade-test-")
            .tempdir()
            .expect("create a temp dir for the test");
        let home = root.path().join("home");
        let work = root.path().join("work");
        for dir in [
            home.join(".config"),
            home.join(".cache"),
            home.join(".local/share"),
            work.clone(),
        ] {
            std::fs::create_dir_all(&dir).expect("create test folders");
        }
        // An empty Terraform CLI config keeps terraform from reading the developer's own.
        std::fs::write(root.path().join("terraformrc"), "").expect("write terraformrc");
        TestContext { root, home, work }
    }

    /// The temp root.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The pinned `HOME`.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// A scratch folder for the test.
    pub fn work(&self) -> &Path {
        &self.work
    }

    /// The repository root.
    pub fn workspace_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .nth(2)
            .expect("crates/upgrade-test sits two levels below the root")
            .to_path_buf()
    }

    /// `fixtures/` at the repository root.
    pub fn fixtures_dir() -> PathBuf {
        Self::workspace_root().join("fixtures")
    }

    /// `../shared/upstream/charts` (or `UPGRADE_UPSTREAM_DIR`/charts): the real upstream
    /// charts, read in place; **fails the test** when the folder is missing, naming the fix.
    pub fn upstream_charts_dir() -> PathBuf {
        let upstream = std::env::var_os("UPGRADE_UPSTREAM_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Self::workspace_root().join("../shared/upstream"));
        let charts = upstream.join("charts");
        assert!(
            charts.is_dir(),
            "this test needs the upstream charts at {}: put the shared folder beside the \
             repository (../shared/upstream) or set UPGRADE_UPSTREAM_DIR to its upstream/ folder",
            charts.display()
        );
        charts
    }

    /// Where `./dev tools` installs the tools (`UPGRADE_TOOLS_DIR`, default `.tools/`), `bin/` inside.
    pub fn tools_bin_dir() -> PathBuf {
        let tools = std::env::var_os(upgrade_core::env_vars::UPGRADE_TOOLS_DIR)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| Self::workspace_root().join(".tools"));
        tools.join("bin")
    }

    /// The absolute path of a tool, e.g. `"helm3"`; **fails the test** when it is missing,
    /// naming the command that installs it.
    pub fn require_tool(&self, name: &str) -> PathBuf {
        require_tool(name)
    }

    /// A [`ProcessBuilder`] for a tool with this context's environment applied.
    pub fn command(&self, tool: &str) -> ProcessBuilder {
        let mut cmd = ProcessBuilder::new(self.require_tool(tool));
        self.apply_env(&mut cmd);
        cmd
    }

    /// Pins the environment of `cmd` to this context: HOME/XDG in the temp root, `NO_COLOR`,
    /// the tools first on `PATH`, and no inherited kubeconfig, Helm or Terraform settings.
    pub fn apply_env(&self, cmd: &mut ProcessBuilder) {
        let path = format!(
            "{}:/usr/local/bin:/usr/bin:/bin",
            Self::tools_bin_dir().display()
        );
        cmd.env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("XDG_CACHE_HOME", self.home.join(".cache"))
            .env("XDG_DATA_HOME", self.home.join(".local/share"))
            .env("NO_COLOR", "1")
            .env("COLUMNS", "100")
            .env("PATH", path)
            .env("TF_CLI_CONFIG_FILE", self.root().join("terraformrc"))
            .env("CHECKPOINT_DISABLE", "1")
            .cwd(&self.work);
        for var in [
            "KUBECONFIG",
            "HELM_NAMESPACE",
            "HELM_KUBECONTEXT",
            "HELM_DRIVER",
            "HELM_CONFIG_HOME",
            "HELM_CACHE_HOME",
            "HELM_DATA_HOME",
            "TF_LOG",
            "TF_CLI_ARGS",
            "TF_WORKSPACE",
            "TF_DATA_DIR",
        ] {
            cmd.env_remove(var);
        }
    }

    /// As [`apply_env`](Self::apply_env), on a machine with none of the tools: `PATH` is an
    /// empty folder and no variable points at a tool.
    pub fn apply_env_without_tools(&self, cmd: &mut ProcessBuilder) {
        self.apply_env(cmd);
        let empty = self.root().join("empty-path");
        std::fs::create_dir_all(&empty).expect("create the empty PATH folder");
        cmd.env("PATH", &empty);
        for var in [
            upgrade_core::env_vars::TERRAFORM_BIN,
            upgrade_core::env_vars::HELM_BIN,
            upgrade_core::env_vars::KUBECTL_BIN,
            upgrade_core::env_vars::UPGRADE_TOOLS_DIR,
        ] {
            cmd.env_remove(var);
        }
    }

    /// Copies `fixtures/<rel>` (a file or a folder) into the work folder and returns the copy.
    pub fn copy_fixture(&self, rel: &str) -> PathBuf {
        let src = Self::fixtures_dir().join(rel);
        let dest = self.work.join(
            Path::new(rel)
                .file_name()
                .expect("a fixture path names a file or folder"),
        );
        copy_recursively(&src, &dest)
            .unwrap_or_else(|e| panic!("copy fixture {}: {e}", src.display()));
        dest
    }

    /// insta filters for this context: the temp root becomes `[TEMP]`, the tools folder
    /// `[TOOLS]`, the repository `[REPO]`, durations `[DURATION]`.
    pub fn filters(&self) -> Vec<(String, String)> {
        let mut filters = Vec::new();
        for (path, name) in [
            (self.root().to_path_buf(), "[TEMP]"),
            (
                self.root()
                    .canonicalize()
                    .unwrap_or_else(|_| self.root().to_path_buf()),
                "[TEMP]",
            ),
            (Self::tools_bin_dir(), "[TOOLS]"),
            (Self::workspace_root(), "[REPO]"),
        ] {
            filters.push((regex_escape(&path.to_string_lossy()), name.to_string()));
        }
        filters.push((
            r"\b\d+(\.\d+)?(ms|s|µs|ns)\b".to_string(),
            "[DURATION]".to_string(),
        ));
        filters
    }

    /// insta settings with [`filters`](Self::filters) applied; bind them around a snapshot.
    pub fn insta_settings(&self) -> insta::Settings {
        let mut settings = insta::Settings::clone_current();
        for (pattern, replacement) in self.filters() {
            settings.add_filter(&pattern, replacement);
        }
        settings
    }
}

impl TestContext {
    /// [`insta_settings`](Self::insta_settings) for a command's output: also the cluster's
    /// URL (`[CLUSTER]`) and run ids (`karpenter-20261122T031500Z` becomes `[karpenter-RUN]`).
    pub fn command_settings(&self, cluster_url: &str) -> insta::Settings {
        let mut settings = self.insta_settings();
        settings.add_filter(&regex_escape(cluster_url), "[CLUSTER]");
        settings.add_filter(r"\b([a-z][a-z-]*)-\d{8}T\d{6}Z\b", "[$1-RUN]");
        settings
    }
}

/// [`TestContext::require_tool`] without a context.
pub fn require_tool(name: &str) -> PathBuf {
    let path = TestContext::tools_bin_dir().join(name);
    if path.is_file() {
        return path;
    }
    panic!(
        "the test needs `{name}`, which is not installed at {}.\n\
         Run `{INSTALL_COMMAND}` (the README's test command runs it for you), \
         or set UPGRADE_TOOLS_DIR to a folder whose bin/ has it. Known tools: {}",
        path.display(),
        KNOWN_TOOLS.join(", ")
    );
}

/// The Python venv `./dev tools` creates for the verification components (MLflow, the KServe
/// ModelServer, scikit-learn): `<tools>/venv-verify`.
pub fn verify_venv_dir() -> PathBuf {
    TestContext::tools_bin_dir()
        .parent()
        .expect("the tools bin folder has a parent")
        .join("venv-verify")
}

/// The absolute path of a program in the verification venv, e.g. `"mlflow"` or `"python"`;
/// **fails the test** when it is missing, naming the command that installs it.
pub fn require_venv_tool(name: &str) -> PathBuf {
    let path = verify_venv_dir().join("bin").join(name);
    if path.is_file() {
        return path;
    }
    panic!(
        "the test needs `{name}` from the verification venv, which is not installed at {}.\n\
         Run `{INSTALL_COMMAND}` (it runs scripts/install-verify-tools.sh: MLflow, KServe and \
         scikit-learn into {}).",
        path.display(),
        verify_venv_dir().display()
    );
}

fn copy_recursively(src: &Path, dest: &Path) -> std::io::Result<()> {
    if src.is_dir() {
        std::fs::create_dir_all(dest)?;
        for entry in std::fs::read_dir(src)? {
            let entry = entry?;
            copy_recursively(&entry.path(), &dest.join(entry.file_name()))?;
        }
        Ok(())
    } else {
        std::fs::copy(src, dest).map(|_| ())
    }
}

/// `text` with regex metacharacters escaped, for an insta filter that matches it literally
/// (a cluster URL, a path).
pub fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Copies the folder `from` to `to` (created), files and subfolders, so a test can change a
/// fixture chart without touching the original.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("create {}: {e}", to.display()));
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display()))
    {
        let path = entry.expect("a folder entry").path();
        let target = to.join(path.file_name().expect("a name"));
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target)
                .unwrap_or_else(|e| panic!("copy {}: {e}", path.display()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "Run `./dev tools`")]
    fn a_missing_tool_fails_the_test_with_the_install_command() {
        TestContext::new().require_tool("no-such-tool");
    }

    #[test]
    #[should_panic(expected = "Run `./dev tools` (it runs scripts/install-verify-tools.sh")]
    fn a_missing_venv_tool_fails_the_test_with_the_install_command() {
        require_venv_tool("no-such-tool");
    }

    #[test]
    fn filters_hide_the_temp_root() {
        let ctx = TestContext::new();
        let text = format!("wrote {}/work/x after 12ms", ctx.root().display());
        let settings = ctx.insta_settings();
        settings.bind(|| insta::assert_snapshot!(text, @"wrote [TEMP]/work/x after [DURATION]"));
    }
}

//! Options for each command: plain structs with defaults and chainable setters.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// How `init` treats `.terraform.lock.hcl`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LockfileMode {
    /// Terraform may write it (the default).
    #[default]
    ReadWrite,
    /// `-lockfile=readonly`: verify, never write; fails if the configuration needs other
    /// providers. Cannot be combined with `upgrade`.
    ReadOnly,
}

/// One `-backend-config` value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum BackendConfig {
    /// A file of backend settings.
    File(PathBuf),
    /// One `key=value` setting (its value is redacted in logs and errors).
    Value {
        /// The setting.
        key: String,
        /// Its value.
        value: String,
    },
}

/// Options for `terraform init`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct InitOptions {
    /// `-upgrade`: pick the newest provider versions the constraints allow.
    pub upgrade: bool,
    /// `-lockfile=readonly` or not.
    pub lockfile: LockfileMode,
    /// `-backend=false` when `false`.
    pub backend: bool,
    /// `-backend-config`, in order.
    pub backend_config: Vec<BackendConfig>,
    /// `-reconfigure`.
    pub reconfigure: bool,
    /// `-plugin-dir`, in order (disables automatic installation).
    pub plugin_dirs: Vec<PathBuf>,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            upgrade: false,
            lockfile: LockfileMode::ReadWrite,
            backend: true,
            backend_config: Vec::new(),
            reconfigure: false,
            plugin_dirs: Vec::new(),
        }
    }
}

impl InitOptions {
    /// (chainable) `-upgrade`.
    pub fn upgrade(mut self, yes: bool) -> Self {
        self.upgrade = yes;
        self
    }

    /// (chainable) `-lockfile=readonly` when `ReadOnly`.
    pub fn lockfile(mut self, mode: LockfileMode) -> Self {
        self.lockfile = mode;
        self
    }

    /// (chainable) `-backend=false` when `false`.
    pub fn backend(mut self, yes: bool) -> Self {
        self.backend = yes;
        self
    }

    /// (chainable) Adds a `-backend-config`.
    pub fn backend_config(mut self, config: BackendConfig) -> Self {
        self.backend_config.push(config);
        self
    }

    /// (chainable) `-reconfigure`.
    pub fn reconfigure(mut self, yes: bool) -> Self {
        self.reconfigure = yes;
        self
    }

    /// (chainable) Adds a `-plugin-dir`.
    pub fn plugin_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.plugin_dirs.push(dir.into());
        self
    }
}

/// One source of input variables. Terraform applies `-var` and `-var-file` in command-line
/// order, later ones winning, so they are kept in one ordered list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum VarSource {
    /// `-var-file=PATH`.
    File(PathBuf),
    /// `-var 'NAME=VALUE'` (the value is an HCL literal as Terraform reads it on the command
    /// line; it is redacted in logs and errors).
    Value {
        /// The variable's name.
        name: String,
        /// Its value.
        value: String,
    },
}

/// How `plan` refreshes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefreshMode {
    /// Refresh, then plan (the default).
    #[default]
    Normal,
    /// `-refresh=false`.
    Skip,
    /// `-refresh-only`: only reconcile the state with reality.
    Only,
}

/// Options for `terraform plan`. The plan always goes to a file, so that exactly what was
/// reviewed is what gets applied.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct PlanOptions {
    /// Variable files and values, in the order Terraform should see them.
    pub vars: Vec<VarSource>,
    /// `-target`, in order.
    pub targets: Vec<String>,
    /// `-replace`, in order.
    pub replace: Vec<String>,
    /// `-destroy`.
    pub destroy: bool,
    /// Refresh behaviour.
    pub refresh: RefreshMode,
    /// `-lock`.
    pub lock: bool,
    /// `-lock-timeout` (rendered in whole seconds).
    pub lock_timeout: Duration,
    /// `-parallelism`, when set.
    pub parallelism: Option<u32>,
    /// The plan file; relative paths are inside the working directory. Default `upgrade.tfplan`.
    pub out: PathBuf,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            vars: Vec::new(),
            targets: Vec::new(),
            replace: Vec::new(),
            destroy: false,
            refresh: RefreshMode::Normal,
            lock: true,
            lock_timeout: Duration::ZERO,
            parallelism: None,
            out: PathBuf::from("upgrade.tfplan"),
        }
    }
}

impl PlanOptions {
    /// (chainable) Appends `-var-file=PATH`.
    pub fn var_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.vars.push(VarSource::File(path.into()));
        self
    }

    /// (chainable) Appends `-var NAME=VALUE`.
    pub fn var(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.vars.push(VarSource::Value {
            name: name.into(),
            value: value.into(),
        });
        self
    }

    /// (chainable) Appends a `-target`.
    pub fn target(mut self, address: impl Into<String>) -> Self {
        self.targets.push(address.into());
        self
    }

    /// (chainable) Appends a `-replace`.
    pub fn replace(mut self, address: impl Into<String>) -> Self {
        self.replace.push(address.into());
        self
    }

    /// (chainable) `-destroy`.
    pub fn destroy(mut self, yes: bool) -> Self {
        self.destroy = yes;
        self
    }

    /// (chainable) Refresh behaviour.
    pub fn refresh(mut self, mode: RefreshMode) -> Self {
        self.refresh = mode;
        self
    }

    /// (chainable) `-lock`.
    pub fn lock(mut self, yes: bool) -> Self {
        self.lock = yes;
        self
    }

    /// (chainable) `-lock-timeout`.
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// (chainable) `-parallelism`.
    pub fn parallelism(mut self, n: u32) -> Self {
        self.parallelism = Some(n);
        self
    }

    /// (chainable) The plan file.
    pub fn out(mut self, path: impl AsRef<Path>) -> Self {
        self.out = path.as_ref().to_path_buf();
        self
    }
}

/// Options for applying a saved plan. Variables and targets are fixed by the plan itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ApplyOptions {
    /// `-lock`.
    pub lock: bool,
    /// `-lock-timeout`.
    pub lock_timeout: Duration,
    /// `-parallelism`, when set.
    pub parallelism: Option<u32>,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            lock: true,
            lock_timeout: Duration::ZERO,
            parallelism: None,
        }
    }
}

impl ApplyOptions {
    /// (chainable) `-lock-timeout`.
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }
}

/// Where `providers lock` gets the packages it hashes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum LockSource {
    /// The providers' origin registries (the default).
    #[default]
    Registry,
    /// `-fs-mirror=DIR`.
    FsMirror(PathBuf),
    /// `-net-mirror=URL`.
    NetMirror(String),
}

/// Options for `terraform providers lock`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProvidersLockOptions {
    /// `-platform`, e.g. `linux_amd64`, `darwin_arm64`.
    pub platforms: Vec<String>,
    /// Only these providers (source addresses); all when empty.
    pub providers: Vec<String>,
    /// Where packages come from.
    pub source: LockSource,
}

impl ProvidersLockOptions {
    /// (chainable) Adds a platform.
    pub fn platform(mut self, platform: impl Into<String>) -> Self {
        self.platforms.push(platform.into());
        self
    }

    /// (chainable) Adds a provider.
    pub fn provider(mut self, address: impl Into<String>) -> Self {
        self.providers.push(address.into());
        self
    }

    /// (chainable) Sets the package source.
    pub fn source(mut self, source: LockSource) -> Self {
        self.source = source;
        self
    }
}

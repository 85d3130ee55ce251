//! The static scan for CI: manifest files, folders of them and chart folders (rendered with
//! the installed helm for the target minor) checked for APIs removed or deprecated on the way
//! to a target, with file and line. Read only, and no cluster is needed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use upgrade_checks::scan::{ScanReport, Scanner};
use upgrade_core::version::KubeMinor;
use upgrade_helm::{ChartRef, Helm, ReleaseRef, TemplateOptions};

use crate::error::{FlowError, Result, field};

/// What to scan, for which target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanSpec {
    /// The Kubernetes minor the path leads to, e.g. `1.34`.
    pub target: String,
    /// Files (YAML or JSON, any name) and folders (searched for `.yaml`, `.yml` and `.json`
    /// files; a folder with a `Chart.yaml` is a chart and is rendered).
    pub paths: Vec<PathBuf>,
    /// A folder with newer version data files (see the preflight's `data`).
    #[serde(default)]
    pub data: Option<PathBuf>,
    /// The helm that renders charts (default: `HELM_BIN`, else `helm` on `PATH`).
    #[serde(default)]
    pub helm: Option<PathBuf>,
}

/// Scans the spec's paths. A file that cannot be read or parsed, or a chart that does not
/// render, is reported as unscanned (exit code 3 at least), never skipped silently.
pub async fn scan(spec: &ScanSpec) -> Result<ScanReport> {
    let target: KubeMinor = spec.target.parse().map_err(|e| {
        FlowError::invalid(
            "target",
            format!("{}: {e}", spec.target),
            "give a Kubernetes minor such as 1.34",
        )
    })?;
    if spec.paths.is_empty() {
        return Err(FlowError::invalid(
            "manifests",
            "no file or folder to scan",
            "name the manifests, folders or chart folders to scan",
        ));
    }
    if let Some(missing) = spec.paths.iter().find(|p| !p.exists()) {
        return Err(FlowError::invalid(
            "manifests",
            format!("{} does not exist", missing.display()),
            "fix the path",
        ));
    }
    let data = crate::flows::preflight::load_data(spec.data.as_deref())?;
    let mut inputs = Vec::new();
    for path in &spec.paths {
        collect(path, true, &mut inputs);
    }
    let mut scanner = Scanner::new(&data, target);
    let mut helm: Option<Helm> = None;
    for input in inputs {
        let shown = input.path().display().to_string();
        match input {
            Input::File(path) => match std::fs::read(&path) {
                Ok(bytes) => match String::from_utf8(bytes) {
                    Ok(text) => scanner.scan_text(&shown, &text),
                    Err(_) => scanner.unscanned(&shown, "not UTF-8 text"),
                },
                Err(e) => scanner.unscanned(&shown, format!("cannot read it: {e}")),
            },
            Input::Chart(dir) => {
                if helm.is_none() {
                    let mut builder = Helm::builder();
                    if let Some(program) = &spec.helm {
                        builder = builder.program(program);
                    }
                    helm = Some(builder.build().map_err(|e| {
                        FlowError::invalid(
                            "helm",
                            format!("{shown} is a chart and helm is needed to render it: {e}"),
                            format!(
                                "install helm (or set HELM_BIN or {}), or scan the rendered output instead",
                                field("helm")
                            ),
                        )
                    })?);
                }
                let helm = helm.as_ref().expect("set above");
                match render(helm, &dir, target).await {
                    Ok(rendered) => scanner.scan_rendered_chart(&shown, &rendered),
                    Err(e) => scanner.unscanned(
                        &shown,
                        format!(
                            "helm template failed ({}); run `helm dependency build {shown}` if its dependencies are missing",
                            crate::error::one_line(&e.to_string())
                        ),
                    ),
                }
            }
        }
    }
    Ok(scanner.finish())
}

/// One thing to scan.
enum Input {
    File(PathBuf),
    Chart(PathBuf),
}

impl Input {
    fn path(&self) -> &Path {
        match self {
            Input::File(p) | Input::Chart(p) => p,
        }
    }
}

/// The files and charts under `path`, in name order. A file named explicitly is scanned
/// whatever its extension; inside folders only `.yaml`, `.yml` and `.json` files are, and
/// hidden folders (`.git`) are passed over.
fn collect(path: &Path, named: bool, out: &mut Vec<Input>) {
    if path.is_dir() {
        if path.join("Chart.yaml").is_file() {
            out.push(Input::Chart(path.to_path_buf()));
            return;
        }
        let mut entries: Vec<PathBuf> = match std::fs::read_dir(path) {
            Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
            Err(_) => {
                // Reported by the read of the folder as a file below.
                out.push(Input::File(path.to_path_buf()));
                return;
            }
        };
        entries.sort();
        for entry in entries {
            let hidden = entry
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            if !hidden {
                collect(&entry, false, out);
            }
        }
    } else if named
        || path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
    {
        out.push(Input::File(path.to_path_buf()));
    }
}

/// `helm template` of the chart in `dir` with its default values, for the target minor (so
/// templates guarded by `.Capabilities.KubeVersion` render what the target would get), CRDs
/// included.
async fn render(helm: &Helm, dir: &Path, target: KubeMinor) -> upgrade_helm::Result<String> {
    let options = TemplateOptions {
        kube_version: Some(format!("v{target}.0")),
        include_crds: true,
        ..TemplateOptions::default()
    };
    helm.template(
        &ReleaseRef::new("release-name", "default"),
        &ChartRef::path(dir),
        &options,
    )
    .await
}

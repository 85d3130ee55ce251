//! The static scan against pluto's and kubent's own test material
//! (`../shared/upstream/removed-apis`): pluto's e2e specs for files and charts, read and
//! replayed (the same objects found or not found, pluto's exit codes mapped to ours: 2
//! deprecated → 3, 3 removed → 4), and every kubent fixture, each of which names its API.

use std::path::{Path, PathBuf};

use crate::real_platform::charts_dir;
use crate::scans::{findings, scan};

fn removed_apis_dir() -> PathBuf {
    charts_dir().parent().unwrap().join("removed-apis")
}

/// Pluto's default Kubernetes target (its versions.yaml `target-versions.k8s`).
fn pluto_default_target(pluto: &Path) -> String {
    let versions: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(pluto.join("versions.yaml")).unwrap())
            .unwrap();
    let k8s = versions["target-versions"]["k8s"].as_str().unwrap();
    minor_of(k8s)
}

/// `v1.15.0` → `1.15`.
fn minor_of(version: &str) -> String {
    let mut parts = version.trim_start_matches('v').split('.');
    format!("{}.{}", parts.next().unwrap(), parts.next().unwrap())
}

/// One pluto e2e test case over files or a chart, as our scan runs it.
struct SpecCase {
    name: String,
    paths: Vec<PathBuf>,
    target: String,
    code: Option<i64>,
    /// Table rows (name, kind, apiVersion) pluto must print, and must not.
    present: Vec<(String, String, String)>,
    absent: Vec<(String, String, String)>,
    /// Paths pluto must print.
    paths_shown: Vec<String>,
    /// API versions pluto must print (a bare `extensions/v1beta1`).
    apis_shown: Vec<String>,
    /// Whether pluto prints nothing found.
    nothing: bool,
}

/// Reads `00_static_files.yaml`: the cases whose options our scan has (a target, files,
/// folders, a chart). Pluto's `-r` (show only removals) and `--components` have no
/// counterpart and are left out, with their names checked so a new case is not lost.
fn spec_cases(e2e: &Path, default_target: &str) -> Vec<SpecCase> {
    let spec: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(e2e.join("00_static_files.yaml")).unwrap())
            .unwrap();
    let mut cases = Vec::new();
    let mut left_out = Vec::new();
    for case in spec["testcases"].as_sequence().unwrap() {
        let name = case["name"].as_str().unwrap().to_string();
        let step = &case["steps"][0];
        let script = step["script"].as_str().unwrap().trim();
        let words: Vec<&str> = script.split_whitespace().collect();
        if words.contains(&"-r") || script.contains("--components") {
            left_out.push(name);
            continue;
        }
        let mut paths = Vec::new();
        let mut target = default_target.to_string();
        let mut i = 0;
        while i < words.len() {
            match words[i] {
                "-d" => {
                    paths.push(e2e.join(words[i + 1]));
                    i += 1;
                }
                "--target-versions" => {
                    target = minor_of(words[i + 1].trim_start_matches("k8s="));
                    i += 1;
                }
                // `helm template CHART | pluto detect -`: our scan renders the chart itself.
                "template" => {
                    paths.push(e2e.join(words[i + 1]));
                    i += 1;
                }
                word if word.ends_with(".yaml") => paths.push(e2e.join(word)),
                _ => {}
            }
            i += 1;
        }
        assert!(!paths.is_empty(), "{name}: no path in `{script}`");
        let mut header: Option<Vec<String>> = None;
        let (mut present, mut absent, mut paths_shown, mut apis_shown, mut nothing) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), false);
        let mut code = None;
        for assertion in step["assertions"].as_sequence().unwrap() {
            let text = assertion.as_str().unwrap();
            if let Some(c) = text.strip_prefix("result.code ShouldEqual ") {
                code = Some(c.trim().parse().unwrap());
                continue;
            }
            let (expected, negated) = if let Some(t) =
                text.strip_prefix("result.systemout ShouldContainSubstring ")
            {
                (t, false)
            } else if let Some(t) = text.strip_prefix("result.systemout ShouldNotContainSubstring ")
            {
                (t, true)
            } else if let Some(t) = text.strip_prefix("result.systemout ShouldEqual ") {
                (t, false)
            } else {
                panic!("{name}: unknown assertion `{text}`");
            };
            let expected = expected.trim().trim_matches('"');
            if expected.contains("No output to display") || expected.contains("no resources found")
            {
                nothing = true;
                continue;
            }
            let cells: Vec<String> = expected
                .split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect();
            if cells
                .first()
                .is_some_and(|c| c == "NAME" || c == "FILEPATH")
            {
                header = Some(cells);
                continue;
            }
            if expected.ends_with(".yaml") {
                paths_shown.push(expected.to_string());
                continue;
            }
            if cells.len() == 1 && !negated {
                apis_shown.push(expected.to_string());
                continue;
            }
            let header = header
                .as_ref()
                .unwrap_or_else(|| panic!("{name}: a row before its header"));
            let column = |wanted: &str| {
                let at = header.iter().position(|h| h == wanted).unwrap();
                cells[at].clone()
            };
            let row = (column("NAME"), column("KIND"), column("VERSION"));
            if negated {
                absent.push(row);
            } else {
                present.push(row);
            }
        }
        cases.push(SpecCase {
            name,
            paths,
            target,
            code,
            present,
            absent,
            paths_shown,
            apis_shown,
            nothing,
        });
    }
    assert_eq!(
        left_out,
        [
            "static files only show removed",
            "static files no output due to no matching components"
        ],
        "the cases left out"
    );
    cases
}

#[test]
#[ignore = "the upstream suite: ./dev test-upstream"]
fn the_scan_replays_plutos_e2e_specs_for_files_and_charts() {
    let pluto = removed_apis_dir().join("pluto");
    let e2e = pluto.join("e2e-tests");
    let cases = spec_cases(&e2e, &pluto_default_target(&pluto));
    assert_eq!(cases.len(), 9, "every other case of 00_static_files.yaml");
    for helm in ["helm3", "helm4"] {
        for case in &cases {
            let paths: Vec<&Path> = case.paths.iter().map(PathBuf::as_path).collect();
            let (code, report) = scan(helm, &case.target, &paths);
            let found = findings(&report);
            let name = &case.name;
            if let Some(pluto_code) = case.code {
                let ours = match pluto_code {
                    0 => 0,
                    2 => 3,
                    3 => 4,
                    other => panic!("{name}: pluto exit code {other} has no counterpart"),
                };
                assert_eq!(code, ours, "{helm} {name}: {report:#}");
            }
            let has = |(n, k, v): &(String, String, String)| {
                found
                    .iter()
                    .any(|(_, _, api, kind, object, _)| object == n && kind == k && api == v)
            };
            for row in &case.present {
                assert!(has(row), "{helm} {name}: {row:?} not found: {report:#}");
            }
            for row in &case.absent {
                assert!(!has(row), "{helm} {name}: {row:?} reported: {report:#}");
            }
            for shown in &case.paths_shown {
                // Pluto prints paths from its repository root (`tests/assets/...`).
                let tail = shown.trim_start_matches("tests/");
                assert!(
                    found.iter().any(|(file, ..)| file.ends_with(tail)),
                    "{helm} {name}: {shown} not named: {report:#}"
                );
            }
            for api in &case.apis_shown {
                assert!(
                    found.iter().any(|(_, _, a, ..)| a == api),
                    "{helm} {name}: {api} not reported: {report:#}"
                );
            }
            if case.nothing {
                assert!(found.is_empty(), "{helm} {name}: {report:#}");
            }
        }
    }
}

/// Every kubent fixture names the API it holds (`cronjob-v1beta1.yaml`,
/// `deployment-v1beta1-and-ingress-v1beta1.yaml`, the `fake-*-with-annotation` ones whose API
/// is only in the last-applied copy): each is found, with a line that holds it; the fixture
/// without the annotation, and the files that are not manifests, give nothing.
#[test]
#[ignore = "the upstream suite: ./dev test-upstream"]
fn the_scan_finds_the_api_every_kubent_fixture_names() {
    let fixtures = removed_apis_dir().join("kubent/fixtures");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&fixtures)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "json"))
        .collect();
    files.sort();
    let mut checked = 0;
    for file in &files {
        let stem = file.file_stem().unwrap().to_str().unwrap();
        // The newest target: every removal in the data is reached.
        let (code, report) = scan("helm4", "1.39", &[file]);
        let found = findings(&report);
        assert!(
            report["unscanned"].as_array().unwrap().is_empty(),
            "{stem}: {report:#}"
        );
        let named: Vec<&str> = stem
            .split('-')
            .filter(|w| {
                w.starts_with('v')
                    && w[1..].starts_with(|c: char| c.is_ascii_digit())
                    && (w.contains("alpha") || w.contains("beta"))
            })
            .collect();
        if stem.starts_with("expected-") || stem.contains("no-annotation") {
            assert!(found.is_empty(), "{stem}: {report:#}");
            assert_eq!(code, 0, "{stem}");
            continue;
        }
        if named.is_empty() {
            // `fake-tokenReview-deprecated`: the name says only that its API is deprecated.
            assert!(stem.ends_with("-deprecated"), "{stem} names no API version");
            assert_eq!(found.len(), 1, "{stem}: {report:#}");
            checked += 1;
            continue;
        }
        assert_eq!(found.len(), named.len(), "{stem}: {report:#}");
        let text = std::fs::read_to_string(file).unwrap();
        for ((_, line, api, ..), version) in found.iter().zip(&named) {
            assert!(api.ends_with(&format!("/{version}")), "{stem}: {api}");
            let line = line.unwrap_or_else(|| panic!("{stem}: no line"));
            let at = text.lines().nth(line as usize - 1).unwrap();
            assert!(
                at.contains(api.as_str())
                    || at.contains("last-applied-configuration")
                    || at.contains("kapp.k14s.io/original"),
                "{stem}: line {line} is `{at}`"
            );
        }
        assert!(code == 3 || code == 4, "{stem}: {code}");
        checked += 1;
    }
    assert!(checked >= 45, "only {checked} fixtures checked");
}

/// Pluto's files that use only current APIs give nothing at the newest target.
#[test]
#[ignore = "the upstream suite: ./dev test-upstream"]
fn the_scan_reports_nothing_in_plutos_current_files() {
    let assets = removed_apis_dir().join("pluto/e2e-tests/assets");
    for dir in ["non-deprecated", "list/list-deployment-non-deprecated.yaml"] {
        let (code, report) = scan("helm4", "1.39", &[&assets.join(dir)]);
        assert_eq!(code, 0, "{dir}: {report:#}");
    }
}

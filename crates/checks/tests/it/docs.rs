//! `docs/checks.md` is generated from the check registry; this test keeps it in sync.

use std::path::PathBuf;

use upgrade_checks::checks::{DOCS_PATH, reference};

#[test]
fn check_reference_is_up_to_date() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(DOCS_PATH);
    let expected = reference();
    for check in upgrade_checks::checks::registry() {
        let heading = format!("\n### {}\n", check.code);
        assert_eq!(
            expected.matches(&heading).count(),
            1,
            "{} must have exactly one section",
            check.code
        );
    }
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &expected)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        return;
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    if actual != expected {
        let diff: Vec<String> = expected
            .lines()
            .zip(actual.lines().chain(std::iter::repeat("<missing>")))
            .enumerate()
            .filter(|(_, (want, have))| want != have)
            .take(10)
            .map(|(i, (want, have))| {
                format!("line {}:\n  generated: {want}\n  on disk:   {have}", i + 1)
            })
            .collect();
        panic!(
            "{DOCS_PATH} is out of date with the check registry.\n{}\n(lines: generated {}, on disk {})\nUpdate it with: UPDATE_DOCS=1 cargo test -p upgrade-checks --test it docs",
            diff.join("\n"),
            expected.lines().count(),
            actual.lines().count()
        );
    }
}

#[test]
fn every_code_is_unique_and_well_formed() {
    let mut codes: Vec<&str> = upgrade_checks::checks::registry()
        .iter()
        .map(|c| c.code)
        .collect();
    let count = codes.len();
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), count, "duplicate check codes");
    for code in codes {
        let (letters, digits) = code.split_at(code.len() - 3);
        assert!(
            letters.chars().all(|c| c.is_ascii_uppercase()) && !letters.is_empty(),
            "{code}"
        );
        assert!(digits.chars().all(|c| c.is_ascii_digit()), "{code}");
    }
}

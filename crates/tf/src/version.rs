//! The detected Terraform version and the options each version has.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// What `terraform version -json` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TfVersion {
    /// Terraform's own version.
    pub version: semver::Version,
    /// e.g. `linux_amd64`, when reported.
    pub platform: Option<String>,
    /// Providers selected in the working directory, by source address.
    pub provider_selections: BTreeMap<String, String>,
}

impl TfVersion {
    /// Parses `version -json` output, falling back to the plain-text form
    /// (`Terraform v1.2.3`) that releases before 0.13 print.
    pub fn parse(output: &str) -> Result<TfVersion, String> {
        #[derive(Deserialize)]
        struct Json {
            terraform_version: String,
            #[serde(default)]
            platform: Option<String>,
            #[serde(default)]
            provider_selections: BTreeMap<String, String>,
        }
        if let Ok(json) = serde_json::from_str::<Json>(output) {
            return Ok(TfVersion {
                version: parse_semver(&json.terraform_version)?,
                platform: json.platform,
                provider_selections: json.provider_selections,
            });
        }
        let first = output.lines().next().unwrap_or_default();
        let text = first
            .trim()
            .strip_prefix("Terraform v")
            .ok_or_else(|| format!("neither version JSON nor `Terraform v<version>`: {first:?}"))?;
        Ok(TfVersion {
            version: parse_semver(text)?,
            platform: None,
            provider_selections: BTreeMap::new(),
        })
    }

    /// Whether this version has `feature` (pre-release and build metadata are ignored, so
    /// `1.9.0-beta1` counts as 1.9.0).
    pub fn supports(&self, feature: Feature) -> bool {
        let v = semver::Version::new(self.version.major, self.version.minor, self.version.patch);
        let (min, max) = feature.range();
        min.is_none_or(|m| v >= m) && max.is_none_or(|m| v < m)
    }
}

fn parse_semver(text: &str) -> Result<semver::Version, String> {
    semver::Version::parse(text.trim()).map_err(|e| format!("{text:?} is not a version: {e}"))
}

/// An option or command whose availability depends on the Terraform version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
pub enum Feature {
    /// `show -json`.
    ShowJson,
    /// `providers lock`.
    ProvidersLock,
    /// `init -lockfile=readonly`.
    LockfileReadonly,
    /// `plan -replace=ADDR`.
    PlanReplace,
    /// `plan`/`apply -json` (machine-readable UI; also how this crate reads diagnostics).
    JsonUi,
    /// `plan -refresh-only`.
    RefreshOnly,
    /// `init -json`.
    InitJson,
    /// Plan JSON with `format_version` 1.x (Terraform 1.1 and newer).
    PlanFormat1,
}

impl Feature {
    /// `[min, max)` versions that have the feature.
    pub fn range(self) -> (Option<semver::Version>, Option<semver::Version>) {
        let v = |a, b, c| Some(semver::Version::new(a, b, c));
        match self {
            Feature::ShowJson => (v(0, 12, 0), None),
            Feature::ProvidersLock => (v(0, 14, 0), None),
            Feature::LockfileReadonly => (v(0, 15, 0), None),
            Feature::PlanReplace => (v(0, 15, 2), None),
            Feature::JsonUi => (v(0, 15, 3), None),
            Feature::RefreshOnly => (v(0, 15, 4), None),
            Feature::InitJson => (v(1, 9, 0), None),
            Feature::PlanFormat1 => (v(1, 1, 0), None),
        }
    }

    /// The range as text, e.g. `>= 0.15.4`.
    pub fn requirement(self) -> String {
        match self.range() {
            (Some(min), Some(max)) => format!(">= {min}, < {max}"),
            (Some(min), None) => format!(">= {min}"),
            (None, Some(max)) => format!("< {max}"),
            (None, None) => "any version".into(),
        }
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Feature::ShowJson => "`show -json`",
            Feature::ProvidersLock => "`providers lock`",
            Feature::LockfileReadonly => "`init -lockfile=readonly`",
            Feature::PlanReplace => "`plan -replace`",
            Feature::JsonUi => "`plan`/`apply -json` (how this tool reads diagnostics)",
            Feature::RefreshOnly => "`plan -refresh-only`",
            Feature::InitJson => "`init -json`",
            Feature::PlanFormat1 => "plan JSON format 1.x",
        })
    }
}

/// Checks a provider version constraint against Terraform's syntax: comma-separated
/// `[operator] version` terms, operators `=`, `!=`, `>`, `>=`, `<`, `<=`, `~>`, versions of one
/// to three numeric parts with an optional `-prerelease` (e.g. `~> 6.0`, `>= 5.0, < 7.0`).
///
/// Terraform's `~>` allows the last given part to grow (`~> 6.0` is `>= 6.0, < 7.0`), unlike
/// Helm's `~`, so Helm's constraint parser is the wrong tool for it. The error says what is
/// wrong with which term.
///
/// ```
/// use upgrade_tf::version::check_provider_constraint;
///
/// assert!(check_provider_constraint("~> 6.0").is_ok());
/// assert!(check_provider_constraint(">= 5.0, < 7.0").is_ok());
/// assert!(check_provider_constraint("^6").is_err());
/// ```
pub fn check_provider_constraint(text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("the constraint is empty; write e.g. `~> 6.0`".into());
    }
    for term in text.split(',') {
        let term = term.trim();
        let version = ["~>", ">=", "<=", "!=", ">", "<", "="]
            .iter()
            .find_map(|op| term.strip_prefix(op))
            .unwrap_or(term)
            .trim();
        let (release, prerelease) = match version.split_once('-') {
            Some((release, pre)) => (release, Some(pre)),
            None => (version, None),
        };
        let parts: Vec<&str> = release.split('.').collect();
        let numeric = parts.len() <= 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        let prerelease_ok = prerelease.is_none_or(|p| {
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
        });
        if version.is_empty() || !numeric || !prerelease_ok {
            return Err(format!(
                "`{term}` in `{text}` is not a Terraform version constraint term; use an operator \
                 (=, !=, >, >=, <, <=, ~>) and a version such as 6.0 or 6.1.2, e.g. `~> 6.0`"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_constraints_follow_terraform_syntax() {
        for ok in [
            "~> 6.0",
            "6.0.0",
            ">= 5.0, < 7.0",
            "= 6.1.0-beta1",
            "!=5.3.0,>=5",
        ] {
            assert_eq!(check_provider_constraint(ok), Ok(()), "{ok}");
        }
        for bad in ["", "^6", "~> six", "~>", "6.0.0.1", ">= 5.0 < 7.0", "6.0-"] {
            let err = check_provider_constraint(bad).unwrap_err();
            assert!(err.contains("e.g. `~> 6.0`"), "{bad}: {err}");
        }
    }

    #[test]
    fn parses_json_and_plain_text() {
        let json = r#"{"terraform_version":"1.15.5","platform":"linux_amd64","provider_selections":{"registry.terraform.io/hashicorp/aws":"5.99.0"},"terraform_outdated":false}"#;
        let v = TfVersion::parse(json).unwrap();
        assert_eq!(v.version, semver::Version::new(1, 15, 5));
        assert_eq!(v.platform.as_deref(), Some("linux_amd64"));
        assert_eq!(
            v.provider_selections["registry.terraform.io/hashicorp/aws"],
            "5.99.0"
        );
        let old = TfVersion::parse("Terraform v0.12.31\n\nYour version is out of date").unwrap();
        assert_eq!(old.version, semver::Version::new(0, 12, 31));
        assert!(TfVersion::parse("hello").is_err());
    }

    #[test]
    fn gates_ignore_prerelease_and_respect_bounds() {
        let at = |s: &str| TfVersion {
            version: semver::Version::parse(s).unwrap(),
            platform: None,
            provider_selections: BTreeMap::new(),
        };
        assert!(at("1.9.0-beta1").supports(Feature::InitJson));
        assert!(!at("1.8.5").supports(Feature::InitJson));
        assert!(!at("0.15.3").supports(Feature::RefreshOnly));
        assert!(at("0.15.4").supports(Feature::RefreshOnly));
        assert_eq!(Feature::RefreshOnly.requirement(), ">= 0.15.4");
    }
}

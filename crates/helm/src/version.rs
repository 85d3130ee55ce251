//! The Helm binary's version and the features each major and minor offers.

use std::fmt;

use crate::error::{Error, Result};

/// Oldest Helm 3 release the toolkit supports (`get metadata` and `--dry-run=server` need 3.13).
pub const MIN_HELM3: semver::Version = semver::Version::new(3, 13, 0);

/// A detected Helm version (`helm version --template '{{.Version}}'`).
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct HelmVersion(pub semver::Version);

/// A Helm major version: the flags differ between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HelmMajor {
    /// Helm 3.x.
    V3,
    /// Helm 4.x.
    V4,
}

impl HelmMajor {
    /// How this major matches pre-release Kubernetes versions against a chart's kubeVersion.
    pub fn prerelease_rule(self) -> upgrade_core::constraint::PrereleaseRule {
        match self {
            HelmMajor::V3 => upgrade_core::constraint::PrereleaseRule::PerTerm,
            HelmMajor::V4 => upgrade_core::constraint::PrereleaseRule::PerGroup,
        }
    }
}

impl HelmVersion {
    /// Parses `v3.17.3`, `3.17.3` or the `--short` form `v3.17.3+ge4da497`.
    pub fn parse(text: &str) -> Result<Self> {
        let trimmed = text.trim();
        let bare = trimmed.strip_prefix('v').unwrap_or(trimmed);
        let version = semver::Version::parse(bare).map_err(|e| Error::UnsupportedVersion {
            found: trimmed.to_string(),
            reason: format!("not a semantic version ({e})"),
        })?;
        let helm = HelmVersion(version);
        helm.check_supported()?;
        Ok(helm)
    }

    /// A version from its parts (for tests and callers that already know it).
    pub fn new(major: u64, minor: u64, patch: u64) -> Self {
        HelmVersion(semver::Version::new(major, minor, patch))
    }

    fn check_supported(&self) -> Result<()> {
        let v = &self.0;
        match v.major {
            3 if *v < MIN_HELM3 => Err(Error::UnsupportedVersion {
                found: v.to_string(),
                reason: format!(
                    "Helm 3 must be {MIN_HELM3} or newer (get metadata, --dry-run=server)"
                ),
            }),
            3 | 4 => Ok(()),
            _ => Err(Error::UnsupportedVersion {
                found: v.to_string(),
                reason: "only Helm 3 (3.13+) and Helm 4 are supported".to_string(),
            }),
        }
    }

    /// The major version.
    pub fn major(&self) -> HelmMajor {
        if self.0.major >= 4 {
            HelmMajor::V4
        } else {
            HelmMajor::V3
        }
    }

    /// Whether this is Helm 4 or newer.
    pub fn is_v4(&self) -> bool {
        self.major() == HelmMajor::V4
    }

    /// Whether this version is at least `major.minor.patch`.
    pub fn at_least(&self, major: u64, minor: u64, patch: u64) -> bool {
        self.0 >= semver::Version::new(major, minor, patch)
    }

    /// Fails with [`Error::Unsupported`] when `flag` needs a newer Helm than this one.
    pub(crate) fn require(&self, flag: &'static str, min: (u64, u64, u64)) -> Result<()> {
        if self.at_least(min.0, min.1, min.2) {
            Ok(())
        } else {
            Err(Error::Unsupported {
                what: flag.to_string(),
                requires: format!("Helm {}.{}.{}", min.0, min.1, min.2),
                actual: self.0.to_string(),
            })
        }
    }
}

impl fmt::Display for HelmVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_template_and_short_forms() {
        assert_eq!(
            HelmVersion::parse("v3.17.3").unwrap(),
            HelmVersion::new(3, 17, 3)
        );
        let short = HelmVersion::parse("v4.1.4+g05fa379\n").unwrap();
        assert_eq!(short.major(), HelmMajor::V4);
        assert!(short.at_least(4, 1, 3));
        assert!(!short.at_least(4, 2, 0));
    }

    #[test]
    fn rejects_old_and_unknown_versions() {
        let err = HelmVersion::parse("v3.12.0").unwrap_err().to_string();
        assert!(err.contains("3.13.0 or newer"), "{err}");
        let err = HelmVersion::parse("v2.17.0").unwrap_err().to_string();
        assert!(err.contains("only Helm 3"), "{err}");
        let err = HelmVersion::parse("garbage").unwrap_err().to_string();
        assert!(err.contains("not a semantic version"), "{err}");
    }
}

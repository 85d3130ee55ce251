//! EKS add-on compatibility from `aws eks describe-addon-versions` output: which versions of
//! an add-on run on a Kubernetes minor, which one EKS installs by default, and what to move
//! an installed add-on to for a control-plane hop.
//!
//! ```no_run
//! use upgrade_checks::addons::AddonCatalog;
//! use upgrade_core::version::KubeMinor;
//!
//! let json = std::fs::read_to_string("addon-versions.json")?;
//! let catalog = AddonCatalog::from_json(&json)?;
//! let target: KubeMinor = "1.31".parse()?;
//! match catalog.choose("coredns", "v1.11.1-eksbuild.9", target, false) {
//!     Ok(choice) => println!("coredns -> {} ({})", choice.version, choice.why),
//!     Err(why) => println!("coredns: {why}"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use serde::Deserialize;

use upgrade_core::version::KubeMinor;

/// The add-on catalog could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AddonCatalogError {
    /// Not the JSON `aws eks describe-addon-versions` prints.
    #[error(
        "not `aws eks describe-addon-versions` JSON ({source}); expected {{\"addons\": [{{\"addonName\": ..., \"addonVersions\": [...]}}]}}"
    )]
    Parse {
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    addons: Vec<Addon>,
}

/// One add-on and its versions, newest first (as the API lists them).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Addon {
    /// `coredns`, `kube-proxy`, `vpc-cni`, ...
    pub addon_name: String,
    /// Its versions, newest first.
    pub addon_versions: Vec<AddonRelease>,
}

/// One version of an add-on.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddonRelease {
    /// e.g. `v1.11.4-eksbuild.2`.
    pub addon_version: String,
    /// The Kubernetes versions it runs on.
    #[serde(default)]
    pub compatibilities: Vec<Compatibility>,
}

/// One Kubernetes version an add-on version runs on.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Compatibility {
    /// e.g. `1.31`.
    pub cluster_version: String,
    /// Whether EKS installs this version by default on that Kubernetes version.
    #[serde(default)]
    pub default_version: bool,
}

/// What to set an add-on to for a target minor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddonChoice {
    /// The version to set.
    pub version: String,
    /// Why this one: `default for 1.31`, `newest compatible with 1.31`, `already compatible`.
    pub why: String,
}

/// Why no version could be chosen for an add-on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoAddonChoice {
    /// No version of the add-on runs on the target.
    #[error("the add-on versions list no version for Kubernetes {target}")]
    NotListed {
        /// The target minor.
        target: KubeMinor,
    },
    /// The installed version does not run on the target, and every version that does is
    /// older: only a downgrade would do, and none was asked for.
    #[error(
        "the installed {current} does not run on Kubernetes {target}, and every version that does is older (the newest: {newest}); a downgrade is made only when asked for"
    )]
    OnlyDowngrades {
        /// The installed version.
        current: String,
        /// The target minor.
        target: KubeMinor,
        /// The newest version that runs on the target.
        newest: String,
    },
}

/// Add-on versions and their compatibilities, from one or more `describe-addon-versions`
/// outputs.
#[derive(Debug, Clone, Default)]
pub struct AddonCatalog {
    addons: Vec<Addon>,
}

impl AddonCatalog {
    /// Parses `aws eks describe-addon-versions` JSON.
    pub fn from_json(text: &str) -> Result<AddonCatalog, AddonCatalogError> {
        let response: Response =
            serde_json::from_str(text).map_err(|source| AddonCatalogError::Parse { source })?;
        Ok(AddonCatalog {
            addons: response.addons,
        })
    }

    /// Adds another output's add-ons (e.g. one call per Kubernetes version).
    pub fn merge(&mut self, other: AddonCatalog) {
        self.addons.extend(other.addons);
    }

    /// Whether the catalog lists `addon` at all.
    pub fn knows(&self, addon: &str) -> bool {
        self.addons.iter().any(|a| a.addon_name == addon)
    }

    fn releases<'a>(&'a self, addon: &'a str) -> impl Iterator<Item = &'a AddonRelease> + 'a {
        self.addons
            .iter()
            .filter(move |a| a.addon_name == addon)
            .flat_map(|a| a.addon_versions.iter())
    }

    /// Whether `version` of `addon` runs on `minor`.
    pub fn is_compatible(&self, addon: &str, version: &str, minor: KubeMinor) -> bool {
        self.releases(addon).any(|r| {
            r.addon_version == version
                && r.compatibilities
                    .iter()
                    .any(|c| c.cluster_version == minor.to_string())
        })
    }

    /// What to set `addon` (now at `current`) to for `target`: the default version for the
    /// target, else the newest compatible one (the API lists newest first), but never lower
    /// than `current`: a current version that runs on the target and is at least as new is
    /// kept. When only an older version runs on the target, it is chosen only with
    /// `allow_downgrade`.
    pub fn choose(
        &self,
        addon: &str,
        current: &str,
        target: KubeMinor,
        allow_downgrade: bool,
    ) -> Result<AddonChoice, NoAddonChoice> {
        let target_text = target.to_string();
        let on_target = |r: &&AddonRelease| {
            r.compatibilities
                .iter()
                .find(|c| c.cluster_version == target_text)
                .map(|c| c.default_version)
        };
        let (candidate, kind) = match self.releases(addon).find(|r| on_target(r) == Some(true)) {
            Some(default) => (default, format!("the default for {target}")),
            None => (
                self.releases(addon)
                    .find(|r| on_target(r).is_some())
                    .ok_or(NoAddonChoice::NotListed { target })?,
                format!("the newest compatible with {target}"),
            ),
        };
        let candidate = candidate.addon_version.clone();
        let pick = |why: String| AddonChoice {
            version: candidate.clone(),
            why,
        };
        if candidate == current {
            return Ok(pick(format!("already {kind}")));
        }
        let order = self.compare(addon, current, &candidate);
        if self.is_compatible(addon, current, target) {
            return Ok(match order {
                // Never below what runs: a newer current version that runs on the target stays.
                Some(std::cmp::Ordering::Greater) | None => AddonChoice {
                    version: current.to_string(),
                    why: format!(
                        "newer than {kind} ({candidate}) and runs on it: kept, never downgraded"
                    ),
                },
                _ => pick(kind.clone()),
            });
        }
        match order {
            Some(std::cmp::Ordering::Greater) if !allow_downgrade => {
                Err(NoAddonChoice::OnlyDowngrades {
                    current: current.to_string(),
                    target,
                    newest: self
                        .releases(addon)
                        .find(|r| on_target(r).is_some())
                        .map(|r| r.addon_version.clone())
                        .unwrap_or_else(|| candidate.clone()),
                })
            }
            Some(std::cmp::Ordering::Greater) => Ok(pick(format!(
                "{kind}: a downgrade from {current}, as asked ({current} does not run on {target})"
            ))),
            None => Ok(pick(format!(
                "{kind} ({current} is not in the add-on versions, so whether this is a downgrade is unknown)"
            ))),
            _ => Ok(pick(kind.clone())),
        }
    }

    /// How version `a` of `addon` compares with `b`: by semantic version (`v1.11.3-eksbuild.1`
    /// reads as 1.11.3 with build 1), else by the catalog's order (newest first).
    fn compare(&self, addon: &str, a: &str, b: &str) -> Option<std::cmp::Ordering> {
        let parse = |v: &str| semver::Version::parse(v.trim_start_matches('v')).ok();
        if let (Some(a), Some(b)) = (parse(a), parse(b)) {
            return Some(a.cmp(&b));
        }
        let position = |v: &str| self.releases(addon).position(|r| r.addon_version == v);
        // Newest first: a lower position is a newer version.
        Some(position(b)?.cmp(&position(a)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = r#"{"addons": [{"addonName": "coredns", "type": "networking", "addonVersions": [
        {"addonVersion": "v1.11.4-eksbuild.2", "architecture": ["amd64"], "compatibilities": [
            {"clusterVersion": "1.32", "platformVersions": ["*"], "defaultVersion": true},
            {"clusterVersion": "1.31", "platformVersions": ["*"], "defaultVersion": false}]},
        {"addonVersion": "v1.11.3-eksbuild.1", "compatibilities": [
            {"clusterVersion": "1.31", "defaultVersion": true},
            {"clusterVersion": "1.30", "defaultVersion": false}]},
        {"addonVersion": "v1.11.1-eksbuild.9", "compatibilities": [
            {"clusterVersion": "1.30", "defaultVersion": true}]}]}]}"#;

    fn minor(s: &str) -> KubeMinor {
        s.parse().unwrap()
    }

    #[test]
    fn an_installed_version_newer_than_the_default_is_never_downgraded() {
        let catalog = AddonCatalog::from_json(JSON).unwrap();
        // v1.11.4 runs on 1.31 (not as its default): kept, not moved down to v1.11.3.
        let c = catalog
            .choose("coredns", "v1.11.4-eksbuild.2", minor("1.31"), false)
            .unwrap();
        assert_eq!(c.version, "v1.11.4-eksbuild.2");
        assert!(c.why.contains("kept, never downgraded"), "{}", c.why);
        // Builds compare as numbers: eksbuild.10 is newer than eksbuild.2.
        assert_eq!(
            catalog.compare("coredns", "v1.11.3-eksbuild.10", "v1.11.3-eksbuild.2"),
            Some(std::cmp::Ordering::Greater)
        );
        // A newer version that does not run on the target: only a downgrade would do.
        let newer = r#"{"addons": [{"addonName": "coredns", "addonVersions": [
            {"addonVersion": "v1.12.0-eksbuild.1", "compatibilities": [{"clusterVersion": "1.33", "defaultVersion": true}]},
            {"addonVersion": "v1.11.3-eksbuild.1", "compatibilities": [{"clusterVersion": "1.31", "defaultVersion": true}]}]}]}"#;
        let catalog = AddonCatalog::from_json(newer).unwrap();
        let refused = catalog
            .choose("coredns", "v1.12.0-eksbuild.1", minor("1.31"), false)
            .unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("a downgrade is made only when asked for"),
            "{refused}"
        );
        let asked = catalog
            .choose("coredns", "v1.12.0-eksbuild.1", minor("1.31"), true)
            .unwrap();
        assert_eq!(asked.version, "v1.11.3-eksbuild.1");
        assert!(
            asked
                .why
                .contains("a downgrade from v1.12.0-eksbuild.1, as asked")
        );
    }

    #[test]
    fn the_default_wins_then_the_newest_compatible() {
        let catalog = AddonCatalog::from_json(JSON).unwrap();
        let c = catalog
            .choose("coredns", "v1.11.1-eksbuild.9", minor("1.31"), false)
            .unwrap();
        assert_eq!(c.version, "v1.11.3-eksbuild.1");
        assert_eq!(c.why, "the default for 1.31");
        let c = catalog
            .choose("coredns", "v1.11.4-eksbuild.2", minor("1.32"), false)
            .unwrap();
        assert_eq!(c.why, "already the default for 1.32");
        assert_eq!(
            catalog.choose("coredns", "x", minor("1.33"), false),
            Err(NoAddonChoice::NotListed {
                target: minor("1.33")
            })
        );
        assert!(
            catalog
                .choose("kube-proxy", "x", minor("1.31"), false)
                .is_err()
        );
        assert!(catalog.is_compatible("coredns", "v1.11.4-eksbuild.2", minor("1.31")));
        assert!(!catalog.is_compatible("coredns", "v1.11.1-eksbuild.9", minor("1.31")));
    }

    #[test]
    fn without_a_default_the_newest_compatible_is_chosen() {
        let json = JSON.replace("\"defaultVersion\": true", "\"defaultVersion\": false");
        let catalog = AddonCatalog::from_json(&json).unwrap();
        let c = catalog
            .choose("coredns", "v1.11.1-eksbuild.9", minor("1.31"), false)
            .unwrap();
        assert_eq!(c.version, "v1.11.4-eksbuild.2");
        assert_eq!(c.why, "the newest compatible with 1.31");
    }

    #[test]
    fn other_json_is_refused_with_the_expected_shape() {
        let e = AddonCatalog::from_json(r#"{"cluster": {}}"#).unwrap_err();
        assert!(e.to_string().contains("describe-addon-versions"), "{e}");
    }
}

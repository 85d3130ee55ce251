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
//! if let Some(choice) = catalog.choose("coredns", "v1.11.1-eksbuild.9", target) {
//!     println!("coredns -> {} ({})", choice.version, choice.why);
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
    /// target, else the newest compatible one (the API lists newest first). A current version
    /// that already is the default is kept. `None` when no version runs on `target`.
    pub fn choose(&self, addon: &str, current: &str, target: KubeMinor) -> Option<AddonChoice> {
        let target_text = target.to_string();
        let on_target = |r: &&AddonRelease| {
            r.compatibilities
                .iter()
                .find(|c| c.cluster_version == target_text)
                .map(|c| c.default_version)
        };
        if let Some(default) = self.releases(addon).find(|r| on_target(r) == Some(true)) {
            return Some(AddonChoice {
                version: default.addon_version.clone(),
                why: if default.addon_version == current {
                    format!("already the default for {target}")
                } else {
                    format!("the default for {target}")
                },
            });
        }
        let newest = self.releases(addon).find(|r| on_target(r).is_some())?;
        Some(AddonChoice {
            version: newest.addon_version.clone(),
            why: format!("the newest compatible with {target}"),
        })
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
    fn the_default_wins_then_the_newest_compatible() {
        let catalog = AddonCatalog::from_json(JSON).unwrap();
        let c = catalog
            .choose("coredns", "v1.11.1-eksbuild.9", minor("1.31"))
            .unwrap();
        assert_eq!(c.version, "v1.11.3-eksbuild.1");
        assert_eq!(c.why, "the default for 1.31");
        let c = catalog
            .choose("coredns", "v1.11.4-eksbuild.2", minor("1.32"))
            .unwrap();
        assert_eq!(c.why, "already the default for 1.32");
        assert!(catalog.choose("coredns", "x", minor("1.33")).is_none());
        assert!(catalog.choose("kube-proxy", "x", minor("1.31")).is_none());
        assert!(catalog.is_compatible("coredns", "v1.11.4-eksbuild.2", minor("1.31")));
        assert!(!catalog.is_compatible("coredns", "v1.11.1-eksbuild.9", minor("1.31")));
    }

    #[test]
    fn without_a_default_the_newest_compatible_is_chosen() {
        let json = JSON.replace("\"defaultVersion\": true", "\"defaultVersion\": false");
        let catalog = AddonCatalog::from_json(&json).unwrap();
        let c = catalog.choose("coredns", "v1", minor("1.31")).unwrap();
        assert_eq!(c.version, "v1.11.4-eksbuild.2");
        assert_eq!(c.why, "the newest compatible with 1.31");
    }

    #[test]
    fn other_json_is_refused_with_the_expected_shape() {
        let e = AddonCatalog::from_json(r#"{"cluster": {}}"#).unwrap_err();
        assert!(e.to_string().contains("describe-addon-versions"), "{e}");
    }
}

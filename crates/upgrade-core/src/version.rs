//! Kubernetes versions as the upgrade cares about them: a minor (`1.30`) and a full version
//! (`v1.30.2-eks-a5d2b1c`).
//!
//! Every rule in this crate (skew, one-minor-at-a-time, removed APIs, compatibility) works on
//! minors, so [`KubeMinor`] is the workhorse: `Copy`, ordered, with minor arithmetic.
//! [`KubeVersion`] keeps the patch and the vendor suffix of what a server or kubelet reports,
//! so reports can show exactly what was seen.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A version string that is not a Kubernetes version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{input}` is not a Kubernetes version: {reason} (expected forms: `1.30`, `v1.30.2`, `v1.30.2-eks-a5d2b1c`)"
)]
pub struct VersionError {
    /// The text that failed to parse.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// A Kubernetes minor release, such as `1.30`.
///
/// Ordered by (major, minor). Parses from `1.30`, `v1.30`, `1.30.2` and `v1.30.2-eks-a5d2b1c`
/// (the patch and suffix are dropped). Serializes as `"1.30"` (a string: a YAML float would
/// turn `1.30` into `1.3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KubeMinor {
    /// The major version (always 1 so far).
    pub major: u32,
    /// The minor version.
    pub minor: u32,
}

impl KubeMinor {
    /// `1.<minor>`.
    pub const fn new(major: u32, minor: u32) -> Self {
        Self { major, minor }
    }

    /// The next minor (`1.30` → `1.31`).
    pub fn next(self) -> Self {
        Self::new(self.major, self.minor + 1)
    }

    /// The previous minor, or `None` at `x.0`.
    pub fn prev(self) -> Option<Self> {
        self.minor
            .checked_sub(1)
            .map(|minor| Self::new(self.major, minor))
    }

    /// `self` moved by `delta` minors (negative goes back), or `None` below `x.0`.
    pub fn offset(self, delta: i64) -> Option<Self> {
        let minor = i64::from(self.minor) + delta;
        u32::try_from(minor)
            .ok()
            .map(|minor| Self::new(self.major, minor))
    }

    /// How many minors `other` is ahead of `self` (negative when behind).
    ///
    /// Across majors this is not defined by Kubernetes; it returns `None` then.
    pub fn minors_until(self, other: KubeMinor) -> Option<i64> {
        (self.major == other.major).then(|| i64::from(other.minor) - i64::from(self.minor))
    }
}

impl fmt::Display for KubeMinor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl FromStr for KubeMinor {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KubeVersion::from_str(s).map(|v| v.minor)
    }
}

impl Serialize for KubeMinor {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for KubeMinor {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = version_text(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A full Kubernetes version as a component reports it, such as `v1.30.2-eks-a5d2b1c`.
///
/// Ordering compares minor, then patch (a missing patch sorts first), then the suffix text;
/// the suffix only breaks ties.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KubeVersion {
    /// The minor this version belongs to.
    pub minor: KubeMinor,
    /// The patch, when given (`1.30` has none).
    pub patch: Option<u32>,
    /// What follows the patch after `-` or `+` (`eks-a5d2b1c`), when any.
    pub suffix: Option<String>,
}

impl KubeVersion {
    /// The patch, or 0 when none was given.
    pub fn patch_or_zero(&self) -> u32 {
        self.patch.unwrap_or(0)
    }

    /// The version as semver (`1.30.2-eks-a5d2b1c`), the form Helm compares chart
    /// `kubeVersion` constraints against. `None` if the suffix is not valid semver.
    pub fn to_semver(&self) -> Option<semver::Version> {
        let mut text = format!(
            "{}.{}.{}",
            self.minor.major,
            self.minor.minor,
            self.patch_or_zero()
        );
        if let Some(suffix) = &self.suffix {
            text.push('-');
            text.push_str(suffix);
        }
        semver::Version::parse(&text).ok()
    }
}

impl From<KubeMinor> for KubeVersion {
    fn from(minor: KubeMinor) -> Self {
        Self {
            minor,
            patch: None,
            suffix: None,
        }
    }
}

impl fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.minor)?;
        if let Some(patch) = self.patch {
            write!(f, ".{patch}")?;
        }
        if let Some(suffix) = &self.suffix {
            write!(f, "-{suffix}")?;
        }
        Ok(())
    }
}

impl FromStr for KubeVersion {
    type Err = VersionError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let error = |reason| VersionError {
            input: input.to_owned(),
            reason,
        };
        let trimmed = input.trim();
        let body = trimmed
            .strip_prefix('v')
            .or_else(|| trimmed.strip_prefix('V'))
            .unwrap_or(trimmed);
        if body.is_empty() {
            return Err(error("it is empty"));
        }
        // The numeric core ends at the first `-` or `+` (`1.30.2-eks-…`, `1.30.2+k3s1`).
        let (core, suffix) = match body.find(['-', '+']) {
            Some(at) => (&body[..at], Some(&body[at + 1..])),
            None => (body, None),
        };
        let mut parts = core.split('.');
        let number = |part: Option<&str>, what| -> Result<Option<u32>, VersionError> {
            match part {
                None => Ok(None),
                Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p
                    .parse()
                    .map(Some)
                    .map_err(|_| error("a number is too large")),
                Some(_) => Err(error(what)),
            }
        };
        let major = number(parts.next(), "the major version is not a number")?
            .ok_or_else(|| error("the major version is missing"))?;
        let minor = number(parts.next(), "the minor version is not a number")?
            .ok_or_else(|| error("the minor version is missing"))?;
        let patch = number(parts.next(), "the patch version is not a number")?;
        if parts.next().is_some() {
            return Err(error("it has more than three numeric parts"));
        }
        let suffix = match suffix {
            Some("") => return Err(error("the suffix after `-` or `+` is empty")),
            Some(s) => Some(s.to_owned()),
            None => None,
        };
        if suffix.is_some() && patch.is_none() {
            return Err(error("a suffix needs a patch version first"));
        }
        Ok(Self {
            minor: KubeMinor::new(major, minor),
            patch,
            suffix,
        })
    }
}

impl Serialize for KubeVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for KubeVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = version_text(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Reads a version that must be written as a string; a bare YAML number is refused with a hint,
/// because `1.30` as a float is `1.3`.
fn version_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a Kubernetes version as a string, such as \"1.30\"")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<String, E> {
            Err(E::custom(format!(
                "version {v} was written as a number; quote it (\"1.30\", not 1.30), \
                 a number loses trailing zeros"
            )))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
            Err(E::custom(format!(
                "version {v} was written as a number; quote it, such as \"1.30\""
            )))
        }
    }
    deserializer.deserialize_any(Visitor)
}

/// Splits an image reference at its tag: `quay.io:443/argoproj/argocli:v3.7.4` →
/// (`quay.io:443/argoproj/argocli`, `v3.7.4`); `None` when it has no tag (a registry port is
/// not one). A digest (`@sha256:…`) is the caller's to cut off first.
pub fn split_image_tag(reference: &str) -> Option<(&str, &str)> {
    reference
        .rsplit_once(':')
        .filter(|(_, tag)| !tag.contains('/'))
}

/// Parses a free-form application or chart version (`v1.2`, `1.2.3-rc.1`, `0.14`) into semver,
/// filling a missing minor or patch with 0, as Helm does.
pub fn parse_loose_semver(input: &str) -> Option<semver::Version> {
    let trimmed = input.trim();
    let body = trimmed.strip_prefix(['v', 'V']).unwrap_or(trimmed);
    let (core, rest) = match body.find(['-', '+']) {
        Some(at) => (&body[..at], &body[at..]),
        None => (body, ""),
    };
    let parts: Vec<&str> = core.split('.').collect();
    if parts.is_empty()
        || parts.len() > 3
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let mut full = parts.join(".");
    for _ in parts.len()..3 {
        full.push_str(".0");
    }
    full.push_str(rest);
    semver::Version::parse(&full).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> KubeVersion {
        s.parse().unwrap()
    }

    #[test]
    fn parses_every_form_a_cluster_reports() {
        assert_eq!(v("1.30").minor, KubeMinor::new(1, 30));
        assert_eq!(v("1.30").patch, None);
        let eks = v("v1.30.2-eks-a5d2b1c");
        assert_eq!(eks.minor, KubeMinor::new(1, 30));
        assert_eq!(eks.patch, Some(2));
        assert_eq!(eks.suffix.as_deref(), Some("eks-a5d2b1c"));
        assert_eq!(v("1.30.2-eks-a5d2b1c"), eks);
        assert_eq!(eks.to_string(), "1.30.2-eks-a5d2b1c");
        assert_eq!(v("v1.31.0+k3s1").suffix.as_deref(), Some("k3s1"));
        assert_eq!(
            " v1.29.15 ".parse::<KubeMinor>().unwrap(),
            KubeMinor::new(1, 29)
        );
    }

    #[test]
    fn refuses_what_is_not_a_version_and_says_why() {
        for (input, reason) in [
            ("", "it is empty"),
            ("v", "it is empty"),
            ("1", "the minor version is missing"),
            ("1.x", "the minor version is not a number"),
            ("1.30.2.1", "it has more than three numeric parts"),
            ("1.30-eks", "a suffix needs a patch version first"),
            ("1.30.2-", "the suffix after `-` or `+` is empty"),
            ("latest", "the major version is not a number"),
        ] {
            let err = input.parse::<KubeVersion>().unwrap_err();
            assert_eq!(err.reason, reason, "{input:?}");
        }
        let err = "1.x".parse::<KubeMinor>().unwrap_err();
        assert!(err.to_string().contains("expected forms: `1.30`"), "{err}");
    }

    #[test]
    fn orders_by_minor_then_patch() {
        assert!(v("1.9") < v("1.10"));
        assert!(v("1.30") < v("1.30.0"));
        assert!(v("1.30.2") < v("1.30.10"));
        assert!(v("1.30.10") < v("1.31.0"));
    }

    #[test]
    fn minor_arithmetic() {
        let m = KubeMinor::new(1, 30);
        assert_eq!(m.next(), KubeMinor::new(1, 31));
        assert_eq!(m.prev(), Some(KubeMinor::new(1, 29)));
        assert_eq!(KubeMinor::new(1, 0).prev(), None);
        assert_eq!(m.offset(-3), Some(KubeMinor::new(1, 27)));
        assert_eq!(m.offset(-31), None);
        assert_eq!(m.minors_until(KubeMinor::new(1, 33)), Some(3));
        assert_eq!(m.minors_until(KubeMinor::new(1, 28)), Some(-2));
        assert_eq!(m.minors_until(KubeMinor::new(2, 0)), None);
    }

    #[test]
    fn serde_wants_strings_and_explains_floats() {
        let m: KubeMinor = serde_norway::from_str("\"1.30\"").unwrap();
        assert_eq!(m.to_string(), "1.30");
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"1.30\"");
        let err = serde_norway::from_str::<KubeMinor>("1.30").unwrap_err();
        assert!(err.to_string().contains("quote it"), "{err}");
    }

    #[test]
    fn loose_semver_fills_missing_parts() {
        assert_eq!(parse_loose_semver("v1.2").unwrap().to_string(), "1.2.0");
        assert_eq!(parse_loose_semver("0.14").unwrap().to_string(), "0.14.0");
        assert_eq!(parse_loose_semver("1").unwrap().to_string(), "1.0.0");
        assert_eq!(
            parse_loose_semver("1.30.2-eks-a5d2b1c")
                .unwrap()
                .to_string(),
            "1.30.2-eks-a5d2b1c"
        );
        assert_eq!(parse_loose_semver("1.x"), None);
        assert_eq!(parse_loose_semver("latest"), None);
    }
}

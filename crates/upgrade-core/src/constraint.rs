//! Helm's version constraints (the Masterminds/semver v3 syntax), as used by a chart's
//! `kubeVersion` field: the toolkit's one evaluator, shared by the preflight checks and the
//! Helm wrapper so they never disagree.
//!
//! `semver::VersionReq` is Cargo's syntax and differs where charts need it: Helm accepts
//! space-separated AND (`>= 1.21 < 1.33`), `||`, hyphen ranges (`1.21 - 1.30`), `x`/`*`
//! wildcards, partial versions (`>1.2` means `>=1.3.0`), and it treats pre-releases specially:
//! a pre-release version (every EKS server version, `v1.30.2-eks-a5d2b1c`, is one in semver
//! terms) only satisfies comparisons that ask for pre-releases. That is why charts write
//! `>=1.25.0-0`, and why a chart saying `>=1.25.0` refuses to install on EKS.
//!
//! What "ask for" means differs between the Helm majors (measured with Helm 3.17.3 and 4.1.4
//! against an API server reporting an EKS version), so it is a parameter, [`PrereleaseRule`]:
//! for `>=1.28.0-0 <1.32.0`, Helm 3 refuses `v1.30.4-eks-a737599` and Helm 4 installs.
//!
//! ```
//! use upgrade_core::constraint::{Constraint, PrereleaseRule};
//!
//! let c: Constraint = ">=1.25.0-0 <1.33.0-0".parse().unwrap();
//! assert!(c.matches_str("v1.30.2-eks-a5d2b1c", PrereleaseRule::PerTerm).unwrap());
//! assert!(!c.matches_str("1.33.0", PrereleaseRule::PerTerm).unwrap());
//! // Without `-0`, an EKS version is a pre-release the constraint does not look at:
//! let strict: Constraint = ">=1.25.0".parse().unwrap();
//! assert!(!strict.matches_str("v1.30.2-eks-a5d2b1c", PrereleaseRule::PerGroup).unwrap());
//! // One `-0` is enough for Helm 4, not for Helm 3:
//! let mixed: Constraint = ">=1.28.0-0 <1.32.0".parse().unwrap();
//! assert!(!mixed.matches_str("v1.30.4-eks-a737599", PrereleaseRule::PerTerm).unwrap());
//! assert!(mixed.matches_str("v1.30.4-eks-a737599", PrereleaseRule::PerGroup).unwrap());
//! ```

use std::fmt;
use std::str::FromStr;

use semver::{Prerelease, Version};

use crate::version::parse_loose_semver;

/// A constraint or a version that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConstraintError {
    /// The constraint text is not Helm constraint syntax.
    #[error(
        "`{constraint}` is not a valid version constraint: {reason} (Helm syntax: `>=1.25.0-0`, `>= 1.21 < 1.33`, `^1.2`, `~1.30`, `a || b`)"
    )]
    Syntax {
        /// The whole constraint text.
        constraint: String,
        /// What is wrong.
        reason: String,
    },
    /// The version to test is not a semantic version.
    #[error("`{0}` is not a version a constraint can be checked against")]
    Version(String),
}

/// How a pre-release version (an EKS or GKE server version) is matched; Helm 3 and Helm 4
/// differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PrereleaseRule {
    /// Helm 3 (Masterminds 3.2): every comparison must carry a pre-release itself, so
    /// `>=1.28.0-0 <1.32.0` refuses `1.30.4-eks-x` because `<1.32.0` has none.
    PerTerm,
    /// Helm 4: one comparison with a pre-release opts its whole AND group in, so
    /// `>=1.28.0-0 <1.32.0` accepts `1.30.4-eks-x`.
    PerGroup,
}

impl PrereleaseRule {
    /// The rule of a Helm major version (3 or 4; anything newer is taken as 4).
    pub fn for_helm_major(major: u64) -> Self {
        if major <= 3 {
            PrereleaseRule::PerTerm
        } else {
            PrereleaseRule::PerGroup
        }
    }

    /// The Helm major that applies this rule, for messages.
    pub fn helm(self) -> &'static str {
        match self {
            PrereleaseRule::PerTerm => "Helm 3",
            PrereleaseRule::PerGroup => "Helm 4",
        }
    }
}

/// A parsed constraint: OR of AND groups of comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    text: String,
    groups: Vec<Group>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Group {
    comparisons: Vec<Comparison>,
    /// Whether any comparison names a pre-release (then pre-release versions may match).
    has_prerelease: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Tilde,
    Caret,
}

/// How much of a version a comparison spelled out (`1` → Major, `1.2` → Minor, `1.2.3` → Patch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Precision {
    Any,
    Major,
    Minor,
    Patch,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Comparison {
    op: Op,
    /// The spelled-out version with missing parts as 0 (pre-release kept).
    version: Version,
    precision: Precision,
}

impl Constraint {
    /// The constraint as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `version` satisfies the constraint, with the pre-release `rule` of the Helm
    /// that will evaluate it.
    pub fn matches(&self, version: &Version, rule: PrereleaseRule) -> bool {
        let release = version.pre.is_empty();
        self.groups.iter().any(|group| {
            let opted_in = |c: &Comparison| match rule {
                PrereleaseRule::PerGroup => group.has_prerelease,
                PrereleaseRule::PerTerm => !c.version.pre.is_empty(),
            };
            group
                .comparisons
                .iter()
                .all(|c| (release || opted_in(c)) && c.matches(version))
        })
    }

    /// Parses `version` loosely (`v1.30`, `1.30.2-eks-a5d2b1c`) and checks it.
    pub fn matches_str(
        &self,
        version: &str,
        rule: PrereleaseRule,
    ) -> Result<bool, ConstraintError> {
        let parsed = parse_version(version)?;
        Ok(self.matches(&parsed, rule))
    }
}

/// Parses a Kubernetes or chart version the way Helm does (`v1.30`, `1.30.2-eks-a5d2b1c`,
/// `1.31.0+k3s1`): a missing minor or patch is 0, build metadata is ignored.
pub fn parse_version(version: &str) -> Result<Version, ConstraintError> {
    let mut parsed =
        parse_loose_semver(version).ok_or_else(|| ConstraintError::Version(version.to_owned()))?;
    parsed.build = semver::BuildMetadata::EMPTY;
    Ok(parsed)
}

/// Whether a chart's `kubeVersion` admits a cluster, as one Helm major would decide at
/// install time, and why not.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KubeVersionCheck {
    /// The constraint (`None`: the chart sets none).
    pub constraint: Option<String>,
    /// The version it was checked against, as the API server reports it.
    pub kube_version: String,
    /// Whether Helm would accept it.
    pub compatible: bool,
    /// Why not, and what to do.
    pub reason: Option<String>,
}

/// Evaluates a chart's `kubeVersion` the way the Helm with `rule` does, against the version
/// a live cluster reports. A pre-release Kubernetes version such as `v1.30.4-eks-a737599`
/// only satisfies constraints that opt in to pre-releases (see [`PrereleaseRule`]); the reason
/// says when that, not the version itself, is the problem.
///
/// `helm template --kube-version` drops the pre-release part, so a template run can pass where
/// the install is refused.
pub fn check_kube_version(
    constraint: Option<&str>,
    kube_version: &str,
    rule: PrereleaseRule,
) -> Result<KubeVersionCheck, ConstraintError> {
    let version = parse_version(kube_version)?;
    let Some(text) = constraint.filter(|c| !c.trim().is_empty()) else {
        return Ok(KubeVersionCheck {
            constraint: None,
            kube_version: kube_version.to_string(),
            compatible: true,
            reason: None,
        });
    };
    let parsed: Constraint = text.parse()?;
    let compatible = parsed.matches(&version, rule);
    let reason = (!compatible).then(|| {
        let mut release = version.clone();
        release.pre = Prerelease::EMPTY;
        if !version.pre.is_empty() && parsed.matches(&release, rule) {
            // Name the major only when the other one would decide differently.
            let (who, helm4) = if rule == PrereleaseRule::PerTerm
                && parsed.matches(&version, PrereleaseRule::PerGroup)
            {
                (
                    rule.helm(),
                    " (Helm 4 accepts it: there one -0 term per AND group suffices)",
                )
            } else {
                ("Helm", "")
            };
            format!(
                "`{kube_version}` is a pre-release version to Helm (as EKS and GKE versions are) and \
                 `{text}` does not opt in to pre-releases, so {who} refuses it although {release} \
                 itself is allowed{helm4}; the chart should write every bound with a -0 suffix \
                 (e.g. `>=1.28.0-0 <1.33.0-0`)"
            )
        } else {
            format!(
                "`{kube_version}` is outside the chart's kubeVersion `{text}`: pick a chart version \
                 that supports it"
            )
        }
    });
    Ok(KubeVersionCheck {
        constraint: Some(text.to_string()),
        kube_version: kube_version.to_string(),
        compatible,
        reason,
    })
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Constraint {
    type Err = ConstraintError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let syntax = |reason: String| ConstraintError::Syntax {
            constraint: text.to_owned(),
            reason,
        };
        if text.trim().is_empty() {
            return Err(syntax("it is empty".into()));
        }
        let mut groups = Vec::new();
        for alternative in text.split("||") {
            let tokens = tokenize(alternative);
            if tokens.is_empty() {
                return Err(syntax("an alternative between `||` is empty".into()));
            }
            let mut comparisons = Vec::new();
            let mut has_prerelease = false;
            let mut i = 0;
            while i < tokens.len() {
                // Hyphen range: `A - B` means `>= A, <= B`.
                if tokens.get(i + 1).map(String::as_str) == Some("-") {
                    let upper = tokens
                        .get(i + 2)
                        .ok_or_else(|| syntax("a hyphen range has no upper end".into()))?;
                    let low = parse_comparison(&format!(">={}", tokens[i])).map_err(&syntax)?;
                    let high = parse_comparison(&format!("<={upper}")).map_err(&syntax)?;
                    comparisons.push(low);
                    comparisons.push(high);
                    i += 3;
                    continue;
                }
                comparisons.push(parse_comparison(&tokens[i]).map_err(&syntax)?);
                i += 1;
            }
            has_prerelease |= comparisons.iter().any(|c| !c.version.pre.is_empty());
            groups.push(Group {
                comparisons,
                has_prerelease,
            });
        }
        Ok(Self {
            text: text.trim().to_owned(),
            groups,
        })
    }
}

/// Splits an AND group into comparisons: separators are commas and spaces, but an operator
/// may be followed by spaces (`>= 1.21`), and ` - ` stays a token of its own.
fn tokenize(group: &str) -> Vec<String> {
    let mut tokens: Vec<String> = Vec::new();
    let mut pending_op = String::new();
    for word in group.split([',', ' ', '\t']).filter(|w| !w.is_empty()) {
        let is_only_op = !word.is_empty() && word.chars().all(|c| "<>=!~^".contains(c));
        if is_only_op {
            pending_op.push_str(word);
            continue;
        }
        if word == "-" && pending_op.is_empty() {
            tokens.push(word.to_owned());
            continue;
        }
        tokens.push(format!("{pending_op}{word}"));
        pending_op.clear();
    }
    if !pending_op.is_empty() {
        tokens.push(pending_op);
    }
    tokens
}

fn parse_comparison(token: &str) -> Result<Comparison, String> {
    let op_len = token
        .find(|c: char| !"<>=!~^".contains(c))
        .unwrap_or(token.len());
    let (op_text, rest) = token.split_at(op_len);
    let op = match op_text {
        "" | "=" => Op::Eq,
        "!=" => Op::Ne,
        ">" => Op::Gt,
        ">=" | "=>" => Op::Ge,
        "<" => Op::Lt,
        "<=" | "=<" => Op::Le,
        "~" | "~>" => Op::Tilde,
        "^" => Op::Caret,
        other => return Err(format!("unknown operator `{other}` in `{token}`")),
    };
    if rest.is_empty() {
        return Err(format!("operator `{op_text}` has no version"));
    }
    let body = rest.strip_prefix(['v', 'V']).unwrap_or(rest);
    let (core, pre) = match body.find(['-', '+']) {
        Some(at) => {
            let tail = &body[at..];
            // Build metadata never takes part in a comparison.
            let pre = tail
                .strip_prefix('-')
                .map(|p| p.split('+').next().unwrap_or(""));
            (&body[..at], pre)
        }
        None => (body, None),
    };
    let mut numbers = [0u64; 3];
    let mut precision = Precision::Any;
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() > 3 {
        return Err(format!("`{rest}` has more than three numeric parts"));
    }
    let wildcard_at = parts
        .iter()
        .position(|part| matches!(*part, "x" | "X" | "*"))
        .unwrap_or(parts.len());
    if parts[wildcard_at..]
        .iter()
        .any(|part| !matches!(*part, "x" | "X" | "*"))
    {
        return Err(format!("`{rest}`: a number cannot follow a wildcard"));
    }
    for (index, part) in parts[..wildcard_at].iter().enumerate() {
        numbers[index] = part
            .parse()
            .map_err(|_| format!("`{part}` in `{token}` is not a number or a wildcard"))?;
        precision = match index {
            0 => Precision::Major,
            1 => Precision::Minor,
            _ => Precision::Patch,
        };
    }
    let mut version = Version::new(numbers[0], numbers[1], numbers[2]);
    if let Some(pre) = pre {
        version.pre =
            Prerelease::new(pre).map_err(|e| format!("bad pre-release in `{token}`: {e}"))?;
    }
    Ok(Comparison {
        op,
        version,
        precision,
    })
}

impl Comparison {
    /// The exclusive upper end of the range a partial version names (`1.2` → `1.3.0`).
    fn partial_upper(&self) -> Option<Version> {
        let v = &self.version;
        match self.precision {
            Precision::Any => None,
            Precision::Major => Some(Version::new(v.major + 1, 0, 0)),
            Precision::Minor => Some(Version::new(v.major, v.minor + 1, 0)),
            Precision::Patch => None,
        }
    }

    fn matches(&self, candidate: &Version) -> bool {
        // Compare without build metadata, like Masterminds.
        let mut v = candidate.clone();
        v.build = semver::BuildMetadata::EMPTY;
        let c = &self.version;
        let in_partial = || match self.partial_upper() {
            Some(upper) => v >= *c && v < upper,
            None if self.precision == Precision::Any => true,
            None => v == *c,
        };
        match self.op {
            Op::Eq => in_partial(),
            Op::Ne => !in_partial(),
            Op::Gt => match self.partial_upper() {
                Some(upper) => v >= upper,
                None if self.precision == Precision::Any => false,
                None => v > *c,
            },
            Op::Ge => v >= *c,
            Op::Lt => v < *c,
            Op::Le => match self.partial_upper() {
                Some(upper) => v < upper,
                None if self.precision == Precision::Any => true,
                None => v <= *c,
            },
            Op::Tilde => {
                if self.precision == Precision::Any {
                    return true;
                }
                let upper = match self.precision {
                    Precision::Major => Version::new(c.major + 1, 0, 0),
                    _ => Version::new(c.major, c.minor + 1, 0),
                };
                v >= *c && v < upper
            }
            Op::Caret => {
                let upper = match self.precision {
                    Precision::Any => return true,
                    _ if c.major > 0 => Version::new(c.major + 1, 0, 0),
                    Precision::Major => Version::new(1, 0, 0),
                    _ if c.minor > 0 => Version::new(0, c.minor + 1, 0),
                    Precision::Minor => Version::new(0, 1, 0),
                    _ => Version::new(0, 0, c.patch + 1),
                };
                v >= *c && v < upper
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `version` satisfies `constraint` under Helm 3's rule; for a release version
    /// both rules must agree.
    fn check(constraint: &str, version: &str) -> bool {
        let c = constraint
            .parse::<Constraint>()
            .unwrap_or_else(|e| panic!("{e}"));
        let per_term = c.matches_str(version, PrereleaseRule::PerTerm).unwrap();
        if parse_version(version).unwrap().pre.is_empty() {
            assert_eq!(
                per_term,
                c.matches_str(version, PrereleaseRule::PerGroup).unwrap(),
                "{constraint} {version}"
            );
        }
        per_term
    }

    fn helm4(constraint: &str, version: &str) -> bool {
        constraint
            .parse::<Constraint>()
            .unwrap()
            .matches_str(version, PrereleaseRule::PerGroup)
            .unwrap()
    }

    #[test]
    fn comparison_operators_at_their_boundaries() {
        let cases = [
            (">=1.25.0", "1.25.0", true),
            (">=1.25.0", "1.24.99", false),
            (">1.25.0", "1.25.0", false),
            (">1.25.0", "1.25.1", true),
            ("<1.33.0", "1.32.9", true),
            ("<1.33.0", "1.33.0", false),
            ("<=1.33.0", "1.33.0", true),
            ("<=1.33.0", "1.33.1", false),
            ("=1.30.2", "1.30.2", true),
            ("1.30.2", "1.30.3", false),
            ("!=1.30.2", "1.30.2", false),
            ("!=1.30.2", "1.30.3", true),
            ("=>1.2", "1.2.0", true),
            ("=<1.2", "1.2.9", true),
        ];
        for (c, v, want) in cases {
            assert_eq!(check(c, v), want, "{c} vs {v}");
        }
    }

    #[test]
    fn partial_versions_cover_their_whole_range() {
        assert!(check(">=1.21", "1.21.0"));
        assert!(!check(">=1.21", "1.20.15"));
        assert!(check("<1.33", "1.32.99"));
        assert!(!check("<1.33", "1.33.0"));
        // `>1.2` is `>=1.3.0`; `<=1.2` is `<1.3.0`.
        assert!(!check(">1.2", "1.2.9"));
        assert!(check(">1.2", "1.3.0"));
        assert!(check("<=1.2", "1.2.9"));
        assert!(!check("<=1.2", "1.3.0"));
        assert!(check("1.30", "1.30.7"));
        assert!(!check("1.30", "1.31.0"));
        assert!(check("1.30.x", "1.30.7"));
        assert!(check("1.x", "1.99.0"));
        assert!(!check("!=1.30", "1.30.4"));
        assert!(!check("!=1.29.x", "1.29.5"));
        assert!(check("=>1.2, =<1.4", "1.3.0"));
        assert!(check("*", "1.30.0"));
        assert!(check(">=0.0.0", "1.30.0"));
    }

    #[test]
    fn tilde_and_caret() {
        assert!(check("~1.30", "1.30.0"));
        assert!(check("~1.30", "1.30.9"));
        assert!(!check("~1.30", "1.31.0"));
        assert!(check("~1.30.2", "1.30.2"));
        assert!(!check("~1.30.2", "1.30.1"));
        assert!(check("~1", "1.99.0"));
        assert!(!check("~1", "2.0.0"));
        assert!(check("~>1.2", "1.2.5"));
        assert!(check("^1.2", "1.99.0"));
        assert!(!check("^1.2", "1.1.9"));
        assert!(!check("^1.2", "2.0.0"));
        assert!(check("^0.2.3", "0.2.9"));
        assert!(!check("^0.2.3", "0.3.0"));
        assert!(check("^0.0.3", "0.0.3"));
        assert!(!check("^0.0.3", "0.0.4"));
        assert!(check("^0", "0.9.0"));
        assert!(!check("^0", "1.0.0"));
    }

    #[test]
    fn and_or_hyphen_and_spaces() {
        assert!(check(">= 1.21 < 1.33", "1.32.0"));
        assert!(!check(">= 1.21 < 1.33", "1.33.0"));
        assert!(!check(">= 1.21 < 1.33", "1.20.0"));
        assert!(check(">=1.21, <1.33", "1.25.0"));
        assert!(check("<1.20 || >=1.30", "1.31.0"));
        assert!(check("<1.20 || >=1.30", "1.19.0"));
        assert!(!check("<1.20 || >=1.30", "1.25.0"));
        assert!(check("1.21 - 1.30", "1.30.9"));
        assert!(!check("1.21 - 1.30", "1.31.0"));
        assert!(check("1.21 - 1.30", "1.21.0"));
    }

    #[test]
    fn prerelease_versions_need_a_prerelease_in_the_group() {
        // The EKS case: the server reports a pre-release in semver terms.
        assert!(!check(">=1.25.0", "v1.30.2-eks-a5d2b1c"));
        assert!(check(">=1.25.0-0", "v1.30.2-eks-a5d2b1c"));
        assert!(check(">=1.28.0-0 <1.32.0-0", "v1.31.1-gke.100"));
        assert!(!check(">=1.28.0-0 <1.31.0-0", "v1.31.1-gke.100"));
        assert!(!check("^1.28", "1.30.0-eks-1"));
        // Helm 4: one `-0` opens the whole AND group; Helm 3 needs it on every comparison.
        assert!(helm4(">=1.25.0-0 <1.33.0", "v1.30.2-eks-a5d2b1c"));
        assert!(!check(">=1.25.0-0 <1.33.0", "v1.30.2-eks-a5d2b1c"));
        assert!(!helm4(">=1.25.0-0 <1.33.0-0", "v1.33.0-eks-1"));
        // The other alternative has no pre-release, so it cannot match; groups opt in one
        // by one.
        assert!(!helm4(">=1.35.0-0 || >=1.20.0", "1.30.2-eks-1"));
        assert!(!helm4(
            ">=1.28.0 || >=1.29.0-0 <1.29.5",
            "1.30.4-eks-a737599"
        ));
        // Release versions are unaffected by a `-0`.
        assert!(check(">=1.25.0-0", "1.25.0"));
        // Build metadata is ignored.
        assert!(check(">=1.25.0", "1.30.0+k3s1"));
    }

    #[test]
    fn bad_constraints_are_refused_with_the_reason() {
        for (text, reason) in [
            ("", "it is empty"),
            (">=1.2 ||", "an alternative between `||` is empty"),
            ("><1.2", "unknown operator `><`"),
            (">=", "operator `>=` has no version"),
            (">=1.2.3.4", "more than three numeric parts"),
            (">=a.b", "is not a number or a wildcard"),
            ("1.2 -", "a hyphen range has no upper end"),
            ("1.x.3", "a number cannot follow a wildcard"),
        ] {
            let err = text.parse::<Constraint>().unwrap_err();
            assert!(err.to_string().contains(reason), "{text:?}: {err}");
        }
        let c: Constraint = ">=1.2".parse().unwrap();
        assert_eq!(
            c.matches_str("latest", PrereleaseRule::PerTerm)
                .unwrap_err(),
            ConstraintError::Version("latest".into())
        );
    }
}

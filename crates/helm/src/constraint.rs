//! Helm's version-constraint syntax (Masterminds semver v3), as used by Chart.yaml
//! `kubeVersion`, evaluated the way Helm evaluates it.
//!
//! Kept behind two small entry points ([`Constraint::parse`] and [`Constraint::matches`]) so a
//! shared evaluator in `upgrade-core` can replace it without touching callers.
//!
//! Syntax: terms joined by `,` or spaces (AND) and `||` (OR); operators `=`, `!=`, `>`, `<`,
//! `>=`, `<=` (also `=>`, `=<`), `~` / `~>` (patch-level), `^` (major-level), hyphen ranges
//! `1.2 - 1.4.5`, and wildcards `x`, `X`, `*` or missing parts (`1.2` = `1.2.x`).
//!
//! Pre-releases: a version with a pre-release part (Kubernetes `v1.30.4-eks-a737599`) is only
//! considered by terms that ask for pre-releases. That is why charts write `>=1.28.0-0`;
//! `>=1.28.0` refuses every EKS cluster. The two Helm majors differ in what "ask" means
//! (measured with Helm 3.17.3 and 4.1.4 against a live API server reporting an EKS version,
//! see [`PrereleaseRule`]): for `>=1.28.0-0 <1.32.0`, Helm 3 refuses and Helm 4 installs.

use std::fmt;

use semver::{Prerelease, Version};

/// A constraint or version that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version constraint `{input}`: {reason}")]
pub struct ConstraintError {
    /// The text given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A Kubernetes (or chart) version, parsed leniently as Helm does: an optional `v`, missing
/// minor or patch read as 0, build metadata ignored.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KubeVersion(Version);

impl KubeVersion {
    /// Parses `v1.30.4`, `1.30`, `v1.30.4-eks-a737599`, `1.31.0+k3s1`.
    pub fn parse(text: &str) -> Result<Self, ConstraintError> {
        let err = |reason: &str| ConstraintError {
            input: text.to_string(),
            reason: reason.to_string(),
        };
        let (version, wild) = parse_partial(text.trim()).map_err(|r| err(&r))?;
        if wild != Wild::None {
            return Err(err("a version cannot contain wildcards"));
        }
        Ok(KubeVersion(version))
    }

    /// Whether it has a pre-release part (EKS/GKE versions do).
    pub fn is_prerelease(&self) -> bool {
        !self.0.pre.is_empty()
    }

    /// The same version without its pre-release part.
    pub fn without_prerelease(&self) -> KubeVersion {
        KubeVersion(Version::new(self.0.major, self.0.minor, self.0.patch))
    }

    /// The semver value.
    pub fn as_semver(&self) -> &Version {
        &self.0
    }
}

impl fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Which part of a version is a wildcard (`*`, `x`, `X` or missing); the parts after it are too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Wild {
    /// `1.2.3`.
    #[default]
    None,
    /// `*`: everything.
    Major,
    /// `1`, `1.x`.
    Minor,
    /// `1.2`, `1.2.x`.
    Patch,
}

/// How a pre-release version is matched; Helm 3 and Helm 4 differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrereleaseRule {
    /// Helm 3: every term must carry a pre-release itself (`>=1.28.0-0 <1.32.0` refuses
    /// `1.30.4-eks-x` because `<1.32.0` has none).
    PerTerm,
    /// Helm 4: one term with a pre-release opts its whole AND group in (`>=1.28.0-0 <1.32.0`
    /// accepts `1.30.4-eks-x`).
    PerGroup,
}

impl PrereleaseRule {
    /// The rule the given Helm major applies.
    pub fn for_helm(major: crate::HelmMajor) -> Self {
        match major {
            crate::HelmMajor::V3 => PrereleaseRule::PerTerm,
            crate::HelmMajor::V4 => PrereleaseRule::PerGroup,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Equal,
    NotEqual,
    Greater,
    Less,
    GreaterEqual,
    LessEqual,
    Tilde,
    Caret,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Term {
    op: Op,
    version: Version,
    wild: Wild,
}

/// A parsed constraint such as `>=1.25.0-0 <1.32.0-0` or `^1.2 || ~2.0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    text: String,
    any_of: Vec<Vec<Term>>,
}

impl Constraint {
    /// Parses a constraint.
    pub fn parse(text: &str) -> Result<Self, ConstraintError> {
        let err = |reason: String| ConstraintError {
            input: text.to_string(),
            reason,
        };
        if text.trim().is_empty() {
            return Err(err("empty constraint".into()));
        }
        let mut any_of = Vec::new();
        for group in text.split("||") {
            let tokens = tokenize(group);
            if tokens.is_empty() {
                return Err(err("an empty alternative around `||`".into()));
            }
            let mut terms = Vec::new();
            let mut i = 0;
            while i < tokens.len() {
                // Hyphen range: `A - B` means `>=A <=B`.
                if tokens.get(i + 1).map(String::as_str) == Some("-") {
                    let upper = tokens
                        .get(i + 2)
                        .ok_or_else(|| err("a hyphen range needs an upper bound".into()))?;
                    let (low, low_wild) = parse_partial(&tokens[i]).map_err(&err)?;
                    let (high, high_wild) = parse_partial(upper).map_err(&err)?;
                    terms.push(Term {
                        op: Op::GreaterEqual,
                        version: low,
                        wild: low_wild,
                    });
                    terms.push(Term {
                        op: Op::LessEqual,
                        version: high,
                        wild: high_wild,
                    });
                    i += 3;
                    continue;
                }
                terms.push(parse_term(&tokens[i]).map_err(&err)?);
                i += 1;
            }
            any_of.push(terms);
        }
        Ok(Constraint {
            text: text.to_string(),
            any_of,
        })
    }

    /// Whether `version` satisfies the constraint under `rule` (see [`PrereleaseRule::for_helm`]).
    pub fn matches(&self, version: &KubeVersion, rule: PrereleaseRule) -> bool {
        self.any_of.iter().any(|terms| {
            let group_opts_in =
                rule == PrereleaseRule::PerGroup && terms.iter().any(|t| !t.version.pre.is_empty());
            terms.iter().all(|t| t.matches(&version.0, group_opts_in))
        })
    }

    /// The constraint as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Splits an AND group into terms, joining an operator written apart from its version
/// (`>= 1.2`).
fn tokenize(group: &str) -> Vec<String> {
    let mut tokens: Vec<String> = Vec::new();
    let mut pending_op: Option<String> = None;
    for raw in group.replace(',', " ").split_whitespace() {
        if raw.chars().all(|c| "<>=!~^".contains(c)) {
            pending_op = Some(pending_op.unwrap_or_default() + raw);
            continue;
        }
        match pending_op.take() {
            Some(op) => tokens.push(op + raw),
            None => tokens.push(raw.to_string()),
        }
    }
    if let Some(op) = pending_op {
        tokens.push(op);
    }
    tokens
}

fn parse_term(token: &str) -> Result<Term, String> {
    let ops: &[(&str, Op)] = &[
        (">=", Op::GreaterEqual),
        ("=>", Op::GreaterEqual),
        ("<=", Op::LessEqual),
        ("=<", Op::LessEqual),
        ("!=", Op::NotEqual),
        ("~>", Op::Tilde),
        (">", Op::Greater),
        ("<", Op::Less),
        ("=", Op::Equal),
        ("~", Op::Tilde),
        ("^", Op::Caret),
    ];
    let (op, rest) = ops
        .iter()
        .find_map(|(prefix, op)| token.strip_prefix(prefix).map(|rest| (*op, rest)))
        .unwrap_or((Op::Equal, token));
    let (version, wild) = parse_partial(rest.trim())?;
    Ok(Term { op, version, wild })
}

fn is_wildcard(part: &str) -> bool {
    matches!(part, "x" | "X" | "*")
}

/// Parses `v1`, `1.2`, `1.2.x`, `*`, `1.2.3-rc.1+build` into a version with wildcards as 0.
fn parse_partial(text: &str) -> Result<(Version, Wild), String> {
    let text = text.strip_prefix('v').unwrap_or(text);
    if text.is_empty() {
        return Err("missing version".into());
    }
    let without_build = text.split_once('+').map_or(text, |(v, _)| v);
    let (core, pre) = match without_build.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (without_build, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(format!("`{text}` is not a version"));
    }
    let mut numbers = [0u64; 3];
    let mut wild = Wild::None;
    for (i, slot) in numbers.iter_mut().enumerate() {
        let part = parts.get(i).copied();
        if part.is_none_or(is_wildcard) {
            if wild == Wild::None {
                wild = [Wild::Major, Wild::Minor, Wild::Patch][i];
            }
            continue;
        }
        let part = part.unwrap_or_default();
        if wild != Wild::None {
            return Err(format!("`{text}`: a number cannot follow a wildcard"));
        }
        *slot = part
            .parse()
            .map_err(|_| format!("`{part}` in `{text}` is not a number"))?;
    }
    let mut version = Version::new(numbers[0], numbers[1], numbers[2]);
    if let Some(pre) = pre {
        version.pre = Prerelease::new(pre).map_err(|e| format!("pre-release `{pre}`: {e}"))?;
    }
    Ok((version, wild))
}

impl Term {
    fn matches(&self, v: &Version, group_opts_in: bool) -> bool {
        let c = &self.version;
        // A pre-release version only matches terms that ask for pre-releases.
        if !v.pre.is_empty() && c.pre.is_empty() && !group_opts_in {
            return false;
        }
        // semver's ordering is the spec's precedence (build metadata is already dropped).
        match self.op {
            Op::Equal if self.wild == Wild::None => v == c,
            Op::Equal => self.tilde(v),
            Op::NotEqual if self.wild == Wild::None => v != c,
            Op::NotEqual => !self.tilde(v),
            Op::Greater => match self.wild {
                Wild::None | Wild::Major => v > c,
                Wild::Minor => v.major > c.major,
                Wild::Patch => v.major > c.major || (v.major == c.major && v.minor > c.minor),
            },
            Op::Less => v < c,
            Op::GreaterEqual => v >= c,
            Op::LessEqual => match self.wild {
                Wild::None | Wild::Major => v <= c,
                Wild::Minor => v.major <= c.major,
                Wild::Patch => v.major < c.major || (v.major == c.major && v.minor <= c.minor),
            },
            Op::Tilde => self.tilde(v),
            Op::Caret => self.caret(v),
        }
    }

    /// `~1.2.3` = `>=1.2.3 <1.3.0`; `~1.2` = `>=1.2.0 <1.3.0`; `~1` = `>=1.0.0 <2.0.0`; `~*` = any.
    fn tilde(&self, v: &Version) -> bool {
        let c = &self.version;
        if v < c {
            return false;
        }
        if self.wild == Wild::Major {
            return true;
        }
        v.major == c.major && (self.wild == Wild::Minor || v.minor == c.minor)
    }

    /// `^1.2.3` = `>=1.2.3 <2.0.0`; `^0.2.3` = `>=0.2.3 <0.3.0`; `^0.0.3` = `>=0.0.3 <0.0.4`;
    /// `^0.0` = `>=0.0.0 <0.1.0`; `^0` = `>=0.0.0 <1.0.0`; `^*` = any.
    fn caret(&self, v: &Version) -> bool {
        let c = &self.version;
        if v < c {
            return false;
        }
        match self.wild {
            Wild::Major => return true,
            Wild::Minor => return v.major == c.major,
            _ => {}
        }
        if c.major > 0 {
            return v.major == c.major;
        }
        if v.major != 0 {
            return false;
        }
        if c.minor > 0 || self.wild == Wild::Patch {
            return v.minor == c.minor;
        }
        v.minor == 0 && v.patch == c.patch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(constraint: &str, version: &str) -> bool {
        let c = Constraint::parse(constraint).unwrap_or_else(|e| panic!("{e}"));
        let v = KubeVersion::parse(version).unwrap();
        let per_term = c.matches(&v, PrereleaseRule::PerTerm);
        if v.is_prerelease() {
            per_term
        } else {
            // Without a pre-release both rules agree.
            assert_eq!(
                per_term,
                c.matches(&v, PrereleaseRule::PerGroup),
                "{constraint} {version}"
            );
            per_term
        }
    }

    #[test]
    fn comparison_operators() {
        assert!(ok(">=1.25.0", "1.25.0"));
        assert!(!ok(">1.25.0", "1.25.0"));
        assert!(ok("<1.30", "1.29.9"));
        assert!(!ok("<1.30", "1.30.0"));
        assert!(ok("<=1.30", "1.30.7"), "<=1.30 includes every 1.30 patch");
        assert!(!ok("<=1.30", "1.31.0"));
        assert!(!ok(">1.30", "1.30.7"), ">1.30 means 1.31 or later");
        assert!(ok(">1.30", "1.31.0"));
        assert!(ok("!=1.29.0", "1.29.1"));
        assert!(!ok("!=1.29.0", "1.29.0"));
        assert!(!ok("!=1.29.x", "1.29.5"));
        assert!(ok("=>1.2, =<1.4", "1.3.0"));
    }

    #[test]
    fn and_or_spacing_and_hyphen_ranges() {
        assert!(ok(">= 1.25.0, < 1.32.0", "1.31.2"));
        assert!(ok(">=1.25.0 <1.32.0", "1.31.2"));
        assert!(!ok(">=1.25.0 <1.32.0", "1.32.0"));
        assert!(ok("<1.20 || >=1.30", "1.19.0"));
        assert!(ok("<1.20 || >=1.30", "1.30.0"));
        assert!(!ok("<1.20 || >=1.30", "1.25.0"));
        assert!(
            ok("1.25 - 1.30", "1.30.9"),
            "hyphen upper bound is a wildcard"
        );
        assert!(!ok("1.25 - 1.30", "1.31.0"));
        assert!(ok("1.25.0 - 1.30.0", "1.25.0"));
        assert!(!ok("1.25.0 - 1.30.0", "1.30.1"));
    }

    #[test]
    fn wildcards_tilde_and_caret() {
        assert!(ok("1.30.x", "1.30.4"));
        assert!(ok("1.30", "1.30.4"));
        assert!(!ok("1.30", "1.31.0"));
        assert!(ok("*", "1.31.0"));
        assert!(ok("~1.30.2", "1.30.9"));
        assert!(!ok("~1.30.2", "1.30.1"));
        assert!(!ok("~1.30.2", "1.31.0"));
        assert!(ok("~1", "1.99.0"));
        assert!(!ok("~1", "2.0.0"));
        assert!(ok("^1.2.3", "1.9.0"));
        assert!(!ok("^1.2.3", "2.0.0"));
        assert!(ok("^0.2.3", "0.2.9"));
        assert!(!ok("^0.2.3", "0.3.0"));
        assert!(ok("^0.0.3", "0.0.3"));
        assert!(!ok("^0.0.3", "0.0.4"));
        assert!(ok("^0.0", "0.0.7"));
        assert!(!ok("^0.0", "0.1.0"));
        assert!(ok("^0", "0.9.0"));
        assert!(!ok("^0", "1.0.0"));
    }

    #[test]
    fn prereleases_need_a_prerelease_constraint() {
        assert!(!ok(">=1.28.0", "v1.30.4-eks-a737599"));
        assert!(ok(">=1.28.0-0", "v1.30.4-eks-a737599"));
        assert!(ok(">=1.28.0-0 <1.32.0-0", "v1.31.1-gke.100"));
        assert!(!ok(">=1.28.0-0 <1.31.0-0", "v1.31.1-gke.100"));
        assert!(!ok("^1.28", "1.30.0-eks-1"));
        // Helm 3 needs the pre-release on every term; Helm 4 on one term of the AND group.
        let mixed = Constraint::parse(">=1.28.0-0 <1.32.0").unwrap();
        let eks = KubeVersion::parse("v1.30.4-eks-a737599").unwrap();
        assert!(!mixed.matches(&eks, PrereleaseRule::PerTerm));
        assert!(mixed.matches(&eks, PrereleaseRule::PerGroup));
        let plain = Constraint::parse(">=1.28.0 || >=1.29.0-0 <1.29.5").unwrap();
        assert!(
            !plain.matches(&eks, PrereleaseRule::PerGroup),
            "groups opt in one by one"
        );
        assert!(
            ok(">=1.28.0", "v1.30.4+k3s1"),
            "build metadata is not a pre-release"
        );
    }

    #[test]
    fn bad_input_is_named() {
        for bad in ["", ">=", "1.2.3.4", ">=a.b", "1.x.3", "1.2 ||", "1.2 -"] {
            let err = Constraint::parse(bad).expect_err(bad);
            assert!(
                err.to_string().contains("invalid version constraint"),
                "{err}"
            );
        }
        assert!(KubeVersion::parse("1.x").is_err());
        assert!(KubeVersion::parse("banana").is_err());
    }
}

//! Seeded fault injection: error rates per verb and resource, and added latency.

use std::sync::Mutex;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What an injected fault looks like to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// 429 TooManyRequests with `Retry-After: 1`.
    TooManyRequests,
    /// 500 InternalError.
    InternalError,
    /// 503 ServiceUnavailable.
    ServiceUnavailable,
    /// The response body is cut off: the client sees a broken connection.
    DropConnection,
    /// The request is carried out, then the connection breaks before the answer (an API
    /// server restarting after it committed a write): the client cannot tell it happened.
    DropResponse,
}

/// One rule: requests matching `verb` and `resource` fail with `kind` at `rate` (0.0-1.0).
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRule {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`;
    /// `None` matches every verb.
    pub verb: Option<String>,
    /// Plural resource (`pods`, `deployments`, `pods/eviction`); `None` matches all.
    pub resource: Option<String>,
    /// Probability of failing a matching request.
    pub rate: f64,
    /// How it fails.
    pub kind: FaultKind,
    /// How many more times the rule may fire (`None`: no limit), so a test can fail exactly
    /// the next matching request.
    pub limit: Option<u32>,
}

/// Faults for the whole server. The default injects nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultConfig {
    /// Seed of the random generator, so a failing run can be replayed.
    pub seed: u64,
    /// Rules, checked in order; the first that fires wins.
    pub rules: Vec<FaultRule>,
    /// Latency added to every resource request.
    pub latency: Duration,
}

impl FaultConfig {
    /// Adds a rule (chainable).
    pub fn rule(
        mut self,
        verb: Option<&str>,
        resource: Option<&str>,
        rate: f64,
        kind: FaultKind,
    ) -> Self {
        self.rules.push(FaultRule {
            verb: verb.map(str::to_string),
            resource: resource.map(str::to_string),
            rate,
            kind,
            limit: None,
        });
        self
    }

    /// Adds a rule that fires on the next `times` matching requests, then never again.
    pub fn next(
        self,
        verb: Option<&str>,
        resource: Option<&str>,
        times: u32,
        kind: FaultKind,
    ) -> Self {
        let mut config = self.rule(verb, resource, 1.0, kind);
        if let Some(rule) = config.rules.last_mut() {
            rule.limit = Some(times);
        }
        config
    }
}

/// A fault specification that could not be read; it names the item and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fault spec item `{item}`: {problem}; {FAULT_SPEC_HELP}")]
pub struct FaultSpecError {
    /// The item, as written.
    pub item: String,
    /// What is wrong with it.
    pub problem: String,
}

/// How a fault specification is written (also the error's hint).
pub const FAULT_SPEC_HELP: &str = "write comma-separated VERB:RESOURCE:KIND=RATE rules (VERB and \
RESOURCE may be `*`; KIND is 429, 500, 503, drop or drop-response; RATE is 0.05 or 5%, and \
`@N` after it fires the rule at most N times), plus optional seed=N and latency=MS, e.g. \
`seed=7,*:*:503=5%,update:secrets:503=100%@1`";

impl std::str::FromStr for FaultConfig {
    type Err = FaultSpecError;

    /// Reads a fault specification such as `seed=7,*:*:429=4%,list:pods:500=3%,*:*:drop=3%,latency=5`.
    fn from_str(spec: &str) -> Result<FaultConfig, FaultSpecError> {
        let mut config = FaultConfig::default();
        for item in spec.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let err = |problem: &str| FaultSpecError {
                item: item.to_string(),
                problem: problem.to_string(),
            };
            if let Some(seed) = item.strip_prefix("seed=") {
                config.seed = seed
                    .parse()
                    .map_err(|_| err("the seed is not a whole number"))?;
                continue;
            }
            if let Some(ms) = item.strip_prefix("latency=") {
                let ms: u64 = ms
                    .trim_end_matches("ms")
                    .parse()
                    .map_err(|_| err("the latency is not a whole number of milliseconds"))?;
                config.latency = Duration::from_millis(ms);
                continue;
            }
            let (target, rate) = item
                .split_once('=')
                .ok_or_else(|| err("it has no `=RATE`"))?;
            let (rate, limit) = match rate.split_once('@') {
                Some((rate, times)) => (
                    rate,
                    Some(
                        times
                            .parse::<u32>()
                            .map_err(|_| err("the count after `@` is not a whole number"))?,
                    ),
                ),
                None => (rate, None),
            };
            let rate = match rate.strip_suffix('%') {
                Some(percent) => percent.parse::<f64>().map(|p| p / 100.0),
                None => rate.parse::<f64>(),
            }
            .ok()
            .filter(|r| (0.0..=1.0).contains(r))
            .ok_or_else(|| err("the rate is not between 0 and 1 (or 0% and 100%)"))?;
            let parts: Vec<&str> = target.split(':').collect();
            let [verb, resource, kind] = parts[..] else {
                return Err(err("it is not VERB:RESOURCE:KIND"));
            };
            let kind = match kind {
                "429" => FaultKind::TooManyRequests,
                "500" => FaultKind::InternalError,
                "503" => FaultKind::ServiceUnavailable,
                "drop" => FaultKind::DropConnection,
                "drop-response" => FaultKind::DropResponse,
                _ => return Err(err(&format!("`{kind}` is not a fault kind"))),
            };
            const VERBS: [&str; 8] = [
                "get",
                "list",
                "watch",
                "create",
                "update",
                "patch",
                "delete",
                "deletecollection",
            ];
            let any = |s: &str| (s != "*").then(|| s.to_string());
            if verb != "*" && !VERBS.contains(&verb) {
                return Err(err(&format!("`{verb}` is not a verb")));
            }
            if resource.is_empty() {
                return Err(err("the resource is empty"));
            }
            config.rules.push(FaultRule {
                verb: any(verb),
                resource: any(resource),
                rate,
                kind,
                limit,
            });
        }
        Ok(config)
    }
}

/// The live injector.
pub(crate) struct Faults {
    state: Mutex<(FaultConfig, StdRng)>,
}

impl Faults {
    pub(crate) fn new(config: FaultConfig) -> Faults {
        let rng = StdRng::seed_from_u64(config.seed);
        Faults {
            state: Mutex::new((config, rng)),
        }
    }

    pub(crate) fn set(&self, config: FaultConfig) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let rng = StdRng::seed_from_u64(config.seed);
        *state = (config, rng);
    }

    /// The latency to add and the fault to inject (if any) for one request.
    pub(crate) fn decide(&self, verb: &str, resource: &str) -> (Duration, Option<FaultKind>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (config, rng) = &mut *state;
        let latency = config.latency;
        for rule in &mut config.rules {
            let verb_ok = rule.verb.as_deref().is_none_or(|v| v == verb);
            let res_ok = rule.resource.as_deref().is_none_or(|r| r == resource);
            let left = rule.limit.is_none_or(|n| n > 0);
            if verb_ok && res_ok && left && rng.random_bool(rule.rate.clamp(0.0, 1.0)) {
                if let Some(n) = &mut rule.limit {
                    *n -= 1;
                }
                return (latency, Some(rule.kind));
            }
        }
        (latency, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_faults() {
        let config = FaultConfig {
            seed: 7,
            ..Default::default()
        }
        .rule(Some("get"), Some("pods"), 0.5, FaultKind::InternalError);
        let run = || {
            let f = Faults::new(config.clone());
            (0..64)
                .map(|_| f.decide("get", "pods").1.is_some())
                .collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        assert!(a.iter().any(|x| *x) && a.iter().any(|x| !*x));
        assert_eq!(Faults::new(config).decide("list", "pods").1, None);
    }

    #[test]
    fn a_fault_spec_reads_rules_seed_and_latency() {
        let config: FaultConfig =
            "seed=7, *:*:429=4%, list:pods:500=0.03, *:pods/eviction:drop-response=1%, latency=5ms"
                .parse()
                .unwrap();
        assert_eq!(config.seed, 7);
        assert_eq!(config.latency, Duration::from_millis(5));
        assert_eq!(config.rules.len(), 3);
        assert_eq!(config.rules[0].verb, None);
        assert_eq!(config.rules[0].resource, None);
        assert_eq!(config.rules[0].kind, FaultKind::TooManyRequests);
        assert!((config.rules[0].rate - 0.04).abs() < 1e-9);
        assert_eq!(config.rules[1].verb.as_deref(), Some("list"));
        assert_eq!(config.rules[1].resource.as_deref(), Some("pods"));
        assert_eq!(config.rules[2].kind, FaultKind::DropResponse);
        for (bad, problem) in [
            ("*:*:418=1%", "`418` is not a fault kind"),
            ("*:*:500=150%", "the rate is not between 0 and 1"),
            ("fetch:pods:500=1%", "`fetch` is not a verb"),
            ("pods:500=1%", "it is not VERB:RESOURCE:KIND"),
            ("seed=x", "the seed is not a whole number"),
            ("*:*:500", "it has no `=RATE`"),
            ("*:*:500=1@x", "the count after `@` is not a whole number"),
        ] {
            let err = bad.parse::<FaultConfig>().unwrap_err().to_string();
            assert!(
                err.contains(problem) && err.contains("e.g. `seed=7"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn a_limited_rule_fires_exactly_its_count() {
        let config: FaultConfig = "update:secrets:503=100%@2".parse().unwrap();
        assert_eq!(config.rules[0].limit, Some(2));
        let faults = Faults::new(config);
        let fired: Vec<bool> = (0..4)
            .map(|_| faults.decide("update", "secrets").1.is_some())
            .collect();
        assert_eq!(fired, [true, true, false, false]);
        let next = Faults::new(FaultConfig::default().next(
            Some("create"),
            None,
            1,
            FaultKind::InternalError,
        ));
        assert_eq!(next.decide("get", "pods").1, None);
        assert_eq!(
            next.decide("create", "pods").1,
            Some(FaultKind::InternalError)
        );
        assert_eq!(next.decide("create", "pods").1, None);
    }
}

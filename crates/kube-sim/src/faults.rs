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
        });
        self
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
        for rule in &config.rules {
            let verb_ok = rule.verb.as_deref().is_none_or(|v| v == verb);
            let res_ok = rule.resource.as_deref().is_none_or(|r| r == resource);
            if verb_ok && res_ok && rng.random_bool(rule.rate.clamp(0.0, 1.0)) {
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
}

//! One retry policy for every request the toolkit's Kubernetes client sends: a request the
//! API server failed for now is sent again, with backoff, below every caller.
//!
//! What is retried follows what is safe: a GET (get, list, and the start of a watch) on 429,
//! 500, 502, 503, 504 or a broken connection, since reading twice changes nothing; any
//! other request only on 429, which the API server's priority and fairness returns before
//! doing anything, except an eviction: its 429 is a PodDisruptionBudget's answer, which the
//! drain reads, reports and waits out under its own deadline. A write that failed with a 5xx or a dropped connection may have been
//! carried out, so it goes back to its caller, which knows whether repeating it is safe
//! (the lease takes itself over by resourceVersion, server-side apply is idempotent).

use std::time::Duration;

use http::{Method, Request, Response};
use kube::client::Body;
use tower::BoxError;

/// How many times one request is sent again at most.
pub(crate) const RETRIES: u32 = 5;
/// The first pause; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(200);
const MAX_PAUSE: Duration = Duration::from_secs(3);

/// The tower retry policy (one clone per request, so each request has its own budget).
#[derive(Debug, Clone)]
pub(crate) struct TransientRetry {
    retries_left: u32,
    pause: Duration,
}

impl Default for TransientRetry {
    fn default() -> Self {
        TransientRetry {
            retries_left: RETRIES,
            pause: FIRST_PAUSE,
        }
    }
}

/// Whether a request to `path` that got `status` (or, for `None`, no answer) is sent again.
pub(crate) fn worth_again(method: &Method, path: &str, status: Option<u16>) -> bool {
    let read = method == Method::GET;
    match status {
        Some(429) => !path.ends_with("/eviction"),
        Some(500 | 502 | 503 | 504) => read,
        Some(_) => false,
        None => read,
    }
}

impl<Res> tower::retry::Policy<Request<Body>, Response<Res>, BoxError> for TransientRetry {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        req: &mut Request<Body>,
        result: &mut Result<Response<Res>, BoxError>,
    ) -> Option<Self::Future> {
        let status = match result {
            Ok(response) => Some(response.status().as_u16()),
            Err(_) => None,
        };
        if self.retries_left == 0
            || status.is_some_and(|s| s < 400)
            || !worth_again(req.method(), req.uri().path(), status)
        {
            return None;
        }
        self.retries_left -= 1;
        let pause = self.pause;
        self.pause = (self.pause * 2).min(MAX_PAUSE);
        tracing::debug!(method = %req.method(), uri = %req.uri(), ?status, "transient API failure; sending the request again");
        Some(tokio::time::sleep(pause))
    }

    fn clone_request(&mut self, req: &Request<Body>) -> Option<Request<Body>> {
        // Bodies that stream cannot be sent twice; those requests are not retried.
        let body = req.body().try_clone()?;
        let mut again = Request::builder()
            .method(req.method().clone())
            .uri(req.uri().clone())
            .version(req.version())
            .body(body)
            .ok()?;
        *again.headers_mut() = req.headers().clone();
        *again.extensions_mut() = req.extensions().clone();
        Some(again)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_retried_on_5xx_and_writes_only_when_throttled() {
        let path = "/api/v1/namespaces/mlops/configmaps/x";
        for (method, status, again) in [
            (Method::GET, Some(503), true),
            (Method::GET, Some(500), true),
            (Method::GET, None, true),
            (Method::GET, Some(404), false),
            (Method::GET, Some(409), false),
            (Method::POST, Some(429), true),
            (Method::POST, Some(500), false),
            (Method::PUT, Some(503), false),
            (Method::PATCH, None, false),
            (Method::DELETE, Some(429), true),
        ] {
            assert_eq!(
                worth_again(&method, path, status),
                again,
                "{method} {status:?}"
            );
        }
    }

    #[test]
    fn a_refused_eviction_goes_back_to_the_drain() {
        let eviction = "/api/v1/namespaces/mlops/pods/p-0/eviction";
        assert!(!worth_again(&Method::POST, eviction, Some(429)));
        assert!(!worth_again(&Method::POST, eviction, Some(503)));
    }
}

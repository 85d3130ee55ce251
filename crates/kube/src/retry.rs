//! Reads that survive a busy or flaky API server: paginated lists and retries of transient
//! failures (429 TooManyRequests, 500, 502, 503, 504, dropped connections).

use std::future::Future;
use std::time::Duration;

use kube::api::{Api, ListParams, ObjectList};
use serde::de::DeserializeOwned;

use crate::error::{Error, Result, api_code};

/// How many times one request is tried before its error is returned.
const ATTEMPTS: u32 = 6;
/// The first pause after a transient failure; doubles each time.
const FIRST_PAUSE: Duration = Duration::from_millis(100);

/// Whether `err` is worth retrying: the server said "later", or the connection broke.
pub(crate) fn is_transient(err: &kube::Error) -> bool {
    match api_code(err) {
        Some(code) => matches!(code, 429 | 500 | 502 | 503 | 504),
        None => matches!(err, kube::Error::HyperError(_) | kube::Error::Service(_)),
    }
}

/// One read, with its failure named by `action`. The client's own retry layer
/// ([`crate::client_retry`]) has already sent a GET again on 429, 5xx and dropped
/// connections, so a read is not retried a second time here.
pub(crate) async fn read<T>(
    action: &str,
    call: impl Future<Output = std::result::Result<T, kube::Error>>,
) -> Result<T> {
    call.await.map_err(|err| Error::api(action, err))
}

/// Whether a write that failed with `err` may have been carried out and is worth sending
/// again when it is idempotent: a 5xx or a dropped connection. A 429 is not here: the
/// client's retry layer already retried it, as the server did nothing.
fn is_server_failure(err: &kube::Error) -> bool {
    match api_code(err) {
        Some(code) => matches!(code, 500 | 502 | 503 | 504),
        None => matches!(err, kube::Error::HyperError(_) | kube::Error::Service(_)),
    }
}

/// Runs an idempotent write (a merge patch to a fixed value, a server-side apply, a delete)
/// until it succeeds, fails for good, or has failed with a server error [`ATTEMPTS`] times.
/// Only idempotent writes come here: a non-idempotent one that failed with a 5xx may have
/// been carried out and goes back to its caller.
pub(crate) async fn idempotent_write<T, F, Fut>(action: &str, mut call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, kube::Error>>,
{
    let mut pause = FIRST_PAUSE;
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(err) if attempt < ATTEMPTS && is_server_failure(&err) => {
                tracing::debug!(action, attempt, error = %err, "server error on an idempotent write; sending it again");
                tokio::time::sleep(pause).await;
                pause *= 2;
                attempt += 1;
            }
            Err(err) => return Err(Error::api(action, err)),
        }
    }
}

/// Runs `call` (itself retrying each request a few times) again while it fails transiently
/// and `deadline` is ahead: for an operation with a deadline of its own (a drain), a burst
/// of API errors longer than one request's retries is waited out rather than fatal.
pub(crate) async fn until_deadline<T, F, Fut>(
    deadline: std::time::Instant,
    mut call: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut pause = FIRST_PAUSE;
    loop {
        match call().await {
            Err(Error::Api { source, .. })
                if is_transient(&source) && std::time::Instant::now() + pause < deadline =>
            {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            other => return other,
        }
    }
}

/// One list, a page at a time (`limit` + `continue`), so a caller can convert and drop each
/// page before the next (60,000 pods never sit in memory as full objects). A continue token
/// that expired (410 Gone) restarts the list once from the beginning, as kubectl does:
/// [`Pages::restarted`] tells the caller that pages it saw may come again.
pub(crate) struct Pages<K> {
    api: Api<K>,
    params: ListParams,
    page_size: u32,
    action: String,
    token: Option<String>,
    done: bool,
    restarted: bool,
}

impl<K> Pages<K>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    pub(crate) fn new(api: Api<K>, params: &ListParams, page_size: u32, action: &str) -> Self {
        Pages {
            api,
            params: params.clone(),
            page_size,
            action: action.to_string(),
            token: None,
            done: false,
            restarted: false,
        }
    }

    /// Whether the list started over after an expired continue token.
    pub(crate) fn restarted(&self) -> bool {
        self.restarted
    }

    /// The next page, or `None` after the last.
    pub(crate) async fn next(&mut self) -> Result<Option<Vec<K>>> {
        loop {
            if self.done {
                return Ok(None);
            }
            let mut page_params = self.params.clone().limit(self.page_size);
            if let Some(t) = &self.token {
                page_params = page_params.continue_token(t);
            }
            let page: std::result::Result<ObjectList<K>, Error> =
                read(&self.action, self.api.list(&page_params)).await;
            match page {
                Ok(page) => {
                    self.token = page.metadata.continue_.clone().filter(|t| !t.is_empty());
                    self.done = self.token.is_none();
                    return Ok(Some(page.items));
                }
                Err(Error::Api { ref source, .. })
                    if !self.restarted && self.token.is_some() && api_code(source) == Some(410) =>
                {
                    self.restarted = true;
                    self.token = None;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Lists everything `params` selects through [`Pages`], handing each object to `keep` so a
/// caller can convert and drop them page by page.
pub(crate) async fn list_pages<K, T>(
    api: Api<K>,
    params: &ListParams,
    page_size: u32,
    action: &str,
    mut keep: impl FnMut(K) -> Option<T>,
) -> Result<Vec<T>>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut pages = Pages::new(api, params, page_size, action);
    let mut out = Vec::new();
    let mut restarted = false;
    while let Some(page) = pages.next().await? {
        if pages.restarted() && !restarted {
            // Started over: what was kept so far comes again.
            restarted = true;
            out.clear();
        }
        out.extend(page.into_iter().filter_map(&mut keep));
    }
    Ok(out)
}

/// [`list_pages`] over every namespace, with no selector.
pub(crate) async fn list_all<K, T>(
    client: &kube::Client,
    page_size: u32,
    action: &str,
    keep: impl FnMut(K) -> Option<T>,
) -> Result<Vec<T>>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    list_pages(
        Api::<K>::all(client.clone()),
        &ListParams::default(),
        page_size,
        action,
        keep,
    )
    .await
}

/// Lists every object of a custom kind, or `None` when the API server does not serve it.
pub(crate) async fn list_if_served(
    client: &kube::Client,
    (group, version, kind, plural): (&str, &str, &str, &str),
    page_size: u32,
) -> Result<Option<Vec<kube::api::DynamicObject>>> {
    let group_version = format!("{group}/{version}");
    let served = read(&format!("discover {group_version}"), async {
        match client.list_api_group_resources(&group_version).await {
            Ok(list) => Ok(list.resources.iter().any(|r| r.name == plural)),
            Err(e) if api_code(&e) == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    })
    .await?;
    if !served {
        return Ok(None);
    }
    let resource = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk(group, version, kind),
        plural,
    );
    let api: Api<kube::api::DynamicObject> = Api::all_with(client.clone(), &resource);
    list_pages(
        api,
        &ListParams::default(),
        page_size,
        &format!("list {plural}.{group}"),
        Some,
    )
    .await
    .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            ..Default::default()
        }))
    }

    #[test]
    fn only_server_busy_and_broken_connections_are_retried() {
        for code in [429, 500, 502, 503, 504] {
            assert!(is_transient(&status(code)), "{code}");
        }
        for code in [400, 403, 404, 409, 410, 422] {
            assert!(!is_transient(&status(code)), "{code}");
        }
    }

    #[test]
    fn writes_are_sent_again_only_after_server_errors() {
        for code in [500, 502, 503, 504] {
            assert!(is_server_failure(&status(code)), "{code}");
        }
        // 429 was already retried by the client layer; the rest are answers.
        for code in [400, 403, 404, 409, 422, 429] {
            assert!(!is_server_failure(&status(code)), "{code}");
        }
    }

    #[tokio::test]
    async fn an_idempotent_write_is_sent_again_after_a_server_error_and_not_after_a_refusal() {
        let mut calls = 0;
        let value = idempotent_write("patch", || {
            calls += 1;
            let fail = calls < 3;
            async move { if fail { Err(status(503)) } else { Ok(7) } }
        })
        .await
        .unwrap();
        assert_eq!((value, calls), (7, 3));

        let mut calls = 0;
        let err = idempotent_write::<u8, _, _>("patch node x", || {
            calls += 1;
            async { Err(status(403)) }
        })
        .await
        .unwrap_err();
        assert_eq!(calls, 1);
        assert!(err.to_string().starts_with("patch node x"), "{err}");
    }
}

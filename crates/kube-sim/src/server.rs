//! The HTTP layer: one generic handler that parses Kubernetes URLs and dispatches on the
//! resource table.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::discovery;
use crate::error::ApiError;
use crate::faults::{FaultKind, Faults};
use crate::patch;
use crate::resources::{ResourceType, json_path};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::store::{EventType, Propagation, Store, Target, WatchEvent, WriteOptions, now_micro};

/// Shared state of the HTTP server.
pub(crate) struct AppState {
    pub store: Arc<Store>,
    pub git_version: crate::controllers::SharedVersion,
    pub server_address: String,
    pub faults: Faults,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// How long a control-plane version update takes (EKS's takes many minutes).
    pub control_plane_update: std::sync::Mutex<std::time::Duration>,
    /// What the simulated EKS API knows beyond the API server (see [`crate::eks`]).
    pub eks: crate::eks::EksState,
    /// What the simulated AWS Backup holds (see [`crate::backup`]).
    pub backup: crate::backup::BackupState,
}

impl AppState {
    /// The version `/version` reports now.
    pub fn version(&self) -> String {
        self.git_version
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

type Params = HashMap<String, String>;

fn json_response(code: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    bytes_response(code, bytes)
}

fn bytes_response(code: StatusCode, bytes: Vec<u8>) -> Response {
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn error_response(err: &ApiError) -> Response {
    let code = StatusCode::from_u16(err.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = json_response(code, &err.status_body());
    if err.code == 429 {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

async fn handle(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params: Params = Query::<Params>::try_from_uri(&uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let path = uri.path().to_string();
    let resp = match route(&state, &method, &path, &params, &headers, body).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    tracing::debug!(
        method = %method,
        path = %path,
        query = uri.query().unwrap_or_default(),
        status = resp.status().as_u16(),
        "kube-sim request"
    );
    resp
}

/// The simulator's own admin API, for the simulated cloud: `GET /kube-sim/v1/version`
/// returns `{"gitVersion": ...}`; `PUT` with `{"version": "1.31"}` (a minor; a new minor gets
/// patch 0 and keeps the build suffix, the current minor is left as it is) or `{"gitVersion": "v1.31.2-eks-..."}` changes what
/// `/version` reports, as an upgraded control plane does.
fn admin_version(state: &AppState, method: &Method, body: &Bytes) -> Result<Response, ApiError> {
    let current = state.version();
    if *method == Method::GET {
        return Ok(json_response(
            StatusCode::OK,
            &json!({"gitVersion": current}),
        ));
    }
    if *method != Method::PUT {
        return Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("{method} is not supported on /kube-sim/v1/version; use GET or PUT"),
        ));
    }
    let request: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be JSON like {{\"version\": \"1.31\"}}: {e}"
        ))
    })?;
    let next = match (request["gitVersion"].as_str(), request["version"].as_str()) {
        (Some(git), _) if git.starts_with('v') => git.to_string(),
        (None, Some(minor)) if is_minor(minor) => next_version(&current, minor),
        _ => {
            return Err(ApiError::bad_request(format!(
                "expected {{\"version\": \"<major>.<minor>\"}} or {{\"gitVersion\": \"v<major>.<minor>.<patch>...\"}}, got {request}"
            )));
        }
    };
    *state.git_version.write().unwrap_or_else(|e| e.into_inner()) = next.clone();
    crate::eks::version_changed(state, &current, &next);
    tracing::info!(from = %current, to = %next, "kube-sim control plane version changed");
    Ok(json_response(StatusCode::OK, &json!({"gitVersion": next})))
}

/// The git version the API server reports at `minor`: the same minor keeps its patch (a
/// cluster created at what it already runs); a new minor gets patch 0 and keeps the build
/// suffix.
pub(crate) fn next_version(current: &str, minor: &str) -> String {
    if current.starts_with(&format!("v{minor}.")) {
        return current.to_string();
    }
    let suffix = current.find('-').map_or("", |i| &current[i..]);
    format!("v{minor}.0{suffix}")
}

/// `PUT /kube-sim/v1/nodegroups/<name>` with `{"version": "1.31"}`: rolls the managed node
/// group's nodes (label `eks.amazonaws.com/nodegroup`) that run another minor, one at a time,
/// the way EKS's `UpdateNodegroupVersion` does (new node first, PDB-aware evictions, old node
/// deleted); answers `{"replaced": [...]}` when done.
async fn admin_nodegroup(
    state: &AppState,
    group: &str,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let request: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be JSON like {{\"version\": \"1.31\"}}: {e}"
        ))
    })?;
    let minor = request["version"]
        .as_str()
        .filter(|v| is_minor(v))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "expected {{\"version\": \"<major>.<minor>\"}}, got {request}"
            ))
        })?
        .to_string();
    let old = roll_nodegroup(state, group, &minor).await?;
    Ok(json_response(StatusCode::OK, &json!({"replaced": old})))
}

/// Replaces the nodes of managed node group `group` that run another minor than `minor`, one
/// at a time; the names of the nodes replaced.
pub(crate) async fn roll_nodegroup(
    state: &AppState,
    group: &str,
    minor: &str,
) -> Result<Vec<String>, ApiError> {
    let kubelet = next_version(&state.version(), minor);
    let nodes = state
        .store
        .registry()
        .lookup_kind("v1", "Node")
        .expect("built-in kind");
    let mut old: Vec<String> = state
        .store
        .list(&nodes, None)
        .0
        .iter()
        .filter(|n| n["metadata"]["labels"]["eks.amazonaws.com/nodegroup"] == group)
        .filter(|n| {
            !n["status"]["nodeInfo"]["kubeletVersion"]
                .as_str()
                .is_some_and(|v| v.starts_with(&format!("v{minor}.")))
        })
        .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    old.sort();
    for (i, node) in old.iter().enumerate() {
        let new_name = format!("{group}-{}-{}", minor.replace('.', "-"), i + 1);
        crate::replace_node(
            &state.store,
            node,
            &new_name,
            &kubelet,
            Duration::from_secs(300),
        )
        .await
        .map_err(|e| ApiError::new(500, "InternalError", format!("replacing node {node}: {e}")))?;
    }
    Ok(old)
}

fn is_minor(text: &str) -> bool {
    let mut parts = text.split('.');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(major), Some(minor), None)
            if !major.is_empty() && !minor.is_empty()
                && major.bytes().chain(minor.bytes()).all(|b| b.is_ascii_digit())
    )
}

fn not_found_path(path: &str) -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        format!("the server could not find the requested resource ({path})"),
    )
}

async fn route(
    state: &Arc<AppState>,
    method: &Method,
    path: &str,
    params: &Params,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let registry = state.store.registry();
    let ok = |v: Value| Ok(json_response(StatusCode::OK, &v));
    match segs.as_slice() {
        ["version"] => return ok(discovery::version_info(&state.version())),
        ["kube-sim", "v1", "version"] => {
            if *method == Method::PUT {
                let takes = *state
                    .control_plane_update
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                tokio::time::sleep(takes).await;
            }
            return admin_version(state, method, &body);
        }
        ["kube-sim", "v1", "nodegroups", group] if *method == Method::PUT => {
            return admin_nodegroup(state, group, &body).await;
        }
        ["kube-sim", "v1", "eks"] => return Ok(crate::eks::admin(state, method, &body)),
        ["kube-sim", "v1", "backup"] => return Ok(crate::backup::admin(state, method, &body)),
        ["backup", rest @ ..] => return Ok(crate::backup::route(state, method, rest, &body)),
        ["eks", rest @ ..] => {
            return Ok(crate::eks::route(state, method, rest, params, &body).await);
        }
        ["healthz"] | ["livez"] | ["readyz"] => {
            return Ok((StatusCode::OK, "ok").into_response());
        }
        ["api"] => return ok(discovery::core_versions(&state.server_address)),
        ["apis"] => return ok(discovery::group_list(&registry)),
        ["api", v] => {
            return discovery::resource_list(&registry, "", v)
                .map_or_else(|| Err(not_found_path(path)), ok);
        }
        ["apis", g] => {
            return discovery::group(&registry, g).map_or_else(|| Err(not_found_path(path)), ok);
        }
        ["apis", g, v] => {
            return discovery::resource_list(&registry, g, v)
                .map_or_else(|| Err(not_found_path(path)), ok);
        }
        ["openapi", "v2"] => {
            let accept = headers
                .get(header::ACCEPT)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("*/*");
            if !(accept.contains("json") || accept.contains("*/*")) {
                if accept.contains(discovery::OPENAPI_V2_PROTOBUF) {
                    // What kubectl asks for when a group-version is missing from /openapi/v3
                    // (an unknown kind, a `kind: List`): the real server answers, and
                    // kubectl then reports `no matches for kind` from its REST mapping.
                    let mut resp = bytes_response(
                        StatusCode::OK,
                        discovery::v2_document_protobuf(&state.version()),
                    );
                    resp.headers_mut().insert(
                        header::CONTENT_TYPE,
                        // As kube-openapi's handler: Go's mime parser refuses the `@` of
                        // the media type asked for.
                        HeaderValue::from_static("application/octet-stream"),
                    );
                    return Ok(resp);
                }
                return Err(ApiError::new(
                    406,
                    "NotAcceptable",
                    "only application/json and protobuf are served for /openapi/v2",
                ));
            }
            return ok(discovery::v2_document(&registry, &state.version()));
        }
        ["openapi", "v3"] => return ok(discovery::v3_root(&registry, &crd_schemas(state))),
        ["openapi", "v3", "api", v] => {
            return ok(discovery::v3_document(
                &registry,
                "",
                v,
                &state.version(),
                &crd_schemas(state),
            ));
        }
        ["openapi", "v3", "apis", g, v] => {
            return ok(discovery::v3_document(
                &registry,
                g,
                v,
                &state.version(),
                &crd_schemas(state),
            ));
        }
        _ => {}
    }
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(not_found_path(path)),
    };
    let mut watch = matches!(params.get("watch").map(String::as_str), Some("true" | "1"));
    let rest = match rest {
        ["watch", r @ ..] => {
            watch = true;
            r
        }
        r => r,
    };
    let (namespace, plural, name, sub) = match rest {
        ["namespaces"] => (None, "namespaces", None, None),
        ["namespaces", n] => (None, "namespaces", Some(*n), None),
        ["namespaces", n, s @ ("status" | "finalize")] => (None, "namespaces", Some(*n), Some(*s)),
        ["namespaces", ns, p] => (Some(*ns), *p, None, None),
        ["namespaces", ns, p, n] => (Some(*ns), *p, Some(*n), None),
        ["namespaces", ns, p, n, s] => (Some(*ns), *p, Some(*n), Some(*s)),
        [p] => (None, *p, None, None),
        [p, n] => (None, *p, Some(*n), None),
        [p, n, s] => (None, *p, Some(*n), Some(*s)),
        _ => return Err(not_found_path(path)),
    };
    let ty = registry
        .lookup(group, version, plural)
        .ok_or_else(|| not_found_path(path))?;
    if namespace.is_some() && !ty.namespaced {
        return Err(not_found_path(path));
    }
    let sub = sub.map(|s| if s == "finalize" { "status" } else { s });
    let verb = match (method.as_str(), name.is_some(), watch) {
        ("GET", _, true) => "watch",
        ("GET", true, _) => "get",
        ("GET", false, _) => "list",
        ("POST", _, _) => "create",
        ("PUT", _, _) => "update",
        ("PATCH", _, _) => "patch",
        ("DELETE", true, _) => "delete",
        ("DELETE", false, _) => "deletecollection",
        _ => {
            return Err(ApiError::method_not_allowed(format!(
                "method {method} is not supported"
            )));
        }
    };
    let fault_resource = match sub {
        Some(s) => format!("{plural}/{s}"),
        None => plural.to_string(),
    };
    let (latency, fault) = state.faults.decide(verb, &fault_resource);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let drop_response = match fault {
        Some(FaultKind::DropResponse) => true,
        Some(kind) => return Ok(fault_response(kind)),
        None => false,
    };
    let req = Request {
        ty,
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
        sub: sub.map(str::to_string),
    };
    let table = headers
        .get(header::ACCEPT)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|a| a.contains("as=Table"));
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("unknown");
    let opts = WriteOptions {
        dry_run: params.get("dryRun").is_some_and(|d| d == "All"),
        manager: Some(params.get("fieldManager").cloned().unwrap_or_else(|| {
            user_agent
                .split('/')
                .next()
                .unwrap_or("unknown")
                .to_string()
        })),
        keep_identity: false,
        grace_period_seconds: None,
        strict_fields: params.get("fieldValidation").is_some_and(|v| v == "Strict"),
    };
    let response = match verb {
        "watch" => watch_response(state, &req, params, table),
        "list" => list_response(state, &req, params, table),
        "get" => get_response(state, &req, params, table),
        "create" => create(state, &req, &body, &content_type, &opts),
        "update" => update(state, &req, &body, &content_type, &opts),
        "patch" => patch_object(state, &req, &body, &content_type, params, &opts),
        "delete" => delete(state, &req, &body, params, &opts),
        _ => delete_collection(state, &req, &body, params, &opts),
    };
    if drop_response {
        return Ok(fault_response(FaultKind::DropConnection));
    }
    response
}

fn crd_schemas(state: &AppState) -> Vec<(String, Value)> {
    let registry = state.store.registry();
    let ty = registry
        .lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .expect("builtin");
    discovery::crd_schemas(&state.store.list(&ty, None).0)
}

fn fault_response(kind: FaultKind) -> Response {
    match kind {
        FaultKind::TooManyRequests => error_response(&ApiError::new(
            429,
            "TooManyRequests",
            "injected fault: too many requests, please try again later",
        )),
        FaultKind::InternalError => error_response(&ApiError::internal(
            "Internal error occurred: injected fault",
        )),
        FaultKind::ServiceUnavailable => error_response(&ApiError::new(
            503,
            "ServiceUnavailable",
            "injected fault: the server is currently unable to handle the request",
        )),
        FaultKind::DropConnection | FaultKind::DropResponse => {
            let stream = futures::stream::once(async {
                Err::<Bytes, std::io::Error>(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "injected fault: connection dropped",
                ))
            });
            let mut resp = Response::new(Body::from_stream(stream));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
    }
}

struct Request {
    ty: Arc<ResourceType>,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

impl Request {
    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or_default()
    }
    fn ns(&self) -> Option<&str> {
        self.namespace.as_deref()
    }
}

/// Rewrites `apiVersion` when an object is read at another served version.
fn at_version<'a>(ty: &ResourceType, obj: &'a Value) -> std::borrow::Cow<'a, Value> {
    let want = ty.api_version();
    if obj["apiVersion"].as_str() == Some(want.as_str()) {
        std::borrow::Cow::Borrowed(obj)
    } else {
        let mut o = obj.clone();
        o["apiVersion"] = json!(want);
        std::borrow::Cow::Owned(o)
    }
}

fn parse_body(body: &[u8], content_type: &str) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    if content_type.contains("yaml") {
        return serde_norway::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("the request body is not valid YAML: {e}"))
        });
    }
    if content_type.contains("protobuf") {
        return crate::protobuf::decode(body);
    }
    if content_type.contains("cbor") {
        return Err(ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format ({content_type}); accepted media types include application/json and application/yaml"
        )));
    }
    serde_json::from_slice(body)
        .or_else(|_| serde_norway::from_slice(body))
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
}

fn check_kind(ty: &ResourceType, obj: &Value) -> Result<(), ApiError> {
    let kind = obj["kind"].as_str().unwrap_or_default();
    if !kind.is_empty() && kind != ty.kind {
        return Err(ApiError::bad_request(format!(
            "the kind of the body ({kind}) does not match the resource ({})",
            ty.kind
        )));
    }
    Ok(())
}

fn get_response(
    state: &AppState,
    req: &Request,
    params: &Params,
    table: bool,
) -> Result<Response, ApiError> {
    let obj = state.store.get(&req.ty, req.ns(), req.name())?;
    match req.sub.as_deref() {
        None | Some("status") => {
            if table {
                let rv = state.store.resource_version();
                return Ok(json_response(
                    StatusCode::OK,
                    &table_for(&req.ty, &[obj], rv, None),
                ));
            }
            Ok(json_response(StatusCode::OK, &at_version(&req.ty, &obj)))
        }
        Some("scale") => Ok(json_response(StatusCode::OK, &scale_of(&req.ty, &obj)?)),
        Some("log") if req.ty.kind == "Pod" => {
            let containers: Vec<&str> = obj["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str())
                .collect();
            let container = match params.get("container") {
                Some(c) if !containers.contains(&c.as_str()) => {
                    return Err(ApiError::bad_request(format!(
                        "container {c} is not valid for pod {}",
                        req.name()
                    )));
                }
                Some(c) => c.clone(),
                None if containers.len() > 1 => {
                    return Err(ApiError::bad_request(format!(
                        "a container name must be specified for pod {}, choose one of: [{}]",
                        req.name(),
                        containers.join(" ")
                    )));
                }
                None => containers
                    .first()
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
            };
            let stored = state
                .store
                .pod_log(req.ns().unwrap_or_default(), req.name(), &container);
            let mut text = stored
                .unwrap_or_else(|| format!("kube-sim: simulated log of pod {}\n", req.name()));
            if let Some(tail) = params
                .get("tailLines")
                .and_then(|t| t.parse::<usize>().ok())
            {
                let lines: Vec<&str> = text.lines().collect();
                let start = lines.len().saturating_sub(tail);
                text = lines[start..].iter().map(|l| format!("{l}\n")).collect();
            }
            let mut resp = Response::new(Body::from(text));
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            Ok(resp)
        }
        Some(s) => Err(not_found_path(&format!("{}/{s}", req.ty.plural))),
    }
}

fn scale_of(ty: &ResourceType, obj: &Value) -> Result<Value, ApiError> {
    let paths = ty
        .scale
        .as_ref()
        .ok_or_else(|| not_found_path(&format!("{}/scale", ty.plural)))?;
    let selector = if paths.label_selector.is_empty() {
        selector_string(&obj["spec"]["selector"])
    } else {
        json_path(obj, &paths.label_selector)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Ok(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"],
            "uid": obj["metadata"]["uid"], "resourceVersion": obj["metadata"]["resourceVersion"],
            "creationTimestamp": obj["metadata"]["creationTimestamp"],
        },
        "spec": {"replicas": json_path(obj, &paths.spec_replicas).and_then(Value::as_i64).unwrap_or(0)},
        "status": {"replicas": json_path(obj, &paths.status_replicas).and_then(Value::as_i64).unwrap_or(0), "selector": selector},
    }))
}

/// `matchLabels` of a selector as `a=b,c=d` (what Scale reports).
fn selector_string(sel: &Value) -> String {
    let mut parts: Vec<String> = sel["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let key = e["key"].as_str().unwrap_or_default();
        parts.push(match e["operator"].as_str().unwrap_or_default() {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "DoesNotExist" => format!("!{key}"),
            _ => key.to_string(),
        });
    }
    parts.join(",")
}

fn set_scale(ty: &ResourceType, obj: &mut Value, replicas: i64) {
    let path = ty
        .scale
        .as_ref()
        .map(|s| s.spec_replicas.clone())
        .unwrap_or_else(|| ".spec.replicas".into());
    let mut cur = obj;
    let parts: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    for (i, p) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            cur[*p] = json!(replicas);
        } else {
            if !cur[*p].is_object() {
                cur[*p] = json!({});
            }
            cur = &mut cur[*p];
        }
    }
}

struct Filter {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn from_params(params: &Params) -> Result<Filter, ApiError> {
        Ok(Filter {
            labels: LabelSelector::parse(
                params
                    .get("labelSelector")
                    .map(String::as_str)
                    .unwrap_or_default(),
            )?,
            fields: FieldSelector::parse(
                params
                    .get("fieldSelector")
                    .map(String::as_str)
                    .unwrap_or_default(),
            )?,
        })
    }
    fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj)
    }
}

fn encode_continue(obj: &Value) -> String {
    let key = format!(
        "{}/{}",
        obj["metadata"]["namespace"].as_str().unwrap_or_default(),
        obj["metadata"]["name"].as_str().unwrap_or_default()
    );
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
}

fn decode_continue(token: &str) -> Result<(String, String), ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "invalid continue token {token:?}; start the list again without it"
        ))
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (ns, name) = text.split_once('/').ok_or_else(bad)?;
    Ok((ns.to_string(), name.to_string()))
}

fn obj_key(obj: &Value) -> (&str, &str) {
    (
        obj["metadata"]["namespace"].as_str().unwrap_or_default(),
        obj["metadata"]["name"].as_str().unwrap_or_default(),
    )
}

fn list_response(
    state: &AppState,
    req: &Request,
    params: &Params,
    table: bool,
) -> Result<Response, ApiError> {
    let filter = Filter::from_params(params)?;
    let (objs, rv) = state.store.list(&req.ty, req.ns());
    let limit: usize = params
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let start = match params.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let (ns, name) = decode_continue(token)?;
            objs.partition_point(|o| obj_key(o) <= (ns.as_str(), name.as_str()))
        }
        None => 0,
    };
    let mut items = Vec::new();
    let mut more = false;
    let mut remaining = 0usize;
    for obj in &objs[start..] {
        if !filter.matches(obj) {
            continue;
        }
        if items.len() == limit {
            more = true;
            remaining += 1;
            continue;
        }
        items.push(obj.clone());
    }
    let token = if more {
        items.last().map(|o| encode_continue(o))
    } else {
        None
    };
    if table {
        return Ok(json_response(
            StatusCode::OK,
            &table_for(&req.ty, &items, rv, token),
        ));
    }
    // Serialised by hand so 30,000 pods are not cloned into one big Value.
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(t) = &token {
        meta["continue"] = json!(t);
        meta["remainingItemCount"] = json!(remaining);
    }
    let mut out = Vec::with_capacity(items.len() * 1024 + 128);
    out.extend_from_slice(
        format!(
            r#"{{"kind":"{}List","apiVersion":"{}","metadata":"#,
            req.ty.kind,
            req.ty.api_version()
        )
        .as_bytes(),
    );
    serde_json::to_writer(&mut out, &meta).map_err(|e| ApiError::internal(e.to_string()))?;
    out.extend_from_slice(br#","items":["#);
    for (i, obj) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, &*at_version(&req.ty, obj))
            .map_err(|e| ApiError::internal(e.to_string()))?;
    }
    out.extend_from_slice(b"]}");
    Ok(bytes_response(StatusCode::OK, out))
}

fn age(created: &str) -> String {
    let Ok(ts) = created.parse::<jiff::Timestamp>() else {
        return "<unknown>".into();
    };
    let secs = (jiff::Timestamp::now().as_second() - ts.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 3600 * 2 => format!("{}m", s / 60),
        s if s < 86_400 * 2 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn pod_ready(obj: &Value) -> String {
    let statuses = obj["status"]["containerStatuses"].as_array();
    let total = obj["spec"]["containers"].as_array().map_or(0, Vec::len);
    let ready = statuses.map_or(0, |s| {
        s.iter()
            .filter(|c| c["ready"].as_bool() == Some(true))
            .count()
    });
    format!("{ready}/{total}")
}

fn table_for(ty: &ResourceType, items: &[Arc<Value>], rv: u64, token: Option<String>) -> Value {
    let mut columns = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0}),
    ];
    if ty.kind == "Pod" {
        columns.push(json!({"name": "Ready", "type": "string", "format": "", "description": "", "priority": 0}));
    }
    for c in &ty.columns {
        columns.push(json!({"name": c.name, "type": c.column_type, "format": "", "description": "", "priority": 0}));
    }
    columns.push(
        json!({"name": "Age", "type": "string", "format": "", "description": "", "priority": 0}),
    );
    let rows: Vec<Value> = items
        .iter()
        .map(|obj| {
            let mut cells = vec![obj["metadata"]["name"].clone()];
            if ty.kind == "Pod" {
                cells.push(json!(pod_ready(obj)));
            }
            for c in &ty.columns {
                let mut cell = json_path(obj, &c.json_path).cloned().unwrap_or(Value::Null);
                if ty.kind == "Pod" && c.name == "Status" && obj["metadata"]["deletionTimestamp"].is_string() {
                    cell = json!("Terminating");
                }
                if ty.kind == "Node" && c.name == "Version" {
                    // kubectl shows STATUS for nodes; derive it the way the node printer does.
                    let ready = obj["status"]["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == "Ready" && c["status"] == "True");
                    let mut status = if ready { "Ready".to_string() } else { "NotReady".to_string() };
                    if obj["spec"]["unschedulable"].as_bool() == Some(true) {
                        status.push_str(",SchedulingDisabled");
                    }
                    cells.push(json!(status));
                }
                cells.push(match cell {
                    Value::Null => json!("<none>"),
                    Value::Object(_) | Value::Array(_) => json!(cell.to_string()),
                    other => other,
                });
            }
            cells.push(json!(age(obj["metadata"]["creationTimestamp"].as_str().unwrap_or_default())));
            json!({"cells": cells, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}})
        })
        .collect();
    if ty.kind == "Node" {
        // The node printer's STATUS column (Ready, SchedulingDisabled) comes before VERSION.
        columns.insert(1, json!({"name": "Status", "type": "string", "format": "", "description": "", "priority": 0}));
    }
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(t) = token {
        meta["continue"] = json!(t);
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": columns, "rows": rows})
}

fn create(
    state: &AppState,
    req: &Request,
    body: &[u8],
    content_type: &str,
    opts: &WriteOptions,
) -> Result<Response, ApiError> {
    let obj = parse_body(body, content_type)?;
    match req.sub.as_deref() {
        Some("eviction") if req.ty.kind == "Pod" => {
            return crate::controllers::evict(
                &state.store,
                req.ns().unwrap_or("default"),
                req.name(),
                obj["deleteOptions"]["gracePeriodSeconds"].as_i64(),
            )
            .map(|v| json_response(StatusCode::CREATED, &v));
        }
        Some("binding") if req.ty.kind == "Pod" => {
            let node = obj["target"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            state
                .store
                .mutate(&req.ty, req.ns(), req.name(), Target::Main, opts, |pod| {
                    pod["spec"]["nodeName"] = json!(node);
                    Ok(())
                })?;
            return Ok(json_response(
                StatusCode::CREATED,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
            ));
        }
        Some(s) => return Err(not_found_path(&format!("{}/{s}", req.ty.plural))),
        None => {}
    }
    if req.name.is_some() {
        return Err(ApiError::method_not_allowed(
            "POST is only allowed on a collection",
        ));
    }
    check_kind(&req.ty, &obj)?;
    let created = state.store.create(&req.ty, req.ns(), obj, opts)?;
    Ok(json_response(StatusCode::CREATED, &created))
}

fn update(
    state: &AppState,
    req: &Request,
    body: &[u8],
    content_type: &str,
    opts: &WriteOptions,
) -> Result<Response, ApiError> {
    let obj = parse_body(body, content_type)?;
    match req.sub.as_deref() {
        Some("scale") => {
            let replicas = obj["spec"]["replicas"].as_i64().unwrap_or(0);
            let sent_rv = obj["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let ty = req.ty.clone();
            let updated =
                state
                    .store
                    .mutate(&req.ty, req.ns(), req.name(), Target::Main, opts, |o| {
                        if !sent_rv.is_empty()
                            && o["metadata"]["resourceVersion"].as_str() != Some(sent_rv.as_str())
                        {
                            return Err(ApiError::conflict(
                                &ty.group,
                                &ty.plural,
                                o["metadata"]["name"].as_str().unwrap_or_default(),
                            ));
                        }
                        set_scale(&ty, o, replicas);
                        Ok(())
                    })?;
            Ok(json_response(StatusCode::OK, &scale_of(&req.ty, &updated)?))
        }
        Some("status") => {
            let updated =
                state
                    .store
                    .update(&req.ty, req.ns(), req.name(), obj, Target::Status, opts)?;
            Ok(json_response(StatusCode::OK, &updated))
        }
        Some(s) => Err(not_found_path(&format!("{}/{s}", req.ty.plural))),
        None => {
            check_kind(&req.ty, &obj)?;
            let updated =
                state
                    .store
                    .update(&req.ty, req.ns(), req.name(), obj, Target::Main, opts)?;
            Ok(json_response(StatusCode::OK, &updated))
        }
    }
}

fn patch_object(
    state: &AppState,
    req: &Request,
    body: &[u8],
    content_type: &str,
    params: &Params,
    opts: &WriteOptions,
) -> Result<Response, ApiError> {
    let ct = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let target = if req.sub.as_deref() == Some("status") {
        Target::Status
    } else {
        Target::Main
    };
    if ct == "application/apply-patch+yaml" || ct == "application/apply-patch+json" {
        let manager = params.get("fieldManager").cloned().ok_or_else(|| {
            ApiError::invalid(
                "PatchOptions",
                "meta.k8s.io",
                "",
                &[(
                    "fieldManager",
                    "Required value: is required for apply patch".into(),
                )],
            )
        })?;
        let config: Value = serde_norway::from_slice(body)
            .or_else(|_| serde_json::from_slice(body))
            .map_err(|e| {
                ApiError::bad_request(format!("the apply configuration is not valid YAML: {e}"))
            })?;
        check_kind(&req.ty, &config)?;
        let name = req.name().to_string();
        let ty = req.ty.clone();
        let now = now_micro();
        let apply_opts = WriteOptions {
            dry_run: opts.dry_run,
            ..WriteOptions::default()
        };
        if target == Target::Status {
            let updated = state.store.mutate(
                &req.ty,
                req.ns(),
                &name,
                Target::Status,
                &apply_opts,
                |live| {
                    patch::server_side_apply(live, &config, &manager, &ty.api_version(), &now);
                    Ok(())
                },
            )?;
            return Ok(json_response(StatusCode::OK, &updated));
        }
        let force = params.get("force").is_some_and(|f| f == "true");
        let (obj, created) = state.store.upsert(&req.ty, req.ns(), &name, &apply_opts, |live| {
            let mut base = match live {
                Some(l) => l.clone(),
                None => json!({"apiVersion": ty.api_version(), "kind": ty.kind, "metadata": {"name": name}}),
            };
            let mut config = config.clone();
            if ty.status_subresource
                && let Some(m) = config.as_object_mut()
            {
                m.remove("status");
            }
            if live.is_some() {
                if force {
                    patch::take_ownership(&mut base, &config, &manager);
                } else {
                    let conflicts = patch::apply_conflicts(&base, &config, &manager);
                    if !conflicts.is_empty() {
                        return Err(apply_conflict_error(&ty, &name, &conflicts));
                    }
                }
            }
            patch::server_side_apply(&mut base, &config, &manager, &ty.api_version(), &now);
            Ok(base)
        })?;
        let code = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        return Ok(json_response(code, &obj));
    }
    let patch_doc: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the patch is not valid JSON: {e}")))?;
    let ty = req.ty.clone();
    let apply = move |obj: &mut Value| -> Result<(), ApiError> {
        match ct.as_str() {
            "application/json-patch+json" => patch::json_patch(obj, &patch_doc),
            "application/merge-patch+json" => {
                patch::merge_patch(obj, &patch_doc);
                Ok(())
            }
            "application/strategic-merge-patch+json" => {
                if ty.custom {
                    return Err(ApiError::unsupported_media_type(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                    ));
                }
                patch::strategic_merge(obj, &patch_doc);
                Ok(())
            }
            other => Err(ApiError::unsupported_media_type(format!(
                "the body of the request was in an unknown format ({other}) - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json"
            ))),
        }
    };
    if req.sub.as_deref() == Some("scale") {
        let ty = req.ty.clone();
        let updated =
            state
                .store
                .mutate(&req.ty, req.ns(), req.name(), Target::Main, opts, |o| {
                    let mut scale = scale_of(&ty, o)?;
                    apply(&mut scale)?;
                    set_scale(&ty, o, scale["spec"]["replicas"].as_i64().unwrap_or(0));
                    Ok(())
                })?;
        return Ok(json_response(StatusCode::OK, &scale_of(&req.ty, &updated)?));
    }
    let updated = state
        .store
        .mutate(&req.ty, req.ns(), req.name(), target, opts, |o| {
            apply(o)?;
            Ok(())
        })?;
    Ok(json_response(StatusCode::OK, &updated))
}

fn body_json(body: &[u8]) -> Option<Value> {
    if body.starts_with(b"k8s\0") {
        return crate::protobuf::decode(body).ok();
    }
    serde_json::from_slice(body).ok()
}

/// The 409 a server-side apply gets when other managers own fields it would change.
fn apply_conflict_error(
    ty: &ResourceType,
    name: &str,
    conflicts: &[patch::FieldConflict],
) -> ApiError {
    let described: Vec<String> = conflicts
        .iter()
        .map(|c| {
            format!(
                "conflict with \"{}\" using {}: {}",
                c.manager, c.api_version, c.field
            )
        })
        .collect();
    let noun = if conflicts.len() == 1 {
        "conflict"
    } else {
        "conflicts"
    };
    let mut err = ApiError::new(
        409,
        "Conflict",
        format!(
            "Apply failed with {} {noun}: {}",
            conflicts.len(),
            described.join("\n")
        ),
    );
    err.details = Some(json!({
        "name": name, "group": ty.group, "kind": ty.plural,
        "causes": conflicts.iter().map(|c| json!({
            "reason": "FieldManagerConflict",
            "message": format!("conflict with \"{}\" using {}", c.manager, c.api_version),
            "field": c.field,
        })).collect::<Vec<_>>(),
    }));
    err
}

fn delete_options(body: &[u8], params: &Params) -> Propagation {
    let from_body = body_json(body);
    let policy = params
        .get("propagationPolicy")
        .cloned()
        .or_else(|| {
            from_body
                .as_ref()
                .and_then(|b| b["propagationPolicy"].as_str().map(str::to_string))
        })
        .or_else(|| {
            from_body
                .as_ref()
                .and_then(|b| b["orphanDependents"].as_bool())
                .filter(|o| *o)
                .map(|_| "Orphan".to_string())
        });
    match policy.as_deref() {
        Some("Orphan") => Propagation::Orphan,
        Some("Foreground") => Propagation::Foreground,
        _ => Propagation::Background,
    }
}

fn delete(
    state: &AppState,
    req: &Request,
    body: &[u8],
    params: &Params,
    opts: &WriteOptions,
) -> Result<Response, ApiError> {
    let mut opts = opts.clone();
    let from_body = body_json(body);
    opts.grace_period_seconds = params
        .get("gracePeriodSeconds")
        .and_then(|g| g.parse().ok())
        .or_else(|| {
            from_body
                .as_ref()
                .and_then(|b| b["gracePeriodSeconds"].as_i64())
        });
    if from_body.as_ref().is_some_and(|b| {
        b["dryRun"]
            .as_array()
            .is_some_and(|d| d.iter().any(|x| x == "All"))
    }) {
        opts.dry_run = true;
    }
    if let Some(pre) = from_body
        .as_ref()
        .map(|b| &b["preconditions"])
        .filter(|p| p.is_object())
    {
        let current = state.store.get(&req.ty, req.ns(), req.name())?;
        for field in ["uid", "resourceVersion"] {
            if let Some(want) = pre[field].as_str()
                && current["metadata"][field].as_str() != Some(want)
            {
                return Err(ApiError::conflict(
                    &req.ty.group,
                    &req.ty.plural,
                    req.name(),
                ));
            }
        }
    }
    let deleted = state.store.delete(
        &req.ty,
        req.ns(),
        req.name(),
        delete_options(body, params),
        &opts,
    )?;
    Ok(json_response(StatusCode::OK, &deleted))
}

fn delete_collection(
    state: &AppState,
    req: &Request,
    body: &[u8],
    params: &Params,
    opts: &WriteOptions,
) -> Result<Response, ApiError> {
    let filter = Filter::from_params(params)?;
    let (objs, _) = state.store.list(&req.ty, req.ns());
    let propagation = delete_options(body, params);
    let mut items = Vec::new();
    for obj in objs.iter().filter(|o| filter.matches(o)) {
        let (ns, name) = obj_key(obj);
        let ns = (!ns.is_empty()).then_some(ns);
        if let Ok(d) = state.store.delete(&req.ty, ns, name, propagation, opts) {
            items.push((*d).clone());
        }
    }
    let rv = state.store.resource_version();
    Ok(json_response(
        StatusCode::OK,
        &json!({"kind": format!("{}List", req.ty.kind), "apiVersion": req.ty.api_version(), "metadata": {"resourceVersion": rv.to_string()}, "items": items}),
    ))
}

struct WatchStream {
    pending: VecDeque<Bytes>,
    rx: broadcast::Receiver<Arc<WatchEvent>>,
    ty: Arc<ResourceType>,
    namespace: Option<String>,
    filter: Filter,
    table: bool,
    deadline: tokio::time::Instant,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

/// One watch event line; with `table`, the object is a one-row Table (`kubectl get -w`).
fn encode_event(ty: &ResourceType, event_type: &str, obj: &Value, table: bool) -> Bytes {
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(format!(r#"{{"type":"{event_type}","object":"#).as_bytes());
    // Serialising a JSON value to a Vec cannot fail.
    if table && event_type != "BOOKMARK" {
        let rv = obj["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        let _ = serde_json::to_writer(&mut out, &table_for(ty, &[Arc::new(obj.clone())], rv, None));
    } else {
        let _ = serde_json::to_writer(&mut out, &*at_version(ty, obj));
    }
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
}

/// The event type a watcher with `filter` on `ty` (in `namespace`) sees, if any. With a
/// selector, a modification that makes an object match is ADDED and one that makes it stop
/// matching is DELETED, as upstream.
fn visible_as(
    ty: &ResourceType,
    namespace: Option<&str>,
    filter: &Filter,
    event: &WatchEvent,
) -> Option<&'static str> {
    let in_scope = event.resource == ty.key()
        && namespace.is_none_or(|ns| event.object["metadata"]["namespace"].as_str() == Some(ns));
    if !in_scope {
        return None;
    }
    let now = filter.matches(&event.object);
    let before = event.previous.as_ref().map(|p| filter.matches(p));
    match (event.event_type, before, now) {
        (EventType::Modified, Some(false), true) => Some("ADDED"),
        (EventType::Modified, Some(true), false) => Some("DELETED"),
        (_, _, true) => Some(event.event_type.as_str()),
        _ => None,
    }
}

fn watch_response(
    state: &AppState,
    req: &Request,
    params: &Params,
    table: bool,
) -> Result<Response, ApiError> {
    let filter = Filter::from_params(params)?;
    if let Some(name) = &req.name {
        // A watch on one object is a watch with a metadata.name field selector.
        let mut p = params.clone();
        let fs = match p.get("fieldSelector").filter(|f| !f.is_empty()) {
            Some(f) => format!("{f},metadata.name={name}"),
            None => format!("metadata.name={name}"),
        };
        p.insert("fieldSelector".into(), fs);
        let req = Request {
            ty: req.ty.clone(),
            namespace: req.namespace.clone(),
            name: None,
            sub: None,
        };
        return watch_response(state, &req, &p, table);
    }
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(1800);
    let rv = params
        .get("resourceVersion")
        .filter(|r| !r.is_empty())
        .map(|r| r.parse::<u64>())
        .transpose()
        .map_err(|_| ApiError::bad_request("resourceVersion must be a number"))?;
    let send_initial = params.get("sendInitialEvents").is_some_and(|s| s == "true");
    let mut pending = VecDeque::new();
    let rx = if rv.is_none() || rv == Some(0) || send_initial {
        let (objs, list_rv, rx) = state.store.list_and_subscribe(&req.ty, req.ns());
        for obj in objs.iter().filter(|o| filter.matches(o)) {
            pending.push_back(encode_event(&req.ty, "ADDED", obj, table));
        }
        if send_initial {
            let bookmark = json!({"kind": req.ty.kind, "apiVersion": req.ty.api_version(), "metadata": {"resourceVersion": list_rv.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}});
            pending.push_back(encode_event(&req.ty, "BOOKMARK", &bookmark, false));
        }
        rx
    } else {
        let (events, rx) = state.store.events_since(&req.ty.key(), rv.unwrap_or(0))?;
        for e in events {
            if let Some(event_type) = visible_as(&req.ty, req.ns(), &filter, &e) {
                pending.push_back(encode_event(&req.ty, event_type, &e.object, table));
            }
        }
        rx
    };
    let ws = WatchStream {
        pending,
        rx,
        ty: req.ty.clone(),
        namespace: req.namespace.clone(),
        filter,
        table,
        deadline: tokio::time::Instant::from_std(Instant::now() + Duration::from_secs(timeout)),
        shutdown: state.shutdown.clone(),
    };
    let stream = futures::stream::unfold(ws, |mut ws| async move {
        if let Some(b) = ws.pending.pop_front() {
            return Some((Ok::<Bytes, Infallible>(b), ws));
        }
        loop {
            tokio::select! {
                r = ws.rx.recv() => match r {
                    Ok(ev) => {
                        if let Some(event_type) = visible_as(&ws.ty, ws.namespace.as_deref(), &ws.filter, &ev) {
                            let b = encode_event(&ws.ty, event_type, &ev.object, ws.table);
                            return Some((Ok(b), ws));
                        }
                    }
                    // Lagged or closed: end the watch; clients list again and resume.
                    Err(_) => return None,
                },
                _ = tokio::time::sleep_until(ws.deadline) => return None,
                _ = ws.shutdown.changed() => return None,
            }
        }
    });
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(resp)
}

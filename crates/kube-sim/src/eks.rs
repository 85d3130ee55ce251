//! The simulated EKS API for the operations moto lacks, served under `/eks` so the real AWS
//! CLI reaches it with `aws eks ... --endpoint-url http://<kube-sim>/eks`: the cluster
//! (`DescribeCluster`), version updates and the 7-day rollback (`UpdateClusterVersion`,
//! `DescribeUpdate`), EKS Upgrade Insights (`ListInsights`, `DescribeInsight`,
//! `StartInsightsRefresh`, `DescribeInsightsRefresh`), managed add-ons (`ListAddons`,
//! `DescribeAddon`, `UpdateAddon`, `DescribeAddonVersions`) and managed node groups
//! (`ListNodegroups`, `DescribeNodegroup`, `UpdateNodegroupVersion`).
//!
//! It shares its state with the rest of the simulation: the cluster's version is the API
//! server's (`/version`), which the simulated Terraform provider moves through
//! `PUT /kube-sim/v1/version`, so Terraform and `aws` see one cluster; a node group update
//! rolls the group's nodes as `PUT /kube-sim/v1/nodegroups/<name>` does. Tests set what AWS
//! would know on its own (the insights, the add-on catalog, when and at which version the
//! cluster was created) through `PUT /kube-sim/v1/eks`; the simulated provider's destroy of
//! the cluster sets `deleted`, after which EKS no longer finds it (the API server itself
//! keeps answering: nothing stops a kube-sim).
//!
//! Errors are rest-json: the status code, `x-amzn-ErrorType` and `{"message": ...}`, so the
//! CLI prints `An error occurred (InvalidStateException) when calling ...` as it does for EKS.

use std::collections::BTreeMap;
use std::sync::Mutex;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use crate::server::AppState;

/// How long after an in-place upgrade EKS still rolls a control plane back.
const ROLLBACK_WINDOW_SECS: i64 = 7 * 24 * 3600;

/// What the simulated AWS knows about the cluster beyond the API server.
#[derive(Debug, Default)]
pub(crate) struct EksState {
    inner: Mutex<EksData>,
}

#[derive(Debug, Default)]
struct EksData {
    /// The cluster's name (default `kube-sim`).
    name: Option<String>,
    /// The minor the cluster was created at (no rollback below it).
    created_version: Option<String>,
    /// The version updates, oldest first.
    updates: Vec<Value>,
    /// When the last in-place upgrade finished (seconds since the epoch), and to which minor.
    last_upgrade: Option<(i64, String)>,
    /// Whether the last version change was EKS's own auto-upgrade (no rollback then).
    auto_upgraded: bool,
    /// The insights, as `DescribeInsight` returns them.
    insights: Vec<Value>,
    /// The last insights refresh.
    refresh: Option<Value>,
    /// The installed add-ons, by name.
    addons: BTreeMap<String, Value>,
    /// `DescribeAddonVersions`' `addons`.
    addon_catalog: Vec<Value>,
    /// Managed node groups, by name, with their version.
    nodegroups: BTreeMap<String, String>,
    /// Whether the cluster was deleted (the simulated provider destroyed it): EKS answers
    /// `ResourceNotFoundException` for it from then on.
    deleted: bool,
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

pub(crate) fn reply(code: StatusCode, body: &Value) -> Response {
    let mut resp = Response::new(Body::from(serde_json::to_vec(body).unwrap_or_default()));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

pub(crate) fn ok(body: Value) -> Response {
    reply(StatusCode::OK, &body)
}

/// A rest-json error, as EKS answers it.
pub(crate) fn aws_error(code: u16, kind: &str, message: impl Into<String>) -> Response {
    let message = message.into();
    let mut resp = reply(
        StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
        &json!({"message": message}),
    );
    if let Ok(value) = HeaderValue::from_str(kind) {
        resp.headers_mut().insert("x-amzn-ErrorType", value);
    }
    resp
}

fn minor_of(git_version: &str) -> String {
    let mut parts = git_version.trim_start_matches('v').split('.');
    format!(
        "{}.{}",
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default()
    )
}

fn step(minor: &str, by: i64) -> Option<String> {
    let (major, m) = minor.split_once('.')?;
    let m: i64 = m.parse().ok()?;
    Some(format!("{major}.{}", m + by))
}

impl EksState {
    fn data(&self) -> std::sync::MutexGuard<'_, EksData> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `PUT /kube-sim/v1/eks` (merge): `name`, `createdVersion`, `insights`, `addons` (name →
/// `{addonVersion, configurationValues, ...}`), `addonVersions` (the catalog), `nodegroups`
/// (name → version), `lastUpgrade` (`{"at": <epoch secs>, "version": "1.31"}`), `autoUpgraded`.
/// `GET` returns the state.
pub(crate) fn admin(state: &AppState, method: &Method, body: &Bytes) -> Response {
    let mut data = state.eks.data();
    if *method == Method::PUT {
        let request: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return aws_error(400, "InvalidRequestException", format!("not JSON: {e}")),
        };
        if let Some(name) = request["name"].as_str() {
            data.name = Some(name.to_string());
        }
        if let Some(v) = request["createdVersion"].as_str() {
            data.created_version = Some(v.to_string());
        }
        if let Some(deleted) = request["deleted"].as_bool() {
            data.deleted = deleted;
        }
        if let Some(list) = request["removeNodegroups"].as_array() {
            for group in list.iter().filter_map(Value::as_str) {
                data.nodegroups.remove(group);
            }
        }
        if let Some(list) = request["insights"].as_array() {
            data.insights = list.clone();
        }
        if let Some(map) = request["addons"].as_object() {
            for (name, addon) in map {
                let mut addon = addon.clone();
                addon["addonName"] = json!(name);
                addon["status"] = addon["status"]
                    .as_str()
                    .map_or(json!("ACTIVE"), |s| json!(s));
                data.addons.insert(name.clone(), addon);
            }
        }
        if let Some(list) = request["addonVersions"].as_array() {
            data.addon_catalog = list.clone();
        }
        if let Some(map) = request["nodegroups"].as_object() {
            for (name, version) in map {
                data.nodegroups.insert(
                    name.clone(),
                    version.as_str().unwrap_or_default().to_string(),
                );
            }
        }
        if let (Some(at), Some(version)) = (
            request["lastUpgrade"]["at"].as_i64(),
            request["lastUpgrade"]["version"].as_str(),
        ) {
            data.last_upgrade = Some((at, version.to_string()));
        }
        if let Some(auto) = request["autoUpgraded"].as_bool() {
            data.auto_upgraded = auto;
        }
    }
    ok(json!({
        "name": data.name, "createdVersion": data.created_version, "insights": data.insights,
        "addons": data.addons, "nodegroups": data.nodegroups, "updates": data.updates,
        "deleted": data.deleted,
    }))
}

/// Called when the control plane's version changes outside `UpdateClusterVersion` (the
/// simulated Terraform provider): an in-place upgrade by one minor opens the rollback window.
pub(crate) fn version_changed(state: &AppState, from: &str, to: &str) {
    let (from, to) = (minor_of(from), minor_of(to));
    if step(&from, 1).as_deref() == Some(to.as_str()) {
        state.eks.data().last_upgrade = Some((now(), to));
    }
}

/// Dispatches `/eks/...` (the segments after `eks`).
pub(crate) async fn route(
    state: &AppState,
    method: &Method,
    segs: &[&str],
    params: &std::collections::HashMap<String, String>,
    body: &Bytes,
) -> Response {
    let request: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                return aws_error(
                    400,
                    "InvalidRequestException",
                    format!("body is not JSON: {e}"),
                );
            }
        }
    };
    if let ["addons", "supported-versions"] = segs {
        return describe_addon_versions(state, params);
    }
    let ["clusters", name, rest @ ..] = segs else {
        return aws_error(
            404,
            "ResourceNotFoundException",
            format!("no EKS operation at /{}", segs.join("/")),
        );
    };
    let cluster_name = state
        .eks
        .data()
        .name
        .clone()
        .unwrap_or_else(|| "kube-sim".into());
    if *name != cluster_name || state.eks.data().deleted {
        return aws_error(
            404,
            "ResourceNotFoundException",
            format!("No cluster found for name: {name}."),
        );
    }
    match (method.clone(), rest) {
        (Method::GET, []) => describe_cluster(state, &cluster_name),
        (Method::POST, ["updates"]) => update_cluster_version(state, &cluster_name, &request).await,
        (Method::GET, ["updates", id]) => describe_update(state, id),
        (Method::POST, ["insights"]) => list_insights(state, &request),
        (Method::GET, ["insights", id]) => describe_insight(state, id),
        (Method::POST, ["insights-refresh"]) => start_refresh(state, &cluster_name),
        (Method::GET, ["insights-refresh"]) => describe_refresh(state),
        (Method::GET, ["addons"]) => {
            ok(json!({"addons": state.eks.data().addons.keys().collect::<Vec<_>>()}))
        }
        (Method::GET, ["addons", addon]) => describe_addon(state, &cluster_name, addon),
        (Method::POST, ["addons", addon, "update"]) => {
            update_addon(state, &cluster_name, addon, &request)
        }
        (Method::GET, ["node-groups"]) => {
            ok(json!({"nodegroups": state.eks.data().nodegroups.keys().collect::<Vec<_>>()}))
        }
        (Method::GET, ["node-groups", group]) => describe_nodegroup(state, &cluster_name, group),
        (Method::POST, ["node-groups", group, "update-version"]) => {
            update_nodegroup(state, &cluster_name, group, &request).await
        }
        _ => aws_error(
            404,
            "ResourceNotFoundException",
            format!(
                "no EKS operation {method} /clusters/{name}/{}",
                rest.join("/")
            ),
        ),
    }
}

fn describe_cluster(state: &AppState, name: &str) -> Response {
    let version = minor_of(&state.version());
    let data = state.eks.data();
    let updating = data
        .updates
        .iter()
        .any(|u| u["status"] == "InProgress" && u["type"] != "AddonUpdate");
    ok(json!({"cluster": {
        "name": name,
        "arn": format!("arn:aws:eks:us-east-1:000000000000:cluster/{name}"),
        "version": version,
        "endpoint": state.server_address,
        "status": if updating { "UPDATING" } else { "ACTIVE" },
        "platformVersion": "eks.1",
        "createdAt": 1_700_000_000,
        "tags": {"kube-sim/created-version": data.created_version.clone().unwrap_or_default()},
    }}))
}

/// The insights blocking a move to `version` in `category`: ERROR ones, and for rollbacks
/// UNKNOWN ones too.
fn blocking(data: &EksData, category: &str, version: &str) -> Vec<String> {
    data.insights
        .iter()
        .filter(|i| i["category"] == category)
        .filter(|i| i["kubernetesVersion"].as_str().is_none_or(|v| v == version))
        .filter(|i| {
            let status = i["insightStatus"]["status"].as_str().unwrap_or_default();
            status == "ERROR" || (category == "ROLLBACK_READINESS" && status == "UNKNOWN")
        })
        .map(|i| i["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn update_cluster_version(state: &AppState, name: &str, request: &Value) -> Response {
    let Some(wanted) = request["version"].as_str() else {
        return aws_error(400, "InvalidParameterException", "version is required");
    };
    let force = request["force"].as_bool().unwrap_or(false);
    let current = minor_of(&state.version());
    let update_type = if step(&current, 1).as_deref() == Some(wanted) {
        "VersionUpdate"
    } else if step(&current, -1).as_deref() == Some(wanted) {
        "VersionRollback"
    } else if wanted == current {
        return aws_error(
            400,
            "InvalidParameterException",
            format!("The cluster {name} is already at version {current}."),
        );
    } else {
        return aws_error(
            400,
            "InvalidParameterException",
            format!("Unsupported Kubernetes minor version update from {current} to {wanted}"),
        );
    };
    {
        let data = state.eks.data();
        if data.updates.iter().any(|u| u["status"] == "InProgress") {
            return aws_error(
                409,
                "ResourceInUseException",
                format!("Cluster {name} has an update in progress."),
            );
        }
        if update_type == "VersionRollback" {
            let refused = |why: String| aws_error(400, "InvalidRequestException", why);
            if data.created_version.as_deref() == Some(current.as_str()) {
                return refused(format!(
                    "Version rollback is not supported for cluster {name}: it was created at version {current}."
                ));
            }
            if data.auto_upgraded {
                return refused(format!(
                    "Version rollback is not supported for cluster {name}: version {current} was reached by an automatic upgrade."
                ));
            }
            match &data.last_upgrade {
                Some((at, to)) if *to == current && now() - at <= ROLLBACK_WINDOW_SECS => {}
                Some((at, to)) if *to == current => {
                    return refused(format!(
                        "Version rollback window has expired for cluster {name}: the upgrade to {current} finished more than 7 days ago ({} days).",
                        (now() - at) / 86_400
                    ));
                }
                _ => {
                    return refused(format!(
                        "Version rollback is not supported for cluster {name}: no in-place upgrade to {current} is recorded."
                    ));
                }
            }
            let stale: Vec<&String> = data
                .nodegroups
                .iter()
                .filter(|(_, v)| v.as_str() != wanted)
                .map(|(n, _)| n)
                .collect();
            if !stale.is_empty() {
                return refused(format!(
                    "Managed node groups must be at version {wanted} before the control plane rolls back: {}",
                    stale
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        let category = if update_type == "VersionRollback" {
            "ROLLBACK_READINESS"
        } else {
            "UPGRADE_READINESS"
        };
        let blockers = blocking(&data, category, wanted);
        if !blockers.is_empty() && !force {
            let what = if update_type == "VersionRollback" {
                "rollback"
            } else {
                "upgrade"
            };
            return aws_error(
                400,
                "InvalidStateException",
                format!(
                    "Amazon EKS detected {what} readiness issues: {}. Call the ListInsights API to view detected {what} blocking issues. Pass the force flag when updating to override {what} readiness errors.",
                    blockers.join(", ")
                ),
            );
        }
    }
    let id = format!("sim-{:x}", now_nanos());
    let update = json!({
        "id": id, "status": "InProgress", "type": update_type,
        "params": [{"type": "Version", "value": wanted}, {"type": "PlatformVersion", "value": "eks.1"}],
        "createdAt": now(), "errors": [],
    });
    state.eks.data().updates.push(update.clone());
    // The control plane moves as the admin endpoint moves it (same delay, same version rule).
    let takes = *state
        .control_plane_update
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    tokio::time::sleep(takes).await;
    let from = state.version();
    let next = crate::server::next_version(&from, wanted);
    *state.git_version.write().unwrap_or_else(|e| e.into_inner()) = next;
    {
        let mut data = state.eks.data();
        if update_type == "VersionUpdate" {
            data.last_upgrade = Some((now(), wanted.to_string()));
            data.auto_upgraded = false;
        } else {
            data.last_upgrade = None;
        }
        if let Some(u) = data.updates.iter_mut().find(|u| u["id"] == id.as_str()) {
            u["status"] = json!("Successful");
        }
    }
    let mut answer = update;
    answer["status"] = json!("InProgress");
    ok(json!({"update": answer}))
}

pub(crate) fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

fn describe_update(state: &AppState, id: &str) -> Response {
    match state.eks.data().updates.iter().find(|u| u["id"] == id) {
        Some(update) => ok(json!({"update": update})),
        None => aws_error(
            404,
            "ResourceNotFoundException",
            format!("No update found for ID: {id}"),
        ),
    }
}

fn summary(insight: &Value) -> Value {
    let mut s = json!({});
    for key in [
        "id",
        "name",
        "category",
        "kubernetesVersion",
        "lastRefreshTime",
        "lastTransitionTime",
        "description",
        "insightStatus",
    ] {
        if !insight[key].is_null() {
            s[key] = insight[key].clone();
        }
    }
    s
}

fn list_insights(state: &AppState, request: &Value) -> Response {
    let filter = &request["filter"];
    let wanted = |key: &str, value: &Value| {
        filter[key]
            .as_array()
            .is_none_or(|allowed| allowed.is_empty() || allowed.contains(value))
    };
    let data = state.eks.data();
    let insights: Vec<Value> = data
        .insights
        .iter()
        .filter(|i| wanted("categories", &i["category"]))
        .filter(|i| wanted("kubernetesVersions", &i["kubernetesVersion"]))
        .filter(|i| wanted("statuses", &i["insightStatus"]["status"]))
        .map(summary)
        .collect();
    ok(json!({"insights": insights}))
}

fn describe_insight(state: &AppState, id: &str) -> Response {
    match state.eks.data().insights.iter().find(|i| i["id"] == id) {
        Some(insight) => ok(json!({"insight": insight})),
        None => aws_error(
            404,
            "ResourceNotFoundException",
            format!("No insight found for ID: {id}"),
        ),
    }
}

/// A refresh completes at once and stamps every insight's `lastRefreshTime`.
fn start_refresh(state: &AppState, _name: &str) -> Response {
    let mut data = state.eks.data();
    let at = now();
    for insight in &mut data.insights {
        insight["lastRefreshTime"] = json!(at);
    }
    let refresh = json!({"message": "Insights refresh completed", "status": "COMPLETED", "startedAt": at, "endedAt": at});
    data.refresh = Some(refresh.clone());
    ok(json!({"message": "Insights refresh started", "status": "IN_PROGRESS"}))
}

fn describe_refresh(state: &AppState) -> Response {
    match &state.eks.data().refresh {
        Some(r) => ok(r.clone()),
        None => ok(json!({"message": "No refresh has run", "status": "COMPLETED"})),
    }
}

fn describe_addon(state: &AppState, cluster: &str, addon: &str) -> Response {
    match state.eks.data().addons.get(addon) {
        Some(a) => {
            let mut a = a.clone();
            a["clusterName"] = json!(cluster);
            ok(json!({"addon": a}))
        }
        None => aws_error(
            404,
            "ResourceNotFoundException",
            format!("No addon: {addon} found in cluster: {cluster}"),
        ),
    }
}

fn update_addon(state: &AppState, cluster: &str, addon: &str, request: &Value) -> Response {
    let mut data = state.eks.data();
    let known_versions: Vec<String> = data
        .addon_catalog
        .iter()
        .filter(|a| a["addonName"] == addon)
        .flat_map(|a| a["addonVersions"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v["addonVersion"].as_str().map(str::to_string))
        .collect();
    let Some(current) = data.addons.get_mut(addon) else {
        return aws_error(
            404,
            "ResourceNotFoundException",
            format!("No addon: {addon} found in cluster: {cluster}"),
        );
    };
    let mut params = Vec::new();
    if let Some(version) = request["addonVersion"].as_str() {
        if !known_versions.is_empty() && !known_versions.iter().any(|v| v == version) {
            return aws_error(
                400,
                "InvalidParameterException",
                format!("Addon version specified is not supported: {version}"),
            );
        }
        current["addonVersion"] = json!(version);
        params.push(json!({"type": "AddonVersion", "value": version}));
    }
    if let Some(config) = request["configurationValues"].as_str() {
        current["configurationValues"] = json!(config);
        params.push(json!({"type": "ConfigurationValues", "value": config}));
    }
    if let Some(resolve) = request["resolveConflicts"].as_str() {
        params.push(json!({"type": "ResolveConflicts", "value": resolve}));
    }
    current["status"] = json!("ACTIVE");
    let update = json!({"id": format!("sim-{:x}", now_nanos()), "status": "Successful",
        "type": "AddonUpdate", "params": params, "createdAt": now(), "errors": []});
    data.updates.push(update.clone());
    let mut answer = update;
    answer["status"] = json!("InProgress");
    ok(json!({"update": answer}))
}

fn describe_addon_versions(
    state: &AppState,
    params: &std::collections::HashMap<String, String>,
) -> Response {
    let data = state.eks.data();
    let addons: Vec<Value> = data
        .addon_catalog
        .iter()
        .filter(|a| {
            params
                .get("addonName")
                .is_none_or(|n| a["addonName"] == n.as_str())
        })
        .map(|a| {
            let mut a = a.clone();
            if let Some(k8s) = params.get("kubernetesVersion")
                && let Some(versions) = a["addonVersions"].as_array()
            {
                let kept: Vec<Value> = versions
                    .iter()
                    .filter(|v| {
                        v["compatibilities"].as_array().is_some_and(|cs| {
                            cs.iter().any(|c| c["clusterVersion"] == k8s.as_str())
                        })
                    })
                    .cloned()
                    .collect();
                a["addonVersions"] = json!(kept);
            }
            a
        })
        .collect();
    ok(json!({"addons": addons}))
}

fn describe_nodegroup(state: &AppState, cluster: &str, group: &str) -> Response {
    match state.eks.data().nodegroups.get(group) {
        Some(version) => ok(json!({"nodegroup": {
            "nodegroupName": group, "clusterName": cluster, "version": version, "status": "ACTIVE",
        }})),
        None => aws_error(
            404,
            "ResourceNotFoundException",
            format!("No node group found for name: {group}."),
        ),
    }
}

async fn update_nodegroup(
    state: &AppState,
    cluster: &str,
    group: &str,
    request: &Value,
) -> Response {
    if !state.eks.data().nodegroups.contains_key(group) {
        return aws_error(
            404,
            "ResourceNotFoundException",
            format!("No node group found for name: {group}."),
        );
    }
    let version = request["version"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| minor_of(&state.version()));
    if let Err(e) = crate::server::roll_nodegroup(state, group, &version).await {
        return aws_error(
            500,
            "ServerException",
            format!("node group {group} of {cluster}: {e}"),
        );
    }
    state
        .eks
        .data()
        .nodegroups
        .insert(group.to_string(), version.clone());
    let update = json!({"id": format!("sim-{:x}", now_nanos()), "status": "Successful",
        "type": "VersionUpdate", "params": [{"type": "Version", "value": version}],
        "createdAt": now(), "errors": []});
    state.eks.data().updates.push(update.clone());
    ok(json!({"update": update}))
}

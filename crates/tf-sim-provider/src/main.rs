//! `terraform-provider-aws-sim`: a simulated AWS provider for the toolkit's tests.
//!
//! A real Terraform plugin (protocol 6, served by the `tf-provider` crate) that Terraform
//! installs from a filesystem mirror as `registry.terraform.io/hashicorp/aws`. It implements
//! the three EKS resources the upgrade procedures touch, with the behaviour that matters for
//! upgrade safety:
//!
//! - `aws_eks_cluster`: `name` and `vpc_config.subnet_ids` force replacement; `version`
//!   updates in place, and, as EKS does, only one minor version at a time; a bigger jump (or a
//!   downgrade) fails at apply with EKS's `InvalidParameterException` message.
//! - `aws_eks_node_group`: `cluster_name`, `node_group_name`, `subnet_ids` and
//!   `instance_types` force replacement; `version`, `release_version` and `scaling_config`
//!   update in place.
//! - `aws_eks_addon`: `cluster_name` and `addon_name` force replacement; `addon_version`
//!   updates in place.
//!
//! There is no external service: every object lives only in Terraform's state, so a test's
//! state file is the whole "cloud".
//!
//! ```no_run
//! // Installed by tests into <mirror>/registry.terraform.io/hashicorp/aws/<version>/<os_arch>/
//! // and selected with a CLI config:
//! // provider_installation { filesystem_mirror { path = "<mirror>" include = ["registry.terraform.io/hashicorp/aws"] } }
//! ```

use std::collections::HashMap;

use async_trait::async_trait;
use tf_provider::schema::{
    Attribute, AttributeConstraint, AttributeType, Block, Description, NestedBlock, Schema,
};
use tf_provider::value::{ValueAny, ValueEmpty};
use tf_provider::{
    AttributePath, Diagnostic, Diagnostics, DynamicDataSource, DynamicResource, Provider, Resource,
    serve,
};

/// The fake account every ARN is placed in.
const ACCOUNT: &str = "123456789012";

/// The resource types this provider serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Cluster,
    NodeGroup,
    Addon,
}

/// One simulated resource type; its state is kept as a generic object value.
#[derive(Debug, Clone, Copy)]
struct SimResource(Kind);

fn attr(ty: AttributeType, constraint: AttributeConstraint, text: &str) -> Attribute {
    Attribute {
        attr_type: ty,
        description: Description::plain(text),
        constraint,
        ..Default::default()
    }
}

fn string_set() -> AttributeType {
    AttributeType::Set(Box::new(AttributeType::String))
}

fn block(attributes: Vec<(&str, Attribute)>, blocks: Vec<(&str, NestedBlock)>) -> Block {
    Block {
        version: 1,
        attributes: attributes
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        blocks: blocks
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        ..Default::default()
    }
}

impl SimResource {
    fn block(&self) -> Block {
        use AttributeConstraint::{Computed, Optional, OptionalComputed, Required};
        use AttributeType::{Number, String};
        let computed = |text: &str| attr(String, Computed, text);
        match self.0 {
            Kind::Cluster => block(
                vec![
                    ("id", computed("The cluster name.")),
                    ("arn", computed("The cluster ARN.")),
                    ("endpoint", computed("The API server endpoint.")),
                    ("status", computed("ACTIVE once created.")),
                    ("platform_version", computed("The EKS platform version.")),
                    (
                        "name",
                        attr(String, Required, "Cluster name (forces replacement)."),
                    ),
                    ("role_arn", attr(String, Optional, "The cluster IAM role.")),
                    (
                        "version",
                        attr(String, Required, "Kubernetes minor version, e.g. 1.30."),
                    ),
                    (
                        "force_update_version",
                        attr(
                            AttributeType::Bool,
                            Optional,
                            "Override upgrade-blocking readiness insights on a version update.",
                        ),
                    ),
                    (
                        "tags",
                        attr(AttributeType::Map(Box::new(String)), Optional, "Tags."),
                    ),
                ],
                vec![(
                    "vpc_config",
                    NestedBlock::List(block(
                        vec![(
                            "subnet_ids",
                            attr(string_set(), Required, "Subnets (forces replacement)."),
                        )],
                        vec![],
                    )),
                )],
            ),
            Kind::NodeGroup => block(
                vec![
                    ("id", computed("cluster_name:node_group_name.")),
                    ("arn", computed("The node group ARN.")),
                    ("status", computed("ACTIVE once created.")),
                    (
                        "cluster_name",
                        attr(String, Required, "Forces replacement."),
                    ),
                    (
                        "node_group_name",
                        attr(String, Required, "Forces replacement."),
                    ),
                    (
                        "node_role_arn",
                        attr(String, Optional, "The node IAM role."),
                    ),
                    (
                        "subnet_ids",
                        attr(string_set(), Required, "Forces replacement."),
                    ),
                    (
                        "instance_types",
                        attr(
                            AttributeType::List(Box::new(String)),
                            Optional,
                            "Forces replacement.",
                        ),
                    ),
                    (
                        "version",
                        attr(String, OptionalComputed, "Kubernetes version."),
                    ),
                    (
                        "release_version",
                        attr(String, OptionalComputed, "AMI release version."),
                    ),
                ],
                vec![(
                    "scaling_config",
                    NestedBlock::List(block(
                        vec![
                            ("desired_size", attr(Number, Required, "Desired nodes.")),
                            ("min_size", attr(Number, Required, "Minimum nodes.")),
                            ("max_size", attr(Number, Required, "Maximum nodes.")),
                        ],
                        vec![],
                    )),
                )],
            ),
            Kind::Addon => block(
                vec![
                    ("id", computed("cluster_name:addon_name.")),
                    ("arn", computed("The add-on ARN.")),
                    (
                        "cluster_name",
                        attr(String, Required, "Forces replacement."),
                    ),
                    ("addon_name", attr(String, Required, "Forces replacement.")),
                    (
                        "addon_version",
                        attr(String, OptionalComputed, "Add-on version."),
                    ),
                ],
                vec![],
            ),
        }
    }

    /// Paths whose change cannot be applied in place.
    fn force_new(&self) -> Vec<AttributePath> {
        match self.0 {
            Kind::Cluster => vec![
                AttributePath::new("name"),
                AttributePath::new("vpc_config")
                    .index(0)
                    .attribute("subnet_ids"),
            ],
            Kind::NodeGroup => [
                "cluster_name",
                "node_group_name",
                "subnet_ids",
                "instance_types",
            ]
            .into_iter()
            .map(AttributePath::new)
            .collect(),
            Kind::Addon => ["cluster_name", "addon_name"]
                .into_iter()
                .map(AttributePath::new)
                .collect(),
        }
    }

    fn computed_names(&self) -> Vec<String> {
        self.block()
            .attributes
            .into_iter()
            .filter(|(_, a)| {
                matches!(
                    a.constraint,
                    AttributeConstraint::Computed | AttributeConstraint::OptionalComputed
                )
            })
            .map(|(k, _)| k)
            .collect()
    }

    /// The value a computed attribute gets once the object exists.
    fn computed_value(&self, state: &ValueAny, name: &str) -> ValueAny {
        let s = |key: &str| text(state, key).unwrap_or_default();
        let region_arn = format!("arn:aws:eks:us-east-1:{ACCOUNT}");
        let value = match (self.0, name) {
            (Kind::Cluster, "id") => s("name"),
            (Kind::Cluster, "arn") => format!("{region_arn}:cluster/{}", s("name")),
            // The simulated cluster's API server is the endpoint, as EKS's is.
            (Kind::Cluster, "endpoint") => std::env::var(SIM_KUBE_URL).unwrap_or_else(|_| {
                format!("https://{}.gr7.us-east-1.eks.amazonaws.com", s("name"))
            }),
            (Kind::Cluster | Kind::NodeGroup, "status") => "ACTIVE".into(),
            (Kind::Cluster, "platform_version") => "eks.1".into(),
            (Kind::NodeGroup, "id") => format!("{}:{}", s("cluster_name"), s("node_group_name")),
            (Kind::NodeGroup, "arn") => format!(
                "{region_arn}:nodegroup/{}/{}",
                s("cluster_name"),
                s("node_group_name")
            ),
            // Without the cluster's state at hand, a node group created without a version
            // gets the oldest version the simulation supports.
            (Kind::NodeGroup, "version") => "1.29".into(),
            (Kind::NodeGroup, "release_version") => {
                format!(
                    "{}.0-20250101",
                    text(state, "version").unwrap_or("1.29".into())
                )
            }
            (Kind::Addon, "id") => format!("{}:{}", s("cluster_name"), s("addon_name")),
            (Kind::Addon, "arn") => {
                format!(
                    "{region_arn}:addon/{}/{}",
                    s("cluster_name"),
                    s("addon_name")
                )
            }
            (Kind::Addon, "addon_version") => "v1.0.0-eksbuild.1".into(),
            _ => return ValueAny::Null,
        };
        ValueAny::String(value)
    }

    /// Marks computed attributes the practitioner did not set as unknown until apply.
    fn mark_unknown(&self, state: &mut ValueAny, only_null: bool) {
        if let ValueAny::Map(map) = state {
            for name in self.computed_names() {
                let entry = map.entry(name).or_insert(ValueAny::Null);
                if !only_null || *entry == ValueAny::Null {
                    *entry = ValueAny::Unknown;
                }
            }
        }
    }

    /// Fills every unknown computed attribute, as the cloud would on create or update.
    fn resolve_unknown(&self, state: &mut ValueAny) {
        let snapshot = state.clone();
        if let ValueAny::Map(map) = state {
            for name in self.computed_names() {
                if matches!(map.get(&name), Some(ValueAny::Unknown) | None) {
                    map.insert(name.clone(), self.computed_value(&snapshot, &name));
                }
            }
        }
    }
}

fn field<'v>(value: &'v ValueAny, name: &str) -> &'v ValueAny {
    match value {
        ValueAny::Map(map) => map.get(name).unwrap_or(&ValueAny::Null),
        _ => &ValueAny::Null,
    }
}

fn text(value: &ValueAny, name: &str) -> Option<String> {
    match field(value, name) {
        ValueAny::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn at_path<'v>(value: &'v ValueAny, path: &[&str]) -> &'v ValueAny {
    path.iter()
        .fold(value, |v, step| match (v, step.parse::<usize>()) {
            (ValueAny::List(items), Ok(i)) => items.get(i).unwrap_or(&ValueAny::Null),
            _ => field(v, step),
        })
}

/// The steps of the force-new paths, in a form [`at_path`] can follow.
fn force_new_steps(kind: Kind) -> Vec<Vec<&'static str>> {
    match kind {
        Kind::Cluster => vec![vec!["name"], vec!["vpc_config", "0", "subnet_ids"]],
        Kind::NodeGroup => vec![
            vec!["cluster_name"],
            vec!["node_group_name"],
            vec!["subnet_ids"],
            vec!["instance_types"],
        ],
        Kind::Addon => vec![vec!["cluster_name"], vec!["addon_name"]],
    }
}

/// `"1.30"` -> `(1, 30)`.
fn minor_version(version: &str) -> Option<(u64, u64)> {
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// EKS moves a control plane one minor version at a time; one minor back only as a version
/// rollback, which the (simulated) EKS API itself allows or refuses (its 7-day window).
fn eks_allows_version_update(from: &str, to: &str) -> bool {
    match (minor_version(from), minor_version(to)) {
        (Some((fa, fi)), Some((ta, ti))) => fa == ta && (ti == fi || ti == fi + 1 || ti + 1 == fi),
        _ => false,
    }
}

#[async_trait]
impl Resource for SimResource {
    type State<'a> = ValueAny;
    type PrivateState<'a> = ValueEmpty;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        Some(Schema {
            version: 1,
            block: self.block(),
        })
    }

    async fn read<'a>(
        &self,
        _diags: &mut Diagnostics,
        state: Self::State<'a>,
        private_state: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        // Terraform's state is the only copy of the object: nothing drifts.
        Some((state, private_state))
    }

    async fn plan_create<'a>(
        &self,
        _diags: &mut Diagnostics,
        proposed: Self::State<'a>,
        _config: Self::State<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let mut planned = proposed;
        self.mark_unknown(&mut planned, true);
        Some((planned, ValueEmpty::default()))
    }

    async fn plan_update<'a>(
        &self,
        _diags: &mut Diagnostics,
        prior: Self::State<'a>,
        proposed: Self::State<'a>,
        config: Self::State<'a>,
        prior_private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>, Vec<AttributePath>)> {
        let replace: Vec<AttributePath> = force_new_steps(self.0)
            .iter()
            .zip(self.force_new())
            .filter(|(steps, _)| at_path(&prior, steps) != at_path(&proposed, steps))
            .map(|(_, path)| path)
            .collect();
        let mut planned = proposed;
        let version_changed = field(&prior, "version") != field(&planned, "version");
        if let ValueAny::Map(map) = &mut planned {
            match self.0 {
                Kind::Cluster if version_changed => {
                    map.insert("platform_version".into(), ValueAny::Unknown);
                }
                // A new Kubernetes version brings a new AMI unless one is pinned.
                Kind::NodeGroup
                    if version_changed && *field(&config, "release_version") == ValueAny::Null =>
                {
                    map.insert("release_version".into(), ValueAny::Unknown);
                }
                _ => {}
            }
        }
        Some((planned, prior_private, replace))
    }

    async fn plan_destroy<'a>(
        &self,
        _diags: &mut Diagnostics,
        _prior: Self::State<'a>,
        prior_private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<Self::PrivateState<'a>> {
        Some(prior_private)
    }

    async fn create<'a>(
        &self,
        diags: &mut Diagnostics,
        planned: Self::State<'a>,
        _config: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let mut state = planned;
        self.resolve_unknown(&mut state);
        if self.0 == Kind::Cluster {
            let version = text(&state, "version").unwrap_or_default();
            control_plane_now_at(diags, &version).await?;
            // The simulated EKS API learns the cluster's name and the version it was created
            // at (no rollback below it), as EKS knows them.
            let name = text(&state, "name").unwrap_or_default();
            tell_eks(
                diags,
                serde_json::json!({"name": name, "createdVersion": version, "deleted": false}),
            )
            .await?;
        }
        if self.0 == Kind::NodeGroup {
            let group = text(&state, "node_group_name").unwrap_or_default();
            let version = text(&state, "version").unwrap_or_default();
            tell_eks(diags, serde_json::json!({"nodegroups": {group: version}})).await?;
        }
        Some((state, private))
    }

    async fn update<'a>(
        &self,
        diags: &mut Diagnostics,
        prior: Self::State<'a>,
        planned: Self::State<'a>,
        _config: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        if self.0 == Kind::Cluster {
            let from = text(&prior, "version").unwrap_or_default();
            let to = text(&planned, "version").unwrap_or_default();
            if !eks_allows_version_update(&from, &to) {
                // The message EKS's UpdateClusterVersion returns, as the AWS provider reports it.
                // Built by hand: tf-provider's constructors append a backtrace to the detail
                // whenever RUST_BACKTRACE is set, which would pollute the message.
                diags.add_error(Diagnostic {
                    summary: format!(
                        "updating EKS Cluster ({}) version: operation error EKS: \
                         UpdateClusterVersion, https response error StatusCode: 400, \
                         InvalidParameterException: Unsupported Kubernetes minor version \
                         update from {from} to {to}",
                        text(&prior, "name").unwrap_or_default()
                    )
                    .into(),
                    detail: "".into(),
                    attribute: AttributePath::root(),
                });
                return None;
            }
            if from != to {
                let name = text(&prior, "name").unwrap_or_default();
                let force = matches!(
                    field(&planned, "force_update_version"),
                    ValueAny::Bool(true)
                );
                update_cluster_version(diags, &name, &to, force).await?;
            }
        }
        if self.0 == Kind::NodeGroup {
            let from = text(&prior, "version").unwrap_or_default();
            let to = text(&planned, "version").unwrap_or_default();
            if from != to && !to.is_empty() {
                let group = text(&planned, "node_group_name").unwrap_or_default();
                tell_sim(
                    diags,
                    &format!("/kube-sim/v1/nodegroups/{group}"),
                    &to,
                    &format!("node group {group}"),
                )
                .await?;
                tell_eks(diags, serde_json::json!({"nodegroups": {group: to}})).await?;
            }
        }
        let mut state = planned;
        self.resolve_unknown(&mut state);
        Some((state, private))
    }

    async fn destroy<'a>(
        &self,
        diags: &mut Diagnostics,
        prior: Self::State<'a>,
        _private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<()> {
        // EKS forgets what was deleted: the simulated EKS API answers ResourceNotFound.
        match self.0 {
            Kind::Cluster => tell_eks(diags, serde_json::json!({"deleted": true})).await,
            Kind::NodeGroup => {
                let group = text(&prior, "node_group_name").unwrap_or_default();
                tell_eks(diags, serde_json::json!({"removeNodegroups": [group]})).await
            }
            _ => Some(()),
        }
    }
}

/// Names the simulated cluster (kube-sim's URL) whose API server version follows
/// `aws_eks_cluster.version`; documented as `upgrade_core::env_vars::UPGRADE_SIM_KUBE_URL`.
const SIM_KUBE_URL: &str = "UPGRADE_SIM_KUBE_URL";

/// Tells the simulated cluster its control plane now runs `version`, as EKS's control plane
/// does once `UpdateClusterVersion` finishes. Without [`SIM_KUBE_URL`] there is no cluster
/// to tell. A cluster that cannot be told fails the apply, as a failed update would.
async fn control_plane_now_at(diags: &mut Diagnostics, version: &str) -> Option<()> {
    tell_sim(diags, "/kube-sim/v1/version", version, "control plane").await
}

/// `UpdateClusterVersion` on the simulated EKS API, as the AWS provider calls it: EKS's own
/// answer decides (one minor forward, the 7-day rollback, readiness insights that block
/// unless `force`), and its error is reported the way the AWS provider reports it.
async fn update_cluster_version(
    diags: &mut Diagnostics,
    name: &str,
    version: &str,
    force: bool,
) -> Option<()> {
    let Ok(base) = std::env::var(SIM_KUBE_URL) else {
        return Some(());
    };
    let base = base.trim_end_matches('/').to_string();
    // What a refresh would have read: a control plane already at the version (a run that
    // was cut off after EKS finished) needs no update.
    let live = async {
        reqwest::get(format!("{base}/kube-sim/v1/version"))
            .await?
            .json::<serde_json::Value>()
            .await
    }
    .await;
    if let Ok(live) = live
        && live["gitVersion"].as_str().is_some_and(|v| {
            v.trim_start_matches('v')
                .starts_with(&format!("{version}."))
        })
    {
        return Some(());
    }
    let url = format!("{base}/eks/clusters/{name}/updates");
    let answer = async {
        let response = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(600))
            .build()?
            .post(&url)
            .json(&serde_json::json!({ "version": version, "force": force }))
            .send()
            .await?;
        let status = response.status();
        let kind = response
            .headers()
            .get("x-amzn-ErrorType")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        Ok::<_, reqwest::Error>((status, kind, body))
    }
    .await;
    match answer {
        Ok((status, _, _)) if status.is_success() => Some(()),
        Ok((status, kind, body)) => {
            diags.add_error(Diagnostic {
                summary: format!(
                    "updating EKS Cluster ({name}) version: operation error EKS: \
                     UpdateClusterVersion, https response error StatusCode: {}, {}: {}",
                    status.as_u16(),
                    kind.unwrap_or_else(|| "ServerException".into()),
                    body["message"].as_str().unwrap_or_default()
                )
                .into(),
                detail: "".into(),
                attribute: AttributePath::root(),
            });
            None
        }
        Err(e) => {
            diags.add_error(Diagnostic {
                summary: format!("the simulated EKS API at {base} did not answer: {e}").into(),
                detail: format!("check {SIM_KUBE_URL} names a running kube-sim").into(),
                attribute: AttributePath::root(),
            });
            None
        }
    }
}

/// Merges `state` into what the simulated EKS API knows (`PUT /kube-sim/v1/eks`).
async fn tell_eks(diags: &mut Diagnostics, state: serde_json::Value) -> Option<()> {
    let Ok(base) = std::env::var(SIM_KUBE_URL) else {
        return Some(());
    };
    let url = format!("{}/kube-sim/v1/eks", base.trim_end_matches('/'));
    let result = async {
        reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()?
            .put(&url)
            .json(&state)
            .send()
            .await?
            .error_for_status()
            .map(|_| ())
    }
    .await;
    match result {
        Ok(()) => Some(()),
        Err(e) => {
            diags.add_error(Diagnostic {
                summary: format!("the simulated EKS API at {base} did not take {state}: {e}")
                    .into(),
                detail: format!("check {SIM_KUBE_URL} names a running kube-sim").into(),
                attribute: AttributePath::root(),
            });
            None
        }
    }
}

/// `PUT`s `{"version": ...}` to `path` on the simulated cluster (no-op without
/// [`SIM_KUBE_URL`]); a node group's update waits there until its nodes are replaced, as
/// EKS's `UpdateNodegroupVersion` does.
async fn tell_sim(diags: &mut Diagnostics, path: &str, version: &str, what: &str) -> Option<()> {
    let Ok(base) = std::env::var(SIM_KUBE_URL) else {
        return Some(());
    };
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let result = async {
        let response = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(600))
            .build()?
            .put(&url)
            .json(&serde_json::json!({ "version": version }))
            .send()
            .await?;
        response.error_for_status().map(|_| ())
    }
    .await;
    match result {
        Ok(()) => Some(()),
        Err(e) => {
            diags.add_error(Diagnostic {
                summary: format!(
                    "the simulated {what} at {base} did not take version {version}: {e}"
                )
                .into(),
                detail: format!("check {SIM_KUBE_URL} names a running kube-sim").into(),
                attribute: AttributePath::root(),
            });
            None
        }
    }
}

/// The provider: a `region` setting and the three EKS resources.
#[derive(Debug, Default, Clone)]
struct SimAws;

#[async_trait]
impl Provider for SimAws {
    type Config<'a> = ValueAny;
    type MetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        Some(Schema {
            version: 1,
            block: block(
                vec![(
                    "region",
                    attr(
                        AttributeType::String,
                        AttributeConstraint::Optional,
                        "Ignored by the simulation.",
                    ),
                )],
                vec![],
            ),
        })
    }

    async fn validate<'a>(
        &self,
        _diags: &mut Diagnostics,
        _config: Self::Config<'a>,
    ) -> Option<()> {
        Some(())
    }

    async fn configure<'a>(
        &self,
        _diags: &mut Diagnostics,
        _terraform_version: String,
        _config: Self::Config<'a>,
    ) -> Option<()> {
        Some(())
    }

    fn get_resources(
        &self,
        _diags: &mut Diagnostics,
    ) -> Option<HashMap<String, Box<dyn DynamicResource>>> {
        // tf-provider prefixes each name with the provider name: `aws_` + `eks_cluster`.
        let mut resources: HashMap<String, Box<dyn DynamicResource>> = HashMap::new();
        resources.insert("eks_cluster".into(), Box::new(SimResource(Kind::Cluster)));
        resources.insert(
            "eks_node_group".into(),
            Box::new(SimResource(Kind::NodeGroup)),
        );
        resources.insert("eks_addon".into(), Box::new(SimResource(Kind::Addon)));
        Some(resources)
    }

    fn get_data_sources(
        &self,
        _diags: &mut Diagnostics,
    ) -> Option<HashMap<String, Box<dyn DynamicDataSource>>> {
        Some(HashMap::new())
    }
}

const USAGE: &str =
    "terraform-provider-aws-sim: a simulated AWS provider (EKS cluster, node group \
and add-on) for the toolkit's tests.

Terraform starts it (installed from a filesystem mirror as registry.terraform.io/hashicorp/aws);
it takes no arguments. Options: --help, --version.
";

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    // Terraform starts plugins without arguments; anything given is a person asking.
    match std::env::args().nth(1).as_deref() {
        None => serve("aws", SimAws).await,
        Some("--help" | "-h") => {
            print!("{USAGE}");
            Ok(())
        }
        Some("--version" | "-V") => {
            println!("terraform-provider-aws-sim {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Some(other) => {
            eprint!("error: unexpected argument `{other}`\n\n{USAGE}");
            std::process::exit(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eks_version_updates_go_one_minor_at_a_time() {
        assert!(eks_allows_version_update("1.29", "1.30"));
        assert!(eks_allows_version_update("1.30", "1.30"));
        assert!(!eks_allows_version_update("1.29", "1.31"));
        // One back is EKS's version rollback: the (simulated) EKS API decides (its window).
        assert!(eks_allows_version_update("1.30", "1.29"));
        assert!(!eks_allows_version_update("1.30", "1.28"));
        assert!(!eks_allows_version_update("1.30", "2.0"));
        assert!(!eks_allows_version_update("latest", "1.30"));
    }

    #[test]
    fn force_new_paths_and_their_steps_line_up() {
        for kind in [Kind::Cluster, Kind::NodeGroup, Kind::Addon] {
            assert_eq!(
                SimResource(kind).force_new().len(),
                force_new_steps(kind).len(),
                "{kind:?}"
            );
        }
    }
}

//! Plan JSON (`terraform show -json PLANFILE`), format 1.x, decoded fail-soft.
//!
//! Unknown fields are ignored, every optional part defaults, an action list this crate
//! does not know is kept as [`Action::Unknown`] (and reviewed as dangerous), and only a
//! format *major* other than 1 is refused.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

/// Why plan JSON could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PlanParseError {
    /// Not JSON, or not shaped like a plan.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A `format_version` whose major is not 1.
    #[error("unsupported plan format_version {0}")]
    Format(String),
}

/// A plan, as `show -json` prints it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// `major.minor`, e.g. `1.2`.
    pub format_version: String,
    /// The Terraform that made the plan.
    #[serde(default)]
    pub terraform_version: Option<String>,
    /// Input variables **in clear text**, sensitive ones included.
    #[serde(default)]
    pub variables: BTreeMap<String, PlanVariable>,
    /// Planned changes to managed resources and data reads.
    #[serde(default)]
    pub resource_changes: Vec<ResourceChange>,
    /// Changes made outside Terraform that refresh detected.
    #[serde(default)]
    pub resource_drift: Vec<ResourceChange>,
    /// Changes to root module outputs.
    #[serde(default)]
    pub output_changes: BTreeMap<String, Change>,
    /// Whether applying this plan would do anything (Terraform 1.8+).
    #[serde(default)]
    pub applyable: Option<bool>,
    /// Whether the plan is complete (`false` with `-target` or deferred changes; 1.8+).
    #[serde(default)]
    pub complete: Option<bool>,
    /// Whether planning hit errors (1.8+).
    #[serde(default)]
    pub errored: Option<bool>,
    /// When the plan was made (RFC 3339).
    #[serde(default)]
    pub timestamp: Option<String>,
}

/// One input variable's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanVariable {
    /// Its value (clear text).
    #[serde(default)]
    pub value: Value,
}

impl Plan {
    /// Decodes plan JSON, refusing a format major other than 1.
    pub fn from_slice(bytes: &[u8]) -> Result<Plan, PlanParseError> {
        match serde_json::from_slice::<Plan>(bytes) {
            Ok(plan) if plan.format_version.split('.').next() == Some("1") => Ok(plan),
            Ok(plan) => Err(PlanParseError::Format(plan.format_version)),
            Err(e) => {
                // A future major may not decode at all: report its format, not the shape.
                #[derive(Deserialize)]
                struct Head {
                    format_version: String,
                }
                match serde_json::from_slice::<Head>(bytes) {
                    Ok(head) if head.format_version.split('.').next() != Some("1") => {
                        Err(PlanParseError::Format(head.format_version))
                    }
                    _ => Err(e.into()),
                }
            }
        }
    }
}

/// Whether a change is to a managed resource or a data source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A managed resource.
    Managed,
    /// A data source.
    Data,
    /// A mode this crate does not know.
    #[serde(other)]
    Other,
}

/// An instance key: `count` index or `for_each` key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InstanceKey {
    /// `count.index`.
    Index(u64),
    /// `each.key`.
    Key(String),
}

/// One resource instance's planned change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResourceChange {
    /// Full address, e.g. `module.eks.aws_eks_cluster.this`.
    pub address: String,
    /// The address before a `moved` block, if any.
    #[serde(default)]
    pub previous_address: Option<String>,
    /// The module, if not the root.
    #[serde(default)]
    pub module_address: Option<String>,
    /// Managed or data.
    pub mode: Mode,
    /// The resource type, e.g. `aws_eks_cluster`.
    #[serde(rename = "type")]
    pub resource_type: String,
    /// The resource name.
    pub name: String,
    /// The instance key, for `count`/`for_each` instances.
    #[serde(default)]
    pub index: Option<InstanceKey>,
    /// The provider's address.
    #[serde(default)]
    pub provider_name: Option<String>,
    /// Set for a deposed object.
    #[serde(default)]
    pub deposed: Option<String>,
    /// The change itself.
    pub change: Change,
    /// Why, e.g. `replace_because_cannot_update` (display hint; unknown values allowed).
    #[serde(default)]
    pub action_reason: Option<String>,
}

/// Before, after, and the actions between them.
///
/// Values are kept as their raw JSON text ([`RawValue`]): byte-faithful (numbers beyond
/// 2^53 stay exact) and far lighter than a tree; decode one with [`Change::value`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Change {
    /// What Terraform will do.
    pub actions: Action,
    /// The value before (`None` for a create).
    #[serde(default)]
    pub before: Option<Box<RawValue>>,
    /// The value after (`None` for a delete).
    #[serde(default)]
    pub after: Option<Box<RawValue>>,
    /// A mirror of `after` marking values known only after apply.
    #[serde(default)]
    pub after_unknown: Option<Box<RawValue>>,
    /// A mirror of `before` marking sensitive values.
    #[serde(default)]
    pub before_sensitive: Option<Box<RawValue>>,
    /// A mirror of `after` marking sensitive values.
    #[serde(default)]
    pub after_sensitive: Option<Box<RawValue>>,
    /// The attribute paths that forced a replacement.
    #[serde(default)]
    pub replace_paths: Vec<Vec<PathStep>>,
    /// Set when the change imports an existing object.
    #[serde(default)]
    pub importing: Option<Box<RawValue>>,
}

impl Change {
    /// Decodes one of the raw values (`Value::Null` when absent or undecodable).
    pub fn value(raw: &Option<Box<RawValue>>) -> Value {
        raw.as_ref()
            .and_then(|r| serde_json::from_str(r.get()).ok())
            .unwrap_or(Value::Null)
    }
}

/// One step of an attribute path: an attribute or map key, or a list index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PathStep {
    /// A list index.
    Index(u64),
    /// An attribute name or map key.
    Key(String),
}

/// Renders a path like `vpc_config[0].subnet_ids`.
pub fn render_path(path: &[PathStep]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            PathStep::Index(i) => out.push_str(&format!("[{i}]")),
            PathStep::Key(k) if out.is_empty() => out.push_str(k),
            PathStep::Key(k) if k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                out.push('.');
                out.push_str(k);
            }
            PathStep::Key(k) => out.push_str(&format!("[{k:?}]")),
        }
    }
    out
}

/// The order of a replacement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplaceOrder {
    /// `["delete", "create"]`: the default; the object is gone for a while.
    DeleteThenCreate,
    /// `["create", "delete"]`: `create_before_destroy`.
    CreateThenDelete,
    /// `["create", "forget"]`: a new object; the old one leaves the state but is not destroyed.
    CreateThenForget,
}

/// A change's action list, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `["no-op"]`.
    NoOp,
    /// `["create"]`.
    Create,
    /// `["read"]`.
    Read,
    /// `["update"]`.
    Update,
    /// `["delete"]`.
    Delete,
    /// `["forget"]`: removed from state, not destroyed.
    Forget,
    /// One of the replacement orders.
    Replace(ReplaceOrder),
    /// An action list this crate does not know (reviewed as dangerous).
    Unknown(Vec<String>),
}

impl Action {
    /// The action list as Terraform writes it.
    pub fn as_strings(&self) -> Vec<String> {
        let list: &[&str] = match self {
            Action::NoOp => &["no-op"],
            Action::Create => &["create"],
            Action::Read => &["read"],
            Action::Update => &["update"],
            Action::Delete => &["delete"],
            Action::Forget => &["forget"],
            Action::Replace(ReplaceOrder::DeleteThenCreate) => &["delete", "create"],
            Action::Replace(ReplaceOrder::CreateThenDelete) => &["create", "delete"],
            Action::Replace(ReplaceOrder::CreateThenForget) => &["create", "forget"],
            Action::Unknown(list) => return list.clone(),
        };
        list.iter().map(|s| s.to_string()).collect()
    }

    /// Whether an existing object gets destroyed (any list containing `delete`).
    pub fn destroys(&self) -> bool {
        match self {
            Action::Delete
            | Action::Replace(ReplaceOrder::DeleteThenCreate | ReplaceOrder::CreateThenDelete) => {
                true
            }
            Action::Unknown(list) => list.iter().any(|a| a == "delete"),
            _ => false,
        }
    }
}

impl From<Vec<String>> for Action {
    fn from(list: Vec<String>) -> Self {
        let strs: Vec<&str> = list.iter().map(String::as_str).collect();
        match strs.as_slice() {
            ["no-op"] => Action::NoOp,
            ["create"] => Action::Create,
            ["read"] => Action::Read,
            ["update"] => Action::Update,
            ["delete"] => Action::Delete,
            ["forget"] => Action::Forget,
            ["delete", "create"] => Action::Replace(ReplaceOrder::DeleteThenCreate),
            ["create", "delete"] => Action::Replace(ReplaceOrder::CreateThenDelete),
            ["create", "forget"] => Action::Replace(ReplaceOrder::CreateThenForget),
            _ => Action::Unknown(list),
        }
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Vec::<String>::deserialize(d)?.into())
    }
}

impl Serialize for Action {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.as_strings().serialize(s)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_strings().join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_with(changes: &str) -> String {
        format!(
            r#"{{"format_version":"1.2","terraform_version":"1.15.5","some_future_field":{{"x":1}},
               "resource_changes":[{changes}],"applyable":true,"complete":true,"errored":false}}"#
        )
    }

    fn change(address: &str, actions: &str) -> String {
        format!(
            r#"{{"address":"{address}","mode":"managed","type":"aws_eks_cluster","name":"this",
                "provider_name":"registry.terraform.io/hashicorp/aws",
                "change":{{"actions":{actions},"before":null,"after":{{"version":"1.31"}},
                "replace_paths":[["vpc_config",0,"subnet_ids"]]}}}}"#
        )
    }

    #[test]
    fn every_action_kind_parses() {
        let cases = [
            (r#"["no-op"]"#, Action::NoOp),
            (r#"["create"]"#, Action::Create),
            (r#"["read"]"#, Action::Read),
            (r#"["update"]"#, Action::Update),
            (r#"["delete"]"#, Action::Delete),
            (r#"["forget"]"#, Action::Forget),
            (
                r#"["delete","create"]"#,
                Action::Replace(ReplaceOrder::DeleteThenCreate),
            ),
            (
                r#"["create","delete"]"#,
                Action::Replace(ReplaceOrder::CreateThenDelete),
            ),
            (
                r#"["create","forget"]"#,
                Action::Replace(ReplaceOrder::CreateThenForget),
            ),
            (r#"["teleport"]"#, Action::Unknown(vec!["teleport".into()])),
        ];
        let body: Vec<String> = cases
            .iter()
            .enumerate()
            .map(|(i, (actions, _))| change(&format!("aws_eks_cluster.c{i}"), actions))
            .collect();
        let plan = Plan::from_slice(plan_with(&body.join(",")).as_bytes()).unwrap();
        for (rc, (_, expected)) in plan.resource_changes.iter().zip(cases.iter()) {
            assert_eq!(&rc.change.actions, expected, "{}", rc.address);
        }
        assert_eq!(
            plan.resource_changes[0].change.replace_paths,
            vec![vec![
                PathStep::Key("vpc_config".into()),
                PathStep::Index(0),
                PathStep::Key("subnet_ids".into())
            ]]
        );
        assert_eq!(
            render_path(&plan.resource_changes[0].change.replace_paths[0]),
            "vpc_config[0].subnet_ids"
        );
        assert_eq!(plan.applyable, Some(true));
        assert_eq!(plan.complete, Some(true));
        assert_eq!(plan.errored, Some(false));
    }

    #[test]
    fn minimal_and_future_minor_formats_parse_and_other_majors_are_refused() {
        let plan = Plan::from_slice(br#"{"format_version":"1.9"}"#).unwrap();
        assert!(plan.resource_changes.is_empty());
        assert_eq!(plan.applyable, None);
        match Plan::from_slice(br#"{"format_version":"2.0","resource_changes":"new shape"}"#) {
            Err(PlanParseError::Format(v)) => assert_eq!(v, "2.0"),
            other => panic!("expected a format error, got {other:?}"),
        }
        assert!(matches!(
            Plan::from_slice(b"not json"),
            Err(PlanParseError::Json(_))
        ));
    }

    #[test]
    fn instance_keys_are_ints_or_strings() {
        let text = plan_with(
            r#"{"address":"a.b[0]","mode":"managed","type":"a","name":"b","index":0,"change":{"actions":["create"]}},
               {"address":"a.b[\"x\"]","mode":"data","type":"a","name":"b","index":"x","change":{"actions":["read"]}}"#,
        );
        let plan = Plan::from_slice(text.as_bytes()).unwrap();
        assert_eq!(plan.resource_changes[0].index, Some(InstanceKey::Index(0)));
        assert_eq!(
            plan.resource_changes[1].index,
            Some(InstanceKey::Key("x".into()))
        );
        assert_eq!(plan.resource_changes[1].mode, Mode::Data);
    }
}

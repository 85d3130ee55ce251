//! Seed 001's IRSA step (`irsa_trust.py`).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use upgrade_core::executor::{Step, StepFuture, StepRecord, StepSpec};
use upgrade_core::snapshot::{Snapshot, SnapshotWriter};

use crate::context::FlowContext;
use crate::error::{FlowError, Result};
use crate::report::Plan;
use crate::run::Planned;

use super::AwsSettings;

/// The flow name of the IRSA step in run records.
pub const IRSA_FLOW: &str = "bluegreen-irsa";
/// Seed 001's IRSA step (`irsa_trust.py`): the green cluster's OIDC provider added to the
/// trust policy of each profile role, beside blue's (kept until retire).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IrsaSpec {
    /// The roles the profiles' service accounts assume.
    pub roles: Vec<String>,
    /// The green cluster's IAM OIDC provider,
    /// `arn:aws:iam::<account>:oidc-provider/oidc.eks.<region>.amazonaws.com/id/<ID>`.
    pub green_oidc_provider_arn: String,
    /// How to reach IAM.
    #[serde(default)]
    pub aws: AwsSettings,
}

/// What [`IrsaTrustStep`] changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IrsaTrustSpec {
    /// Step id.
    pub id: String,
    /// The roles.
    pub roles: Vec<String>,
    /// The green OIDC provider's ARN.
    pub green_oidc_provider_arn: String,
    /// How to reach IAM.
    pub aws: AwsSettings,
}

impl StepSpec for IrsaTrustSpec {
    const KIND: &'static str = "bluegreen-irsa-trust";
}

/// Adds the green provider to each role's trust policy; the rollback puts each policy back.
pub struct IrsaTrustStep {
    spec: IrsaTrustSpec,
}

impl IrsaTrustStep {
    /// The step of `spec`.
    pub fn new(spec: IrsaTrustSpec) -> IrsaTrustStep {
        IrsaTrustStep { spec }
    }
}

/// `oidc.eks.<region>.amazonaws.com/id/<ID>` from the provider's ARN.
fn issuer_of(arn: &str) -> Option<&str> {
    arn.split_once(":oidc-provider/")
        .map(|(_, issuer)| issuer)
        .filter(|i| !i.is_empty() && arn.starts_with("arn:aws"))
}

fn federated(statement: &Value) -> Option<&str> {
    statement["Principal"]["Federated"].as_str()
}

/// `document` with a copy of its first web-identity statement for `green_arn` (the
/// conditions' issuer keys moved to green's issuer); `None` when green is there already.
fn with_green(document: &Value, green_arn: &str) -> std::result::Result<Option<Value>, String> {
    let statements = document["Statement"]
        .as_array()
        .ok_or("the trust policy has no Statement list")?;
    if statements.iter().any(|s| federated(s) == Some(green_arn)) {
        return Ok(None);
    }
    let blue = statements
        .iter()
        .find(|s| federated(s).is_some_and(|f| f.contains(":oidc-provider/")))
        .ok_or("the trust policy trusts no OIDC provider, so it is not an IRSA role")?;
    let blue_issuer = issuer_of(federated(blue).unwrap_or_default()).unwrap_or_default();
    let green_issuer = issuer_of(green_arn).ok_or("not an OIDC provider ARN")?;
    let text = blue
        .to_string()
        .replace(federated(blue).unwrap_or_default(), green_arn)
        .replace(blue_issuer, green_issuer);
    let mut green: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    if let Some(sid) = green.get_mut("Sid") {
        *sid = json!("GreenClusterIrsa");
    }
    let mut document = document.clone();
    document["Statement"]
        .as_array_mut()
        .expect("checked above")
        .push(green);
    Ok(Some(document))
}

const TRUST_FILE: &str = "trust-policies.json";

impl Step for IrsaTrustStep {
    fn id(&self) -> &str {
        &self.spec.id
    }

    fn component(&self) -> &str {
        "bluegreen"
    }

    fn record(&self) -> StepRecord {
        StepRecord::of(&self.spec)
    }

    fn description(&self) -> String {
        format!(
            "trust {} in the trust policy of {} (beside blue's provider)",
            self.spec.green_oidc_provider_arn,
            self.spec.roles.join(", ")
        )
    }

    fn capture<'a>(&'a self, snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(async move {
            let iam = self.spec.aws.iam()?;
            let mut before = serde_json::Map::new();
            for role in &self.spec.roles {
                before.insert(role.clone(), iam.trust_policy(role).await?);
            }
            snapshot.put_json(TRUST_FILE, &before)?;
            Ok(())
        })
    }

    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let iam = self.spec.aws.iam()?;
            for role in &self.spec.roles {
                let now = iam.trust_policy(role).await?;
                if let Some(document) = with_green(&now, &self.spec.green_oidc_provider_arn)
                    .map_err(|e| format!("role {role}: {e}"))?
                {
                    iam.set_trust_policy(role, &document).await?;
                }
            }
            Ok(())
        })
    }

    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let iam = self.spec.aws.iam()?;
            for role in &self.spec.roles {
                let now = iam.trust_policy(role).await?;
                if with_green(&now, &self.spec.green_oidc_provider_arn)?.is_some() {
                    return Err(format!("role {role} does not trust the green provider").into());
                }
            }
            Ok(())
        })
    }

    fn rollback<'a>(&'a self, snapshot: &'a Snapshot) -> StepFuture<'a> {
        Box::pin(async move {
            let before: serde_json::Map<String, Value> = snapshot.get_json(TRUST_FILE)?;
            let iam = self.spec.aws.iam()?;
            for (role, document) in &before {
                iam.set_trust_policy(role, document).await?;
            }
            Ok(())
        })
    }
}

/// Plans the IRSA step: the ARN checked, each role's trust policy read (a role that is not an
/// IRSA role blocks), the roles that already trust green named.
pub async fn plan_irsa(ctx: &FlowContext, spec: &IrsaSpec) -> Result<Planned> {
    if spec.roles.is_empty() {
        return Err(FlowError::invalid(
            "roles",
            "no role given",
            "name each profile role (--role)",
        ));
    }
    if issuer_of(&spec.green_oidc_provider_arn).is_none() {
        return Err(FlowError::invalid(
            "green_oidc_provider_arn",
            format!(
                "`{}` is not an IAM OIDC provider ARN",
                spec.green_oidc_provider_arn
            ),
            "give arn:aws:iam::<account>:oidc-provider/oidc.eks.<region>.amazonaws.com/id/<ID> (aws iam list-open-id-connect-providers)",
        ));
    }
    let iam = spec.aws.iam().map_err(super::aws_unavailable)?;
    let (mut changes, mut blockers) = (Vec::new(), Vec::new());
    for role in &spec.roles {
        let document = iam.trust_policy(role).await.map_err(|e| {
            if e.aws_code() == Some("NoSuchEntity") {
                FlowError::invalid(
                    "roles",
                    format!("role {role} does not exist"),
                    "check the name",
                )
            } else {
                FlowError::failed(format!("read the trust policy of {role}"), e)
            }
        })?;
        match with_green(&document, &spec.green_oidc_provider_arn) {
            Ok(Some(_)) => changes.push(format!(
                "role {role}: trust {} beside blue's provider",
                spec.green_oidc_provider_arn
            )),
            Ok(None) => changes.push(format!("role {role}: trusts green already")),
            Err(why) => blockers.push(format!("role {role}: {why}")),
        }
    }
    let step = IrsaTrustStep::new(IrsaTrustSpec {
        id: "bluegreen/irsa-trust".into(),
        roles: spec.roles.clone(),
        green_oidc_provider_arn: spec.green_oidc_provider_arn.clone(),
        aws: spec.aws.clone(),
    });
    let refs: [&dyn Step; 1] = [&step];
    let mut plan = Plan::new(
        "upgrade-bluegreen",
        ctx.cluster_name(),
        ctx.new_run_id("bluegreen-irsa")?,
        &refs,
    );
    plan.changes = changes;
    plan.blockers = blockers;
    plan.findings = vec!["blue's provider stays trusted until retire; the rollback puts each trust policy back as it was".into()];
    Ok(Planned::new(IRSA_FLOW, spec, plan, vec![Box::new(step)]))
}

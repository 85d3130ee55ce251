//! The ALB half of seed 001's switch: the listener rule that redirects users to the active
//! cluster is pointed at green's host ("we cannot use a simple Route 53 alias record as the
//! Cognito redirection URLs have to match the URL in the browser"); its rollback points it
//! back at blue.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use upgrade_core::executor::{Step, StepFuture, StepRecord, StepSpec};
use upgrade_core::snapshot::{Snapshot, SnapshotWriter};

use super::AwsSettings;
use crate::error::{FlowError, Result};

/// What [`AlbRuleStep`] changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlbRuleSpec {
    /// Step id.
    pub id: String,
    /// The listener rule.
    pub rule_arn: String,
    /// Its actions with every redirect's host set to green's.
    pub green_actions: Value,
    /// How to reach ELBv2.
    pub aws: AwsSettings,
}

impl StepSpec for AlbRuleSpec {
    const KIND: &'static str = "bluegreen-switch-alb";
}

/// Points the rule's redirects at green; the rollback puts blue's actions back.
pub struct AlbRuleStep {
    spec: AlbRuleSpec,
}

impl AlbRuleStep {
    /// The step of `spec`.
    pub fn new(spec: AlbRuleSpec) -> AlbRuleStep {
        AlbRuleStep { spec }
    }
}

const ACTIONS_FILE: &str = "alb-rule-actions-before.json";

fn redirect_hosts(actions: &Value) -> Vec<String> {
    actions
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["Type"] == "redirect")
        .map(|a| {
            a["RedirectConfig"]["Host"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// `actions` with every redirect's host set to `host`.
fn redirected_to(actions: &Value, host: &str) -> Value {
    let mut out = actions.clone();
    for action in out.as_array_mut().into_iter().flatten() {
        if action["Type"] == "redirect" {
            action["RedirectConfig"]["Host"] = Value::String(host.into());
        }
    }
    out
}

impl Step for AlbRuleStep {
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
            "redirect ALB listener rule {} to green ({})",
            self.spec.rule_arn,
            redirect_hosts(&self.spec.green_actions).join(", ")
        )
    }

    fn capture<'a>(&'a self, snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(async move {
            let rule = self.spec.aws.elbv2()?.rule(&self.spec.rule_arn).await?;
            snapshot.put_json(ACTIONS_FILE, &rule["Actions"])?;
            Ok(())
        })
    }

    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async move {
            self.spec
                .aws
                .elbv2()?
                .set_rule_actions(&self.spec.rule_arn, &self.spec.green_actions)
                .await?;
            Ok(())
        })
    }

    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let rule = self.spec.aws.elbv2()?.rule(&self.spec.rule_arn).await?;
            let now = redirect_hosts(&rule["Actions"]);
            if now != redirect_hosts(&self.spec.green_actions) {
                return Err(format!("rule {} redirects to {now:?}", self.spec.rule_arn).into());
            }
            Ok(())
        })
    }

    fn rollback<'a>(&'a self, snapshot: &'a Snapshot) -> StepFuture<'a> {
        Box::pin(async move {
            let before: Value = snapshot.get_json(ACTIONS_FILE)?;
            self.spec
                .aws
                .elbv2()?
                .set_rule_actions(&self.spec.rule_arn, &before)
                .await?;
            Ok(())
        })
    }
}

/// Plans the rule's move: it must redirect, and not to green already. Returns the step and
/// the plan's change line.
pub(crate) async fn plan_rule(
    rule_arn: &str,
    green_host: &str,
    aws: &AwsSettings,
    resuming: bool,
) -> Result<(AlbRuleStep, String)> {
    let elbv2 = aws.elbv2().map_err(super::aws_unavailable)?;
    let rule = elbv2.rule(rule_arn).await.map_err(|e| {
        if e.aws_code() == Some("RuleNotFound") {
            FlowError::invalid(
                "listener_rule_arn",
                format!("there is no listener rule {rule_arn}"),
                "give the redirect rule's ARN (aws elbv2 describe-rules --listener-arn ...)",
            )
        } else {
            FlowError::failed(format!("read listener rule {rule_arn}"), e)
        }
    })?;
    let blue_hosts = redirect_hosts(&rule["Actions"]);
    if blue_hosts.is_empty() {
        return Err(FlowError::invalid(
            "listener_rule_arn",
            format!("listener rule {rule_arn} has no redirect action"),
            "give the rule that redirects users to the active cluster's host",
        ));
    }
    // A resumed switch re-plans after its own change: the rule redirects to green then.
    if blue_hosts.iter().all(|h| h == green_host) && !resuming {
        return Err(FlowError::invalid(
            "green_host",
            format!("listener rule {rule_arn} redirects to {green_host} already"),
            "nothing to switch; fail back with `upgrade-bluegreen failback`",
        ));
    }
    let change = format!(
        "ALB listener rule {rule_arn}: redirect {} (blue) -> {green_host} (green)",
        blue_hosts.join(", ")
    );
    let step = AlbRuleStep::new(AlbRuleSpec {
        id: "bluegreen/switch-alb".into(),
        rule_arn: rule_arn.into(),
        green_actions: redirected_to(&rule["Actions"], green_host),
        aws: aws.clone(),
    });
    Ok((step, change))
}

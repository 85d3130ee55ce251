//! EKS Upgrade Insights for a hop, read through the AWS CLI (`ListInsights`,
//! `DescribeInsight`): an `ERROR` insight for the target blocks the hop (EKS itself refuses
//! `UpdateClusterVersion` with `InvalidStateException` until it passes, unless forced), a
//! `WARNING` or `UNKNOWN` one is a warning; each line carries the insight's recommendation and,
//! for deprecated APIs, who still calls them. Insights older than a day are refreshed first
//! (`StartInsightsRefresh`).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use upgrade_aws::{Eks, Insight, InsightFilter};
use upgrade_core::version::KubeMinor;

use crate::context::FlowContext;

/// How the hop reaches EKS's own API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EksApi {
    /// The EKS cluster name (default: the one the kubeconfig names, from its ARN or its
    /// `aws eks get-token --cluster-name`).
    #[serde(default)]
    pub cluster_name: Option<String>,
    /// The region (default: the kubeconfig ARN's, else the CLI's configuration).
    #[serde(default)]
    pub region: Option<String>,
    /// The CLI profile (default: the CLI's configuration).
    #[serde(default)]
    pub profile: Option<String>,
    /// Another EKS endpoint (a VPC endpoint, or a simulation in tests).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Skip the insights (they are then named as not read in the plan).
    #[serde(default)]
    pub skip_insights: bool,
}

/// What the insights say about a hop.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InsightReport {
    /// Lines for the plan's changes (what was read, or why nothing was).
    pub notes: Vec<String>,
    /// `ERROR` insights (blockers unless forced).
    pub errors: Vec<String>,
    /// `WARNING` and `UNKNOWN` insights, and a read that failed.
    pub warnings: Vec<String>,
}

/// How old an insight may be before the hop asks EKS to refresh it (EKS refreshes daily).
const STALE_AFTER_SECS: i64 = 24 * 3600;

impl EksApi {
    /// The settings with the cluster name and region filled in from the kubeconfig (its ARN,
    /// or `aws eks get-token --cluster-name`), as a run records them: a rollback days later
    /// has no kubeconfig to fill them in from.
    pub fn resolved(&self, ctx: &FlowContext) -> EksApi {
        let identity = ctx.cluster().identity();
        let mut resolved = self.clone();
        if resolved.cluster_name.is_none() {
            resolved.cluster_name = identity.eks_cluster_name.clone();
        }
        if resolved.region.is_none() {
            resolved.region = identity
                .kubeconfig_cluster
                .strip_prefix("arn:aws:eks:")
                .and_then(|rest| rest.split(':').next())
                .filter(|r| !r.is_empty())
                .map(str::to_string);
        }
        resolved
    }

    /// A CLI builder for cluster `name` with these settings.
    pub(crate) fn builder(&self, name: String) -> upgrade_aws::EksBuilder {
        Eks::builder(name).settings(
            self.region.as_deref(),
            self.profile.as_deref(),
            self.endpoint_url.as_deref(),
        )
    }

    /// The EKS handle for the context's cluster, or why there is none.
    pub fn handle(&self, ctx: &FlowContext) -> Result<Eks, String> {
        let resolved = self.resolved(ctx);
        let name = resolved.cluster_name.clone().ok_or_else(|| {
            "the EKS cluster name is unknown (the kubeconfig names no EKS cluster); give it with --eks-cluster".to_string()
        })?;
        resolved
            .builder(name)
            .stop_signal(ctx.stop_signal().clone())
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| e.to_string())
    }

    /// The handle from the settings alone, as a run recorded them.
    pub(crate) fn recorded_handle(&self) -> Result<Eks, String> {
        let name = self.cluster_name.clone().ok_or_else(|| {
            "the run did not record the EKS cluster name, so EKS's API cannot be called".to_string()
        })?;
        self.builder(name).build().map_err(|e| e.to_string())
    }
}

/// Reads the upgrade-readiness insights for a hop to `target`.
pub async fn for_hop(ctx: &FlowContext, api: &EksApi, target: KubeMinor) -> InsightReport {
    let mut report = InsightReport::default();
    if api.skip_insights {
        report
            .notes
            .push("EKS Upgrade Insights: not read (skipped on request)".into());
        return report;
    }
    let eks = match api.handle(ctx) {
        Ok(eks) => eks,
        Err(why) => {
            report
                .notes
                .push(format!("EKS Upgrade Insights: not read: {why}"));
            return report;
        }
    };
    let filter = InsightFilter::for_version(&target.to_string());
    let listed = match read(&eks, &filter).await {
        Ok(listed) => listed,
        Err(e) => {
            report.warnings.push(format!(
                "EKS Upgrade Insights for {target} could not be read ({e}); check the AWS credentials and region, or skip them knowingly with --skip-insights"
            ));
            return report;
        }
    };
    let passing = listed.iter().filter(|i| i.status() == "PASSING").count();
    report.notes.push(format!(
        "EKS Upgrade Insights for {target} on {}: {} read, {passing} passing",
        eks.cluster(),
        listed.len()
    ));
    for summary in listed.iter().filter(|i| i.status() != "PASSING") {
        // The summary lacks the recommendation and the client statistics.
        let insight = eks
            .describe_insight(&summary.id)
            .await
            .unwrap_or_else(|_| summary.clone());
        let line = describe(&insight, target);
        match insight.status() {
            "ERROR" => report.errors.push(line),
            _ => report.warnings.push(line),
        }
    }
    report
}

/// Lists the insights, refreshing them first when any is older than a day.
async fn read(eks: &Eks, filter: &InsightFilter) -> upgrade_aws::Result<Vec<Insight>> {
    let listed = eks.list_insights(filter).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let stale = listed.iter().any(|i| {
        i.last_refresh_time
            .as_ref()
            .and_then(epoch_seconds)
            .is_none_or(|at| now - at > STALE_AFTER_SECS)
    });
    if !stale {
        return Ok(listed);
    }
    eks.start_insights_refresh().await?;
    for _ in 0..60 {
        let refresh = eks.describe_insights_refresh().await?;
        if refresh.status != "IN_PROGRESS" {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    eks.list_insights(filter).await
}

/// The CLI prints timestamps as epoch seconds (a number) or ISO-8601 text.
fn epoch_seconds(value: &serde_json::Value) -> Option<i64> {
    match value {
        serde_json::Value::Number(n) => n.as_f64().map(|f| f as i64),
        serde_json::Value::String(s) => s
            .parse::<jiff::Timestamp>()
            .ok()
            .map(|t| t.as_second())
            .or_else(|| s.parse::<f64>().ok().map(|f| f as i64)),
        _ => None,
    }
}

/// One insight on one line: name, status, reason, what to do, and who calls deprecated APIs.
fn describe(insight: &Insight, target: KubeMinor) -> String {
    let mut line = format!(
        "EKS insight \"{}\" ({}) is {} for {target}",
        insight.name,
        insight.id,
        insight.status()
    );
    if let Some(reason) = insight
        .insight_status
        .reason
        .as_deref()
        .filter(|r| !r.is_empty())
    {
        line.push_str(&format!(": {reason}"));
    }
    if let Some(what) = insight.recommendation.as_deref().filter(|r| !r.is_empty()) {
        line.push_str(&format!("; {what}"));
    }
    let details = insight
        .category_specific_summary
        .as_ref()
        .map(|s| s.deprecation_details.as_slice())
        .unwrap_or_default();
    for detail in details {
        let clients: Vec<String> = detail
            .client_stats
            .iter()
            .map(|c| {
                format!(
                    "{} ({} request(s) in 30 days)",
                    c.user_agent, c.number_of_requests_last30_days
                )
            })
            .collect();
        let replacement = detail
            .replaced_with
            .as_deref()
            .map(|r| format!(" -> {r}"))
            .unwrap_or_default();
        let stops = detail
            .stop_serving_version
            .as_deref()
            .map(|v| format!(", not served from {v}"))
            .unwrap_or_default();
        line.push_str(&format!("; {}{replacement}{stops}", detail.usage));
        if !clients.is_empty() {
            line.push_str(&format!(", still called by {}", clients.join(", ")));
        }
    }
    line
}

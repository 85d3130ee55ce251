//! `upgrade-bluegreen switch`.

use upgrade_flows::flows::bluegreen::{self, SwitchSpec};

use super::ServicesArgs;

/// `switch`'s flags: the ALB listener rule, the DNS record, or both.
#[derive(Debug, clap::Args)]
pub struct SwitchArgs {
    /// The ALB listener rule that redirects users to the active cluster.
    #[arg(long, value_name = "ARN", requires = "green_host")]
    pub listener_rule_arn: Option<String>,
    /// Green's host for the rule's redirect.
    #[arg(long, value_name = "HOST", requires = "listener_rule_arn")]
    pub green_host: Option<String>,
    /// The Route 53 hosted zone id of the record.
    #[arg(long, value_name = "ID")]
    pub zone_id: Option<String>,
    /// The record to move (the platform's, or a model-serving CNAME).
    #[arg(long, value_name = "NAME", requires = "zone_id")]
    pub record: Option<String>,
    /// Its type.
    #[arg(long, value_name = "TYPE", default_value = "CNAME")]
    pub record_type: String,
    /// The record's green value (green's load balancer or ingress DNS name).
    #[arg(long, value_name = "DNS_NAME", requires = "zone_id")]
    pub green_target: Option<String>,
    /// A model-serving CNAME in the same zone moved to green's ingress with the platform's
    /// record: NAME=GREEN_DNS_NAME. Repeat.
    #[arg(long, value_name = "NAME=DNS_NAME", requires = "zone_id", value_parser = serving_record)]
    pub serving_record: Vec<bluegreen::ServingRecord>,
    /// The maintenance window, START/END in RFC 3339 (e.g.
    /// 2026-12-05T22:00:00Z/2026-12-06T02:00:00Z); a switch outside it is refused.
    #[arg(long, value_name = "START/END", value_parser = |w: &str| w.parse::<bluegreen::Window>())]
    pub window: Option<bluegreen::Window>,
    /// Switch outside the window anyway (recorded in the run).
    #[arg(long)]
    pub force_window: bool,
    /// How to reach AWS.
    #[command(flatten)]
    pub aws: ServicesArgs,
}

impl SwitchArgs {
    pub(crate) fn spec(&self) -> SwitchSpec {
        SwitchSpec {
            listener_rule_arn: self.listener_rule_arn.clone(),
            green_host: self.green_host.clone(),
            zone_id: self.zone_id.clone(),
            record_name: self.record.clone(),
            record_type: self.record_type.clone(),
            green_target: self.green_target.clone(),
            serving_records: self.serving_record.clone(),
            window: self.window.clone(),
            force_window: self.force_window,
            aws: self.aws.settings(),
        }
    }
}

fn serving_record(text: &str) -> Result<bluegreen::ServingRecord, String> {
    match text.split_once('=') {
        Some((name, target)) if !name.is_empty() && !target.is_empty() => {
            Ok(bluegreen::ServingRecord {
                name: name.to_string(),
                green_target: target.to_string(),
            })
        }
        _ => Err(format!("`{text}` is not NAME=GREEN_DNS_NAME")),
    }
}

//! `upgrade-bluegreen switch`.

use upgrade_flows::flows::bluegreen::{self, SwitchSpec};

use super::AwsArgs;

/// `switch`'s flags.
#[derive(Debug, clap::Args)]
pub struct SwitchArgs {
    /// The Route 53 hosted zone id.
    #[arg(long, value_name = "ID")]
    pub zone_id: String,
    /// The record users reach the platform by.
    #[arg(long, value_name = "NAME")]
    pub record: String,
    /// Its type.
    #[arg(long, value_name = "TYPE", default_value = "CNAME")]
    pub record_type: String,
    /// Green's address (its load balancer's DNS name).
    #[arg(long, value_name = "DNS_NAME")]
    pub green_target: String,
    /// The maintenance window, START/END in RFC 3339 (e.g.
    /// 2026-12-05T22:00:00Z/2026-12-06T02:00:00Z); a switch outside it is refused.
    #[arg(long, value_name = "START/END", value_parser = |w: &str| w.parse::<bluegreen::Window>())]
    pub window: Option<bluegreen::Window>,
    /// Switch outside the window anyway (recorded in the run).
    #[arg(long)]
    pub force_window: bool,
    /// How to reach AWS.
    #[command(flatten)]
    pub aws: AwsArgs,
}

impl SwitchArgs {
    pub(crate) fn spec(&self) -> SwitchSpec {
        SwitchSpec {
            zone_id: self.zone_id.clone(),
            record_name: self.record.clone(),
            record_type: self.record_type.clone(),
            green_target: self.green_target.clone(),
            window: self.window.clone(),
            force_window: self.force_window,
            aws: self.aws.settings(),
        }
    }
}

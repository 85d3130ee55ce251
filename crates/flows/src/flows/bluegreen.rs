//! Blue/green cluster upgrades (seeds 001 and 003): a green cluster built beside the blue
//! one, state moved, traffic switched, fail-back possible.
//!
//! This module has the first step of seed 001, **inputs from blue**: the blue deployment's
//! Terraform outputs (VPC, subnets, CIDR, cluster security group, EFS/FSx, S3 bucket and its
//! secret, RDS endpoint and its secret, Cognito, certificate, stage) read with `terraform
//! output -json` and written, with the green cluster's name, version, stage, redirect alias
//! and Velero bucket, into the green environment's variables file (what the guide's
//! `get_state_variables.py` does), as a reversible step. Every output the green environment
//! needs is checked before anything is written; a missing one is named with its fix.
//! Sensitive outputs go into the file (mode 0600) and nowhere else: plans, reports and logs
//! show `(sensitive)`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use upgrade_core::executor::{Step, StepFuture, StepRecord, StepSpec};
use upgrade_core::snapshot::{Snapshot, SnapshotWriter};
use upgrade_core::version::KubeMinor;

use crate::context::FlowContext;
use crate::error::{FlowError, Result, field};
use crate::report::Plan;
use crate::run::Planned;

/// The flow's name in run records.
pub const FLOW: &str = "bluegreen-inputs";

/// The green variables read from blue's outputs, each with the output it comes from by
/// default (seed 001's `src_*` variables).
pub const BLUE_OUTPUTS: &[(&str, &str)] = &[
    ("src_vpc_private_subnets", "vpc_private_subnets"),
    ("src_vpc_public_subnets", "vpc_public_subnets"),
    ("src_vpc_id", "vpc_id"),
    ("src_vpc_cidr", "vpc_cidr"),
    ("src_cluster_sg_id", "cluster_sg_id"),
    ("src_s3_bucket_name", "s3_bucket_name"),
    ("src_s3_secret_name", "s3_secret_name"),
    ("src_rds_endpoint", "rds_endpoint"),
    ("src_rds_secret_name", "rds_secret_name"),
];

/// Read when blue has them: one of EFS or FSx, and the stage.
pub const OPTIONAL_OUTPUTS: &[(&str, &str)] = &[
    ("src_efs_fs_id", "efs_fs_id"),
    ("src_fsx_fs_id", "fsx_fs_id"),
    ("src_stage", "stage"),
];

/// Required with Cognito.
pub const COGNITO_OUTPUTS: &[(&str, &str)] = &[
    ("user_pool_id", "user_pool_id"),
    ("cognito_user_pool_arn", "cognito_user_pool_arn"),
    ("cognito_user_pool_domain", "cognito_user_pool_domain"),
    ("certificate_arn", "certificate_arn"),
];

/// What the green environment gets from blue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputsSpec {
    /// The blue deployment's Terraform folder (its state holds the outputs).
    pub blue_terraform_dir: PathBuf,
    /// The green deployment's Terraform folder.
    pub green_terraform_dir: PathBuf,
    /// The variables file written there (default `bluegreen.auto.tfvars.json`, which
    /// Terraform loads by itself).
    #[serde(default)]
    pub green_vars_file: Option<PathBuf>,
    /// The green cluster's name.
    pub green_cluster_name: String,
    /// The green cluster's Kubernetes minor (`eks_version`).
    pub eks_version: String,
    /// The green stage (the CNAME's stage part).
    #[serde(default)]
    pub stage: Option<String>,
    /// The redirect alias the switch points traffic through.
    #[serde(default)]
    pub redirect_alias: Option<String>,
    /// The Velero (or transfer) bucket.
    #[serde(default)]
    pub velero_bucket: Option<String>,
    /// Blue uses Cognito: its user pool and certificate outputs are required.
    #[serde(default)]
    pub cognito: bool,
    /// Other output names for green variables (`src_vpc_id` → `my_vpc`).
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
}

/// What [`GreenVarsStep`] writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GreenVarsSpec {
    /// Step id, e.g. `bluegreen/inputs`.
    pub id: String,
    /// The blue folder the values are read from again when the step runs (so the run
    /// record holds no secret).
    pub blue_terraform_dir: PathBuf,
    /// The file written.
    pub file: PathBuf,
    /// Green's own values (name, version, stage, alias, bucket).
    pub green: BTreeMap<String, Value>,
    /// Each green variable and the blue output it comes from.
    pub from_blue: BTreeMap<String, String>,
}

impl StepSpec for GreenVarsSpec {
    const KIND: &'static str = "bluegreen-green-vars";
}

/// Writes the green variables file from blue's outputs (0600, atomically); the rollback puts
/// the file before back, or removes it when there was none.
pub struct GreenVarsStep {
    spec: GreenVarsSpec,
    tf: upgrade_tf::AsyncTerraform,
}

const BEFORE_FILE: &str = "green-vars-before.json";

impl GreenVarsStep {
    /// The step of `spec`, reading blue's outputs with `tf` (in `spec.blue_terraform_dir`).
    pub fn new(spec: GreenVarsSpec, tf: upgrade_tf::AsyncTerraform) -> GreenVarsStep {
        GreenVarsStep { spec, tf }
    }

    async fn content(&self) -> std::result::Result<Vec<u8>, String> {
        let outputs = self
            .tf
            .run(|tf| tf.output())
            .await
            .map_err(|e| format!("terraform output of blue: {e}"))?;
        let mut vars = serde_json::Map::new();
        for (name, value) in &self.spec.green {
            vars.insert(name.clone(), value.clone());
        }
        for (var, output) in &self.spec.from_blue {
            let value = outputs
                .get(output)
                .and_then(|o| o.value.clone())
                .ok_or_else(|| format!("blue has no output `{output}` any more (for {var})"))?;
            vars.insert(var.clone(), value);
        }
        let mut text = serde_json::to_vec_pretty(&Value::Object(vars)).expect("JSON");
        text.push(b'\n');
        Ok(text)
    }
}

impl Step for GreenVarsStep {
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
            "write {} from blue's outputs ({} variables) and green's own ({})",
            self.spec.file.display(),
            self.spec.from_blue.len(),
            self.spec
                .green
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )
    }

    fn capture<'a>(&'a self, snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(async move {
            let before = match std::fs::read(&self.spec.file) {
                Ok(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(format!("read {}: {e}", self.spec.file.display()).into()),
            };
            snapshot.put_json(BEFORE_FILE, &json!({ "content": before }))?;
            Ok(())
        })
    }

    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let content = self.content().await?;
            upgrade_core::atomic_file::write_private(&self.spec.file, &content)
                .map_err(|e| format!("write {}: {e}", self.spec.file.display()))?;
            Ok(())
        })
    }

    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let written: Value = serde_json::from_slice(
                &std::fs::read(&self.spec.file)
                    .map_err(|e| format!("read {}: {e}", self.spec.file.display()))?,
            )
            .map_err(|e| format!("{} is not JSON: {e}", self.spec.file.display()))?;
            let missing: Vec<&String> = self
                .spec
                .from_blue
                .keys()
                .chain(self.spec.green.keys())
                .filter(|k| written.get(k.as_str()).is_none())
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("{} lacks {missing:?}", self.spec.file.display()).into())
            }
        })
    }

    fn rollback<'a>(&'a self, snapshot: &'a Snapshot) -> StepFuture<'a> {
        Box::pin(async move {
            let before: Value = snapshot.get_json(BEFORE_FILE)?;
            match before["content"].as_str() {
                Some(content) => {
                    upgrade_core::atomic_file::write_private(&self.spec.file, content.as_bytes())
                        .map_err(|e| format!("restore {}: {e}", self.spec.file.display()))?
                }
                None => match std::fs::remove_file(&self.spec.file) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(format!("remove {}: {e}", self.spec.file.display()).into());
                    }
                },
            }
            Ok(())
        })
    }
}

/// Plans the inputs step: blue's state must manage the connected (blue) cluster; every
/// output green needs must exist (each missing one is named); the plan lists each variable
/// with its value, sensitive ones as `(sensitive)`.
pub async fn plan_inputs(ctx: &FlowContext, spec: &InputsSpec) -> Result<Planned> {
    let absolute = |p: &PathBuf| std::path::absolute(p).unwrap_or_else(|_| p.clone());
    let blue_dir = absolute(&spec.blue_terraform_dir);
    let green_dir = absolute(&spec.green_terraform_dir);
    for (name, dir) in [
        ("blue_terraform_dir", &blue_dir),
        ("green_terraform_dir", &green_dir),
    ] {
        if !dir.is_dir() {
            return Err(FlowError::invalid(
                name,
                format!("{} is not a folder", dir.display()),
                "give the deployment's Terraform folder",
            ));
        }
    }
    let eks_version: KubeMinor = spec.eks_version.parse().map_err(|e| {
        FlowError::invalid(
            "eks_version",
            format!("{}: {e}", spec.eks_version),
            "give the green cluster's Kubernetes minor, e.g. 1.31",
        )
    })?;
    if spec.green_cluster_name.trim().is_empty() {
        return Err(FlowError::invalid(
            "green_cluster_name",
            "is empty",
            "name the green cluster (it must differ from blue's)",
        ));
    }
    let file = absolute(
        &spec
            .green_vars_file
            .clone()
            .unwrap_or_else(|| green_dir.join("bluegreen.auto.tfvars.json")),
    );
    for var in spec.outputs.keys() {
        let known = BLUE_OUTPUTS
            .iter()
            .chain(OPTIONAL_OUTPUTS)
            .chain(COGNITO_OUTPUTS)
            .any(|(v, _)| v == var);
        if !known {
            return Err(FlowError::invalid(
                "outputs",
                format!("`{var}` is not a variable the green environment takes from blue"),
                format!(
                    "use one of {}",
                    BLUE_OUTPUTS
                        .iter()
                        .chain(OPTIONAL_OUTPUTS)
                        .chain(COGNITO_OUTPUTS)
                        .map(|(v, _)| *v)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }

    // Blue's state must be the connected cluster's, before its outputs are trusted.
    let tf = ctx.terraform("blue_terraform_dir", &blue_dir)?;
    let state = crate::flows::terraform_state(&tf, &blue_dir).await?;
    let binding =
        crate::flows::terraform_binding(state.as_ref(), ctx.cluster().identity(), &blue_dir, true)?
            .expect("required");
    if binding.contains(&format!("cluster {} ", spec.green_cluster_name))
        || binding.contains(&format!("cluster {},", spec.green_cluster_name))
    {
        return Err(FlowError::invalid(
            "green_cluster_name",
            format!("`{}` is blue's own cluster name", spec.green_cluster_name),
            "name the green cluster differently",
        ));
    }
    let outputs = tf
        .run(|tf| tf.output())
        .await
        .map_err(|e| FlowError::failed("terraform output of blue", e))?;
    let output_of = |var: &str, default: &str| {
        spec.outputs
            .get(var)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    };
    let mut from_blue = BTreeMap::new();
    let mut missing = Vec::new();
    let required = BLUE_OUTPUTS
        .iter()
        .chain(if spec.cognito { COGNITO_OUTPUTS } else { &[] });
    for (var, default) in required {
        let output = output_of(var, default);
        match outputs.get(&output).and_then(|o| o.value.as_ref()) {
            Some(_) => {
                from_blue.insert(var.to_string(), output);
            }
            None => missing.push(format!("`{output}` (for {var})")),
        }
    }
    for (var, default) in OPTIONAL_OUTPUTS {
        let output = output_of(var, default);
        if outputs
            .get(&output)
            .and_then(|o| o.value.as_ref())
            .is_some()
        {
            from_blue.insert(var.to_string(), output);
        }
    }
    if !missing.is_empty() {
        return Err(FlowError::invalid(
            "blue_terraform_dir",
            format!(
                "blue's Terraform state ({}) has no output {}",
                blue_dir.display(),
                missing.join(", ")
            ),
            format!(
                "add the outputs to blue's configuration and `terraform apply` it, or name the output that holds each with {} (e.g. src_vpc_id=my_vpc)",
                field("outputs")
            ),
        ));
    }

    let mut green = BTreeMap::new();
    green.insert("cluster_name".to_string(), json!(spec.green_cluster_name));
    green.insert("eks_version".to_string(), json!(eks_version.to_string()));
    for (name, value) in [
        ("stage", &spec.stage),
        ("redirect_alias", &spec.redirect_alias),
        ("velero_bucket", &spec.velero_bucket),
    ] {
        if let Some(value) = value {
            green.insert(name.to_string(), json!(value));
        }
    }
    let mut changes = vec![format!(
        "write {} (mode 0600; Terraform loads *.auto.tfvars.json by itself); blue is {binding}",
        file.display()
    )];
    for (name, value) in &green {
        changes.push(format!("  {name} = {value}"));
    }
    for (var, output) in &from_blue {
        let shown = match outputs.get(output) {
            Some(o) if o.sensitive => "(sensitive)".to_string(),
            Some(o) => o.value.as_ref().map(Value::to_string).unwrap_or_default(),
            None => String::new(),
        };
        changes.push(format!("  {var} = {shown} (blue output {output})"));
    }
    let mut findings = Vec::new();
    if !from_blue.contains_key("src_efs_fs_id") && !from_blue.contains_key("src_fsx_fs_id") {
        findings.push(
            "blue has neither an EFS nor an FSx output: green gets no shared file system".into(),
        );
    }
    let step = GreenVarsStep::new(
        GreenVarsSpec {
            id: "bluegreen/inputs".into(),
            blue_terraform_dir: blue_dir.clone(),
            file,
            green,
            from_blue,
        },
        tf,
    );
    let refs: [&dyn Step; 1] = [&step];
    let mut plan = Plan::new(
        "upgrade-bluegreen",
        ctx.cluster_name(),
        ctx.new_run_id("bluegreen")?,
        &refs,
    );
    plan.changes = changes;
    plan.findings = findings;
    let mut recorded = spec.clone();
    recorded.blue_terraform_dir = blue_dir;
    recorded.green_terraform_dir = green_dir;
    Ok(Planned::new(FLOW, &recorded, plan, vec![Box::new(step)]))
}

/// The flow name of the IRSA step in run records.
pub const IRSA_FLOW: &str = "bluegreen-irsa";

/// How the flow reaches IAM (the AWS CLI's settings).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwsSettings {
    /// The region.
    #[serde(default)]
    pub region: Option<String>,
    /// The CLI profile.
    #[serde(default)]
    pub profile: Option<String>,
    /// Another endpoint (moto in tests).
    #[serde(default)]
    pub endpoint_url: Option<String>,
}

impl AwsSettings {
    fn builder(&self) -> upgrade_aws::EksBuilder {
        upgrade_aws::Eks::builder("").settings(
            self.region.as_deref(),
            self.profile.as_deref(),
            self.endpoint_url.as_deref(),
        )
    }

    fn iam(&self) -> std::result::Result<upgrade_aws::Iam, String> {
        self.builder().build_iam().map_err(|e| e.to_string())
    }
}

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
    let iam = spec
        .aws
        .iam()
        .map_err(|e| FlowError::invalid("aws", e, "install the AWS CLI or set AWS_BIN"))?;
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
        ctx.new_run_id("bluegreen")?,
        &refs,
    );
    plan.changes = changes;
    plan.blockers = blockers;
    plan.findings = vec!["blue's provider stays trusted until retire; the rollback puts each trust policy back as it was".into()];
    Ok(Planned::new(IRSA_FLOW, spec, plan, vec![Box::new(step)]))
}

/// The flow name of the switch in run records (its rollback is the fail-back).
pub const SWITCH_FLOW: &str = "bluegreen-switch";

impl AwsSettings {
    fn route53(&self) -> std::result::Result<upgrade_aws::Route53, String> {
        self.builder().build_route53().map_err(|e| e.to_string())
    }
}

/// A maintenance window, `START/END` in RFC 3339 (`2026-12-05T22:00:00Z/2026-12-06T02:00:00Z`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// When it opens.
    pub start: jiff::Timestamp,
    /// When it closes.
    pub end: jiff::Timestamp,
}

impl std::str::FromStr for Window {
    type Err = String;
    fn from_str(text: &str) -> std::result::Result<Window, String> {
        let (start, end) = text
            .split_once('/')
            .ok_or_else(|| format!("`{text}` is not START/END"))?;
        let parse = |t: &str| {
            t.trim()
                .parse::<jiff::Timestamp>()
                .map_err(|e| format!("`{t}` is not an RFC 3339 time: {e}"))
        };
        let window = Window {
            start: parse(start)?,
            end: parse(end)?,
        };
        if window.end <= window.start {
            return Err(format!("`{text}` ends before it starts"));
        }
        Ok(window)
    }
}

/// The switch of seed 001's step 10: the DNS record users reach the platform by moves from
/// blue to green, inside the maintenance window; its rollback (`failback`) points it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchSpec {
    /// The Route 53 hosted zone.
    pub zone_id: String,
    /// The record users reach the platform by, e.g. `kubeflow.platform.example.com`.
    pub record_name: String,
    /// Its type (`CNAME` by default).
    #[serde(default = "default_record_type")]
    pub record_type: String,
    /// Green's address (the green load balancer's DNS name).
    pub green_target: String,
    /// The maintenance window the switch must happen in.
    #[serde(default)]
    pub window: Option<Window>,
    /// Switch outside the window anyway (recorded).
    #[serde(default)]
    pub force_window: bool,
    /// How to reach Route 53.
    #[serde(default)]
    pub aws: AwsSettings,
}

fn default_record_type() -> String {
    "CNAME".into()
}

/// What [`SwitchStep`] changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchStepSpec {
    /// Step id.
    pub id: String,
    /// The zone.
    pub zone_id: String,
    /// The record set pointing at green (name, type, TTL, value).
    pub green_record: Value,
    /// How to reach Route 53.
    pub aws: AwsSettings,
}

impl StepSpec for SwitchStepSpec {
    const KIND: &'static str = "bluegreen-switch-dns";
}

/// Points the record at green; the rollback points it back at what it was (blue).
pub struct SwitchStep {
    spec: SwitchStepSpec,
}

impl SwitchStep {
    /// The step of `spec`.
    pub fn new(spec: SwitchStepSpec) -> SwitchStep {
        SwitchStep { spec }
    }

    fn name_and_type(&self) -> (String, String) {
        (
            self.spec.green_record["Name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            self.spec.green_record["Type"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    }
}

const RECORD_FILE: &str = "record-before.json";

impl Step for SwitchStep {
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
        let (name, kind) = self.name_and_type();
        format!(
            "point {kind} {name} at green ({})",
            self.spec.green_record["ResourceRecords"][0]["Value"]
                .as_str()
                .unwrap_or_default()
        )
    }

    fn capture<'a>(&'a self, snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(async move {
            let (name, kind) = self.name_and_type();
            let before = self
                .spec
                .aws
                .route53()?
                .record(&self.spec.zone_id, &name, &kind)
                .await?
                .ok_or_else(|| format!("{kind} {name} does not exist any more"))?;
            snapshot.put_json(RECORD_FILE, &before)?;
            Ok(())
        })
    }

    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async move {
            self.spec
                .aws
                .route53()?
                .upsert(&self.spec.zone_id, &self.spec.green_record)
                .await?;
            Ok(())
        })
    }

    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let (name, kind) = self.name_and_type();
            let now = self
                .spec
                .aws
                .route53()?
                .record(&self.spec.zone_id, &name, &kind)
                .await?;
            let points = |r: &Value| r["ResourceRecords"].clone();
            if now.as_ref().map(points) != Some(points(&self.spec.green_record)) {
                return Err(format!("{kind} {name} does not point at green: {now:?}").into());
            }
            Ok(())
        })
    }

    fn rollback<'a>(&'a self, snapshot: &'a Snapshot) -> StepFuture<'a> {
        Box::pin(async move {
            let before: Value = snapshot.get_json(RECORD_FILE)?;
            self.spec
                .aws
                .route53()?
                .upsert(&self.spec.zone_id, &before)
                .await?;
            Ok(())
        })
    }
}

/// Plans the switch: the window checked (outside it is bad input unless forced), the record
/// read (it must exist: blue's), green's record built from it (same name, type and TTL).
pub async fn plan_switch(ctx: &FlowContext, spec: &SwitchSpec) -> Result<Planned> {
    let now = jiff::Timestamp::now();
    let mut findings = Vec::new();
    match (&spec.window, spec.force_window) {
        (Some(w), false) if now < w.start || now > w.end => {
            return Err(FlowError::invalid(
                "window",
                format!(
                    "it is {} now, outside the maintenance window {} to {}",
                    now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    w.start,
                    w.end
                ),
                format!(
                    "switch inside the window, or knowingly outside it with {}",
                    field("force_window")
                ),
            ));
        }
        (Some(w), true) if now < w.start || now > w.end => findings.push(format!(
            "switching outside the maintenance window {} to {} (forced; recorded in the run)",
            w.start, w.end
        )),
        (None, _) => findings.push("no maintenance window given".into()),
        _ => {}
    }
    let route53 = spec
        .aws
        .route53()
        .map_err(|e| FlowError::invalid("aws", e, "install the AWS CLI or set AWS_BIN"))?;
    let blue = route53
        .record(&spec.zone_id, &spec.record_name, &spec.record_type)
        .await
        .map_err(|e| {
            FlowError::failed(format!("read {} {}", spec.record_type, spec.record_name), e)
        })?
        .ok_or_else(|| {
            FlowError::invalid(
                "record_name",
                format!(
                    "hosted zone {} has no {} record {}",
                    spec.zone_id, spec.record_type, spec.record_name
                ),
                "name the record users reach blue by",
            )
        })?;
    let blue_value = blue["ResourceRecords"][0]["Value"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if blue_value == spec.green_target {
        return Err(FlowError::invalid(
            "green_target",
            format!(
                "{} already points at {}",
                spec.record_name, spec.green_target
            ),
            "nothing to switch; fail back with `upgrade-bluegreen failback`",
        ));
    }
    let mut green = blue.clone();
    green["ResourceRecords"] = json!([{ "Value": spec.green_target }]);
    let step = SwitchStep::new(SwitchStepSpec {
        id: "bluegreen/switch".into(),
        zone_id: spec.zone_id.clone(),
        green_record: green,
        aws: spec.aws.clone(),
    });
    let refs: [&dyn Step; 1] = [&step];
    let mut plan = Plan::new(
        "upgrade-bluegreen",
        ctx.cluster_name(),
        ctx.new_run_id("bluegreen-switch")?,
        &refs,
    );
    plan.changes = vec![format!(
        "{} {}: {blue_value} (blue) -> {} (green); `upgrade-bluegreen failback` points it back",
        spec.record_type, spec.record_name, spec.green_target
    )];
    plan.findings = findings;
    Ok(Planned::new(SWITCH_FLOW, spec, plan, vec![Box::new(step)]))
}

/// The latest switch run recorded in `state` (what `failback` undoes).
pub fn latest_switch_run(state: &crate::context::StateDir) -> Result<String> {
    let dir = state.runs();
    let entries = std::fs::read_dir(&dir).map_err(|e| {
        FlowError::invalid(
            "snapshot_dir",
            format!("no run records in {}: {e}", dir.display()),
            "give the --snapshot-dir the switch ran with",
        )
    })?;
    let mut switches: Vec<(jiff::Timestamp, String)> = Vec::new();
    for entry in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let Ok(record) = crate::record::RunRecord::parse(&text, &entry.path()) else {
            continue;
        };
        if record.flow == SWITCH_FLOW {
            switches.push((record.created, record.run_id));
        }
    }
    switches.sort();
    switches.pop().map(|(_, id)| id).ok_or_else(|| {
        FlowError::invalid(
            "snapshot_dir",
            format!("{} records no switch to fail back from", dir.display()),
            "run `upgrade-bluegreen switch` first, or give the --snapshot-dir it ran with",
        )
    })
}

//! Seed 001's first step, **inputs from blue**: the blue deployment's
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
        ctx.new_run_id("bluegreen-inputs")?,
        &refs,
    );
    plan.changes = changes;
    plan.findings = findings;
    let mut recorded = spec.clone();
    recorded.blue_terraform_dir = blue_dir;
    recorded.green_terraform_dir = green_dir;
    Ok(Planned::new(FLOW, &recorded, plan, vec![Box::new(step)]))
}

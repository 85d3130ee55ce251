//! The flows, one module each. Every changing flow has a spec (serde, checked before anything
//! changes) and a `plan` function returning a [`Planned`](crate::run::Planned) to show and
//! apply; the read-only ones return their report directly.

use std::path::Path;

use upgrade_core::version::KubeVersion;
use upgrade_kube::connect::ClusterIdentity;
use upgrade_tf::State;

use crate::context::FlowContext;
use crate::error::{FlowError, Result, field};

pub mod bluegreen;
pub mod canary;
mod component_crds;
pub mod control_plane;
pub mod eks;
pub mod emergency;
pub mod fleet;
pub mod health;
pub mod helm_component;
pub mod insights;
pub mod lock;
pub mod logs;
pub mod managed_addons;
pub mod mlflow;
pub mod mlflow_access;
pub mod nodes;
pub mod preflight;
pub mod release_apis;
pub mod releases;
pub mod replace_node;
pub mod rollback;
pub mod scan;
pub mod tf_providers;
pub mod verify;

/// The live control-plane version, as the API server reports it.
pub async fn live_version(ctx: &FlowContext) -> Result<KubeVersion> {
    let info = ctx
        .cluster()
        .client()
        .apiserver_version()
        .await
        .map_err(|e| FlowError::failed("read the API server version", e))?;
    info.git_version
        .parse()
        .map_err(|e| FlowError::failed(format!("API server version {}", info.git_version), e))
}

/// Splits a command line given as one string the way a shell would (quotes honoured, no
/// shell run); an unbalanced quote is bad input naming `field_name`.
pub fn split_words(field_name: &'static str, text: &str) -> Result<Vec<String>> {
    let shown = upgrade_core::redact::scrub_credentials(text);
    shlex::split(text).ok_or_else(|| {
        FlowError::invalid(
            field_name,
            format!("{shown:?} has an unbalanced quote or a trailing backslash"),
            "quote its arguments as in a shell",
        )
    })
}

/// Checks the secrets of a command or URL that a flow will show and record (`words`: the
/// split command line, or the URL alone): a credential written out in full is refused, and
/// each `${env:NAME}` reference must name a variable that is set, so a missing secret is
/// bad input before anything changes rather than a failure halfway.
pub(crate) fn check_secrets(field_name: &'static str, words: &[String]) -> Result<()> {
    if let Some(what) = upgrade_core::redact::literal_credential(words) {
        return Err(FlowError::invalid(
            field_name,
            format!(
                "holds {what} written out; it would be shown in the plan and report and kept in the run record"
            ),
            "put the secret in an environment variable and write `${env:NAME}` in its place \
             (e.g. `http://user:${env:MLFLOW_PASSWORD}@host`); it is read only when the command \
             runs, so set it again for a later rollback",
        ));
    }
    for word in words {
        if let Err(missing) = upgrade_core::redact::expand_env_refs(word) {
            return Err(FlowError::invalid(
                field_name,
                format!("refers to `${{env:{}}}`, which is not set", missing.name),
                format!("export {} (the secret) before running", missing.name),
            ));
        }
    }
    Ok(())
}

/// Ties the Terraform environment in `dir` to the connected cluster, before any plan: an
/// `aws_eks_cluster` its state manages must be this cluster (the same API server endpoint,
/// EKS name or ARN), so `terraform_dir` can never change another cluster than the one the
/// interlock checked. Returns how the state names it; `None` when the state manages no EKS
/// cluster and `required` is off (an environment of other resources).
pub(crate) fn terraform_binding(
    state: Option<&State>,
    identity: &ClusterIdentity,
    dir: &Path,
    required: bool,
) -> Result<Option<String>> {
    let no_cluster = |problem: String| {
        FlowError::invalid(
            "terraform_dir",
            problem,
            format!(
                "set {} to the Terraform environment that manages {}",
                field("terraform_dir"),
                identity.display_name()
            ),
        )
    };
    let Some(state) = state else {
        return if required {
            Err(no_cluster(format!(
                "{} has no Terraform state, so nothing ties it to the cluster",
                dir.display()
            )))
        } else {
            Ok(None)
        };
    };
    let norm = |url: &str| url.trim_end_matches('/').to_ascii_lowercase();
    let mut managed = Vec::new();
    for (address, instance) in state.managed("aws_eks_cluster") {
        let attr = |key: &str| {
            instance.attributes[key]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        let (name, endpoint, arn) = (attr("name"), attr("endpoint"), attr("arn"));
        let this = (!endpoint.is_empty() && norm(&endpoint) == norm(&identity.server_url))
            || identity.eks_cluster_name.as_deref() == Some(name.as_str())
            || (!arn.is_empty() && arn == identity.kubeconfig_cluster);
        if this {
            return Ok(Some(format!("{address} (cluster {name}, {endpoint})")));
        }
        managed.push(format!("{address}: cluster {name} at {endpoint}"));
    }
    if managed.is_empty() {
        return if required {
            Err(no_cluster(format!(
                "the Terraform state in {} manages no aws_eks_cluster",
                dir.display()
            )))
        } else {
            Ok(None)
        };
    }
    Err(FlowError::invalid(
        "terraform_dir",
        format!(
            "{} manages another cluster than the connected {} ({})",
            dir.display(),
            identity.display_name(),
            managed.join("; ")
        ),
        format!(
            "point {} at the environment of the connected cluster, or the kube context at the cluster it manages",
            field("terraform_dir")
        ),
    ))
}

/// The state of the Terraform environment behind `tf`, initialising the folder first when
/// it needs it (backend and providers only; the lock file is left as it is).
pub(crate) async fn terraform_state(
    tf: &upgrade_tf::AsyncTerraform,
    dir: &Path,
) -> Result<Option<State>> {
    let unreadable = |e: upgrade_tf::Error| {
        FlowError::invalid(
            "terraform_dir",
            format!("cannot read the Terraform state in {}: {e}", dir.display()),
            "make the backend reachable (credentials, network), then try again",
        )
    };
    match tf.state().await {
        Ok(state) => Ok(state),
        Err(e) if matches!(e.hint(), Some(upgrade_tf::FailureHint::NotInitialized)) => {
            let options =
                upgrade_tf::InitOptions::default().lockfile(upgrade_tf::LockfileMode::ReadOnly);
            tf.init(options).await.map_err(unreadable)?;
            tf.state().await.map_err(unreadable)
        }
        Err(e) => Err(unreadable(e)),
    }
}

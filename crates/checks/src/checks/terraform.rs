//! The Terraform plan review for the next hop.

use super::{Applies, Category, CheckInfo, Context, Issue, Outcome, Severity, Subject};

const PLAN_URL: &str =
    "https://developer.hashicorp.com/terraform/internals/json-format#change-representation";

pub(super) const CHECKS: &[CheckInfo] = &[
    CheckInfo {
        code: "TF001",
        title: "Terraform plan destroys the EKS cluster",
        severity: Severity::Blocker,
        category: Category::Terraform,
        applies: Applies::ALWAYS,
        inspects: "`aws_eks_cluster` resources the plan deletes or replaces (a changed immutable argument, such as subnets or the cluster name, turns a version bump into a new cluster).",
        remediation: "Do not apply. Find the argument that forces replacement (`terraform plan` marks it `# forces replacement`) and revert it; change only the cluster version in this step.",
        source: PLAN_URL,
        run: cluster_destroyed,
    },
    CheckInfo {
        code: "TF002",
        title: "Terraform plan replaces node groups or add-ons",
        severity: Severity::Warning,
        category: Category::Terraform,
        applies: Applies::ALWAYS,
        inspects: "`aws_eks_node_group`, `aws_eks_addon` and `aws_eks_fargate_profile` resources the plan deletes or replaces: capacity or networking disappears before the replacement is ready, instead of a rolling update.",
        remediation: "Prefer in-place updates (node group `version`/`release_version`, add-on `addon_version`); if a replacement is intended, create the new node group first and drain the old one.",
        source: PLAN_URL,
        run: data_plane_replaced,
    },
    CheckInfo {
        code: "TF003",
        title: "Terraform plan's cluster version is not the next hop",
        severity: Severity::Blocker,
        category: Category::Terraform,
        applies: Applies::ALWAYS,
        inspects: "The cluster version change in the plan against the upgrade path: it must go from the current minor to the next one. EKS rejects skips, and a plan built from stale variables may even try a downgrade.",
        remediation: "Set `cluster_version` in the environment's terraform.tfvars to the next hop's minor and plan again.",
        source: "https://docs.aws.amazon.com/eks/latest/userguide/update-cluster.html",
        run: version_change,
    },
];

fn review<'a>(ctx: &Context<'a>) -> Result<&'a crate::facts::TerraformReview, Outcome> {
    ctx.facts
        .terraform
        .as_ref()
        .ok_or_else(|| Outcome::Skipped("no Terraform plan review in the facts".into()))
}

fn destroyed(ctx: &Context<'_>, types: &[&str]) -> Outcome {
    let review = match review(ctx) {
        Ok(r) => r,
        Err(outcome) => return outcome,
    };
    let issues = review
        .changes
        .iter()
        .filter(|c| types.contains(&c.resource_type.as_str()) && c.destroys())
        .map(|c| {
            let how = if c.actions.iter().any(|a| a == "create") {
                "replaces"
            } else {
                "destroys"
            };
            Issue::new(
                Some(Subject::cluster("TerraformResource", &c.address)),
                format!("the plan {how} it (actions: {})", c.actions.join(", ")),
            )
        })
        .collect();
    Outcome::Checked(issues)
}

fn cluster_destroyed(ctx: &Context<'_>) -> Outcome {
    destroyed(ctx, &["aws_eks_cluster"])
}

fn data_plane_replaced(ctx: &Context<'_>) -> Outcome {
    destroyed(
        ctx,
        &[
            "aws_eks_node_group",
            "aws_eks_addon",
            "aws_eks_fargate_profile",
        ],
    )
}

fn version_change(ctx: &Context<'_>) -> Outcome {
    let review = match review(ctx) {
        Ok(r) => r,
        Err(outcome) => return outcome,
    };
    let Some(change) = review.cluster_version_change else {
        return Outcome::Checked(Vec::new());
    };
    let expected = (ctx.current(), ctx.first_hop());
    if (change.from, change.to) == expected {
        return Outcome::Checked(Vec::new());
    }
    let subject = Some(Subject::cluster(
        "TerraformPlan",
        review.working_dir.as_deref().unwrap_or("plan"),
    ));
    Outcome::Checked(vec![Issue::new(
        subject,
        format!(
            "the plan changes the cluster version {} → {}, the next hop is {} → {}",
            change.from, change.to, expected.0, expected.1
        ),
    )])
}

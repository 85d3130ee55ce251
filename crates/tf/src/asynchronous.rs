//! An async face for tokio callers: every call runs on tokio's blocking pool.
//!
//! Dropping one of these futures does **not** stop Terraform: the blocking call runs to its
//! end (or to the handle's timeout, which stops Terraform with SIGINT first), because
//! killing Terraform mid-apply can leave the state locked and half-written.

use std::sync::Arc;

use crate::error::Result;
use crate::options::{ApplyOptions, InitOptions, PlanOptions};
use crate::review::ReviewRules;
use crate::terraform::{
    ApplyRun, ApprovedPlan, InitReport, PlanRun, ReviewedPlan, SavedPlan, Terraform,
};

/// A cheaply cloneable, async [`Terraform`].
#[derive(Debug, Clone)]
pub struct AsyncTerraform {
    inner: Arc<Terraform>,
}

impl From<Terraform> for AsyncTerraform {
    fn from(tf: Terraform) -> Self {
        AsyncTerraform {
            inner: Arc::new(tf),
        }
    }
}

impl AsyncTerraform {
    /// The blocking handle underneath.
    pub fn blocking(&self) -> &Terraform {
        &self.inner
    }

    /// Runs any blocking call on the handle on tokio's blocking pool.
    pub async fn run<T, F>(&self, call: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Terraform) -> Result<T> + Send + 'static,
    {
        let tf = Arc::clone(&self.inner);
        match tokio::task::spawn_blocking(move || call(&tf)).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("the tokio runtime shut down under a terraform call: {e}"),
        }
    }

    /// [`Terraform::init`].
    pub async fn init(&self, options: InitOptions) -> Result<InitReport> {
        self.run(move |tf| tf.init(&options)).await
    }

    /// [`Terraform::plan`].
    pub async fn plan(&self, options: PlanOptions) -> Result<PlanRun> {
        self.run(move |tf| tf.plan(&options)).await
    }

    /// [`Terraform::review`].
    pub async fn review(&self, saved: SavedPlan, rules: ReviewRules) -> Result<ReviewedPlan> {
        self.run(move |tf| tf.review(&saved, &rules)).await
    }

    /// [`Terraform::state`].
    pub async fn state(&self) -> Result<Option<crate::terraform::State>> {
        self.run(|tf| tf.state()).await
    }

    /// [`Terraform::apply`].
    pub async fn apply(&self, plan: ApprovedPlan, options: ApplyOptions) -> Result<ApplyRun> {
        self.run(move |tf| tf.apply(&plan, &options)).await
    }
}

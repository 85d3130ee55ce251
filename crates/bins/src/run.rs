//! Running an upgrade's steps the safe way: under the cluster's upgrade lock (one run at a
//! time, renewed while it runs), through the journaled executor, with an unfinished run
//! resumed or rolled back only on the caller's explicit choice.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use upgrade_core::executor::{Executor, RollbackReport, RunOutcome, Step};
use upgrade_core::process::StopSignal;
use upgrade_kube::connect::Cluster;
use upgrade_kube::lock::{LockOptions, UpgradeLock};

/// What to do when the journal holds a run that did not finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnfinished {
    /// Refuse, naming the run and the two choices (the default for people).
    Refuse,
    /// Continue it, repeating nothing already done.
    Resume,
    /// Undo its applied steps.
    RollBack,
}

/// Where a run keeps its records and who it is.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// The journal file.
    pub journal: PathBuf,
    /// The snapshot folder.
    pub snapshots: PathBuf,
    /// The lock holder's identity (shown to anyone refused), e.g. `ci-runner-7/run-42`.
    pub holder: String,
    /// The lease's time to live; it is renewed every third of it.
    pub lock_ttl: Duration,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    /// The steps ran (or resumed) to an outcome.
    Ran(RunOutcome),
    /// An unfinished run was rolled back on request.
    RolledBack(RollbackReport),
}

/// Takes the upgrade lock, then starts `run_id` (or resumes or rolls back an unfinished run,
/// per `on_unfinished`). The lock is renewed in the background; if it is lost, every running
/// command is stopped gracefully and the run fails rather than carry on unguarded.
pub async fn run_locked(
    cluster: &Cluster,
    settings: &RunSettings,
    run_id: &str,
    steps: &[&dyn Step],
    on_unfinished: OnUnfinished,
) -> anyhow::Result<Finished> {
    with_upgrade_lock(cluster, settings, run_id, |mut executor| async move {
        let unfinished = executor.unfinished()?;
        let finished = match (unfinished, on_unfinished) {
            (None, _) => Finished::Ran(executor.start(run_id, steps).await?),
            (Some(run), OnUnfinished::Refuse) => anyhow::bail!(
                "run `{}` did not finish (journal {}); choose: resume it (repeats nothing already done) or roll it back (undoes its applied steps)",
                run.run_id,
                settings.journal.display()
            ),
            (Some(_), OnUnfinished::Resume) => Finished::Ran(executor.resume(steps).await?),
            (Some(_), OnUnfinished::RollBack) => Finished::RolledBack(
                executor
                    .rollback(None, None, steps, "rollback requested for the unfinished run")
                    .await?,
            ),
        };
        Ok(finished)
    })
    .await
}

/// Under the upgrade lock, undoes the applied steps of `run_id` (of one component when
/// given) from their snapshots, newest first, stopping at a step that cannot be undone.
pub async fn rollback_locked(
    cluster: &Cluster,
    settings: &RunSettings,
    run_id: &str,
    component: Option<&str>,
    steps: &[&dyn Step],
    reason: &str,
) -> anyhow::Result<RollbackReport> {
    with_upgrade_lock(cluster, settings, run_id, |mut executor| async move {
        Ok(executor
            .rollback(Some(run_id), component, steps, reason)
            .await?)
    })
    .await
}

/// The one lock path: takes the cluster's upgrade lock for `run_id`, renews it in the
/// background while `work` runs on the journaled executor, and releases it afterwards. If
/// the lock is lost, every running command is stopped gracefully.
async fn with_upgrade_lock<T, F, Fut>(
    cluster: &Cluster,
    settings: &RunSettings,
    run_id: &str,
    work: F,
) -> anyhow::Result<T>
where
    F: FnOnce(Executor) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let options = LockOptions {
        ttl: settings.lock_ttl,
        ..LockOptions::new(settings.holder.clone())
    };
    let lock = UpgradeLock::acquire(cluster, options, run_id).await?;
    let lock = Arc::new(tokio::sync::Mutex::new(Some(lock)));
    let keeper = {
        let lock = Arc::clone(&lock);
        let every = settings.lock_ttl / 3;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let mut guard = lock.lock().await;
                let Some(held) = guard.as_mut() else { break };
                if let Err(err) = held.renew(None).await {
                    tracing::error!(%err, "lost the upgrade lock; stopping");
                    StopSignal::global().stop();
                    break;
                }
            }
        })
    };
    let result = async {
        let executor = Executor::open(&settings.journal, &settings.snapshots)?;
        work(executor).await
    }
    .await;
    keeper.abort();
    let held = lock.lock().await.take();
    if let Some(held) = held
        && let Err(err) = held.release().await
    {
        tracing::warn!(%err, "could not release the upgrade lock; it expires by itself");
    }
    result
}

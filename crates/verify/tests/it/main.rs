//! upgrade-verify against the real components: KServe's ModelServer, the MLflow tracking
//! server, Prometheus, and kube-sim for the canary. `./dev tools` installs them.

mod canary;
mod common;
mod mlflow;
mod probes;
mod prometheus;
mod step;

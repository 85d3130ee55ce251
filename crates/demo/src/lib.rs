//! The demo (`./dev demo`) and the sample platform it and the end-to-end tests run on: a
//! kube-sim cluster, the simulated AWS provider, the fixture charts, and the real terraform
//! and helm. Nothing here ships in the `upgrade-*` commands: they depend on neither the
//! simulator nor the simulated provider.

mod bluegreen;
pub mod demo;
pub mod sample;

//! Integration tests of kube-sim: the real kubectl and helm against it, and kube-rs.

mod cli;
mod cloud;
mod controllers;
mod helm;
mod kube_rs;
mod kubectl;
mod support;

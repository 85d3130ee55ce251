//! Typed Terraform API (in progress).

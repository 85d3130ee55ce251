//! Typed Helm API (in progress).

//! The checks, their reports, error messages and the generated reference. One test binary for the crate.

mod checks;
mod docs;
mod errors;
mod reports;

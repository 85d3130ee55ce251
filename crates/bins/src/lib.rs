//! The per-component upgrade commands, as a library: argument structs, one exit-code policy
//! ([`exit`]), and one module per command whose `run` the thin `src/bin/*.rs` mains call.
//! Tests call the same functions.

pub mod cli;
pub mod commands;
pub mod demo;
pub mod exit;
pub mod platform;
pub mod progress;
pub mod replacer;
pub mod run;
pub mod sample;
pub mod session;

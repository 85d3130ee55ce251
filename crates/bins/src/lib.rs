//! The per-component upgrade commands' shared code (argument structs, exit codes) and the demo.

pub mod demo;

//! Integration tests: one binary, a module per area (link time matters on two cores).

mod apiserver;
mod cli;
mod common;
mod delivery;
mod dumps;
mod fake_slack;
mod faults;
mod fuzz_inputs;
mod llm;
#[cfg(feature = "matrix")]
mod matrix;
mod perf;
mod policy;
mod reader;
mod replay;
mod server;
mod slack;
#[cfg(feature = "matrix")]
mod synapse;

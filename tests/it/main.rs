//! Integration tests: one binary, a module per area (link time matters on two cores).

mod apiserver;
mod cli;
mod clusters;
mod common;
mod delivery;
mod drain;
mod dumps;
mod fake_slack;
mod faults;
mod fuzz_inputs;
mod layout;
mod leader;
mod llm;
#[cfg(feature = "matrix")]
mod matrix;
mod names;
mod perf;
mod policy;
mod reader;
mod replay;
mod server;
mod slack;
// The generated namespaces the benchmarks read too: one source file, shared with the benchmark crate.
#[cfg(feature = "matrix")]
mod synapse;
#[path = "../../bench/src/synthetic.rs"]
#[allow(dead_code)]
mod synthetic;
mod tokens;
mod views;

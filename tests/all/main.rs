//! wasp's integration tests, in one binary to save link time. One module per area.

mod admin;
mod broker;
mod caps;
mod chaos;
mod cli;
mod common;
mod conformance;
mod containment_kafka;
mod eos_v2;
mod errors;
mod examples;
mod faults;
mod fuzz_manifest;
mod golden;
mod join;
mod join_kafka;
mod kafka;
mod malformed;
mod operators;
mod postgres;
mod recovery;
mod registry;
mod standby;
mod state;
mod swap;
mod swap_kafka;

//! wasp: a WebAssembly stream processor. A TOML manifest describes a topology of Kafka
//! Streams operators; the user's functions are sandboxed WebAssembly components.
//!
//! The folders say where a change goes: [`manifest`] parses, [`topology`] builds the graph,
//! [`operators`] run steps on batches, [`wasm`] loads and calls plugins, [`runtime`] drives
//! tasks, [`io`] is the seam to local files and Kafka, and [`admin`] serves health, metrics,
//! plugin versions and reloads over HTTP.

pub mod admin;
pub mod app;
pub mod io;
pub mod manifest;
pub mod operators;
pub mod record;
pub mod runtime;
pub mod state;
pub mod topology;
pub mod wasm;

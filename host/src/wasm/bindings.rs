//! The one `bindgen!` of the host, for the `wasp:plugin/plugin` world (every kind). Callers
//! use the re-exports below.

wasmtime::component::bindgen!({
    world: "wasp:plugin/plugin@0.1.0",
    path: "../wit",
});

pub use exports::wasp::plugin::{filter, flat_mapper, for_each, key_selector, key_value_mapper, value_mapper};
pub use wasp::plugin::types::{Batch, CallError, Output as WasmOutput, RecordError, Verdicts};
pub use wasp::plugin::{config, log, metrics};

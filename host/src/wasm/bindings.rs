//! The one `bindgen!` of the host, for the `wasp:plugin/plugin` world (every kind). Callers
//! use the re-exports below.

wasmtime::component::bindgen!({
    world: "wasp:plugin/plugin@0.1.0",
    path: "../wit",
    with: {
        "wasp:plugin/state.key-value-store": crate::wasm::host::state::KvHandle,
        "wasp:plugin/state.window-store": crate::wasm::host::state::WindowHandle,
        "wasp:plugin/state.session-store": crate::wasm::host::state::SessionHandle,
    },
});

pub use exports::wasp::plugin::{
    aggregator, filter, flat_mapper, for_each, foreign_key_extractor, key_selector, key_value_mapper, processor,
    reducer, timestamp_extractor, value_joiner, value_mapper,
};
pub use wasp::plugin::types::{Batch, CallError, Output as WasmOutput, RecordError, Verdicts};
pub use wasp::plugin::{config, log, metrics, state};

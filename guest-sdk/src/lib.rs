//! The wasp guest SDK: write stream-processing functions in plain Rust and build them into
//! WebAssembly components that the wasp host runs.
//!
//! ```text
//! use wasp::Json;
//!
//! #[derive(serde::Deserialize)]
//! struct Click { user_agent: String }
//!
//! /// Keeps clicks that do not come from a crawler.
//! #[wasp::filter]
//! fn not_a_bot(Json(click): Json<Click>) -> bool {
//!     !click.user_agent.contains("bot")
//! }
//! ```
//!
//! Each attribute turns one function into one exported kind of the `wasp:plugin@0.1.0` WIT
//! package: [`filter`], [`map_values`], [`map`], [`flat_map`], [`flat_map_values`],
//! [`select_key`] and [`for_each`]. A function takes the value, or the key and the value, and
//! each parameter's type says how the bytes are read ([`FromBytes`]): `&[u8]` and `&str` borrow
//! the raw bytes, [`Json<T>`] parses JSON with serde, `Option<…>` accepts an absent key or a
//! tombstone. Results are written back through [`IntoBytes`]. A function may return
//! `Result<_, E>` with `E: Display`: an `Err` fails that record alone, and the record follows
//! the step's error policy on the host. A panic is a trap: it fails the whole batch.
//!
//! Start a plugin with `wasp new rust NAME` and build it with `wasp build NAME` (see the
//! README): it compiles for `wasm32-unknown-unknown`, and wasp makes the module a component.

mod batch;
mod bytes;
pub mod config;
mod context;
pub mod log;
pub mod metrics;
pub mod state;

pub use batch::{BatchBuilder, BatchView, Header, Record};
pub use bytes::{FromBytes, IntoBytes, Json};
pub use context::{Context, Timer};
pub use wasp_guest_macros::{
    aggregate, filter, flat_map, flat_map_values, for_each, foreign_key, map, map_values, processor, reduce,
    select_key, timestamp, value_joiner,
};

/// The WIT package version this SDK builds against. The host refuses plugins of another
/// major version with a message that names both.
pub const WIT_VERSION: &str = "0.1.0";

/// Why one record could not be handled. It reaches the host as a `record-error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// A short machine-readable reason such as `bad-input`.
    pub code: String,
    /// What a person reads in the dead-letter header or the log.
    pub message: String,
}

impl RecordError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { code: code.into(), message: message.into() }
    }
}

impl core::fmt::Display for RecordError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// Bindings to the host interfaces (`log`, `metrics`, `config`, `state`).
mod host_bindings {
    wit_bindgen::generate!({
        world: "wasp:plugin/sdk@0.1.0",
        path: "../wit",
    });
}

/// What the attribute macros expand to. Not a public API.
#[doc(hidden)]
pub mod __rt {
    pub use wit_bindgen;

    use crate::RecordError;
    pub use crate::batch::{BatchBuilder, BatchView};

    /// The error for a record whose function returned `Err(e)`.
    pub fn plugin_error<E: core::fmt::Display>(e: E) -> RecordError {
        RecordError::new("plugin-error", e.to_string())
    }

    /// A function's `Err(e)`, as the record error it stands for: a [`RecordError`] as it is
    /// (its code kept), any other error as `plugin-error` with its text. The macros call
    /// `(&Failure(e)).record_error()`, which picks [`KeepRecordError`] for a `RecordError`
    /// before [`DisplayRecordError`] (method resolution tries `&Failure<E>` before
    /// `&&Failure<E>`).
    pub struct Failure<E>(pub E);

    pub trait KeepRecordError {
        fn record_error(&self) -> RecordError;
    }

    impl KeepRecordError for Failure<RecordError> {
        fn record_error(&self) -> RecordError {
            self.0.clone()
        }
    }

    pub trait DisplayRecordError {
        fn record_error(&self) -> RecordError;
    }

    impl<E: core::fmt::Display> DisplayRecordError for &Failure<E> {
        fn record_error(&self) -> RecordError {
            plugin_error(&self.0)
        }
    }

    /// What a timer callback may return: `()` or `Result<(), E>`.
    pub trait TimerResult {
        fn into_result(self) -> Result<(), String>;
    }

    impl TimerResult for () {
        fn into_result(self) -> Result<(), String> {
            Ok(())
        }
    }

    impl<E: core::fmt::Display> TimerResult for Result<(), E> {
        fn into_result(self) -> Result<(), String> {
            self.map_err(|e| e.to_string())
        }
    }

    /// Whether `function` (from the manifest) selects the function called `declared`.
    pub fn selects(function: &str, declared: &str) -> bool {
        function.is_empty() || function == declared
    }
}

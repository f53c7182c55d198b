//! What a custom processor forwards, and the timers it asks for.

use crate::RecordError;
use crate::batch::BatchBuilder;
use crate::bytes::IntoBytes;

/// A timer a processor schedules in its `init` function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    pub name: String,
    pub interval_ms: u64,
    /// Fires on wall-clock time; otherwise on stream time (the largest event time seen).
    pub wall_clock: bool,
}

impl Timer {
    /// Fires each time stream time passes another `interval_ms`.
    pub fn stream_time(name: impl Into<String>, interval_ms: u64) -> Self {
        Self { name: name.into(), interval_ms, wall_clock: false }
    }

    /// Fires every `interval_ms` of wall-clock time.
    pub fn wall_clock(name: impl Into<String>, interval_ms: u64) -> Self {
        Self { name: name.into(), interval_ms, wall_clock: true }
    }
}

/// Where a processor's outputs go: `forward` continues down the pipeline, `forward_to` goes
/// to one of the step's named `children`.
pub struct Context {
    #[doc(hidden)]
    pub out: BatchBuilder,
    #[doc(hidden)]
    pub children: Vec<String>,
    origin: u32,
    timestamp: i64,
}

impl Context {
    #[doc(hidden)]
    pub fn new(records: usize, bytes: usize) -> Self {
        Self { out: BatchBuilder::with_capacity(records, bytes), children: Vec::new(), origin: 0, timestamp: 0 }
    }

    /// The event time of the record being processed (or the time a timer fired at).
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// Sends a record down the pipeline, at the current event time.
    pub fn forward(&mut self, key: impl IntoBytes, value: impl IntoBytes) -> Result<(), RecordError> {
        self.forward_at("", key, value, self.timestamp)
    }

    /// Sends a record to the child named `child` (a key of the step's `children`).
    pub fn forward_to(&mut self, child: &str, key: impl IntoBytes, value: impl IntoBytes) -> Result<(), RecordError> {
        self.forward_at(child, key, value, self.timestamp)
    }

    /// Sends a record to `child` ("" continues down the pipeline) with its own timestamp.
    pub fn forward_at(
        &mut self,
        child: &str,
        key: impl IntoBytes,
        value: impl IntoBytes,
        timestamp: i64,
    ) -> Result<(), RecordError> {
        self.out.push(self.origin, timestamp, |b| key.write_to(b), |b| value.write_to(b))?;
        self.children.push(child.to_owned());
        Ok(())
    }

    #[doc(hidden)]
    pub fn __begin(&mut self, origin: u32, timestamp: i64) -> (usize, usize, usize) {
        self.origin = origin;
        self.timestamp = timestamp;
        let (records, bytes) = self.out.checkpoint();
        (records, bytes, self.children.len())
    }

    #[doc(hidden)]
    pub fn __fail(&mut self, (records, bytes, children): (usize, usize, usize), origin: u32, e: RecordError) {
        self.out.rollback((records, bytes));
        self.children.truncate(children);
        self.out.fail(origin, e);
    }
}

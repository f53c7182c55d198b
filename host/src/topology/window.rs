//! Window definitions, as the manifest's `windowed_by` gives them.

/// Which windows a record falls into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowSpec {
    /// Fixed-size windows aligned to the epoch, advancing by `advance` (tumbling when
    /// `advance == size`).
    Time { size: i64, advance: i64, grace: i64 },
    /// Windows of `difference` around records (Kafka Streams' `SlidingWindows`).
    Sliding { difference: i64, grace: i64 },
    /// Activity separated by gaps longer than `gap`.
    Session { gap: i64, grace: i64 },
}

impl WindowSpec {
    pub fn grace(&self) -> i64 {
        match *self {
            Self::Time { grace, .. } | Self::Sliding { grace, .. } | Self::Session { grace, .. } => grace,
        }
    }

    /// How long after a window's end its state is kept (for later records to find), beyond
    /// the grace period. A time window takes no record once closed. A sliding window is the
    /// left neighbour of records up to `difference` later. A session can be joined by a record
    /// within `gap` of its end that also touches a session still open, so two gaps (Kafka
    /// Streams keeps `gap + grace`, rounded up to whole store segments).
    pub fn retention_after_end(&self) -> i64 {
        match *self {
            Self::Time { .. } => 0,
            Self::Sliding { difference, .. } => difference + 1,
            Self::Session { gap, .. } => 2 * gap,
        }
    }
}

//! State stores for custom processors (`#[wasp::processor]`): the host keeps them (RocksDB or
//! memory, with changelogs, restored on start), a processor opens the ones its manifest step
//! names in `stores`. Keys and values are bytes; every scan takes a `limit`, and the host caps
//! it at 10 000 entries.
//!
//! ```text
//! let totals = wasp::state::KeyValueStore::open("totals")?;
//! let seen = totals.get(b"alice")?;
//! totals.put(b"alice", b"42")?;
//! ```

pub use crate::host_bindings::wasp::plugin::state::{
    Entry, KeyValueStore, SessionEntry, SessionStore, StateError, WindowStore, WindowedEntry,
};

//! `wasp:plugin/log`: guest logs into `tracing`, tagged with the plugin.

use super::HostState;
use crate::wasm::bindings::log::{Host, Level};

/// The longest log line a guest can make the host keep.
pub const MAX_LOG_LINE_BYTES: usize = 4096;

impl Host for HostState {
    fn log(&mut self, level: Level, mut message: String) {
        if message.len() > MAX_LOG_LINE_BYTES {
            let mut cut = MAX_LOG_LINE_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let plugin = &*self.plugin;
        match level {
            Level::Trace => tracing::trace!(target: "wasp::plugin", plugin, "{message}"),
            Level::Debug => tracing::debug!(target: "wasp::plugin", plugin, "{message}"),
            Level::Info => tracing::info!(target: "wasp::plugin", plugin, "{message}"),
            Level::Warn => tracing::warn!(target: "wasp::plugin", plugin, "{message}"),
            Level::Error => tracing::error!(target: "wasp::plugin", plugin, "{message}"),
        }
    }
}

//! `wasp:plugin/log`: guest logs into `tracing`, tagged with the plugin. Both what a line
//! makes the host keep and how many lines an instance may write are capped:
//! [`MAX_LOG_LINE_BYTES`] (longer lines are cut) and [`MAX_LOG_LINES_PER_SECOND`] (lines past
//! it are dropped, counted, and summed up in one line when the second is over). Both are
//! counted in `wasp_plugin_log_truncated_total` and `wasp_plugin_log_dropped_total`.

use std::time::{Duration, Instant};

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, WasmStr};

use super::HostState;
use crate::wasm::bindings::log::{Host, Level};

/// The longest log line a guest can make the host keep.
pub const MAX_LOG_LINE_BYTES: usize = 4096;
/// The most log lines one plugin instance writes per second; a plugin that logs every
/// record of a busy stream would otherwise flood the host's log.
pub const MAX_LOG_LINES_PER_SECOND: u32 = 200;

/// An instance's lines in the current second.
#[derive(Debug, Default)]
pub struct LogBudget {
    since: Option<Instant>,
    lines: u32,
    dropped: u64,
}

impl LogBudget {
    /// Whether one more line may be written now, and how many lines the second that just
    /// ended dropped (0 while the second lasts).
    fn admit(&mut self, now: Instant) -> (bool, u64) {
        let mut ended = 0;
        if self.since.is_none_or(|s| now.duration_since(s) >= Duration::from_secs(1)) {
            ended = std::mem::take(&mut self.dropped);
            self.since = Some(now);
            self.lines = 0;
        }
        if self.lines >= MAX_LOG_LINES_PER_SECOND {
            self.dropped += 1;
            return (false, ended);
        }
        self.lines += 1;
        (true, ended)
    }
}

impl Host for HostState {
    fn log(&mut self, level: Level, message: String) {
        let (line, cut) = capped(&message);
        self.write_log(level, line, cut);
    }
}

/// `message` cut at [`MAX_LOG_LINE_BYTES`] (on a character boundary), and whether it was.
fn capped(message: &str) -> (&str, bool) {
    let at = message.floor_char_boundary(MAX_LOG_LINE_BYTES);
    (&message[..at], at < message.len())
}

impl HostState {
    /// Writes a guest's line (already [`capped`]; `cut` says it was, and it is counted and
    /// marked), dropped past [`MAX_LOG_LINES_PER_SECOND`].
    fn write_log(&mut self, level: Level, message: &str, cut: bool) {
        let plugin = &*self.plugin;
        let (admitted, dropped) = self.log.admit(Instant::now());
        if dropped > 0 {
            tracing::warn!(
                target: "wasp::plugin",
                plugin,
                dropped,
                "log lines over the cap of {MAX_LOG_LINES_PER_SECOND} per second were dropped"
            );
        }
        if !admitted {
            self.metrics.registry.log_capped(plugin, true, 1);
            return;
        }
        if cut {
            self.metrics.registry.log_capped(plugin, false, 1);
        }
        let more = if cut { "…" } else { "" };
        match level {
            Level::Trace => tracing::trace!(target: "wasp::plugin", plugin, "{message}{more}"),
            Level::Debug => tracing::debug!(target: "wasp::plugin", plugin, "{message}{more}"),
            Level::Info => tracing::info!(target: "wasp::plugin", plugin, "{message}{more}"),
            Level::Warn => tracing::warn!(target: "wasp::plugin", plugin, "{message}{more}"),
            Level::Error => tracing::error!(target: "wasp::plugin", plugin, "{message}{more}"),
        }
    }
}

/// Defines `log` over the bindings' version (which copies the whole line out of the guest
/// before it is cut): the line is read where the guest keeps it, and only what the host logs
/// is formatted. The linker must allow shadowing.
pub(super) fn link_in_place(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    linker.instance("wasp:plugin/log@0.1.0")?.func_wrap(
        "log",
        |mut store: StoreContextMut<'_, HostState>, (level, message): (Level, WasmStr)| {
            // Not UTF-8: the call traps, as the bindings' lifting would.
            let text = message.to_str(&store)?;
            // The text borrows the store (the guest's memory): what is kept is copied out
            // first, and only that.
            let (line, cut) = capped(&text);
            let line = line.to_owned();
            store.data_mut().write_log(level, &line, cut);
            Ok(())
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_cap_admits_a_second_s_worth_and_reports_the_dropped_when_it_ends() {
        let mut b = LogBudget::default();
        let t = Instant::now();
        let admitted = (0..MAX_LOG_LINES_PER_SECOND + 50).filter(|_| b.admit(t).0).count();
        assert_eq!(admitted as u32, MAX_LOG_LINES_PER_SECOND);
        assert_eq!(b.admit(t + Duration::from_millis(1001)), (true, 50));
        assert_eq!(b.admit(t + Duration::from_millis(1002)), (true, 0));
    }
}

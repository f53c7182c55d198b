//! The file-watch trigger of hot swap: when a plugin's component file changes, the plugin is
//! reloaded ([`PluginDirectory::reload`]) on the watcher's own thread, after the file has been
//! quiet for [`SETTLE`] (a copy in progress is not compiled half-written; a half-written file
//! that slips through fails validation, and the next change tries again).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use anyhow::Context;
use notify::{RecursiveMode, Watcher};

use super::PluginDirectory;

/// How long a file must stay unchanged before it is reloaded.
pub const SETTLE: Duration = Duration::from_millis(250);

/// Watches every plugin file while it lives.
pub struct PluginWatcher {
    _watcher: notify::RecommendedWatcher,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for PluginWatcher {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Starts watching the directories of every plugin's file. Files are replaced in many ways
/// (written in place, renamed over, deleted and created), so the directory is watched, not the
/// file.
pub fn watch(plugins: Arc<PluginDirectory>) -> anyhow::Result<PluginWatcher> {
    let by_path: BTreeMap<PathBuf, String> = plugins.paths().into_iter().map(|(n, p)| (absolute(&p), n)).collect();
    let (events_tx, events) = channel::<notify::Result<notify::Event>>();
    let mut watcher = notify::recommended_watcher(events_tx).context("starting the plugin file watcher")?;
    let dirs: BTreeSet<PathBuf> = by_path.keys().filter_map(|p| p.parent().map(Path::to_path_buf)).collect();
    for dir in &dirs {
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .with_context(|| format!("watching {} for plugin changes", dir.display()))?;
    }
    let (stop_tx, stop) = channel::<()>();
    let thread = std::thread::Builder::new().name("wasp-watch".into()).spawn(move || {
        let mut dirty: BTreeMap<String, Instant> = BTreeMap::new();
        loop {
            if let Err(std::sync::mpsc::TryRecvError::Disconnected) = stop.try_recv() {
                return;
            }
            match events.recv_timeout(SETTLE / 5) {
                Ok(Ok(event)) => {
                    if matches!(event.kind, notify::EventKind::Access(_)) {
                        continue;
                    }
                    for path in &event.paths {
                        if let Some(name) = by_path.get(&absolute(path)) {
                            dirty.insert(name.clone(), Instant::now());
                        }
                    }
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "plugin file watcher"),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            let settled: Vec<String> =
                dirty.iter().filter(|(_, t)| t.elapsed() >= SETTLE).map(|(n, _)| n.clone()).collect();
            for name in settled {
                dirty.remove(&name);
                tracing::info!(plugin = %name, "plugin file changed; reloading");
                // A rejection is logged and shown by the admin endpoint; the old version runs on.
                let _ = plugins.reload(&name, None);
            }
        }
    })?;
    tracing::info!(dirs = dirs.len(), "watching plugin files for changes");
    Ok(PluginWatcher { _watcher: watcher, stop: Some(stop_tx), thread: Some(thread) })
}

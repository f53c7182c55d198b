//! The host side of the WIT imports, one file per interface, each on the narrow
//! [`HostState`] of one plugin instance. WASI is linked too, for components (Python,
//! JavaScript) that import it, with nothing granted unless the manifest says so.

mod config;
pub mod log;
pub mod metrics;
pub mod state;

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, StoreLimits};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::Plugin;

/// What one plugin instance's host functions see.
pub struct HostState {
    /// The plugin's name in the manifest, for logs and metric labels.
    pub plugin: Arc<str>,
    pub config: Arc<Vec<(String, String)>>,
    pub metrics: metrics::PluginMetrics,
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limits: StoreLimits,
    /// A custom processor's stores (other kinds have none).
    pub stores: Option<state::SharedStores>,
    /// The instance's log lines this second, against the rate cap.
    pub log: log::LogBudget,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// `types` has no functions; the trait is empty.
impl super::bindings::wasp::plugin::types::Host for HostState {}

/// The linker every instance is prepared with.
pub fn linker(engine: &Engine) -> anyhow::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    Plugin::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;
    // Functions whose strings are read in place, under their caps, over the bindings'.
    linker.allow_shadowing(true);
    metrics::link_in_place(&mut linker)?;
    log::link_in_place(&mut linker)?;
    linker.allow_shadowing(false);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    Ok(linker)
}

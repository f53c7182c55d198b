//! `wasp:plugin/config`: the plugin's `config` table from the manifest.

use super::HostState;
use crate::wasm::bindings::config::Host;

impl Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        self.config.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone())
    }

    fn entries(&mut self) -> Vec<(String, String)> {
        self.config.as_ref().clone()
    }
}

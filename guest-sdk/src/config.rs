//! The plugin's `config` table from the manifest.

use crate::host_bindings::wasp::plugin::config as host;

/// The setting `key`: strings as written, other TOML values as JSON text.
pub fn get(key: &str) -> Option<String> {
    host::get(key)
}

/// All settings.
pub fn entries() -> Vec<(String, String)> {
    host::entries()
}

/// The setting `key` parsed as JSON into `T` (a TOML string is read as a JSON string).
pub fn get_json<T: serde::de::DeserializeOwned>(key: &str) -> Option<Result<T, serde_json::Error>> {
    let raw = get(key)?;
    Some(serde_json::from_str(&raw).or_else(|_| serde_json::from_value(serde_json::Value::String(raw))))
}

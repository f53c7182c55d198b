//! Compiled components on disk, keyed by the component's content digest and the engine's
//! compatibility hash, so a changed file or a new wasmtime never loads a stale artifact.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use anyhow::Context;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

#[derive(Clone)]
pub struct ComponentCache {
    dir: Option<PathBuf>,
    engine_tag: String,
}

/// The hex SHA-256 of a component's bytes: its version identity.
pub fn digest(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

impl ComponentCache {
    pub fn new(dir: Option<PathBuf>, engine: &Engine) -> Self {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        Self { dir, engine_tag: format!("{:016x}", h.finish()) }
    }

    /// The component for `bytes`, from the cache when present, else compiled and stored.
    /// Returns whether it came from the cache.
    pub fn get(&self, engine: &Engine, bytes: &[u8], digest: &str) -> anyhow::Result<(Component, bool)> {
        let Some(dir) = &self.dir else {
            return Ok((Component::new(engine, bytes)?, false));
        };
        let path = dir.join(format!("{digest}-{}.cwasm", self.engine_tag));
        if path.exists() {
            // SAFETY: the file was written by `Component::serialize` of an engine with the same
            // compatibility hash (it is in the name) under a content-addressed name, and the
            // cache directory belongs to this user.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(c) => return Ok((c, true)),
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable cached component"),
            }
        }
        let component = Component::new(engine, bytes)?;
        let write = || -> anyhow::Result<()> {
            std::fs::create_dir_all(dir)?;
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, component.serialize()?)?;
            std::fs::rename(&tmp, &path)?;
            Ok(())
        };
        if let Err(e) = write().with_context(|| format!("writing {}", path.display())) {
            tracing::warn!(error = %format!("{e:#}"), "cannot cache the compiled component");
        }
        Ok((component, false))
    }
}

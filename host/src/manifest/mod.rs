//! The TOML pipeline manifest: its schema, parsing with spans, and the errors that name the
//! file, line, column and key.
//!
//! This module is pure parsing. Cross-references (a step naming a plugin, a pipeline reading a
//! topic) are checked when the topology is built, with the same [`ManifestError`].

mod duration;
mod error;
mod schema;
pub mod testfile;

use std::path::{Path, PathBuf};

pub use duration::parse_duration;
pub use error::{ManifestError, SourceText, closest};
pub use schema::*;

/// A parsed manifest and where it came from.
#[derive(Debug)]
pub struct Loaded {
    pub manifest: Manifest,
    pub source: SourceText,
}

impl Loaded {
    /// The directory relative paths in the manifest are resolved against.
    pub fn base_dir(&self) -> PathBuf {
        self.source.path.parent().map(Path::to_path_buf).unwrap_or_default()
    }

    /// Resolves a path written in the manifest.
    pub fn resolve(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() { p.to_path_buf() } else { self.base_dir().join(p) }
    }
}

/// Reads and parses the manifest at `path`.
pub fn load(path: &Path) -> Result<Loaded, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|e| ManifestError::io(path, &e))?;
    parse(path, text)
}

/// Parses manifest text; `path` is used for messages and relative paths.
pub fn parse(path: &Path, text: String) -> Result<Loaded, ManifestError> {
    let source = SourceText::new(path.to_path_buf(), text);
    let manifest: Manifest = toml::from_str(&source.text).map_err(|e| source.from_toml(&e))?;
    if *manifest.version.get_ref() != CURRENT_VERSION {
        return Err(source.error(
            manifest.version.span(),
            "version",
            format!(
                "manifest version {} is not supported; this wasp reads version {CURRENT_VERSION}",
                manifest.version.get_ref()
            ),
        ));
    }
    Ok(Loaded { manifest, source })
}

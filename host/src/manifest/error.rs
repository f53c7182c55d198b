use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A manifest mistake, located.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ManifestError {
    pub file: PathBuf,
    /// 1-based; 0 when the error has no position (e.g. the file cannot be read).
    pub line: usize,
    pub column: usize,
    /// The dotted key the error is about, when known.
    pub key: Option<String>,
    pub message: String,
    /// A hint such as "did you mean `parse`?".
    pub help: Option<String>,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        write!(f, ": ")?;
        if let Some(key) = &self.key {
            write!(f, "`{key}`: ")?;
        }
        write!(f, "{}", self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

impl ManifestError {
    pub fn io(path: &Path, e: &std::io::Error) -> Self {
        Self {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            key: None,
            message: format!("cannot read the manifest: {e}"),
            help: None,
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// The manifest text, to turn byte spans into lines and columns.
#[derive(Debug, Clone)]
pub struct SourceText {
    pub path: PathBuf,
    pub text: String,
}

impl SourceText {
    pub fn new(path: PathBuf, text: String) -> Self {
        Self { path, text }
    }

    /// 1-based line and column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
        (line, column)
    }

    /// An error at `span` about `key`.
    pub fn error(&self, span: Range<usize>, key: impl Into<String>, message: impl Into<String>) -> ManifestError {
        let (line, column) = self.line_col(span.start);
        let key = key.into();
        ManifestError {
            file: self.path.clone(),
            line,
            column,
            key: (!key.is_empty()).then_some(key),
            message: message.into(),
            help: None,
        }
    }

    /// Translates a TOML or schema error, adding a did-you-mean for unknown fields and variants.
    pub fn from_toml(&self, e: &toml::de::Error) -> ManifestError {
        let message = e.message().trim().to_owned();
        let span = e.span().unwrap_or(0..0);
        let key = self.key_at(span.start);
        let mut err = self.error(span, key, message.clone());
        if let Some(help) = did_you_mean_from_message(&message) {
            err = err.with_help(help);
        }
        err
    }
}

impl SourceText {
    /// The dotted key a byte offset belongs to: the enclosing `[table]` header plus the key
    /// on that line (`pipelines.p.on_error`). TOML errors give a span but no key path.
    pub fn key_at(&self, offset: usize) -> String {
        let offset = offset.min(self.text.len());
        let line_start = self.text[..offset].rfind('\n').map_or(0, |i| i + 1);
        let line_end = self.text[offset..].find('\n').map_or(self.text.len(), |i| offset + i);
        let line = &self.text[line_start..line_end];
        let table = self.text[..line_start]
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with('['))
            .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned())
            .unwrap_or_default();
        let key = match line.split_once('=') {
            Some((k, _)) if !line.trim_start().starts_with('[') => k.trim().trim_matches('"').to_owned(),
            _ if line.trim_start().starts_with('[') => return String::new(),
            _ => line.trim().to_owned(),
        };
        match (table.is_empty(), key.is_empty()) {
            (true, _) => key,
            (false, true) => table,
            (false, false) => format!("{table}.{key}"),
        }
    }
}

/// serde says "unknown field `topc`, expected one of `topic`, `key`": suggest the closest.
fn did_you_mean_from_message(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `").or_else(|| message.strip_prefix("unknown variant `"))?;
    let (wrong, expected) = rest.split_once('`')?;
    let options: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    closest(wrong, options.iter().copied()).map(|s| format!("did you mean `{s}`?"))
}

/// The option closest to `wrong`, if any is close enough to be a typo.
pub fn closest<'a>(wrong: &str, options: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    options
        .into_iter()
        .filter(|o| *o != wrong)
        .map(|o| (strsim::jaro_winkler(wrong, o), o))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, o)| o)
}

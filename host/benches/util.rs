//! Helpers both bench binaries (`wasp-bench`, `wasp-peers`) print with.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// `nproc` and the CPU model.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_owned()))
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{nproc} CPUs (nproc), {model}")
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A number from the environment, else `default`.
pub fn env_usize(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(v) => v.parse().with_context(|| format!("{name}={v} is not a number")),
        Err(_) => Ok(default),
    }
}

/// The word count on a broker, as `make bench` runs it (split-words, group_by word-key,
/// count), from topic `input` to topic `output`, with extra client `properties`; written to
/// `dir/<id>.toml`.
pub struct BrokerWordCount<'a> {
    pub id: &'a str,
    pub bootstrap: &'a str,
    pub input: &'a str,
    pub output: &'a str,
    pub threads: usize,
    pub properties: &'a [(&'a str, &'a str)],
}

impl BrokerWordCount<'_> {
    pub fn write(&self, dir: &Path, plugins: &Path) -> Result<PathBuf> {
        let Self { id, bootstrap, input, output, threads, .. } = self;
        let properties: String = self.properties.iter().map(|(k, v)| format!("\"{k}\" = \"{v}\"\n")).collect();
        let text = format!(
            r#"version = 1
[application]
id = "{id}"
threads = {threads}
state_dir = "{state}"
[application.kafka]
bootstrap_servers = "{bootstrap}"
[application.kafka.properties]
"auto.offset.reset" = "earliest"
{properties}[streams.lines]
topic = "{input}"
[plugins.split-words]
path = "{p}/split-words.wasm"
[plugins.word-key]
path = "{p}/word-key.wasm"
[pipelines.wordcount]
from = "lines"
to = "{output}"
steps = [
  {{ op = "flat_map_values", plugin = "split-words" }},
  {{ op = "group_by", plugin = "word-key" }},
  {{ op = "count" }},
]
"#,
            state = dir.join(format!("{id}-state")).display(),
            p = plugins.display(),
        );
        let path = dir.join(format!("{id}.toml"));
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}

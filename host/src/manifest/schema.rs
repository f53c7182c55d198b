//! The manifest schema, version 1. Every table denies unknown fields, so a typo is an error
//! that names the key, never a silently ignored setting.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use toml::Spanned;

/// The manifest version this wasp reads.
pub const CURRENT_VERSION: u32 = 1;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The manifest format version; must be 1.
    pub version: Spanned<u32>,
    pub application: Application,
    /// Named streams: a topic and its formats, and in local mode where its records come from.
    #[serde(default)]
    pub streams: BTreeMap<Spanned<String>, StreamDef>,
    /// Named tables: a topic read as a table (Kafka Streams' `KTable`), each key's latest
    /// value kept in a store whose changelog is the topic itself.
    #[serde(default)]
    pub tables: BTreeMap<Spanned<String>, StreamDef>,
    /// Named global tables (Kafka Streams' `GlobalKTable`): every instance keeps the whole
    /// topic, all partitions, restored before any task runs and kept up to date meanwhile.
    #[serde(default)]
    pub global_tables: BTreeMap<Spanned<String>, StreamDef>,
    #[serde(default)]
    pub plugins: BTreeMap<Spanned<String>, PluginDef>,
    /// State stores, named by `store` in aggregation steps. A step without `store` gets one
    /// with the defaults, named after the step.
    #[serde(default)]
    pub stores: BTreeMap<Spanned<String>, StoreDef>,
    #[serde(default)]
    pub pipelines: BTreeMap<Spanned<String>, PipelineDef>,
}

impl Manifest {
    /// Every declared stream and table: the section it is in (`streams`, `tables` or
    /// `global_tables`), its name and definition.
    pub fn declared(&self) -> impl Iterator<Item = (&'static str, &Spanned<String>, &StreamDef)> {
        let streams = self.streams.iter().map(|(k, d)| ("streams", k, d));
        let tables = self.tables.iter().map(|(k, d)| ("tables", k, d));
        streams.chain(tables).chain(self.global_tables.iter().map(|(k, d)| ("global_tables", k, d)))
    }

    /// The topic of the stream or table declared as `name`, else `name` itself (a topic).
    pub fn topic_of(&self, name: &str) -> String {
        self.declared()
            .find(|(_, k, _)| k.get_ref() == name)
            .map_or_else(|| name.to_owned(), |(_, k, s)| s.topic_or(k.get_ref()).to_owned())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Application {
    /// The application id: the consumer group, and the prefix of internal topics.
    pub id: Spanned<String>,
    /// Records per plugin call (default 1024).
    pub batch_size: Option<Spanned<usize>>,
    /// Stream threads in this process (Kafka Streams' `num.stream.threads`; default: the
    /// number of cores). Each owns its tasks, its consumer (one group member) and producer.
    pub threads: Option<Spanned<usize>>,
    /// Kafka client settings. Without them wasp runs in local mode.
    pub kafka: Option<KafkaDef>,
    /// Where persistent stores keep their files (`<state_dir>/<application-id>/<task>/<store>`;
    /// default `$WASP_STATE_DIR`, else `~/.local/state/wasp`). Relative to the manifest.
    pub state_dir: Option<Spanned<String>>,
    /// How often outputs are flushed, state committed and input offsets committed (default 1000).
    pub commit_interval_ms: Option<Spanned<u64>>,
    /// Replace a plugin when its file changes (default: on in local mode, off on Kafka).
    pub watch_plugins: Option<bool>,
    /// Plugin instances the process may hold at once (the pooling allocator's size; default
    /// 256). Each task holds one per plugin step, and a swap briefly holds two.
    pub max_instances: Option<Spanned<u32>>,
    /// The admin HTTP endpoint (`/health`, `/ready`, `/metrics`, `/plugins`, reloads).
    pub admin: Option<AdminDef>,
    /// A task that reads several topics takes their records in timestamp order; when one of
    /// them has nothing buffered and the source cannot tell whether more is coming (Kafka),
    /// it waits this long before going on with the others (Kafka Streams'
    /// `max.task.idle.ms`; default 0). Local files are always waited for.
    pub max_task_idle_ms: Option<Spanned<u64>>,
    /// What a crash may do to output topics (Kafka Streams' `processing.guarantee`; default
    /// `at_least_once`). State updates apply once in every mode.
    pub processing_guarantee: Option<Spanned<ProcessingGuarantee>>,
    /// A record read whose key, value and headers together are larger fails to deserialize
    /// and follows its pipeline's error policy (default 1 MiB, Kafka's `message.max.bytes`).
    pub max_record_bytes: Option<Spanned<usize>>,
    /// Warm copies of each task's stores kept by this many other instances, from the
    /// changelogs (Kafka Streams' `num.standby.replicas`; default 0). Needs an address per
    /// instance (the admin endpoint's), which the instances announce.
    pub num_standby_replicas: Option<Spanned<usize>>,
    /// The schema registry that `avro`, `protobuf` and `json_schema` topics use.
    pub schema_registry: Option<SchemaRegistryDef>,
}

/// `[application] processing_guarantee`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessingGuarantee {
    /// Outputs written after the last commit are written again after a crash.
    #[default]
    AtLeastOnce,
    /// Exactly-once output on any broker, without transactions: each record carries its
    /// lineage, and a restarted task does not write again what it wrote (`runtime::eos`).
    ExactlyOnce,
    /// Kafka transactions (Kafka Streams' `exactly_once_v2`), on clusters that support them:
    /// one transactional producer per stream thread; a commit sends the outputs, changelogs
    /// and input offsets in one transaction, and readers of internal topics read committed
    /// records only. A broker without transactions is an error at start.
    ExactlyOnceV2,
}

/// The admin HTTP endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminDef {
    /// The address to listen on (default `127.0.0.1:9464`; `127.0.0.1:0` picks a free port).
    pub bind: Option<Spanned<String>>,
    /// The token reload requests must carry (`Authorization: Bearer …`). Without it (here or
    /// in `$WASP_ADMIN_TOKEN`) the endpoint refuses every reload.
    pub token: Option<String>,
    /// The `host:port` at which other instances and clients reach this endpoint (Kafka
    /// Streams' `application.server`): every instance of the application id announces it
    /// with its tasks, so any of them can say which instance hosts a key. Default: the
    /// address the endpoint listens on.
    pub application_server: Option<Spanned<String>>,
}

/// A state store's settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreDef {
    /// For processors: `key_value` (default), `window` or `session`. Aggregations decide
    /// the kind themselves; a declared kind must match.
    pub kind: Option<Spanned<StoreKind>>,
    /// RocksDB on disk (default), or memory (restored from the changelog at start).
    #[serde(default = "yes")]
    pub persistent: bool,
    /// Back the store with the compacted topic `<application-id>-<store>-changelog` (default on).
    #[serde(default = "yes")]
    pub changelog: bool,
    /// Entries not updated for this long, in stream time, read as absent (e.g. `"7d"`).
    pub ttl: Option<Spanned<Duration>>,
    /// The read cache, in bytes (default 10 MiB); pending writes past it force a commit, and
    /// the record cache holds at most this much.
    pub cache_bytes: Option<usize>,
    /// The record cache (Kafka Streams' caching, KIP-63): an aggregation's updates to a key
    /// collapse to the last one until the next commit (default off: every update is emitted).
    #[serde(default)]
    pub caching: bool,
    /// The format the store keeps its values in (Kafka Streams' `Materialized.withValueSerde`):
    /// `avro`, `protobuf` or `json_schema`, for the stores of `reduce`, `aggregate` and
    /// processors. Plugins read and write JSON; the host converts. An Avro store reads each
    /// value with the schema it was written with, resolved into `schema` (the reader's).
    pub value: Option<Spanned<FormatDef>>,
}

fn yes() -> bool {
    true
}

/// A duration: `"500ms"`, `"5s"`, `"30m"`, `"1h"`, `"1d"`, or an integer of milliseconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Duration {
    Millis(i64),
    Text(String),
}

/// A window for `windowed_by`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowDef {
    /// `tumbling`, `hopping`, `sliding` or `session`.
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    /// Tumbling and hopping windows: the window length.
    pub size: Option<Spanned<Duration>>,
    /// Hopping windows: how far each window starts after the one before.
    pub advance: Option<Spanned<Duration>>,
    /// Sliding windows: the largest time difference between records of one window.
    pub difference: Option<Spanned<Duration>>,
    /// Session windows: the inactivity gap that ends a session.
    pub gap: Option<Spanned<Duration>>,
    /// How long after a window ends records are still accepted (default 0).
    pub grace: Option<Spanned<Duration>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaDef {
    pub bootstrap_servers: Spanned<String>,
    /// Extra librdkafka properties for the consumer and producer, e.g. `"auto.offset.reset"`.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// How a key or value is read, shown and written (KSML's notations). `string`, `json` and
/// `bytes` cross into plugins as they are on the topic; `avro`, `protobuf`, `json_schema` and
/// `csv` are converted by the host: plugins see (and write) such a value as JSON, and the host
/// writes it to its topic in the topic's format. A plugin that wants an Avro or Protobuf
/// topic's own bytes declares the stream `bytes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    #[default]
    String,
    Json,
    Bytes,
    Avro,
    Protobuf,
    #[serde(alias = "jsonschema")]
    JsonSchema,
    Csv,
}

impl Format {
    /// Whether the host converts the format to and from JSON (it needs a codec).
    pub fn converted(self) -> bool {
        matches!(self, Self::Avro | Self::Protobuf | Self::JsonSchema | Self::Csv)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Json => "json",
            Self::Bytes => "bytes",
            Self::Avro => "avro",
            Self::Protobuf => "protobuf",
            Self::JsonSchema => "json_schema",
            Self::Csv => "csv",
        }
    }
}

/// A stream's `key` or `value`: a format's name (`value = "json"`), or a table that gives its
/// schema (`value = { format = "avro", schema = "schemas/order.avsc" }`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(
    untagged,
    expecting = "expected a format name (string, json, bytes, avro, protobuf, json_schema, csv) or a table `{ format = \"avro\", schema = \"…\" }`"
)]
pub enum FormatDef {
    Name(Format),
    Spec(FormatSpec),
}

impl FormatDef {
    pub fn format(&self) -> Format {
        match self {
            Self::Name(f) => *f,
            Self::Spec(s) => s.format,
        }
    }

    /// The table form (a bare name is a table with only `format`).
    pub fn spec(&self) -> FormatSpec {
        match self {
            Self::Name(f) => FormatSpec { format: *f, ..FormatSpec::default() },
            Self::Spec(s) => s.clone(),
        }
    }
}

/// A format with its schema and how it is registered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormatSpec {
    pub format: Format,
    /// The schema file, relative to the manifest: an Avro schema (`.avsc`), a `.proto` file or
    /// a compiled descriptor set (`.desc`, `.pb`, as `protoc --descriptor_set_out` writes),
    /// or a JSON Schema document. Avro read from the registry is resolved into this schema
    /// (the reader's); without it the writer's schema is used as it is.
    pub schema: Option<String>,
    /// Protobuf: the message's full name (`package.Message`); default the file's first.
    pub message: Option<String>,
    /// Whether values carry the schema registry's framing (Confluent's wire format: a magic
    /// byte and the schema id). Default: when `[application.schema_registry]` is set, for
    /// `avro`, `protobuf` and `json_schema`.
    pub registry: Option<bool>,
    /// The registry subject (default `<topic>-value`, or `<topic>-key`: the topic name
    /// strategy).
    pub subject: Option<String>,
    /// Register the schema under the subject when the first record is written (opt-in);
    /// otherwise records are written with the subject's latest registered schema.
    #[serde(default)]
    pub register: bool,
    /// CSV: the columns, in order; a row is read as a JSON object with these names (all
    /// strings). Without them a row is a JSON array of strings.
    #[serde(default)]
    pub columns: Vec<String>,
    /// CSV: the field delimiter (default `,`).
    pub delimiter: Option<char>,
    /// An Avro store without the registry: the schemas its values were written with before
    /// `schema` (older versions). Each stored value names its writer's schema by fingerprint
    /// (Avro's single-object encoding); a value written with one of these is resolved into
    /// `schema`.
    #[serde(default)]
    pub previous: Vec<String>,
}

/// `[application.schema_registry]`: a Confluent-compatible schema registry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaRegistryDef {
    /// The registry's base URL, e.g. `http://localhost:8081`.
    pub url: Spanned<String>,
    /// How long a request the registry cannot answer now (unreachable, or answering 5xx, 408
    /// or 429) is tried again before the record that needs it fails (default 30 s). While
    /// it stays away after that, such records fail at once, until it answers again.
    /// Under `exactly_once_v2` it may be at most half of `transaction.timeout.ms` (the
    /// default is lowered to that): a thread waiting longer would outlive its open
    /// transaction, which the broker then aborts.
    pub wait: Option<Spanned<Duration>>,
}

/// The layout of a local input or output file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// One value per line; no key; the timestamp is the line's position.
    #[default]
    Text,
    /// One JSON object per line: `{"key": …, "value": …, "timestamp": …, "headers": {…}}`.
    Jsonl,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamDef {
    /// The Kafka topic; the stream's name when left out.
    pub topic: Option<Spanned<String>>,
    /// The key's format (default `string`). Declared `string`, it must be UTF-8.
    pub key: Option<Spanned<FormatDef>>,
    /// The value's format (default `string`). Declared `string`, it must be UTF-8.
    pub value: Option<Spanned<FormatDef>>,
    /// Local mode: the file the topic's records are read from (relative to the manifest).
    pub file: Option<Spanned<String>>,
    #[serde(default)]
    pub file_format: FileFormat,
    /// Local mode: how many partitions the file is read as (default 1). Keyed records go to
    /// the partition of their key's murmur2 hash, as Kafka's partitioner sends them, the
    /// others in turn by line; the topics its pipelines write get as many, and each
    /// partition is a task that any stream thread may run. On Kafka the topic's own count
    /// decides.
    pub partitions: Option<Spanned<u32>>,
    /// Tables: the name of the store that keeps the table (default `<table>-store`), which
    /// queries name.
    pub store: Option<Spanned<String>>,
    /// Tables: keep each key's earlier values for this long of stream time, as a versioned
    /// store does (Kafka Streams' `persistentVersionedKeyValueStore`, KIP-889). A stream-table
    /// join then looks up the row as of each stream record's time, and may take a `grace`
    /// period; an update older than the key's latest goes into its history only.
    pub history_retention: Option<Spanned<Duration>>,
}

impl StreamDef {
    /// The topic of the stream or table declared as `name`.
    pub fn topic_or<'a>(&'a self, name: &'a str) -> &'a str {
        self.topic.as_ref().map_or(name, |t| t.get_ref())
    }

    /// The key's format (`string` when undeclared).
    pub fn key_format(&self) -> Format {
        self.key.as_ref().map(|f| f.get_ref().format()).unwrap_or_default()
    }

    /// The value's format (`string` when undeclared).
    pub fn value_format(&self) -> Format {
        self.value.as_ref().map(|f| f.get_ref().format()).unwrap_or_default()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginDef {
    /// The component file, relative to the manifest.
    pub path: Spanned<String>,
    /// Settings the plugin reads through the `config` interface.
    #[serde(default)]
    pub config: toml::Table,
    /// WASI capabilities; none unless granted here.
    #[serde(default)]
    pub grants: Grants,
    #[serde(default)]
    pub limits: Limits,
}

/// What a plugin may reach beyond its WIT contract. Everything is denied by default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Environment variables the plugin may read (their values come from wasp's environment).
    #[serde(default)]
    pub env: Vec<String>,
    /// Let the plugin write to wasp's stdout and stderr.
    #[serde(default)]
    pub stdio: bool,
    /// Let the plugin read the real wall and monotonic clocks (otherwise they read zero).
    #[serde(default)]
    pub clocks: bool,
    /// Directories the plugin may read, as `{ host = "…", guest = "/data" }`.
    #[serde(default)]
    pub dirs: Vec<DirGrant>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirGrant {
    pub host: String,
    pub guest: String,
}

/// `transaction.timeout.ms` under `exactly_once_v2` when the Kafka properties set none
/// (Kafka Streams' default under exactly-once).
pub const DEFAULT_TRANSACTION_TIMEOUT_MS: i64 = 10_000;

/// The default of `limits.transfer_mib` (`wasm::MAX_TRANSFER_BYTES`).
pub const DEFAULT_TRANSFER_MIB: u64 = 128;

/// Sandbox limits per plugin instance.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Linear memory cap, in MiB.
    pub memory_mib: u64,
    /// Wall time one batch call may take, in milliseconds; 0 turns the deadline off (for
    /// trusted plugins).
    pub deadline_ms: u64,
    /// Table elements the instance may hold (function references).
    pub table_elements: u32,
    /// WebAssembly instructions (roughly) one batch call may run; no fuel metering when unset.
    /// Any plugin with fuel turns metering on for the whole engine (it costs every plugin
    /// some speed); the others then run with unlimited fuel.
    pub fuel: Option<u64>,
    /// The most one call may move from the instance into the host, in MiB: an import's
    /// arguments, or a batch's result (wasmtime's hostcall fuel). A batch whose result is
    /// larger is split and run again in halves, as any batch that traps.
    pub transfer_mib: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_mib: 256,
            deadline_ms: 10_000,
            table_elements: 100_000,
            fuel: None,
            transfer_mib: DEFAULT_TRANSFER_MIB,
        }
    }
}

/// One name or several (`from = "a"` or `from = ["a", "b"]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn names(&self) -> Vec<&str> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// What happens to a record a plugin rejects or fails on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    /// Stop the pipeline; nothing past the failed record is committed.
    #[default]
    Stop,
    /// Count and log the record, and go on.
    Skip,
    /// Write the record to the dead-letter topic with headers naming the error.
    DeadLetter,
    /// Run the record through the step again, `[pipelines.NAME.retry]` times with backoff;
    /// then apply the retry's `then` policy.
    Retry,
}

impl OnError {
    /// The name in the manifest.
    pub fn name(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Skip => "skip",
            Self::DeadLetter => "dead-letter",
            Self::Retry => "retry",
        }
    }
}

/// `on_error = "retry"`: how often, how long between, and what then.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryDef {
    /// Runs after the first failure (default 3).
    pub attempts: u32,
    /// The wait before the first retry, doubled for each one after (default 100).
    pub backoff_ms: u64,
    /// The policy for records that still fail: `stop` (default), `skip` or `dead-letter`.
    pub then: OnError,
}

impl Default for RetryDef {
    fn default() -> Self {
        Self { attempts: 3, backoff_ms: 100, then: OnError::Stop }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineDef {
    /// The stream(s) or topic(s) the pipeline reads; several are merged.
    pub from: Spanned<OneOrMany>,
    #[serde(default)]
    pub steps: Vec<Spanned<StepDef>>,
    /// The stream or topic the pipeline writes at its end.
    pub to: Option<Spanned<String>>,
    #[serde(default)]
    pub on_error: OnError,
    /// `on_error = "retry"`: attempts, backoff and the policy after the last attempt.
    pub retry: Option<Spanned<RetryDef>>,
    /// The dead-letter topic (default `<application-id>-dlq`).
    pub dead_letter_topic: Option<Spanned<String>>,
}

/// One step. Which fields apply depends on `op`; the topology builder checks them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepDef {
    /// The name of a registered operator (`filter`, `map_values`, `group_by`, …; the
    /// topology builder has the list). camelCase names such as `mapValues` work too.
    pub op: Spanned<String>,
    pub plugin: Option<Spanned<String>>,
    /// Which function of the plugin, when it offers several of the kind.
    pub function: Option<String>,
    /// `merge`: the streams or topics merged in.
    pub from: Option<Spanned<OneOrMany>>,
    /// `to`: the stream or topic written.
    pub topic: Option<Spanned<String>>,
    /// `branch`: the ordered branches.
    pub branches: Option<Vec<Spanned<BranchDef>>>,
    /// `reduce`, `aggregate` of a grouped table: the plugin that takes a value back out of an
    /// aggregate when it leaves the group (Kafka Streams' subtractor): a reducer for `reduce`,
    /// an aggregator for `aggregate`.
    pub subtractor: Option<Spanned<String>>,
    /// `count`, `reduce`, `aggregate`: the store that keeps the aggregates.
    pub store: Option<Spanned<String>>,
    /// `windowed_by`: the window.
    pub window: Option<Spanned<WindowDef>>,
    /// `suppress`: `window_closes` (emit each window once, when it closes) or `time_limit`
    /// (hold each key's updates for `time_limit`, then emit its latest).
    pub until: Option<Spanned<String>>,
    /// `suppress` with `until = "time_limit"`: how long a key's updates are held, in stream
    /// time, from the first one (Kafka Streams' `Suppressed.untilTimeLimit`).
    pub time_limit: Option<Spanned<Duration>>,
    /// `suppress` with `until = "time_limit"`: how many keys the buffer holds at most.
    pub max_records: Option<Spanned<usize>>,
    /// `suppress`: what a full buffer does: `emit_early` (emit its oldest keys, the default)
    /// or `shut_down` (fail the record, which the pipeline's `on_error` then handles).
    pub when_full: Option<Spanned<String>>,
    /// `join`, `left_join`, `outer_join`: the table joined (`[tables]` or `[global_tables]`).
    pub table: Option<Spanned<String>>,
    /// A foreign-key join of two tables (KIP-213): the foreign-key-extractor plugin that
    /// picks, from each left row, the key of the right row it joins.
    pub foreign_key: Option<Spanned<String>>,
    /// A join with a global table: the key-selector plugin that picks each record's lookup
    /// key (default: the record's key).
    pub key_selector: Option<Spanned<String>>,
    /// `join`, `left_join`, `outer_join`: the stream joined, within `time_difference`.
    pub stream: Option<Spanned<String>>,
    /// A stream-stream join: records join when their timestamps are at most this far apart
    /// (Kafka Streams' `JoinWindows.ofTimeDifferenceAndGrace`).
    pub time_difference: Option<Spanned<Duration>>,
    /// A stream-stream join: how much earlier the other stream's records may be (default
    /// `time_difference`).
    pub before: Option<Spanned<Duration>>,
    /// A stream-stream join: how much later the other stream's records may be (default
    /// `time_difference`).
    pub after: Option<Spanned<Duration>>,
    /// A stream-stream join: how long after a window ends out-of-order records still join
    /// (default 0).
    pub grace: Option<Spanned<Duration>>,
    /// `count`, `reduce`, `aggregate` over windows: where records too late for every window go.
    pub late_topic: Option<Spanned<String>>,
    /// `process`: the stores the processor opens through the `state` interface.
    pub stores: Option<Spanned<Vec<String>>>,
    /// `process`: named children, each a stream or topic the processor may forward to.
    pub children: Option<Spanned<BTreeMap<String, String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BranchDef {
    /// The predicate (a filter plugin). The last branch may leave it out: the default branch.
    pub plugin: Option<Spanned<String>>,
    pub function: Option<String>,
    #[serde(default)]
    pub steps: Vec<Spanned<StepDef>>,
    pub to: Option<Spanned<String>>,
}

/// What a store holds, which decides the layout of its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    KeyValue,
    Window,
    Session,
}

impl std::fmt::Display for StoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::KeyValue => "key_value",
            Self::Window => "window",
            Self::Session => "session",
        })
    }
}

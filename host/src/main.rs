//! The `wasp` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use clap::{Parser, Subcommand};
use wasp_host::app::{self, LocalOptions};

/// mimalloc instead of the system allocator: the record path allocates a little per record
/// (keys, aggregates, outputs), and glibc's malloc spends a tenth of a word count in its
/// bookkeeping and in returning and re-faulting pages between batches.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "wasp", version, about = "A WebAssembly stream processor")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Where compiled components are cached (default: ~/.cache/wasp).
    #[arg(long, global = true, env = "WASP_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// How logs are written to stderr: `text` for people, `json` (one object per line:
    /// timestamp, level, target, message and fields) for log collectors.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "WASP_LOG_FORMAT")]
    log_format: LogFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the manifest's pipelines until stopped (or, in local mode, until the input ends).
    Run {
        manifest: PathBuf,
        /// Local mode: read TOPIC (a topic, or the name of a stream or table) from PATH (`.jsonl`
        /// is JSON lines, anything else text).
        #[arg(long = "input", value_name = "TOPIC=PATH", value_parser = topic_path)]
        inputs: Vec<(String, PathBuf)>,
        /// Local mode: write TOPIC (a topic, or the name of a stream) to PATH as JSON lines
        /// instead of printing it.
        #[arg(long = "output", value_name = "TOPIC=PATH", value_parser = topic_path)]
        outputs: Vec<(String, PathBuf)>,
        /// Local mode: keep tailing the input files.
        #[arg(long)]
        follow: bool,
        /// Where persistent stores keep their files (default: the manifest's `state_dir`, else
        /// $WASP_STATE_DIR, else ~/.local/state/wasp).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Forget this application's local state first (stores and what they have applied),
        /// so the input is processed from scratch.
        #[arg(long)]
        reset: bool,
        /// Serve the admin endpoint (health, metrics, plugins, reloads) at ADDR, e.g.
        /// 127.0.0.1:9464 (default: the manifest's `[application.admin]`, else none).
        #[arg(long, value_name = "ADDR")]
        admin: Option<String>,
        /// Reload a plugin when its file changes (default: on in local mode with --follow,
        /// off on Kafka, unless the manifest's `watch_plugins` says otherwise).
        #[arg(long, overrides_with = "no_watch")]
        watch: bool,
        /// Never reload plugins on file changes.
        #[arg(long)]
        no_watch: bool,
    },
    /// Asks a running wasp to replace a plugin (through its admin endpoint). The new version
    /// is validated first; if it is refused, the old one keeps running.
    Reload {
        /// The manifest the running wasp was started with (for the admin address and token).
        manifest: PathBuf,
        /// The plugin's name in the manifest.
        plugin: String,
        /// The new component (default: the path in the manifest, read again).
        #[arg(long)]
        path: Option<PathBuf>,
        /// The admin endpoint, e.g. http://127.0.0.1:9464 (default: from the manifest).
        #[arg(long, value_name = "URL")]
        admin: Option<String>,
        /// The admin token (default: the manifest's, else $WASP_ADMIN_TOKEN).
        #[arg(long)]
        token: Option<String>,
    },
    /// Checks the manifest and its plugins without running anything.
    Validate { manifest: PathBuf },
    /// Starts a plugin: a crate with one function, a pipeline that uses it on sample events,
    /// and a `wasp test` file that passes as generated.
    New {
        /// The plugin's language: `rust`, `python` or `javascript`.
        lang: String,
        /// The plugin's name: its folder, crate and component.
        name: String,
        /// The function's kind: `filter`, `map-values`, or `processor` (a key-value store and
        /// a stream-time timer).
        #[arg(long, default_value = "filter")]
        kind: String,
        /// Where the plugin's folder goes (default: here).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Builds a plugin into a component (`DIR/<name>.wasm`) and prints its size, kinds and
    /// WIT version.
    Build {
        /// The plugin's folder (default: here), or a core module (`.wasm`, with the component
        /// type its bindings generator embeds) to make a component of.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Where the component goes (default: `DIR/NAME.wasm` for a folder, `NAME.component.wasm`
        /// beside a module).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Runs test files (`*.test.toml`: records in, records and store entries expected)
    /// against their manifests with no broker, and prints `N passed, N failed`.
    Test {
        /// Test files, or directories searched for `*.test.toml`.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Pipe this many records at once instead of each case's own (default 1: one record
        /// at a time, each committed); the results must not depend on it.
        #[arg(long)]
        batch_size: Option<usize>,
        /// Loads plugin NAME from PATH instead of the manifest's path (repeatable): the same
        /// pipeline and expectations against another build.
        #[arg(long, value_name = "NAME=PATH", value_parser = plugin_override)]
        plugin: Vec<(String, PathBuf)>,
    },
    /// Prints the topology, sources to sinks.
    Describe {
        manifest: PathBuf,
        /// `text` (like Kafka Streams' `Topology.describe()`), `dot` (Graphviz), `mermaid`, `svg`
        /// (a drawing, laid out by wasp itself; plugins with the digest of their file) or
        /// `html` (a page with the drawing and the text, nothing loaded from elsewhere).
        #[arg(long, value_enum, default_value_t = DescribeFormat::Text)]
        format: DescribeFormat,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum DescribeFormat {
    Text,
    Dot,
    Mermaid,
    Svg,
    Html,
}

/// stderr, with the terminal's live lines lifted while a log line is written.
struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        wasp_host::io::terminal().suspend(|| std::io::stderr().write(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

fn topic_path(s: &str) -> Result<(String, PathBuf), String> {
    let (topic, path) = s.split_once('=').ok_or_else(|| format!("expected TOPIC=PATH, got `{s}`"))?;
    if topic.is_empty() || path.is_empty() {
        return Err(format!("expected TOPIC=PATH, got `{s}`"));
    }
    Ok((topic.to_owned(), PathBuf::from(path)))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `wasp test` prints its own report: only warnings and errors besides it.
    let default_filter =
        if matches!(cli.command, Command::Test { .. }) { "warn" } else { "info,wasmtime=warn,cranelift=warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("WASP_LOG").unwrap_or_else(|_| default_filter.into());
    // Through the terminal's live lines (restore bars, the status line), which are redrawn
    // below each log line.
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(|| LogWriter);
    match cli.log_format {
        LogFormat::Json => logs.json().flatten_event(true).with_current_span(false).init(),
        LogFormat::Text => logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `NAME=PATH` of `wasp test --plugin`.
fn plugin_override(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => Ok((name.to_owned(), PathBuf::from(path))),
        _ => Err(format!("`{s}`: expected NAME=PATH, e.g. kit=plugins/kit.wasm")),
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let cache = cli.cache_dir.or_else(wasp_host::wasm::default_cache_dir);
    match cli.command {
        Command::Validate { manifest } => {
            let p = app::prepare(&manifest, cache)?;
            println!(
                "{}: ok ({} pipelines, {} plugins, {} sub-topologies, {} mode)",
                manifest.display(),
                p.loaded.manifest.pipelines.len(),
                p.plugins.len(),
                p.topology.subtopologies.len(),
                if p.is_local() { "local" } else { "kafka" }
            );
            Ok(())
        }
        Command::Describe { manifest, format } => {
            let (loaded, topology) = app::plan(&manifest)?;
            let text = match format {
                DescribeFormat::Svg => wasp_host::topology::describe_svg(&topology, &app::plugin_digests(&loaded)),
                DescribeFormat::Html => wasp_host::topology::describe_html(&topology, &app::plugin_digests(&loaded)),
                DescribeFormat::Text => wasp_host::topology::describe(&topology),
                DescribeFormat::Dot => wasp_host::topology::describe_dot(&topology),
                DescribeFormat::Mermaid => wasp_host::topology::describe_mermaid(&topology),
            };
            print!("{text}");
            Ok(())
        }
        Command::Reload { manifest, plugin, path, admin, token } => reload(&manifest, &plugin, path, admin, token),
        Command::New { lang, name, kind, dir } => {
            let made = app::new_plugin(&lang, &name, &kind, &dir)?;
            println!("created {}", made.display());
            println!("next: wasp build {0} && wasp test {0}", made.display());
            Ok(())
        }
        Command::Build { dir, output } => {
            let built = if dir.is_file() {
                let out = output.unwrap_or_else(|| dir.with_extension("component.wasm"));
                app::build_module(&dir, &out, cache)?
            } else {
                let mut built = app::build_plugin(&dir, cache, None)?;
                if let Some(out) = output {
                    std::fs::copy(&built.component, &out)
                        .with_context(|| format!("copying {} to {}", built.component.display(), out.display()))?;
                    built.component = out;
                }
                built
            };
            let kinds: Vec<&str> = built.kinds.iter().map(|k| k.interface()).collect();
            println!(
                "built {}: {:.1} KiB, kinds: {}, WIT {}@{}",
                built.component.display(),
                built.bytes as f64 / 1024.0,
                if kinds.is_empty() { "none".to_owned() } else { kinds.join(", ") },
                wasp_host::wasm::WIT_PACKAGE,
                wasp_host::wasm::WIT_VERSION,
            );
            Ok(())
        }
        Command::Test { paths, batch_size, plugin } => {
            let options = app::TestOptions { batch_size, plugins: plugin.into_iter().collect() };
            if batch_size == Some(0) {
                anyhow::bail!("--batch-size: a batch has at least one record");
            }
            let mut total = app::TestCount::default();
            let mut stdout = std::io::stdout();
            for file in app::test_files(&paths)? {
                match app::run_test_file(&file, &options, cache.clone(), &mut stdout) {
                    Ok(c) => {
                        total.passed += c.passed;
                        total.failed += c.failed;
                    }
                    Err(e) => {
                        total.failed += 1;
                        println!("test {} ... FAILED\n    error: {e:#}", file.display());
                    }
                }
            }
            println!("{} passed, {} failed", total.passed, total.failed);
            if total.failed > 0 {
                anyhow::bail!("{} test(s) failed", total.failed);
            }
            Ok(())
        }
        Command::Run { manifest, inputs, outputs, follow, state_dir, reset, admin, watch, no_watch } => {
            let p = app::prepare(&manifest, cache)?;
            if !p.is_local() && (!inputs.is_empty() || !outputs.is_empty() || follow) {
                anyhow::bail!("--input, --output and --follow are for local mode; this manifest names Kafka servers");
            }
            let stop = Arc::new(AtomicBool::new(false));
            let s = stop.clone();
            ctrlc::set_handler(move || {
                if s.swap(true, Ordering::SeqCst) {
                    std::process::exit(130);
                }
                tracing::info!("stopping: finishing the batch in flight (press Ctrl-C again to abort)");
            })
            .context("installing the signal handler")?;
            let local = LocalOptions {
                inputs: inputs.into_iter().collect(),
                outputs: outputs.into_iter().collect(),
                follow,
                state_dir,
                watch: if no_watch { Some(false) } else { watch.then_some(true) },
                admin,
            };
            if reset {
                p.reset_local_state(&local)?;
            }
            let stats = p.run(&local, &stop)?;
            tracing::info!(
                records_in = stats.records_in,
                records_out = stats.records_out,
                batches = stats.batches,
                failed = stats.failed_records,
                late = stats.late_records,
                // exactly_once: records a restarted task did not write again; exactly_once_v2:
                // transactions aborted (each sent a thread back to its last commit).
                not_written_again = stats.suppressed_records,
                aborted_transactions = stats.aborted_transactions,
                "done"
            );
            Ok(())
        }
    }
}

/// `wasp reload`: a POST to the running instance's admin endpoint.
fn reload(
    manifest: &std::path::Path,
    plugin: &str,
    path: Option<PathBuf>,
    admin: Option<String>,
    token: Option<String>,
) -> anyhow::Result<()> {
    let (loaded, _) = app::plan(manifest)?;
    let base = admin.unwrap_or_else(|| {
        let bind = app::admin_bind(&loaded).map_or_else(|| wasp_host::admin::DEFAULT_BIND.to_owned(), |(addr, _)| addr);
        format!("http://{bind}")
    });
    let token = token
        .or_else(|| app::admin_token(&loaded))
        .context("no admin token: set [application.admin] token in the manifest, WASP_ADMIN_TOKEN, or --token")?;
    let path = match path {
        Some(p) => Some(std::path::absolute(&p).with_context(|| format!("resolving {}", p.display()))?),
        None => None,
    };
    let url = format!("{}/plugins/{plugin}/reload", base.trim_end_matches('/'));
    let body = serde_json::json!({ "path": path });
    let response = ureq::post(&url)
        .header("Authorization", &format!("Bearer {token}"))
        .config()
        .http_status_as_error(false)
        .build()
        .send_json(&body)
        .with_context(|| format!("reaching the admin endpoint at {base}"))?;
    let status = response.status();
    let text = response.into_body().read_to_string().unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    if !status.is_success() {
        let message = json.get("error").and_then(|e| e.as_str()).map_or_else(|| json.to_string(), str::to_owned);
        anyhow::bail!("reload of `{plugin}` refused ({status}): {message}");
    }
    let digest = json.get("digest").and_then(|d| d.as_str()).unwrap_or("?");
    match json.get("result").and_then(|r| r.as_str()) {
        Some("unchanged") => {
            println!("{plugin}: unchanged (already running {})", wasp_host::wasm::short_digest(digest))
        }
        _ => println!(
            "{plugin}: {} validated; tasks switch at their next batch (see /plugins)",
            wasp_host::wasm::short_digest(digest)
        ),
    }
    Ok(())
}

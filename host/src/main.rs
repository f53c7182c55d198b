//! The `wasp` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use clap::{Parser, Subcommand};
use wasp::app::{self, LocalOptions};

#[derive(Parser)]
#[command(name = "wasp", version, about = "A WebAssembly stream processor")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Where compiled components are cached (default: ~/.cache/wasp).
    #[arg(long, global = true, env = "WASP_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the manifest's pipelines until stopped (or, in local mode, until the input ends).
    Run {
        manifest: PathBuf,
        /// Local mode: read TOPIC from PATH (`.jsonl` is JSON lines, anything else text).
        #[arg(long = "input", value_name = "TOPIC=PATH", value_parser = topic_path)]
        inputs: Vec<(String, PathBuf)>,
        /// Local mode: write TOPIC to PATH as JSON lines instead of printing it.
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
    },
    /// Checks the manifest and its plugins without running anything.
    Validate { manifest: PathBuf },
    /// Prints the topology, sources to sinks.
    Describe {
        manifest: PathBuf,
        /// `text` (like Kafka Streams' `Topology.describe()`), `dot` (Graphviz) or `mermaid`.
        #[arg(long, value_enum, default_value_t = DescribeFormat::Text)]
        format: DescribeFormat,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum DescribeFormat {
    Text,
    Dot,
    Mermaid,
}

fn topic_path(s: &str) -> Result<(String, PathBuf), String> {
    let (topic, path) = s.split_once('=').ok_or_else(|| format!("expected TOPIC=PATH, got `{s}`"))?;
    if topic.is_empty() || path.is_empty() {
        return Err(format!("expected TOPIC=PATH, got `{s}`"));
    }
    Ok((topic.to_owned(), PathBuf::from(path)))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WASP_LOG")
                .unwrap_or_else(|_| "info,wasmtime=warn,cranelift=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let cache = cli.cache_dir.or_else(wasp::wasm::default_cache_dir);
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
            let (_, topology) = app::plan(&manifest)?;
            let text = match format {
                DescribeFormat::Text => wasp::topology::describe(&topology),
                DescribeFormat::Dot => wasp::topology::describe_dot(&topology),
                DescribeFormat::Mermaid => wasp::topology::describe_mermaid(&topology),
            };
            print!("{text}");
            Ok(())
        }
        Command::Run { manifest, inputs, outputs, follow, state_dir, reset } => {
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
                "done"
            );
            Ok(())
        }
    }
}

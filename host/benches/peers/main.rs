//! `make bench-peers`: wasp against its peers, in one run on one machine, printed as figures
//! and as the targets met or not met.
//!
//! - Word count on a real broker (nisshi, memory storage, started here on a free port): 200,000
//!   lines of 6 to 10 words from a 5,000-word vocabulary (splitmix64, a fixed seed), on a
//!   1-partition and a 4-partition input topic, through Quix Streams 3.28 (Python, RocksDB
//!   state), a native rdkafka service (the ceiling), and wasp at threads = 1 and 2. Every
//!   run's final counts are read back from its output topic and checked against the totals.
//! - `make bench`'s stateless JSON filter + map through wasp and through fluvio-smartengine
//!   0.50 (its own binary: it pulls its own wasmtime), each against a native baseline.
//!
//! `WASP_PEERS_LINES`, `WASP_PEERS_RECORDS` and `WASP_PEERS_ROUNDS` shrink a run;
//! `WASP_PEERS_SKIP=quix,wordcount,fluvio` leaves parts out.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

mod broker;
mod filter_map;
mod json_data;
mod native;
mod quix;
mod wordcount;
mod words;
// The stateless work, as wasp's bench plugins and the fluvio SmartModules run it.
#[path = "../util.rs"]
mod util;
pub use util::thousands;
use util::{env_usize, machine};

#[path = "../../../plugins/bench-work.rs"]
mod work;

/// The allocator the `wasp` binary uses, so wasp's figures are what users get (the native
/// runner, in this process, gets it too; librdkafka and the peers' own processes keep theirs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Records of the stateless comparison, and rounds (the median is printed).
const RECORDS: usize = 1_000_000;
const ROUNDS: usize = 5;

/// `date -u`, as the shell prints it.
fn date() -> String {
    std::process::Command::new("date")
        .arg("-u")
        .output()
        .ok()
        .map_or_else(|| "unknown".to_owned(), |o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
}

/// A scratch directory (state, manifests, logs), removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn main() -> Result<()> {
    let skip = std::env::var("WASP_PEERS_SKIP").unwrap_or_default();
    let skips = |part: &str| skip.split(',').any(|s| s.trim() == part);
    println!("wasp-peers: wasp against Quix Streams, a native rdkafka service and fluvio-smartengine");
    println!("date: {}", date());
    println!("machine: {}", machine());

    let mut failures = Vec::new();
    if !skips("wordcount") {
        let dir = Scratch(std::env::temp_dir().join(format!("wasp-peers-{}", std::process::id())));
        std::fs::create_dir_all(&dir.0).with_context(|| format!("creating {}", dir.0.display()))?;
        let lines = env_usize("WASP_PEERS_LINES", words::LINES)?;
        let data = words::generate(lines);
        println!();
        println!(
            "word count: {} lines, {} words from {} distinct (splitmix64, seed {:#x})",
            thousands(lines),
            thousands(data.words),
            thousands(data.expected.len()),
            words::SEED
        );
        match broker::Broker::start() {
            Ok(Some(broker)) => {
                println!("  broker: nisshi on {} (memory storage)", broker.bootstrap);
                if let Err(e) = wordcount::run(&broker, &dir.0, &data, skips("quix")) {
                    failures.push(format!("{e:#}"));
                }
            }
            Ok(None) => failures.push("nisshi is not installed (`make setup` installs it): no word count".to_owned()),
            Err(e) => failures.push(format!("could not start nisshi: {e:#}")),
        }
    }
    if !skips("fluvio") {
        let records = env_usize("WASP_PEERS_RECORDS", RECORDS)?;
        let rounds = env_usize("WASP_PEERS_ROUNDS", ROUNDS)?.max(1);
        if let Err(e) = filter_map::run(records, rounds) {
            println!("  FAILED: {e:#}");
            failures.push(format!("filter + map against fluvio: {e:#}"));
        }
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("\n"));
    }
    Ok(())
}

//! Join throughput, local mode, against a native Rust baseline doing the same lookups in the
//! same run: a stream-table join with the table's rows in RocksDB, and a stream-stream join
//! within a window. Each figure is records per second over the whole job (the stream-table
//! join's table is loaded in the same run, by both).

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::Result;

/// Rows of the stream-table join's table.
const TABLE_ROWS: usize = 1_000_000;

/// A deterministic spread of indexes (a multiplicative hash), so lookups hit the table all over.
fn spread(i: usize, n: usize) -> usize {
    (i.wrapping_mul(2_654_435_761) >> 7) % n
}

fn jsonl(path: &Path, records: impl Iterator<Item = (String, String, i64)>) -> Result<()> {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    for (k, v, t) in records {
        writeln!(w, "{}", serde_json::json!({"key": k, "value": v, "timestamp": t}))?;
    }
    w.flush()?;
    Ok(())
}

/// A manifest joining `left` with `with` (`table = "…"` or `stream = "…"` and its window),
/// streams and tables declared in `decls`.
fn manifest(dir: &Path, name: &str, decls: &str, with: &str) -> Result<std::path::PathBuf> {
    let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/build").canonicalize()?;
    let text = format!(
        r#"version = 1
[application]
id = "bench-join-{name}"
threads = 1
state_dir = "{state}"
{decls}
[plugins.jk]
path = "{p}/join-kit.wasm"
[pipelines.p]
from = "left"
to = "bench-out"
steps = [ {{ op = "left_join", plugin = "jk", {with} }} ]
"#,
        state = dir.join("state").display(),
        p = plugins.display(),
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text)?;
    Ok(path)
}

pub fn run(stream_n: usize) -> Result<()> {
    super::in_temp_dir("joins", |dir| run_in(dir, stream_n))
}

fn run_in(dir: &Path, n: usize) -> Result<()> {
    println!();
    println!("joins: {n} stream records, local mode, 1 thread, join-kit's value joiner (Wasm)");
    let out = dir.join("out.jsonl");
    let rate = |records: usize, s: f64| records as f64 / s / 1e6;

    // Stream-table: a million users, clicks spread over them (a few with no user).
    let table = dir.join("users.jsonl");
    jsonl(&table, (0..TABLE_ROWS).map(|i| (format!("user-{i}"), format!("profile-{i}"), 0)))?;
    let clicks = dir.join("clicks.jsonl");
    jsonl(
        &clicks,
        (0..n).map(|i| (format!("user-{}", spread(i, TABLE_ROWS + 1000)), format!("click-{i}"), 1 + i as i64)),
    )?;
    let decls = |left: &Path| {
        format!(
            "[streams.left]\nfile = \"{}\"\nfile_format = \"jsonl\"\n[tables.users]\nfile = \"{}\"\nfile_format = \"jsonl\"\n",
            left.display(),
            table.display()
        )
    };
    let native_table = {
        let t = Instant::now();
        let mut users: HashMap<String, String> = HashMap::with_capacity(TABLE_ROWS);
        for i in 0..TABLE_ROWS {
            users.insert(format!("user-{i}"), format!("profile-{i}"));
        }
        let loaded = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut bytes = 0usize;
        for i in 0..n {
            let key = format!("user-{}", spread(i, TABLE_ROWS + 1000));
            let joined = format!("{key}:click-{i}+{}", users.get(&key).map_or("none", String::as_str));
            bytes += std::hint::black_box(joined).len();
        }
        std::hint::black_box(bytes);
        (loaded, t.elapsed().as_secs_f64())
    };
    // The whole run against the whole native job (load the table, then look up and join).
    let (both, read) =
        super::bench_state::run_local(&manifest(dir, "st", &decls(&clicks), r#"table = "users""#)?, &out)?;
    let native_all = native_table.0 + native_table.1;
    let all = TABLE_ROWS + n;
    println!(
        "  stream-table: a table of {TABLE_ROWS} rows (loaded into RocksDB in the same run), then {n} clicks; {read} records read"
    );
    println!(
        "  {:<58} {:>7.2} Mrecords/s {:>7}  (lookups alone {:.2} M/s)",
        "native Rust (HashMap: load, look up, format the join)",
        rate(all, native_all),
        "1.00×",
        rate(n, native_table.1)
    );
    println!(
        "  {:<58} {:>7.2} Mrecords/s {:>6.3}×",
        "wasp, left_join table (RocksDB rows, Wasm joiner)",
        rate(all, both),
        native_all / both
    );

    // Stream-stream: orders and payments half a second apart, within 10 s; a third unpaid.
    let orders = dir.join("orders.jsonl");
    let payments = dir.join("payments.jsonl");
    jsonl(&orders, (0..n).map(|i| (format!("o{i}"), format!("A{i}"), i as i64 * 10)))?;
    jsonl(
        &payments,
        (0..n).filter(|i| !i.is_multiple_of(3)).map(|i| (format!("o{i}"), format!("p{i}"), i as i64 * 10 + 5)),
    )?;
    let paid = n - n.div_ceil(3);
    let native_stream = {
        // Buffer each order until its window closes; join each payment with its order.
        let t = Instant::now();
        let mut open: HashMap<String, (i64, String)> = HashMap::new();
        let mut bytes = 0usize;
        let mut pi = 1usize;
        for i in 0..n {
            let ts = i as i64 * 10;
            open.insert(format!("o{i}"), (ts, format!("A{i}")));
            while pi < n && (pi as i64 * 10 + 5) <= ts + 10 {
                if !pi.is_multiple_of(3) {
                    let key = format!("o{pi}");
                    if let Some((_, v)) = open.remove(&key) {
                        bytes += std::hint::black_box(format!("{key}:{v}+p{pi}")).len();
                    }
                }
                pi += 1;
            }
            if i.is_multiple_of(1024) {
                open.retain(|k, (t, v)| {
                    let keep = *t + 10_000 >= ts;
                    if !keep {
                        bytes += format!("{k}:{v}+none").len();
                    }
                    keep
                });
            }
        }
        std::hint::black_box(bytes);
        t.elapsed().as_secs_f64()
    };
    let decls = format!(
        "[streams.left]\nfile = \"{}\"\nfile_format = \"jsonl\"\n[streams.payments]\nfile = \"{}\"\nfile_format = \"jsonl\"\n",
        orders.display(),
        payments.display()
    );
    let (ss, read) = super::bench_state::run_local(
        &manifest(dir, "ss", &decls, r#"stream = "payments", time_difference = "10s""#)?,
        &out,
    )?;
    let records = n + paid;
    println!("  stream-stream, left join within 10 s ({n} orders, {paid} payments; {read} records read)");
    println!(
        "  {:<58} {:>7.2} Mrecords/s {:>7}",
        "native Rust (HashMap buffer, join, expire)",
        rate(records, native_stream),
        "1.00×"
    );
    println!(
        "  {:<58} {:>7.2} Mrecords/s {:>6.3}×",
        "wasp, left_join stream (RocksDB window stores, Wasm joiner)",
        rate(records, ss),
        native_stream / ss
    );
    Ok(())
}

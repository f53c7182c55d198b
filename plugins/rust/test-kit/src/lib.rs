//! One component exporting every stateless kind, for the host's operator tests. Values are
//! text.

#[path = "sums.rs"]
mod sums;

/// Keeps values that contain `config.needle` (default `keep`); fails values equal to `bad`.
#[wasp::filter]
fn contains_needle(value: &str) -> Result<bool, String> {
    if value == "bad" {
        return Err("the value is `bad`".to_owned());
    }
    let needle = wasp::config::get("needle").unwrap_or_else(|| "keep".to_owned());
    Ok(value.contains(&needle))
}

/// Upper-cases the value.
#[wasp::map_values]
fn upper(value: &str) -> String {
    value.to_uppercase()
}

/// Swaps key and value.
#[wasp::map]
fn swap(key: Option<&str>, value: &str) -> (String, String) {
    (value.to_owned(), key.unwrap_or_default().to_owned())
}

/// One record per word, keyed by the word.
#[wasp::flat_map]
fn words(_key: Option<&[u8]>, value: &str) -> Vec<(String, String)> {
    value.split_whitespace().map(|w| (w.to_owned(), w.to_owned())).collect()
}

/// The first character of the value becomes the key.
#[wasp::select_key]
fn first_char(value: &str) -> String {
    value.chars().next().map(String::from).unwrap_or_default()
}

/// Counts the records it sees in the `seen_total` counter.
#[wasp::for_each]
fn count(_value: Option<&[u8]>) {
    wasp::metrics::counter_add("seen_total", &[("source", "test-kit")], 1);
}

/// The aggregate every key and window starts from.
fn zero() -> String {
    "0".to_owned()
}

/// Sums decimal values; fails values that are not numbers. Sessions merge by adding.
#[wasp::aggregate(init = zero, merge = add_sums)]
fn sum(value: &str, aggregate: &str) -> Result<String, String> {
    sums::add(value, aggregate)
}

fn add_sums(left: &str, right: &str) -> Result<String, String> {
    sums::merge(left, right)
}

/// Joins values with `+`, so a test sees the order they were folded in.
#[wasp::reduce]
fn concat(aggregate: &str, value: &str) -> String {
    format!("{aggregate}+{value}")
}

/// The event time is the value's first field (`<ms> rest`); values without one fail.
#[wasp::timestamp]
fn leading_millis(value: &str) -> Result<i64, String> {
    let first = value.split_whitespace().next().unwrap_or_default();
    first.parse().map_err(|_| format!("`{first}` is not a timestamp"))
}

/// Set by the processor's `init`: every instance must be initialized before its first record.
static INITIALIZED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

fn every_ten() -> Vec<wasp::Timer> {
    INITIALIZED.store(true, core::sync::atomic::Ordering::Relaxed);
    vec![wasp::Timer::wall_clock("wall", 10), wasp::Timer::stream_time("stream", 10)]
}

/// Forwards each record unchanged; its timers forward `(timer name, time)`. The value `trap`
/// traps; `count` adds one to the key's count in the step's `counts` store and forwards the
/// count. A record reaching an instance whose `init` has not run fails with `not-initialized`.
#[wasp::processor(init = every_ten, punctuate = fired)]
fn pass(ctx: &mut wasp::Context, key: Option<&str>, value: &str) -> Result<(), wasp::RecordError> {
    if value == "trap" {
        panic!("asked to trap");
    }
    if !INITIALIZED.load(core::sync::atomic::Ordering::Relaxed) {
        return Err(wasp::RecordError::new("not-initialized", "a record came before `init`"));
    }
    let key = key.unwrap_or_default();
    if value == "count" {
        let failed = |e: wasp::state::StateError| wasp::RecordError::new("state", format!("{e:?}"));
        let counts = wasp::state::KeyValueStore::open("counts").map_err(failed)?;
        let n = counts.get(key.as_bytes()).map_err(failed)?;
        let n = n.and_then(|b| String::from_utf8(b).ok()?.parse::<u64>().ok()).unwrap_or(0) + 1;
        counts.put(key.as_bytes(), n.to_string().as_bytes()).map_err(failed)?;
        return ctx.forward(key, n.to_string());
    }
    ctx.forward(key, value)
}

fn fired(ctx: &mut wasp::Context, timer: &str, time: i64) -> Result<(), wasp::RecordError> {
    ctx.forward(timer, time.to_string())
}

//! A second version of `test-kit`'s aggregator and processor, for the hot-swap tests: the
//! same kinds and functions, but its aggregates start from 100 and its processor asks for
//! another timer. A swap to it shows that a new version's set-up answers take effect.

#[path = "../../test-kit/src/sums.rs"]
mod sums;

/// The aggregate every new key and window starts from in this version.
fn hundred() -> String {
    "100".to_owned()
}

/// Sums decimal values, as `test-kit` does.
#[wasp::aggregate(init = hundred, merge = add_sums)]
fn sum(value: &str, aggregate: &str) -> Result<String, String> {
    sums::add(value, aggregate)
}

fn add_sums(left: &str, right: &str) -> Result<String, String> {
    sums::merge(left, right)
}

fn other_timers() -> Vec<wasp::Timer> {
    vec![wasp::Timer::stream_time("other", 5)]
}

/// Forwards each record unchanged; its timer forwards `(timer name, time)`.
#[wasp::processor(init = other_timers, punctuate = fired)]
fn pass(ctx: &mut wasp::Context, key: Option<&str>, value: &str) -> Result<(), wasp::RecordError> {
    ctx.forward(key.unwrap_or_default(), value)
}

fn fired(ctx: &mut wasp::Context, timer: &str, time: i64) -> Result<(), wasp::RecordError> {
    ctx.forward(timer, time.to_string())
}

//! Traps when it starts, for the hot-swap tests: a static constructor runs before the first
//! call of any export (the host's trial call on an empty batch) and aborts. A new version like
//! this one must be refused while the old version keeps running.

/// Aborts the instance (a trap) before any function runs.
extern "C" fn fail_at_start() {
    std::process::abort();
}

#[used]
#[unsafe(link_section = ".init_array")]
static AT_START: extern "C" fn() = fail_at_start;

/// Would return the value unchanged, if the instance ever got this far.
#[wasp::map_values]
fn unchanged(value: Option<&[u8]>) -> Option<&[u8]> {
    value
}

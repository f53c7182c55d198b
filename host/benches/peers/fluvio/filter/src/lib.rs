//! `make bench`'s filter as a fluvio SmartModule: keeps payments whose JSON `amount` is above
//! the threshold. The work is `plugins/bench-work.rs`, the same file wasp's `bench-filter`
//! plugin and the native baselines include.

use fluvio_smartmodule::{Result, SmartModuleRecord, smartmodule};

#[path = "../../../../../../plugins/bench-work.rs"]
mod work;

#[smartmodule(filter)]
pub fn filter(record: &SmartModuleRecord) -> Result<bool> {
    let p: work::Amount = serde_json::from_slice(record.value.as_ref())?;
    Ok(work::over_threshold(&p))
}

//! `make bench`'s value mapper as a fluvio SmartModule: reads a JSON payment, upper-cases
//! `user` and adds a `large` field. The work is `plugins/bench-work.rs`, the same file wasp's
//! `bench-map` plugin and the native baselines include.

use fluvio_smartmodule::{RecordData, Result, SmartModuleRecord, smartmodule};

#[path = "../../../../../../plugins/bench-work.rs"]
mod work;

#[smartmodule(map)]
pub fn map(record: &SmartModuleRecord) -> Result<(Option<RecordData>, RecordData)> {
    let p: work::Payment = serde_json::from_slice(record.value.as_ref())?;
    let value = serde_json::to_vec(&work::tagged(p))?;
    Ok((record.key.clone(), value.into()))
}

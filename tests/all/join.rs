//! Joins. So far the two plugin kinds they call, through the host's typed calls on a real
//! component: the value joiner (both sides of each pair in one call) and the foreign-key
//! extractor.

use std::path::Path;

use wasp_host::manifest::{Grants, Limits};
use wasp_host::record::{DecodedBatch, EncodedBatch, Record};
use wasp_host::topology::PluginKind;
use wasp_host::wasm::{MetricsRegistry, PluginInstance, Runtime, WasmOutput};

use crate::common::{cache_dir, plugin};

fn join_kit() -> PluginInstance {
    let runtime = Runtime::new(Some(cache_dir()), MetricsRegistry::default()).expect("a runtime");
    let kinds = [PluginKind::ValueJoiner, PluginKind::ForeignKeyExtractor];
    let loaded = runtime
        .load(
            "join-kit",
            Path::new(&plugin("join-kit")),
            &toml::Table::new(),
            &Grants::default(),
            &Limits::default(),
            &kinds,
        )
        .expect("join-kit loads with both join kinds");
    loaded.instantiate().expect("an instance")
}

fn batch(records: &[Record]) -> EncodedBatch {
    let mut b = EncodedBatch::default();
    b.encode(records.iter());
    b
}

fn text(b: Option<bytes::Bytes>) -> Option<String> {
    b.map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// An output record's key and value, as text.
type Pair = (Option<String>, Option<String>);

/// `(key, value)` of each output record, and `(index, code)` of each error.
fn outputs(out: WasmOutput) -> (Vec<Pair>, Vec<(u32, String)>) {
    let errors = out.errors.iter().map(|e| (e.index, e.code.clone())).collect();
    let view =
        DecodedBatch::output(out.records.index, out.records.timestamps, out.records.data).expect("a valid batch");
    ((0..view.len()).map(|i| (text(view.key(i)), text(view.value(i)))).collect(), errors)
}

#[test]
fn a_value_joiner_joins_each_pair_in_one_call_and_reads_a_missing_side_as_none() {
    let mut kit = join_kit();
    let mut left =
        batch(&[Record::new(Some(b"u1"), Some(b"click-a"), 5), Record::new(Some(b"u2"), Some(b"click-b"), 6)]);
    // u2 has no partner: a left join's unmatched record.
    let mut right = batch(&[Record::new(Some(b"u1"), Some(b"alice"), 1), Record::new(Some(b"u2"), None, 0)]);
    let (records, errors) = outputs(kit.join("", &mut left, &mut right).expect("the join call"));
    assert_eq!(
        records,
        vec![(None, Some("u1:click-a+alice".to_owned())), (None, Some("u2:click-b+none".to_owned()))],
        "one joined value per pair, the key left to the host"
    );
    assert!(errors.is_empty(), "{errors:?}");
    // Sides of different lengths are refused as a whole.
    let mut one = batch(&[Record::new(Some(b"u1"), Some(b"x"), 1)]);
    assert!(kit.join("", &mut one, &mut batch(&[])).is_err());
}

#[test]
fn a_foreign_key_extractor_gives_each_record_its_foreign_key_and_fails_only_bad_records() {
    let mut kit = join_kit();
    let mut orders = batch(&[
        Record::new(Some(b"o1"), Some(b"c7/book"), 1),
        Record::new(Some(b"o2"), Some(b"no customer"), 2),
        Record::new(Some(b"o3"), Some(b"c9/pen"), 3),
    ]);
    let out = kit.extract_foreign_keys("", &mut orders).expect("the extract call");
    let origins = out.origins.clone();
    let (records, errors) = outputs(out);
    assert_eq!(records, vec![(Some("c7".to_owned()), None), (Some("c9".to_owned()), None)]);
    assert_eq!(origins, vec![0, 2], "each foreign key names the record it came from");
    assert_eq!(errors, vec![(1, "plugin-error".to_owned())], "the order without a customer fails alone");
}

#[test]
fn a_plugin_without_the_join_kinds_is_refused_for_a_join_with_the_kind_named() {
    let runtime = Runtime::new(Some(cache_dir()), MetricsRegistry::default()).expect("a runtime");
    let Err(e) = runtime.load(
        "kit",
        Path::new(&plugin("test-kit")),
        &toml::Table::new(),
        &Grants::default(),
        &Limits::default(),
        &[PluginKind::ValueJoiner],
    ) else {
        panic!("test-kit exports no value joiner")
    };
    let e = e.to_string();
    assert!(e.contains("value-joiner") && e.contains("#[wasp::value_joiner]"), "{e}");
}

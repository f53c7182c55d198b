//! Tables and joins, with the semantics Kafka Streams documents (each test fixes inputs,
//! timestamps and the exact outputs in order), through real plugins in local mode; and the two
//! plugin kinds joins call, through the host's typed calls on a real component: the value
//! joiner (both sides of each pair in one call) and the foreign-key extractor.

use std::path::Path;

use wasp_host::manifest::{Grants, Limits};
use wasp_host::record::{DecodedBatch, EncodedBatch, Record};
use wasp_host::topology::PluginKind;
use wasp_host::wasm::{MetricsRegistry, PluginInstance, Runtime, WasmOutput};

use crate::common::{Scratch, cache_dir, kvs, plugin, run_local};

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

/// `(key, value, timestamp)` records as a JSON-lines input file; a key or value of `None` is
/// null.
fn file(sc: &Scratch, name: &str, records: &[(Option<&str>, Option<&str>, i64)]) {
    let lines: Vec<String> =
        records.iter().map(|(k, v, t)| serde_json::json!({"key": k, "value": v, "timestamp": t}).to_string()).collect();
    sc.write(name, &(lines.join("\n") + "\n"));
}

/// A manifest with streams or tables from files and the join kit: `decls` declares them,
/// `pipelines` uses them.
fn joins(decls: &str, pipelines: &str) -> String {
    format!(
        r#"version = 1
[application]
id = "j"
batch_size = 2
[plugins.jk]
path = "{jk}"
[plugins.kit]
path = "{kit}"
{decls}
{pipelines}
"#,
        jk = plugin("join-kit"),
        kit = plugin("test-kit"),
    )
}

fn kv(k: &str, v: &str) -> (String, String) {
    (k.to_owned(), v.to_owned())
}

/// Clicks and a user table: users `u1` from time 1 (renamed at 10), `u2` from 5 until its
/// tombstone at 12; clicks of `u1`, `u2`, `u3` between.
fn clicks_and_users(sc: &Scratch) {
    file(
        sc,
        "users.jsonl",
        &[
            (Some("u1"), Some("alice"), 1),
            (Some("u2"), Some("bob"), 5),
            (Some("u1"), Some("alicia"), 10),
            (Some("u2"), None, 12),
        ],
    );
    file(
        sc,
        "clicks.jsonl",
        &[
            (Some("u1"), Some("c1"), 2),
            (Some("u2"), Some("c2"), 3),
            (Some("u3"), Some("c3"), 4),
            (Some("u1"), Some("c4"), 11),
            (Some("u2"), Some("c5"), 13),
            (Some("u2"), None, 14),
            (None, Some("c6"), 15),
        ],
    );
}

const CLICKS_AND_USERS: &str = r#"
[streams.clicks]
file = "clicks.jsonl"
file_format = "jsonl"
[tables.users]
file = "users.jsonl"
file_format = "jsonl"
"#;

#[test]
fn a_stream_table_join_looks_up_the_tables_value_at_the_time_of_each_record() {
    let sc = Scratch::new();
    clicks_and_users(&sc);
    let pipeline = |op: &str| {
        format!(
            "[pipelines.p]\nfrom = \"clicks\"\nto = \"out\"\nsteps = [{{ op = \"{op}\", table = \"users\", plugin = \"jk\" }}]\n"
        )
    };
    // Inner: only clicks whose user exists then; the table's own updates emit nothing.
    let out = run_local(&sc, &joins(CLICKS_AND_USERS, &pipeline("join")), &["out"]).unwrap();
    assert_eq!(kvs(&out, "out"), vec![kv("u1", "u1:c1+alice"), kv("u1", "u1:c4+alicia")]);
    let ts: Vec<_> = out["out"].iter().map(|o| o.timestamp).collect();
    assert_eq!(ts, vec![Some(2), Some(11)], "a result keeps the stream record's timestamp");
    // Left: every click with a value, the missing user absent; the null-valued click dropped.
    // (Inner dropped the click without a key.)
    let sc2 = Scratch::new();
    clicks_and_users(&sc2);
    let out = run_local(&sc2, &joins(CLICKS_AND_USERS, &pipeline("left_join")), &["out"]).unwrap();
    assert_eq!(
        kvs(&out, "out"),
        vec![
            kv("u1", "u1:c1+alice"),
            kv("u2", "u2:c2+none"),
            kv("u3", "u3:c3+none"),
            kv("u1", "u1:c4+alicia"),
            kv("u2", "u2:c5+none"),
            kv("null", "none:c6+none"),
        ],
        "a left join joins a record without a key too, with no row (KIP-962)"
    );
}

/// A pipeline from `from` through `steps` to `out`.
fn through(from: &str, steps: &str) -> String {
    format!("[pipelines.p]\nfrom = \"{from}\"\nto = \"out\"\nsteps = [\n{steps}\n]\n")
}

fn timestamps(out: &std::collections::BTreeMap<String, Vec<crate::common::Out>>) -> Vec<i64> {
    out["out"].iter().map(|o| o.timestamp.unwrap_or(-1)).collect()
}

#[test]
fn a_table_filter_emits_a_tombstone_when_a_key_stops_matching_and_map_values_maps_new_and_old() {
    // Kafka Streams' `KTableFilter` with old values: a key whose new value does not match
    // gets a tombstone only if its old value did; `KTableMapValues` maps what is there.
    let sc = Scratch::new();
    file(
        &sc,
        "t.jsonl",
        &[
            (Some("a"), Some("keep1"), 1),
            (Some("b"), Some("drop"), 2),
            (Some("a"), Some("drop2"), 3),
            (Some("b"), Some("keep2"), 4),
            (Some("a"), Some("keep3"), 5),
            (Some("c"), Some("drop"), 6),
            (Some("b"), None, 7),
            (None, Some("keep-no-key"), 8),
        ],
    );
    let decl = "[tables.t]\nfile = \"t.jsonl\"\nfile_format = \"jsonl\"\n";
    let steps = r#"{ op = "filter", plugin = "kit" }, { op = "map_values", plugin = "kit" }, { op = "to_stream" }"#;
    let out = run_local(&sc, &joins(decl, &through("t", steps)), &["out"]).unwrap();
    assert_eq!(
        kvs(&out, "out"),
        vec![kv("a", "KEEP1"), kv("a", "null"), kv("b", "KEEP2"), kv("a", "KEEP3"), kv("b", "null")],
        "a record without a key has no row, and is dropped"
    );
    assert_eq!(timestamps(&out), vec![1, 3, 4, 5, 7]);
}

#[test]
fn a_streams_to_table_keeps_each_keys_latest_value_and_drops_records_without_a_key() {
    let sc = Scratch::new();
    file(
        &sc,
        "in.jsonl",
        &[(Some("a"), Some("keep1"), 1), (Some("a"), Some("drop"), 2), (None, Some("keep"), 3), (Some("a"), None, 4)],
    );
    let decl = "[streams.in]\nfile = \"in.jsonl\"\nfile_format = \"jsonl\"\n";
    let steps = r#"{ op = "to_table" }, { op = "filter", plugin = "kit" }, { op = "to_stream" }"#;
    let out = run_local(&sc, &joins(decl, &through("in", steps)), &["out"]).unwrap();
    // The delete at 4 removes a value that did not match: nothing to retract.
    assert_eq!(kvs(&out, "out"), vec![kv("a", "keep1"), kv("a", "null")]);
}

/// Two tables: `a` and `b`, updated and deleted in turn.
fn two_tables(sc: &Scratch) -> &'static str {
    file(
        sc,
        "a.jsonl",
        &[
            (Some("k1"), Some("a1"), 1),
            (Some("k2"), Some("a2"), 2),
            (Some("k1"), None, 5),
            (Some("k2"), Some("a2x"), 7),
        ],
    );
    file(
        sc,
        "b.jsonl",
        &[
            (Some("k1"), Some("b1"), 3),
            (Some("k1"), Some("b1x"), 4),
            (Some("k2"), Some("b2"), 6),
            (Some("k2"), None, 8),
        ],
    );
    "[tables.a]\nfile = \"a.jsonl\"\nfile_format = \"jsonl\"\n[tables.b]\nfile = \"b.jsonl\"\nfile_format = \"jsonl\"\n"
}

fn table_join(op: &str) -> (Vec<(String, String)>, Vec<i64>) {
    let sc = Scratch::new();
    let decl = two_tables(&sc);
    let steps = format!(r#"{{ op = "{op}", table = "b", plugin = "jk" }}, {{ op = "to_stream" }}"#);
    let out = run_local(&sc, &joins(decl, &through("a", &steps)), &["out"]).expect("the table join runs");
    (kvs(&out, "out"), timestamps(&out))
}

#[test]
fn a_table_table_inner_join_emits_each_change_of_the_joined_value_and_tombstones_what_disappears() {
    // `KTableKTableInnerJoin`: an update on either side with a partner on the other emits;
    // a delete with a partner emits a tombstone; the result's time is the later row's.
    let (got, ts) = table_join("join");
    assert_eq!(
        got,
        vec![
            kv("k1", "k1:a1+b1"),
            kv("k1", "k1:a1+b1x"),
            kv("k1", "null"),
            kv("k2", "k2:a2+b2"),
            kv("k2", "k2:a2x+b2"),
            kv("k2", "null"),
        ]
    );
    assert_eq!(ts, vec![3, 4, 5, 6, 7, 8]);
}

#[test]
fn a_table_table_left_join_keeps_every_left_row_and_joins_a_deleted_right_row_as_none() {
    // `KTableKTableLeftJoin` on the left's updates, `KTableKTableRightJoin` on the right's.
    let (got, ts) = table_join("left_join");
    assert_eq!(
        got,
        vec![
            kv("k1", "k1:a1+none"),
            kv("k2", "k2:a2+none"),
            kv("k1", "k1:a1+b1"),
            kv("k1", "k1:a1+b1x"),
            kv("k1", "null"),
            kv("k2", "k2:a2+b2"),
            kv("k2", "k2:a2x+b2"),
            kv("k2", "k2:a2x+none"),
        ]
    );
    assert_eq!(ts, vec![1, 2, 3, 4, 5, 6, 7, 8]);
}

#[test]
fn a_table_table_outer_join_keeps_every_row_of_either_side() {
    let (got, _) = table_join("outer_join");
    assert_eq!(
        got,
        vec![
            kv("k1", "k1:a1+none"),
            kv("k2", "k2:a2+none"),
            kv("k1", "k1:a1+b1"),
            kv("k1", "k1:a1+b1x"),
            kv("k1", "k1:none+b1x"),
            kv("k2", "k2:a2+b2"),
            kv("k2", "k2:a2x+b2"),
            kv("k2", "k2:a2x+none"),
        ]
    );
}

/// Orders and payments within 10 (grace 5); a payment at 100 moves stream time on at the end.
/// An order and a payment without a key, and a payment without a value, join nothing.
fn orders_and_payments(sc: &Scratch) -> &'static str {
    file(
        sc,
        "orders.jsonl",
        &[
            (Some("o1"), Some("A"), 0),
            (Some("o2"), Some("B"), 5),
            (None, Some("N"), 6),
            (Some("o3"), Some("C"), 30),
            (Some("o1"), Some("D"), 50),
        ],
    );
    file(
        sc,
        "payments.jsonl",
        &[
            (None, Some("q"), 7),
            (Some("o1"), Some("p1"), 8),
            (Some("o2"), None, 9),
            (Some("o3"), Some("p3"), 45),
            (Some("o1"), Some("p2"), 55),
            (Some("o9"), Some("px"), 100),
        ],
    );
    "[streams.orders]\nfile = \"orders.jsonl\"\nfile_format = \"jsonl\"\n[streams.payments]\nfile = \"payments.jsonl\"\nfile_format = \"jsonl\"\n"
}

fn stream_join(op: &str, window: &str) -> (Vec<(String, String)>, Vec<i64>) {
    let sc = Scratch::new();
    let decl = orders_and_payments(&sc);
    let steps = format!(r#"{{ op = "{op}", stream = "payments", plugin = "jk", {window} }}"#);
    let out = run_local(&sc, &joins(decl, &through("orders", &steps)), &["out"]).expect("the stream join runs");
    (kvs(&out, "out"), timestamps(&out))
}

#[test]
fn a_stream_stream_inner_join_pairs_records_of_one_key_within_the_window() {
    let (got, ts) = stream_join("join", r#"time_difference = 10, grace = 5"#);
    assert_eq!(got, vec![kv("o1", "o1:A+p1"), kv("o1", "o1:D+p2")]);
    assert_eq!(ts, vec![8, 55], "a result takes the later of its pair's timestamps");
}

#[test]
fn a_stream_stream_left_join_emits_an_unmatched_order_once_when_its_window_closes() {
    // No early `o2:B+none` at 5: it comes when stream time passes 5 + 10 + 5 (at 30), with
    // the order's own timestamp; `o3` at 30 waits until stream time passes 45 (at 50).
    // The order without a key goes out at once, alone (KIP-962); the payment without one is
    // dropped (a left join keeps only the left side's).
    let (got, ts) = stream_join("left_join", r#"time_difference = 10, grace = 5"#);
    assert_eq!(
        got,
        vec![
            kv("null", "none:N+none"),
            kv("o1", "o1:A+p1"),
            kv("o2", "o2:B+none"),
            kv("o3", "o3:C+none"),
            kv("o1", "o1:D+p2")
        ]
    );
    assert_eq!(ts, vec![6, 8, 5, 30, 55]);
}

#[test]
fn a_stream_stream_outer_join_also_emits_unmatched_payments_when_their_windows_close() {
    let (got, ts) = stream_join("outer_join", r#"time_difference = 10, grace = 5"#);
    assert_eq!(
        got,
        vec![
            kv("null", "none:N+none"),
            kv("null", "none:none+q"),
            kv("o1", "o1:A+p1"),
            kv("o2", "o2:B+none"),
            kv("o3", "o3:C+none"),
            kv("o1", "o1:D+p2"),
            kv("o3", "o3:none+p3"),
        ]
    );
    assert_eq!(ts, vec![6, 7, 8, 5, 30, 55, 45]);
}

#[test]
fn an_asymmetric_join_window_takes_payments_only_after_their_order() {
    // before = 0, after = 10: a payment joins orders from 10 before it up to its own time.
    let sc = Scratch::new();
    file(&sc, "orders.jsonl", &[(Some("k"), Some("o"), 10)]);
    file(
        &sc,
        "payments.jsonl",
        &[(Some("k"), Some("early"), 5), (Some("k"), Some("late"), 15), (Some("k"), Some("too-late"), 25)],
    );
    let decl = "[streams.orders]\nfile = \"orders.jsonl\"\nfile_format = \"jsonl\"\n[streams.payments]\nfile = \"payments.jsonl\"\nfile_format = \"jsonl\"\n";
    let steps = r#"{ op = "join", stream = "payments", plugin = "jk", time_difference = 10, before = 0 }"#;
    let out = run_local(&sc, &joins(decl, &through("orders", steps)), &["out"]).unwrap();
    assert_eq!(kvs(&out, "out"), vec![kv("k", "k:o+late")]);
}

#[test]
fn an_out_of_order_record_within_grace_still_joins_and_a_later_one_is_dropped_as_late() {
    // Stream time reaches 100; a payment at 80 (its window, orders 70..90, closes at 90, and
    // grace 30 keeps it open to 120) joins the order at 75; one at 50 (closed at 90) is late.
    let sc = Scratch::new();
    file(&sc, "orders.jsonl", &[(Some("k"), Some("o"), 75)]);
    file(
        &sc,
        "payments.jsonl",
        &[(Some("x"), Some("r1"), 100), (Some("k"), Some("r2"), 50), (Some("k"), Some("r3"), 80)],
    );
    let decl = "[streams.orders]\nfile = \"orders.jsonl\"\nfile_format = \"jsonl\"\n[streams.payments]\nfile = \"payments.jsonl\"\nfile_format = \"jsonl\"\n";
    let steps = r#"{ op = "join", stream = "payments", plugin = "jk", time_difference = 10, grace = 30 }"#;
    let run = crate::common::run_local_full(&sc, &joins(decl, &through("orders", steps)), &["out"]).unwrap();
    assert_eq!(kvs(&run.out, "out"), vec![kv("k", "k:o+r3")]);
    assert_eq!(run.out["out"][0].timestamp, Some(80));
}

#[test]
fn a_stream_joins_a_global_table_by_the_key_its_selector_picks_without_co_partitioning() {
    // Kafka Streams' `KStreamGlobalKTableJoin`: the global table is restored whole before
    // any task runs (so the later update of `b` is what every order sees), and the lookup
    // key is what the key selector picks from each order (here its value's first letter).
    let sc = Scratch::new();
    file(
        &sc,
        "customers.jsonl",
        &[(Some("a"), Some("Alice"), 1), (Some("b"), Some("Bob"), 2), (Some("b"), Some("Bobby"), 100)],
    );
    file(
        &sc,
        "orders.jsonl",
        &[(Some("o1"), Some("a-book"), 10), (Some("o2"), Some("b-pen"), 20), (Some("o3"), Some("c-cup"), 30)],
    );
    // The orders are read as two partitions, the table as one: no co-partitioning needed.
    let decl = "[streams.orders]\nfile = \"orders.jsonl\"\nfile_format = \"jsonl\"\npartitions = 2\n\
                [global_tables.customers]\nfile = \"customers.jsonl\"\nfile_format = \"jsonl\"\n";
    let run = |op: &str| {
        let sc2 = Scratch::new();
        for f in ["customers.jsonl", "orders.jsonl"] {
            std::fs::copy(sc.path(f), sc2.path(f)).expect("copy an input");
        }
        let steps = format!(r#"{{ op = "{op}", table = "customers", key_selector = "kit", plugin = "jk" }}"#);
        let mut got = kvs(&run_local(&sc2, &joins(decl, &through("orders", &steps)), &["out"]).expect("runs"), "out");
        got.sort();
        got
    };
    assert_eq!(run("join"), vec![kv("o1", "o1:a-book+Alice"), kv("o2", "o2:b-pen+Bobby")]);
    assert_eq!(
        run("left_join"),
        vec![kv("o1", "o1:a-book+Alice"), kv("o2", "o2:b-pen+Bobby"), kv("o3", "o3:c-cup+none")]
    );
}

/// A table of amounts grouped by their first digit: `a` moves from group 1 to 3, `b` is
/// deleted, `c` changes within group 3.
fn grouped_amounts(sc: &Scratch) -> &'static str {
    file(
        sc,
        "t.jsonl",
        &[
            (Some("a"), Some("12"), 1),
            (Some("b"), Some("15"), 2),
            (Some("c"), Some("30"), 3),
            (Some("a"), Some("35"), 4),
            (Some("b"), None, 5),
            (Some("c"), Some("31"), 6),
        ],
    );
    "[tables.t]\nfile = \"t.jsonl\"\nfile_format = \"jsonl\"\n[plugins.add]\npath = \"ADD\"\n[plugins.sub]\npath = \"SUB\"\n"
}

fn grouped_table(fold: &str) -> (Vec<(String, String)>, Vec<i64>) {
    let sc = Scratch::new();
    let decl = grouped_amounts(&sc).replace("ADD", &plugin("sum-add")).replace("SUB", &plugin("sum-sub"));
    let steps = format!(r#"{{ op = "group_by", plugin = "kit" }}, {fold}, {{ op = "to_stream" }}"#);
    let out = run_local(&sc, &joins(&decl, &through("t", &steps)), &["out"]).expect("the grouped table runs");
    (kvs(&out, "out"), timestamps(&out))
}

#[test]
fn a_grouped_tables_aggregate_subtracts_a_value_from_the_group_it_leaves() {
    // `KGroupedTable.aggregate(init, adder, subtractor)`: `a` moving from group 1 to 3 is
    // taken out of 1, then added to 3; `c` changing within 3 is one update (out, then in).
    let expected =
        vec![kv("1", "12"), kv("1", "27"), kv("3", "30"), kv("1", "15"), kv("3", "65"), kv("1", "0"), kv("3", "66")];
    let (got, ts) = grouped_table(r#"{ op = "aggregate", plugin = "add", subtractor = "sub" }"#);
    assert_eq!(got, expected);
    assert_eq!(ts, vec![1, 2, 3, 4, 4, 5, 6], "an update takes the later of the record's and the aggregate's time");
    // A reduce gives the same sums (a group's first value is its first aggregate).
    let (got, _) = grouped_table(r#"{ op = "reduce", plugin = "add", subtractor = "sub" }"#);
    assert_eq!(got, expected);
}

#[test]
fn a_grouped_tables_count_goes_down_when_a_row_leaves_its_group() {
    let (got, _) = grouped_table(r#"{ op = "count" }"#);
    assert_eq!(
        got,
        vec![kv("1", "1"), kv("1", "2"), kv("3", "1"), kv("1", "1"), kv("3", "2"), kv("1", "0"), kv("3", "2")]
    );
}

#[test]
fn a_table_suppressed_until_a_time_limit_emits_each_keys_latest_value_once_the_limit_passes() {
    // `KTable.suppress(untilTimeLimit(10))` on a table read from a topic: `a` and `b` are
    // held from 1 and 3; at 15 `a` is updated again (it keeps its place) and stream time
    // passes both limits, so each goes out with its latest value; `c` stays held.
    let sc = Scratch::new();
    file(
        &sc,
        "t.jsonl",
        &[
            (Some("a"), Some("v1"), 1),
            (Some("a"), Some("v2"), 2),
            (Some("b"), Some("w1"), 3),
            (Some("a"), Some("v3"), 15),
            (Some("c"), Some("x"), 30),
        ],
    );
    let decl = "[tables.t]\nfile = \"t.jsonl\"\nfile_format = \"jsonl\"\n";
    let steps = r#"{ op = "suppress", until = "time_limit", time_limit = 10 }, { op = "to_stream" }"#;
    let out = run_local(&sc, &joins(decl, &through("t", steps)), &["out"]).expect("runs");
    assert_eq!(kvs(&out, "out"), vec![kv("a", "v3"), kv("b", "w1")]);
    assert_eq!(timestamps(&out), vec![15, 3]);
}

/// Orders (`customer/item`) and customers, updated in turn: an order placed before its
/// customer exists, one whose customer changes (and whose old customer changes after), one
/// whose customer is deleted.
fn orders_and_customers(sc: &Scratch) -> &'static str {
    file(
        sc,
        "customers.jsonl",
        &[
            (Some("c1"), Some("Ann"), 1),
            (Some("c2"), Some("Bob"), 2),
            (Some("c3"), Some("Cid"), 5),
            (Some("c1"), Some("Ann2"), 7),
            (Some("c4"), Some("Dan"), 8),
            (Some("c4"), None, 11),
        ],
    );
    file(
        sc,
        "orders.jsonl",
        &[
            (Some("o1"), Some("c1/book"), 3),
            (Some("o2"), Some("c3/pen"), 4),
            (Some("o1"), Some("c2/book"), 6),
            (Some("o3"), Some("c4/cup"), 9),
            (Some("o4"), Some("c1/hat"), 10),
        ],
    );
    "[tables.orders]\nfile = \"orders.jsonl\"\nfile_format = \"jsonl\"\n[tables.customers]\nfile = \"customers.jsonl\"\nfile_format = \"jsonl\"\n"
}

/// The results of a foreign-key join of the orders with the customers, and the table they
/// end as (a tombstone removes a key).
fn foreign_key_join(op: &str) -> (Vec<(String, String)>, std::collections::BTreeMap<String, String>) {
    let sc = Scratch::new();
    let decl = orders_and_customers(&sc);
    let steps =
        format!(r#"{{ op = "{op}", table = "customers", foreign_key = "jk", plugin = "jk" }}, {{ op = "to_stream" }}"#);
    let out = run_local(&sc, &joins(decl, &through("orders", &steps)), &["out"]).expect("the foreign-key join runs");
    let results = kvs(&out, "out");
    let mut table = std::collections::BTreeMap::new();
    for (k, v) in &results {
        if v == "null" {
            table.remove(k);
        } else {
            table.insert(k.clone(), v.clone());
        }
    }
    (results, table)
}

fn rows(rows: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    rows.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

#[test]
fn a_foreign_key_join_follows_a_rows_foreign_key_and_leaves_no_result_of_the_old_one() {
    // KIP-213: each order joins the customer its value names; the result table converges
    // (answers for a row changed since they were asked are dropped as stale, so which
    // intermediate results appear depends on how far the orders ran ahead). `o1` moved from
    // `c1` to `c2`: `c1`'s later update must not reach it. `o3`'s customer was deleted.
    let (results, table) = foreign_key_join("join");
    assert_eq!(
        table,
        rows(&[("o1", "o1:c2/book+Bob"), ("o2", "o2:c3/pen+Cid"), ("o4", "o4:c1/hat+Ann2")]),
        "{results:?}"
    );
    assert!(
        !results.iter().any(|(k, v)| k == "o1" && v.contains("Ann2")),
        "a stale result of the old key: {results:?}"
    );
    assert!(
        results.iter().all(|(_, v)| v == "null" || !v.ends_with("+none")),
        "an inner join joins only found rows: {results:?}"
    );
}

#[test]
fn a_left_foreign_key_join_keeps_rows_whose_customer_is_missing() {
    let (results, table) = foreign_key_join("left_join");
    assert_eq!(
        table,
        rows(&[("o1", "o1:c2/book+Bob"), ("o2", "o2:c3/pen+Cid"), ("o3", "o3:c4/cup+none"), ("o4", "o4:c1/hat+Ann2")]),
        "{results:?}"
    );
    assert!(
        !results.iter().any(|(k, v)| k == "o1" && v.contains("Ann2")),
        "a stale result of the old key: {results:?}"
    );
}

/// A versioned table (`history_retention`, KIP-889) keeps each user's earlier names; a
/// stream-table join looks each click up as of the click's own time (KIP-914), so a click
/// that arrives late still meets the name its user had then. An update older than the
/// user's newest goes into the history only: the table's changes downstream skip it.
#[test]
fn a_versioned_table_is_looked_up_as_of_each_records_time() {
    let users = [
        (Some("u1"), Some("alice"), 1),
        (Some("u2"), Some("bob"), 3),
        (Some("u2"), None, 8),
        (Some("u1"), Some("alicia"), 10),
        // Out of order: valid from 6 until alicia at 10.
        (Some("u1"), Some("ally"), 6),
    ];
    let clicks = [
        (Some("u1"), Some("c1"), 2),
        (Some("u1"), Some("c2"), 12),
        (Some("u1"), Some("c3"), 5),
        (Some("u2"), Some("c4"), 13),
        (Some("u2"), Some("c5"), 4),
        (Some("u1"), Some("c6"), 7),
    ];
    let decls = |retention: &str| {
        format!(
            "[streams.clicks]\nfile = \"clicks.jsonl\"\nfile_format = \"jsonl\"\n\
             [tables.users]\nfile = \"users.jsonl\"\nfile_format = \"jsonl\"\nhistory_retention = {retention}\n"
        )
    };
    let pipelines = |op: &str| {
        format!(
            "[pipelines.p]\nfrom = \"clicks\"\nto = \"out\"\nsteps = [{{ op = \"{op}\", table = \"users\", plugin = \"jk\" }}]\n\
             [pipelines.changes]\nfrom = \"users\"\nto = \"changes\"\nsteps = [{{ op = \"to_stream\" }}]\n"
        )
    };
    let run = |retention: &str, op: &str| {
        let sc = Scratch::new();
        file(&sc, "users.jsonl", &users);
        file(&sc, "clicks.jsonl", &clicks);
        run_local(&sc, &joins(&decls(retention), &pipelines(op)), &["out", "changes"]).unwrap()
    };
    let out = run("\"1h\"", "join");
    assert_eq!(
        kvs(&out, "out"),
        vec![
            kv("u1", "u1:c1+alice"),
            kv("u1", "u1:c2+alicia"),
            kv("u1", "u1:c3+alice"),
            kv("u2", "u2:c5+bob"),
            kv("u1", "u1:c6+ally"),
        ],
        "each click meets its user as of the click; u2 was deleted at 8"
    );
    assert_eq!(
        kvs(&out, "changes"),
        vec![kv("u1", "alice"), kv("u2", "bob"), kv("u2", "null"), kv("u1", "alicia")],
        "the out-of-order update is history only"
    );
    let out = run("\"1h\"", "left_join");
    assert_eq!(
        kvs(&out, "out"),
        vec![
            kv("u1", "u1:c1+alice"),
            kv("u1", "u1:c2+alicia"),
            kv("u1", "u1:c3+alice"),
            kv("u2", "u2:c4+none"),
            kv("u2", "u2:c5+bob"),
            kv("u1", "u1:c6+ally"),
        ]
    );
    // With 3 ms of history (the table's stream time reaches 10): lookups before 7 find
    // nothing, and `ally` at 6 came too late to be kept; alice is still valid at 7.
    let out = run("3", "join");
    assert_eq!(kvs(&out, "out"), vec![kv("u1", "u1:c1+alice"), kv("u1", "u1:c2+alicia"), kv("u1", "u1:c6+alice")]);
}

/// A stream-table join with a grace period (KIP-923): each click waits until the join's
/// stream time is `grace` past it, then joins as of its time, in timestamp order, so a
/// table update that arrives after the click but is older than it still counts. A click
/// already older than that joins at once; the last clicks wait for stream time to move.
#[test]
fn a_grace_period_holds_stream_records_for_late_table_updates() {
    let sc = Scratch::new();
    file(
        &sc,
        "users.jsonl",
        &[(Some("u1"), Some("alice"), 1), (Some("u1"), Some("alicia"), 10), (Some("u1"), Some("ally"), 6)],
    );
    file(
        &sc,
        "clicks.jsonl",
        &[
            (Some("u1"), Some("c1"), 2),
            (Some("u1"), Some("c2"), 7),
            (Some("u1"), Some("c3"), 11),
            (Some("u1"), Some("c4"), 20),
            (Some("u1"), Some("c5"), 9),
        ],
    );
    let decls = "[streams.clicks]\nfile = \"clicks.jsonl\"\nfile_format = \"jsonl\"\n\
                 [tables.users]\nfile = \"users.jsonl\"\nfile_format = \"jsonl\"\nhistory_retention = \"1h\"\n";
    let step = |grace: &str| {
        format!(
            "[pipelines.p]\nfrom = \"clicks\"\nto = \"out\"\nsteps = [{{ op = \"join\", table = \"users\", plugin = \"jk\"{grace} }}]\n"
        )
    };
    let out = run_local(&sc, &joins(decls, &step(", grace = 3")), &["out"]).unwrap();
    assert_eq!(
        kvs(&out, "out"),
        vec![kv("u1", "u1:c1+alice"), kv("u1", "u1:c2+ally"), kv("u1", "u1:c3+alicia"), kv("u1", "u1:c5+ally")],
        "c2 waited for ally; c4 waits still; c5 was past the grace and joined at once"
    );
    assert_eq!(timestamps(&out), vec![2, 7, 11, 9]);
    // Without the grace period c2 joins before ally arrives.
    let sc2 = Scratch::new();
    for f in ["users.jsonl", "clicks.jsonl"] {
        std::fs::copy(sc.path(f), sc2.path(f)).expect("copy");
    }
    let out = run_local(&sc2, &joins(decls, &step("")), &["out"]).unwrap();
    assert_eq!(
        kvs(&out, "out"),
        vec![
            kv("u1", "u1:c1+alice"),
            kv("u1", "u1:c2+alice"),
            kv("u1", "u1:c3+alicia"),
            kv("u1", "u1:c4+alicia"),
            kv("u1", "u1:c5+ally"),
        ]
    );
}

/// A grace period needs the table's history, and only tables keep one.
#[test]
fn a_grace_period_needs_a_versioned_table_and_only_tables_keep_history() {
    let sc = Scratch::new();
    file(&sc, "users.jsonl", &[(Some("u1"), Some("alice"), 1)]);
    file(&sc, "clicks.jsonl", &[(Some("u1"), Some("c1"), 2)]);
    let plain = "[streams.clicks]\nfile = \"clicks.jsonl\"\nfile_format = \"jsonl\"\n\
                 [tables.users]\nfile = \"users.jsonl\"\nfile_format = \"jsonl\"\n";
    let step = "[pipelines.p]\nfrom = \"clicks\"\nto = \"out\"\nsteps = [{ op = \"join\", table = \"users\", plugin = \"jk\", grace = \"5s\" }]\n";
    let e = format!("{:#}", run_local(&sc, &joins(plain, step), &["out"]).expect_err("refused"));
    assert!(
        e.contains("pipelines.p.steps[0].grace")
            && e.contains("`users` is not versioned")
            && e.contains("history_retention"),
        "{e}"
    );
    let on_a_stream = "[streams.clicks]\nfile = \"clicks.jsonl\"\nfile_format = \"jsonl\"\nhistory_retention = \"1h\"\n\
                       [tables.users]\nfile = \"users.jsonl\"\nfile_format = \"jsonl\"\n";
    let step = "[pipelines.p]\nfrom = \"clicks\"\nto = \"out\"\nsteps = [{ op = \"join\", table = \"users\", plugin = \"jk\" }]\n";
    let e = format!("{:#}", run_local(&sc, &joins(on_a_stream, step), &["out"]).expect_err("refused"));
    assert!(e.contains("streams.clicks.history_retention") && e.contains("only a `[tables]` table"), "{e}");
}

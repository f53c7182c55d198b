//! The schema-registry client against a real Confluent-compatible registry server:
//! rivven-schema (crates.io; `make setup` installs it), started on a free port on 127.0.0.1.
//! The binary comes from `WASP_SCHEMA_REGISTRY` (set by `make test`), else `rivven-schema` on
//! `PATH` or in `~/.cargo/bin`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wasp_host::io::registry::{Compatibility, Registry, RegistryError, SchemaType, frame, unframe};

/// The registry server's binary, or a failure that says how to get one.
fn server_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("WASP_SCHEMA_REGISTRY").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "WASP_SCHEMA_REGISTRY={} is not a file", p.display());
        return p;
    }
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    dirs.iter().map(|d| d.join("rivven-schema")).find(|p| p.is_file()).unwrap_or_else(|| {
        panic!(
            "the schema registry tests need rivven-schema, and none was found (WASP_SCHEMA_REGISTRY, PATH, \
             ~/.cargo/bin). Install it once with `cargo install --locked rivven-schema --version 0.0.22` \
             (or `make setup`)."
        )
    })
}

/// A running registry server, stopped when dropped.
struct RegistryServer {
    child: Child,
    url: String,
}

impl RegistryServer {
    /// Starts a server on a free port and waits until it answers the API. The server does
    /// not report the port it bound for port 0, so one is chosen here; another test's server
    /// or broker may take it first, so a server that exits, or a listener that does not
    /// answer as a registry, is given up for another port.
    fn start() -> Self {
        for _ in 0..5 {
            if let Some(server) = Self::start_on(free_port()) {
                return server;
            }
        }
        panic!("rivven-schema did not answer on any of five ports within 20 s each");
    }

    /// Starts a server on `port`; `None` if it exits or does not answer within 20 s.
    fn start_on(port: u16) -> Option<Self> {
        let child = Command::new(server_binary())
            .args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting rivven-schema");
        let mut server = Self { child, url: format!("http://127.0.0.1:{port}") };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            if server.child.try_wait().expect("checking rivven-schema").is_some() {
                return None;
            }
            let answered = ureq::get(&format!("{}/subjects", server.url))
                .config()
                .timeout_global(Some(Duration::from_secs(2)))
                .build()
                .call()
                .is_ok_and(|r| r.status() == 200);
            if answered {
                return Some(server);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const V1: &str = r#"{"type":"record","name":"Click","fields":[{"name":"user","type":"string"}]}"#;
/// V1 and a field with a default: readable by and from V1.
const V2: &str = r#"{"type":"record","name":"Click","fields":[{"name":"user","type":"string"},{"name":"page","type":"string","default":""}]}"#;
/// V1 and a field without a default: a V3 reader cannot read V1's records.
const V3: &str =
    r#"{"type":"record","name":"Click","fields":[{"name":"user","type":"string"},{"name":"n","type":"int"}]}"#;

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).expect("a JSON schema text")
}

/// Registered, fetched by id, framed: a schema is asked for once, and the client keeps it
/// (ids are immutable), so a registry that goes away does not stop records of known schemas.
#[test]
fn schemas_register_and_fetch_by_id_once_and_records_frame_with_their_id() {
    let server = RegistryServer::start();
    let registry = Registry::new(&server.url);
    let id = registry.register("clicks-value", SchemaType::Avro, V1).expect("registering V1");
    assert_eq!(registry.register("clicks-value", SchemaType::Avro, V1).expect("the same schema again"), id);
    // A second client sees it from the server (which normalises the text: compared parsed).
    let other = Registry::new(&server.url);
    let fetched = other.schema(id).expect("the schema by id");
    assert_eq!((fetched.id, fetched.schema_type), (id, SchemaType::Avro));
    assert_eq!(json(&fetched.text), json(V1));
    let mut record = Vec::new();
    frame(id, b"\x08alice", &mut record);
    let (read_id, payload) = unframe(&record).expect("a framed record");
    assert_eq!((read_id, payload), (id, &b"\x08alice"[..]));

    drop(server);
    assert_eq!(other.schema(id).expect("a cached schema").id, id, "a known id needs no registry");
    assert_eq!(registry.register("clicks-value", SchemaType::Avro, V1).expect("a cached id"), id);
    match other.schema(id + 100) {
        Err(RegistryError::Unreachable { url, .. }) => assert!(url.starts_with("http://127.0.0.1:"), "{url}"),
        other => panic!("an unknown id with the registry gone is an unreachable error, got {other:?}"),
    }
}

/// Compatibility levels as the registry applies them: under BACKWARD a new field needs a
/// default (a check says why not, and registering is refused with the registry's reason); under
/// FULL the same holds both ways; a compatible schema becomes the next version.
#[test]
fn compatibility_checks_and_refusals_carry_the_registrys_reasons() {
    let server = RegistryServer::start();
    let registry = Registry::new(&server.url);
    let v1 = registry.register("orders-value", SchemaType::Avro, V1).expect("registering V1");
    registry.set_compatibility("orders-value", Compatibility::Backward).expect("setting BACKWARD");
    let why =
        registry.check("orders-value", SchemaType::Avro, V3).expect("a check").expect("V3 is not backward compatible");
    assert!(why.contains('n'), "the reason names the field: {why}");
    match registry.register("orders-value", SchemaType::Avro, V3) {
        Err(RegistryError::Refused { status: 409, message, .. }) => {
            assert!(message.to_lowercase().contains("incompatible"), "{message}")
        }
        other => panic!("registering an incompatible schema is refused with 409, got {other:?}"),
    }
    assert_eq!(registry.check("orders-value", SchemaType::Avro, V2).expect("a check"), None, "V2 adds a default");
    let v2 = registry.register("orders-value", SchemaType::Avro, V2).expect("registering V2");
    assert_ne!(v1, v2);

    registry.set_compatibility("orders-value", Compatibility::Full).expect("setting FULL");
    let v4 = r#"{"type":"record","name":"Click","fields":[{"name":"user","type":"string"},{"name":"page","type":"string","default":""},{"name":"m","type":"long"}]}"#;
    assert!(
        registry.check("orders-value", SchemaType::Avro, v4).expect("a check").is_some(),
        "FULL refuses a field without a default"
    );
}

/// A registry server, a client of it, and a broker with `topics` (one partition each).
fn registry_and_broker(topics: &[&str]) -> (RegistryServer, Registry, crate::broker::Broker) {
    let server = RegistryServer::start();
    let registry = Registry::new(&server.url);
    let broker = crate::broker::Broker::start();
    broker.create_topics(topics, 1);
    (server, registry, broker)
}

/// The head of a test manifest: application `id` (with `application`, lines of its table) on
/// the broker at `bootstrap`, and the registry at `url`. What follows may go on with
/// `[application.schema_registry]` keys.
fn header(id: &str, application: &str, bootstrap: &str, url: &str) -> String {
    format!(
        "version = 1\n[application]\nid = \"{id}\"\n{application}\n[application.kafka]\n\
         bootstrap_servers = \"{bootstrap}\"\n[application.schema_registry]\nurl = \"{url}\"\n"
    )
}

/// A record of `fields` encoded with `schema` and framed with its registered `id`, as
/// Confluent's Avro serializer writes it.
fn framed_avro(schema: &apache_avro::Schema, id: u32, fields: Vec<(&str, apache_avro::types::Value)>) -> Vec<u8> {
    let record = apache_avro::types::Value::Record(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect());
    let payload = apache_avro::writer::datum::GenericDatumWriter::builder(schema)
        .build()
        .and_then(|w| w.write_value_to_vec(record))
        .expect("an Avro datum");
    let mut framed = Vec::new();
    frame(id, &payload, &mut framed);
    framed
}

/// Issue 14's pipeline on the real broker and the real registry: Avro events, framed with the
/// id the registry gave their schema, are read with the writer's schema and resolved into the
/// example's; the Python function (pipelines/user-events) sees them as JSON; what it returns
/// is written as Protobuf, its `.proto` registered on the first write. Records that are not
/// registered Avro, name an id the registry does not have, or were written with a schema the
/// reader's cannot resolve go to the dead-letter topic with a deserialization error that says
/// which.
#[test]
fn kafka_avro_in_through_the_registry_python_sees_json_protobuf_out() {
    use crate::common::{plugin, repo};
    use prost_reflect::DynamicMessage;

    let (server, registry, broker) = registry_and_broker(&["user_activity", "categorized-events", "user-events-dlq"]);
    let example = repo().join("pipelines/user-events/schemas");
    let avsc = std::fs::read_to_string(example.join("user_event.avsc")).expect("the example's Avro schema");
    let writer = apache_avro::Schema::parse_str(&avsc).expect("the Avro schema parses");
    let id = registry.register("user_activity-value", SchemaType::Avro, &avsc).expect("registering the events' schema");
    // A schema the reader's cannot resolve: `event_type` is a long there.
    let alien_text = r#"{"type":"record","name":"UserEvent","namespace":"io.wasp.examples","fields":[{"name":"event_id","type":"string"},{"name":"event_type","type":"long"}]}"#;
    let alien = apache_avro::Schema::parse_str(alien_text).expect("the alien schema parses");
    let alien_id = registry.register("alien-value", SchemaType::Avro, alien_text).expect("registering another schema");

    let avro = framed_avro;
    let event = |event_id: &str, user: &str, kind: (u32, &str), ts: i64, product: Option<&str>, value: Option<f64>| {
        use apache_avro::types::Value;
        let opt_s = |s: Option<&str>| match s {
            Some(s) => Value::Union(1, Box::new(Value::String(s.to_owned()))),
            None => Value::Union(0, Box::new(Value::Null)),
        };
        let opt_d = |d: Option<f64>| match d {
            Some(d) => Value::Union(1, Box::new(Value::Double(d))),
            None => Value::Union(0, Box::new(Value::Null)),
        };
        avro(
            &writer,
            id,
            vec![
                ("event_id", Value::String(event_id.to_owned())),
                ("user_id", Value::String(user.to_owned())),
                ("event_type", Value::Enum(kind.0, kind.1.to_owned())),
                ("timestamp", Value::Long(ts)),
                ("product_id", opt_s(product)),
                ("value", opt_d(value)),
            ],
        )
    };
    let records: Vec<(Option<&str>, Vec<u8>)> = vec![
        (Some("alice"), event("e1", "alice", (4, "login"), 1000, None, None)),
        (Some("alice"), event("e2", "alice", (0, "view"), 2000, Some("p-42"), None)),
        (Some("bob"), b"{\"event_id\":\"e3\"}".to_vec()),
        (Some("bob"), event("e4", "bob", (3, "search"), 2500, None, None)),
        (Some("carol"), {
            let mut v = event("e5", "carol", (1, "click"), 2600, None, None);
            v[1..5].copy_from_slice(&9999u32.to_be_bytes());
            v
        }),
        (
            Some("dave"),
            avro(
                &alien,
                alien_id,
                vec![
                    ("event_id", apache_avro::types::Value::String("e6".into())),
                    ("event_type", apache_avro::types::Value::Long(7)),
                ],
            ),
        ),
        (Some("alice"), event("e7", "alice", (2, "purchase"), 4000, Some("p-42"), Some(19.99))),
    ];
    broker.produce("user_activity", &records);

    let dir = tempfile::tempdir().expect("a temporary directory");
    let manifest = dir.path().join("user-events.toml");
    std::fs::write(
        &manifest,
        header("user-events-kafka", "commit_interval_ms = 200", &broker.bootstrap(), &server.url)
            + &format!(
                r#"[streams.user_events]
topic = "user_activity"
value = {{ format = "avro", schema = "{schemas}/user_event.avsc" }}
[streams.categorized_events]
topic = "categorized-events"
value = {{ format = "protobuf", schema = "{schemas}/categorized_event.proto", message = "wasp.examples.CategorizedEvent", register = true }}
[plugins.categorize]
path = "{categorize}"
[pipelines.categorize]
from = "user_events"
steps = [{{ op = "flat_map", plugin = "categorize", function = "categorize_events" }}]
to = "categorized_events"
on_error = "dead-letter"
dead_letter_topic = "user-events-dlq"
"#,
                schemas = example.display(),
                categorize = plugin("categorize"),
            ),
    )
    .expect("write the manifest");
    let mut wasp = crate::recovery::start("wasp-user-events", &manifest);
    let mut reader = broker.reader(&["categorized-events", "user-events-dlq"]);
    assert!(reader.read_count(6, Duration::from_secs(120)), "only {} of 6 records came out", reader.records.len());
    wasp.assert_running();

    // The output is registered Protobuf: the `.proto` is the subject's latest schema, and
    // every record is framed with its id and the first message's index.
    let latest = registry.latest("categorized-events-value").expect("the output's schema was registered");
    assert_eq!(latest.schema_type, SchemaType::Protobuf);
    let pool = protox::compile([example.join("categorized_event.proto")], [&example]).expect("the .proto compiles");
    let pool = prost_reflect::DescriptorPool::from_file_descriptor_set(pool).expect("a descriptor pool");
    let message = pool.get_message_by_name("wasp.examples.CategorizedEvent").expect("the message");
    let out: Vec<(String, serde_json::Value)> = reader
        .records
        .iter()
        .filter(|r| r.topic == "categorized-events")
        .map(|r| {
            let value = r.value.as_deref().expect("a value");
            let (out_id, rest) = unframe(value).expect("a registered record");
            assert_eq!(out_id, latest.id, "framed with the registered id");
            assert_eq!(rest.first(), Some(&0), "the message index of the file's first message");
            let msg = DynamicMessage::decode(message.clone(), &rest[1..]).expect("a CategorizedEvent");
            let json = serde_json::to_value(&msg).expect("the message as JSON");
            (r.key_str().to_owned(), json)
        })
        .collect();
    let keys: Vec<&str> = out.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["alice", "bob", "alice"], "{out:?}");
    assert_eq!(out[0].1["eventId"], "e2");
    assert_eq!(out[0].1["category"], "engagement");
    assert_eq!(out[0].1["productId"], "p-42");
    assert_eq!(out[1].1["eventType"], "search");
    assert_eq!(out[1].1["category"], "conversion");
    assert_eq!(out[2].1["eventId"], "e7");
    assert_eq!(out[2].1["value"], 19.99);
    assert_eq!(out[2].1["timestamp"], "4000", "int64 in Protobuf's JSON mapping: {:?}", out[2].1);

    let dlq: Vec<_> = reader.records.iter().filter(|r| r.topic == "user-events-dlq").collect();
    assert_eq!(dlq.iter().map(|r| r.key_str()).collect::<Vec<_>>(), ["bob", "carol", "dave"]);
    for r in &dlq {
        assert_eq!(r.header("wasp.error.code"), Some("deserialization"), "{r:?}");
        assert_eq!(r.header("wasp.source.topic"), Some("user_activity"), "{r:?}");
    }
    let message = |i: usize| dlq[i].header("wasp.error.message").unwrap_or_default().to_owned();
    assert!(message(0).contains("the value is not a registered record"), "{}", message(0));
    assert!(message(1).contains("schema id 9999") || message(1).contains("9999"), "{}", message(1));
    assert!(message(2).contains("does not match its Avro schema"), "{}", message(2));
    // The dead letters are the records as they were read, bytes unchanged.
    assert_eq!(dlq[0].value.as_deref(), Some(&records[2].1[..]));
    assert_eq!(dlq[2].value.as_deref(), Some(&records[5].1[..]));
    wasp.terminate();
    assert!(wasp.wait_exit(Duration::from_secs(60)).success());
}

/// A registry that is away is waited for, not blamed on the records: the pipeline writes
/// registered Avro, and its registry is started only seconds after the records arrive. The
/// records met meanwhile wait in the stream thread (`wait = "60s"`) and are written, framed
/// with the id their schema got, once it answers; none is dead-lettered.
#[test]
fn kafka_records_met_while_the_registry_is_away_wait_for_it_and_none_is_dead_lettered() {
    use crate::common::plugin;
    const RECORDS: usize = 20;
    let broker = crate::broker::Broker::start();
    broker.create_topics(&["away-in", "away-out", "away-dlq"], 1);
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("click.avsc"), V1).expect("writing the schema");
    let port = free_port();
    let manifest = dir.path().join("away.toml");
    std::fs::write(
        &manifest,
        header("registry-away", "commit_interval_ms = 200", &broker.bootstrap(), &format!("http://127.0.0.1:{port}"))
            + &format!(
                r#"wait = "60s"
[streams.clicks]
topic = "away-in"
value = "json"
[streams.out]
topic = "away-out"
value = {{ format = "avro", schema = "click.avsc", register = true }}
[plugins.kit]
path = "{kit}"
[pipelines.p]
from = "clicks"
steps = [{{ op = "filter", plugin = "kit" }}]
to = "out"
on_error = "dead-letter"
dead_letter_topic = "away-dlq"
"#,
                kit = plugin("test-kit"),
            ),
    )
    .expect("writing the manifest");
    let clicks: Vec<(Option<String>, String)> =
        (0..RECORDS).map(|i| (Some(format!("u{i}")), format!(r#"{{"user":"keep-{i}"}}"#))).collect();
    broker.produce("away-in", &clicks);
    let mut wasp = crate::recovery::start("wasp-registry-away", &manifest);
    wasp.wait_logged("the schema registry does not answer; waiting", Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(3));
    wasp.assert_running();
    let server = RegistryServer::start_on(port).expect("the registry starts on the port the manifest names");

    let mut reader = broker.reader(&["away-out", "away-dlq"]);
    assert!(
        reader.read_count(RECORDS, Duration::from_secs(120)),
        "{} of {RECORDS} records came out",
        reader.records.len()
    );
    reader.drain(Duration::from_secs(2), Duration::from_secs(10));
    wasp.assert_running();
    let dlq: Vec<_> = reader.records.iter().filter(|r| r.topic == "away-dlq").collect();
    let reasons: Vec<_> = dlq.iter().map(|r| (r.key_str(), r.header("wasp.error.message"))).collect();
    assert!(reasons.is_empty(), "records dead-lettered while the registry was away: {reasons:?}");
    let id = Registry::new(&server.url).latest("away-out-value").expect("the schema was registered").id;
    let schema = apache_avro::Schema::parse_str(V1).expect("V1 parses");
    let users: Vec<String> = reader
        .records
        .iter()
        .map(|r| {
            let (out_id, payload) = unframe(r.value.as_deref().expect("a value")).expect("a registered record");
            assert_eq!(out_id, id, "framed with the id the schema got");
            let value = apache_avro::reader::datum::GenericDatumReader::builder(&schema)
                .build()
                .and_then(|r| r.read_value(&mut &payload[..]))
                .expect("an Avro Click");
            match value {
                apache_avro::types::Value::Record(fields) => match &fields[0].1 {
                    apache_avro::types::Value::String(u) => u.clone(),
                    other => panic!("user is a string: {other:?}"),
                },
                other => panic!("a record: {other:?}"),
            }
        })
        .collect();
    let want: Vec<String> = (0..RECORDS).map(|i| format!("keep-{i}")).collect();
    assert_eq!(users, want, "every record once, in order");
    wasp.terminate();
    assert!(wasp.wait_exit(Duration::from_secs(60)).success());
}

/// A table whose topic is registered Avro: its rows are kept as the JSON plugins see, whether
/// a task read them or a restore did. The second run, on a fresh state directory, restores
/// the table from its own topic (Kafka Streams' source-topic changelog) up to the committed
/// offset, and the clicks it then joins see the profiles as JSON, not as the topic's bytes.
#[test]
fn kafka_an_avro_table_restored_from_its_topic_joins_as_json() {
    use crate::common::plugin;
    use apache_avro::types::Value;

    let (server, registry, broker) = registry_and_broker(&["clicks", "user-profiles", "enriched-clicks"]);
    let avsc = r#"{"type":"record","name":"Profile","fields":[{"name":"name","type":"string"},{"name":"region","type":"string"},{"name":"tier","type":"string"}]}"#;
    let schema = apache_avro::Schema::parse_str(avsc).expect("the profile schema parses");
    let id =
        registry.register("user-profiles-value", SchemaType::Avro, avsc).expect("registering the profiles' schema");
    let profile = |name: &str, tier: &str| {
        let region = Value::String("eu-west".to_owned());
        framed_avro(
            &schema,
            id,
            vec![
                ("name", Value::String(name.to_owned())),
                ("region", region),
                ("tier", Value::String(tier.to_owned())),
            ],
        )
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let manifest = dir.path().join("enrich.toml");
    std::fs::write(
        &manifest,
        header("avro-table", "commit_interval_ms = 100\nmax_task_idle_ms = 2000", &broker.bootstrap(), &server.url)
            + &format!(
                r#"[streams.clicks]
value = "json"
[tables.user_profiles]
topic = "user-profiles"
value = {{ format = "avro" }}
[plugins.enrich]
path = "{enrich}"
[pipelines.enrich]
from = "clicks"
steps = [{{ op = "left_join", table = "user_profiles", plugin = "enrich" }}]
to = "enriched-clicks"
"#,
                enrich = plugin("enrich-click"),
            ),
    )
    .expect("write the manifest");
    let run = |state: &Path| crate::recovery::start_in("wasp-avro-table", &manifest, state);
    broker.produce_timed(
        "user-profiles",
        &[("u1", profile("Alice", "free"), 1000), ("u2", profile("Bob", "gold"), 1000)],
    );
    broker.produce_timed("clicks", &[("u1", r#"{"page":"/a"}"#, 2000)]);
    let mut reader = broker.reader(&["enriched-clicks"]);
    let first_state = tempfile::tempdir().expect("a state directory");
    let mut first = run(first_state.path());
    assert!(reader.read_count(1, Duration::from_secs(120)), "no enriched click from the first run");
    first.terminate();
    assert!(first.wait_exit(Duration::from_secs(60)).success());
    let enriched = |i: usize, reader: &crate::broker::Reader| -> serde_json::Value {
        serde_json::from_str(reader.records[i].value_str())
            .unwrap_or_else(|e| panic!("an enriched click is JSON ({e}): {:?}", reader.records[i]))
    };
    assert_eq!(enriched(0, &reader)["profile"]["name"], "Alice", "{}", enriched(0, &reader));

    // A fresh state directory: the table is restored from `user-profiles` before the task runs.
    let second_state = tempfile::tempdir().expect("a state directory");
    let mut second = run(second_state.path());
    broker.produce_timed("clicks", &[("u2", r#"{"page":"/b"}"#, 3000)]);
    assert!(reader.read_count(2, Duration::from_secs(120)), "no enriched click from the second run");
    second.wait_logged("store restored from its changelog", Duration::from_secs(10));
    let restored = enriched(1, &reader);
    assert_eq!(restored["user"], "u2", "{restored}");
    assert_eq!(
        restored["profile"],
        serde_json::json!({"name": "Bob", "region": "eu-west", "tier": "gold"}),
        "{restored}"
    );
    second.terminate();
    assert!(second.wait_exit(Duration::from_secs(60)).success());
}

/// A store whose values are Avro through the registry (Kafka Streams' `Materialized` with a
/// registry serde): the changelog holds each aggregate framed with the id of the schema it was
/// written with, registered under the changelog's subject. A new version of the application
/// declares a newer schema (two fields more, with defaults) and starts on a fresh state
/// directory: restored from the changelog, the older values are read with their writer's
/// schema, found by id, and resolved into the new one, which the new plugin (that knows only
/// its own fields) folds on from.
#[test]
fn kafka_a_registered_avro_store_restored_from_its_changelog_reads_older_values_with_the_new_schema() {
    use crate::common::{plugin, repo};

    let (server, registry, broker) = registry_and_broker(&["numbers", "stats"]);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let manifest = |version: &str| {
        let path = dir.path().join(format!("stats-{version}.toml"));
        let text = header("avro-store", "commit_interval_ms = 100", &broker.bootstrap(), &server.url)
            + &format!(
                r#"[application.admin]
bind = "127.0.0.1:0"
[streams.numbers]
value = "string"
[plugins.stats]
path = "{plugin}"
[stores.stats]
value = {{ format = "avro", schema = "{schema}" }}
[pipelines.p]
from = "numbers"
steps = [{{ op = "group_by_key" }}, {{ op = "aggregate", plugin = "stats", store = "stats" }}, {{ op = "to_stream" }}]
to = "stats"
"#,
                plugin = plugin(&format!("stats-{version}")),
                schema = repo().join(format!("tests/data/schemas/stats-{version}.avsc")).display(),
            );
        std::fs::write(&path, text).expect("write the manifest");
        path
    };
    let run = |manifest: &Path, state: &Path| crate::recovery::start_in("wasp-avro-store", manifest, state);
    let mut reader = broker.reader(&["stats"]);
    let value = |i: usize, reader: &crate::broker::Reader| -> serde_json::Value {
        serde_json::from_str(reader.records[i].value_str())
            .unwrap_or_else(|e| panic!("an aggregate is JSON ({e}): {:?}", reader.records[i]))
    };

    broker.produce_timed("numbers", &[("a", "5", 1000), ("b", "7", 1001), ("a", "1", 1002)]);
    let first_state = tempfile::tempdir().expect("a state directory");
    let mut first = run(&manifest("v1"), first_state.path());
    assert!(reader.read_count(3, Duration::from_secs(120)), "no aggregates from the first run");
    first.terminate();
    assert!(first.wait_exit(Duration::from_secs(60)).success());
    assert_eq!(value(2, &reader), serde_json::json!({"count": 2, "total": 6}));

    // The changelog's entries are `time | framed Avro`, with the id stats-v1.avsc was
    // registered under, in the changelog's subject.
    let subject = "avro-store-stats-changelog-value";
    let v1 = registry.latest(subject).expect("the store registered its schema");
    let changelog = broker.consume(&["avro-store-stats-changelog"], 2, Duration::from_secs(30));
    let entries: Vec<_> = changelog
        .iter()
        .filter(|r| !r.headers.iter().any(|(name, _)| name == wasp_host::record::MARKER_HEADER))
        .collect();
    assert!(!entries.is_empty(), "{changelog:?}");
    for e in &entries {
        let v = e.value.as_deref().expect("an entry has a value");
        let (id, _) =
            unframe(&v[8..]).unwrap_or_else(|err| panic!("a framed Avro value after the time ({err:?}): {e:?}"));
        assert_eq!(id, v1.id, "{e:?}");
    }

    // Version 3 on a fresh state directory: the store is restored from the changelog.
    let second_state = tempfile::tempdir().expect("a state directory");
    let mut second = run(&manifest("v3"), second_state.path());
    broker.produce_timed("numbers", &[("a", "9", 2000), ("b", "-2", 2001)]);
    assert!(reader.read_count(5, Duration::from_secs(120)), "no aggregates from the second run");
    second.wait_logged("store restored from its changelog", Duration::from_secs(10));
    let by_key: std::collections::BTreeMap<String, serde_json::Value> =
        (3..5).map(|i| (reader.records[i].key_str().to_owned(), value(i, &reader))).collect();
    assert_eq!(by_key["a"], serde_json::json!({"count": 3, "total": 15, "max": 9, "unit": "unit"}));
    assert_eq!(by_key["b"], serde_json::json!({"count": 2, "total": 5, "max": -2, "unit": "unit"}));
    // Interactive queries answer in JSON too, read through the store's format.
    let base = format!("http://{}", crate::admin::admin_address(&mut second));
    let answer = crate::admin::wait_http(&format!("{base}/stores/stats/keys/b"), "b's stats", |b| b.contains("unit"));
    let answer: serde_json::Value = serde_json::from_str(&answer).expect("the answer is JSON");
    let value: serde_json::Value =
        serde_json::from_str(answer["value"].as_str().unwrap_or_default()).expect("the value is JSON text");
    assert_eq!(value, serde_json::json!({"count": 2, "total": 5, "max": -2, "unit": "unit"}), "{answer}");
    second.terminate();
    assert!(second.wait_exit(Duration::from_secs(60)).success());
    // The new schema was registered as the subject's next version (backward compatible: its
    // new fields have defaults).
    let v3 = registry.latest(subject).expect("the subject's latest");
    assert_ne!(v3.id, v1.id);
    assert!(v3.text.contains("unit"), "{}", v3.text);
}

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
    fn start() -> Self {
        // The server does not report the port it bound for port 0: a free one is chosen here.
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let child = Command::new(server_binary())
            .args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting rivven-schema");
        let server = Self { child, url: format!("http://127.0.0.1:{port}") };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "rivven-schema did not listen on {port} within 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }
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

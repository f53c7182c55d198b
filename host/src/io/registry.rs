//! A Confluent-compatible schema registry: the wire format of registered records, and a client
//! with a cache. A record written with a registered schema is framed as Confluent's
//! serializers frame it: a zero magic byte, the schema id (4 bytes, big-endian), then the
//! encoded value. A schema, once fetched by id or registered under a subject, is kept for the
//! life of the client (ids are immutable in the registry), so the record path asks the registry
//! once per schema, never per record.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The magic byte that opens a registered record.
pub const MAGIC: u8 = 0;

/// The most a registry answer may hold: a schema and its envelope. Past it the answer is
/// refused rather than read into memory.
pub const MAX_RESPONSE_BYTES: u64 = 8 << 20;

/// How long one request to the registry may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("the value is {0} bytes: a registered record has at least 5 (magic byte and schema id)")]
    TooShort(usize),
    #[error("the value starts with byte {0:#04x}, not the magic byte 0 of a registered record")]
    BadMagic(u8),
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("the schema registry at {url} could not be reached: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: Box<ureq::Error>,
    },
    #[error("the schema registry refused {what} ({status}): {message}")]
    Refused { what: String, status: u16, message: String },
    #[error("the schema registry's answer to {what} is not what its API returns: {detail}")]
    Malformed { what: String, detail: String },
}

impl RegistryError {
    /// Whether the registry could not answer now, rather than answered no: it is unreachable,
    /// or it says so (5xx, 408 Request Timeout, 429 Too Many Requests). Such a request is
    /// tried again; a refusal (404 for an unknown id, 409 for an incompatible schema) or an
    /// answer that does not parse is not.
    pub fn passing(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Refused { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            Self::Malformed { .. } => false,
        }
    }
}

/// The kind of a registered schema (`schemaType`; Avro when absent, as in Confluent's API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SchemaType {
    #[default]
    Avro,
    Protobuf,
    Json,
}

/// A subject's compatibility level: which earlier versions a new schema must be able to read,
/// or be read by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Compatibility {
    None,
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

/// A schema as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    pub id: u32,
    pub schema_type: SchemaType,
    /// The schema's text (an Avro or JSON Schema document, a `.proto` file).
    pub text: String,
}

/// Frames `payload` as a record of schema `id`, appending to `out` (which the caller reuses).
pub fn frame(id: u32, payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(5 + payload.len());
    out.push(MAGIC);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(payload);
}

/// The schema id and the encoded value of a registered record.
pub fn unframe(value: &[u8]) -> Result<(u32, &[u8]), WireError> {
    match value {
        [MAGIC, a, b, c, d, rest @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), rest)),
        [m, ..] if *m != MAGIC => Err(WireError::BadMagic(*m)),
        _ => Err(WireError::TooShort(value.len())),
    }
}

/// A client of one registry, with a cache of the schemas it has seen.
pub struct Registry {
    base: String,
    agent: ureq::Agent,
    by_id: Mutex<HashMap<u32, Arc<Schema>>>,
    /// `(subject, type, text)` -> id, for schemas registered (or looked up) under a subject.
    ids: Mutex<HashMap<(String, SchemaType, String), u32>>,
    /// How long a request the registry cannot answer now is tried again.
    wait: Duration,
    /// The registry stayed away for a whole `wait`: each request is tried once, until one is
    /// answered.
    away: AtomicBool,
}

#[derive(Serialize)]
struct SchemaBody<'a> {
    schema: &'a str,
    #[serde(rename = "schemaType")]
    schema_type: SchemaType,
}

#[derive(Deserialize)]
struct SchemaAnswer {
    schema: String,
    #[serde(rename = "schemaType", default)]
    schema_type: SchemaType,
}

#[derive(Deserialize)]
struct VersionAnswer {
    id: u32,
    schema: String,
    #[serde(rename = "schemaType", default)]
    schema_type: SchemaType,
}

#[derive(Deserialize)]
struct IdAnswer {
    id: u32,
}

#[derive(Deserialize)]
struct CompatibilityAnswer {
    is_compatible: bool,
    #[serde(default)]
    messages: Vec<String>,
}

impl Registry {
    /// A client of the registry at `url` (e.g. `http://127.0.0.1:8081`).
    pub fn new(url: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .build()
            .new_agent();
        Self {
            base: url.trim_end_matches('/').to_owned(),
            agent,
            by_id: Mutex::default(),
            ids: Mutex::default(),
            wait: Duration::ZERO,
            away: AtomicBool::new(false),
        }
    }

    /// Tries a request the registry cannot answer now (see [`RegistryError::passing`]) again,
    /// backing off from 100 ms to 5 s, for up to `wait` before it fails; once the registry
    /// has stayed away that long, each request is tried once until one is answered, so
    /// records that need it fail at once rather than each after a wait.
    #[must_use]
    pub fn waiting(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// The schema registered with `id`: from the cache, or asked once.
    pub fn schema(&self, id: u32) -> Result<Arc<Schema>, RegistryError> {
        if let Some(s) = self.by_id.lock().unwrap_or_else(PoisonError::into_inner).get(&id) {
            return Ok(s.clone());
        }
        let what = format!("schema id {id}");
        let answer: SchemaAnswer = self.call(&what, "GET", &format!("/schemas/ids/{id}"), None::<&()>)?;
        let schema = Arc::new(Schema { id, schema_type: answer.schema_type, text: answer.schema });
        self.by_id.lock().unwrap_or_else(PoisonError::into_inner).insert(id, schema.clone());
        Ok(schema)
    }

    /// Registers `text` under `subject` (a registry returns the existing id for a schema it
    /// has), subject to the subject's compatibility level, and returns its id. Asked once per
    /// schema and subject.
    pub fn register(&self, subject: &str, schema_type: SchemaType, text: &str) -> Result<u32, RegistryError> {
        let key = (subject.to_owned(), schema_type, text.to_owned());
        if let Some(id) = self.ids.lock().unwrap_or_else(PoisonError::into_inner).get(&key) {
            return Ok(*id);
        }
        let what = format!("registering a schema under subject `{subject}`");
        let body = SchemaBody { schema: text, schema_type };
        let answer: IdAnswer = self.call(&what, "POST", &format!("/subjects/{subject}/versions"), Some(&body))?;
        self.ids.lock().unwrap_or_else(PoisonError::into_inner).insert(key, answer.id);
        self.by_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(answer.id)
            .or_insert_with(|| Arc::new(Schema { id: answer.id, schema_type, text: text.to_owned() }));
        Ok(answer.id)
    }

    /// The latest schema registered under `subject` (asked each time: it changes when a new
    /// version is registered; callers keep what they were given).
    pub fn latest(&self, subject: &str) -> Result<Arc<Schema>, RegistryError> {
        let what = format!("the latest schema of subject `{subject}`");
        let answer: VersionAnswer =
            self.call(&what, "GET", &format!("/subjects/{subject}/versions/latest"), None::<&()>)?;
        let schema = Arc::new(Schema { id: answer.id, schema_type: answer.schema_type, text: answer.schema });
        self.by_id.lock().unwrap_or_else(PoisonError::into_inner).entry(answer.id).or_insert_with(|| schema.clone());
        Ok(schema)
    }

    /// Whether `text` could be registered as the next version of `subject` under its
    /// compatibility level: `Ok(None)` if so, else the registry's reasons.
    pub fn check(&self, subject: &str, schema_type: SchemaType, text: &str) -> Result<Option<String>, RegistryError> {
        let what = format!("a compatibility check against subject `{subject}`");
        let body = SchemaBody { schema: text, schema_type };
        let path = format!("/compatibility/subjects/{subject}/versions/latest");
        let answer: CompatibilityAnswer = self.call(&what, "POST", &path, Some(&body))?;
        Ok((!answer.is_compatible).then(|| answer.messages.join("; ")))
    }

    /// Sets `subject`'s compatibility level.
    pub fn set_compatibility(&self, subject: &str, level: Compatibility) -> Result<(), RegistryError> {
        let what = format!("setting the compatibility of subject `{subject}`");
        let body = serde_json::json!({ "compatibility": level });
        let _: serde_json::Value = self.call(&what, "PUT", &format!("/config/{subject}"), Some(&body))?;
        Ok(())
    }

    /// One request, tried again while the registry cannot answer it (see [`Self::waiting`]).
    fn call<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        method: &str,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, RegistryError> {
        let wait = if self.away.load(Ordering::Acquire) { Duration::ZERO } else { self.wait };
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_millis(100);
        loop {
            match self.call_once(what, method, path, body) {
                Err(e) if e.passing() && Instant::now() < deadline => {
                    if pause == Duration::from_millis(100) {
                        tracing::warn!(registry = %self.base, error = %e, ?wait, "the schema registry does not answer; waiting");
                    }
                    std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                Err(e) if e.passing() => {
                    if !self.away.swap(true, Ordering::AcqRel) {
                        tracing::error!(registry = %self.base, error = %e, ?wait, "the schema registry stayed away: records that need it fail until it answers");
                    }
                    return Err(e);
                }
                answer => {
                    if self.away.swap(false, Ordering::AcqRel) {
                        tracing::info!(registry = %self.base, "the schema registry answers again");
                    }
                    return answer;
                }
            }
        }
    }

    fn call_once<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        method: &str,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, RegistryError> {
        let url = format!("{}{path}", self.base);
        const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";
        let sent = match (method, body) {
            ("GET", _) => self.agent.get(&url).header("Accept", CONTENT_TYPE).call(),
            (m, Some(b)) => {
                let text = serde_json::to_string(b).map_err(|e| RegistryError::Malformed {
                    what: what.to_owned(),
                    detail: format!("the request did not encode: {e}"),
                })?;
                let request = match m {
                    "PUT" => self.agent.put(&url),
                    _ => self.agent.post(&url),
                };
                request.header("Content-Type", CONTENT_TYPE).header("Accept", CONTENT_TYPE).send(text.as_bytes())
            }
            (_, None) => self.agent.post(&url).header("Accept", CONTENT_TYPE).send_empty(),
        };
        let mut response =
            sent.map_err(|e| RegistryError::Unreachable { url: self.base.clone(), source: Box::new(e) })?;
        let status = response.status().as_u16();
        let text = response.body_mut().with_config().limit(MAX_RESPONSE_BYTES).read_to_string().map_err(|e| {
            RegistryError::Malformed { what: what.to_owned(), detail: format!("the answer could not be read: {e}") }
        })?;
        if !(200..300).contains(&status) {
            // Confluent's error body: {"error_code": 40901, "message": "..."}.
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
                .unwrap_or(text);
            return Err(RegistryError::Refused { what: what.to_owned(), status, message });
        }
        serde_json::from_str(&text)
            .map_err(|e| RegistryError::Malformed { what: what.to_owned(), detail: format!("{e}: {text}") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_framed_value_unframes_to_its_id_and_payload() {
        let mut out = Vec::new();
        frame(0x0102_0304, b"avro", &mut out);
        assert_eq!(out, [0, 1, 2, 3, 4, b'a', b'v', b'r', b'o']);
        assert_eq!(unframe(&out).expect("a framed value"), (0x0102_0304, &b"avro"[..]));
        // An empty payload is a valid record (an Avro record of no fields).
        out.clear();
        frame(7, b"", &mut out);
        assert_eq!(unframe(&out).expect("a framed empty value"), (7, &b""[..]));
    }

    /// A registry nobody serves: a request is tried again for the whole wait, then fails as
    /// unreachable; the next is tried once (it fails at once), until one is answered.
    #[test]
    fn a_registry_away_is_waited_for_once_then_failed_at_once_until_it_answers() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a port").port();
        let registry = Registry::new(&format!("http://127.0.0.1:{port}")).waiting(Duration::from_millis(1500));
        let t = Instant::now();
        let e = registry.schema(1).expect_err("nobody answers");
        assert!(matches!(e, RegistryError::Unreachable { .. }) && e.passing(), "{e}");
        assert!(t.elapsed() >= Duration::from_millis(1500), "tried again for the whole wait: {:?}", t.elapsed());
        let t = Instant::now();
        registry.schema(1).expect_err("still nobody");
        assert!(t.elapsed() < Duration::from_millis(1000), "tried once, not for the wait: {:?}", t.elapsed());
        assert!(registry.away.load(Ordering::Acquire));
        // Refusals are answers: they are not waited for.
        let refused = |status| RegistryError::Refused { what: "x".into(), status, message: String::new() };
        assert!(refused(503).passing() && refused(429).passing() && refused(408).passing());
        assert!(!refused(404).passing() && !refused(409).passing() && !refused(422).passing());
    }

    #[test]
    fn values_that_are_not_registered_records_are_told_apart() {
        assert!(matches!(unframe(b"{\"a\":1}"), Err(WireError::BadMagic(b'{'))));
        assert!(matches!(unframe(&[0, 0, 1]), Err(WireError::TooShort(3))));
        assert!(matches!(unframe(&[]), Err(WireError::TooShort(0))));
        let e = unframe(b"\x01abcd").expect_err("magic 1").to_string();
        assert!(e.contains("0x01") && e.contains("magic byte 0"), "{e}");
    }
}

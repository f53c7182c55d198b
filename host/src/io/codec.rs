//! Converted formats: Avro, Protobuf, JSON Schema and CSV keys and values, read into the JSON
//! that plugins see and written back from it.
//!
//! On Kafka ([`Mode::Wire`]) a read decodes the topic's bytes (Confluent's wire format when
//! the topic is registered: [`super::registry`]) and a write encodes JSON in the topic's
//! format. Avro read from the registry is decoded with the writer's schema (by its id) and
//! resolved into the declared schema, the reader's: fields added since are filled with their
//! defaults, removed ones dropped (Avro's schema resolution).
//!
//! In local mode and `wasp test` ([`Mode::Json`]) files hold JSON: a read or write checks the
//! JSON against the schema and gives it as the topic's decoded form would (Avro resolved into
//! the reader's schema, Protobuf with every field). CSV is text in every mode, so its rows are
//! decoded and encoded in both.
//!
//! A value that does not match is a [`CodecError`]: the task sends the record where its
//! step's error policy says (`deserialization` on read, `serialization` on write).

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use anyhow::Context;
use apache_avro::types::Value as AvroValue;
use prost_reflect::prost::Message;
use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions};

use super::registry::{Registry, RegistryError, SchemaType, WireError, frame, unframe};
use crate::manifest::{Format, FormatSpec};

/// The most one Avro string, byte array, array or map being decoded may allocate (apache-avro's
/// `max_allocation_bytes`, process-wide; its default is 512 MiB). A record's length prefixes
/// can ask for far more than the record holds (an array of a million nulls is three bytes): past
/// this the record fails to deserialize instead.
pub const MAX_AVRO_ALLOCATION_BYTES: usize = 16 << 20;

/// Whether topics hold their formats' bytes (Kafka) or JSON (local files, test fixtures).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Wire,
    Json,
}

/// Key or value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Key,
    Value,
}

impl Field {
    pub fn name(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Value => "value",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("is not a registered record: {0}")]
    Wire(#[from] WireError),
    #[error("has a schema the registry did not give: {0}")]
    Registry(#[from] RegistryError),
    #[error("has schema id {id}, a {found:?} schema, not {expected}")]
    SchemaKind { id: u32, found: SchemaType, expected: &'static str },
    #[error("has schema id {id}, whose schema does not parse: {detail}")]
    BadRegistrySchema { id: u32, detail: String },
    #[error("is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("does not match its Avro schema: {0}")]
    Avro(String),
    #[error("does not match its Protobuf message `{message}`: {detail}")]
    Protobuf { message: String, detail: String },
    #[error("does not match its JSON Schema: {0}")]
    JsonSchema(String),
    #[error("is not a CSV row: {0}")]
    Csv(String),
    #[error("has malformed Protobuf message indexes: {0}")]
    Indexes(String),
    #[error(
        "was written with an Avro schema (single-object header {0}) that is neither the declared one nor in `previous`"
    )]
    UnknownWriter(String),
    #[error("cannot be converted: no schema to {0} with")]
    NoSchema(&'static str),
}

/// Every converted topic's codecs, shared by the stream threads.
pub struct Codecs {
    mode: Mode,
    topics: HashMap<String, [Option<Codec>; 2]>,
    /// Stores' value codecs (`[stores.NAME] value`), by store name.
    stores: HashMap<String, Arc<Codec>>,
}

impl std::fmt::Debug for Codecs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut topics: Vec<&String> = self.topics.keys().collect();
        topics.sort();
        f.debug_struct("Codecs").field("mode", &self.mode).field("topics", &topics).finish()
    }
}

impl Codecs {
    /// No converted topic.
    pub fn none(mode: Mode) -> Self {
        Self { mode, topics: HashMap::new(), stores: HashMap::new() }
    }

    /// Adds the codec of `topic`'s `field` declared by `spec` (schema path resolved, registry
    /// settings filled in), reading its schema file; `registry` is the client of
    /// `[application.schema_registry]`.
    pub fn add(
        &mut self,
        topic: &str,
        field: Field,
        spec: &FormatSpec,
        registry: Option<&Arc<Registry>>,
    ) -> anyhow::Result<()> {
        let codec = Codec::new(spec, registry, self.mode)?;
        self.topics.entry(topic.to_owned()).or_default()[field as usize] = Some(codec);
        Ok(())
    }

    /// Adds the value codec of store `store` ([`Codec::for_store`]).
    pub fn add_store(
        &mut self,
        store: &str,
        spec: &FormatSpec,
        registry: Option<&Arc<Registry>>,
    ) -> anyhow::Result<()> {
        self.stores.insert(store.to_owned(), Arc::new(Codec::for_store(spec, registry)?));
        Ok(())
    }

    /// The value codec of store `store`, if it declares a format.
    pub fn store(&self, store: &str) -> Option<&Arc<Codec>> {
        self.stores.get(store)
    }

    pub fn is_empty(&self) -> bool {
        self.topics.is_empty()
    }

    /// The codec of `topic`'s key or value, if the host converts it.
    pub fn get(&self, topic: &str, field: Field) -> Option<&Codec> {
        self.topics.get(topic).and_then(|c| c[field as usize].as_ref())
    }

    /// Whether `topic` has a converted key or value.
    pub fn converts(&self, topic: &str) -> bool {
        self.topics.contains_key(topic)
    }
}

/// How a framed topic finds the schema it writes with.
struct Framing {
    registry: Arc<Registry>,
    subject: String,
    register: bool,
}

/// One topic field's codec.
pub struct Codec {
    kind: Kind,
    framing: Option<Framing>,
    mode: Mode,
    /// What framed records are written with: the schema id and the parsed schema, asked of
    /// the registry at the first write (and again after a failure).
    writer: RwLock<Option<Arc<Writer>>>,
    /// Writers' schemas of framed records read, by id.
    readers: RwLock<HashMap<u32, Arc<Writer>>>,
    /// An Avro store without the registry: values carry their writer's schema fingerprint.
    single_object: Option<SingleObject>,
    /// A store's codec: JSON Schema checks what is written, not what was (a schema made
    /// stricter leaves the values kept before readable, as Confluent's deserializer does by
    /// default).
    store: bool,
}

/// Avro's single-object encoding (`C3 01`, the writer schema's 8-byte CRC-64-AVRO fingerprint,
/// the datum): how an Avro store without the registry knows which schema wrote each value.
struct SingleObject {
    /// The header of the declared schema, which writes.
    header: [u8; SINGLE_OBJECT_HEADER],
    /// The schemas values may have been written with: `previous`, each read into the declared
    /// one (which reads itself: [`Kind::Avro`]).
    previous: Vec<([u8; SINGLE_OBJECT_HEADER], Box<Avro>)>,
}

/// An Avro schema with its datum reader and writer, built once: converting a record builds
/// neither (each resolves the schema's names into a map). The reader resolves values into
/// `reader`, when given (Avro's schema resolution).
#[ouroboros::self_referencing]
struct Avro {
    writer: apache_avro::Schema,
    reader: Option<apache_avro::Schema>,
    /// Values are read with the schema they were written with (no reader schema, or one of
    /// the same canonical form): [`super::avro_json::read`] may read them.
    direct: bool,
    #[borrows(writer, reader)]
    #[covariant]
    decoder: apache_avro::reader::datum::GenericDatumReader<'this>,
    #[borrows(writer)]
    #[covariant]
    encoder: apache_avro::writer::datum::GenericDatumWriter<'this>,
    /// The schema's named types, which resolving a value into it looks up.
    #[borrows(writer)]
    #[covariant]
    names: apache_avro::schema::ResolvedSchema<'this>,
}

impl Avro {
    fn build(
        mut writer: apache_avro::Schema,
        reader: Option<apache_avro::Schema>,
    ) -> Result<Box<Self>, apache_avro::Error> {
        if let Some(r) = &reader {
            apply_aliases(&mut writer, r);
        }
        let direct = reader.as_ref().is_none_or(|r| r.canonical_form() == writer.canonical_form());
        AvroTryBuilder {
            writer,
            reader,
            direct,
            decoder_builder: |w, r| {
                apache_avro::reader::datum::GenericDatumReader::builder(w).maybe_reader_schema(r.as_ref()).build()
            },
            encoder_builder: |w| apache_avro::writer::datum::GenericDatumWriter::builder(w).build(),
            names_builder: |w| apache_avro::schema::ResolvedSchema::try_from(w),
        }
        .try_build()
        .map(Box::new)
    }

    fn schema(&self) -> &apache_avro::Schema {
        self.borrow_writer()
    }

    /// One datum, the whole of `payload`, appended to `out` as the JSON plugins see: read
    /// directly where that reads what apache-avro would ([`super::avro_json`]; values written
    /// with the schema they are read with), else decoded (and resolved) by apache-avro.
    fn read_json(&self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        let start = out.len();
        if *self.borrow_direct() {
            let mut rest = payload;
            if super::avro_json::read(&mut rest, self.borrow_writer(), out).is_some() && rest.is_empty() {
                return Ok(());
            }
            out.truncate(start);
        }
        write_json(self.decode(payload)?, out)
    }

    /// One datum, the whole of `payload`.
    fn decode(&self, mut payload: &[u8]) -> Result<AvroValue, CodecError> {
        let value = self.borrow_decoder().read_value(&mut payload).map_err(|e| CodecError::Avro(e.to_string()))?;
        if !payload.is_empty() {
            return Err(CodecError::Avro(format!("{} bytes left after the record", payload.len())));
        }
        Ok(value)
    }

    /// A plugin's JSON `doc` written with the schema, appended to `out`: directly where that
    /// writes what apache-avro would ([`super::avro_json`]), else converted and resolved by
    /// apache-avro ([`Self::encode`]).
    fn encode_json(&self, doc: serde_json::Value, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let start = out.len();
        if super::avro_json::write(&doc, self.borrow_writer(), out).is_some() {
            return Ok(());
        }
        out.truncate(start);
        self.encode(AvroValue::try_from(doc).map_err(avro_err)?, out)
    }

    /// `value`, resolved into the schema, appended to `out`.
    fn encode(&self, value: AvroValue, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let resolved = value
            .resolve_with_names(self.borrow_writer(), self.borrow_names().get_names())
            .map_err(|e| CodecError::Avro(e.to_string()))?;
        self.borrow_encoder().write_value(out, resolved).map_err(|e| CodecError::Avro(e.to_string()))?;
        Ok(())
    }
}

/// Avro's field aliases, which apache-avro's schema resolution does not apply: a writer field
/// the reader knows only by an alias of one of its fields takes that field's name, so that
/// resolution reads its values into it (a renamed field keeps them instead of taking its
/// default, or failing without one). Records pair up through nested fields, array items, map
/// values and union branches (by name, a record's aliases, or the one record of a union). The
/// writer's binary layout does not change: only its field names do.
fn apply_aliases(writer: &mut apache_avro::Schema, reader: &apache_avro::Schema) {
    use apache_avro::Schema;
    match (writer, reader) {
        (Schema::Record(w), Schema::Record(r)) => {
            // (A record's `lookup` holds its fields' aliases too: names are looked up here.)
            let named = |name: &str| r.fields.iter().position(|rf| rf.name == name);
            let mut taken: Vec<usize> = w.fields.iter().filter_map(|f| named(&f.name)).collect();
            for f in &mut w.fields {
                let to = match named(&f.name) {
                    Some(i) => Some(i),
                    None => {
                        let i = r
                            .fields
                            .iter()
                            .enumerate()
                            .position(|(i, rf)| !taken.contains(&i) && rf.aliases.contains(&f.name));
                        if let Some(i) = i {
                            taken.push(i);
                            f.name.clone_from(&r.fields[i].name);
                        }
                        i
                    }
                };
                if let Some(i) = to {
                    apply_aliases(&mut f.schema, &r.fields[i].schema);
                }
            }
            for (i, f) in w.fields.iter().enumerate() {
                if w.lookup.get(&f.name) != Some(&i) {
                    w.lookup.retain(|name, at| *at != i || w.fields[i].aliases.contains(name));
                    w.lookup.insert(f.name.clone(), i);
                }
            }
        }
        (Schema::Array(w), Schema::Array(r)) => apply_aliases(&mut w.items, &r.items),
        (Schema::Map(w), Schema::Map(r)) => apply_aliases(&mut w.types, &r.types),
        (Schema::Union(w), r) => {
            let mut variants = w.variants().to_vec();
            for v in &mut variants {
                if let Some(rv) = counterpart(v, r) {
                    apply_aliases(v, rv);
                }
            }
            // The same branches in the same order (names unchanged): it builds as before.
            if let Ok(u) = apache_avro::schema::UnionSchema::new(variants) {
                *w = u;
            }
        }
        (w @ Schema::Record(_), Schema::Union(_)) => {
            if let Some(rv) = counterpart(w, reader) {
                apply_aliases(w, rv);
            }
        }
        _ => {}
    }
}

/// The reader's schema a writer's record, array or map (a union branch) resolves into: the
/// reader itself when of the same kind, else its union branch of that kind (a record: the one
/// of the same name, or with it among its aliases, or the union's only record).
fn counterpart<'r>(writer: &apache_avro::Schema, reader: &'r apache_avro::Schema) -> Option<&'r apache_avro::Schema> {
    use apache_avro::Schema;
    let branches = match reader {
        Schema::Union(u) => u.variants(),
        one => std::slice::from_ref(one),
    };
    let kind = |s: &Schema| std::mem::discriminant(s);
    let Schema::Record(w) = writer else {
        return branches.iter().find(|b| kind(b) == kind(writer));
    };
    let records: Vec<&Schema> = branches.iter().filter(|b| matches!(b, Schema::Record(_))).collect();
    let named = records.iter().find(|b| {
        let Schema::Record(r) = b else { return false };
        r.name.name() == w.name.name() || r.aliases.iter().flatten().any(|a| a.name() == w.name.name())
    });
    named.copied().or_else(|| (records.len() == 1).then(|| records[0]))
}

fn avro_err(e: apache_avro::Error) -> CodecError {
    CodecError::Avro(e.to_string())
}

const SINGLE_OBJECT_HEADER: usize = 10;

fn single_object_header(schema: &apache_avro::Schema) -> [u8; SINGLE_OBJECT_HEADER] {
    use apache_avro::headers::{HeaderBuilder, RabinFingerprintHeader};
    let built = RabinFingerprintHeader::from_schema(schema).build_header();
    let mut header = [0; SINGLE_OBJECT_HEADER];
    header.copy_from_slice(&built[..SINGLE_OBJECT_HEADER]);
    header
}

/// A schema records are written (or were written) with.
enum Writer {
    /// Read: resolved into the declared schema, when there is one.
    Avro(u32, Box<Avro>),
    Protobuf(u32, MessageDescriptor),
    Json(u32),
}

enum Kind {
    Avro { schema: Option<(String, Box<Avro>)> },
    Protobuf { schema: Option<(String, MessageDescriptor)>, message: Option<String> },
    JsonSchema { schema: Option<(String, Box<jsonschema::Validator>)> },
    Csv { columns: Vec<String>, delimiter: u8 },
}

fn protobuf_json() -> SerializeOptions {
    SerializeOptions::new().use_proto_field_name(true).stringify_64_bit_integers(false).skip_default_fields(false)
}

impl Codec {
    pub fn new(spec: &FormatSpec, registry: Option<&Arc<Registry>>, mode: Mode) -> anyhow::Result<Self> {
        let text = |path: &str| std::fs::read_to_string(path).with_context(|| format!("reading the schema {path}"));
        let kind = match spec.format {
            Format::Avro => {
                apache_avro::util::max_allocation_bytes(MAX_AVRO_ALLOCATION_BYTES);
                let schema = match &spec.schema {
                    Some(path) => {
                        let t = text(path)?;
                        let s = apache_avro::Schema::parse_str(&t)
                            .with_context(|| format!("the Avro schema {path} does not parse"))?;
                        Some((t, Avro::build(s, None).with_context(|| format!("the Avro schema {path}"))?))
                    }
                    None => None,
                };
                Kind::Avro { schema }
            }
            Format::Protobuf => {
                let schema = match &spec.schema {
                    Some(path) => {
                        let (source, pool) = protobuf_pool(path)?;
                        let desc = pick_message(&pool, spec.message.as_deref())
                            .with_context(|| format!("in the Protobuf schema {path}"))?;
                        Some((source, desc))
                    }
                    None => None,
                };
                Kind::Protobuf { schema, message: spec.message.clone() }
            }
            Format::JsonSchema => {
                let schema = match &spec.schema {
                    Some(path) => {
                        let t = text(path)?;
                        let doc: serde_json::Value =
                            serde_json::from_str(&t).with_context(|| format!("the JSON Schema {path} is not JSON"))?;
                        let v = jsonschema::validator_for(&doc)
                            .map_err(|e| anyhow::anyhow!("the JSON Schema {path} is not a valid schema: {e}"))?;
                        Some((t, Box::new(v)))
                    }
                    None => None,
                };
                Kind::JsonSchema { schema }
            }
            Format::Csv => {
                let delimiter = spec.delimiter.unwrap_or(',');
                let delimiter = u8::try_from(delimiter)
                    .ok()
                    .filter(u8::is_ascii)
                    .with_context(|| format!("the CSV delimiter `{delimiter}` is not one ASCII character"))?;
                Kind::Csv { columns: spec.columns.clone(), delimiter }
            }
            f => anyhow::bail!("`{}` is not a converted format", f.name()),
        };
        let framing = match (spec.registry, registry, &spec.subject) {
            (Some(true), Some(r), Some(subject)) => {
                Some(Framing { registry: r.clone(), subject: subject.clone(), register: spec.register })
            }
            (Some(true), _, _) => anyhow::bail!("a registered format needs the schema registry and a subject"),
            _ => None,
        };
        if spec.register
            && matches!(&kind, Kind::Protobuf { .. })
            && spec.schema.as_deref().is_some_and(is_descriptor_set)
        {
            anyhow::bail!("`register = true` registers a `.proto` file's text; a compiled descriptor set has none");
        }
        Ok(Self {
            kind,
            framing,
            mode,
            writer: RwLock::default(),
            readers: RwLock::default(),
            single_object: None,
            store: false,
        })
    }

    /// A store's value codec: always the format's bytes (a store is no file of JSON, in any
    /// mode). An Avro store without the registry writes Avro's single-object encoding, and
    /// reads a value written with the declared schema or one of `previous` resolved into the
    /// declared one; with the registry, values are framed with their schema id as on a topic.
    pub fn for_store(spec: &FormatSpec, registry: Option<&Arc<Registry>>) -> anyhow::Result<Self> {
        let mut codec = Self { store: true, ..Self::new(spec, registry, Mode::Wire)? };
        if let (Kind::Avro { schema: Some((_, declared)) }, None) = (&codec.kind, &codec.framing) {
            let declared = declared.schema();
            let mut previous = Vec::new();
            for path in &spec.previous {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading the schema {path}"))?;
                let s = apache_avro::Schema::parse_str(&text)
                    .with_context(|| format!("the Avro schema {path} does not parse"))?;
                let header = single_object_header(&s);
                let avro = Avro::build(s, Some(declared.clone()))
                    .with_context(|| format!("the Avro schema {path} against the store's"))?;
                previous.push((header, avro));
            }
            codec.single_object = Some(SingleObject { header: single_object_header(declared), previous });
        }
        Ok(codec)
    }

    /// Reads `bytes` as they are on the topic into the JSON plugins see, in `out` (cleared).
    pub fn read(&self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        out.clear();
        if self.json_view() {
            return self.normalize(bytes, out);
        }
        match &self.kind {
            Kind::Csv { columns, delimiter } => csv_read(bytes, columns, *delimiter, out),
            Kind::Avro { schema } => {
                let declared = schema.as_ref().map(|(_, a)| a);
                match (&self.framing, &self.single_object, declared) {
                    (Some(_), _, _) => {
                        let (id, payload) = unframe(bytes)?;
                        let w = self.reader(id)?;
                        let Writer::Avro(_, w) = &*w else { unreachable_kind() };
                        w.read_json(payload, out)
                    }
                    (None, Some(so), Some(declared)) => {
                        let (header, payload) = bytes
                            .split_at_checked(SINGLE_OBJECT_HEADER)
                            .ok_or_else(|| CodecError::Avro("too short for Avro's single-object encoding".into()))?;
                        if header == so.header {
                            declared.read_json(payload, out)
                        } else {
                            let (_, writer) = so.previous.iter().find(|(h, _)| h == header).ok_or_else(|| {
                                CodecError::UnknownWriter(header.iter().map(|b| format!("{b:02x}")).collect())
                            })?;
                            writer.read_json(payload, out)
                        }
                    }
                    (None, _, Some(declared)) => declared.read_json(bytes, out),
                    (None, _, None) => Err(CodecError::NoSchema("read")),
                }
            }
            Kind::Protobuf { schema, .. } => {
                let (desc, payload) = match (&self.framing, schema) {
                    (Some(_), Some((_, desc))) => {
                        let (_, rest) = unframe(bytes)?;
                        (desc.clone(), skip_message_indexes(rest)?)
                    }
                    (Some(_), None) => {
                        let (id, rest) = unframe(bytes)?;
                        let (indexes, payload) = message_indexes(rest)?;
                        let w = self.reader(id)?;
                        let Writer::Protobuf(_, first) = &*w else { unreachable_kind() };
                        (
                            message_at(first, &indexes).ok_or_else(|| proto_err(first, "no message at its indexes"))?,
                            payload,
                        )
                    }
                    (None, Some((_, desc))) => (desc.clone(), bytes),
                    (None, None) => return Err(CodecError::NoSchema("read")),
                };
                let msg = DynamicMessage::decode(desc.clone(), payload).map_err(|e| proto_err(&desc, e))?;
                let mut ser = serde_json::Serializer::new(out);
                msg.serialize_with_options(&mut ser, &protobuf_json())?;
                Ok(())
            }
            Kind::JsonSchema { schema } => {
                let payload = match &self.framing {
                    Some(_) => unframe(bytes)?.1,
                    None => bytes,
                };
                let doc: serde_json::Value = serde_json::from_slice(payload)?;
                if let (Some((_, v)), false) = (schema, self.store) {
                    v.validate(&doc).map_err(|e| CodecError::JsonSchema(e.to_string()))?;
                }
                out.extend_from_slice(payload);
                Ok(())
            }
        }
    }

    /// Writes the JSON a plugin gave as the topic holds it, in `out` (cleared).
    pub fn write(&self, json: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        out.clear();
        if self.json_view() {
            return self.normalize(json, out);
        }
        match &self.kind {
            Kind::Csv { columns, delimiter } => csv_write(json, columns, *delimiter, out),
            Kind::Avro { schema } => {
                let doc: serde_json::Value = serde_json::from_slice(json)?;
                match (&self.framing, schema) {
                    (Some(_), _) => {
                        let w = self.writer()?;
                        let Writer::Avro(id, w) = &*w else { unreachable_kind() };
                        frame(*id, &[], out);
                        w.encode_json(doc, out)
                    }
                    (None, Some((_, declared))) => {
                        if let Some(so) = &self.single_object {
                            out.extend_from_slice(&so.header);
                        }
                        declared.encode_json(doc, out)
                    }
                    (None, None) => Err(CodecError::NoSchema("write")),
                }
            }
            Kind::Protobuf { schema, .. } => {
                let (id, desc) = match &self.framing {
                    Some(_) => {
                        let w = self.writer()?;
                        let Writer::Protobuf(id, d) = &*w else { unreachable_kind() };
                        (Some(*id), d.clone())
                    }
                    None => match schema {
                        Some((_, d)) => (None, d.clone()),
                        None => return Err(CodecError::NoSchema("write")),
                    },
                };
                let msg = proto_from_json(&desc, json)?;
                let encoded = msg.encode_to_vec();
                match id {
                    Some(id) => {
                        frame(id, &[], out);
                        write_message_indexes(&desc, out);
                        out.extend_from_slice(&encoded);
                    }
                    None => *out = encoded,
                }
                Ok(())
            }
            Kind::JsonSchema { schema } => {
                let doc: serde_json::Value = serde_json::from_slice(json)?;
                if let Some((_, v)) = schema {
                    v.validate(&doc).map_err(|e| CodecError::JsonSchema(e.to_string()))?;
                }
                match &self.framing {
                    Some(_) => {
                        let w = self.writer()?;
                        let Writer::Json(id) = &*w else { unreachable_kind() };
                        frame(*id, json, out);
                    }
                    None => out.extend_from_slice(json),
                }
                Ok(())
            }
        }
    }

    /// Whether the topic holds JSON here (JSON mode), read and written by [`Codec::normalize`];
    /// CSV is text in every mode.
    fn json_view(&self) -> bool {
        self.mode == Mode::Json && !matches!(self.kind, Kind::Csv { .. })
    }

    /// JSON mode: checks `json` against the declared schema and gives it as a read on Kafka
    /// would (Avro resolved into the schema, defaults filled; Protobuf with every field).
    fn normalize(&self, json: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        let doc: serde_json::Value = serde_json::from_slice(json)?;
        match &self.kind {
            Kind::Avro { schema: Some((_, s)) } => {
                let value = AvroValue::try_from(doc).map_err(avro_err)?;
                let resolved = value.resolve(s.schema()).map_err(avro_err)?;
                serde_json::to_writer(out, &avro_to_json(resolved)?)?;
            }
            Kind::Protobuf { schema: Some((_, d)), .. } => {
                let msg = proto_from_json(d, json)?;
                let mut ser = serde_json::Serializer::new(out);
                msg.serialize_with_options(&mut ser, &protobuf_json())?;
            }
            Kind::JsonSchema { schema: Some((_, v)) } => {
                v.validate(&doc).map_err(|e| CodecError::JsonSchema(e.to_string()))?;
                out.extend_from_slice(json);
            }
            // Only the registry knows the schema: the JSON is taken as it is.
            _ => out.extend_from_slice(json),
        }
        Ok(())
    }

    /// The writer's schema of framed records with schema `id`, asked of the registry once.
    fn reader(&self, id: u32) -> Result<Arc<Writer>, CodecError> {
        if let Some(w) = self.readers.read().unwrap_or_else(PoisonError::into_inner).get(&id) {
            return Ok(w.clone());
        }
        let Some(f) = &self.framing else { return Err(CodecError::NoSchema("read")) };
        let schema = f.registry.schema(id)?;
        let w = Arc::new(self.parse_registered(id, schema.schema_type, &schema.text)?);
        self.readers.write().unwrap_or_else(PoisonError::into_inner).insert(id, w.clone());
        Ok(w)
    }

    /// What framed records are written with: the declared schema registered under the subject
    /// (`register = true`), or else the subject's latest schema. Asked once.
    fn writer(&self) -> Result<Arc<Writer>, CodecError> {
        if let Some(w) = &*self.writer.read().unwrap_or_else(PoisonError::into_inner) {
            return Ok(w.clone());
        }
        // One thread asks the registry; the others wait for its answer.
        let mut slot = self.writer.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(w) = &*slot {
            return Ok(w.clone());
        }
        let Some(f) = &self.framing else { return Err(CodecError::NoSchema("write")) };
        let (kind, declared) = match &self.kind {
            Kind::Avro { schema } => (SchemaType::Avro, schema.as_ref().map(|(t, _)| t.as_str())),
            Kind::Protobuf { schema, .. } => (SchemaType::Protobuf, schema.as_ref().map(|(t, _)| t.as_str())),
            Kind::JsonSchema { schema } => (SchemaType::Json, schema.as_ref().map(|(t, _)| t.as_str())),
            Kind::Csv { .. } => return Err(CodecError::Csv("CSV is not registered".into())),
        };
        let w = match (f.register, declared) {
            (true, Some(text)) => {
                let id = f.registry.register(&f.subject, kind, text)?;
                // The declared schema itself, not the registry's normalised copy of it.
                match &self.kind {
                    Kind::Avro { schema: Some((_, s)) } => {
                        Writer::Avro(id, Avro::build(s.schema().clone(), None).map_err(avro_err)?)
                    }
                    Kind::Protobuf { schema: Some((_, d)), .. } => Writer::Protobuf(id, d.clone()),
                    _ => Writer::Json(id),
                }
            }
            _ => {
                let latest = f.registry.latest(&f.subject)?;
                let mut w = self.parse_registered(latest.id, latest.schema_type, &latest.text)?;
                if let (Writer::Protobuf(id, first), Kind::Protobuf { message: Some(name), .. }) = (&w, &self.kind) {
                    let pool = first.parent_pool();
                    let d = pool
                        .get_message_by_name(name)
                        .ok_or_else(|| proto_err(first, format!("the registered schema has no message `{name}`")))?;
                    w = Writer::Protobuf(*id, d);
                }
                w
            }
        };
        let w = Arc::new(w);
        *slot = Some(w.clone());
        Ok(w)
    }

    fn parse_registered(&self, id: u32, found: SchemaType, text: &str) -> Result<Writer, CodecError> {
        let bad = |detail: String| CodecError::BadRegistrySchema { id, detail };
        match (&self.kind, found) {
            (Kind::Avro { schema }, SchemaType::Avro) => {
                // Read into the declared schema, the reader's, when there is one.
                let writer = apache_avro::Schema::parse_str(text).map_err(|e| bad(e.to_string()))?;
                let reader = schema.as_ref().map(|(_, a)| a.schema().clone());
                Ok(Writer::Avro(id, Avro::build(writer, reader).map_err(|e| bad(e.to_string()))?))
            }
            (Kind::Protobuf { .. }, SchemaType::Protobuf) => {
                let pool =
                    compile_proto_text(&format!("registered-{id}.proto"), text).map_err(|e| bad(format!("{e:#}")))?;
                let first = pick_message(&pool, None).map_err(|e| bad(format!("{e:#}")))?;
                Ok(Writer::Protobuf(id, first))
            }
            (Kind::JsonSchema { .. }, SchemaType::Json) => Ok(Writer::Json(id)),
            (kind, found) => Err(CodecError::SchemaKind { id, found, expected: kind.name() }),
        }
    }
}

impl Kind {
    fn name(&self) -> &'static str {
        match self {
            Self::Avro { .. } => "Avro",
            Self::Protobuf { .. } => "Protobuf",
            Self::JsonSchema { .. } => "JSON Schema",
            Self::Csv { .. } => "CSV",
        }
    }
}

/// A writer's schema is parsed for the codec's own kind only ([`Codec::parse_registered`]).
fn unreachable_kind() -> ! {
    unreachable!("a codec's writer schemas are of its own kind")
}

fn write_json(value: AvroValue, out: &mut Vec<u8>) -> Result<(), CodecError> {
    serde_json::to_writer(out, &avro_to_json(value)?)?;
    Ok(())
}

fn avro_to_json(value: AvroValue) -> Result<serde_json::Value, CodecError> {
    serde_json::Value::try_from(value).map_err(|e| CodecError::Avro(e.to_string()))
}

fn proto_err(desc: &MessageDescriptor, detail: impl std::fmt::Display) -> CodecError {
    CodecError::Protobuf { message: desc.full_name().to_owned(), detail: detail.to_string() }
}

fn proto_from_json(desc: &MessageDescriptor, json: &[u8]) -> Result<DynamicMessage, CodecError> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let msg = DynamicMessage::deserialize_with_options(desc.clone(), &mut de, &DeserializeOptions::new())
        .map_err(|e| proto_err(desc, e))?;
    de.end().map_err(|e| proto_err(desc, e))?;
    Ok(msg)
}

fn is_descriptor_set(path: &str) -> bool {
    !path.ends_with(".proto")
}

/// A `.proto` file (compiled here, with its imports from its directory and the well-known
/// types) or a compiled descriptor set, and the `.proto` text (empty for a descriptor set).
fn protobuf_pool(path: &str) -> anyhow::Result<(String, DescriptorPool)> {
    if is_descriptor_set(path) {
        let bytes = std::fs::read(path).with_context(|| format!("reading the descriptor set {path}"))?;
        let pool = DescriptorPool::decode(bytes.as_slice())
            .with_context(|| format!("{path} is not a Protobuf descriptor set"))?;
        return Ok((String::new(), pool));
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the schema {path}"))?;
    let p = std::path::Path::new(path);
    let dir = p.parent().unwrap_or(std::path::Path::new("."));
    let mut compiler = protox::Compiler::new([dir]).with_context(|| format!("compiling {path}"))?;
    compiler.include_imports(true);
    compiler.open_file(p).map_err(|e| anyhow::anyhow!("the Protobuf schema {path} does not compile: {e}"))?;
    Ok((text, compiler.descriptor_pool()))
}

/// A `.proto` file's text from the registry, compiled (imports of the well-known types only).
fn compile_proto_text(name: &str, text: &str) -> anyhow::Result<DescriptorPool> {
    struct One {
        name: String,
        text: String,
    }
    impl protox::file::FileResolver for One {
        fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
            if name == self.name {
                protox::file::File::from_source(name, &self.text)
            } else {
                protox::file::GoogleFileResolver::new().open_file(name)
            }
        }
    }
    let mut compiler = protox::Compiler::with_file_resolver(One { name: name.to_owned(), text: text.to_owned() });
    compiler.include_imports(true);
    compiler.open_file(name).map_err(|e| anyhow::anyhow!("{e}"))?;
    let pool = compiler.descriptor_pool();
    // Keep the named file first: its messages are the ones the indexes count.
    let _ = pool.get_file_by_name(name).context("the compiled file is missing")?;
    Ok(pool)
}

/// The message `name`, or the first message of the pool's first non-import file.
fn pick_message(pool: &DescriptorPool, name: Option<&str>) -> anyhow::Result<MessageDescriptor> {
    match name {
        Some(n) => pool.get_message_by_name(n).with_context(|| {
            let known: Vec<String> = pool.all_messages().map(|m| m.full_name().to_owned()).collect();
            format!("no message `{n}` (it has: {})", known.join(", "))
        }),
        None => pool
            .files()
            .filter(|f| !f.name().starts_with("google/protobuf/"))
            .flat_map(|f| f.messages().collect::<Vec<_>>())
            .next()
            .context("the schema defines no message"),
    }
}

/// Confluent's Protobuf framing: after the schema id, the message's path in its file (indexes
/// at each nesting level) as zig-zag varints, count first; `[0]` is the single byte 0.
fn write_message_indexes(desc: &MessageDescriptor, out: &mut Vec<u8>) {
    let path: Vec<i32> = desc.path().iter().skip(1).step_by(2).copied().collect();
    if path == [0] {
        out.push(0);
        return;
    }
    zigzag(path.len() as i64, out);
    for i in path {
        zigzag(i64::from(i), out);
    }
}

/// A signed zig-zag varint, as Confluent writes message indexes (the varint itself is prost's,
/// the encoding every Protobuf message uses).
fn zigzag(v: i64, out: &mut Vec<u8>) {
    prost_reflect::prost::encoding::encode_varint(((v << 1) ^ (v >> 63)) as u64, out);
}

fn read_zigzag(bytes: &mut &[u8]) -> Result<i64, CodecError> {
    let u = prost_reflect::prost::encoding::decode_varint(bytes).map_err(|e| CodecError::Indexes(e.to_string()))?;
    Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
}

/// The most nesting levels a message index path may have.
const MAX_MESSAGE_DEPTH: i64 = 64;

fn message_indexes(mut bytes: &[u8]) -> Result<(Vec<i64>, &[u8]), CodecError> {
    let n = read_zigzag(&mut bytes)?;
    if n == 0 {
        return Ok((vec![0], bytes));
    }
    if !(1..=MAX_MESSAGE_DEPTH).contains(&n) {
        return Err(CodecError::Indexes(format!("{n} indexes")));
    }
    let mut path = Vec::with_capacity(n as usize);
    for _ in 0..n {
        path.push(read_zigzag(&mut bytes)?);
    }
    Ok((path, bytes))
}

fn skip_message_indexes(bytes: &[u8]) -> Result<&[u8], CodecError> {
    message_indexes(bytes).map(|(_, rest)| rest)
}

/// The message at `path` in the file of `first` (its file's first message).
fn message_at(first: &MessageDescriptor, path: &[i64]) -> Option<MessageDescriptor> {
    let file = first.parent_file();
    let (&top, rest) = path.split_first()?;
    let mut m = file.messages().nth(usize::try_from(top).ok()?)?;
    for &i in rest {
        let child = m.child_messages().nth(usize::try_from(i).ok()?)?;
        m = child;
    }
    Some(m)
}

fn csv_read(bytes: &[u8], columns: &[String], delimiter: u8, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).delimiter(delimiter).from_reader(bytes);
    let mut row = csv::StringRecord::new();
    let read = reader.read_record(&mut row).map_err(|e| CodecError::Csv(e.to_string()))?;
    if !read {
        row.clear();
    }
    if reader.read_record(&mut csv::StringRecord::new()).map_err(|e| CodecError::Csv(e.to_string()))? {
        return Err(CodecError::Csv("more than one row".into()));
    }
    if columns.is_empty() {
        serde_json::to_writer(out, &row.iter().collect::<Vec<_>>())?;
        return Ok(());
    }
    if row.len() != columns.len() {
        return Err(CodecError::Csv(format!(
            "{} fields, and the stream declares {} columns",
            row.len(),
            columns.len()
        )));
    }
    let object: serde_json::Map<String, serde_json::Value> =
        columns.iter().zip(row.iter()).map(|(c, v)| (c.clone(), serde_json::Value::String(v.to_owned()))).collect();
    serde_json::to_writer(out, &object)?;
    Ok(())
}

fn csv_write(json: &[u8], columns: &[String], delimiter: u8, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let doc: serde_json::Value = serde_json::from_slice(json)?;
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    let fields: Vec<String> = match (&doc, columns.is_empty()) {
        (serde_json::Value::Array(items), _) => items.iter().map(text).collect(),
        (serde_json::Value::Object(map), false) => {
            if let Some(extra) = map.keys().find(|k| !columns.contains(k)) {
                return Err(CodecError::Csv(format!("the field `{extra}` is not one of the declared columns")));
            }
            columns.iter().map(|c| map.get(c).map(text).unwrap_or_default()).collect()
        }
        _ => return Err(CodecError::Csv("a CSV row is written from a JSON array, or an object of the columns".into())),
    };
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .delimiter(delimiter)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    w.write_record(&fields).map_err(|e| CodecError::Csv(e.to_string()))?;
    let mut bytes = w.into_inner().map_err(|e| CodecError::Csv(e.to_string()))?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    *out = bytes;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(format: Format, schema: Option<&str>) -> FormatSpec {
        FormatSpec { format, schema: schema.map(str::to_owned), registry: Some(false), ..FormatSpec::default() }
    }

    fn write_file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p.to_string_lossy().into_owned()
    }

    const ORDER_V1: &str =
        r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"string"},{"name":"amount","type":"long"}]}"#;
    const ORDER_V2: &str = r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"string"},{"name":"amount","type":"long"},{"name":"currency","type":"string","default":"EUR"}]}"#;

    #[test]
    fn avro_round_trips_through_json_and_resolves_into_the_readers_schema() {
        let dir = tempfile::tempdir().expect("dir");
        let v1 = Codec::new(&spec(Format::Avro, Some(&write_file(&dir, "v1.avsc", ORDER_V1))), None, Mode::Wire)
            .expect("v1");
        let mut wire = Vec::new();
        v1.write(br#"{"id":"o1","amount":12}"#, &mut wire).expect("encodes");
        let mut json = Vec::new();
        v1.read(&wire, &mut json).expect("decodes");
        assert_eq!(json, br#"{"amount":12,"id":"o1"}"#);
        // Unframed Avro has no writer id: the declared schema is the writer's too.
        let err = v1.write(br#"{"id":"o1"}"#, &mut wire).expect_err("a missing field");
        assert!(err.to_string().contains("does not match its Avro schema"), "{err}");
        // JSON mode resolves into the schema, filling defaults, as a registered read would.
        let v2 = Codec::new(&spec(Format::Avro, Some(&write_file(&dir, "v2.avsc", ORDER_V2))), None, Mode::Json)
            .expect("v2");
        v2.read(br#"{"id":"o1","amount":12}"#, &mut json).expect("checks");
        assert_eq!(json, br#"{"amount":12,"currency":"EUR","id":"o1"}"#);
    }

    #[test]
    fn an_avro_store_names_its_writers_schema_and_reads_older_values_with_the_new_one() {
        let dir = tempfile::tempdir().expect("dir");
        let (v1_path, v2_path) = (write_file(&dir, "v1.avsc", ORDER_V1), write_file(&dir, "v2.avsc", ORDER_V2));
        let v1 = Codec::for_store(&spec(Format::Avro, Some(&v1_path)), None).expect("v1");
        let mut stored = Vec::new();
        v1.write(br#"{"id":"o1","amount":12}"#, &mut stored).expect("encodes");
        // Avro's single-object encoding: C3 01, the writer's CRC-64-AVRO fingerprint, the datum.
        let v1_schema = apache_avro::Schema::parse_str(ORDER_V1).expect("schema");
        assert_eq!(&stored[..2], &[0xC3, 0x01]);
        assert_eq!(stored[2..10], v1_schema.fingerprint::<apache_avro::rabin::Rabin>().bytes[..]);
        // The next version lists the one before it: a value written with it reads into the
        // new schema, the added field at its default; new values are written with the new one.
        let v2 = Codec::for_store(&FormatSpec { previous: vec![v1_path], ..spec(Format::Avro, Some(&v2_path)) }, None)
            .expect("v2");
        let mut json = Vec::new();
        v2.read(&stored, &mut json).expect("resolves");
        assert_eq!(json, br#"{"amount":12,"currency":"EUR","id":"o1"}"#);
        let mut newer = Vec::new();
        v2.write(br#"{"id":"o2","amount":3,"currency":"USD"}"#, &mut newer).expect("encodes");
        assert_ne!(newer[2..10], stored[2..10]);
        v2.read(&newer, &mut json).expect("reads its own");
        assert_eq!(json, br#"{"amount":3,"currency":"USD","id":"o2"}"#);
        // Without `previous`, a value of the older schema is named, not misread.
        let alone = Codec::for_store(&spec(Format::Avro, Some(&v2_path)), None).expect("v2 alone");
        let err = alone.read(&stored, &mut json).expect_err("an unknown writer");
        assert!(err.to_string().contains("neither the declared one nor in `previous`"), "{err}");
        // A store is no file of JSON: the same bytes in local mode as on Kafka.
        assert!(alone.read(br#"{"id":"o1","amount":1}"#, &mut json).is_err());
    }

    #[test]
    fn a_renamed_avro_field_is_read_through_its_alias_at_every_depth() {
        // v1 names a field `amount`, and lines whose `qty` sit in an array inside a nullable
        // union; v2 renames both, keeping the old names as aliases, and renames the line record.
        const V1: &str = r#"{"type":"record","name":"Order","fields":[
            {"name":"id","type":"string"},
            {"name":"amount","type":"long"},
            {"name":"lines","type":["null",{"type":"array","items":{"type":"record","name":"Line","fields":[
                {"name":"sku","type":"string"},{"name":"qty","type":"int"}]}}]}]}"#;
        const V2: &str = r#"{"type":"record","name":"Order","fields":[
            {"name":"id","type":"string"},
            {"name":"total","type":"long","aliases":["amount"]},
            {"name":"lines","type":["null",{"type":"array","items":{"type":"record","name":"OrderLine","aliases":["Line"],
                "fields":[{"name":"sku","type":"string"},{"name":"quantity","type":"int","aliases":["qty"]}]}}]}]}"#;
        let dir = tempfile::tempdir().expect("dir");
        let (v1_path, v2_path) = (write_file(&dir, "v1.avsc", V1), write_file(&dir, "v2.avsc", V2));
        let v1 = Codec::for_store(&spec(Format::Avro, Some(&v1_path)), None).expect("v1");
        let mut stored = Vec::new();
        v1.write(br#"{"id":"o1","amount":12,"lines":[{"sku":"a","qty":2},{"sku":"b","qty":5}]}"#, &mut stored)
            .expect("encodes");
        let v2 = Codec::for_store(&FormatSpec { previous: vec![v1_path], ..spec(Format::Avro, Some(&v2_path)) }, None)
            .expect("v2");
        let mut json = Vec::new();
        v2.read(&stored, &mut json).expect("resolves through the aliases");
        assert_eq!(
            String::from_utf8_lossy(&json),
            r#"{"id":"o1","lines":[{"quantity":2,"sku":"a"},{"quantity":5,"sku":"b"}],"total":12}"#
        );
        // A field the reader has under its own name keeps it; an alias names no second field.
        let mut writer = apache_avro::Schema::parse_str(
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"old","type":"int"}]}"#,
        )
        .expect("writer");
        let reader = apache_avro::Schema::parse_str(
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int","aliases":["old"]}]}"#,
        )
        .expect("reader");
        apply_aliases(&mut writer, &reader);
        let apache_avro::Schema::Record(w) = &writer else { panic!("a record") };
        let names: Vec<&str> = w.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a", "old"]);
    }

    #[test]
    fn a_json_schema_store_checks_what_it_writes_not_what_it_kept() {
        let dir = tempfile::tempdir().expect("dir");
        let at_most_1 = write_file(&dir, "count.json", r#"{"type": "integer", "maximum": 1}"#);
        let topic = Codec::new(&spec(Format::JsonSchema, Some(&at_most_1)), None, Mode::Wire).expect("topic");
        let store = Codec::for_store(&spec(Format::JsonSchema, Some(&at_most_1)), None).expect("store");
        let mut out = Vec::new();
        assert!(topic.read(b"2", &mut out).is_err(), "a topic's record must match");
        // A value kept before the schema became stricter still reads; a new one must match.
        store.read(b"2", &mut out).expect("a kept value reads");
        assert_eq!(out, b"2");
        let err = store.write(b"2", &mut out).expect_err("a new value is checked");
        assert!(err.to_string().contains("does not match its JSON Schema"), "{err}");
        store.write(b"1", &mut out).expect("within the schema");
    }

    #[test]
    fn an_avro_length_that_asks_for_more_than_the_cap_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let schema = write_file(&dir, "a.avsc", r#"{"type":"array","items":"null"}"#);
        let c = Codec::new(&spec(Format::Avro, Some(&schema)), None, Mode::Wire).expect("codec");
        // A block of 2^40 nulls (zig-zag varint), then the end: five bytes on the wire.
        let mut wire = Vec::new();
        zigzag(1 << 40, &mut wire);
        wire.push(0);
        let err = c.read(&wire, &mut Vec::new()).expect_err("refused");
        assert!(err.to_string().contains("does not match its Avro schema"), "{err}");
    }

    #[test]
    fn protobuf_reads_and_writes_json_with_every_field() {
        let dir = tempfile::tempdir().expect("dir");
        let proto = write_file(
            &dir,
            "ship.proto",
            "syntax = \"proto3\";\npackage shop;\nmessage Shipment { string order_id = 1; int64 cents = 2; bool express = 3; }\n",
        );
        let c = Codec::new(&spec(Format::Protobuf, Some(&proto)), None, Mode::Wire).expect("codec");
        let mut wire = Vec::new();
        c.write(br#"{"order_id":"o1","cents":1250}"#, &mut wire).expect("encodes");
        let mut json = Vec::new();
        c.read(&wire, &mut json).expect("decodes");
        assert_eq!(json, br#"{"order_id":"o1","cents":1250,"express":false}"#);
        let err = c.write(br#"{"order":"o1"}"#, &mut wire).expect_err("an unknown field");
        assert!(err.to_string().contains("shop.Shipment"), "{err}");
    }

    #[test]
    fn message_indexes_follow_confluents_framing() {
        let mut out = Vec::new();
        zigzag(2, &mut out);
        zigzag(1, &mut out);
        zigzag(3, &mut out);
        out.extend_from_slice(b"rest");
        assert_eq!(message_indexes(&out).expect("indexes"), (vec![1, 3], &b"rest"[..]));
        assert_eq!(message_indexes(&[0, 9]).expect("first"), (vec![0], &[9u8][..]));
        assert!(message_indexes(&[0x80]).is_err());
    }

    #[test]
    fn csv_rows_become_objects_of_their_columns() {
        let c = Codec::new(
            &FormatSpec { format: Format::Csv, columns: vec!["id".into(), "name".into()], ..FormatSpec::default() },
            None,
            Mode::Json,
        )
        .expect("csv");
        let mut json = Vec::new();
        c.read(b"7,\"Smith, J\"", &mut json).expect("a row");
        assert_eq!(json, br#"{"id":"7","name":"Smith, J"}"#);
        let mut row = Vec::new();
        c.write(&json, &mut row).expect("writes");
        assert_eq!(row, b"7,\"Smith, J\"");
        assert!(c.read(b"1,2,3", &mut json).expect_err("three fields").to_string().contains("2 columns"));
    }

    #[test]
    fn json_schema_refuses_what_it_does_not_allow() {
        let dir = tempfile::tempdir().expect("dir");
        let schema =
            write_file(&dir, "s.json", r#"{"type":"object","required":["id"],"properties":{"id":{"type":"string"}}}"#);
        let c = Codec::new(&spec(Format::JsonSchema, Some(&schema)), None, Mode::Wire).expect("codec");
        let mut out = Vec::new();
        c.read(br#"{"id":"a"}"#, &mut out).expect("valid");
        assert!(c.read(br#"{"id":1}"#, &mut out).expect_err("a number").to_string().contains("JSON Schema"));
    }
}

//! What converting a value costs (`io::codec`, issue 14's formats): the benchmark's records as
//! Avro and Protobuf, read into the JSON plugins see and written back from it, one record at a
//! time as the task converts them, against native baselines in the same run:
//! - JSON parsed and written again with serde_json (what a `json` value costs a plugin that
//!   reads it, and what local mode's conversion does);
//! - apache-avro used directly, its reader and writer built once for the whole run.
//!
//! Avro rows read unframed values with the declared schema, and a store's single-object values
//! written with an older schema (`previous`) resolved into the new one. Registry-framed reads add
//! a lookup of the writer's schema by id (cached after the first).

use std::time::Instant;

use anyhow::{Context, Result};
use apache_avro::types::Value as AvroValue;
use wasp_host::io::codec::{Codec, Mode};
use wasp_host::manifest::{Format, FormatSpec};

const AVRO_V1: &str = r#"{"type":"record","name":"Event","fields":[
  {"name":"id","type":"long"},{"name":"user","type":"string"},{"name":"amount","type":"double"},
  {"name":"country","type":"string"},{"name":"pad","type":"string"}]}"#;
/// The next version: one field more, with a default.
const AVRO_V2: &str = r#"{"type":"record","name":"Event","fields":[
  {"name":"id","type":"long"},{"name":"user","type":"string"},{"name":"amount","type":"double"},
  {"name":"country","type":"string"},{"name":"pad","type":"string"},
  {"name":"channel","type":"string","default":"web"}]}"#;
const PROTO: &str = r#"syntax = "proto3";
package bench;
message Event { int64 id = 1; string user = 2; double amount = 3; string country = 4; string pad = 5; }
"#;

const ROUNDS: usize = 3;

struct Row {
    label: &'static str,
    samples: Vec<f64>,
}

impl Row {
    fn median(&self) -> f64 {
        super::median(&self.samples)
    }
}

pub fn run(n: usize) -> Result<()> {
    super::in_temp_dir("formats", |dir| run_in(dir, n))
}

fn run_in(dir: &std::path::Path, n: usize) -> Result<()> {
    let file = |name: &str, text: &str| -> Result<String> {
        let p = dir.join(name);
        std::fs::write(&p, text)?;
        Ok(p.display().to_string())
    };
    let spec = |format: Format, schema: String| FormatSpec {
        format,
        schema: Some(schema),
        registry: Some(false),
        ..FormatSpec::default()
    };
    let (v1, v2, proto) = (file("v1.avsc", AVRO_V1)?, file("v2.avsc", AVRO_V2)?, file("event.proto", PROTO)?);
    let avro = Codec::new(&spec(Format::Avro, v1.clone()), None, Mode::Wire)?;
    let protobuf = Codec::new(&spec(Format::Protobuf, proto), None, Mode::Wire)?;
    let store_v1 = Codec::for_store(&spec(Format::Avro, v1.clone()), None)?;
    let store_v2 = Codec::for_store(&FormatSpec { previous: vec![v1], ..spec(Format::Avro, v2) }, None)?;

    let json: Vec<Vec<u8>> = super::json_data::dataset(n).into_iter().map(|r| r.value.into_bytes()).collect();
    let encode_all = |codec: &Codec| -> Result<Vec<Vec<u8>>> {
        json.iter()
            .map(|j| {
                let mut out = Vec::new();
                codec.write(j, &mut out).map(|()| out).context("encoding the benchmark's records")
            })
            .collect()
    };
    let (avro_bytes, proto_bytes, stored_v1) = (encode_all(&avro)?, encode_all(&protobuf)?, encode_all(&store_v1)?);
    let schema = apache_avro::Schema::parse_str(AVRO_V1)?;

    println!();
    println!(
        "formats: {n} values of {} B JSON as Avro ({} B) and Protobuf ({} B), converted one at a time",
        super::json_data::VALUE_BYTES,
        avro_bytes.iter().map(Vec::len).sum::<usize>() / n.max(1),
        proto_bytes.iter().map(Vec::len).sum::<usize>() / n.max(1),
    );
    let mut rows: Vec<Row> = Vec::new();
    for _ in 0..ROUNDS {
        let mut out = Vec::with_capacity(256);
        let mut timed = |label: &'static str, f: &mut dyn FnMut(usize, &mut Vec<u8>) -> Result<()>| -> Result<()> {
            let started = Instant::now();
            for i in 0..n {
                out.clear();
                f(i, &mut out)?;
            }
            let ns = started.elapsed().as_nanos() as f64 / n as f64;
            match rows.iter_mut().find(|r| r.label == label) {
                Some(r) => r.samples.push(ns),
                None => rows.push(Row { label, samples: vec![ns] }),
            }
            Ok(())
        };
        timed("native: serde_json parse + write (JSON)", &mut |i, out| {
            let v: serde_json::Value = serde_json::from_slice(&json[i])?;
            serde_json::to_writer(out, &v)?;
            Ok(())
        })?;
        let reader = apache_avro::reader::datum::GenericDatumReader::builder(&schema).build()?;
        timed("native: apache-avro → JSON, reader built once", &mut |i, out| {
            let v = reader.read_value(&mut &avro_bytes[i][..])?;
            serde_json::to_writer(out, &serde_json::Value::try_from(v)?)?;
            Ok(())
        })?;
        let writer = apache_avro::writer::datum::GenericDatumWriter::builder(&schema).build()?;
        timed("native: JSON → apache-avro, writer built once", &mut |i, out| {
            let doc: serde_json::Value = serde_json::from_slice(&json[i])?;
            let v = AvroValue::try_from(doc)?.resolve(&schema)?;
            writer.write_value(out, v)?;
            Ok(())
        })?;
        timed("wasp: Avro → JSON", &mut |i, out| Ok(avro.read(&avro_bytes[i], out)?))?;
        timed("wasp: JSON → Avro", &mut |i, out| Ok(avro.write(&json[i], out)?))?;
        timed("wasp: Protobuf → JSON", &mut |i, out| Ok(protobuf.read(&proto_bytes[i], out)?))?;
        timed("wasp: JSON → Protobuf", &mut |i, out| Ok(protobuf.write(&json[i], out)?))?;
        timed("wasp store: Avro v1 value read as v2", &mut |i, out| Ok(store_v2.read(&stored_v1[i], out)?))?;
    }
    let median = |label: &str| rows.iter().find(|r| r.label == label).map_or(f64::NAN, Row::median);
    let (json_ns, avro_native) =
        (median("native: serde_json parse + write (JSON)"), median("native: apache-avro → JSON, reader built once"));
    println!("  {:<48} {:>9} {:>10} {:>9} {:>10}", "", "ns/value", "Mvalues/s", "×JSON", "×avro-rs");
    for r in &rows {
        let ns = r.median();
        println!("  {:<48} {:>9.0} {:>10.2} {:>8.2}× {:>9.2}×", r.label, ns, 1e3 / ns, ns / json_ns, ns / avro_native);
    }
    println!("  ns/value: median of {ROUNDS} rounds; ×JSON and ×avro-rs: this row's time ÷ the baseline's (lower is");
    println!("  faster). A `json` or `bytes` topic pays none of this: conversion is per declared format.");
    Ok(())
}

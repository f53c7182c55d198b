//! Local files: reading input lines into records and writing records as lines.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::manifest::{FileFormat, Format};
use crate::record::{Arena, Header, Record};

/// A record in a JSON-lines file. `key` and `value` are JSON: a string is taken as its text,
/// anything else as its JSON text; `null` is absent. Read borrowed from the line, so a
/// record's fields are copied once, into the reader's arena.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonLine<'a> {
    #[serde(default, borrow)]
    key: Option<&'a RawValue>,
    #[serde(default, borrow)]
    value: Option<&'a RawValue>,
    #[serde(default)]
    timestamp: Option<i64>,
    #[serde(default, borrow)]
    headers: std::collections::BTreeMap<Cow<'a, str>, Option<&'a RawValue>>,
}

/// A JSON field's bytes: a string is its text, `null` absent, anything else its JSON text as
/// written (re-serialized compactly when it has white space).
fn field(v: Option<&RawValue>, arena: &mut Arena) -> Result<Option<Bytes>, String> {
    let Some(v) = v else { return Ok(None) };
    let raw = v.get();
    match raw.as_bytes().first() {
        Some(b'n') => Ok(None),
        Some(b'"') => {
            let s: Cow<'_, str> = serde_json::from_str(raw).map_err(|e| format!("not a JSON string: {e}"))?;
            Ok(Some(arena.copy(s.as_bytes())))
        }
        _ if raw.bytes().any(|b| b.is_ascii_whitespace()) => {
            let value: serde_json::Value = serde_json::from_str(raw).map_err(|e| format!("not JSON: {e}"))?;
            Ok(Some(Bytes::from(value.to_string())))
        }
        _ => Ok(Some(arena.copy(raw.as_bytes()))),
    }
}

/// Parses one input line. `line_no` is 0-based; it is the offset, and the timestamp of text
/// lines. Keys and values are copied into `arena`.
pub fn parse_line(line: &str, format: FileFormat, line_no: i64, arena: &mut Arena) -> Result<Record, String> {
    let mut r = match format {
        FileFormat::Text => {
            Record { value: Some(arena.copy(line.as_bytes())), timestamp: line_no, ..Default::default() }
        }
        FileFormat::Jsonl => {
            let j: JsonLine<'_> = serde_json::from_str(line).map_err(|e| format!("not a JSON record line: {e}"))?;
            let mut headers = crate::record::Headers::with_capacity(j.headers.len());
            for (name, v) in j.headers {
                headers.push(Header { name: Header::name_from(&name), value: field(v, arena)? });
            }
            Record {
                key: field(j.key, arena)?,
                value: field(j.value, arena)?,
                timestamp: j.timestamp.unwrap_or(line_no),
                headers,
                ..Default::default()
            }
        }
    };
    r.origin.offset = line_no;
    Ok(r)
}

fn show(b: Option<&Bytes>, format: Format) -> serde_json::Value {
    let Some(b) = b else { return serde_json::Value::Null };
    match format {
        Format::Json | Format::Avro | Format::Protobuf | Format::JsonSchema => serde_json::from_slice(b)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(b).into_owned())),
        Format::String | Format::Csv => serde_json::Value::String(String::from_utf8_lossy(b).into_owned()),
        Format::Bytes => serde_json::Value::String(b.iter().map(|x| format!("{x:02x}")).collect()),
    }
}

/// A record as one JSON line (the same layout `jsonl` input reads).
pub fn to_json_line(r: &Record, key: Format, value: Format) -> String {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = write_json_line(&mut out, r, key, value);
    String::from_utf8(out).unwrap_or_default()
}

/// Writes a record as one JSON line, with its newline: text fields are written as they are
/// (escaped), not copied into a JSON value first.
pub fn write_json_line(w: &mut impl std::io::Write, r: &Record, key: Format, value: Format) -> std::io::Result<()> {
    w.write_all(b"{\"key\":")?;
    write_field(w, r.key.as_ref(), key)?;
    w.write_all(b",\"value\":")?;
    write_field(w, r.value.as_ref(), value)?;
    write!(w, ",\"timestamp\":{}", r.timestamp)?;
    if !r.headers.is_empty() {
        w.write_all(b",\"headers\":{")?;
        for (i, h) in r.headers.iter().enumerate() {
            if i > 0 {
                w.write_all(b",")?;
            }
            serde_json::to_writer(&mut *w, &*h.name)?;
            w.write_all(b":")?;
            write_field(w, h.value.as_ref(), Format::String)?;
        }
        w.write_all(b"}")?;
    }
    w.write_all(b"}\n")
}

fn write_field(w: &mut impl std::io::Write, b: Option<&Bytes>, format: Format) -> std::io::Result<()> {
    match (b, format) {
        (None, _) => w.write_all(b"null"),
        (Some(b), Format::String) => Ok(serde_json::to_writer(w, &*String::from_utf8_lossy(b))?),
        (b, format) => Ok(serde_json::to_writer(w, &show(b, format))?),
    }
}

/// A record as one human-readable line: `topic  key  value`.
pub fn to_display_line(topic: &str, r: &Record, value: Format) -> String {
    let key = r.key.as_deref().map_or_else(|| "null".to_owned(), |k| String::from_utf8_lossy(k).into_owned());
    let value = match (&r.value, value) {
        (None, _) => "null".to_owned(),
        (Some(v), Format::Bytes) => v.iter().map(|x| format!("{x:02x}")).collect(),
        (Some(v), _) => String::from_utf8_lossy(v).into_owned(),
    };
    format!("{topic}\t{key}\t{value}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_line_reads_back_as_the_record() {
        let mut r = parse_line(
            r#"{"key":"k\"1","value":{"a":[1,2]},"timestamp":9}"#,
            FileFormat::Jsonl,
            3,
            &mut Arena::default(),
        )
        .unwrap();
        r.headers.push(Header { name: "h".into(), value: Some(Bytes::from_static(b"v")) });
        let line = to_json_line(&r, Format::String, Format::Json);
        assert_eq!(line, "{\"key\":\"k\\\"1\",\"value\":{\"a\":[1,2]},\"timestamp\":9,\"headers\":{\"h\":\"v\"}}\n");
        let back = parse_line(line.trim_end(), FileFormat::Jsonl, 3, &mut Arena::default()).unwrap();
        assert_eq!((back.key, back.value, back.timestamp, back.headers), (r.key, r.value, r.timestamp, r.headers));
    }

    #[test]
    fn jsonl_takes_strings_as_text_and_other_values_as_json() {
        let r = parse_line(r#"{"key":"k","value":{"a":1},"timestamp":9}"#, FileFormat::Jsonl, 3, &mut Arena::default())
            .unwrap();
        assert_eq!(r.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(r.value.as_deref(), Some(&br#"{"a":1}"#[..]));
        assert_eq!((r.timestamp, r.origin.offset), (9, 3));
        let t = parse_line("hello", FileFormat::Text, 4, &mut Arena::default()).unwrap();
        assert_eq!((t.key, t.value.as_deref(), t.timestamp), (None, Some(&b"hello"[..]), 4));
        assert!(parse_line("{nope", FileFormat::Jsonl, 0, &mut Arena::default()).is_err());
        // JSON written with spaces is taken compactly, as before the arena.
        let s = parse_line(r#"{"key": null, "value": { "a" : [1, 2] }}"#, FileFormat::Jsonl, 5, &mut Arena::default())
            .unwrap();
        assert_eq!((s.key, s.value.as_deref()), (None, Some(&br#"{"a":[1,2]}"#[..])));
    }
}

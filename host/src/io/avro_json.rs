//! Avro and the JSON plugins see, converted in one walk of the schema, without building
//! apache-avro's `Value` tree (and, for a write, resolving it), which cost most of a
//! conversion: a write through it took about 2.6 times the JSON parse alone.
//!
//! [`write`] writes a plugin's JSON as Avro binary only where it writes exactly what
//! apache-avro's conversion and resolution would, and says `None` for anything else: a missing
//! record field (a default to fill), a number that is not the schema's kind, a union whose
//! branch is not plain to choose, logical types, fixed, bytes, named references. [`read`]
//! writes a datum as the JSON apache-avro's would read it into (record fields sorted by name,
//! as its serde_json map holds them), for the same plain kinds and no maps. On `None` the
//! caller converts through apache-avro, which converts it or names what is wrong; so errors,
//! and every case left out here, read as before. `tests` hold both paths against each other.

use apache_avro::Schema;
use serde_json::Value as Json;

/// Appends `json` written with `schema` to `out`; `None` when this cannot (then `out` holds a
/// partial write, for the caller to cut).
pub(crate) fn write(json: &Json, schema: &Schema, out: &mut Vec<u8>) -> Option<()> {
    match (schema, json) {
        (Schema::Null, Json::Null) => Some(()),
        (Schema::Boolean, Json::Bool(b)) => {
            out.push(u8::from(*b));
            Some(())
        }
        // apache-avro reads a JSON integer as an int or a long, and resolves a long into an
        // int only within i32; floats and doubles take any number, cast.
        (Schema::Int, Json::Number(n)) => {
            let n = n.as_i64().filter(|n| i32::try_from(*n).is_ok())?;
            long(n, out);
            Some(())
        }
        (Schema::Long, Json::Number(n)) => {
            long(n.as_i64()?, out);
            Some(())
        }
        // An integer is cast straight to f32, as apache-avro casts its int or long (through
        // f64 it could round twice).
        (Schema::Float, Json::Number(n)) => {
            let x = match n.as_i64() {
                Some(i) => i as f32,
                None => number(n)? as f32,
            };
            out.extend_from_slice(&x.to_le_bytes());
            Some(())
        }
        (Schema::Double, Json::Number(n)) => {
            out.extend_from_slice(&number(n)?.to_le_bytes());
            Some(())
        }
        (Schema::String, Json::String(s)) => {
            bytes(s.as_bytes(), out);
            Some(())
        }
        (Schema::Enum(e), Json::String(s)) => {
            let i = e.symbols.iter().position(|symbol| symbol == s)?;
            long(i64::try_from(i).ok()?, out);
            Some(())
        }
        (Schema::Array(a), Json::Array(items)) => {
            if !items.is_empty() {
                long(i64::try_from(items.len()).ok()?, out);
                for item in items {
                    write(item, &a.items, out)?;
                }
            }
            out.push(0);
            Some(())
        }
        (Schema::Map(m), Json::Object(entries)) => {
            if !entries.is_empty() {
                long(i64::try_from(entries.len()).ok()?, out);
                for (key, value) in entries {
                    bytes(key.as_bytes(), out);
                    write(value, &m.types, out)?;
                }
            }
            out.push(0);
            Some(())
        }
        // Fields in the schema's order, each from the object (keys the schema does not name
        // are left out, as resolution leaves them).
        (Schema::Record(r), Json::Object(entries)) => {
            for field in &r.fields {
                write(entries.get(&field.name)?, &field.schema, out)?;
            }
            Some(())
        }
        (Schema::Union(u), _) => {
            let (i, branch) = branch(u.variants(), json)?;
            long(i64::try_from(i).ok()?, out);
            write(json, branch, out)
        }
        _ => None,
    }
}

/// Reads one datum of `schema` from the front of `input` and appends it to `out` as JSON;
/// `None` when this cannot (then `input` and `out` are partly consumed and written, for the
/// caller to discard). Lengths and counts are checked against what `input` holds, so no
/// length prefix makes this allocate or loop past the input's size.
pub(crate) fn read(input: &mut &[u8], schema: &Schema, out: &mut Vec<u8>) -> Option<()> {
    match schema {
        Schema::Null => out.extend_from_slice(b"null"),
        Schema::Boolean => match take(input, 1)? {
            [0] => out.extend_from_slice(b"false"),
            [1] => out.extend_from_slice(b"true"),
            _ => return None,
        },
        Schema::Int => json(&i32::try_from(read_long(input)?).ok()?, out),
        Schema::Long => json(&read_long(input)?, out),
        Schema::Float => {
            let x = f32::from_le_bytes(take(input, 4)?.try_into().ok()?);
            finite(f64::from(x), out)?;
        }
        Schema::Double => {
            let x = f64::from_le_bytes(take(input, 8)?.try_into().ok()?);
            finite(x, out)?;
        }
        Schema::String => {
            let len = usize::try_from(read_long(input)?).ok()?;
            json(std::str::from_utf8(take(input, len)?).ok()?, out);
        }
        Schema::Enum(e) => {
            let i = usize::try_from(read_long(input)?).ok()?;
            json(e.symbols.get(i)?.as_str(), out);
        }
        Schema::Union(u) => {
            let i = usize::try_from(read_long(input)?).ok()?;
            read(input, u.variants().get(i)?, out)?;
        }
        Schema::Array(a) => {
            out.push(b'[');
            let mut first = true;
            // Every item takes a byte at least, unless its type takes none (checked below).
            while let Some(count) = block(input)? {
                for _ in 0..count {
                    if !std::mem::take(&mut first) {
                        out.push(b',');
                    }
                    let before = input.len();
                    read(input, &a.items, out)?;
                    if input.len() == before {
                        return None;
                    }
                }
            }
            out.push(b']');
        }
        Schema::Map(m) => map(input, &m.types, out)?,
        Schema::Record(r) => record(input, r, out)?,
        _ => return None,
    }
    Some(())
}

/// The count of the next block of an array or a map: `Some(None)` at the end, `None` when the
/// block claims more entries than there are bytes left (each takes one at least).
fn block(input: &mut &[u8]) -> Option<Option<u64>> {
    let count = read_long(input)?;
    if count == 0 {
        return Some(None);
    }
    // A negative count is followed by the block's size in bytes.
    if count < 0 {
        read_long(input)?;
    }
    let count = count.unsigned_abs();
    (count <= input.len() as u64).then_some(Some(count))
}

/// A map's entries, written as a JSON object with its keys in order, the last of equal keys
/// kept (as apache-avro's JSON, a serde_json map made from its hash map, holds them). Each
/// value is read into `out` first; then the object is put together after them, and moved
/// into their place.
fn map(input: &mut &[u8], values: &Schema, out: &mut Vec<u8>) -> Option<()> {
    let start = out.len();
    let mut entries: Vec<(&str, (usize, usize))> = Vec::new();
    // Every entry takes a byte at least: its key's length.
    while let Some(count) = block(input)? {
        for _ in 0..count {
            let len = usize::try_from(read_long(input)?).ok()?;
            let key = std::str::from_utf8(take(input, len)?).ok()?;
            let from = out.len();
            read(input, values, out)?;
            entries.push((key, (from, out.len())));
        }
    }
    // Stable: of equal keys, the last stays last.
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let object = out.len();
    out.push(b'{');
    for (i, (key, span)) in entries.iter().enumerate() {
        if entries.get(i + 1).is_some_and(|next| next.0 == *key) {
            continue;
        }
        if out.len() > object + 1 {
            out.push(b',');
        }
        json(*key, out);
        out.push(b':');
        out.extend_from_within(span.0..span.1);
    }
    out.push(b'}');
    out.drain(start..object);
    Some(())
}

/// A record's fields, read in the schema's order, written as a JSON object with its keys in
/// name order (as apache-avro's JSON, a serde_json map, holds them). Each field is read into
/// `out` first; then the object is put together after them, and moved into their place.
fn record(input: &mut &[u8], r: &apache_avro::schema::RecordSchema, out: &mut Vec<u8>) -> Option<()> {
    /// Records wider than this are left to apache-avro (the field spans live on the stack).
    const MAX_FIELDS: usize = 64;
    if r.fields.len() > MAX_FIELDS {
        return None;
    }
    let start = out.len();
    let mut spans = [(0usize, 0usize); MAX_FIELDS];
    for (field, span) in r.fields.iter().zip(spans.iter_mut()) {
        let from = out.len();
        read(input, &field.schema, out)?;
        *span = (from, out.len());
    }
    let n = r.fields.len();
    let mut order = [0usize; MAX_FIELDS];
    for (i, o) in order[..n].iter_mut().enumerate() {
        *o = i;
    }
    order[..n].sort_unstable_by(|a, b| r.fields[*a].name.cmp(&r.fields[*b].name));
    let object = out.len();
    out.push(b'{');
    for (k, &i) in order[..n].iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        json(r.fields[i].name.as_str(), out);
        out.push(b':');
        out.extend_from_within(spans[i].0..spans[i].1);
    }
    out.push(b'}');
    out.drain(start..object);
    Some(())
}

/// `value` as serde_json writes it.
fn json<T: serde::Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    // Writing into a Vec fails only when serializing does, which these types never do.
    let _ = serde_json::to_writer(out, value);
}

/// A finite number as serde_json writes it; `None` for NaN or an infinity, which JSON has not
/// (apache-avro refuses them too).
fn finite(x: f64, out: &mut Vec<u8>) -> Option<()> {
    x.is_finite().then(|| json(&x, out))
}

/// The next `n` bytes of `input`.
fn take<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (head, rest) = input.split_at_checked(n)?;
    *input = rest;
    Some(head)
}

/// Avro's zig-zag varint, at most ten bytes.
fn read_long(input: &mut &[u8]) -> Option<i64> {
    let mut z: u64 = 0;
    for shift in (0..70).step_by(7) {
        let (&b, rest) = input.split_first()?;
        *input = rest;
        if shift == 63 && b > 1 {
            return None;
        }
        z |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some((z >> 1) as i64 ^ -((z & 1) as i64));
        }
    }
    None
}

/// The union branch apache-avro resolves `json` into, where that is plain: `null` into the
/// `null` branch; a string or a boolean into a branch of that type; anything else into the one
/// branch that is not `null`, when there is only one (a nullable type: the value resolves into
/// it or fails, and fails here too).
fn branch<'s>(variants: &'s [Schema], json: &Json) -> Option<(usize, &'s Schema)> {
    let kind = |want: fn(&Schema) -> bool| variants.iter().enumerate().find(|(_, s)| want(s));
    match json {
        Json::Null => kind(|s| matches!(s, Schema::Null)),
        Json::String(_) if variants.iter().any(|s| matches!(s, Schema::String)) => {
            kind(|s| matches!(s, Schema::String))
        }
        Json::Bool(_) if variants.iter().any(|s| matches!(s, Schema::Boolean)) => {
            kind(|s| matches!(s, Schema::Boolean))
        }
        _ => {
            let mut others = variants.iter().enumerate().filter(|(_, s)| !matches!(s, Schema::Null));
            let one = others.next()?;
            others.next().is_none().then_some(one)
        }
    }
}

/// A JSON number as apache-avro reads it: an integer of i64, else a double.
fn number(n: &serde_json::Number) -> Option<f64> {
    match n.as_i64() {
        Some(i) => Some(i as f64),
        None if n.is_f64() => n.as_f64(),
        None => None,
    }
}

/// Avro's zig-zag varint (an int is written as a long of the same value).
fn long(n: i64, out: &mut Vec<u8>) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Avro bytes or string: the length, then the bytes.
fn bytes(b: &[u8], out: &mut Vec<u8>) {
    long(b.len() as i64, out);
    out.extend_from_slice(b);
}

#[cfg(test)]
mod tests {
    use apache_avro::types::Value as AvroValue;

    /// A record with a field of each kind written directly.
    const ALL_KINDS: &str = r#"{"type":"record","name":"E","fields":[
        {"name":"id","type":"long"},
        {"name":"n","type":"int"},
        {"name":"f","type":"float"},
        {"name":"d","type":"double"},
        {"name":"s","type":"string"},
        {"name":"b","type":"boolean"},
        {"name":"e","type":{"type":"enum","name":"Color","symbols":["RED","GREEN"]}},
        {"name":"opt","type":["null","long"]},
        {"name":"tags","type":{"type":"array","items":"string"}},
        {"name":"m","type":{"type":"map","values":"double"}},
        {"name":"inner","type":["null",{"type":"record","name":"I","fields":[{"name":"x","type":"int"}]}]},
        {"name":"either","type":["null","string","boolean"]}]}"#;

    /// Made-up numbers below `n` (xorshift64, from `seed`).
    fn numbers(mut seed: u64) -> impl FnMut(u64) -> u64 {
        move |n| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        }
    }

    /// What apache-avro writes for `json` with `schema`: its conversion, then its resolution.
    fn theirs(json: &serde_json::Value, schema: &apache_avro::Schema) -> Result<Vec<u8>, String> {
        let value = AvroValue::try_from(json.clone()).map_err(|e| e.to_string())?;
        let resolved = value.resolve(schema).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        apache_avro::writer::datum::GenericDatumWriter::builder(schema)
            .build()
            .and_then(|w| w.write_value(&mut out, resolved))
            .map_err(|e| e.to_string())?;
        Ok(out)
    }

    /// `bytes` read as JSON by apache-avro (what the codec did before [`super::read`]).
    fn theirs_read(schema: &apache_avro::Schema, mut bytes: &[u8]) -> Option<Vec<u8>> {
        let reader = apache_avro::reader::datum::GenericDatumReader::builder(schema).build().ok()?;
        let value = reader.read_value(&mut bytes).ok().filter(|_| bytes.is_empty())?;
        serde_json::to_vec(&serde_json::Value::try_from(value).ok()?).ok()
    }

    /// `bytes` read back with `schema`.
    fn read(schema: &apache_avro::Schema, mut bytes: &[u8]) -> AvroValue {
        let reader = apache_avro::reader::datum::GenericDatumReader::builder(schema).build().expect("a reader");
        let v = reader.read_value(&mut bytes).expect("reads back");
        assert!(bytes.is_empty(), "bytes left after the datum");
        v
    }

    /// Every value written here is written by apache-avro too, to what reads as the same (maps
    /// compare as maps: apache-avro writes their entries in hash order), and the same bytes when
    /// there is no map.
    fn agree(schema: &str, values: &[&str]) -> usize {
        let schema = apache_avro::Schema::parse_str(schema).expect("a schema");
        let mut written = 0;
        for text in values {
            let json: serde_json::Value = serde_json::from_str(text).expect("JSON");
            let mut ours = Vec::new();
            let Some(()) = super::write(&json, &schema, &mut ours) else {
                continue;
            };
            written += 1;
            let theirs = theirs(&json, &schema).unwrap_or_else(|e| panic!("{text}: written here, refused there: {e}"));
            // Read back as JSON, directly and by apache-avro: the same text.
            let mut direct = Vec::new();
            let mut rest = theirs.as_slice();
            super::read(&mut rest, &schema, &mut direct).unwrap_or_else(|| panic!("{text}: not read directly"));
            assert!(rest.is_empty(), "{text}: bytes left");
            assert_eq!(
                String::from_utf8_lossy(&direct),
                String::from_utf8_lossy(&theirs_read(&schema, &theirs).expect("apache-avro reads it")),
                "{text}"
            );
            assert_eq!(read(&schema, &ours), read(&schema, &theirs), "{text}");
            if json.get("m").and_then(serde_json::Value::as_object).is_none_or(|m| m.len() < 2) {
                assert_eq!(ours, theirs, "{text}");
            }
        }
        written
    }

    #[test]
    fn what_is_written_directly_reads_as_apache_avros_own_writing() {
        let schema = ALL_KINDS;
        let base = |fields: &str| {
            format!(
                r#"{{"id":1,"n":2,"f":1.5,"d":2.25,"s":"a","b":true,"e":"GREEN","opt":null,"tags":[],"m":{{}},"inner":null,"either":null{fields}}}"#
            )
        };
        let values: Vec<String> = vec![
            base(""),
            base(r#","extra":"left out""#),
            r#"{"id":-9007199254740993,"n":-2147483648,"f":3,"d":-7,"s":"héllo","b":false,"e":"RED","opt":42,"tags":["x","y",""],"m":{"a":1,"b":2.5},"inner":{"x":7},"either":"s"}"#.into(),
            r#"{"id":0,"n":0,"f":1e30,"d":-0.0,"s":"z","b":false,"e":"GREEN","opt":null,"tags":[],"m":{},"inner":null,"either":false}"#.into(),
            // Cast through f64 first, this integer would round to another f32.
            r#"{"id":9223372036854775807,"n":2147483647,"f":1152921573326323713,"d":1e300,"s":"","b":true,"e":"RED","opt":-1,"tags":["z"],"m":{"k":0},"inner":{"x":-1},"either":true}"#.into(),
        ];
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        assert_eq!(agree(schema, &refs), 5, "all are written directly");
        // Left to apache-avro (which writes them, or names what is wrong): a missing field (a
        // default to fill), an int past i32, a long given as a fraction, an unknown symbol,
        // the wrong kind, a union branch not plain to choose.
        let left = [
            r#"{"id":1}"#,
            r#"{"id":1,"n":2147483648,"f":1,"d":1,"s":"","b":true,"e":"RED","opt":null,"tags":[],"m":{},"inner":null,"either":null}"#,
            r#"{"id":1.5,"n":1,"f":1,"d":1,"s":"","b":true,"e":"RED","opt":null,"tags":[],"m":{},"inner":null,"either":null}"#,
            r#"{"id":1,"n":1,"f":1,"d":1,"s":"","b":true,"e":"BLUE","opt":null,"tags":[],"m":{},"inner":null,"either":null}"#,
            r#"{"id":1,"n":1,"f":1,"d":1,"s":5,"b":true,"e":"RED","opt":null,"tags":[],"m":{},"inner":null,"either":null}"#,
            r#"{"id":1,"n":1,"f":1,"d":1,"s":"","b":true,"e":"RED","opt":null,"tags":[],"m":{},"inner":null,"either":3}"#,
        ];
        for text in left {
            let json: serde_json::Value = serde_json::from_str(text).expect("JSON");
            let schema = apache_avro::Schema::parse_str(schema).expect("a schema");
            assert_eq!(super::write(&json, &schema, &mut Vec::new()), None, "{text}");
        }
    }

    /// Values made up at random from the schema's fields, some of the wrong kind, some left out,
    /// some past their type's range: whatever is written here agrees with apache-avro.
    #[test]
    fn made_up_values_written_directly_agree_with_apache_avro() {
        let mut next = numbers(0x9E37_79B9_7F4A_7C15);
        let any = |next: &mut dyn FnMut(u64) -> u64| -> String {
            match next(9) {
                0 => "null".into(),
                1 => "true".into(),
                2 => format!("{}", next(1000) as i64 - 500),
                3 => "3000000000".into(),
                4 => "-9223372036854775808".into(),
                5 => "2.5".into(),
                6 => r#""GREEN""#.into(),
                7 => r#"["a","b"]"#.into(),
                _ => r#"{"x":3,"k":1.5}"#.into(),
            }
        };
        // A fitting value of each field, by its number and a random number.
        let fitting = |field: usize, r: u64| -> String {
            let small = r as i64 % 2000 - 1000;
            match field {
                0 => format!("{}", (r as i64).wrapping_mul(7919)),
                1 => format!("{small}"),
                2 | 3 => format!("{}.{}", small, r % 100),
                4 => format!(r#""s{r}""#),
                5 => format!("{}", r.is_multiple_of(2)),
                6 => [r#""RED""#, r#""GREEN""#][r as usize % 2].into(),
                7 => [String::from("null"), format!("{small}")][r as usize % 2].clone(),
                8 => format!(r#"["t{r}"{}]"#, if r.is_multiple_of(3) { r#","u""# } else { "" }),
                9 => [String::from("{}"), format!(r#"{{"k":{small}}}"#)][r as usize % 2].clone(),
                10 => [String::from("null"), format!(r#"{{"x":{small}}}"#)][r as usize % 2].clone(),
                _ => [String::from("null"), format!(r#""e{r}""#), String::from("false")][r as usize % 3].clone(),
            }
        };
        let fields = ["id", "n", "f", "d", "s", "b", "e", "opt", "tags", "m", "inner", "either"];
        let mut values = Vec::new();
        for _ in 0..2000 {
            let mut parts = Vec::new();
            for (i, f) in fields.iter().enumerate() {
                match next(40) {
                    0 => {}
                    1 => parts.push(format!(r#""{f}":{}"#, any(&mut next))),
                    _ => parts.push(format!(r#""{f}":{}"#, fitting(i, next(u64::MAX)))),
                }
            }
            values.push(format!("{{{}}}", parts.join(",")));
        }
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let written = agree(ALL_KINDS, &refs);
        assert!(written > 200, "{written} of 2000 made-up values written directly");
    }

    /// Damaged datums (valid ones with bytes changed, cut short or lengthened): whatever is
    /// read directly, apache-avro reads to the same JSON; what it refuses is not read here.
    #[test]
    fn damaged_datums_read_directly_agree_with_apache_avro() {
        let schema = apache_avro::Schema::parse_str(ALL_KINDS).expect("a schema");
        let valid: serde_json::Value = serde_json::from_str(
            r#"{"id":-5,"n":7,"f":1.5,"d":-2.25,"s":"héllo","b":true,"e":"GREEN","opt":3,"tags":["x","yy"],"m":{"a":1,"b":2},"inner":{"x":9},"either":"z"}"#,
        )
        .expect("JSON");
        let good = theirs(&valid, &schema).expect("apache-avro writes it");
        let mut next = numbers(0x2545_F491_4F6C_DD1D);
        let (mut read_here, mut refused) = (0, 0);
        for _ in 0..5000 {
            let mut bytes = good.clone();
            match next(3) {
                0 => {
                    let i = next(bytes.len() as u64) as usize;
                    bytes[i] = next(256) as u8;
                }
                1 => bytes.truncate(next(bytes.len() as u64) as usize),
                _ => bytes.extend((0..next(4)).map(|_| next(256) as u8)),
            }
            let mut direct = Vec::new();
            let mut rest = bytes.as_slice();
            let ours = super::read(&mut rest, &schema, &mut direct).filter(|()| rest.is_empty());
            match (ours, theirs_read(&schema, &bytes)) {
                (Some(()), Some(json)) => {
                    assert_eq!(direct, json, "{bytes:?}");
                    read_here += 1;
                }
                (Some(()), None) => panic!("read here, refused by apache-avro: {bytes:?}"),
                (None, _) => refused += 1,
            }
        }
        assert!(read_here > 100 && refused > 100, "read {read_here}, left {refused}");
    }

    #[test]
    fn a_default_or_a_logical_type_is_left_to_apache_avro() {
        let with_default = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"c","type":"string","default":"web"}]}"#;
        assert_eq!(agree(with_default, &[r#"{"a":1}"#]), 0);
        assert_eq!(agree(with_default, &[r#"{"a":1,"c":"app"}"#]), 1);
        let logical = r#"{"type":"record","name":"R","fields":[{"name":"t","type":{"type":"long","logicalType":"timestamp-millis"}}]}"#;
        assert_eq!(agree(logical, &[r#"{"t":1700000000000}"#]), 0);
    }
}

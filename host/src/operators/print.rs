//! `print`: each record written to standard output as `[step]: key, value`, the end of the
//! stream, as Kafka Streams' `print(Printed.toSysOut())` and KSML's `print`. Keys and values
//! print as text (bytes that are not UTF-8 are replaced), and a null as `null`. A batch is one
//! write under one lock of stdout, so lines of two threads never interleave.

use std::io::Write;

use super::{Emitted, Operator, OperatorSpec};
use crate::record::Record;
use crate::topology::{Form, PluginUse, StepSpec};

pub static PRINT: OperatorSpec = OperatorSpec {
    step: StepSpec {
        name: "print",
        fields: &[],
        plugin: PluginUse::None,
        form: Form::Node { changes_key: false, terminal: true },
        note: Some("stdout"), tables: false,
    },
    construct: Some(|node, _| Ok(Box::new(Print { label: node.name.clone(), lines: Vec::new(), failed: false }))),
};

struct Print {
    label: String,
    /// The batch's lines, reused from batch to batch.
    lines: Vec<u8>,
    /// stdout failed once (closed, full): said once, not per batch.
    failed: bool,
}

fn text(out: &mut Vec<u8>, field: Option<&[u8]>) {
    match field {
        Some(b) => out.extend_from_slice(String::from_utf8_lossy(b).as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
}

impl Operator for Print {
    fn process(&mut self, input: Vec<Record>) -> Emitted {
        self.lines.clear();
        for r in &input {
            self.lines.push(b'[');
            self.lines.extend_from_slice(self.label.as_bytes());
            self.lines.extend_from_slice(b"]: ");
            text(&mut self.lines, r.key.as_deref());
            self.lines.extend_from_slice(b", ");
            text(&mut self.lines, r.value.as_deref());
            self.lines.push(b'\n');
        }
        let mut stdout = std::io::stdout().lock();
        if let Err(e) = stdout.write_all(&self.lines).and_then(|()| stdout.flush())
            && !self.failed
        {
            self.failed = true;
            tracing::warn!(step = %self.label, error = %e, "print: cannot write to stdout");
        }
        Emitted::default()
    }
}

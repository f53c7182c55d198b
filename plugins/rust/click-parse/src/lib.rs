//! Parses a raw access-log line into a click, keyed by user.
//!
//! Input value (text): `2026-11-01T10:00:03Z u17 GET /products/42 "Mozilla/5.0 (X11)"`.
//! Output: key `u17`, value `{"time":"…","user":"u17","method":"GET","path":"/products/42","agent":"…"}`.

use serde::Serialize;
use wasp::Json;

#[derive(Serialize)]
struct Click<'a> {
    time: &'a str,
    user: &'a str,
    method: &'a str,
    path: &'a str,
    agent: &'a str,
}

#[wasp::map]
fn parse_click<'a>(_key: Option<&[u8]>, line: &'a str) -> Result<(String, Json<Click<'a>>), String> {
    let (head, agent) = match line.split_once(" \"") {
        Some((head, rest)) => (head, rest.strip_suffix('"').unwrap_or(rest)),
        None => (line, ""),
    };
    let mut fields = head.split_whitespace();
    let mut next = |what: &str| fields.next().ok_or_else(|| format!("no {what} in line {line:?}"));
    let click = Click { time: next("time")?, user: next("user")?, method: next("method")?, path: next("path")?, agent };
    Ok((click.user.to_owned(), Json(click)))
}

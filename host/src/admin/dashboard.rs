//! The dashboard at `/`: one page, rendered here, that draws the topology and shows the
//! running numbers (records per second per step, errors, late records, consumer lag, each
//! with a small rate graph), the plugins' versions and swap history, and a reload button.
//!
//! The page, its script (`/dashboard.js`) and its style are in the binary; it loads nothing
//! from elsewhere, and its `Content-Security-Policy` forbids it to. The script reads
//! `/api/stats` and `/plugins` every second. A reload asks for the admin token in the page
//! and sends it as `Authorization: Bearer`, as any client of `POST /plugins/{name}/reload`
//! does: the page never holds it beyond the input field.
//!
//! The topology drawing comes from the caller ([`Dashboard::topology_svg`]): the endpoint
//! knows metrics, plugins and tasks, not the topology.

use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::AdminState;
use super::stats::Stats;
use crate::wasm::swap::PluginReport;

const PAGE: &str = include_str!("dashboard.html");
const SCRIPT: &str = include_str!("dashboard.js");

/// Nothing but this origin's script and requests; the inline SVG's style is inline.
const CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// What the page shows besides the live numbers.
#[derive(Debug, Clone, Default)]
pub struct Dashboard {
    pub application_id: String,
    /// The topology as an SVG document (`wasp describe --format svg`); empty when none was
    /// given.
    pub topology_svg: String,
}

/// `GET /`.
pub(super) async fn page(State(s): State<AdminState>) -> Response {
    let stats = super::current_stats(&s);
    let plugins = s.plugins.report();
    let drawing = if s.dashboard.topology_svg.is_empty() {
        "<p>No drawing of the topology was given to this endpoint.</p>".to_owned()
    } else {
        s.dashboard.topology_svg.clone()
    };
    let html = fill(
        PAGE,
        &[
            ("APPLICATION", &esc(&s.dashboard.application_id)),
            ("TOPOLOGY", &drawing),
            ("STEPS", &step_rows(&stats)),
            ("PLUGINS", &plugin_rows(&plugins)),
            ("HISTORY", &history_rows(&plugins)),
        ],
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

/// `GET /dashboard.js`.
pub(super) async fn script() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], SCRIPT)
        .into_response()
}

/// Replaces each `{{KEY}}` of `template` with its value, in one pass (a value is never
/// searched for keys).
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + values.iter().map(|(_, v)| v.len()).sum::<usize>());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}").and_then(|end| values.iter().find(|(k, _)| *k == &after[..end]).map(|(_, v)| (end, v))) {
            Some((end, v)) => {
                out.push_str(v);
                rest = &after[end + 2..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// The steps table's rows as the page first shows them (totals; the script adds rates). The
/// script renders the same row for steps that appear later (`stepRow` in dashboard.js).
fn step_rows(stats: &Stats) -> String {
    let mut out = String::new();
    for s in &stats.steps {
        let _ = writeln!(
            out,
            "<tr data-step=\"{step}\"><td class=\"step\">{step}</td><td>{pipeline}</td>\
             <td class=\"num in-rate\">–</td><td class=\"graph in-graph\"></td><td class=\"num out-rate\">–</td>\
             <td class=\"num in-total\">{}</td><td class=\"num out-total\">{}</td>\
             <td class=\"num errors\">{}</td><td class=\"num late\">{}</td></tr>",
            s.records_in,
            s.records_out,
            s.errors,
            s.late,
            step = esc(&s.step),
            pipeline = esc(&s.pipeline),
        );
    }
    out
}

fn short(digest: &str) -> &str {
    &digest[..12.min(digest.len())]
}

fn plugin_rows(plugins: &[PluginReport]) -> String {
    let mut out = String::new();
    for p in plugins {
        let _ = writeln!(
            out,
            "<tr data-plugin=\"{name}\"><td class=\"plugin\">{name}</td>\
             <td class=\"digest\" title=\"{digest}\">{}</td><td class=\"generation num\">{}</td>\
             <td class=\"swaps num\">{}</td><td class=\"kinds\">{}</td><td class=\"path\" title=\"{path}\">{}</td>\
             <td><button type=\"button\" class=\"reload\" data-plugin=\"{name}\">reload</button></td></tr>",
            esc(short(&p.digest)),
            p.generation,
            p.swaps,
            esc(&p.kinds.join(", ")),
            esc(&p.path.file_name().map_or_else(String::new, |f| f.to_string_lossy().into_owned())),
            path = esc(&p.path.display().to_string()),
            name = esc(&p.name),
            digest = esc(&p.digest),
        );
    }
    out
}

/// Every plugin's recent swaps, newest first.
fn history_rows(plugins: &[PluginReport]) -> String {
    let mut events: Vec<(&str, &crate::wasm::SwapEvent)> =
        plugins.iter().flat_map(|p| p.history.iter().map(move |e| (p.name.as_str(), e))).collect();
    events.sort_by(|a, b| b.1.at_ms.cmp(&a.1.at_ms).then(a.0.cmp(b.0)));
    let mut out = String::new();
    for (name, e) in events {
        let result =
            serde_json::to_value(&e.result).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        let _ = writeln!(
            out,
            "<tr><td class=\"time\" data-ms=\"{}\"></td><td>{}</td><td class=\"result {result}\">{result}</td>\
             <td class=\"digest\" title=\"{}\">{}</td><td>{}</td></tr>",
            e.at_ms,
            esc(name),
            esc(&e.digest),
            esc(short(&e.digest)),
            esc(e.reason.as_deref().unwrap_or("")),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::fill;

    #[test]
    fn placeholders_are_filled_once() {
        assert_eq!(fill("a {{X}} b {{Y}} {{Z}} {{", &[("X", "{{Y}}"), ("Y", "y")]), "a {{Y}} b y {{Z}} {{");
    }
}

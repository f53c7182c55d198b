//! `GET /api/stats`: the counters the dashboard graphs, read from the Prometheus registry's
//! own text exposition (what `/metrics` serves), so the numbers are the same ones a scraper
//! sees: records in and out, errors and retries per step, late records per windowed step, and
//! the consumer lag per partition. The page turns successive readings into rates.

use std::collections::BTreeMap;

/// One step's counters.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct StepStats {
    pub step: String,
    pub pipeline: String,
    pub records_in: u64,
    pub records_out: u64,
    /// Records the step failed on after retries, whatever the policy did with them.
    pub errors: u64,
    pub retries: u64,
    /// Records a windowed step dropped because their windows had closed.
    pub late: u64,
}

/// A partition's consumer lag.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Lag {
    pub topic: String,
    pub partition: i64,
    pub lag: i64,
}

/// What `/api/stats` answers.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Stats {
    /// When the counters were read, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// In step name order.
    pub steps: Vec<StepStats>,
    pub lag: Vec<Lag>,
}

/// The counters in `exposition` (the Prometheus or OpenMetrics text format).
pub fn read(exposition: &str, time_ms: u64) -> Stats {
    let mut steps: BTreeMap<String, StepStats> = BTreeMap::new();
    let mut lag = Vec::new();
    for line in exposition.lines() {
        let Some((name, labels, value)) = sample(line) else { continue };
        let label = |k: &str| labels.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let count = if value.is_finite() && value > 0.0 { value as u64 } else { 0 };
        if name == "wasp_consumer_lag" {
            if let (Some(topic), Some(partition)) = (label("topic"), label("partition").and_then(|p| p.parse().ok())) {
                lag.push(Lag { topic, partition, lag: value as i64 });
            }
            continue;
        }
        let field: fn(&mut StepStats) -> &mut u64 = match name {
            "wasp_step_records_in_total" => |s| &mut s.records_in,
            "wasp_step_records_out_total" => |s| &mut s.records_out,
            "wasp_step_errors_total" => |s| &mut s.errors,
            "wasp_step_retries_total" => |s| &mut s.retries,
            "wasp_late_records_total" => |s| &mut s.late,
            _ => continue,
        };
        let Some(step) = label("step") else { continue };
        let entry = steps.entry(step.clone()).or_insert_with(|| StepStats { step, ..StepStats::default() });
        if let Some(p) = label("pipeline") {
            entry.pipeline = p;
        }
        // Errors come one series per policy: their sum.
        *field(entry) += count;
    }
    lag.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Stats { time_ms, steps: steps.into_values().collect(), lag }
}

/// A sample: its metric name, labels and value.
type Sample<'a> = (&'a str, Vec<(String, String)>, f64);

/// A sample line; `None` for comments and what does not parse.
fn sample(line: &str) -> Option<Sample<'_>> {
    if line.starts_with('#') || line.is_empty() {
        return None;
    }
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let mut labels = Vec::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut key = String::new();
        loop {
            let (i, c) = chars.next()?;
            match c {
                '}' => {
                    rest = &inner[i + 1..];
                    break;
                }
                ',' | ' ' => {}
                '=' => {
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next()?.1 {
                            '"' => break,
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            other => value.push(other),
                        }
                    }
                    labels.push((std::mem::take(&mut key), value));
                }
                other => key.push(other),
            }
        }
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some((name, labels, value))
}

#[cfg(test)]
mod tests {
    use super::{Lag, StepStats, read};

    #[test]
    fn counters_are_read_per_step_and_partition() {
        let text = r#"# HELP wasp_step_records_in Records that reached a step.
# TYPE wasp_step_records_in counter
wasp_step_records_in_total{pipeline="p",step="p-0-filter"} 12
wasp_step_records_out_total{pipeline="p",step="p-0-filter"} 7
wasp_step_errors_total{pipeline="p",step="p-0-filter",policy="skip"} 2
wasp_step_errors_total{pipeline="p",step="p-0-filter",policy="dead_letter"} 3
wasp_late_records_total{step="p-2-count"} 4
wasp_consumer_lag{topic="in \"x\"",partition="1"} 40
wasp_consumer_lag{topic="in \"x\"",partition="0"} 5
wasp_plugin_seen_total{plugin="kit",step="p-0-filter"} 99
# EOF
"#;
        let s = read(text, 1000);
        assert_eq!(s.time_ms, 1000);
        assert_eq!(
            s.steps,
            vec![
                StepStats {
                    step: "p-0-filter".into(),
                    pipeline: "p".into(),
                    records_in: 12,
                    records_out: 7,
                    errors: 5,
                    retries: 0,
                    late: 0
                },
                StepStats { step: "p-2-count".into(), late: 4, ..StepStats::default() },
            ]
        );
        assert_eq!(
            s.lag,
            vec![
                Lag { topic: "in \"x\"".into(), partition: 0, lag: 5 },
                Lag { topic: "in \"x\"".into(), partition: 1, lag: 40 },
            ]
        );
    }

    #[test]
    fn lines_that_do_not_parse_are_skipped() {
        let s = read("wasp_step_records_in_total{step=\"unterminated} 3\nwasp_step_records_in_total 3\n", 0);
        assert!(s.steps.is_empty(), "{s:?}");
    }
}

//! A manifest step converted once into what it means: the op's [`StepSpec`], and its fields
//! checked against the spec and typed (plugins resolved, topics named, the window parsed),
//! with the spans that errors point at. The builder then works on [`Step`]s only.

use std::collections::BTreeMap;
use std::ops::Range;

use toml::Spanned;

use super::build::Builder;
use super::{
    Field, FoldKind, FoldOp, Form, JoinKind, JoinWindow, PluginKind, PluginRef, PluginUse, StepSpec, Suppression,
    WindowSpec,
};
use crate::manifest::{BranchDef, Duration, ManifestError, StepDef, WindowDef, closest, parse_duration};

/// One typed step.
pub struct Step<'a> {
    pub spec: &'static StepSpec,
    /// `pipelines.NAME.steps[i]`, the key errors name.
    pub key: String,
    /// The span of its `op`.
    pub span: Range<usize>,
    pub kind: StepKind<'a>,
}

/// What a step does, by its spec's [`Form`].
pub enum StepKind<'a> {
    Node {
        plugin: Option<PluginRef>,
    },
    /// Stream (or topic) names and the span of `from`.
    Merge {
        from: Vec<&'a str>,
        span: Range<usize>,
    },
    To {
        topic: String,
    },
    Branch {
        branches: Vec<BranchStep<'a>>,
    },
    GroupByKey,
    GroupBy {
        selector: PluginRef,
    },
    WindowedBy {
        window: WindowSpec,
    },
    Fold {
        fold: FoldOp,
        store: Option<&'a Spanned<String>>,
        late_topic: Option<&'a Spanned<String>>,
        /// The subtractor plugin (a grouped table's `reduce` or `aggregate`), with its span.
        subtractor: Option<(PluginRef, Range<usize>)>,
    },
    Suppress(Suppression),
    ToStream,
    ToTable,
    Join {
        kind: JoinKind,
        joiner: PluginRef,
        with: JoinTarget<'a>,
    },
    Process {
        plugin: PluginRef,
        stores: Option<&'a Spanned<Vec<String>>>,
        children: BTreeMap<String, String>,
    },
}

/// What a join step names: a table, or a stream within a window.
pub enum JoinTarget<'a> {
    /// A table, a key selector (global tables only), a foreign-key extractor (a
    /// foreign-key join of two tables), and a grace period (with its span: a stream joined
    /// with a versioned table).
    Table(&'a Spanned<String>, Option<PluginRef>, Option<PluginRef>, Option<(i64, std::ops::Range<usize>)>),
    Stream(&'a Spanned<String>, JoinWindow),
}

/// One branch of a `branch` step: its predicate (none for the default branch) and its own
/// steps, converted when its chain is built.
pub struct BranchStep<'a> {
    pub predicate: Option<PluginRef>,
    pub def: &'a BranchDef,
    pub key: String,
    pub span: Range<usize>,
}

/// `mapValues`, `map-values` and `map_values` are the same op.
pub fn normalize_op(op: &str) -> String {
    let mut out = String::new();
    for c in op.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else if c == '-' {
            out.push('_');
        } else {
            out.push(c);
        }
    }
    if out == "foreach" { "for_each".to_owned() } else { out }
}

fn present(s: &StepDef, f: Field) -> Option<Range<usize>> {
    match f {
        Field::From => s.from.as_ref().map(Spanned::span),
        Field::Topic => s.topic.as_ref().map(Spanned::span),
        Field::Branches => s.branches.as_ref().and_then(|b| b.first()).map(Spanned::span),
        Field::Store => s.store.as_ref().map(Spanned::span),
        Field::Window => s.window.as_ref().map(Spanned::span),
        Field::Until => s.until.as_ref().map(Spanned::span),
        Field::TimeLimit => s.time_limit.as_ref().map(Spanned::span),
        Field::MaxRecords => s.max_records.as_ref().map(Spanned::span),
        Field::WhenFull => s.when_full.as_ref().map(Spanned::span),
        Field::LateTopic => s.late_topic.as_ref().map(Spanned::span),
        Field::Stores => s.stores.as_ref().map(Spanned::span),
        Field::Children => s.children.as_ref().map(Spanned::span),
        Field::Table => s.table.as_ref().map(Spanned::span),
        Field::KeySelector => s.key_selector.as_ref().map(Spanned::span),
        Field::Subtractor => s.subtractor.as_ref().map(Spanned::span),
        Field::ForeignKey => s.foreign_key.as_ref().map(Spanned::span),
        Field::Stream => s.stream.as_ref().map(Spanned::span),
        Field::TimeDifference => s.time_difference.as_ref().map(Spanned::span),
        Field::Before => s.before.as_ref().map(Spanned::span),
        Field::After => s.after.as_ref().map(Spanned::span),
        Field::Grace => s.grace.as_ref().map(Spanned::span),
    }
}

impl<'a> Builder<'a> {
    /// Converts `def`, found at `key`: its op must be registered and take every field given.
    pub(super) fn step(&self, def: &'a Spanned<StepDef>, key: String) -> Result<Step<'a>, ManifestError> {
        let s = def.get_ref();
        let op = normalize_op(s.op.get_ref());
        let Some(spec) = self.specs.iter().copied().find(|p| p.in_manifest() && p.name == op) else {
            let names: Vec<&str> = self.specs.iter().filter(|p| p.in_manifest()).map(|p| p.name).collect();
            let mut e = self.err(s.op.span(), format!("{key}.op"), format!("unknown op `{op}`"));
            e = match closest(&op, names.iter().copied()) {
                Some(c) => e.with_help(format!("did you mean `{c}`?")),
                None => e.with_help(format!("the ops are: {}", names.join(", "))),
            };
            return Err(e);
        };
        let bad = |field: &str, span: Range<usize>| {
            Err(self.err(span, format!("{key}.{field}"), format!("`{op}` does not take `{field}`")))
        };
        if spec.plugin == PluginUse::None
            && let Some(p) = &s.plugin
        {
            return bad("plugin", p.span());
        }
        for f in Field::ALL {
            if !spec.fields.contains(&f)
                && let Some(span) = present(s, f)
            {
                return bad(f.name(), span);
            }
        }
        let span = s.op.span();
        let plugin =
            |kind: PluginKind| self.plugin_ref(s.plugin.as_ref(), s.function.as_ref(), kind, span.clone(), &key, &op);
        let required = || match spec.plugin.kind() {
            Some(kind) => plugin(kind),
            None => unreachable!("the spec of `{op}` names no plugin kind"),
        };
        let need = |what: &str| self.err(span.clone(), &key, format!("`{op}` needs {what}"));
        let kind = match spec.form {
            Form::Node { .. } => StepKind::Node {
                plugin: match spec.plugin {
                    PluginUse::None => None,
                    PluginUse::Optional { kind, .. } => s.plugin.as_ref().map(|_| plugin(kind)).transpose()?,
                    PluginUse::Required(kind) => Some(plugin(kind)?),
                },
            },
            Form::Merge => {
                let from = s.from.as_ref().ok_or_else(|| need("`from`: the streams merged in"))?;
                StepKind::Merge { from: from.get_ref().names(), span: from.span() }
            }
            Form::To => {
                let topic = s.topic.as_ref().ok_or_else(|| need("`topic`"))?;
                StepKind::To { topic: self.topic_of(topic.get_ref()) }
            }
            Form::Branch => {
                let defs = s.branches.as_ref().ok_or_else(|| need("`branches`"))?;
                if defs.is_empty() {
                    return Err(need("at least one branch"));
                }
                let mut branches = Vec::new();
                for (j, b) in defs.iter().enumerate() {
                    let bkey = format!("{key}.branches[{j}]");
                    let br = b.get_ref();
                    let predicate = match &br.plugin {
                        Some(p) => {
                            let kind = PluginKind::Filter;
                            Some(self.plugin_ref(Some(p), br.function.as_ref(), kind, b.span(), &bkey, &op)?)
                        }
                        None if j + 1 == defs.len() => None,
                        None => {
                            return Err(self.err(
                                b.span(),
                                &bkey,
                                "only the last branch may leave out `plugin` (it is the default branch)",
                            ));
                        }
                    };
                    branches.push(BranchStep { predicate, def: br, key: bkey, span: b.span() });
                }
                StepKind::Branch { branches }
            }
            Form::GroupByKey => StepKind::GroupByKey,
            Form::GroupBy => StepKind::GroupBy { selector: required()? },
            Form::WindowedBy => {
                let w = s.window.as_ref().ok_or_else(|| {
                    need("`window = { type = \"tumbling\", size = \"5s\" }` (or hopping, sliding, session)")
                })?;
                StepKind::WindowedBy { window: self.window(w, &format!("{key}.window"))? }
            }
            Form::Fold(k) => StepKind::Fold {
                fold: match k {
                    FoldKind::Count => FoldOp::Count,
                    FoldKind::Reduce => FoldOp::Reduce(required()?),
                    FoldKind::Aggregate => FoldOp::Aggregate(required()?),
                },
                store: s.store.as_ref(),
                late_topic: s.late_topic.as_ref(),
                subtractor: match (&s.subtractor, k) {
                    (Some(p), FoldKind::Reduce | FoldKind::Aggregate) => {
                        let kind = if k == FoldKind::Reduce { PluginKind::Reducer } else { PluginKind::Aggregator };
                        let r =
                            self.plugin_ref(Some(p), None, kind, span.clone(), &format!("{key}.subtractor"), &op)?;
                        Some((r, p.span()))
                    }
                    (Some(p), FoldKind::Count) => {
                        return Err(self.err(
                            p.span(),
                            format!("{key}.subtractor"),
                            "`count` needs no `subtractor`: it counts down by itself",
                        ));
                    }
                    (None, _) => None,
                },
            },
            Form::Suppress => {
                let until = s.until.as_ref().map(|u| normalize_op(u.get_ref()));
                let until_span = s.until.as_ref().map_or_else(|| span.clone(), |u| u.span());
                match until.as_deref() {
                    Some("until_window_closes" | "window_closes") => {
                        for (f, field) in [
                            ("time_limit", s.time_limit.as_ref().map(Spanned::span)),
                            ("max_records", s.max_records.as_ref().map(Spanned::span)),
                        ] {
                            if let Some(fspan) = field {
                                return Err(self.err(
                                    fspan,
                                    format!("{key}.{f}"),
                                    format!("`{f}` goes with `until = \"time_limit\"`"),
                                ));
                            }
                        }
                        StepKind::Suppress(Suppression::WindowCloses)
                    }
                    Some("until_time_limit" | "time_limit") => {
                        let limit = s.time_limit.as_ref().ok_or_else(|| {
                            self.err(
                                until_span.clone(),
                                format!("{key}.time_limit"),
                                "`until = \"time_limit\"` needs `time_limit` (e.g. \"10s\")",
                            )
                        })?;
                        let limit_ms = self.duration(limit, format!("{key}.time_limit"))?;
                        let max_records = s.max_records.as_ref().map(|m| *m.get_ref());
                        let emit_early = match s.when_full.as_ref().map(|w| (normalize_op(w.get_ref()), w.span())) {
                            None => true,
                            Some((w, _)) if w == "emit_early" => true,
                            Some((w, _)) if w == "shut_down" => false,
                            Some((_, wspan)) => {
                                return Err(self.err(
                                    wspan,
                                    format!("{key}.when_full"),
                                    "`when_full` is `emit_early` or `shut_down`",
                                ));
                            }
                        };
                        StepKind::Suppress(Suppression::TimeLimit { limit_ms, max_records, emit_early })
                    }
                    _ => {
                        return Err(self.err(
                            until_span,
                            format!("{key}.until"),
                            "`suppress` needs `until = \"window_closes\"` (emit each window once, when it closes) or `until = \"time_limit\"` with `time_limit`",
                        ));
                    }
                }
            }
            Form::ToStream => StepKind::ToStream,
            Form::ToTable => StepKind::ToTable,
            Form::Join(kind) => {
                let joiner = required()?;
                let with = match (&s.table, &s.stream) {
                    (Some(t), None) => {
                        for (f, field) in
                            [("time_difference", &s.time_difference), ("before", &s.before), ("after", &s.after)]
                        {
                            if let Some(d) = field {
                                return Err(self.err(
                                    d.span(),
                                    format!("{key}.{f}"),
                                    format!("`{f}` is for a join with a `stream`: a table join has no window"),
                                ));
                            }
                        }
                        let selector = match &s.key_selector {
                            Some(p) => Some(self.plugin_ref(
                                Some(p),
                                None,
                                PluginKind::KeySelector,
                                span.clone(),
                                &format!("{key}.key_selector"),
                                &op,
                            )?),
                            None => None,
                        };
                        let foreign_key = match &s.foreign_key {
                            Some(p) => Some(self.plugin_ref(
                                Some(p),
                                None,
                                PluginKind::ForeignKeyExtractor,
                                span.clone(),
                                &format!("{key}.foreign_key"),
                                &op,
                            )?),
                            None => None,
                        };
                        let grace = match &s.grace {
                            Some(g) => Some((self.duration(g, format!("{key}.grace"))?, g.span())),
                            None => None,
                        };
                        JoinTarget::Table(t, selector, foreign_key, grace)
                    }
                    (None, Some(st)) => {
                        let difference = s.time_difference.as_ref().ok_or_else(|| {
                            need("`time_difference` (e.g. \"10m\"): how far apart the two streams' records may be")
                        })?;
                        let diff = self.duration(difference, format!("{key}.time_difference"))?;
                        let side = |d: &Option<Spanned<Duration>>, f: &str| match d {
                            Some(d) => self.duration(d, format!("{key}.{f}")),
                            None => Ok(diff),
                        };
                        let window = JoinWindow {
                            before_ms: side(&s.before, "before")?,
                            after_ms: side(&s.after, "after")?,
                            grace_ms: match &s.grace {
                                Some(g) => self.duration(g, format!("{key}.grace"))?,
                                None => 0,
                            },
                        };
                        JoinTarget::Stream(st, window)
                    }
                    (Some(_), Some(st)) => {
                        return Err(self.err(
                            st.span(),
                            format!("{key}.stream"),
                            format!("`{op}` joins a `table` or a `stream`, not both"),
                        ));
                    }
                    (None, None) => return Err(need("`table` or `stream`: what the stream is joined with")),
                };
                if let (JoinTarget::Stream(..), Some(ks)) = (&with, &s.key_selector) {
                    return Err(self.err(
                        ks.span(),
                        format!("{key}.key_selector"),
                        "`key_selector` picks the lookup key of a global table join",
                    ));
                }
                StepKind::Join { kind, joiner, with }
            }
            Form::Process => StepKind::Process {
                plugin: required()?,
                stores: s.stores.as_ref(),
                children: s
                    .children
                    .as_ref()
                    .map(|c| c.get_ref().iter().map(|(k, v)| (k.clone(), self.topic_of(v))).collect())
                    .unwrap_or_default(),
            },
            Form::Internal => unreachable!("internal specs are not found by name"),
        };
        Ok(Step { spec, key, span, kind })
    }

    fn plugin_ref(
        &self,
        plugin: Option<&Spanned<String>>,
        function: Option<&String>,
        kind: PluginKind,
        op_span: Range<usize>,
        key: &str,
        op: &str,
    ) -> Result<PluginRef, ManifestError> {
        let Some(plugin) = plugin else {
            return Err(self.err(
                op_span,
                key,
                format!("`{op}` needs a `plugin` that exports the {} kind", kind.interface()),
            ));
        };
        let plugins = &self.loaded.manifest.plugins;
        if !plugins.keys().any(|k| k.get_ref() == plugin.get_ref()) {
            let mut e = self.err(
                plugin.span(),
                format!("{key}.plugin"),
                format!("no plugin named `{}` in [plugins]", plugin.get_ref()),
            );
            if let Some(s) = closest(plugin.get_ref(), plugins.keys().map(|k| k.get_ref().as_str())) {
                e = e.with_help(format!("did you mean `{s}`?"));
            }
            return Err(e);
        }
        Ok(PluginRef { plugin: plugin.get_ref().clone(), function: function.cloned().unwrap_or_default(), kind })
    }

    pub(super) fn duration(&self, d: &Spanned<Duration>, key: String) -> Result<i64, ManifestError> {
        let ms = match d.get_ref() {
            Duration::Millis(ms) => Ok(*ms),
            Duration::Text(t) => parse_duration(t),
        }
        .map_err(|m| self.err(d.span(), &key, m))?;
        if ms < 0 {
            return Err(self.err(d.span(), key, "a duration cannot be negative"));
        }
        Ok(ms)
    }

    fn window(&self, w: &Spanned<WindowDef>, key: &str) -> Result<WindowSpec, ManifestError> {
        let def = w.get_ref();
        let need = |field: &str, v: &Option<Spanned<Duration>>| -> Result<i64, ManifestError> {
            match v {
                Some(d) => {
                    let ms = self.duration(d, format!("{key}.{field}"))?;
                    if ms == 0 {
                        return Err(self.err(
                            d.span(),
                            format!("{key}.{field}"),
                            format!("`{field}` must be longer than 0"),
                        ));
                    }
                    Ok(ms)
                }
                None => Err(self.err(w.span(), key, format!("a {} window needs `{field}`", def.kind.get_ref()))),
            }
        };
        let grace = match &def.grace {
            Some(g) => self.duration(g, format!("{key}.grace"))?,
            None => 0,
        };
        let unused = |field: &str, v: &Option<Spanned<Duration>>| -> Result<(), ManifestError> {
            match v {
                Some(d) => Err(self.err(
                    d.span(),
                    format!("{key}.{field}"),
                    format!("a {} window does not take `{field}`", def.kind.get_ref()),
                )),
                None => Ok(()),
            }
        };
        Ok(match def.kind.get_ref().as_str() {
            "tumbling" => {
                unused("advance", &def.advance)?;
                unused("gap", &def.gap)?;
                unused("difference", &def.difference)?;
                let size = need("size", &def.size)?;
                WindowSpec::Time { size, advance: size, grace }
            }
            "hopping" => {
                unused("gap", &def.gap)?;
                unused("difference", &def.difference)?;
                let size = need("size", &def.size)?;
                let advance = need("advance", &def.advance)?;
                if advance > size {
                    let span = def.advance.as_ref().map_or_else(|| w.span(), |a| a.span());
                    return Err(self.err(span, format!("{key}.advance"), "`advance` cannot be longer than `size`"));
                }
                WindowSpec::Time { size, advance, grace }
            }
            "sliding" => {
                unused("size", &def.size)?;
                unused("advance", &def.advance)?;
                unused("gap", &def.gap)?;
                WindowSpec::Sliding { difference: need("difference", &def.difference)?, grace }
            }
            "session" => {
                unused("size", &def.size)?;
                unused("advance", &def.advance)?;
                unused("difference", &def.difference)?;
                WindowSpec::Session { gap: need("gap", &def.gap)?, grace }
            }
            other => {
                let mut e = self.err(def.kind.span(), format!("{key}.type"), format!("unknown window type `{other}`"));
                if let Some(c) = closest(other, ["tumbling", "hopping", "sliding", "session"]) {
                    e = e.with_help(format!("did you mean `{c}`?"));
                } else {
                    e = e.with_help("the window types are: tumbling, hopping, sliding, session");
                }
                return Err(e);
            }
        })
    }
}

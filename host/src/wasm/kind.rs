//! The kinds of function a plugin exports: one WIT interface each. The table below is the one
//! place the host lists them: each line names a kind, the WIT interface (and its `bindgen!`
//! module, whose export an instance looks up) and the SDK attribute that exports it. Below it,
//! each kind's typed call, one line over the generic call path of `instance.rs`. A new kind is
//! its interface in `wit/plugin.wit`, its generator in `guest-sdk/macros/src/`, and here: a
//! line in the table, its call, and its probe.

use wasmtime::Store;
use wasmtime::component::{Instance, InstancePre};

use super::HostState;
use super::bindings::{self, RecordError, Verdicts, WasmOutput, processor, timestamp_extractor};
use super::instance::{CallFailure, PluginInstance, missing};
use crate::record::EncodedBatch;

macro_rules! plugin_kinds {
    ($($kind:ident => $module:ident, $interface:literal, $attribute:literal;)*) => {
        /// The kinds of function a plugin can export, one WIT interface each.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum PluginKind {
            $($kind,)*
        }

        impl PluginKind {
            pub const ALL: &'static [PluginKind] = &[$(Self::$kind,)*];

            /// The WIT interface name, e.g. `value-mapper`.
            pub fn interface(self) -> &'static str {
                match self {
                    $(Self::$kind => $interface,)*
                }
            }

            /// The guest SDK attribute that exports the kind.
            pub fn attribute(self) -> &'static str {
                match self {
                    $(Self::$kind => $attribute,)*
                }
            }
        }

        /// Each kind's export in one instance (`None`: the component does not export it).
        pub(super) struct Exports {
            $(pub(super) $module: Option<bindings::$module::Guest>,)*
        }

        impl Exports {
            /// Looks up the exports of `kinds` (the kinds the component exports).
            pub(super) fn load(
                kinds: &[PluginKind],
                pre: &InstancePre<HostState>,
                store: &mut Store<HostState>,
                instance: &Instance,
            ) -> wasmtime::Result<Self> {
                Ok(Self {
                    $($module: if kinds.contains(&PluginKind::$kind) {
                        Some(bindings::$module::GuestIndices::new(pre)?.load(&mut *store, instance)?)
                    } else {
                        None
                    },)*
                })
            }
        }
    };
}

plugin_kinds! {
    Filter => filter, "filter", "#[wasp::filter]";
    ValueMapper => value_mapper, "value-mapper", "#[wasp::map_values]";
    KeyValueMapper => key_value_mapper, "key-value-mapper", "#[wasp::map]";
    FlatMapper => flat_mapper, "flat-mapper", "#[wasp::flat_map] or #[wasp::flat_map_values]";
    KeySelector => key_selector, "key-selector", "#[wasp::select_key]";
    ForEach => for_each, "for-each", "#[wasp::for_each]";
    Aggregator => aggregator, "aggregator", "#[wasp::aggregate]";
    Reducer => reducer, "reducer", "#[wasp::reduce]";
    TimestampExtractor => timestamp_extractor, "timestamp-extractor", "#[wasp::timestamp]";
    Processor => processor, "processor", "#[wasp::processor]";
    ValueJoiner => value_joiner, "value-joiner", "#[wasp::value_joiner]";
    ForeignKeyExtractor => foreign_key_extractor, "foreign-key-extractor", "#[wasp::foreign_key]";
}

/// Each kind's typed call.
impl PluginInstance {
    /// Runs a filter over the batch.
    pub fn filter(&mut self, function: &str, batch: &mut EncodedBatch) -> Result<Verdicts, CallFailure> {
        self.call(PluginKind::Filter, |e| e.filter.as_ref(), [batch], |g, s, [b]| g.call_filter(s, function, b))
    }

    /// Runs a transforming kind (value mapper, key-value mapper, flat mapper, key selector).
    pub fn transform(
        &mut self,
        kind: PluginKind,
        function: &str,
        batch: &mut EncodedBatch,
    ) -> Result<WasmOutput, CallFailure> {
        let f = function;
        match kind {
            PluginKind::ValueMapper => {
                self.call(kind, |e| e.value_mapper.as_ref(), [batch], |g, s, [b]| g.call_map_values(s, f, b))
            }
            PluginKind::KeyValueMapper => {
                self.call(kind, |e| e.key_value_mapper.as_ref(), [batch], |g, s, [b]| g.call_map_pairs(s, f, b))
            }
            PluginKind::FlatMapper => {
                self.call(kind, |e| e.flat_mapper.as_ref(), [batch], |g, s, [b]| g.call_flat_map(s, f, b))
            }
            PluginKind::KeySelector => {
                self.call(kind, |e| e.key_selector.as_ref(), [batch], |g, s, [b]| g.call_select_key(s, f, b))
            }
            _ => Err(missing(self.name(), kind)),
        }
    }

    /// Runs a for-each over the batch.
    pub fn for_each(&mut self, function: &str, batch: &mut EncodedBatch) -> Result<Vec<RecordError>, CallFailure> {
        self.call(PluginKind::ForEach, |e| e.for_each.as_ref(), [batch], |g, s, [b]| g.call_for_each(s, function, b))
    }

    /// Folds a batch into aggregates (see `aggregator.aggregate` in the WIT).
    pub fn aggregate(
        &mut self,
        function: &str,
        batch: &mut EncodedBatch,
        slots: &[u32],
        current: &mut EncodedBatch,
    ) -> Result<WasmOutput, CallFailure> {
        self.call(
            PluginKind::Aggregator,
            |e| e.aggregator.as_ref(),
            [batch, current],
            |g, s, [b, c]| g.call_aggregate(s, function, b, slots, c),
        )
    }

    /// Folds a batch into reduced values (see `reducer.reduce` in the WIT).
    pub fn reduce(
        &mut self,
        function: &str,
        batch: &mut EncodedBatch,
        slots: &[u32],
        current: &mut EncodedBatch,
    ) -> Result<WasmOutput, CallFailure> {
        self.call(
            PluginKind::Reducer,
            |e| e.reducer.as_ref(),
            [batch, current],
            |g, s, [b, c]| g.call_reduce(s, function, b, slots, c),
        )
    }

    /// Merges aggregates pairwise (session windows).
    pub fn merge(
        &mut self,
        function: &str,
        left: &mut EncodedBatch,
        right: &mut EncodedBatch,
    ) -> Result<WasmOutput, CallFailure> {
        self.call(
            PluginKind::Aggregator,
            |e| e.aggregator.as_ref(),
            [left, right],
            |g, s, [l, r]| g.call_merge(s, function, l, r),
        )
    }

    /// The aggregator's initial aggregate.
    pub fn initialize(&mut self, function: &str) -> Result<Vec<u8>, CallFailure> {
        self.call(PluginKind::Aggregator, |e| e.aggregator.as_ref(), [], |g, s, []| g.call_initialize(s, function))
    }

    /// The event time of each record.
    pub fn extract_timestamps(
        &mut self,
        function: &str,
        batch: &mut EncodedBatch,
    ) -> Result<timestamp_extractor::Timestamps, CallFailure> {
        let kind = PluginKind::TimestampExtractor;
        self.call(kind, |e| e.timestamp_extractor.as_ref(), [batch], |g, s, [b]| g.call_extract(s, function, b))
    }

    /// A processor's timers.
    pub fn processor_init(&mut self, function: &str) -> Result<Vec<processor::Timer>, CallFailure> {
        self.call(PluginKind::Processor, |e| e.processor.as_ref(), [], |g, s, []| g.call_init(s, function))
    }

    /// Runs a processor over the batch.
    pub fn process(&mut self, function: &str, batch: &mut EncodedBatch) -> Result<processor::Forwarded, CallFailure> {
        self.call(PluginKind::Processor, |e| e.processor.as_ref(), [batch], |g, s, [b]| g.call_process(s, function, b))
    }

    /// Fires a processor's timer.
    pub fn punctuate(&mut self, function: &str, timer: &str, time: i64) -> Result<processor::Forwarded, CallFailure> {
        self.call(
            PluginKind::Processor,
            |e| e.processor.as_ref(),
            [],
            |g, s, []| g.call_punctuate(s, function, timer, time),
        )
    }

    /// Joins each record of `left` with the record of `right` at the same position (see
    /// `value-joiner.join` in the WIT).
    pub fn join(
        &mut self,
        function: &str,
        left: &mut EncodedBatch,
        right: &mut EncodedBatch,
    ) -> Result<WasmOutput, CallFailure> {
        self.call(
            PluginKind::ValueJoiner,
            |e| e.value_joiner.as_ref(),
            [left, right],
            |g, s, [l, r]| g.call_join(s, function, l, r),
        )
    }

    /// The foreign key of each record, as the key of its output.
    pub fn extract_foreign_keys(
        &mut self,
        function: &str,
        batch: &mut EncodedBatch,
    ) -> Result<WasmOutput, CallFailure> {
        let kind = PluginKind::ForeignKeyExtractor;
        self.call(
            kind,
            |e| e.foreign_key_extractor.as_ref(),
            [batch],
            |g, s, [b]| g.call_extract_foreign_key(s, function, b),
        )
    }

    /// Checks that `function` names a function of `kind`: the set-up call for kinds that have
    /// one, else an empty batch, which costs nothing and answers `unknown-function` if not.
    pub fn probe(&mut self, kind: PluginKind, function: &str) -> Result<(), CallFailure> {
        let mut empty = EncodedBatch::default();
        match kind {
            PluginKind::Aggregator | PluginKind::Processor => self.set_up(kind, function),
            PluginKind::Filter => self.filter(function, &mut empty).map(drop),
            PluginKind::ForEach => self.for_each(function, &mut empty).map(drop),
            PluginKind::Reducer => self.reduce(function, &mut empty, &[], &mut EncodedBatch::default()).map(drop),
            PluginKind::TimestampExtractor => self.extract_timestamps(function, &mut empty).map(drop),
            PluginKind::ValueJoiner => self.join(function, &mut empty, &mut EncodedBatch::default()).map(drop),
            PluginKind::ForeignKeyExtractor => self.extract_foreign_keys(function, &mut empty).map(drop),
            _ => self.transform(kind, function, &mut empty).map(drop),
        }
    }
}

//! The kinds of function a plugin exports: one WIT interface each, and the SDK attribute
//! that exports it.

/// The kinds of function a plugin can export, one WIT interface each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PluginKind {
    Filter,
    ValueMapper,
    KeyValueMapper,
    FlatMapper,
    KeySelector,
    ForEach,
    Aggregator,
    Reducer,
    TimestampExtractor,
    Processor,
}

impl PluginKind {
    pub const ALL: [PluginKind; 10] = [
        Self::Filter,
        Self::ValueMapper,
        Self::KeyValueMapper,
        Self::FlatMapper,
        Self::KeySelector,
        Self::ForEach,
        Self::Aggregator,
        Self::Reducer,
        Self::TimestampExtractor,
        Self::Processor,
    ];

    /// The WIT interface name, e.g. `value-mapper`.
    pub fn interface(self) -> &'static str {
        match self {
            Self::Filter => "filter",
            Self::ValueMapper => "value-mapper",
            Self::KeyValueMapper => "key-value-mapper",
            Self::FlatMapper => "flat-mapper",
            Self::KeySelector => "key-selector",
            Self::ForEach => "for-each",
            Self::Aggregator => "aggregator",
            Self::Reducer => "reducer",
            Self::TimestampExtractor => "timestamp-extractor",
            Self::Processor => "processor",
        }
    }

    /// The guest SDK attribute that exports the kind.
    pub fn attribute(self) -> &'static str {
        match self {
            Self::Filter => "#[wasp::filter]",
            Self::ValueMapper => "#[wasp::map_values]",
            Self::KeyValueMapper => "#[wasp::map]",
            Self::FlatMapper => "#[wasp::flat_map] or #[wasp::flat_map_values]",
            Self::KeySelector => "#[wasp::select_key]",
            Self::ForEach => "#[wasp::for_each]",
            Self::Aggregator => "#[wasp::aggregate]",
            Self::Reducer => "#[wasp::reduce]",
            Self::TimestampExtractor => "#[wasp::timestamp]",
            Self::Processor => "#[wasp::processor]",
        }
    }
}

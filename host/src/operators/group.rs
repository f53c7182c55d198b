//! The steps around an aggregation that make no node of their own, and `group_by`, whose node
//! picks the new key before the repartition. `group_by_key` and `group_by` group the stream
//! (repartitioning it when its key changed); `windowed_by` gives the aggregation its windows;
//! `to_stream` turns an aggregation back into a stream (`suppress` has a file of its own).

use super::{OperatorSpec, transform};
use crate::topology::{Field, Form, PluginKind, PluginUse, StepSpec};

pub static GROUP_BY_KEY: OperatorSpec = OperatorSpec {
    step: StepSpec { name: "group_by_key", fields: &[], plugin: PluginUse::None, form: Form::GroupByKey, note: None, tables: false },
    construct: None,
};

pub static GROUP_BY: OperatorSpec = OperatorSpec {
    step: StepSpec {
        name: "group_by",
        fields: &[],
        plugin: PluginUse::Required(PluginKind::KeySelector),
        form: Form::GroupBy,
        note: None, tables: true
    },
    construct: Some(|node, ctx| transform::transform(node, ctx, transform::Shape::Key)),
};

pub static WINDOWED_BY: OperatorSpec = OperatorSpec {
    step: StepSpec {
        name: "windowed_by",
        fields: &[Field::Window],
        plugin: PluginUse::None,
        form: Form::WindowedBy,
        note: None, tables: false
    },
    construct: None,
};

pub static TO_STREAM: OperatorSpec = OperatorSpec {
    step: StepSpec { name: "to_stream", fields: &[], plugin: PluginUse::None, form: Form::ToStream, note: None, tables: true },
    construct: None,
};

"""Enriches a parsed click with its page category and the hour of day (a value mapper).

The categories come from the plugin's config: `categories` maps a path prefix to a category
(the longest matching prefix wins); other pages are `other`.
"""

import json

import wit_world
from wit_world.exports import ValueMapper
from wit_world.imports import config, log, types
from componentize_py_types import Err

from wasp_batch import OutputBuilder, records

_categories = None


def categories():
    global _categories
    if _categories is None:
        raw = config.get("categories")
        try:
            table = json.loads(raw) if raw else {}
        except ValueError as e:
            log.log(log.Level.WARN, f"config.categories is not JSON ({e}); no categories")
            table = {}
        _categories = sorted(table.items(), key=lambda kv: -len(kv[0]))
    return _categories


def category_of(path):
    for prefix, category in categories():
        if path.startswith(prefix):
            return category
    return "other"


class ValueMapper(ValueMapper):
    def map_values(self, function: str, input: types.Batch) -> types.Output:
        if function not in ("", "enrich"):
            raise Err(types.CallError_UnknownFunction(function))
        out = OutputBuilder(types)
        for i, (_key, value, ts) in enumerate(records(input)):
            try:
                click = json.loads(value)
                path = click["path"]
                click["category"] = category_of(path)
                click["hour"] = int(click["time"][11:13])
            except (ValueError, KeyError, TypeError) as e:
                out.fail(i, "bad-input", f"cannot enrich {value!r}: {e}")
                continue
            out.push(i, ts, value=json.dumps(click, separators=(",", ":")).encode())
        return out.build()

"""Enriches a parsed click with its page category and the hour of day (a value mapper).

The categories come from the plugin's config: `categories` maps a path prefix to a category
(the longest matching prefix wins); other pages are `other`.
"""

import wasp
from wasp import ValueMapper  # noqa: F401 (the export componentize-py looks for)

_categories = None


def categories():
    """(prefix, category) pairs, longest prefix first (read from the config once)."""
    global _categories
    if _categories is None:
        table = wasp.config_json("categories", {})
        if not isinstance(table, dict):
            wasp.log.warn("config.categories is not a JSON object; no categories")
            table = {}
        _categories = sorted(table.items(), key=lambda kv: -len(kv[0]))
    return _categories


def category_of(path):
    for prefix, category in categories():
        if path.startswith(prefix):
            return category
    return "other"


@wasp.map_values
def enrich(rec):
    try:
        click = rec.json()
        click["category"] = category_of(click["path"])
        click["hour"] = int(click["time"][11:13])
    except (wasp.RecordError, ValueError, KeyError, TypeError) as e:
        raise wasp.RecordError("bad-input", f"cannot enrich {rec.value!r}: {e}") from None
    return click

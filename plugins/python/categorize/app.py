"""Categorizes user events (KSML's `categorize_events`, from its "optimized real-time analytics"
example): events other than views, clicks, purchases and searches are dropped; the rest become a
minimal record with their category (views and clicks are engagement, purchases and searches
conversion).

The topic is Avro; the host gives the plugin each event as JSON and writes what it returns in
the output topic's format (Protobuf in the example), so the function only sees dicts.
"""

import wasp
from wasp import FlatMapper  # noqa: F401 (the export componentize-py looks for)

ENGAGEMENT = ("view", "click")
CONVERSION = ("purchase", "search")


@wasp.flat_map
def categorize_events(rec):
    event = rec.json()
    event_type = event.get("event_type")
    if event_type not in ENGAGEMENT + CONVERSION:
        return []
    wasp.metrics.counter("events_categorized", labels={"event_type": event_type})
    return [
        (
            rec.key,
            {
                "event_id": event.get("event_id"),
                "timestamp": event.get("timestamp"),
                "event_type": event_type,
                "category": "engagement" if event_type in ENGAGEMENT else "conversion",
                "product_id": event.get("product_id") or "",
                "value": event.get("value") or 0.0,
            },
        )
    ]

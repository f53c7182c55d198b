"""The conformance suite's kit in Python: the functions every language's kit offers, as
`tests/conformance/README.md` describes them."""

import wasp
from wasp import Aggregator, Filter, FlatMapper, Processor, ValueMapper  # noqa: F401 (exports)


def seen(function):
    wasp.metrics.counter("kit_records", 1, function=function)


def event(rec):
    """The record's value as an event: a JSON object with an integer `amount`."""
    e = rec.json(code="bad-json")
    amount = e.get("amount") if isinstance(e, dict) else None
    if type(amount) is not int:
        raise wasp.RecordError("bad-json", "not an event: no integer `amount`")
    user, text = e.get("user", ""), e.get("text", "")
    if not isinstance(user, str) or not isinstance(text, str):
        raise wasp.RecordError("bad-json", "not an event: `user` and `text` are strings")
    return e


@wasp.filter
def positive(rec):
    seen("positive")
    return event(rec)["amount"] >= wasp.config_json("min_amount", 0)


@wasp.map_values
def describe(rec):
    seen("describe")
    e = event(rec)
    return {"user": e.get("user", ""), "cents": e["amount"] * 100, "label": wasp.config("label", "")}


@wasp.flat_map
def words(rec):
    seen("words")
    e = event(rec)
    user = e.get("user", "")
    return [(w, user) for w in e.get("text", "").split(" ") if w]


def merge_totals(a, b):
    return {"count": a["count"] + b["count"], "sum": a["sum"] + b["sum"]}


@wasp.aggregate(init={"count": 0, "sum": 0}, merge=merge_totals, json=True)
def total(rec, t):
    seen("total")
    e = event(rec)
    return {"count": t["count"] + 1, "sum": t["sum"] + e["amount"]}


def decimal(raw):
    try:
        return int(raw) if raw is not None else 0
    except ValueError:
        return 0


def report(ctx, timer, time):
    counts = wasp.key_value_store("counts")
    ctx.forward("total", str(sum(decimal(e.value) for e in counts.prefix_scan(b""))), timestamp=time)


@wasp.processor(init=[wasp.Timer.stream_time("report", 10_000)], punctuate=report)
def count(ctx, rec):
    seen("count")
    if rec.key is None:
        raise wasp.RecordError("no-key", "a record without a key has nothing to count")
    counts = wasp.key_value_store("counts")
    n = decimal(counts.get(rec.key)) + 1
    counts.put(rec.key, str(n))
    wasp.log.info(f"kit counted {n} for a key")
    ctx.forward(rec.key, str(n))

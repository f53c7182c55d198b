"""Unit tests of the Python SDK, run by CPython outside any component:

    python3 -m unittest guest-sdk/python/test_wasp.py

componentize-py generates the `wit_world` bindings from wit/plugin.wit (world `plugin`, every
kind) into a temporary folder; their host imports (config, log, metrics, state) are replaced by
fakes, and each export class is called with encoded batches, as the host calls them.
"""

import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
WIT = os.path.join(HERE, "..", "..", "wit")

ABSENT = 0xFFFFFFFF


def setUpModule():
    global wasp, types, state, bindings
    if shutil.which("componentize-py") is None:
        raise RuntimeError("componentize-py is not installed: `make setup` installs it")
    bindings = tempfile.mkdtemp(prefix="wasp-py-bindings-")
    subprocess.run(["componentize-py", "-d", WIT, "-w", "plugin", "bindings", bindings], check=True)
    sys.path[:0] = [bindings, HERE]
    from wit_world.imports import config, log, metrics, state, types  # noqa: F401

    config.get = lambda key: FAKE_CONFIG.get(key)
    config.entries = lambda: list(FAKE_CONFIG.items())
    log.log = lambda level, message: LOGS.append((level.name.lower(), message))
    metrics.counter_add = lambda name, labels, delta: METRICS.append(("counter", name, labels, delta))
    metrics.gauge_set = lambda name, labels, value: METRICS.append(("gauge", name, labels, value))
    metrics.histogram_observe = lambda name, labels, value: METRICS.append(("histogram", name, labels, value))
    state.KeyValueStore = FakeKeyValueStore
    wasp = importlib.import_module("wasp")


def tearDownModule():
    shutil.rmtree(bindings, ignore_errors=True)


FAKE_CONFIG = {"min": "3", "label": "hello"}
LOGS = []
METRICS = []
STORES = {}


class FakeKeyValueStore:
    @classmethod
    def open(cls, name):
        from componentize_py_types import Err

        if name not in STORES:
            raise Err(state.StateError_NoSuchStore(name))
        s = cls()
        s.data = STORES[name]
        return s

    def get(self, key):
        return self.data.get(key)

    def put(self, key, value):
        assert type(key) is bytes and type(value) is bytes
        self.data[key] = value

    def delete(self, key):
        self.data.pop(key, None)

    def range(self, start, end, limit):
        keys = sorted(k for k in self.data if k >= start and (end is None or k < end))[:limit]
        return [state.Entry(key=k, value=self.data[k]) for k in keys]

    def prefix_scan(self, prefix, limit):
        keys = sorted(k for k in self.data if k.startswith(prefix))[:limit]
        return [state.Entry(key=k, value=self.data[k]) for k in keys]


def headers_bytes(headers):
    out = bytearray(len(headers).to_bytes(4, "little"))
    for name, value in headers:
        out += len(name).to_bytes(4, "little") + name.encode()
        if value is None:
            out += ABSENT.to_bytes(4, "little")
        else:
            out += len(value).to_bytes(4, "little") + value
    return bytes(out)


def batch(*records):
    """A batch of (key, value[, timestamp[, headers]]) records, keys and values bytes, str or
    None."""
    index, stamps, data = [], [], bytearray()
    for i, r in enumerate(records):
        key, value = r[0], r[1]
        ts = r[2] if len(r) > 2 else i
        entry = []
        for field in (key, value):
            if field is None:
                entry += [0, ABSENT]
            else:
                field = field.encode() if isinstance(field, str) else field
                entry += [len(data), len(field)]
                data += field
        if len(r) > 3:
            h = headers_bytes(r[3])
            entry += [len(data), len(h)]
            data += h
        else:
            entry += [0, 0]
        index += entry
        stamps.append(ts)
    return types.Batch(index=index, timestamps=stamps, data=bytes(data))


def records(b):
    """The (key, value) pairs of an output batch; "=" marks an unchanged value."""
    out = []
    for i in range(len(b.index) // 6):
        ko, kl, vo, vl = b.index[6 * i : 6 * i + 4]
        key = None if kl == ABSENT else b.data[ko : ko + kl]
        value = "=" if vl == 0xFFFFFFFE else None if vl == ABSENT else b.data[vo : vo + vl]
        out.append((key, value))
    return out


def errors(errs):
    return [(e.index, e.code) for e in errs]


class Fresh(unittest.TestCase):
    """Each test registers its own functions."""

    def setUp(self):
        wasp._registry.clear()
        wasp._config_cache.clear()
        wasp._stores.clear()
        LOGS.clear()
        METRICS.clear()
        STORES.clear()

    def call_error(self, f, *args):
        from componentize_py_types import Err

        with self.assertRaises(Err) as cm:
            f(*args)
        return cm.exception.value


class RecordTest(Fresh):
    def test_fields_text_json_and_headers(self):
        b = batch(("k", '{"a": 1}', 7, [("x", b"1"), ("y", None), ("x", b"2")]), (None, None, 8))
        r0, r1 = wasp._records(b)
        self.assertEqual((r0.key, r0.value, r0.timestamp, r0.position), (b"k", b'{"a": 1}', 7, 0))
        self.assertEqual(r0.json(), {"a": 1})
        self.assertEqual(r0.key_text(), "k")
        self.assertEqual(r0.headers, [("x", b"1"), ("y", None), ("x", b"2")])
        self.assertEqual(r0.header("x"), b"2")
        self.assertIsNone(r0.header("z"))
        self.assertEqual((r1.key, r1.value, r1.headers), (None, None, []))
        with self.assertRaises(wasp.RecordError) as cm:
            r1.json()
        self.assertEqual(cm.exception.code, "absent")
        with self.assertRaises(wasp.RecordError) as cm:
            wasp.Record(None, b"nope", 0).json(code="bad-json")
        self.assertEqual(cm.exception.code, "bad-json")

    def test_encode(self):
        self.assertEqual(wasp.encode(b"x"), b"x")
        self.assertEqual(wasp.encode("é"), "é".encode())
        self.assertIsNone(wasp.encode(None))
        self.assertEqual(wasp.encode({"a": [1, True]}), b'{"a":[1,true]}')
        self.assertEqual(wasp.encode(5), b"5")
        self.assertEqual(wasp.encode(wasp.Json("s")), b'"s"')
        with self.assertRaises(wasp.RecordError) as cm:
            wasp.encode(object())
        self.assertEqual(cm.exception.code, "bad-output")


class KindsTest(Fresh):
    def test_filter_dispatch_and_errors(self):
        @wasp.filter
        def big(rec):
            n = rec.json()["n"]
            if n < 0:
                return wasp.RecordError("negative", "below zero")
            return n >= wasp.config_json("min")

        @wasp.filter(name="all")
        def everything(rec):
            return True

        b = batch(("a", '{"n": 5}'), ("b", '{"n": 1}'), ("c", "x"), ("d", '{"n": -1}'), ("e", "{}"))
        v = wasp.Filter().filter("", b)
        self.assertEqual(list(v.keep), [1, 0, 0, 0, 0])
        self.assertEqual(errors(v.errors), [(2, "bad-input"), (3, "negative"), (4, "plugin-error")])
        self.assertEqual(list(wasp.Filter().filter("all", b).keep), [1] * 5)
        e = self.call_error(wasp.Filter().filter, "nope", b)
        self.assertIsInstance(e, types.CallError_UnknownFunction)
        self.assertEqual(e.value, "nope")

    def test_map_values_compacts_and_marks_unchanged(self):
        @wasp.map_values
        def upper(rec):
            return rec.value if rec.value == b"same" else rec.text().upper()

        out = wasp.ValueMapper().map_values("upper", batch(("a", "x"), ("b", "same")))
        self.assertEqual(records(out.records), [(None, b"X"), (None, "=")])
        self.assertEqual((out.origins, out.records.timestamps, out.errors), ([], [], []))
        out = wasp.ValueMapper().map_values("", batch(("a", b"\xff"), ("b", "y")))
        self.assertEqual(records(out.records), [(None, b"Y")])
        self.assertEqual((out.origins, errors(out.errors)), ([1], [(0, "bad-input")]))

    def test_map_select_key_and_foreign_key(self):
        @wasp.map
        def swap(rec):
            return rec.value, rec.key

        @wasp.select_key
        def first(rec):
            return rec.value[:1]

        @wasp.foreign_key
        def fk(rec):
            return rec.json().get("ref")

        out = wasp.KeyValueMapper().map_pairs("", batch(("k", "v")))
        self.assertEqual(records(out.records), [(b"v", b"k")])
        out = wasp.KeySelector().select_key("", batch(("k", "vw")))
        self.assertEqual(records(out.records), [(b"v", None)])
        out = wasp.ForeignKeyExtractor().extract_foreign_key("", batch(("o", '{"ref": "c1"}'), ("p", "{}")))
        self.assertEqual(records(out.records), [(b"c1", None), (None, None)])

    def test_flat_map_and_flat_map_values(self):
        @wasp.flat_map
        def words(rec):
            if rec.value == b"bad":
                return [("ok", "1"), None]  # not a pair: the record fails whole
            return [(w, rec.key) for w in rec.text().split()]

        @wasp.flat_map_values
        def twice(rec):
            return [rec.value, "copy"]

        out = wasp.FlatMapper().flat_map("words", batch(("u", "a b"), ("v", ""), ("w", "bad"), ("x", "c")))
        self.assertEqual(records(out.records), [(b"a", b"u"), (b"b", b"u"), (b"c", b"x")])
        self.assertEqual((out.origins, errors(out.errors)), ([0, 0, 3], [(2, "bad-output")]))
        out = wasp.FlatMapper().flat_map("twice", batch(("u", "v")))
        self.assertEqual(records(out.records), [(None, "="), (None, b"copy")])
        self.assertEqual(out.origins, [0, 0])

    def test_for_each_timestamp_and_joiner(self):
        @wasp.for_each
        def see(rec):
            wasp.log.info(f"saw {rec.key_text()}")
            wasp.metrics.counter("seen", 1, key=rec.key_text())
            wasp.metrics.gauge("g", 2, labels={"a": "b"})
            wasp.metrics.histogram("h", 0.5)

        @wasp.timestamp
        def ts(rec):
            return rec.json()["t"]

        @wasp.value_joiner
        def join(left, right):
            return {"l": left.text(), "r": None if right.value is None else right.text()}

        self.assertEqual(wasp.ForEach().for_each("", batch(("a", "v"))), [])
        self.assertEqual(LOGS[0], ("info", "saw a"))
        self.assertEqual(
            METRICS[:3],
            [("counter", "seen", [("key", "a")], 1), ("gauge", "g", [("a", "b")], 2.0), ("histogram", "h", [], 0.5)],
        )
        errs = wasp.ForEach().for_each("", batch((None, "v")))
        self.assertEqual(errors(errs), [(0, "absent")])
        t = wasp.TimestampExtractor().extract("", batch(("a", '{"t": 99}', 5), ("b", "x", 6)))
        self.assertEqual((t.timestamps, errors(t.errors)), ([99, 6], [(1, "bad-input")]))
        out = wasp.ValueJoiner().join("", batch(("k", "L")), batch(("k", None)))
        self.assertEqual(records(out.records), [(None, b'{"l":"L","r":null}')])
        e = self.call_error(wasp.ValueJoiner().join, "", batch(("k", "L")), batch())
        self.assertIsInstance(e, types.CallError_Failed)

    def test_aggregate_folds_in_order_and_a_failure_leaves_the_slot(self):
        def add(a, b):
            return {"n": a["n"] + b["n"]}

        @wasp.aggregate(init={"n": 0}, merge=add, json=True)
        def count(rec, agg):
            agg["n"] += int(rec.value)
            if rec.value == b"13":
                raise wasp.RecordError("unlucky", "13")
            return agg

        agg = wasp.Aggregator()
        self.assertEqual(agg.initialize("count"), b'{"n":0}')
        current = batch(("a", '{"n":0}'), ("b", '{"n":10}'), ("c", None))
        out = agg.aggregate("", batch(("a", "1"), ("b", "2"), ("a", "13"), ("a", "3"), ("c", "4")), [0, 1, 0, 0, 2], current)
        self.assertEqual(
            [v for _, v in records(out.records)], [b'{"n":1}', b'{"n":12}', b'{"n":4}', b'{"n":4}']
        )
        self.assertEqual((out.origins, errors(out.errors)), ([0, 1, 3, 4], [(2, "unlucky")]))
        out = agg.merge("", batch(("a", '{"n":1}')), batch(("a", '{"n":2}')))
        self.assertEqual(records(out.records), [(None, b'{"n":3}')])

    def test_aggregate_in_bytes_and_without_merge(self):
        @wasp.aggregate(init=0)
        def total(rec, agg):
            return int(agg) + len(rec.value)

        agg = wasp.Aggregator()
        self.assertEqual(agg.initialize(""), b"0")
        out = agg.aggregate("", batch(("a", "xy"), ("a", "z")), [0, 0], batch(("a", "0")))
        self.assertEqual([v for _, v in records(out.records)], [b"2", b"3"])
        self.assertIsInstance(self.call_error(agg.merge, "", batch(), batch()), types.CallError_Failed)

    def test_reduce_starts_from_the_first_value(self):
        @wasp.reduce
        def longest(agg, rec):
            return rec.value if len(rec.value) > len(agg) else agg

        out = wasp.Reducer().reduce("", batch(("a", "xy"), ("a", "xyz"), ("a", "x")), [0, 0, 0], batch(("a", None)))
        self.assertEqual([v for _, v in records(out.records)], [b"xy", b"xyz", b"xyz"])

    def test_processor_forwards_rolls_back_and_punctuates(self):
        STORES["counts"] = {}

        def report(ctx, timer, time):
            total = sum(int(e.value) for e in wasp.key_value_store("counts").prefix_scan())
            ctx.forward("total", total)

        @wasp.processor(init=[wasp.Timer.stream_time("report", 10), wasp.Timer.wall_clock("w", 5)], punctuate=report)
        def count(ctx, rec):
            counts = wasp.key_value_store("counts")
            n = int(counts.get(rec.key) or 0) + 1
            counts.put(rec.key, n)
            ctx.forward(rec.key, n)
            if n == 2:
                ctx.forward_to("twice", rec.key, "again", timestamp=0)
            if rec.key == b"bad":
                raise ValueError("no")

        p = wasp.Processor()
        timers = p.init("count")
        self.assertEqual([(t.name, t.interval_ms, t.clock.name) for t in timers], [("report", 10, "STREAM_TIME"), ("w", 5, "WALL_CLOCK")])
        f = p.process("", batch(("a", "", 5), ("bad", "", 6), ("a", "", 7)))
        self.assertEqual(records(f.records), [(b"a", b"1"), (b"a", b"2"), (b"a", b"again")])
        self.assertEqual((f.records.timestamps, f.children), ([5, 7, 0], ["", "", "twice"]))
        self.assertEqual(errors(f.errors), [(1, "plugin-error")])
        f = p.punctuate("", "report", 100)
        self.assertEqual((records(f.records), f.records.timestamps), ([(b"total", b"3")], [100]))

    def test_a_missing_store_fails_the_record_with_state(self):
        @wasp.processor
        def count(ctx, rec):
            wasp.key_value_store("nope").get(rec.key)

        f = wasp.Processor().process("", batch(("a", "")))
        self.assertEqual(errors(f.errors), [(0, "state")])
        self.assertIn("no-such-store", f.errors[0].message)
        self.assertEqual(wasp.Processor().init(""), [])

    def test_config(self):
        self.assertEqual(wasp.config("label"), "hello")
        self.assertEqual(wasp.config_json("min"), 3)
        self.assertEqual(wasp.config_json("label"), "hello")
        self.assertEqual(wasp.config("nope", "d"), "d")
        self.assertEqual(wasp.config_entries(), {"min": "3", "label": "hello"})

    def test_two_functions_of_one_name_are_refused(self):
        wasp.filter(lambda r: True, name="x")
        with self.assertRaises(ValueError):
            wasp.filter(lambda r: True, name="x")


if __name__ == "__main__":
    unittest.main()

"""wasp: the Python SDK for wasp plugins (built into components by componentize-py).

A plugin is an `app.py` that registers per-record functions with decorators and re-exports the
SDK's export classes, which componentize-py looks for by name::

    import wasp
    from wasp import Filter, ValueMapper  # the interfaces of the world in pyproject.toml

    @wasp.filter
    def big(rec):
        return rec.json()["amount"] >= wasp.config_json("min_amount", 0)

    @wasp.map_values
    def describe(rec):
        e = rec.json()
        return {"user": e["user"], "cents": e["amount"] * 100}   # dicts are written as JSON

The host calls each export once per batch; the SDK decodes the batch once, calls the function
per record and builds the flat output (see `wit/plugin.wit`). The manifest step's `function`
picks the registered function by name (a decorator's `name=`, else the Python name); a step
without one gets the first function of that kind; an unknown name is the call error
`unknown-function`.

Per-record functions take a `Record` (`key`, `value`, `timestamp`, `headers`, `json()`,
`text()`, ...). One record that cannot be handled fails alone: raise (or return)
`RecordError(code, message)` and it follows the step's `on_error` with that code; any other
exception does the same with the code `plugin-error`. The rest of the batch goes on.

What a function returns is written as bytes by one rule (`encode`): `bytes` as they are, `str`
as UTF-8, `None` as absent (no key, or a tombstone), `Json(x)` and anything else (dict, list,
int, float, bool) as compact JSON.

Kinds (decorator: the function's parameters -> what it returns; the export class):

- `filter`: (rec) -> keep? (truthy); `Filter`
- `map_values`: (rec) -> new value (return `rec.value` itself to keep it); `ValueMapper`
- `map`: (rec) -> (key, value); `KeyValueMapper`
- `flat_map`: (rec) -> iterable of (key, value); `flat_map_values`: (rec) -> iterable of values;
  `FlatMapper`
- `select_key`: (rec) -> new key; `KeySelector`
- `for_each`: (rec) -> ignored; `ForEach`
- `aggregate(init=, merge=, json=)`: (rec, aggregate) -> new aggregate; `merge(a, b)` -> one
  aggregate of two (session windows); `Aggregator`
- `reduce(json=)`: (aggregate, rec) -> new aggregate (a key's first value starts it);
  `Reducer`
- `timestamp`: (rec) -> event time in ms; `TimestampExtractor`
- `value_joiner`: (left, right) -> joined value (both `Record`s; a missing partner has
  `value` None); `ValueJoiner`
- `foreign_key`: (rec) -> the other table's key, or None; `ForeignKeyExtractor`
- `processor(init=, punctuate=)`: (ctx, rec), forwarding with `ctx.forward(key, value)`;
  `init` gives the `Timer`s, `punctuate(ctx, timer, time)` runs when one fires; state in
  `key_value_store(name)`, `window_store(name)`, `session_store(name)`; `Processor`

Host services: `config(key)`, `config_json(key)`, `config_entries()`; `log.info(message)` (and
`trace`, `debug`, `warn`, `error`); `metrics.counter(name, delta, **labels)`,
`metrics.gauge(name, value, **labels)`, `metrics.histogram(name, value, **labels)`.

The bindings (`wit_world`) are imported defensively, so this one module serves every world: a
world without `state` or without an export still builds.
"""

import json as _jsonlib
from collections import namedtuple as _namedtuple

# The WIT package version this SDK is written against.
WIT_VERSION = "0.1.0"

# A field length that marks an absent key or value (a null key, a tombstone).
ABSENT = 0xFFFFFFFF
# In a value mapper's output, the value length that means "the input's value, unchanged".
UNCHANGED = 0xFFFFFFFE
# The most entries one store scan returns (the host's cap).
MAX_SCAN = 10_000

# ---------------------------------------------------------------------------------------------
# Bindings. Each world binds only what it imports and exports; what it lacks stays None.

try:
    from componentize_py_types import Err as _Err
except ImportError:  # pragma: no cover - outside componentize-py

    class _Err(Exception):
        def __init__(self, value):
            super().__init__(value)
            self.value = value


def _binding(package, module):
    try:
        return getattr(__import__(package, fromlist=[module]), module)
    except (ImportError, AttributeError):
        return None


_types = _binding("wit_world.imports", "types")
_log = _binding("wit_world.imports", "log")
_metrics = _binding("wit_world.imports", "metrics")
_config = _binding("wit_world.imports", "config")
_state = _binding("wit_world.imports", "state")
_processor = _binding("wit_world.exports", "processor")
_timestamp_extractor = _binding("wit_world.exports", "timestamp_extractor")


def _protocol(name):
    """The generated protocol class an export class implements, or `object` when this world
    does not export it."""
    try:
        import wit_world.exports as exports
    except ImportError:
        return object
    return getattr(exports, name, object)


# ---------------------------------------------------------------------------------------------
# Errors.


class RecordError(Exception):
    """One record the function could not handle. Raise or return it from a per-record
    function: that record (alone) follows the step's `on_error`, with `code` in the
    `wasp.error.code` header and `message` beside it."""

    def __init__(self, code, message=""):
        super().__init__(code, message)
        self.code = str(code)
        self.message = str(message)

    def __str__(self):
        return f"{self.code}: {self.message}" if self.message else self.code

    def __repr__(self):
        return f"RecordError({self.code!r}, {self.message!r})"


class StateError(RecordError):
    """A store call failed (`kind` is `no-such-store`, `wrong-kind` or `failed`). In a
    per-record function it fails that record with the code `state`."""

    def __init__(self, kind, message):
        super().__init__("state", f"{kind}: {message}")
        self.kind = kind


def _record_error(i, e):
    """The WIT `record-error` for the input at `i` that raised `e`."""
    if isinstance(e, RecordError):
        return _types.RecordError(index=i, code=e.code, message=e.message)
    return _types.RecordError(index=i, code="plugin-error", message=f"{type(e).__name__}: {e}")


def _call_failed(message):
    return _Err(_types.CallError_Failed(message))


# ---------------------------------------------------------------------------------------------
# Bytes in and out.


class Json:
    """Forces JSON: `Json("a")` is written `"a"` (a bare `str` would be the text `a`)."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


def _dumps(value):
    try:
        return _jsonlib.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError) as e:
        raise RecordError("bad-output", f"cannot write a {type(value).__name__} as JSON: {e}") from None


def encode(value):
    """The bytes a key, value or aggregate is written as: `bytes` as they are, `str` as UTF-8,
    `None` as absent (returns None), `Json(x)` and anything else as compact JSON."""
    t = type(value)
    if t is bytes or value is None:
        return value
    if t is str:
        return value.encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return str(value).encode()
    if t is Json:
        return _dumps(value.value)
    return _dumps(value)


def _encode_json(value):
    """An aggregate of a `json=True` function: JSON always (bytes are taken as JSON already)."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if type(value) is Json:
        value = value.value
    return _dumps(value)


def _decode_json(raw):
    """An aggregate of a `json=True` function: absent (or empty) is None."""
    if not raw:
        return None
    try:
        return _jsonlib.loads(raw)
    except ValueError as e:
        raise RecordError("bad-state", f"the aggregate is not JSON: {e}") from None


def _decode_bytes(raw):
    return raw


def _text(raw, what, code):
    if raw is None:
        raise RecordError(code or "absent", f"the record has no {what} (a null key or a tombstone)")
    try:
        return raw.decode()
    except UnicodeDecodeError as e:
        raise RecordError(code or "bad-input", f"the {what} is not UTF-8: {e}") from None


def _json(raw, what, code):
    if raw is None:
        raise RecordError(code or "absent", f"the record has no {what} (a null key or a tombstone)")
    try:
        return _jsonlib.loads(raw)
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        raise RecordError(code or "bad-input", f"the {what} is not JSON: {e}") from None


def _key_bytes(key):
    if type(key) is bytes:
        return key
    k = encode(key)
    if k is None:
        raise TypeError("a store key cannot be None")
    return k


# ---------------------------------------------------------------------------------------------
# Records.


class Record:
    """One input record. `key` and `value` are `bytes`, or None when absent (a null key, a
    tombstone); `timestamp` is the event time in milliseconds since the Unix epoch;
    `position` its index in the batch."""

    __slots__ = ("key", "value", "timestamp", "position", "_data", "_hoff", "_hlen", "_headers")

    def __init__(self, key, value, timestamp, position=0, data=b"", hoff=0, hlen=ABSENT):
        self.key = key
        self.value = value
        self.timestamp = timestamp
        self.position = position
        self._data = data
        self._hoff = hoff
        self._hlen = hlen
        self._headers = None

    def text(self, code=None):
        """The value as text (UTF-8). A tombstone or bytes that are not UTF-8 raise a
        `RecordError` (`absent` or `bad-input`, or `code` when given)."""
        return _text(self.value, "value", code)

    def json(self, code=None):
        """The value parsed as JSON. A tombstone or a value that is not JSON raise a
        `RecordError` (`absent` or `bad-input`, or `code` when given)."""
        return _json(self.value, "value", code)

    def key_text(self, code=None):
        """The key as text, as `text()` reads the value."""
        return _text(self.key, "key", code)

    def key_json(self, code=None):
        """The key parsed as JSON, as `json()` reads the value."""
        return _json(self.key, "key", code)

    @property
    def headers(self):
        """The headers in order, as a list of `(name, value)`: `name` a `str`, `value`
        `bytes` or None."""
        if self._headers is None:
            self._headers = _decode_headers(self._data, self._hoff, self._hlen)
        return self._headers

    def header(self, name, default=None):
        """The value of the last header called `name` (as Kafka's `lastHeader`), or
        `default`."""
        for n, v in reversed(self.headers):
            if n == name:
                return v
        return default

    def __repr__(self):
        return f"Record(key={self.key!r}, value={self.value!r}, timestamp={self.timestamp})"


def _decode_headers(data, off, length):
    if length == ABSENT or length < 4:
        return []
    end = off + length
    count = int.from_bytes(data[off : off + 4], "little")
    pos = off + 4
    out = []
    for _ in range(count):
        if pos + 4 > end:
            break
        n = int.from_bytes(data[pos : pos + 4], "little")
        pos += 4
        name = bytes(data[pos : pos + n]).decode(errors="replace")
        pos += n
        if pos + 4 > end:
            break
        vl = int.from_bytes(data[pos : pos + 4], "little")
        pos += 4
        if vl == ABSENT:
            value = None
        else:
            value = data[pos : pos + vl]
            pos += vl
        out.append((name, value))
    return out


def _records(batch):
    """The batch's records, decoded in one pass (a malformed entry reads as absent fields)."""
    index = batch.index
    data = batch.data
    stamps = batch.timestamps
    n = min(len(stamps), len(index) // 6)
    out = [None] * n
    j = 0
    for i in range(n):
        ko, kl, vo, vl, ho, hl = index[j : j + 6]
        j += 6
        out[i] = Record(
            None if kl == ABSENT else data[ko : ko + kl],
            None if vl == ABSENT else data[vo : vo + vl],
            stamps[i],
            i,
            data,
            ho,
            hl,
        )
    return out


class _Out:
    """An output batch being built: one bytearray for every field, flat index entries."""

    __slots__ = ("index", "timestamps", "data", "origins", "errors")

    def __init__(self):
        self.index = []
        self.timestamps = []
        self.data = bytearray()
        self.origins = []
        self.errors = []

    def push(self, origin, key, value):
        """One record of (already encoded) key and value, each bytes or None."""
        data = self.data
        if key is None:
            ko, kl = 0, ABSENT
        else:
            ko, kl = len(data), len(key)
            data += key
        if value is None:
            vo, vl = 0, ABSENT
        else:
            vo, vl = len(data), len(value)
            data += value
        self.index.extend((ko, kl, vo, vl, 0, 0))
        self.origins.append(origin)

    def push_unchanged(self, origin):
        """One record whose value is its input's, unchanged (value mappers)."""
        self.index.extend((0, ABSENT, 0, UNCHANGED, 0, 0))
        self.origins.append(origin)

    def output(self, inputs):
        """The WIT `output`. Timestamps are left out (every record keeps its input's), and
        origins too when the outputs are the inputs one for one, in order."""
        origins = self.origins
        if not self.errors and len(origins) == inputs and origins == list(range(inputs)):
            origins = []
        return _types.Output(
            records=_types.Batch(index=self.index, timestamps=[], data=bytes(self.data)),
            origins=origins,
            errors=self.errors,
        )


# ---------------------------------------------------------------------------------------------
# Host services.

_config_cache = {}


def config(key, default=None):
    """The plugin's config entry `key` from the manifest: a TOML string as it is, any other
    value as JSON text; `default` when absent."""
    try:
        value = _config_cache[key]
    except KeyError:
        value = _config.get(key) if _config is not None else None
        _config_cache[key] = value
    return default if value is None else value


def config_json(key, default=None):
    """The config entry `key` parsed as JSON (a TOML string that is not JSON is returned as
    the string); `default` when absent."""
    raw = config(key)
    if raw is None:
        return default
    try:
        return _jsonlib.loads(raw)
    except ValueError:
        return raw


def config_entries():
    """Every config entry, as a dict of strings (non-string values as JSON text)."""
    return dict(_config.entries()) if _config is not None else {}


class _Log:
    """Log lines to the host's subscriber, tagged with the plugin's name: `wasp.log.info(...)`.
    Lines past the host's cap (4 KiB) are cut."""

    def __call__(self, level, message):
        """`level`: one of "trace", "debug", "info", "warn", "error"."""
        if _log is not None:
            _log.log(getattr(_log.Level, str(level).upper()), str(message))

    def trace(self, message):
        self("trace", message)

    def debug(self, message):
        self("debug", message)

    def info(self, message):
        self("info", message)

    def warn(self, message):
        self("warn", message)

    warning = warn

    def error(self, message):
        self("error", message)


log = _Log()


def _labels(labels, more):
    pairs = []
    if labels:
        pairs.extend((str(k), str(v)) for k, v in (labels.items() if hasattr(labels, "items") else labels))
    if more:
        pairs.extend((k, str(v)) for k, v in more.items())
    return pairs


class _Metrics:
    """Metrics in the host's registry, exposed as `wasp_plugin_<name>` (counters with `_total`)
    with the label `plugin`. Labels come as keywords or as `labels=` (a dict or pairs). The
    host caps names and label sets (64 metrics, 8 labels); a call past a cap is ignored."""

    def counter(self, name, delta=1, labels=None, **more):
        """Adds `delta` (a non-negative integer) to the counter `name`."""
        if _metrics is not None:
            _metrics.counter_add(name, _labels(labels, more), int(delta))

    def gauge(self, name, value, labels=None, **more):
        """Sets the gauge `name` to `value`."""
        if _metrics is not None:
            _metrics.gauge_set(name, _labels(labels, more), float(value))

    def histogram(self, name, value, labels=None, **more):
        """Records one observation of `value` in the histogram `name`."""
        if _metrics is not None:
            _metrics.histogram_observe(name, _labels(labels, more), float(value))


metrics = _Metrics()


# ---------------------------------------------------------------------------------------------
# State stores (processors): wrappers that take str or bytes keys, write values by `encode`,
# and raise `StateError` instead of the bindings' `Err`.

Entry = _namedtuple("Entry", "key value")
WindowedEntry = _namedtuple("WindowedEntry", "key start value")
SessionEntry = _namedtuple("SessionEntry", "key start end value")

_STATE_KINDS = {
    "StateError_NoSuchStore": "no-such-store",
    "StateError_WrongKind": "wrong-kind",
    "StateError_Failed": "failed",
}


def _state_error(e):
    v = e.value
    return StateError(_STATE_KINDS.get(type(v).__name__, "failed"), getattr(v, "value", v))


def _store_call(f, *args):
    try:
        return f(*args)
    except _Err as e:
        raise _state_error(e) from None


def _value_bytes(value):
    v = encode(value)
    if v is None:
        raise TypeError("a store value cannot be None (delete the key instead)")
    return v


class KeyValueStore:
    """A key-value store the processor's step names in `stores`."""

    def __init__(self, name):
        if _state is None:
            raise StateError("failed", "this plugin's world does not import `state`")
        self.name = name
        self._store = _store_call(_state.KeyValueStore.open, name)

    def get(self, key):
        """The value of `key` (bytes), or None."""
        return _store_call(self._store.get, _key_bytes(key))

    def put(self, key, value):
        _store_call(self._store.put, _key_bytes(key), _value_bytes(value))

    def delete(self, key):
        _store_call(self._store.delete, _key_bytes(key))

    def range(self, start, end=None, limit=MAX_SCAN):
        """`Entry(key, value)`s with `start <= key < end` (to the end when `end` is None), in
        key order."""
        end = None if end is None else _key_bytes(end)
        found = _store_call(self._store.range, _key_bytes(start), end, limit)
        return [Entry(e.key, e.value) for e in found]

    def prefix_scan(self, prefix=b"", limit=MAX_SCAN):
        """`Entry(key, value)`s whose key starts with `prefix`, in key order."""
        found = _store_call(self._store.prefix_scan, _key_bytes(prefix), limit)
        return [Entry(e.key, e.value) for e in found]


class WindowStore:
    """Values by key and time (a window start or an event time, in ms)."""

    def __init__(self, name):
        if _state is None:
            raise StateError("failed", "this plugin's world does not import `state`")
        self.name = name
        self._store = _store_call(_state.WindowStore.open, name)

    def put(self, key, start, value):
        _store_call(self._store.put, _key_bytes(key), int(start), _value_bytes(value))

    def delete(self, key, start):
        _store_call(self._store.delete, _key_bytes(key), int(start))

    def fetch(self, key, start, end, limit=MAX_SCAN):
        """`WindowedEntry(key, start, value)`s of `key` with `start <= entry.start <= end`."""
        found = _store_call(self._store.fetch, _key_bytes(key), int(start), int(end), limit)
        return [WindowedEntry(e.key, e.start, e.value) for e in found]

    def fetch_until(self, end, limit=MAX_SCAN):
        """Every key's entries with `entry.start <= end`, by start (for clean-ups)."""
        found = _store_call(self._store.fetch_until, int(end), limit)
        return [WindowedEntry(e.key, e.start, e.value) for e in found]


class SessionStore:
    """Sessions by key."""

    def __init__(self, name):
        if _state is None:
            raise StateError("failed", "this plugin's world does not import `state`")
        self.name = name
        self._store = _store_call(_state.SessionStore.open, name)

    def put(self, key, start, end, value):
        _store_call(self._store.put, _key_bytes(key), int(start), int(end), _value_bytes(value))

    def remove(self, key, start, end):
        _store_call(self._store.remove, _key_bytes(key), int(start), int(end))

    def find(self, key, earliest_end, latest_start, limit=MAX_SCAN):
        """`SessionEntry(key, start, end, value)`s of `key` that end at or after
        `earliest_end` and start at or before `latest_start`."""
        found = _store_call(self._store.find, _key_bytes(key), int(earliest_end), int(latest_start), limit)
        return [SessionEntry(e.key, e.start, e.end, e.value) for e in found]


_stores = {}


def _store(cls, name):
    try:
        return _stores[(cls, name)]
    except KeyError:
        s = _stores[(cls, name)] = cls(name)
        return s


def key_value_store(name):
    """The key-value store `name` (opened once per instance)."""
    return _store(KeyValueStore, name)


def window_store(name):
    """The window store `name` (opened once per instance)."""
    return _store(WindowStore, name)


def session_store(name):
    """The session store `name` (opened once per instance)."""
    return _store(SessionStore, name)


# ---------------------------------------------------------------------------------------------
# Processors.


class Timer:
    """A timer a processor's `init` asks for: `Timer.stream_time("report", 10_000)` fires as
    stream time (the largest event time seen) passes each interval, `Timer.wall_clock(...)`
    as the wall clock does."""

    __slots__ = ("name", "interval_ms", "clock")

    def __init__(self, name, interval_ms, clock="stream-time"):
        if clock not in ("stream-time", "wall-clock"):
            raise ValueError(f"a timer's clock is stream-time or wall-clock, not {clock!r}")
        self.name = name
        self.interval_ms = int(interval_ms)
        self.clock = clock

    @classmethod
    def stream_time(cls, name, interval_ms):
        return cls(name, interval_ms, "stream-time")

    @classmethod
    def wall_clock(cls, name, interval_ms):
        return cls(name, interval_ms, "wall-clock")

    def __repr__(self):
        return f"Timer({self.name!r}, {self.interval_ms}, {self.clock!r})"


class Context:
    """What a processor forwards through. `timestamp` is the event time of the record being
    processed (or the time a timer fired at)."""

    __slots__ = ("_index", "_timestamps", "_data", "_children", "timestamp")

    def __init__(self):
        self._index = []
        self._timestamps = []
        self._data = bytearray()
        self._children = []
        self.timestamp = 0

    def forward(self, key, value, timestamp=None, child=""):
        """Sends a record down the pipeline (or to the step's child `child`), at `timestamp`
        (default: the current one). Key and value are written by `encode`."""
        k = encode(key)
        v = encode(value)
        data = self._data
        if k is None:
            ko, kl = 0, ABSENT
        else:
            ko, kl = len(data), len(k)
            data += k
        if v is None:
            vo, vl = 0, ABSENT
        else:
            vo, vl = len(data), len(v)
            data += v
        self._index.extend((ko, kl, vo, vl, 0, 0))
        self._timestamps.append(self.timestamp if timestamp is None else int(timestamp))
        self._children.append(child)

    def forward_to(self, child, key, value, timestamp=None):
        """Sends a record to the step's child `child` (a key of its `children`)."""
        self.forward(key, value, timestamp, child)

    def _checkpoint(self):
        return len(self._children), len(self._data)

    def _rollback(self, point):
        records, size = point
        del self._index[records * 6 :]
        del self._timestamps[records:]
        del self._children[records:]
        del self._data[size:]

    def _forwarded(self, errors):
        return _processor.Forwarded(
            records=_types.Batch(index=self._index, timestamps=self._timestamps, data=bytes(self._data)),
            children=self._children,
            errors=errors,
        )


# ---------------------------------------------------------------------------------------------
# Registration.


class _Spec:
    __slots__ = ("name", "fn", "init", "merge", "punctuate", "json", "values")

    def __init__(self, name, fn, init=None, merge=None, punctuate=None, json=False, values=False):
        self.name = name
        self.fn = fn
        self.init = init
        self.merge = merge
        self.punctuate = punctuate
        self.json = json
        self.values = values


# interface -> {name: spec}, in registration order (the first answers function "").
_registry = {}


def _register(interface, spec):
    functions = _registry.setdefault(interface, {})
    if spec.name in functions:
        raise ValueError(f"two {interface} functions are called {spec.name!r}; give one another name=")
    functions[spec.name] = spec


def _find(interface, function):
    functions = _registry.get(interface, {})
    spec = functions.get(function) if function else next(iter(functions.values()), None)
    if spec is None:
        raise _Err(_types.CallError_UnknownFunction(function))
    return spec


def _decorator(interface, target, options, values=False):
    def register(fn):
        opts = dict(options)
        name = opts.pop("name", None) or fn.__name__
        _register(interface, _Spec(name, fn, values=values, **opts))
        return fn

    if callable(target):
        return register(target)
    if target is not None:
        options = dict(options, name=target)
    return register


def filter(fn=None, *, name=None):
    """`@wasp.filter`: `fn(rec)` -> truthy keeps the record. For `filter`, `filter_not` and
    the branches of `branch`."""
    return _decorator("filter", fn, {"name": name})


def map_values(fn=None, *, name=None):
    """`@wasp.map_values`: `fn(rec)` -> the new value (key and timestamp are kept). Returning
    `rec.value` itself keeps the value without copying it back."""
    return _decorator("value-mapper", fn, {"name": name})


def map(fn=None, *, name=None):
    """`@wasp.map`: `fn(rec)` -> `(key, value)`, a new key and value."""
    return _decorator("key-value-mapper", fn, {"name": name})


def flat_map(fn=None, *, name=None):
    """`@wasp.flat_map`: `fn(rec)` -> an iterable of `(key, value)` pairs (zero or more)."""
    return _decorator("flat-mapper", fn, {"name": name})


def flat_map_values(fn=None, *, name=None):
    """`@wasp.flat_map_values`: `fn(rec)` -> an iterable of values; each keeps the input's key.
    Use it with the `flat_map_values` op."""
    return _decorator("flat-mapper", fn, {"name": name}, values=True)


def select_key(fn=None, *, name=None):
    """`@wasp.select_key`: `fn(rec)` -> the new key (the value is kept)."""
    return _decorator("key-selector", fn, {"name": name})


def for_each(fn=None, *, name=None):
    """`@wasp.for_each`: `fn(rec)` for its side effects (logs, metrics); `peek` and
    `for_each`."""
    return _decorator("for-each", fn, {"name": name})


def aggregate(fn=None, *, name=None, init=None, merge=None, json=False):
    """`@wasp.aggregate(init=..., merge=..., json=...)`: `fn(rec, aggregate)` -> the new
    aggregate.

    `init` is the aggregate a new key or window starts from (a value, or a function of no
    arguments that returns one; without it an aggregate starts as b"", or None with
    `json=True`). `merge(a, b)` -> one aggregate of two (session windows need it). With
    `json=True` aggregates are handed to the functions parsed from JSON and written back as
    JSON; otherwise they are bytes, and results are written by `encode`."""
    return _decorator("aggregator", fn, {"name": name, "init": init, "merge": merge, "json": json})


def reduce(fn=None, *, name=None, json=False):
    """`@wasp.reduce(json=...)`: `fn(aggregate, rec)` -> the new aggregate. A key's first
    record starts its aggregate as the record's value (`fn` is not called for it)."""
    return _decorator("reducer", fn, {"name": name, "json": json})


def timestamp(fn=None, *, name=None):
    """`@wasp.timestamp`: `fn(rec)` -> the record's event time, in milliseconds since the
    Unix epoch."""
    return _decorator("timestamp-extractor", fn, {"name": name})


def value_joiner(fn=None, *, name=None):
    """`@wasp.value_joiner`: `fn(left, right)` -> the joined value. Both are `Record`s with
    the join's key; a missing partner (left or outer joins) has `value` None."""
    return _decorator("value-joiner", fn, {"name": name})


def foreign_key(fn=None, *, name=None):
    """`@wasp.foreign_key`: `fn(rec)` -> the key of the other table the value refers to, or
    None (the record joins nothing)."""
    return _decorator("foreign-key-extractor", fn, {"name": name})


def processor(fn=None, *, name=None, init=None, punctuate=None):
    """`@wasp.processor(init=..., punctuate=...)`: `fn(ctx, rec)` forwards any records with
    `ctx.forward(key, value)` / `ctx.forward_to(child, key, value)`.

    `init`: the `Timer`s to schedule (a list, or a function of no arguments returning one).
    `punctuate(ctx, timer, time)` runs when the timer named `timer` fires at `time`; what it
    raises fails that call (`failed`), not a record."""
    return _decorator("processor", fn, {"name": name, "init": init, "punctuate": punctuate})


# ---------------------------------------------------------------------------------------------
# The export classes: import those of your world into app.py (`from wasp import Filter`).


def _one_for_one(spec, input, write):
    """The loop of the kinds that produce at most one output per input: `write(out, rec, r)`
    pushes what `fn(rec)` returned."""
    fn = spec.fn
    records = _records(input)
    out = _Out()
    errors = out.errors
    for rec in records:
        try:
            r = fn(rec)
            if isinstance(r, RecordError):
                raise r
            write(out, rec, r)
        except Exception as e:
            errors.append(_record_error(rec.position, e))
    return out.output(len(records))


class Filter(_protocol("Filter")):
    def filter(self, function, input):
        fn = _find("filter", function).fn
        records = _records(input)
        keep = bytearray(len(records))
        errors = []
        for rec in records:
            try:
                r = fn(rec)
                if isinstance(r, RecordError):
                    raise r
                if r:
                    keep[rec.position] = 1
            except Exception as e:
                errors.append(_record_error(rec.position, e))
        return _types.Verdicts(keep=bytes(keep), errors=errors)


def _write_value(out, rec, r):
    if r is rec.value and r is not None:
        out.push_unchanged(rec.position)
    else:
        out.push(rec.position, None, encode(r))


def _write_pair(out, rec, r):
    try:
        key, value = r
    except (TypeError, ValueError):
        raise RecordError("bad-output", f"expected a (key, value) pair, got a {type(r).__name__}") from None
    out.push(rec.position, encode(key), encode(value))


def _write_key(out, rec, r):
    out.push(rec.position, encode(r), None)


class ValueMapper(_protocol("ValueMapper")):
    def map_values(self, function, input):
        return _one_for_one(_find("value-mapper", function), input, _write_value)


class KeyValueMapper(_protocol("KeyValueMapper")):
    def map_pairs(self, function, input):
        return _one_for_one(_find("key-value-mapper", function), input, _write_pair)


class KeySelector(_protocol("KeySelector")):
    def select_key(self, function, input):
        return _one_for_one(_find("key-selector", function), input, _write_key)


class ForeignKeyExtractor(_protocol("ForeignKeyExtractor")):
    def extract_foreign_key(self, function, input):
        return _one_for_one(_find("foreign-key-extractor", function), input, _write_key)


class FlatMapper(_protocol("FlatMapper")):
    def flat_map(self, function, input):
        spec = _find("flat-mapper", function)
        fn = spec.fn
        values = spec.values
        records = _records(input)
        out = _Out()
        errors = out.errors
        for rec in records:
            i = rec.position
            try:
                r = fn(rec)
                if isinstance(r, RecordError):
                    raise r
                if r is None:
                    continue
                # Encoded in full first, so a record that fails half-way leaves nothing behind.
                if values:
                    same = rec.value
                    produced = [
                        (None, None, True) if v is same and v is not None else (None, encode(v), False) for v in r
                    ]
                else:
                    produced = []
                    for pair in r:
                        try:
                            key, value = pair
                        except (TypeError, ValueError):
                            raise RecordError(
                                "bad-output", f"expected (key, value) pairs, got a {type(pair).__name__}"
                            ) from None
                        produced.append((encode(key), encode(value), False))
            except Exception as e:
                errors.append(_record_error(i, e))
                continue
            for key, value, unchanged in produced:
                if unchanged:
                    out.push_unchanged(i)
                else:
                    out.push(i, key, value)
        return out.output(len(records))


class ForEach(_protocol("ForEach")):
    def for_each(self, function, input):
        fn = _find("for-each", function).fn
        errors = []
        for rec in _records(input):
            try:
                r = fn(rec)
                if isinstance(r, RecordError):
                    raise r
            except Exception as e:
                errors.append(_record_error(rec.position, e))
        return errors


class TimestampExtractor(_protocol("TimestampExtractor")):
    def extract(self, function, input):
        fn = _find("timestamp-extractor", function).fn
        records = _records(input)
        stamps = [0] * len(records)
        errors = []
        for rec in records:
            try:
                r = fn(rec)
                if isinstance(r, RecordError):
                    raise r
                stamps[rec.position] = int(r)
            except Exception as e:
                stamps[rec.position] = rec.timestamp
                errors.append(_record_error(rec.position, e))
        return _timestamp_extractor.Timestamps(timestamps=stamps, errors=errors)


def _pairs(left, right, what):
    lefts = _records(left)
    rights = _records(right)
    if len(lefts) != len(rights):
        raise _call_failed(f"{what}: left and right differ in length ({len(lefts)} and {len(rights)})")
    return lefts, rights


class ValueJoiner(_protocol("ValueJoiner")):
    def join(self, function, left, right):
        fn = _find("value-joiner", function).fn
        lefts, rights = _pairs(left, right, "join")
        out = _Out()
        errors = out.errors
        for l, r in zip(lefts, rights):
            try:
                v = fn(l, r)
                if isinstance(v, RecordError):
                    raise v
                out.push(l.position, None, encode(v))
            except Exception as e:
                errors.append(_record_error(l.position, e))
        return out.output(len(lefts))


_UNREAD = object()
# Results a `json=True` fold hands to the next record as they are (they read back the same).
_JSON_TYPES = (dict, list, str, int, float, bool)


def _fold(spec, input, slots, current, first_starts):
    """Folds each record into its slot's aggregate, in order; a failed record leaves its slot
    as it was. `first_starts` (reduce): a slot without an aggregate starts from the record's
    value."""
    fn = spec.fn
    decode, write = (_decode_json, _encode_json) if spec.json else (_decode_bytes, encode)
    records = _records(input)
    raw = [r.value for r in _records(current)]
    if len(slots) != len(records) or any(s >= len(raw) for s in slots):
        raise _call_failed("the host sent slots that do not match the batch")
    # Each slot's aggregate as the functions see it, parsed when first needed and again
    # after a failure (which may have changed it in place).
    held = [_UNREAD] * len(raw)
    out = _Out()
    errors = out.errors
    for rec in records:
        i = rec.position
        s = slots[i]
        try:
            if first_starts:
                if raw[s] is None:
                    raw[s] = rec.value
                    held[s] = _UNREAD
                    out.push(i, None, rec.value)
                    continue
                agg = held[s]
                if agg is _UNREAD:
                    agg = decode(raw[s])
                r = fn(agg, rec)
            else:
                if raw[s] is None:
                    # No aggregate yet (the host normally sends the initializer's): start one.
                    raw[s] = write(_initial(spec))
                    held[s] = _UNREAD
                agg = held[s]
                if agg is _UNREAD:
                    agg = decode(raw[s])
                r = fn(rec, agg)
            if isinstance(r, RecordError):
                raise r
            b = write(r)
        except Exception as e:
            held[s] = _UNREAD
            errors.append(_record_error(i, e))
            continue
        raw[s] = b
        # The next record of this slot sees this result as it is, unless it was written as
        # given (bytes): then it is read back from those.
        held[s] = r if spec.json and type(r) in _JSON_TYPES else _UNREAD
        out.push(i, None, b)
    return out.output(len(records))


def _initial(spec):
    """The aggregate a new key starts from, as the functions see it."""
    init = spec.init
    value = init() if callable(init) else init
    if value is None:
        return None if spec.json else b""
    return value


class Aggregator(_protocol("Aggregator")):
    def initialize(self, function):
        spec = _find("aggregator", function)
        try:
            value = _initial(spec)
            b = (_encode_json if spec.json else encode)(value)
        except Exception as e:
            raise _call_failed(f"the initializer failed: {e}") from None
        return b or b""

    def aggregate(self, function, input, slots, current):
        return _fold(_find("aggregator", function), input, slots, current, False)

    def merge(self, function, left, right):
        spec = _find("aggregator", function)
        merge = spec.merge
        if merge is None:
            raise _call_failed(
                f"the aggregator {spec.name!r} has no merger, which session windows need: "
                "add merge= to @wasp.aggregate"
            )
        decode, write = (_decode_json, _encode_json) if spec.json else (_decode_bytes, encode)
        lefts, rights = _pairs(left, right, "merge")
        out = _Out()
        errors = out.errors
        for l, r in zip(lefts, rights):
            try:
                v = merge(decode(l.value), decode(r.value))
                if isinstance(v, RecordError):
                    raise v
                out.push(l.position, None, write(v))
            except Exception as e:
                errors.append(_record_error(l.position, e))
        return out.output(len(lefts))


class Reducer(_protocol("Reducer")):
    def reduce(self, function, input, slots, current):
        return _fold(_find("reducer", function), input, slots, current, True)


class Processor(_protocol("Processor")):
    def init(self, function):
        spec = _find("processor", function)
        timers = spec.init
        try:
            if callable(timers):
                timers = timers()
            clock = _processor.Clock
            return [
                _processor.Timer(
                    name=t.name,
                    interval_ms=t.interval_ms,
                    clock=clock.WALL_CLOCK if t.clock == "wall-clock" else clock.STREAM_TIME,
                )
                for t in (timers or ())
            ]
        except Exception as e:
            raise _call_failed(f"init failed: {type(e).__name__}: {e}") from None

    def process(self, function, input):
        fn = _find("processor", function).fn
        ctx = Context()
        errors = []
        for rec in _records(input):
            ctx.timestamp = rec.timestamp
            point = ctx._checkpoint()
            try:
                r = fn(ctx, rec)
                if isinstance(r, RecordError):
                    raise r
            except Exception as e:
                ctx._rollback(point)
                errors.append(_record_error(rec.position, e))
        return ctx._forwarded(errors)

    def punctuate(self, function, timer, time):
        spec = _find("processor", function)
        ctx = Context()
        ctx.timestamp = time
        if spec.punctuate is not None:
            try:
                r = spec.punctuate(ctx, timer, time)
                if isinstance(r, RecordError):
                    raise r
            except Exception as e:
                raise _call_failed(f"timer {timer!r}: {e}") from None
        return ctx._forwarded([])


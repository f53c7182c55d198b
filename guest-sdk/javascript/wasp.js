// The wasp SDK for JavaScript. A plugin's app.js imports it as a module named "wasp"
// (`import wasp, { RecordError } from "wasp";`), and `wasp build` puts this file in that
// line's place, since componentize-js takes a single source file. It imports only what every
// world has (log, metrics, config); a processor imports its stores itself (`import {
// KeyValueStore } from "wasp:plugin/state@0.1.0"`) and wraps them with
// `wasp.keyValueStore(KeyValueStore, "name")`.
//
// Each kind's export object is made from functions by name, and the manifest's `function`
// picks one ("" picks the first); an unknown name answers `unknown-function`:
//
//   export const filter = wasp.filter({ positive: (record) => record.json().amount > 0 });
//   export const valueMapper = wasp.valueMapper({ upper: (record) => record.text().toUpperCase() });
//
// | export                | builder                         | each function                                   |
// |-----------------------|---------------------------------|-------------------------------------------------|
// | `filter`              | `wasp.filter`                   | `(record) => boolean` (truthy keeps)            |
// | `valueMapper`         | `wasp.valueMapper`              | `(record) => value`                             |
// | `keyValueMapper`      | `wasp.keyValueMapper`           | `(record) => [key, value]`                      |
// | `flatMapper`          | `wasp.flatMapper`               | `(record) => iterable of [key, value]`, or, in  |
// |                       |                                 | `wasp.flatMapValues(fn)`, an iterable of values |
// | `keySelector`         | `wasp.keySelector`              | `(record) => key`                               |
// | `forEach`             | `wasp.forEach`                  | `(record) => void`                              |
// | `aggregator`          | `wasp.aggregator`               | `{ init(), aggregate(record, agg), merge(a, b, record), codec }` |
// | `reducer`             | `wasp.reducer`                  | `(agg, value, record) => agg`, or `{ reduce, codec }` |
// | `timestampExtractor`  | `wasp.timestampExtractor`       | `(record) => ms` (number, BigInt or Date)       |
// | `valueJoiner`         | `wasp.valueJoiner`              | `(left, right) => value` (two records)          |
// | `foreignKeyExtractor` | `wasp.foreignKeyExtractor`      | `(record) => key` (null: none)                  |
// | `processor`           | `wasp.processor`                | `{ timers, process(record, ctx), punctuate(timer, time, ctx) }` |
//
// A record: `key`, `value` (Uint8Array, or null when absent), `timestamp` (ms, a number),
// `index`; `text()`, `keyText()` (null when absent), `json()`, `keyJson()`, `headers()`,
// `header(name)`, `headerText(name)`. A produced key or value is a string (UTF-8), a
// Uint8Array, null (absent), or anything else as JSON (`wasp.asJson(v)` forces JSON, e.g. for
// a string); a mapper that returns `record.value` itself leaves the value unchanged without
// copying it back. A `[key, value]` pair may have a third element, a timestamp. Aggregates and
// reduced values go through a codec: `wasp.codecs.json` (the default), `.text` or `.bytes`.
//
// Processors: `timers` is an array (or a function that returns one) of
// `wasp.Timer.streamTime(name, ms)` and `wasp.Timer.wallClock(name, ms)`; `ctx.forward(key,
// value, timestamp?)` continues down the pipeline, `ctx.forwardTo(child, key, value,
// timestamp?)` goes to one of the step's `children`; `ctx.timestamp` is the record's time (or
// the timer's). A record that fails forwards nothing. Stores wrap the resource class the
// plugin imports, open on first use and keep the handle: `wasp.keyValueStore(KeyValueStore,
// name)` (get, getText, getJson, put (null deletes), delete, range, prefixScan),
// `wasp.windowStore(WindowStore, name)` (put, delete, fetch, fetchUntil),
// `wasp.sessionStore(SessionStore, name)` (put, remove, find). Keys and values are written as
// produced ones are; scans return entries with `key`, `value`, `start`, `end` (windows),
// `keyText()`, `text()`, `json()`.
//
// Errors: `throw new RecordError(code, message)` fails that record alone (it follows the
// step's `on_error`); any other exception in a per-record function does too, with the code
// `plugin-error` (a store's error: `state`; JSON that does not parse: `bad-input`; a tombstone
// read as JSON: `absent`; a result that cannot be written: `bad-output`).
// `throw new wasp.CallError(message)` fails the whole call (e.g. an invalid config).
//
// Host: `wasp.config(key)` (string or null), `wasp.configJson(key, fallback)`,
// `wasp.configEntries()`; `wasp.log.info(...)` (trace, debug, info, warn, error; `console.*`
// goes there too); `wasp.metrics.counter(name, delta, labels)`, `.gauge(name, value, labels)`,
// `.histogram(name, value, labels)` with labels as `{ name: value }`. Counters and gauges are
// summed (or kept) during a call and sent once at its end. Call none of them at the top level:
// it runs when the component is built.
//
// Speed: a component's JavaScript engine interprets (no JIT). The SDK reads each batch once and
// writes one buffer; in per-record code, indexed `for` loops cost far less than `for…of` or
// array callbacks.
import { log as __waspLog } from "wasp:plugin/log@0.1.0";
import {
  counterAdd as __waspCounterAdd,
  gaugeSet as __waspGaugeSet,
  histogramObserve as __waspHistogramObserve,
} from "wasp:plugin/metrics@0.1.0";
import { get as __waspConfigGet, entries as __waspConfigEntries } from "wasp:plugin/config@0.1.0";

/** Why one record could not be handled: it reaches the host as a `record-error`. */
class RecordError extends Error {
  constructor(code, message = String(code)) {
    super(message);
    this.name = "RecordError";
    this.code = String(code);
  }
}

const wasp = (() => {
  /** A field length meaning absent (a null key, a tombstone). */
  const ABSENT = 0xffffffff;
  /** In a value mapper's output: the input's value, unchanged. */
  const UNCHANGED = 0xfffffffe;
  /** The most entries a store scan returns (the host's cap). */
  const MAX_SCAN = 10000;
  const EMPTY = new Uint8Array(0);
  const encoder = new TextEncoder();
  const decoder = new TextDecoder("utf-8", { fatal: true });
  /** False while the top level runs (at build time, when host calls are impossible). */
  let live = false;

  /** A failure of the whole call (`call-error`), not of one record. */
  class CallError extends Error {
    constructor(message, tag = "failed") {
      super(String(message));
      this.name = "CallError";
      // componentize-js answers a thrown error's own `payload` as the call's `err`.
      Object.defineProperty(this, "payload", { value: { tag, val: String(message) } });
    }
  }

  /** A value to write as JSON even when it is a string or bytes. */
  class AsJson {
    constructor(value) {
      this.value = value;
    }
  }

  // ---- reading ----

  function utf8(bytes) {
    if (bytes === null) return null;
    try {
      return decoder.decode(bytes);
    } catch {
      throw new RecordError("bad-input", "not UTF-8");
    }
  }

  function parseJson(bytes, what) {
    if (bytes === null) {
      throw new RecordError("absent", `the record has no ${what} (a null key or a tombstone)`);
    }
    const text = utf8(bytes);
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new RecordError("bad-input", `invalid JSON: ${e.message}`);
    }
  }

  function u32(d, at) {
    return (d[at] | (d[at + 1] << 8) | (d[at + 2] << 16) | (d[at + 3] << 24)) >>> 0;
  }

  /** The number of records in a batch. */
  function count(batch) {
    return Math.min(batch.timestamps.length, (batch.index.length / 6) | 0);
  }

  function field(batch, at) {
    const len = batch.index[at + 1];
    if (len === ABSENT) return null;
    const off = batch.index[at];
    return batch.data.subarray(off, off + len);
  }

  /** One record of an input batch; its fields are read when asked for. */
  class Record {
    constructor(batch, i) {
      this._batch = batch;
      /** Its position in the batch. */
      this.index = i;
      this._key = undefined;
      this._value = undefined;
    }
    /** The key's bytes, or null. */
    get key() {
      if (this._key === undefined) this._key = field(this._batch, this.index * 6);
      return this._key;
    }
    /** The value's bytes, or null (a tombstone). */
    get value() {
      if (this._value === undefined) this._value = field(this._batch, this.index * 6 + 2);
      return this._value;
    }
    /** The event time, milliseconds since the Unix epoch. */
    get timestamp() {
      return Number(this._batch.timestamps[this.index]);
    }
    /** The value as text, or null. */
    text() {
      return utf8(this.value);
    }
    keyText() {
      return utf8(this.key);
    }
    /** The value parsed as JSON; a tombstone or bad JSON fails the record. */
    json() {
      return parseJson(this.value, "value");
    }
    keyJson() {
      return parseJson(this.key, "key");
    }
    /** The headers in order: `{ name, value }`, a value being bytes or null. */
    headers() {
      const h = field(this._batch, this.index * 6 + 4);
      const out = [];
      if (h === null || h.length < 4) return out;
      let at = 4;
      for (let left = u32(h, 0); left > 0 && at + 4 <= h.length; left--) {
        const nameLen = u32(h, at);
        const name = decoder.decode(h.subarray(at + 4, at + 4 + nameLen));
        at += 4 + nameLen;
        const valueLen = u32(h, at);
        at += 4;
        if (valueLen === ABSENT) {
          out.push({ name, value: null });
        } else {
          out.push({ name, value: h.subarray(at, at + valueLen) });
          at += valueLen;
        }
      }
      return out;
    }
    /** The last header called `name`: bytes, null (a null value), or undefined (none). */
    header(name) {
      const all = this.headers();
      let found;
      for (let i = 0; i < all.length; i++) if (all[i].name === name) found = all[i].value;
      return found;
    }
    headerText(name) {
      const v = this.header(name);
      return v === undefined ? undefined : utf8(v);
    }
  }

  // ---- writing ----

  function toBigInt(t) {
    if (typeof t === "bigint") return t;
    if (t instanceof Date) t = t.getTime();
    if (typeof t !== "number" || !Number.isFinite(t)) {
      throw new RecordError("bad-output", `not a timestamp: ${String(t)}`);
    }
    return BigInt(Math.trunc(t));
  }

  function undefinedResult() {
    return new RecordError("bad-output", "the function returned undefined (return null for an absent key or value)");
  }

  /**
   * Produced records, in one growing buffer, with their origins and the failed records. A
   * failed record is rolled back to where it started: `n`, `pos`, `inOrder` and `inherited`
   * saved before it (no allocation per record).
   */
  class Out {
    constructor(input, records, bytes) {
      this.input = input;
      this.n = 0;
      const cap = Math.max(records, 4);
      this.index = new Uint32Array(cap * 6);
      this.origins = new Uint32Array(cap);
      /** Each output's timestamp, made when one differs from its input's (or there is no input). */
      this.times = null;
      this.data = new Uint8Array(Math.max(bytes, 64));
      this.pos = 0;
      this.errors = [];
      this.children = null;
      /** Whether output j came from input j, for every j so far. */
      this.inOrder = true;
      /** Whether every output has its input's timestamp. */
      this.inherited = true;
    }
    room(bytes) {
      if (this.pos + bytes <= this.data.length) return;
      const next = new Uint8Array(Math.max(this.data.length * 2, this.pos + bytes));
      next.set(this.data.subarray(0, this.pos));
      this.data = next;
    }
    string(s) {
      const pos = this.pos;
      if (pos + s.length * 3 > this.data.length) this.room(s.length * 3);
      const written = encoder.encodeInto(s, this.data.subarray(pos)).written;
      this.pos = pos + written;
      return written;
    }
    bytes(b) {
      this.room(b.length);
      this.data.set(b, this.pos);
      this.pos += b.length;
      return b.length;
    }
    /** Writes a key or value at `pos` and returns its length (or ABSENT). */
    field(x) {
      if (x === null) return ABSENT;
      if (typeof x === "string") return this.string(x);
      if (x instanceof Uint8Array) return this.bytes(x);
      if (x === undefined) throw undefinedResult();
      if (ArrayBuffer.isView(x)) return this.bytes(new Uint8Array(x.buffer, x.byteOffset, x.byteLength));
      if (x instanceof ArrayBuffer) return this.bytes(new Uint8Array(x));
      let json;
      try {
        json = JSON.stringify(x instanceof AsJson ? x.value : x);
      } catch (e) {
        throw new RecordError("bad-output", `cannot write JSON: ${e.message}`);
      }
      if (json === undefined) throw new RecordError("bad-output", `cannot write ${typeof x} as JSON`);
      return this.string(json);
    }
    grow() {
      const cap = this.origins.length * 2;
      const index = new Uint32Array(cap * 6);
      index.set(this.index);
      this.index = index;
      const origins = new Uint32Array(cap);
      origins.set(this.origins);
      this.origins = origins;
      if (this.times !== null) {
        const times = new BigInt64Array(cap);
        times.set(this.times);
        this.times = times;
      }
    }
    /** The timestamps list, its first `upTo` entries the inputs' (by origin). */
    timesUpTo(upTo) {
      if (this.times === null) {
        this.times = new BigInt64Array(this.origins.length);
        for (let j = 0; j < upTo; j++) this.times[j] = this.input.timestamps[this.origins[j]];
      }
      return this.times;
    }
    /**
     * One record from input `origin`; the caller rolls a failed record back. `key` and `value`
     * as in `field`; `same` is the input's value (a returned `record.value` is marked
     * unchanged); `time` undefined keeps the input's.
     */
    push(origin, key, value, time, same) {
      let kOff = 0;
      let kLen = ABSENT;
      if (key !== null) {
        kOff = this.pos;
        kLen = typeof key === "string" ? this.string(key) : this.field(key);
      }
      let vOff = 0;
      let vLen = ABSENT;
      if (value === same && same !== undefined && same !== null) {
        vLen = UNCHANGED;
      } else if (value !== null) {
        vOff = this.pos;
        vLen = typeof value === "string" ? this.string(value) : this.field(value);
      }
      const j = this.n;
      if (j === this.origins.length) this.grow();
      const at = j * 6;
      const index = this.index;
      index[at] = kOff;
      index[at + 1] = kLen;
      index[at + 2] = vOff;
      index[at + 3] = vLen;
      index[at + 4] = 0;
      index[at + 5] = 0;
      this.origins[j] = origin;
      if (origin !== j) this.inOrder = false;
      if (time !== undefined) {
        const t = toBigInt(time);
        this.timesUpTo(j)[j] = t;
        if (this.input === null || t !== this.input.timestamps[origin]) this.inherited = false;
      } else if (this.times !== null) {
        this.times[j] = this.input.timestamps[origin];
      }
      this.n = j + 1;
    }
    /** The value bytes of the last record pushed (null when absent). */
    lastValue() {
      const at = (this.n - 1) * 6;
      const len = this.index[at + 3];
      return len === ABSENT ? null : this.data.subarray(this.index[at + 2], this.index[at + 2] + len);
    }
    rollback(n, pos, inOrder, inherited) {
      this.n = n;
      this.pos = pos;
      this.inOrder = inOrder;
      this.inherited = inherited;
      if (this.children !== null) this.children.length = n;
    }
    /** Input record `origin` failed with `e`. */
    fail(origin, e) {
      const r = recordError(e);
      this.errors.push({ index: origin, code: r.code, message: r.message });
    }
    /** The WIT `batch` of what was pushed; `all`: keep timestamps even when inherited. */
    batch(all) {
      const n = this.n;
      return {
        index: this.index.subarray(0, n * 6),
        timestamps: all || !this.inherited ? this.timesUpTo(n).subarray(0, n) : NO_TIMES,
        data: this.data.subarray(0, this.pos),
      };
    }
    /** The WIT `output`, leaving out what the host infers. */
    output() {
      const oneForOne = this.inOrder && this.errors.length === 0 && this.input !== null && this.n === count(this.input);
      return {
        records: this.batch(false),
        origins: oneForOne ? NO_ORIGINS : this.origins.subarray(0, this.n),
        errors: this.errors,
      };
    }
  }

  const NO_TIMES = new BigInt64Array(0);
  const NO_ORIGINS = new Uint32Array(0);

  /** What a thrown value means for its record. */
  function recordError(e) {
    if (e instanceof CallError) throw e;
    if (e instanceof RecordError) return e;
    if (e !== null && typeof e === "object" && e.payload !== undefined && typeof e.payload.tag === "string") {
      // A host call's error (componentize-js's ComponentError), e.g. a store's.
      return new RecordError("state", `${e.payload.tag}: ${e.payload.val}`);
    }
    return new RecordError("plugin-error", e instanceof Error ? e.message : String(e));
  }

  function sync(r) {
    if (r !== null && typeof r === "object" && typeof r.then === "function") {
      throw new RecordError("bad-output", "a per-record function cannot be async");
    }
    return r;
  }

  /**
   * Runs a whole call: a CallError as it is, any other exception as `failed`. The counters
   * and gauges set during the call reach the host at its end, once per name and labels.
   */
  function call(f) {
    live = true;
    try {
      return f();
    } catch (e) {
      if (e instanceof CallError) throw e;
      throw new CallError(e instanceof Error ? e.message : String(e));
    } finally {
      if (pending.size !== 0) flushMetrics();
    }
  }

  // ---- functions by name ----

  /**
   * `fns` (name → function or spec) as `pick(function)`, checking each with `spec`. `parts`:
   * the members of a kind's spec (the first required), to catch a spec given without a name.
   */
  function registry(kind, fns, spec, parts = null) {
    if (typeof fns === "function") fns = { [fns.name || "default"]: fns };
    if (fns === null || typeof fns !== "object") throw new TypeError(`wasp.${kind}: expected { name: function }`);
    const names = Object.keys(fns);
    if (names.length === 0) throw new TypeError(`wasp.${kind}: no functions`);
    if (parts !== null && typeof fns[parts[0]] === "function" && names.every((n) => parts.includes(n))) {
      throw new TypeError(`wasp.${kind}: name the function, e.g. wasp.${kind}({ myName: { ${parts.join(", ")} } })`);
    }
    const byName = new Map();
    for (const name of names) byName.set(name, spec(name, fns[name]));
    const first = byName.get(names[0]);
    return (fn) => {
      const f = fn === "" ? first : byName.get(fn);
      if (f === undefined) throw new CallError(fn, "unknown-function");
      return f;
    };
  }

  function needFunction(kind, name, f) {
    if (typeof f !== "function") throw new TypeError(`wasp.${kind}: \`${name}\` is not a function`);
    return f;
  }

  const plain = (kind) => (name, f) => needFunction(kind, name, f);

  /** Runs `each(record, out)` for every input record; a failure rolls that record back. */
  function eachRecord(input, each, bytes = input.data.length) {
    const n = count(input);
    const out = new Out(input, n, bytes);
    for (let i = 0; i < n; i++) {
      const n0 = out.n, p0 = out.pos, o0 = out.inOrder, t0 = out.inherited;
      try {
        each(new Record(input, i), out);
      } catch (e) {
        out.rollback(n0, p0, o0, t0);
        out.fail(i, e);
      }
    }
    return out;
  }

  function filter(fns) {
    const pick = registry("filter", fns, plain("filter"));
    return {
      filter(fn, input) {
        return call(() => {
          const f = pick(fn);
          const n = count(input);
          const keep = new Uint8Array(n);
          const errors = [];
          for (let i = 0; i < n; i++) {
            try {
              keep[i] = sync(f(new Record(input, i))) ? 1 : 0;
            } catch (e) {
              const r = recordError(e);
              errors.push({ index: i, code: r.code, message: r.message });
            }
          }
          return { keep, errors };
        });
      },
    };
  }

  function valueMapper(fns) {
    const pick = registry("valueMapper", fns, plain("valueMapper"));
    return {
      mapValues(fn, input) {
        return call(() => {
          const f = pick(fn);
          return eachRecord(input, (r, out) => {
            const v = sync(f(r));
            if (v === undefined) throw undefinedResult();
            out.push(r.index, null, v, undefined, r._value);
          }).output();
        });
      },
    };
  }

  function pair(p) {
    if (!Array.isArray(p) || p.length < 2) {
      throw new RecordError("bad-output", "expected a [key, value] pair");
    }
    if (p[0] === undefined || p[1] === undefined) throw undefinedResult();
    return p;
  }

  function keyValueMapper(fns) {
    const pick = registry("keyValueMapper", fns, plain("keyValueMapper"));
    return {
      mapPairs(fn, input) {
        return call(() => {
          const f = pick(fn);
          return eachRecord(input, (r, out) => {
            const p = pair(sync(f(r)));
            out.push(r.index, p[0], p[1], p[2], r._value);
          }).output();
        });
      },
    };
  }

  const VALUES_ONLY = Symbol("wasp.flatMapValues");

  /** Marks a flat mapper function whose items are values, not [key, value] pairs. */
  function flatMapValues(f) {
    needFunction("flatMapValues", f.name, f);
    const g = (r) => f(r);
    g[VALUES_ONLY] = true;
    return g;
  }

  /** A flat mapper's result as an array (indexed loops: `for…of` is slow in an interpreter). */
  function items(produced) {
    if (Array.isArray(produced)) return produced;
    sync(produced);
    if (produced === null || produced === undefined || typeof produced === "string" || typeof produced[Symbol.iterator] !== "function") {
      throw new RecordError("bad-output", "a flat mapper returns an iterable (an array) of records");
    }
    return Array.from(produced);
  }

  function flatMapper(fns) {
    const pick = registry("flatMapper", fns, plain("flatMapper"));
    return {
      flatMap(fn, input) {
        return call(() => {
          const f = pick(fn);
          if (f[VALUES_ONLY]) {
            return eachRecord(input, (r, out) => {
              const vs = items(f(r));
              for (let j = 0; j < vs.length; j++) {
                const v = vs[j];
                if (v === undefined) throw undefinedResult();
                out.push(r.index, null, v, undefined, r._value);
              }
            }).output();
          }
          return eachRecord(input, (r, out) => {
            const ps = items(f(r));
            for (let j = 0; j < ps.length; j++) {
              const p = pair(ps[j]);
              out.push(r.index, p[0], p[1], p[2], r._value);
            }
          }).output();
        });
      },
    };
  }

  function keySelector(fns) {
    const pick = registry("keySelector", fns, plain("keySelector"));
    return {
      selectKey(fn, input) {
        return call(() => {
          const f = pick(fn);
          return eachRecord(
            input,
            (r, out) => {
              const k = sync(f(r));
              if (k === undefined) throw undefinedResult();
              out.push(r.index, k, null);
            },
            64,
          ).output();
        });
      },
    };
  }

  function forEach(fns) {
    const pick = registry("forEach", fns, plain("forEach"));
    return {
      forEach(fn, input) {
        return call(() => {
          const f = pick(fn);
          const errors = [];
          const n = count(input);
          for (let i = 0; i < n; i++) {
            try {
              sync(f(new Record(input, i)));
            } catch (e) {
              const r = recordError(e);
              errors.push({ index: i, code: r.code, message: r.message });
            }
          }
          return errors;
        });
      },
    };
  }

  function timestampExtractor(fns) {
    const pick = registry("timestampExtractor", fns, plain("timestampExtractor"));
    return {
      extract(fn, input) {
        return call(() => {
          const f = pick(fn);
          const n = count(input);
          const timestamps = new BigInt64Array(n);
          const errors = [];
          for (let i = 0; i < n; i++) {
            try {
              const t = sync(f(new Record(input, i)));
              if (t === undefined || t === null) throw new RecordError("bad-output", "no timestamp returned");
              timestamps[i] = toBigInt(t);
            } catch (e) {
              timestamps[i] = input.timestamps[i];
              const r = recordError(e);
              errors.push({ index: i, code: r.code, message: r.message });
            }
          }
          return { timestamps, errors };
        });
      },
    };
  }

  /** Runs `each(left, right, out)` for every pair of records. */
  function eachPair(what, left, right, each) {
    const n = count(left);
    if (count(right) !== n) throw new CallError(`${what}: left and right differ in length`);
    const out = new Out(left, n, left.data.length + right.data.length);
    for (let i = 0; i < n; i++) {
      const n0 = out.n, p0 = out.pos, o0 = out.inOrder, t0 = out.inherited;
      try {
        each(new Record(left, i), new Record(right, i), out);
      } catch (e) {
        out.rollback(n0, p0, o0, t0);
        out.fail(i, e);
      }
    }
    return out;
  }

  function valueJoiner(fns) {
    const pick = registry("valueJoiner", fns, plain("valueJoiner"));
    return {
      join(fn, left, right) {
        return call(() => {
          const f = pick(fn);
          return eachPair("join", left, right, (l, r, out) => {
            const v = sync(f(l, r));
            if (v === undefined) throw undefinedResult();
            out.push(l.index, null, v);
          }).output();
        });
      },
    };
  }

  function foreignKeyExtractor(fns) {
    const pick = registry("foreignKeyExtractor", fns, plain("foreignKeyExtractor"));
    return {
      extractForeignKey(fn, input) {
        return call(() => {
          const f = pick(fn);
          return eachRecord(
            input,
            (r, out) => {
              const k = sync(f(r));
              if (k === undefined) throw undefinedResult();
              out.push(r.index, k, null);
            },
            64,
          ).output();
        });
      },
    };
  }

  // ---- aggregates ----

  /** How aggregates (and reduced values) are kept as bytes; null is absent both ways. */
  const codecs = {
    json: {
      decode: (b) => (b === null || b.length === 0 ? null : parseJson(b, "aggregate")),
      encode: (v) => (v === null ? null : new AsJson(v)),
    },
    text: {
      decode: (b) => utf8(b),
      encode: (v) => (v === null ? null : String(v)),
    },
    bytes: {
      decode: (b) => b,
      encode: (v) => v,
    },
  };

  function needCodec(kind, name, c) {
    if (c === undefined) return codecs.json;
    if (c === null || typeof c.decode !== "function" || typeof c.encode !== "function") {
      throw new TypeError(`wasp.${kind}: \`${name}\`'s codec needs decode and encode`);
    }
    return c;
  }

  /**
   * Folds the batch: each slot's aggregate is kept decoded between records, and re-read from
   * its last bytes after a failure (a function may have changed it before throwing).
   * `first(record)`: a reducer's record for a slot without an aggregate.
   */
  function fold(input, slots, current, codec, step, first) {
    const n = count(input);
    const m = count(current);
    if (slots.length !== n) throw new CallError("the host sent slots that do not match the batch");
    const bytes = new Array(m);
    const values = new Array(m);
    const fresh = new Uint8Array(m);
    for (let s = 0; s < m; s++) bytes[s] = field(current, s * 6 + 2);
    const out = new Out(input, n, input.data.length + current.data.length);
    for (let i = 0; i < n; i++) {
      const slot = slots[i];
      if (slot >= m) throw new CallError("the host sent slots that do not match the batch");
      const r = new Record(input, i);
      const n0 = out.n, p0 = out.pos, o0 = out.inOrder, t0 = out.inherited;
      try {
        if (first !== null && bytes[slot] === null) {
          out.push(i, null, r.value);
          fresh[slot] = 0;
        } else {
          const agg = fresh[slot] === 1 ? values[slot] : codec.decode(bytes[slot]);
          const next = sync(step(agg, r));
          if (next === undefined) throw undefinedResult();
          out.push(i, null, codec.encode(next));
          values[slot] = next;
          fresh[slot] = 1;
        }
        bytes[slot] = out.lastValue();
      } catch (e) {
        out.rollback(n0, p0, o0, t0);
        out.fail(i, e);
        fresh[slot] = 0;
      }
    }
    return out.output();
  }

  function aggregator(fns) {
    const pick = registry("aggregator", fns, (name, s) => {
      if (typeof s === "function") s = { aggregate: s };
      if (s === null || typeof s !== "object") throw new TypeError(`wasp.aggregator: \`${name}\` is not { init, aggregate, merge }`);
      needFunction("aggregator", `${name}.aggregate`, s.aggregate);
      if (s.init !== undefined) needFunction("aggregator", `${name}.init`, s.init);
      if (s.merge !== undefined) needFunction("aggregator", `${name}.merge`, s.merge);
      return { name, init: s.init, aggregate: s.aggregate, merge: s.merge, codec: needCodec("aggregator", name, s.codec) };
    }, ["aggregate", "init", "merge", "codec"]);
    return {
      initialize(fn) {
        return call(() => {
          const s = pick(fn);
          const v = s.init === undefined ? null : s.init();
          if (v === undefined) throw new CallError(`${s.name}: init returned undefined`);
          const out = new Out(null, 1, 64);
          out.push(0, null, s.codec.encode(v), 0n);
          return out.lastValue() ?? EMPTY;
        });
      },
      aggregate(fn, input, slots, current) {
        return call(() => {
          const s = pick(fn);
          return fold(input, slots, current, s.codec, (agg, r) => s.aggregate(r, agg), null);
        });
      },
      merge(fn, left, right) {
        return call(() => {
          const s = pick(fn);
          if (s.merge === undefined) {
            throw new CallError(`${s.name} has no merge, which session windows need: add merge(a, b) to it`);
          }
          return eachPair("merge", left, right, (l, r, out) => {
            const merged = sync(s.merge(s.codec.decode(l.value), s.codec.decode(r.value), l));
            if (merged === undefined) throw undefinedResult();
            const lt = left.timestamps[l.index];
            const rt = right.timestamps[r.index];
            out.push(l.index, null, s.codec.encode(merged), lt > rt ? lt : rt);
          }).output();
        });
      },
    };
  }

  function reducer(fns) {
    const pick = registry("reducer", fns, (name, s) => {
      if (typeof s === "function") s = { reduce: s };
      if (s === null || typeof s !== "object") throw new TypeError(`wasp.reducer: \`${name}\` is not { reduce, codec }`);
      needFunction("reducer", `${name}.reduce`, s.reduce);
      return { reduce: s.reduce, codec: needCodec("reducer", name, s.codec) };
    }, ["reduce", "codec"]);
    return {
      reduce(fn, input, slots, current) {
        return call(() => {
          const s = pick(fn);
          const step = (agg, r) => s.reduce(agg, s.codec.decode(r.value), r);
          return fold(input, slots, current, s.codec, step, true);
        });
      },
    };
  }

  // ---- processors ----

  /** A timer a processor asks for in `timers`. */
  const Timer = {
    /** Fires each time stream time (the largest event time seen) passes another `intervalMs`. */
    streamTime: (name, intervalMs) => ({ name: String(name), intervalMs: BigInt(Math.trunc(intervalMs)), clock: "stream-time" }),
    /** Fires every `intervalMs` of wall-clock time. */
    wallClock: (name, intervalMs) => ({ name: String(name), intervalMs: BigInt(Math.trunc(intervalMs)), clock: "wall-clock" }),
  };

  /** Where a processor's records go: `forward` down the pipeline, `forwardTo` a named child. */
  class Context {
    constructor(out) {
      this._out = out;
      this._origin = 0;
      this._time = 0n;
      /** In `process`: a record forwarded without a timestamp has its input's. */
      this._inherit = false;
      /** In `punctuate`: the timer's name. */
      this.timer = null;
    }
    /** The event time of the record being processed, or the time a timer fired at (ms). */
    get timestamp() {
      return Number(this._time);
    }
    /** Sends a record down the pipeline, at `timestamp` (default: the current one). */
    forward(key, value, timestamp) {
      this.forwardTo("", key, value, timestamp);
    }
    /** Sends a record to the child `child` (one of the step's `children`; "" is the pipeline). */
    forwardTo(child, key, value, timestamp) {
      const out = this._out;
      const time = timestamp !== undefined ? timestamp : this._inherit ? undefined : this._time;
      out.push(this._origin, key ?? null, value ?? null, time);
      out.children.push(typeof child === "string" ? child : String(child));
    }
  }

  function forwarded(out) {
    return { records: out.batch(true), children: out.children, errors: out.errors };
  }

  function processor(fns) {
    const pick = registry("processor", fns, (name, s) => {
      if (typeof s === "function") s = { process: s };
      if (s === null || typeof s !== "object") throw new TypeError(`wasp.processor: \`${name}\` is not { timers, process, punctuate }`);
      needFunction("processor", `${name}.process`, s.process);
      if (s.punctuate !== undefined) needFunction("processor", `${name}.punctuate`, s.punctuate);
      const timers = s.timers ?? [];
      if (typeof timers !== "function" && !Array.isArray(timers)) {
        throw new TypeError(`wasp.processor: \`${name}\`'s timers are an array or a function that returns one`);
      }
      return { name, timers, process: s.process, punctuate: s.punctuate };
    }, ["process", "timers", "punctuate"]);
    return {
      init(fn) {
        return call(() => {
          const s = pick(fn);
          const timers = typeof s.timers === "function" ? s.timers() : s.timers;
          return timers.map((t) => ({
            name: String(t.name),
            intervalMs: BigInt(t.intervalMs),
            clock: t.clock === "wall-clock" ? "wall-clock" : "stream-time",
          }));
        });
      },
      process(fn, input) {
        return call(() => {
          const s = pick(fn);
          const n = count(input);
          const out = new Out(input, n, input.data.length);
          out.children = [];
          const ctx = new Context(out);
          ctx._inherit = true;
          for (let i = 0; i < n; i++) {
            ctx._origin = i;
            ctx._time = input.timestamps[i];
            const n0 = out.n, p0 = out.pos, o0 = out.inOrder, t0 = out.inherited;
            try {
              sync(s.process(new Record(input, i), ctx));
            } catch (e) {
              out.rollback(n0, p0, o0, t0);
              out.fail(i, e);
            }
          }
          return forwarded(out);
        });
      },
      punctuate(fn, timer, time) {
        return call(() => {
          const s = pick(fn);
          const out = new Out(null, 4, 256);
          out.children = [];
          const ctx = new Context(out);
          ctx._time = time;
          ctx.timer = timer;
          if (s.punctuate !== undefined) {
            try {
              s.punctuate(timer, Number(time), ctx);
            } catch (e) {
              if (e instanceof CallError) throw e;
              const r = e instanceof RecordError ? e : recordError(e);
              throw new CallError(`timer ${timer}: ${r.code}: ${r.message}`);
            }
          }
          return forwarded(out);
        });
      },
    };
  }

  // ---- stores (a processor's, from the `state` interface it imports) ----

  /** Bytes for a store key or value: a string as UTF-8, bytes as they are, else JSON. */
  function toBytes(x, what) {
    if (typeof x === "string") return encoder.encode(x);
    if (x instanceof Uint8Array) return x;
    if (x === null || x === undefined) throw new RecordError("bad-input", `a store ${what} cannot be absent`);
    if (ArrayBuffer.isView(x)) return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
    if (x instanceof ArrayBuffer) return new Uint8Array(x);
    const json = JSON.stringify(x instanceof AsJson ? x.value : x);
    if (json === undefined) throw new RecordError("bad-output", `cannot write ${typeof x} as JSON`);
    return encoder.encode(json);
  }

  /** A store's error as the record's (`state`). */
  function state(f) {
    try {
      return f();
    } catch (e) {
      throw recordError(e);
    }
  }

  /** An entry a store returned: `key`, `value` (bytes), and `start`, `end` (ms) for windows. */
  class Entry {
    constructor(e) {
      this.key = e.key;
      this.value = e.value;
      if (e.start !== undefined) this.start = Number(e.start);
      if (e.end !== undefined) this.end = Number(e.end);
    }
    keyText() {
      return utf8(this.key);
    }
    text() {
      return utf8(this.value);
    }
    json() {
      return parseJson(this.value, "value");
    }
  }

  const entries = (list) => list.map((e) => new Entry(e));
  const limitOf = (limit) => Math.max(0, Math.min(MAX_SCAN, limit ?? MAX_SCAN));

  /** Opens `Resource` (the WIT resource class) on first use and keeps the handle. */
  class Store {
    constructor(Resource, name) {
      if (typeof Resource?.open !== "function") {
        throw new TypeError(`a store needs the resource class, e.g. KeyValueStore from "wasp:plugin/state@0.1.0"`);
      }
      this._Resource = Resource;
      this.name = String(name);
      this._handle = null;
    }
    get handle() {
      if (this._handle === null) this._handle = state(() => this._Resource.open(this.name));
      return this._handle;
    }
  }

  class KeyValue extends Store {
    /** The value's bytes, or null. */
    get(key) {
      const h = this.handle;
      return state(() => h.get(toBytes(key, "key"))) ?? null;
    }
    getText(key) {
      return utf8(this.get(key));
    }
    /** The value parsed as JSON, or null when there is none. */
    getJson(key) {
      const v = this.get(key);
      return v === null ? null : parseJson(v, "value");
    }
    /** Writes `value` (string, bytes, or JSON); null deletes. */
    put(key, value) {
      if (value === null || value === undefined) return this.delete(key);
      const h = this.handle;
      state(() => h.put(toBytes(key, "key"), toBytes(value, "value")));
    }
    delete(key) {
      const h = this.handle;
      state(() => h.delete(toBytes(key, "key")));
    }
    /** Entries with `from <= key < to` (to the end when `to` is null), in key order. */
    range(from, to = null, limit) {
      const h = this.handle;
      const end = to === null || to === undefined ? undefined : toBytes(to, "key");
      return entries(state(() => h.range(toBytes(from, "key"), end, limitOf(limit))));
    }
    /** Entries whose key starts with `prefix` ("" for all), in key order. */
    prefixScan(prefix, limit) {
      const h = this.handle;
      return entries(state(() => h.prefixScan(toBytes(prefix, "key"), limitOf(limit))));
    }
  }

  class Windows extends Store {
    put(key, start, value) {
      const h = this.handle;
      state(() => h.put(toBytes(key, "key"), toBigInt(start), toBytes(value, "value")));
    }
    delete(key, start) {
      const h = this.handle;
      state(() => h.delete(toBytes(key, "key"), toBigInt(start)));
    }
    /** The entries of `key` with `from <= start <= to`, by start. */
    fetch(key, from, to, limit) {
      const h = this.handle;
      return entries(state(() => h.fetch(toBytes(key, "key"), toBigInt(from), toBigInt(to), limitOf(limit))));
    }
    /** The entries of every key with `start <= to`, by start. */
    fetchUntil(to, limit) {
      const h = this.handle;
      return entries(state(() => h.fetchUntil(toBigInt(to), limitOf(limit))));
    }
  }

  class Sessions extends Store {
    put(key, start, end, value) {
      const h = this.handle;
      state(() => h.put(toBytes(key, "key"), toBigInt(start), toBigInt(end), toBytes(value, "value")));
    }
    remove(key, start, end) {
      const h = this.handle;
      state(() => h.remove(toBytes(key, "key"), toBigInt(start), toBigInt(end)));
    }
    /** The sessions of `key` that end at or after `earliestEnd` and start at or before `latestStart`. */
    find(key, earliestEnd, latestStart, limit) {
      const h = this.handle;
      return entries(state(() => h.find(toBytes(key, "key"), toBigInt(earliestEnd), toBigInt(latestStart), limitOf(limit))));
    }
  }

  // ---- host: config, log, metrics ----

  const configCache = new Map();
  const configJsonCache = new Map();

  /** The plugin's config entry `key` (strings as they are, other TOML values as JSON), or null. */
  function config(key) {
    if (!configCache.has(key)) configCache.set(key, __waspConfigGet(key) ?? null);
    return configCache.get(key);
  }

  /**
   * The config entry parsed as JSON (once: do not change what it returns), `fallback` when
   * absent; invalid JSON fails the call.
   */
  function configJson(key, fallback = null) {
    if (configJsonCache.has(key)) return configJsonCache.get(key) ?? fallback;
    const text = config(key);
    let value = null;
    if (text !== null) {
      try {
        value = JSON.parse(text);
      } catch {
        throw new CallError(`config \`${key}\`: not JSON: ${text}`);
      }
    }
    configJsonCache.set(key, value);
    return value ?? fallback;
  }

  /** Every config entry, as `{ key: text }`. */
  function configEntries() {
    return Object.fromEntries(__waspConfigEntries());
  }

  function text(args) {
    return args.map((a) => (typeof a === "string" ? a : a instanceof Error ? String(a) : safeJson(a))).join(" ");
  }

  function safeJson(a) {
    try {
      return JSON.stringify(a) ?? String(a);
    } catch {
      return String(a);
    }
  }

  function logAt(level) {
    return (...args) => {
      if (live) __waspLog(level, text(args));
    };
  }

  const log = {
    trace: logAt("trace"),
    debug: logAt("debug"),
    info: logAt("info"),
    warn: logAt("warn"),
    error: logAt("error"),
  };

  // Standard output is disabled in a plugin: `console` goes to the host's log instead.
  try {
    Object.assign(globalThis.console, { log: log.info, info: log.info, debug: log.debug, trace: log.trace, warn: log.warn, error: log.error });
  } catch {
    // A console that cannot be changed keeps its own behaviour.
  }

  function labelsOf(labels) {
    if (labels === undefined || labels === null) return [];
    const pairs = Array.isArray(labels) ? labels : Object.entries(labels);
    return pairs.map(([k, v]) => [String(k), String(v)]);
  }

  /**
   * Counter deltas (summed) and gauge values (the last) of the current call, by name and
   * labels: one host call each at the end of the call instead of one per record.
   */
  const pending = new Map();

  function metricKey(kind, name, labels) {
    let key = kind + name;
    if (labels === undefined || labels === null) return key;
    if (Array.isArray(labels)) {
      for (const [k, v] of labels) key += "\u0000" + k + "\u0001" + v;
    } else {
      for (const k in labels) key += "\u0000" + k + "\u0001" + labels[k];
    }
    return key;
  }

  function flushMetrics() {
    for (const [kind, name, labels, value] of pending.values()) {
      if (kind === "c") __waspCounterAdd(name, labels, BigInt(value));
      else __waspGaugeSet(name, labels, value);
    }
    pending.clear();
  }

  const metrics = {
    /** Adds `delta` (a whole number >= 0, default 1) to the counter `name`. */
    counter(name, delta = 1, labels) {
      if (!live) return;
      const d = Math.trunc(Number(delta));
      if (!(d > 0)) return;
      const key = metricKey("c", name, labels);
      const p = pending.get(key);
      if (p !== undefined) p[3] += d;
      else pending.set(key, ["c", String(name), labelsOf(labels), d]);
    },
    /** Sets the gauge `name` to `value`. */
    gauge(name, value, labels) {
      if (!live) return;
      const key = metricKey("g", name, labels);
      const p = pending.get(key);
      if (p !== undefined) p[3] = Number(value);
      else pending.set(key, ["g", String(name), labelsOf(labels), Number(value)]);
    },
    /** Records one observation of `value` in the histogram `name`. */
    histogram(name, value, labels) {
      if (live) __waspHistogramObserve(String(name), labelsOf(labels), Number(value));
    },
  };

  return Object.freeze({
    filter,
    valueMapper,
    keyValueMapper,
    flatMapper,
    flatMapValues,
    keySelector,
    forEach,
    aggregator,
    reducer,
    timestampExtractor,
    valueJoiner,
    foreignKeyExtractor,
    processor,
    Timer,
    keyValueStore: (Resource, name) => new KeyValue(Resource, name),
    windowStore: (Resource, name) => new Windows(Resource, name),
    sessionStore: (Resource, name) => new Sessions(Resource, name),
    codecs,
    asJson: (v) => new AsJson(v),
    RecordError,
    CallError,
    config,
    configJson,
    configEntries,
    log,
    metrics,
  });
})();

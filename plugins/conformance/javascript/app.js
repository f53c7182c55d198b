// The conformance suite's kit in JavaScript: the functions every language's kit offers, as
// tests/conformance/README.md describes them. `wasp build plugins/conformance/javascript` makes
// kit.wasm, putting the wasp SDK (guest-sdk/javascript/wasp.js) in place of its import.
import { KeyValueStore } from "wasp:plugin/state@0.1.0";

import wasp, { RecordError } from "wasp";

/** Counts a function's records in `kit_records`. */
function seen(fn) {
  wasp.metrics.counter("kit_records", 1, { function: fn });
}

/** An input event; a value that is absent, not JSON, or has no integer `amount` is `bad-json`. */
function event(record) {
  let e;
  try {
    e = record.json();
  } catch (err) {
    throw new RecordError("bad-json", `not an event: ${err.message}`);
  }
  if (e === null || typeof e !== "object" || !Number.isInteger(e.amount)) {
    throw new RecordError("bad-json", "not an event: no integer `amount`");
  }
  return { user: typeof e.user === "string" ? e.user : "", amount: e.amount, text: typeof e.text === "string" ? e.text : "" };
}

export const filter = wasp.filter({
  positive(record) {
    seen("positive");
    const min = wasp.configJson("min_amount", 0);
    return event(record).amount >= (Number.isInteger(min) ? min : 0);
  },
});

export const valueMapper = wasp.valueMapper({
  describe(record) {
    seen("describe");
    const e = event(record);
    return { user: e.user, cents: e.amount * 100, label: wasp.config("label") ?? "" };
  },
});

export const flatMapper = wasp.flatMapper({
  words(record) {
    seen("words");
    const e = event(record);
    const words = e.text.split(" ");
    const out = [];
    for (let i = 0; i < words.length; i++) if (words[i] !== "") out.push([words[i], e.user]);
    return out;
  },
});

export const aggregator = wasp.aggregator({
  total: {
    init: () => ({ count: 0, sum: 0 }),
    aggregate(record, t) {
      seen("total");
      const e = event(record);
      return { count: t.count + 1, sum: t.sum + e.amount };
    },
    merge: (a, b) => ({ count: a.count + b.count, sum: a.sum + b.sum }),
  },
});

const counts = wasp.keyValueStore(KeyValueStore, "counts");

/** A count as the store keeps it: decimal text. */
const decimal = (text) => (text === null ? 0 : Number.parseInt(text, 10) || 0);

export const processor = wasp.processor({
  count: {
    timers: [wasp.Timer.streamTime("report", 10000)],
    process(record, ctx) {
      seen("count");
      if (record.key === null) throw new RecordError("no-key", "a record without a key has nothing to count");
      const n = decimal(counts.getText(record.key)) + 1;
      counts.put(record.key, String(n));
      wasp.log.info(`kit counted ${n} for a key`);
      ctx.forward(record.key, String(n));
    },
    punctuate(timer, time, ctx) {
      let total = 0;
      for (const e of counts.prefixScan("")) total += decimal(e.text());
      ctx.forward("total", String(total), time);
    },
  },
});

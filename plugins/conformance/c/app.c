/* The conformance suite's kit in C: the functions every language's kit offers, as
 * tests/conformance/README.md describes them. */
#include "wasp.h"

/* Counts a call's records in `kit_records{function=…}`. A per-record function sees one record
 * at a time, so it counts each. */
static void seen(const char *function) {
  const char *labels[] = {"function", function, NULL};
  wasp_counter_add("kit_records", labels, 1);
}

/* An event's fields: amount, and (when asked) user and text, unescaped. */
typedef struct {
  int64_t amount;
  wasp_buf_t user, text;
} event_t;

static void event_free(event_t *ev) {
  wasp_buf_free(&ev->user);
  wasp_buf_free(&ev->text);
}

static int event(wasp_bytes_t value, event_t *ev, wasp_error_t *e) {
  wasp_json_t j, f;
  memset(ev, 0, sizeof *ev);
  if (!wasp_json(value, &j) || !wasp_json_is_object(j)) return wasp_fail(e, "bad-json", "not a JSON object");
  if (!wasp_json_field(j, "amount", &f) || !wasp_json_int(f, &ev->amount))
    return wasp_fail(e, "bad-json", "no integer `amount`");
  wasp_json_string_field(value, "user", &ev->user);
  wasp_json_string_field(value, "text", &ev->text);
  return 0;
}

static int positive(const wasp_record_t *r, wasp_error_t *e) {
  event_t ev;
  seen("positive");
  int rc = event(r->value, &ev, e);
  event_free(&ev);
  if (rc < 0) return rc;
  return ev.amount >= wasp_config_int("min_amount", 0);
}
WASP_FILTERS({"positive", positive})

static int describe(const wasp_record_t *r, wasp_out_t *out, wasp_error_t *e) {
  event_t ev;
  seen("describe");
  if (event(r->value, &ev, e) < 0) {
    event_free(&ev);
    return WASP_ERROR;
  }
  wasp_buf_t label = {0}, v = {0};
  wasp_config_get("label", &label);
  wasp_buf_puts(&v, "{\"user\":");
  wasp_buf_json_string(&v, wasp_buf_view(&ev.user));
  wasp_buf_printf(&v, ",\"cents\":%lld,\"label\":", (long long)(ev.amount * 100));
  wasp_buf_json_string(&v, wasp_buf_view(&label));
  wasp_buf_puts(&v, "}");
  wasp_emit(out, wasp_absent(), wasp_buf_view(&v));
  wasp_buf_free(&v);
  wasp_buf_free(&label);
  event_free(&ev);
  return 0;
}
WASP_MAP_VALUES({"describe", describe})

static int words(const wasp_record_t *r, wasp_out_t *out, wasp_error_t *e) {
  event_t ev;
  seen("words");
  if (event(r->value, &ev, e) < 0) {
    event_free(&ev);
    return WASP_ERROR;
  }
  const uint8_t *t = ev.text.ptr;
  size_t n = ev.text.len, start = 0;
  for (size_t i = 0; i <= n; i++) {
    if (i == n || t[i] == ' ') {
      if (i > start) wasp_emit(out, wasp_bytes(t + start, i - start), wasp_buf_view(&ev.user));
      start = i + 1;
    }
  }
  event_free(&ev);
  return 0;
}
WASP_FLAT_MAPS({"words", words})

static int start(wasp_buf_t *initial, wasp_error_t *e) {
  (void)e;
  wasp_buf_puts(initial, "{\"count\":0,\"sum\":0}");
  return 0;
}

/* A session's aggregate: {"count": n, "sum": s}. */
static int totals(wasp_bytes_t aggregate, int64_t *count, int64_t *sum, wasp_error_t *e) {
  if (!wasp_json_int_field(aggregate, "count", count) || !wasp_json_int_field(aggregate, "sum", sum))
    return wasp_fail(e, "bad-aggregate", "not a total");
  return 0;
}

static int total(const wasp_record_t *r, wasp_bytes_t aggregate, wasp_buf_t *next, wasp_error_t *e) {
  event_t ev;
  int64_t count, sum;
  seen("total");
  int rc = event(r->value, &ev, e);
  event_free(&ev);
  if (rc < 0 || totals(aggregate, &count, &sum, e) < 0) return WASP_ERROR;
  wasp_buf_printf(next, "{\"count\":%lld,\"sum\":%lld}", (long long)(count + 1), (long long)(sum + ev.amount));
  return 0;
}

static int merge_totals(wasp_bytes_t left, wasp_bytes_t right, wasp_buf_t *merged, wasp_error_t *e) {
  int64_t c1, s1, c2, s2;
  if (totals(left, &c1, &s1, e) < 0 || totals(right, &c2, &s2, e) < 0) return WASP_ERROR;
  wasp_buf_printf(merged, "{\"count\":%lld,\"sum\":%lld}", (long long)(c1 + c2), (long long)(s1 + s2));
  return 0;
}
WASP_AGGREGATES({"total", start, total, merge_totals})

static int timers(wasp_timers_t *t, wasp_error_t *e) {
  (void)e;
  wasp_timer(t, "report", 10000, WASP_STREAM_TIME);
  return 0;
}

static int64_t decimal(wasp_bytes_t b) {
  int64_t n = 0;
  for (size_t i = 0; i < b.len && b.ptr[i] >= '0' && b.ptr[i] <= '9'; i++) n = n * 10 + (b.ptr[i] - '0');
  return n;
}

static int count(const wasp_record_t *r, wasp_out_t *out, wasp_error_t *e) {
  seen("count");
  if (wasp_is_absent(r->key)) return wasp_fail(e, "no-key", "a record without a key has nothing to count");
  wasp_kv_t counts;
  if (wasp_kv_open("counts", &counts, e) < 0) return WASP_ERROR;
  wasp_buf_t held = {0}, text = {0};
  int rc = wasp_kv_get(counts, r->key, &held, e);
  if (rc >= 0) {
    int64_t n = (rc == 1 ? decimal(wasp_buf_view(&held)) : 0) + 1;
    wasp_buf_printf(&text, "%lld", (long long)n);
    rc = wasp_kv_put(counts, r->key, wasp_buf_view(&text), e);
    if (rc >= 0) {
      wasp_log_info("kit counted %lld for a key", (long long)n);
      wasp_forward(out, "", r->key, wasp_buf_view(&text));
    }
  }
  wasp_buf_free(&held);
  wasp_buf_free(&text);
  wasp_kv_close(counts);
  return rc < 0 ? WASP_ERROR : 0;
}

static int report(const char *timer, int64_t time, wasp_out_t *out, wasp_error_t *e) {
  (void)timer;
  wasp_kv_t counts;
  if (wasp_kv_open("counts", &counts, e) < 0) return WASP_ERROR;
  wasp_plugin_state_list_entry_t entries;
  int rc = wasp_kv_prefix_scan(counts, wasp_str(""), 10000, &entries, e);
  if (rc >= 0) {
    int64_t sum = 0;
    for (size_t i = 0; i < entries.len; i++) sum += decimal(wasp_bytes(entries.ptr[i].value.ptr, entries.ptr[i].value.len));
    wasp_plugin_state_list_entry_free(&entries);
    wasp_buf_t text = {0};
    wasp_buf_printf(&text, "%lld", (long long)sum);
    wasp_emit_to(out, "", wasp_str("total"), wasp_buf_view(&text), time);
    wasp_buf_free(&text);
  }
  wasp_kv_close(counts);
  return rc < 0 ? WASP_ERROR : 0;
}
WASP_PROCESSORS({"count", timers, count, report})

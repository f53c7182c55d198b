/* wasp.h: the C SDK of wasp plugins (header-only; C11, and C++ through wasp.hpp).
 *
 * `wasp build` generates the bindings of a plugin's world (plugin.h, plugin.c: wit-bindgen's C
 * generator, the world named `plugin`) and puts this header beside them with wasp_world.h,
 * which says what the world exports. A plugin writes one C function per record and names it
 * in a table; the SDK decodes each batch once, calls the function for every record, builds
 * the flat output the WIT asks for, and turns a failed record into a per-record error:
 *
 *     #include "wasp.h"
 *
 *     static int positive(const wasp_record_t *r, wasp_error_t *e) {
 *       int64_t amount;
 *       if (!wasp_json_int_field(r->value, "amount", &amount))
 *         return wasp_fail(e, "bad-json", "no integer `amount`");
 *       return amount > 0;                      // 1 keeps the record, 0 drops it
 *     }
 *     WASP_FILTERS({"positive", positive})      // the step's `function` picks one
 *
 * Kinds: WASP_FILTERS, WASP_MAP_VALUES, WASP_MAPS, WASP_FLAT_MAPS, WASP_SELECT_KEYS,
 * WASP_FOR_EACH, WASP_AGGREGATES, WASP_REDUCES, WASP_TIMESTAMPS, WASP_VALUE_JOINERS,
 * WASP_FOREIGN_KEYS and WASP_PROCESSORS. The host interfaces: wasp_log_*, wasp_counter_add
 * and the other metrics, wasp_config_get; the state stores through wasp_kv_* (a processor).
 *
 * Memory: everything the SDK hands a function lives until the function returns. A function
 * that fails returns WASP_ERROR (from wasp_fail), and its record alone follows the step's
 * error policy; nothing it emitted for that record is kept.
 */
#ifndef WASP_H
#define WASP_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"
#include "wasp_json.h"
#include "wasp_world.h"

#ifdef __cplusplus
extern "C" {
#endif

/** What a per-record function returns when its record failed (after wasp_fail). */
#define WASP_ERROR (-1)
/** A length in a batch's index that means absent: a null key, or a tombstone. */
#define WASP_ABSENT 0xffffffffu

/* ------------------------------------------------------------------------------------------
 * Bytes, records, errors
 * ---------------------------------------------------------------------------------------- */

/** A span of bytes. `ptr == NULL` is absent (a null key, a tombstone). */
typedef struct {
  const uint8_t *ptr;
  size_t len;
} wasp_bytes_t;

static inline wasp_bytes_t wasp_bytes(const void *ptr, size_t len) {
  wasp_bytes_t b = {(const uint8_t *)ptr, len};
  return b;
}
/** A C string's bytes (NULL: absent). */
static inline wasp_bytes_t wasp_str(const char *s) { return wasp_bytes(s, s ? strlen(s) : 0); }
static inline wasp_bytes_t wasp_absent(void) { return wasp_bytes(NULL, 0); }
static inline bool wasp_is_absent(wasp_bytes_t b) { return b.ptr == NULL; }
static inline bool wasp_bytes_eq(wasp_bytes_t b, const char *s) {
  size_t n = strlen(s);
  return b.ptr != NULL && b.len == n && memcmp(b.ptr, s, n) == 0;
}

/** One record of a batch, pointing into it. */
typedef struct {
  /** Its position in the batch. */
  uint32_t index;
  int64_t timestamp;
  wasp_bytes_t key;
  wasp_bytes_t value;
  /** The encoded headers (see wasp_header). */
  wasp_bytes_t headers;
} wasp_record_t;

static inline size_t wasp_batch_len(const wasp_plugin_types_batch_t *b) { return b->timestamps.len; }

static inline wasp_bytes_t wasp__field(const wasp_plugin_types_batch_t *b, size_t at) {
  uint32_t off = b->index.ptr[at], len = b->index.ptr[at + 1];
  if (len == WASP_ABSENT || (size_t)off + len > b->data.len) return wasp_absent();
  return wasp_bytes(b->data.ptr + off, len);
}

/** Record `i` of a batch. */
static inline wasp_record_t wasp_batch_get(const wasp_plugin_types_batch_t *b, size_t i) {
  wasp_record_t r;
  r.index = (uint32_t)i;
  r.timestamp = b->timestamps.ptr[i];
  if (b->index.len < 6 * (i + 1)) {
    r.key = r.value = r.headers = wasp_absent();
    return r;
  }
  r.key = wasp__field(b, 6 * i);
  r.value = wasp__field(b, 6 * i + 2);
  r.headers = wasp__field(b, 6 * i + 4);
  return r;
}

static inline uint32_t wasp__u32le(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/** The value of the record's header `name` (the first of that name): false if it has none;
 * a null header value is absent. */
static inline bool wasp_header(const wasp_record_t *r, const char *name, wasp_bytes_t *value) {
  const uint8_t *p = r->headers.ptr;
  size_t n = r->headers.len, at = 4, want = strlen(name);
  if (p == NULL || n < 4) return false;
  uint32_t count = wasp__u32le(p);
  for (uint32_t h = 0; h < count; h++) {
    if (at + 4 > n) return false;
    uint32_t nl = wasp__u32le(p + at);
    at += 4;
    if (at + nl + 4 > n) return false;
    const uint8_t *hn = p + at;
    at += nl;
    uint32_t vl = wasp__u32le(p + at);
    at += 4;
    wasp_bytes_t v = wasp_absent();
    if (vl != WASP_ABSENT) {
      if (at + vl > n) return false;
      v = wasp_bytes(p + at, vl);
      at += vl;
    }
    if (nl == want && memcmp(hn, name, want) == 0) {
      *value = v;
      return true;
    }
  }
  return false;
}

/** Why one record failed: a short machine-readable code and a message. */
typedef struct {
  char code[64];
  char message[512];
} wasp_error_t;

/** Fills `e` and returns WASP_ERROR: `return wasp_fail(e, "bad-json", "no %s", "amount");`. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 3, 4)))
#endif
static inline int
wasp_fail(wasp_error_t *e, const char *code, const char *fmt, ...) {
  snprintf(e->code, sizeof e->code, "%s", code);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->message, sizeof e->message, fmt, ap);
  va_end(ap);
  return WASP_ERROR;
}

/* ------------------------------------------------------------------------------------------
 * A growable byte buffer: values and aggregates are built in one
 * ---------------------------------------------------------------------------------------- */

typedef struct {
  uint8_t *ptr;
  size_t len, cap;
} wasp_buf_t;

static inline void *wasp__grow(void *ptr, size_t *cap, size_t need, size_t size) {
  if (need <= *cap) return ptr;
  size_t cap2 = *cap ? *cap * 2 : 16;
  while (cap2 < need) cap2 *= 2;
  void *p = realloc(ptr, cap2 * size);
  if (p == NULL) abort(); /* out of the instance's memory: a trap */
  *cap = cap2;
  return p;
}

static inline void wasp_buf_clear(wasp_buf_t *b) { b->len = 0; }
static inline void wasp_buf_free(wasp_buf_t *b) {
  free(b->ptr);
  b->ptr = NULL;
  b->len = b->cap = 0;
}
static inline void wasp_buf_append(wasp_buf_t *b, const void *p, size_t n) {
  b->ptr = (uint8_t *)wasp__grow(b->ptr, &b->cap, b->len + n + 1, 1);
  if (n) memcpy(b->ptr + b->len, p, n);
  b->len += n;
}
static inline void wasp_buf_puts(wasp_buf_t *b, const char *s) { wasp_buf_append(b, s, strlen(s)); }
static inline void wasp_buf_bytes(wasp_buf_t *b, wasp_bytes_t v) { wasp_buf_append(b, v.ptr, v.len); }
#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 2, 3)))
#endif
static inline void
wasp_buf_printf(wasp_buf_t *b, const char *fmt, ...) {
  va_list ap, again;
  va_start(ap, fmt);
  va_copy(again, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n > 0) {
    b->ptr = (uint8_t *)wasp__grow(b->ptr, &b->cap, b->len + (size_t)n + 1, 1);
    vsnprintf((char *)b->ptr + b->len, (size_t)n + 1, fmt, again);
    b->len += (size_t)n;
  }
  va_end(again);
}
/** Appends `v` as a JSON string, quoted and escaped. */
static inline void wasp_buf_json_string(wasp_buf_t *b, wasp_bytes_t v) {
  size_t n = wasp_json_quote(v.ptr, v.len, NULL, 0);
  b->ptr = (uint8_t *)wasp__grow(b->ptr, &b->cap, b->len + n + 1, 1);
  wasp_json_quote(v.ptr, v.len, b->ptr + b->len, n);
  b->len += n;
}
static inline wasp_bytes_t wasp_buf_view(const wasp_buf_t *b) { return wasp_bytes(b->ptr ? b->ptr : (const uint8_t *)"", b->len); }

/* ------------------------------------------------------------------------------------------
 * JSON fields of a value
 * ---------------------------------------------------------------------------------------- */

/** `v` parsed as JSON (false: absent or not JSON). */
static inline bool wasp_json(wasp_bytes_t v, wasp_json_t *out) { return wasp_json_parse(v.ptr, v.len, out); }

/** The integer field `name` of the JSON object in `v`. */
static inline bool wasp_json_int_field(wasp_bytes_t v, const char *name, int64_t *out) {
  wasp_json_t j, f;
  return wasp_json(v, &j) && wasp_json_field(j, name, &f) && wasp_json_int(f, out);
}

/** The string field `name` of the JSON object in `v`, unescaped into `out` (cleared first). */
static inline bool wasp_json_string_field(wasp_bytes_t v, const char *name, wasp_buf_t *out) {
  wasp_json_t j, f;
  if (!wasp_json(v, &j) || !wasp_json_field(j, name, &f) || !wasp_json_is_string(f)) return false;
  size_t n = wasp_json_string_copy(f, NULL, 0);
  out->len = 0;
  out->ptr = (uint8_t *)wasp__grow(out->ptr, &out->cap, n + 1, 1);
  wasp_json_string_copy(f, out->ptr, n);
  out->len = n;
  return true;
}

/* ------------------------------------------------------------------------------------------
 * Host interfaces: log, metrics, config
 * ---------------------------------------------------------------------------------------- */

static inline plugin_string_t wasp__s(const char *s) {
  plugin_string_t t;
  t.ptr = (uint8_t *)s;
  t.len = strlen(s);
  return t;
}

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 2, 3)))
#endif
static inline void
wasp_log(wasp_plugin_log_level_t level, const char *fmt, ...) {
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  plugin_string_t m = wasp__s(line);
  wasp_plugin_log_log(level, &m);
}
#define wasp_log_trace(...) wasp_log(WASP_PLUGIN_LOG_LEVEL_TRACE, __VA_ARGS__)
#define wasp_log_debug(...) wasp_log(WASP_PLUGIN_LOG_LEVEL_DEBUG, __VA_ARGS__)
#define wasp_log_info(...) wasp_log(WASP_PLUGIN_LOG_LEVEL_INFO, __VA_ARGS__)
#define wasp_log_warn(...) wasp_log(WASP_PLUGIN_LOG_LEVEL_WARN, __VA_ARGS__)
#define wasp_log_error(...) wasp_log(WASP_PLUGIN_LOG_LEVEL_ERROR, __VA_ARGS__)

/** Labels: `{"name", "value", …, NULL}` (NULL alone: none). */
static inline void wasp__labels(const char *const *pairs, plugin_tuple2_string_string_t *buf, size_t cap,
                                wasp_plugin_metrics_labels_t *out) {
  size_t n = 0;
  while (pairs && pairs[2 * n] && pairs[2 * n + 1] && n < cap) {
    buf[n].f0 = wasp__s(pairs[2 * n]);
    buf[n].f1 = wasp__s(pairs[2 * n + 1]);
    n++;
  }
  out->ptr = buf;
  out->len = n;
}
#define WASP__METRIC(call, name, labels, x)                         \
  do {                                                               \
    plugin_tuple2_string_string_t pairs_[8];                         \
    wasp_plugin_metrics_labels_t labels_;                            \
    wasp__labels(labels, pairs_, 8, &labels_);                       \
    plugin_string_t name_ = wasp__s(name);                           \
    call(&name_, &labels_, x);                                       \
  } while (0)
/** `wasp_counter_add("kit_records", (const char *[]){"function", "positive", NULL}, n)`. */
static inline void wasp_counter_add(const char *name, const char *const *labels, uint64_t delta) {
  WASP__METRIC(wasp_plugin_metrics_counter_add, name, labels, delta);
}
static inline void wasp_gauge_set(const char *name, const char *const *labels, double value) {
  WASP__METRIC(wasp_plugin_metrics_gauge_set, name, labels, value);
}
static inline void wasp_histogram_observe(const char *name, const char *const *labels, double value) {
  WASP__METRIC(wasp_plugin_metrics_histogram_observe, name, labels, value);
}

/** The config entry `key` (text as written; other TOML values as JSON), into `out`. */
static inline bool wasp_config_get(const char *key, wasp_buf_t *out) {
  plugin_string_t k = wasp__s(key), v;
  if (!wasp_plugin_config_get(&k, &v)) return false;
  out->len = 0;
  wasp_buf_append(out, v.ptr, v.len);
  plugin_string_free(&v);
  return true;
}
/** The integer config entry `key`, or `fallback`. */
static inline int64_t wasp_config_int(const char *key, int64_t fallback) {
  wasp_buf_t b = {0};
  int64_t n = fallback;
  wasp_json_t j;
  if (wasp_config_get(key, &b) && !(wasp_json_parse(b.ptr, b.len, &j) && wasp_json_int(j, &n))) n = fallback;
  wasp_buf_free(&b);
  return n;
}

/* ------------------------------------------------------------------------------------------
 * The output of a call: records, their origins, errors (and a processor's children)
 * ---------------------------------------------------------------------------------------- */

typedef struct {
  uint32_t *index;
  size_t n_index, cap_index;
  int64_t *timestamps;
  size_t n_ts, cap_ts;
  uint8_t *data;
  size_t n_data, cap_data;
  uint32_t *origins;
  size_t n_origins, cap_origins;
  wasp_plugin_types_record_error_t *errors;
  size_t n_errors, cap_errors;
  plugin_string_t *children;
  size_t n_children, cap_children;
  /* The record being handled: what wasp_emit gives the records it makes. */
  uint32_t origin;
  int64_t timestamp;
  bool with_children;
} wasp_out_t;

static inline void wasp__field_put(wasp_out_t *o, wasp_bytes_t b) {
  o->index = (uint32_t *)wasp__grow(o->index, &o->cap_index, o->n_index + 2, sizeof(uint32_t));
  if (b.ptr == NULL) {
    o->index[o->n_index++] = 0;
    o->index[o->n_index++] = WASP_ABSENT;
    return;
  }
  o->data = (uint8_t *)wasp__grow(o->data, &o->cap_data, o->n_data + b.len, 1);
  if (b.len) memcpy(o->data + o->n_data, b.ptr, b.len);
  o->index[o->n_index++] = (uint32_t)o->n_data;
  o->index[o->n_index++] = (uint32_t)b.len;
  o->n_data += b.len;
}

/** Emits a record at time `timestamp` to `child` ("" is the next step; only a processor's
 * output has children). */
static inline void wasp_emit_to(wasp_out_t *o, const char *child, wasp_bytes_t key, wasp_bytes_t value,
                                int64_t timestamp) {
  wasp__field_put(o, key);
  wasp__field_put(o, value);
  o->index = (uint32_t *)wasp__grow(o->index, &o->cap_index, o->n_index + 2, sizeof(uint32_t));
  o->index[o->n_index++] = 0;
  o->index[o->n_index++] = 0;
  o->timestamps = (int64_t *)wasp__grow(o->timestamps, &o->cap_ts, o->n_ts + 1, sizeof(int64_t));
  o->timestamps[o->n_ts++] = timestamp;
  o->origins = (uint32_t *)wasp__grow(o->origins, &o->cap_origins, o->n_origins + 1, sizeof(uint32_t));
  o->origins[o->n_origins++] = o->origin;
  if (o->with_children) {
    o->children = (plugin_string_t *)wasp__grow(o->children, &o->cap_children, o->n_children + 1,
                                                sizeof(plugin_string_t));
    plugin_string_dup(&o->children[o->n_children++], child ? child : "");
  }
}
/** Emits a record with the handled record's timestamp. */
static inline void wasp_emit(wasp_out_t *o, wasp_bytes_t key, wasp_bytes_t value) {
  wasp_emit_to(o, "", key, value, o->timestamp);
}
/** Emits a record with another timestamp. */
static inline void wasp_emit_at(wasp_out_t *o, wasp_bytes_t key, wasp_bytes_t value, int64_t timestamp) {
  wasp_emit_to(o, "", key, value, timestamp);
}
/** A processor forwards a record to the next step (child "") or to a named child. */
static inline void wasp_forward(wasp_out_t *o, const char *child, wasp_bytes_t key, wasp_bytes_t value) {
  wasp_emit_to(o, child, key, value, o->timestamp);
}

/* Where the output stood before a record: a failed record's emits are taken back. */
typedef struct {
  size_t n_index, n_ts, n_data, n_origins, n_children;
} wasp__mark_t;

static inline wasp__mark_t wasp__mark(const wasp_out_t *o) {
  wasp__mark_t m = {o->n_index, o->n_ts, o->n_data, o->n_origins, o->n_children};
  return m;
}
static inline void wasp__rewind(wasp_out_t *o, wasp__mark_t m) {
  for (size_t i = m.n_children; i < o->n_children; i++) plugin_string_free(&o->children[i]);
  o->n_index = m.n_index;
  o->n_ts = m.n_ts;
  o->n_data = m.n_data;
  o->n_origins = m.n_origins;
  o->n_children = m.n_children;
}

static inline void wasp__error(wasp_out_t *o, uint32_t index, const wasp_error_t *e) {
  o->errors = (wasp_plugin_types_record_error_t *)wasp__grow(o->errors, &o->cap_errors, o->n_errors + 1,
                                                             sizeof(wasp_plugin_types_record_error_t));
  wasp_plugin_types_record_error_t *r = &o->errors[o->n_errors++];
  r->index = index;
  plugin_string_dup(&r->code, e->code[0] ? e->code : "plugin-error");
  plugin_string_dup(&r->message, e->message);
}

/* A list handed to the canonical ABI: empty lists are NULL (the bindings free only non-empty
 * ones). */
#define WASP__LIST(dst, ptr_, n_)     \
  do {                                \
    if ((n_) == 0) {                  \
      free(ptr_);                     \
      (dst).ptr = NULL;               \
    } else {                          \
      (dst).ptr = (ptr_);             \
    }                                 \
    (dst).len = (n_);                 \
  } while (0)

static inline void wasp__batch(wasp_out_t *o, wasp_plugin_types_batch_t *b) {
  WASP__LIST(b->index, o->index, o->n_index);
  WASP__LIST(b->timestamps, o->timestamps, o->n_ts);
  WASP__LIST(b->data, o->data, o->n_data);
}

static inline void wasp__output(wasp_out_t *o, wasp_plugin_types_output_t *ret) {
  wasp__batch(o, &ret->records);
  WASP__LIST(ret->origins, o->origins, o->n_origins);
  WASP__LIST(ret->errors, o->errors, o->n_errors);
}

/* ------------------------------------------------------------------------------------------
 * Dispatch on the step's `function`
 * ---------------------------------------------------------------------------------------- */

/** The index of `function` among `n` names ("" is the first), or -1 with `err` filled. */
static inline int wasp__pick(const char *const *names, size_t stride, size_t n, plugin_string_t *function,
                             wasp_plugin_types_call_error_t *err) {
  for (size_t i = 0; i < n; i++) {
    const char *name = *(const char *const *)((const char *)names + i * stride);
    if (function->len == 0 || (strlen(name) == function->len && memcmp(name, function->ptr, function->len) == 0)) {
      return (int)i;
    }
  }
  char msg[256];
  snprintf(msg, sizeof msg, "this plugin offers no function `%.*s`", (int)function->len, (const char *)function->ptr);
  err->tag = WASP_PLUGIN_TYPES_CALL_ERROR_UNKNOWN_FUNCTION;
  plugin_string_dup(&err->val.unknown_function, msg);
  return -1;
}
#define WASP__PICK(defs, function, err) \
  wasp__pick(&(defs)[0].name, sizeof((defs)[0]), sizeof(defs) / sizeof((defs)[0]), function, err)

/** Runs `fn` on every record of `input` into `o`; a failed record's output is taken back and
 * its error recorded. `fn(ctx, record, out, error)`. */
typedef int (*wasp__each_fn)(const void *ctx, const wasp_record_t *r, wasp_out_t *o, wasp_error_t *e);
static inline void wasp__each(const wasp_plugin_types_batch_t *input, const void *ctx, wasp__each_fn fn,
                              wasp_out_t *o) {
  size_t n = wasp_batch_len(input);
  for (size_t i = 0; i < n; i++) {
    wasp_record_t r = wasp_batch_get(input, i);
    wasp_error_t e;
    e.code[0] = e.message[0] = 0;
    o->origin = (uint32_t)i;
    o->timestamp = r.timestamp;
    wasp__mark_t m = wasp__mark(o);
    if (fn(ctx, &r, o, &e) < 0) {
      wasp__rewind(o, m);
      wasp__error(o, (uint32_t)i, &e);
    }
  }
}

/* ------------------------------------------------------------------------------------------
 * filter, for_each, timestamp
 * ---------------------------------------------------------------------------------------- */

/** 1 keeps the record, 0 drops it, WASP_ERROR fails it. */
typedef int (*wasp_filter_fn)(const wasp_record_t *r, wasp_error_t *e);
typedef struct {
  const char *name;
  wasp_filter_fn fn;
} wasp_filter_def;

static inline bool wasp__filter(const wasp_filter_def *def, plugin_string_t *function,
                                wasp_plugin_types_batch_t *input, wasp_plugin_types_verdicts_t *ret) {
  size_t n = wasp_batch_len(input);
  uint8_t *keep = (uint8_t *)malloc(n ? n : 1);
  if (keep == NULL) abort();
  wasp_out_t o;
  memset(&o, 0, sizeof o);
  for (size_t i = 0; i < n; i++) {
    wasp_record_t r = wasp_batch_get(input, i);
    wasp_error_t e;
    e.code[0] = e.message[0] = 0;
    int v = def->fn(&r, &e);
    keep[i] = v > 0;
    if (v < 0) wasp__error(&o, (uint32_t)i, &e);
  }
  WASP__LIST(ret->keep, keep, n);
  WASP__LIST(ret->errors, o.errors, o.n_errors);
  plugin_string_free(function);
  wasp_plugin_types_batch_free(input);
  return true;
}

#define WASP__CALL_ERROR(err, ...)                                                   \
  do {                                                                               \
    plugin_string_free(function);                                                    \
    __VA_ARGS__;                                                                     \
    (void)(err);                                                                     \
    return false;                                                                    \
  } while (0)

#ifdef WASP_EXPORTS_FILTER
/** `WASP_FILTERS({"name", fn}, …)`: the filters this plugin offers. */
#define WASP_FILTERS(...)                                                                                     \
  bool exports_wasp_plugin_filter_filter(plugin_string_t *function, exports_wasp_plugin_filter_batch_t *input, \
                                         exports_wasp_plugin_filter_verdicts_t *ret,                           \
                                         exports_wasp_plugin_filter_call_error_t *err) {                       \
    static const wasp_filter_def defs[] = {__VA_ARGS__};                                                        \
    int at = WASP__PICK(defs, function, err);                                                                   \
    if (at < 0) WASP__CALL_ERROR(err, wasp_plugin_types_batch_free(input));                                     \
    return wasp__filter(&defs[at], function, input, ret);                                                       \
  }
#else
#define WASP_FILTERS(...) WASP__NOT_IN_WORLD(filter)
#endif

/** A side effect per record (peek, forEach): 0, or WASP_ERROR. */
typedef int (*wasp_for_each_fn)(const wasp_record_t *r, wasp_error_t *e);
typedef struct {
  const char *name;
  wasp_for_each_fn fn;
} wasp_for_each_def;

#ifdef WASP_EXPORTS_FOR_EACH
#define WASP_FOR_EACH(...)                                                                                            \
  bool exports_wasp_plugin_for_each_for_each(plugin_string_t *function, exports_wasp_plugin_for_each_batch_t *input,   \
                                             exports_wasp_plugin_for_each_list_record_error_t *ret,                   \
                                             exports_wasp_plugin_for_each_call_error_t *err) {                        \
    static const wasp_for_each_def defs[] = {__VA_ARGS__};                                                              \
    int at = WASP__PICK(defs, function, err);                                                                           \
    if (at < 0) WASP__CALL_ERROR(err, wasp_plugin_types_batch_free(input));                                             \
    wasp_out_t o;                                                                                                       \
    memset(&o, 0, sizeof o);                                                                                            \
    for (size_t i = 0; i < wasp_batch_len(input); i++) {                                                                \
      wasp_record_t r = wasp_batch_get(input, i);                                                                       \
      wasp_error_t e;                                                                                                   \
      e.code[0] = e.message[0] = 0;                                                                                     \
      if (defs[at].fn(&r, &e) < 0) wasp__error(&o, (uint32_t)i, &e);                                                    \
    }                                                                                                                   \
    WASP__LIST(*ret, o.errors, o.n_errors);                                                                             \
    plugin_string_free(function);                                                                                       \
    wasp_plugin_types_batch_free(input);                                                                                \
    return true;                                                                                                        \
  }
#else
#define WASP_FOR_EACH(...) WASP__NOT_IN_WORLD(for_each)
#endif

/** A record's event time, into `*ts`: 0, or WASP_ERROR. */
typedef int (*wasp_timestamp_fn)(const wasp_record_t *r, int64_t *ts, wasp_error_t *e);
typedef struct {
  const char *name;
  wasp_timestamp_fn fn;
} wasp_timestamp_def;

#ifdef WASP_EXPORTS_TIMESTAMP_EXTRACTOR
#define WASP_TIMESTAMPS(...)                                                                                      \
  bool exports_wasp_plugin_timestamp_extractor_extract(                                                           \
      plugin_string_t *function, exports_wasp_plugin_timestamp_extractor_batch_t *input,                           \
      exports_wasp_plugin_timestamp_extractor_timestamps_t *ret, exports_wasp_plugin_timestamp_extractor_call_error_t *err) { \
    static const wasp_timestamp_def defs[] = {__VA_ARGS__};                                                         \
    int at = WASP__PICK(defs, function, err);                                                                       \
    if (at < 0) WASP__CALL_ERROR(err, wasp_plugin_types_batch_free(input));                                         \
    size_t n = wasp_batch_len(input);                                                                               \
    int64_t *ts = (int64_t *)malloc(n ? n * sizeof(int64_t) : 1);                                                   \
    if (ts == NULL) abort();                                                                                        \
    wasp_out_t o;                                                                                                   \
    memset(&o, 0, sizeof o);                                                                                        \
    for (size_t i = 0; i < n; i++) {                                                                                \
      wasp_record_t r = wasp_batch_get(input, i);                                                                   \
      wasp_error_t e;                                                                                               \
      e.code[0] = e.message[0] = 0;                                                                                 \
      ts[i] = r.timestamp;                                                                                          \
      if (defs[at].fn(&r, &ts[i], &e) < 0) wasp__error(&o, (uint32_t)i, &e);                                        \
    }                                                                                                               \
    WASP__LIST(ret->timestamps, ts, n);                                                                             \
    WASP__LIST(ret->errors, o.errors, o.n_errors);                                                                  \
    plugin_string_free(function);                                                                                   \
    wasp_plugin_types_batch_free(input);                                                                            \
    return true;                                                                                                    \
  }
#else
#define WASP_TIMESTAMPS(...) WASP__NOT_IN_WORLD(timestamp_extractor)
#endif

/* ------------------------------------------------------------------------------------------
 * map_values, map, flat_map, select_key, foreign_key: a function that emits
 * ---------------------------------------------------------------------------------------- */

/** Emits what the record becomes (wasp_emit): map_values one value (its key is ignored: the
 * host keeps the record's), map one key and value, flat_map any number, select_key one key
 * (its value ignored), foreign_key one key (absent: no foreign key). 0, or WASP_ERROR. */
typedef int (*wasp_map_fn)(const wasp_record_t *r, wasp_out_t *out, wasp_error_t *e);
typedef struct {
  const char *name;
  wasp_map_fn fn;
} wasp_map_def;

static inline int wasp__map_one(const void *ctx, const wasp_record_t *r, wasp_out_t *o, wasp_error_t *e) {
  return ((const wasp_map_def *)ctx)->fn(r, o, e);
}

#define WASP__MAPPER(export_fn, iface, ...)                                                                  \
  bool export_fn(plugin_string_t *function, exports_wasp_plugin_##iface##_batch_t *input,                    \
                 exports_wasp_plugin_##iface##_output_t *ret, exports_wasp_plugin_##iface##_call_error_t *err) { \
    static const wasp_map_def defs[] = {__VA_ARGS__};                                                          \
    int at = WASP__PICK(defs, function, err);                                                                  \
    if (at < 0) WASP__CALL_ERROR(err, wasp_plugin_types_batch_free(input));                                    \
    wasp_out_t o;                                                                                              \
    memset(&o, 0, sizeof o);                                                                                   \
    wasp__each(input, &defs[at], wasp__map_one, &o);                                                           \
    wasp__output(&o, ret);                                                                                     \
    plugin_string_free(function);                                                                              \
    wasp_plugin_types_batch_free(input);                                                                       \
    return true;                                                                                               \
  }

#ifdef __cplusplus
#define WASP__NOT_IN_WORLD(kind) \
  static_assert(sizeof(char) == 0, "this plugin's world (wasp.toml `world`) does not export " #kind);
#else
#define WASP__NOT_IN_WORLD(kind) \
  _Static_assert(0, "this plugin's world (wasp.toml `world`) does not export " #kind);
#endif

#ifdef WASP_EXPORTS_VALUE_MAPPER
#define WASP_MAP_VALUES(...) WASP__MAPPER(exports_wasp_plugin_value_mapper_map_values, value_mapper, __VA_ARGS__)
#else
#define WASP_MAP_VALUES(...) WASP__NOT_IN_WORLD(value_mapper)
#endif
#ifdef WASP_EXPORTS_KEY_VALUE_MAPPER
#define WASP_MAPS(...) WASP__MAPPER(exports_wasp_plugin_key_value_mapper_map_pairs, key_value_mapper, __VA_ARGS__)
#else
#define WASP_MAPS(...) WASP__NOT_IN_WORLD(key_value_mapper)
#endif
#ifdef WASP_EXPORTS_FLAT_MAPPER
#define WASP_FLAT_MAPS(...) WASP__MAPPER(exports_wasp_plugin_flat_mapper_flat_map, flat_mapper, __VA_ARGS__)
#else
#define WASP_FLAT_MAPS(...) WASP__NOT_IN_WORLD(flat_mapper)
#endif
#ifdef WASP_EXPORTS_KEY_SELECTOR
#define WASP_SELECT_KEYS(...) WASP__MAPPER(exports_wasp_plugin_key_selector_select_key, key_selector, __VA_ARGS__)
#else
#define WASP_SELECT_KEYS(...) WASP__NOT_IN_WORLD(key_selector)
#endif
#ifdef WASP_EXPORTS_FOREIGN_KEY_EXTRACTOR
#define WASP_FOREIGN_KEYS(...) \
  WASP__MAPPER(exports_wasp_plugin_foreign_key_extractor_extract_foreign_key, foreign_key_extractor, __VA_ARGS__)
#else
#define WASP_FOREIGN_KEYS(...) WASP__NOT_IN_WORLD(foreign_key_extractor)
#endif

/* ------------------------------------------------------------------------------------------
 * value_joiner
 * ---------------------------------------------------------------------------------------- */

/** Emits the joined value of `left` and `right` (either's value absent: a missing partner). */
typedef int (*wasp_join_fn)(const wasp_record_t *left, const wasp_record_t *right, wasp_out_t *out, wasp_error_t *e);
typedef struct {
  const char *name;
  wasp_join_fn fn;
} wasp_join_def;

/* Pairs record i of two batches: left and right as one "record" for wasp__each. */
typedef struct {
  const wasp_join_def *def;
  const wasp_plugin_types_batch_t *right;
} wasp__pair_ctx;

static inline int wasp__join_one(const void *ctx, const wasp_record_t *left, wasp_out_t *o, wasp_error_t *e) {
  const wasp__pair_ctx *c = (const wasp__pair_ctx *)ctx;
  wasp_record_t right = wasp_batch_get(c->right, left->index);
  return c->def->fn(left, &right, o, e);
}

#ifdef WASP_EXPORTS_VALUE_JOINER
#define WASP_VALUE_JOINERS(...)                                                                                   \
  bool exports_wasp_plugin_value_joiner_join(plugin_string_t *function, exports_wasp_plugin_value_joiner_batch_t *left, \
                                             exports_wasp_plugin_value_joiner_batch_t *right,                      \
                                             exports_wasp_plugin_value_joiner_output_t *ret,                       \
                                             exports_wasp_plugin_value_joiner_call_error_t *err) {                 \
    static const wasp_join_def defs[] = {__VA_ARGS__};                                                              \
    int at = WASP__PICK(defs, function, err);                                                                       \
    if (at < 0) WASP__CALL_ERROR(err, wasp_plugin_types_batch_free(left); wasp_plugin_types_batch_free(right));     \
    wasp_out_t o;                                                                                                   \
    memset(&o, 0, sizeof o);                                                                                        \
    wasp__pair_ctx c = {&defs[at], right};                                                                          \
    if (wasp_batch_len(right) == wasp_batch_len(left)) wasp__each(left, &c, wasp__join_one, &o);                    \
    wasp__output(&o, ret);                                                                                          \
    plugin_string_free(function);                                                                                   \
    wasp_plugin_types_batch_free(left);                                                                             \
    wasp_plugin_types_batch_free(right);                                                                            \
    return true;                                                                                                    \
  }
#else
#define WASP_VALUE_JOINERS(...) WASP__NOT_IN_WORLD(value_joiner)
#endif

/* ------------------------------------------------------------------------------------------
 * aggregate (initialize, aggregate, merge) and reduce
 * ---------------------------------------------------------------------------------------- */

/** The aggregate a new key or window starts from, into `initial`. 0, or WASP_ERROR. */
typedef int (*wasp_init_fn)(wasp_buf_t *initial, wasp_error_t *e);
/** Folds `r` into `aggregate`, writing the result into `next` (cleared). 0, or WASP_ERROR. */
typedef int (*wasp_aggregate_fn)(const wasp_record_t *r, wasp_bytes_t aggregate, wasp_buf_t *next, wasp_error_t *e);
/** Merges two aggregates of one key into `merged` (cleared). 0, or WASP_ERROR. */
typedef int (*wasp_merge_fn)(wasp_bytes_t left, wasp_bytes_t right, wasp_buf_t *merged, wasp_error_t *e);
typedef struct {
  const char *name;
  wasp_init_fn init;
  wasp_aggregate_fn fn;
  /* NULL: the aggregate cannot be merged (no session windows). */
  wasp_merge_fn merge;
} wasp_aggregate_def;

/** Folds a batch into its slots: `fold(def, record, current, next, e)`. An absent current
 * aggregate is passed as absent (reduce starts from the record). */
typedef int (*wasp__fold_fn)(const void *def, const wasp_record_t *r, wasp_bytes_t current, wasp_buf_t *next,
                             wasp_error_t *e);
static inline void wasp__fold(const void *def, wasp__fold_fn fold, const wasp_plugin_types_batch_t *input,
                              const plugin_list_u32_t *slots, const wasp_plugin_types_batch_t *current, wasp_out_t *o) {
  size_t n_slots = wasp_batch_len(current), n = wasp_batch_len(input);
  wasp_buf_t *aggs = (wasp_buf_t *)calloc(n_slots ? n_slots : 1, sizeof(wasp_buf_t));
  bool *present = (bool *)calloc(n_slots ? n_slots : 1, sizeof(bool));
  if (aggs == NULL || present == NULL) abort();
  for (size_t s = 0; s < n_slots; s++) {
    wasp_record_t c = wasp_batch_get(current, s);
    present[s] = !wasp_is_absent(c.value);
    if (present[s]) wasp_buf_bytes(&aggs[s], c.value);
  }
  wasp_buf_t next = {0};
  for (size_t i = 0; i < n; i++) {
    wasp_record_t r = wasp_batch_get(input, i);
    wasp_error_t e;
    e.code[0] = e.message[0] = 0;
    uint32_t s = i < slots->len ? slots->ptr[i] : UINT32_MAX;
    o->origin = (uint32_t)i;
    o->timestamp = r.timestamp;
    if (s >= n_slots) {
      wasp_fail(&e, "bad-slot", "record %u names slot %u of %u", (unsigned)i, (unsigned)s, (unsigned)n_slots);
      wasp__error(o, (uint32_t)i, &e);
      continue;
    }
    wasp_buf_clear(&next);
    wasp_bytes_t cur = present[s] ? wasp_buf_view(&aggs[s]) : wasp_absent();
    if (fold(def, &r, cur, &next, &e) < 0) {
      wasp__error(o, (uint32_t)i, &e);
      continue;
    }
    wasp_buf_clear(&aggs[s]);
    wasp_buf_bytes(&aggs[s], wasp_buf_view(&next));
    present[s] = true;
    wasp_emit(o, wasp_absent(), wasp_buf_view(&aggs[s]));
  }
  wasp_buf_free(&next);
  for (size_t s = 0; s < n_slots; s++) wasp_buf_free(&aggs[s]);
  free(aggs);
  free(present);
}

static inline int wasp__aggregate_one(const void *def, const wasp_record_t *r, wasp_bytes_t current, wasp_buf_t *next,
                                      wasp_error_t *e) {
  const wasp_aggregate_def *d = (const wasp_aggregate_def *)def;
  if (wasp_is_absent(current)) {
    /* The host passes the initializer's aggregate; absent only if that was absent. */
    wasp_buf_t init = {0};
    int rc = d->init ? d->init(&init, e) : 0;
    if (rc < 0) {
      wasp_buf_free(&init);
      return rc;
    }
    rc = d->fn(r, wasp_buf_view(&init), next, e);
    wasp_buf_free(&init);
    return rc;
  }
  return d->fn(r, current, next, e);
}

#ifdef WASP_EXPORTS_AGGREGATOR
/** `WASP_AGGREGATES({"name", init, fn, merge}, …)`. */
#define WASP_AGGREGATES(...)                                                                                        \
  static const wasp_aggregate_def wasp__aggregates[] = {__VA_ARGS__};                                               \
  bool exports_wasp_plugin_aggregator_initialize(plugin_string_t *function, plugin_list_u8_t *ret,                  \
                                                 exports_wasp_plugin_aggregator_call_error_t *err) {                \
    int at = WASP__PICK(wasp__aggregates, function, err);                                                           \
    if (at < 0) WASP__CALL_ERROR(err, (void)0);                                                                     \
    wasp_buf_t b = {0};                                                                                             \
    wasp_error_t e;                                                                                                 \
    e.code[0] = e.message[0] = 0;                                                                                   \
    if (wasp__aggregates[at].init && wasp__aggregates[at].init(&b, &e) < 0) {                                       \
      wasp_buf_free(&b);                                                                                            \
      err->tag = WASP_PLUGIN_TYPES_CALL_ERROR_FAILED;                                                               \
      plugin_string_dup(&err->val.failed, e.message);                                                               \
      WASP__CALL_ERROR(err, (void)0);                                                                               \
    }                                                                                                               \
    WASP__LIST(*ret, b.ptr, b.len);                                                                                 \
    plugin_string_free(function);                                                                                   \
    return true;                                                                                                    \
  }                                                                                                                 \
  bool exports_wasp_plugin_aggregator_aggregate(plugin_string_t *function, exports_wasp_plugin_aggregator_batch_t *input, \
                                                plugin_list_u32_t *slots, exports_wasp_plugin_aggregator_batch_t *current, \
                                                exports_wasp_plugin_aggregator_output_t *ret,                       \
                                                exports_wasp_plugin_aggregator_call_error_t *err) {                 \
    int at = WASP__PICK(wasp__aggregates, function, err);                                                           \
    if (at < 0)                                                                                                     \
      WASP__CALL_ERROR(err, wasp_plugin_types_batch_free(input); wasp_plugin_types_batch_free(current);             \
                       plugin_list_u32_free(slots));                                                                \
    wasp_out_t o;                                                                                                   \
    memset(&o, 0, sizeof o);                                                                                        \
    wasp__fold(&wasp__aggregates[at], wasp__aggregate_one, input, slots, current, &o);                              \
    wasp__output(&o, ret);                                                                                          \
    plugin_string_free(function);                                                                                   \
    wasp_plugin_types_batch_free(input);                                                                            \
    wasp_plugin_types_batch_free(current);                                                                          \
    plugin_list_u32_free(slots);                                                                                    \
    return true;                                                                                                    \
  }                                                                                                                 \
  bool exports_wasp_plugin_aggregator_merge(plugin_string_t *function, exports_wasp_plugin_aggregator_batch_t *left, \
                                            exports_wasp_plugin_aggregator_batch_t *right,                          \
                                            exports_wasp_plugin_aggregator_output_t *ret,                           \
                                            exports_wasp_plugin_aggregator_call_error_t *err) {                     \
    int at = WASP__PICK(wasp__aggregates, function, err);                                                           \
    if (at < 0) WASP__CALL_ERROR(err, wasp_plugin_types_batch_free(left); wasp_plugin_types_batch_free(right));     \
    wasp_out_t o;                                                                                                   \
    memset(&o, 0, sizeof o);                                                                                        \
    wasp_buf_t merged = {0};                                                                                        \
    size_t n = wasp_batch_len(left) < wasp_batch_len(right) ? wasp_batch_len(left) : wasp_batch_len(right);        \
    for (size_t i = 0; i < n; i++) {                                                                                \
      wasp_record_t l = wasp_batch_get(left, i), r = wasp_batch_get(right, i);                                      \
      wasp_error_t e;                                                                                               \
      e.code[0] = e.message[0] = 0;                                                                                 \
      o.origin = (uint32_t)i;                                                                                       \
      o.timestamp = l.timestamp > r.timestamp ? l.timestamp : r.timestamp;                                          \
      wasp_buf_clear(&merged);                                                                                      \
      if (wasp__aggregates[at].merge == NULL) {                                                                     \
        wasp__error(&o, (uint32_t)i, (wasp_fail(&e, "no-merge", "`%s` has no merge", wasp__aggregates[at].name), &e)); \
      } else if (wasp__aggregates[at].merge(l.value, r.value, &merged, &e) < 0) {                                   \
        wasp__error(&o, (uint32_t)i, &e);                                                                           \
      } else {                                                                                                      \
        wasp_emit(&o, wasp_absent(), wasp_buf_view(&merged));                                                       \
      }                                                                                                             \
    }                                                                                                               \
    wasp_buf_free(&merged);                                                                                         \
    wasp__output(&o, ret);                                                                                          \
    plugin_string_free(function);                                                                                   \
    wasp_plugin_types_batch_free(left);                                                                             \
    wasp_plugin_types_batch_free(right);                                                                            \
    return true;                                                                                                    \
  }
#else
#define WASP_AGGREGATES(...) WASP__NOT_IN_WORLD(aggregator)
#endif

/** Reduces `r`'s value into `aggregate` (values and aggregates have one type), into `next`. */
typedef int (*wasp_reduce_fn)(wasp_bytes_t aggregate, const wasp_record_t *r, wasp_buf_t *next, wasp_error_t *e);
typedef struct {
  const char *name;
  wasp_reduce_fn fn;
} wasp_reduce_def;

static inline int wasp__reduce_one(const void *def, const wasp_record_t *r, wasp_bytes_t current, wasp_buf_t *next,
                                   wasp_error_t *e) {
  if (wasp_is_absent(current)) {
    /* A slot without an aggregate starts from its first record. */
    wasp_buf_bytes(next, r->value);
    return 0;
  }
  return ((const wasp_reduce_def *)def)->fn(current, r, next, e);
}

#ifdef WASP_EXPORTS_REDUCER
#define WASP_REDUCES(...)                                                                                          \
  bool exports_wasp_plugin_reducer_reduce(plugin_string_t *function, exports_wasp_plugin_reducer_batch_t *input,   \
                                          plugin_list_u32_t *slots, exports_wasp_plugin_reducer_batch_t *current,  \
                                          exports_wasp_plugin_reducer_output_t *ret,                               \
                                          exports_wasp_plugin_reducer_call_error_t *err) {                         \
    static const wasp_reduce_def defs[] = {__VA_ARGS__};                                                           \
    int at = WASP__PICK(defs, function, err);                                                                      \
    if (at < 0)                                                                                                    \
      WASP__CALL_ERROR(err, wasp_plugin_types_batch_free(input); wasp_plugin_types_batch_free(current);            \
                       plugin_list_u32_free(slots));                                                               \
    wasp_out_t o;                                                                                                  \
    memset(&o, 0, sizeof o);                                                                                       \
    wasp__fold(&defs[at], wasp__reduce_one, input, slots, current, &o);                                            \
    wasp__output(&o, ret);                                                                                         \
    plugin_string_free(function);                                                                                  \
    wasp_plugin_types_batch_free(input);                                                                           \
    wasp_plugin_types_batch_free(current);                                                                         \
    plugin_list_u32_free(slots);                                                                                   \
    return true;                                                                                                   \
  }
#else
#define WASP_REDUCES(...) WASP__NOT_IN_WORLD(reducer)
#endif

/* ------------------------------------------------------------------------------------------
 * processor: timers, records, punctuations; the state stores
 * ---------------------------------------------------------------------------------------- */

#ifdef WASP_EXPORTS_PROCESSOR
typedef enum { WASP_STREAM_TIME = 0, WASP_WALL_CLOCK = 1 } wasp_clock_t;

typedef struct {
  exports_wasp_plugin_processor_timer_t *ptr;
  size_t len, cap;
} wasp_timers_t;

/** Schedules timer `name` every `interval_ms` on `clock`. */
static inline void wasp_timer(wasp_timers_t *t, const char *name, uint64_t interval_ms, wasp_clock_t clock) {
  t->ptr = (exports_wasp_plugin_processor_timer_t *)wasp__grow(t->ptr, &t->cap, t->len + 1,
                                                               sizeof(exports_wasp_plugin_processor_timer_t));
  exports_wasp_plugin_processor_timer_t *x = &t->ptr[t->len++];
  plugin_string_dup(&x->name, name);
  x->interval_ms = interval_ms;
  x->clock = (exports_wasp_plugin_processor_clock_t)clock;
}

/** The timers to schedule (may be NULL: none). 0, or WASP_ERROR (the processor cannot run). */
typedef int (*wasp_processor_init_fn)(wasp_timers_t *t, wasp_error_t *e);
/** Handles one record: forwards any records (wasp_forward). 0, or WASP_ERROR. */
typedef int (*wasp_process_fn)(const wasp_record_t *r, wasp_out_t *out, wasp_error_t *e);
/** Timer `timer` fired at `time`: forwards any records (their timestamp is `time`). */
typedef int (*wasp_punctuate_fn)(const char *timer, int64_t time, wasp_out_t *out, wasp_error_t *e);
typedef struct {
  const char *name;
  wasp_processor_init_fn init;
  wasp_process_fn process;
  wasp_punctuate_fn punctuate;
} wasp_processor_def;

static inline int wasp__process_one(const void *ctx, const wasp_record_t *r, wasp_out_t *o, wasp_error_t *e) {
  return ((const wasp_processor_def *)ctx)->process(r, o, e);
}

static inline void wasp__forwarded(wasp_out_t *o, exports_wasp_plugin_processor_forwarded_t *ret) {
  wasp__batch(o, &ret->records);
  WASP__LIST(ret->children, o->children, o->n_children);
  WASP__LIST(ret->errors, o->errors, o->n_errors);
  free(o->origins);
}

#define WASP_PROCESSORS(...)                                                                                       \
  static const wasp_processor_def wasp__processors[] = {__VA_ARGS__};                                              \
  bool exports_wasp_plugin_processor_init(plugin_string_t *function, exports_wasp_plugin_processor_list_timer_t *ret, \
                                          exports_wasp_plugin_processor_call_error_t *err) {                       \
    int at = WASP__PICK(wasp__processors, function, err);                                                          \
    if (at < 0) WASP__CALL_ERROR(err, (void)0);                                                                    \
    wasp_timers_t t = {0};                                                                                         \
    wasp_error_t e;                                                                                                \
    e.code[0] = e.message[0] = 0;                                                                                  \
    if (wasp__processors[at].init && wasp__processors[at].init(&t, &e) < 0) {                                      \
      for (size_t i = 0; i < t.len; i++) plugin_string_free(&t.ptr[i].name);                                       \
      free(t.ptr);                                                                                                 \
      err->tag = WASP_PLUGIN_TYPES_CALL_ERROR_FAILED;                                                              \
      plugin_string_dup(&err->val.failed, e.message);                                                              \
      WASP__CALL_ERROR(err, (void)0);                                                                              \
    }                                                                                                              \
    WASP__LIST(*ret, t.ptr, t.len);                                                                                \
    plugin_string_free(function);                                                                                  \
    return true;                                                                                                   \
  }                                                                                                                \
  bool exports_wasp_plugin_processor_process(plugin_string_t *function, exports_wasp_plugin_processor_batch_t *input, \
                                             exports_wasp_plugin_processor_forwarded_t *ret,                       \
                                             exports_wasp_plugin_processor_call_error_t *err) {                    \
    int at = WASP__PICK(wasp__processors, function, err);                                                          \
    if (at < 0) WASP__CALL_ERROR(err, wasp_plugin_types_batch_free(input));                                        \
    wasp_out_t o;                                                                                                  \
    memset(&o, 0, sizeof o);                                                                                       \
    o.with_children = true;                                                                                        \
    wasp__each(input, &wasp__processors[at], wasp__process_one, &o);                                               \
    wasp__forwarded(&o, ret);                                                                                      \
    plugin_string_free(function);                                                                                  \
    wasp_plugin_types_batch_free(input);                                                                           \
    return true;                                                                                                   \
  }                                                                                                                \
  bool exports_wasp_plugin_processor_punctuate(plugin_string_t *function, plugin_string_t *timer, int64_t time,   \
                                               exports_wasp_plugin_processor_forwarded_t *ret,                     \
                                               exports_wasp_plugin_processor_call_error_t *err) {                  \
    int at = WASP__PICK(wasp__processors, function, err);                                                          \
    if (at < 0) WASP__CALL_ERROR(err, plugin_string_free(timer));                                                  \
    wasp_out_t o;                                                                                                  \
    memset(&o, 0, sizeof o);                                                                                       \
    o.with_children = true;                                                                                        \
    o.timestamp = time;                                                                                            \
    char name[256];                                                                                                \
    snprintf(name, sizeof name, "%.*s", (int)timer->len, (const char *)timer->ptr);                                \
    wasp_error_t e;                                                                                                \
    e.code[0] = e.message[0] = 0;                                                                                  \
    if (wasp__processors[at].punctuate && wasp__processors[at].punctuate(name, time, &o, &e) < 0) {                \
      wasp__forwarded(&o, ret);                                                                                    \
      exports_wasp_plugin_processor_forwarded_free(ret);                                                           \
      err->tag = WASP_PLUGIN_TYPES_CALL_ERROR_FAILED;                                                              \
      plugin_string_dup(&err->val.failed, e.message);                                                              \
      WASP__CALL_ERROR(err, plugin_string_free(timer));                                                            \
    }                                                                                                              \
    wasp__forwarded(&o, ret);                                                                                      \
    plugin_string_free(function);                                                                                  \
    plugin_string_free(timer);                                                                                     \
    return true;                                                                                                   \
  }
#else
#define WASP_PROCESSORS(...) WASP__NOT_IN_WORLD(processor)
#endif

#ifdef WASP_IMPORTS_STATE
/** A key-value store the step names in `stores`. */
typedef wasp_plugin_state_own_key_value_store_t wasp_kv_t;

static inline void wasp__state_error(wasp_plugin_state_state_error_t *se, wasp_error_t *e) {
  const char *what = se->tag == WASP_PLUGIN_STATE_STATE_ERROR_NO_SUCH_STORE ? "no-such-store"
                     : se->tag == WASP_PLUGIN_STATE_STATE_ERROR_WRONG_KIND  ? "wrong-kind"
                                                                            : "state";
  wasp_fail(e, what, "%.*s", (int)se->val.failed.len, (const char *)se->val.failed.ptr);
  wasp_plugin_state_state_error_free(se);
}

/** Opens the key-value store `name`: 0, or WASP_ERROR. Close it with wasp_kv_close. */
static inline int wasp_kv_open(const char *name, wasp_kv_t *kv, wasp_error_t *e) {
  plugin_string_t n = wasp__s(name);
  wasp_plugin_state_state_error_t se;
  if (wasp_plugin_state_static_key_value_store_open(&n, kv, &se)) return 0;
  wasp__state_error(&se, e);
  return WASP_ERROR;
}
static inline void wasp_kv_close(wasp_kv_t kv) { wasp_plugin_state_key_value_store_drop_own(kv); }

static inline plugin_list_u8_t wasp__list(wasp_bytes_t b) {
  plugin_list_u8_t l;
  l.ptr = (uint8_t *)(b.ptr ? b.ptr : (const uint8_t *)"");
  l.len = b.len;
  return l;
}

/** The value of `key` into `value` (cleared): 1 found, 0 not there, or WASP_ERROR. */
static inline int wasp_kv_get(wasp_kv_t kv, wasp_bytes_t key, wasp_buf_t *value, wasp_error_t *e) {
  plugin_list_u8_t k = wasp__list(key);
  plugin_option_list_u8_t got;
  wasp_plugin_state_state_error_t se;
  if (!wasp_plugin_state_method_key_value_store_get(wasp_plugin_state_borrow_key_value_store(kv), &k, &got, &se)) {
    wasp__state_error(&se, e);
    return WASP_ERROR;
  }
  value->len = 0;
  if (!got.is_some) return 0;
  wasp_buf_append(value, got.val.ptr, got.val.len);
  plugin_list_u8_free(&got.val);
  return 1;
}
static inline int wasp_kv_put(wasp_kv_t kv, wasp_bytes_t key, wasp_bytes_t value, wasp_error_t *e) {
  plugin_list_u8_t k = wasp__list(key), v = wasp__list(value);
  wasp_plugin_state_state_error_t se;
  if (wasp_plugin_state_method_key_value_store_put(wasp_plugin_state_borrow_key_value_store(kv), &k, &v, &se)) return 0;
  wasp__state_error(&se, e);
  return WASP_ERROR;
}
static inline int wasp_kv_delete(wasp_kv_t kv, wasp_bytes_t key, wasp_error_t *e) {
  plugin_list_u8_t k = wasp__list(key);
  wasp_plugin_state_state_error_t se;
  if (wasp_plugin_state_method_key_value_store_delete(wasp_plugin_state_borrow_key_value_store(kv), &k, &se)) return 0;
  wasp__state_error(&se, e);
  return WASP_ERROR;
}
/** The entries whose key starts with `prefix`, at most `limit`, in key order: free them with
 * wasp_plugin_state_list_entry_free. 0, or WASP_ERROR. */
static inline int wasp_kv_prefix_scan(wasp_kv_t kv, wasp_bytes_t prefix, uint32_t limit,
                                      wasp_plugin_state_list_entry_t *entries, wasp_error_t *e) {
  plugin_list_u8_t p = wasp__list(prefix);
  wasp_plugin_state_state_error_t se;
  if (wasp_plugin_state_method_key_value_store_prefix_scan(wasp_plugin_state_borrow_key_value_store(kv), &p, limit,
                                                           entries, &se))
    return 0;
  wasp__state_error(&se, e);
  return WASP_ERROR;
}
/** The entries with `from <= key < to` (to the end when `to` is absent). */
static inline int wasp_kv_range(wasp_kv_t kv, wasp_bytes_t from, wasp_bytes_t to, uint32_t limit,
                                wasp_plugin_state_list_entry_t *entries, wasp_error_t *e) {
  plugin_list_u8_t f = wasp__list(from), t = wasp__list(to);
  wasp_plugin_state_state_error_t se;
  if (wasp_plugin_state_method_key_value_store_range(wasp_plugin_state_borrow_key_value_store(kv), &f,
                                                     wasp_is_absent(to) ? NULL : &t, limit, entries, &se))
    return 0;
  wasp__state_error(&se, e);
  return WASP_ERROR;
}
#endif

#ifdef __cplusplus
}
#endif

#endif /* WASP_H */

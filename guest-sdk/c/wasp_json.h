/* wasp_json.h: a small JSON reader for wasp plugins in C and C++ (part of wasp.h).
 *
 * It validates a whole value (RFC 8259) and finds the fields of an object without copying:
 * enough to read an event's fields in a filter or a mapper. Strings come back as a span of
 * the input; wasp_json_string_copy unescapes one into a buffer.
 */
#ifndef WASP_JSON_H
#define WASP_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/** A span of JSON text: one value (for a string, with its quotes). */
typedef struct {
  const uint8_t *ptr;
  size_t len;
} wasp_json_t;

#define WASP_JSON_MAX_DEPTH 64

static inline size_t wasp_json__ws(const uint8_t *s, size_t n, size_t i) {
  while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
  return i;
}

/* The end of the value starting at s[i] (after skipping nothing), or SIZE_MAX if invalid. */
static size_t wasp_json__value(const uint8_t *s, size_t n, size_t i, int depth);

static inline size_t wasp_json__string(const uint8_t *s, size_t n, size_t i) {
  if (i >= n || s[i] != '"') return SIZE_MAX;
  i++;
  while (i < n) {
    uint8_t c = s[i];
    if (c == '"') return i + 1;
    if (c < 0x20) return SIZE_MAX;
    if (c == '\\') {
      if (i + 1 >= n) return SIZE_MAX;
      uint8_t e = s[i + 1];
      if (e == 'u') {
        if (i + 5 >= n) return SIZE_MAX;
        for (size_t k = i + 2; k < i + 6; k++) {
          uint8_t h = s[k];
          if (!((h >= '0' && h <= '9') || (h >= 'a' && h <= 'f') || (h >= 'A' && h <= 'F'))) return SIZE_MAX;
        }
        i += 6;
        continue;
      }
      if (!strchr("\"\\/bfnrt", e) || e == 0) return SIZE_MAX;
      i += 2;
      continue;
    }
    i++;
  }
  return SIZE_MAX;
}

static inline size_t wasp_json__number(const uint8_t *s, size_t n, size_t i) {
  size_t start = i;
  if (i < n && s[i] == '-') i++;
  if (i >= n) return SIZE_MAX;
  if (s[i] == '0') {
    i++;
  } else if (s[i] >= '1' && s[i] <= '9') {
    while (i < n && s[i] >= '0' && s[i] <= '9') i++;
  } else {
    return SIZE_MAX;
  }
  if (i < n && s[i] == '.') {
    i++;
    if (i >= n || s[i] < '0' || s[i] > '9') return SIZE_MAX;
    while (i < n && s[i] >= '0' && s[i] <= '9') i++;
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    i++;
    if (i < n && (s[i] == '+' || s[i] == '-')) i++;
    if (i >= n || s[i] < '0' || s[i] > '9') return SIZE_MAX;
    while (i < n && s[i] >= '0' && s[i] <= '9') i++;
  }
  return i > start ? i : SIZE_MAX;
}

static size_t wasp_json__value(const uint8_t *s, size_t n, size_t i, int depth) {
  if (i >= n || depth > WASP_JSON_MAX_DEPTH) return SIZE_MAX;
  switch (s[i]) {
    case '"':
      return wasp_json__string(s, n, i);
    case '{': {
      i = wasp_json__ws(s, n, i + 1);
      if (i < n && s[i] == '}') return i + 1;
      for (;;) {
        i = wasp_json__string(s, n, i);
        if (i == SIZE_MAX) return SIZE_MAX;
        i = wasp_json__ws(s, n, i);
        if (i >= n || s[i] != ':') return SIZE_MAX;
        i = wasp_json__value(s, n, wasp_json__ws(s, n, i + 1), depth + 1);
        if (i == SIZE_MAX) return SIZE_MAX;
        i = wasp_json__ws(s, n, i);
        if (i < n && s[i] == '}') return i + 1;
        if (i >= n || s[i] != ',') return SIZE_MAX;
        i = wasp_json__ws(s, n, i + 1);
      }
    }
    case '[': {
      i = wasp_json__ws(s, n, i + 1);
      if (i < n && s[i] == ']') return i + 1;
      for (;;) {
        i = wasp_json__value(s, n, i, depth + 1);
        if (i == SIZE_MAX) return SIZE_MAX;
        i = wasp_json__ws(s, n, i);
        if (i < n && s[i] == ']') return i + 1;
        if (i >= n || s[i] != ',') return SIZE_MAX;
        i = wasp_json__ws(s, n, i + 1);
      }
    }
    case 't':
      return (n - i >= 4 && memcmp(s + i, "true", 4) == 0) ? i + 4 : SIZE_MAX;
    case 'f':
      return (n - i >= 5 && memcmp(s + i, "false", 5) == 0) ? i + 5 : SIZE_MAX;
    case 'n':
      return (n - i >= 4 && memcmp(s + i, "null", 4) == 0) ? i + 4 : SIZE_MAX;
    default:
      return wasp_json__number(s, n, i);
  }
}

/** Parses `len` bytes as one JSON value (whitespace around it allowed). */
static inline bool wasp_json_parse(const uint8_t *text, size_t len, wasp_json_t *out) {
  if (text == NULL) return false;
  size_t i = wasp_json__ws(text, len, 0);
  size_t end = wasp_json__value(text, len, i, 0);
  if (end == SIZE_MAX || wasp_json__ws(text, len, end) != len) return false;
  out->ptr = text + i;
  out->len = end - i;
  return true;
}

static inline bool wasp_json_is_object(wasp_json_t v) { return v.len > 0 && v.ptr[0] == '{'; }
static inline bool wasp_json_is_string(wasp_json_t v) { return v.len > 0 && v.ptr[0] == '"'; }

/** The field `name` of an object (a valid one, from wasp_json_parse): the last of that name. */
static inline bool wasp_json_field(wasp_json_t obj, const char *name, wasp_json_t *out) {
  if (!wasp_json_is_object(obj)) return false;
  const uint8_t *s = obj.ptr;
  size_t n = obj.len, want = strlen(name), i = wasp_json__ws(s, n, 1);
  bool found = false;
  while (i < n && s[i] == '"') {
    size_t kend = wasp_json__string(s, n, i);
    /* Keys with escapes are compared as written. */
    bool match = kend - i - 2 == want && memcmp(s + i + 1, name, want) == 0;
    i = wasp_json__ws(s, n, wasp_json__ws(s, n, kend) + 1);
    size_t vend = wasp_json__value(s, n, i, 1);
    if (match) {
      out->ptr = s + i;
      out->len = vend - i;
      found = true;
    }
    i = wasp_json__ws(s, n, vend);
    if (i < n && s[i] == ',') i = wasp_json__ws(s, n, i + 1);
    else break;
  }
  return found;
}

/** An integer value (no fraction or exponent) that fits in int64_t. */
static inline bool wasp_json_int(wasp_json_t v, int64_t *out) {
  size_t i = 0;
  bool neg = false;
  if (v.len == 0) return false;
  if (v.ptr[0] == '-') {
    neg = true;
    i = 1;
  }
  if (i >= v.len) return false;
  uint64_t acc = 0;
  for (; i < v.len; i++) {
    uint8_t c = v.ptr[i];
    if (c < '0' || c > '9') return false;
    if (acc > (UINT64_MAX - (uint64_t)(c - '0')) / 10) return false;
    acc = acc * 10 + (uint64_t)(c - '0');
  }
  if (neg ? acc > (uint64_t)INT64_MAX + 1 : acc > (uint64_t)INT64_MAX) return false;
  *out = neg ? (int64_t)(0 - acc) : (int64_t)acc;
  return true;
}

/** A string value's raw contents, without the quotes (escapes as written). */
static inline bool wasp_json_raw_string(wasp_json_t v, const uint8_t **ptr, size_t *len) {
  if (!wasp_json_is_string(v) || v.len < 2) return false;
  *ptr = v.ptr + 1;
  *len = v.len - 2;
  return true;
}

/** Appends the code point `cp` as UTF-8 to buf[*n..cap]. */
static inline void wasp_json__utf8(uint8_t *buf, size_t cap, size_t *n, uint32_t cp) {
  uint8_t b[4];
  size_t k;
  if (cp < 0x80) {
    b[0] = (uint8_t)cp;
    k = 1;
  } else if (cp < 0x800) {
    b[0] = (uint8_t)(0xC0 | (cp >> 6));
    b[1] = (uint8_t)(0x80 | (cp & 0x3F));
    k = 2;
  } else if (cp < 0x10000) {
    b[0] = (uint8_t)(0xE0 | (cp >> 12));
    b[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    b[2] = (uint8_t)(0x80 | (cp & 0x3F));
    k = 3;
  } else {
    b[0] = (uint8_t)(0xF0 | (cp >> 18));
    b[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    b[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    b[3] = (uint8_t)(0x80 | (cp & 0x3F));
    k = 4;
  }
  for (size_t j = 0; j < k; j++) {
    if (*n < cap) buf[*n] = b[j];
    (*n)++;
  }
}

static inline uint32_t wasp_json__hex4(const uint8_t *p) {
  uint32_t v = 0;
  for (int k = 0; k < 4; k++) {
    uint8_t h = p[k];
    v = v * 16 + (uint32_t)(h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
  }
  return v;
}

/** Unescapes a string value into buf (at most cap bytes); returns its full length in bytes
 * (more than cap: it was cut), or SIZE_MAX when v is not a string. */
static inline size_t wasp_json_string_copy(wasp_json_t v, uint8_t *buf, size_t cap) {
  const uint8_t *s;
  size_t len, n = 0;
  if (!wasp_json_raw_string(v, &s, &len)) return SIZE_MAX;
  for (size_t i = 0; i < len; i++) {
    if (s[i] != '\\') {
      if (n < cap) buf[n] = s[i];
      n++;
      continue;
    }
    uint8_t e = s[++i];
    switch (e) {
      case 'b': e = '\b'; break;
      case 'f': e = '\f'; break;
      case 'n': e = '\n'; break;
      case 'r': e = '\r'; break;
      case 't': e = '\t'; break;
      case 'u': {
        uint32_t cp = wasp_json__hex4(s + i + 1);
        i += 4;
        if (cp >= 0xD800 && cp < 0xDC00 && i + 6 < len && s[i + 1] == '\\' && s[i + 2] == 'u') {
          uint32_t lo = wasp_json__hex4(s + i + 3);
          if (lo >= 0xDC00 && lo < 0xE000) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            i += 6;
          }
        }
        wasp_json__utf8(buf, cap, &n, cp);
        continue;
      }
      default: break; /* " \ / as themselves */
    }
    if (n < cap) buf[n] = e;
    n++;
  }
  return n;
}

/** Writes `len` bytes as a JSON string (with quotes) into buf (at most cap bytes); returns
 * the full length. */
static inline size_t wasp_json_quote(const uint8_t *s, size_t len, uint8_t *buf, size_t cap) {
  static const char hex[] = "0123456789abcdef";
  size_t n = 0;
#define WASP_JSON_PUT(c)            \
  do {                              \
    if (n < cap) buf[n] = (uint8_t)(c); \
    n++;                            \
  } while (0)
  WASP_JSON_PUT('"');
  for (size_t i = 0; i < len; i++) {
    uint8_t c = s[i];
    if (c == '"' || c == '\\') {
      WASP_JSON_PUT('\\');
      WASP_JSON_PUT(c);
    } else if (c < 0x20) {
      WASP_JSON_PUT('\\');
      WASP_JSON_PUT('u');
      WASP_JSON_PUT('0');
      WASP_JSON_PUT('0');
      WASP_JSON_PUT(hex[c >> 4]);
      WASP_JSON_PUT(hex[c & 15]);
    } else {
      WASP_JSON_PUT(c);
    }
  }
  WASP_JSON_PUT('"');
#undef WASP_JSON_PUT
  return n;
}

#endif /* WASP_JSON_H */

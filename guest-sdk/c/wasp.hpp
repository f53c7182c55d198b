// wasp.hpp: the C++ SDK of wasp plugins (header-only, C++17, no exceptions), on the C one
// (wasp.h). A plugin writes one function per record with C++ types and names it in the same
// tables as C, through an adapter template:
//
//     #include "wasp.hpp"
//
//     static wasp::Result<bool> positive(const wasp::Record &r) {
//       auto amount = wasp::Json::parse(r.value()).field("amount").as_int();
//       if (!amount) return wasp::Error{"bad-json", "no integer `amount`"};
//       return *amount > 0;
//     }
//     WASP_FILTERS({"positive", wasp::filter<positive>})
//
// Adapters: wasp::filter, map_values, map, flat_map, select_key, for_each, timestamp,
// value_joiner, foreign_key, aggregate (+ initializer, merger), reducer, and the processor's
// processor_init, process, punctuate. Errors are values: return wasp::Error{code, message}.
#ifndef WASP_HPP
#define WASP_HPP

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "wasp.h"

namespace wasp {

/// Why one record failed: a short machine-readable code and a message.
struct Error {
  std::string code;
  std::string message;
};

/// A value, or the Error that stands for it.
template <class T>
class Result {
 public:
  Result(T value) : value_(std::move(value)) {}
  Result(Error error) : error_(std::move(error)) {}
  bool ok() const { return value_.has_value(); }
  T &value() { return *value_; }
  const Error &error() const { return error_; }

 private:
  std::optional<T> value_;
  Error error_;
};

template <>
class Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), failed_(true) {}
  bool ok() const { return !failed_; }
  const Error &error() const { return error_; }

 private:
  Error error_;
  bool failed_ = false;
};

inline std::optional<std::string_view> view(wasp_bytes_t b) {
  if (wasp_is_absent(b)) return std::nullopt;
  return std::string_view(reinterpret_cast<const char *>(b.ptr), b.len);
}
inline wasp_bytes_t bytes(const std::optional<std::string_view> &s) {
  return s ? wasp_bytes(s->data(), s->size()) : wasp_absent();
}

/// One record of a batch, pointing into it: valid while the function runs.
class Record {
 public:
  explicit Record(const wasp_record_t *r) : r_(r) {}
  /// The key (nullopt: a null key).
  std::optional<std::string_view> key() const { return view(r_->key); }
  /// The value (nullopt: a tombstone).
  std::optional<std::string_view> value() const { return view(r_->value); }
  int64_t timestamp() const { return r_->timestamp; }
  /// The value of header `name` (nullopt: no such header, or a null one).
  std::optional<std::string_view> header(const char *name) const {
    wasp_bytes_t v;
    if (!wasp_header(r_, name, &v)) return std::nullopt;
    return view(v);
  }
  const wasp_record_t *raw() const { return r_; }

 private:
  const wasp_record_t *r_;
};

/// A JSON value read in place (wasp_json.h): absent when the text was not JSON or a field
/// is missing.
class Json {
 public:
  Json() = default;
  /// Parses a whole value (nullopt or invalid JSON: an absent Json).
  static Json parse(const std::optional<std::string_view> &text) {
    Json j;
    if (text) j.ok_ = wasp_json_parse(reinterpret_cast<const uint8_t *>(text->data()), text->size(), &j.v_);
    return j;
  }
  explicit operator bool() const { return ok_; }
  bool is_object() const { return ok_ && wasp_json_is_object(v_); }
  Json field(const char *name) const {
    Json f;
    if (ok_) f.ok_ = wasp_json_field(v_, name, &f.v_);
    return f;
  }
  std::optional<int64_t> as_int() const {
    int64_t n;
    if (ok_ && wasp_json_int(v_, &n)) return n;
    return std::nullopt;
  }
  std::optional<std::string> as_string() const {
    if (!ok_ || !wasp_json_is_string(v_)) return std::nullopt;
    std::string s(wasp_json_string_copy(v_, nullptr, 0), '\0');
    wasp_json_string_copy(v_, reinterpret_cast<uint8_t *>(s.data()), s.size());
    return s;
  }
  /// The value's JSON text as written.
  std::string_view text() const {
    return ok_ ? std::string_view(reinterpret_cast<const char *>(v_.ptr), v_.len) : std::string_view();
  }

 private:
  wasp_json_t v_{};
  bool ok_ = false;
};

/// `s` as a JSON string, quoted and escaped.
inline std::string quote(std::string_view s) {
  auto p = reinterpret_cast<const uint8_t *>(s.data());
  std::string out(wasp_json_quote(p, s.size(), nullptr, 0), '\0');
  wasp_json_quote(p, s.size(), reinterpret_cast<uint8_t *>(out.data()), out.size());
  return out;
}

/// The config entry `key` (text as written; other TOML values as JSON).
inline std::optional<std::string> config(const char *key) {
  wasp_buf_t b = {};
  std::optional<std::string> out;
  if (wasp_config_get(key, &b)) out = std::string(reinterpret_cast<const char *>(b.ptr ? b.ptr : (const uint8_t *)""), b.len);
  wasp_buf_free(&b);
  return out;
}
inline int64_t config_int(const char *key, int64_t fallback) { return wasp_config_int(key, fallback); }

namespace log {
inline void info(const std::string &m) { wasp_log_info("%s", m.c_str()); }
inline void debug(const std::string &m) { wasp_log_debug("%s", m.c_str()); }
inline void warn(const std::string &m) { wasp_log_warn("%s", m.c_str()); }
inline void error(const std::string &m) { wasp_log_error("%s", m.c_str()); }
}  // namespace log

using Labels = std::vector<std::pair<std::string, std::string>>;
namespace detail {
inline std::vector<const char *> labels(const Labels &l) {
  std::vector<const char *> out;
  for (auto &[k, v] : l) {
    out.push_back(k.c_str());
    out.push_back(v.c_str());
  }
  out.push_back(nullptr);
  return out;
}
inline int fail(wasp_error_t *e, const Error &err) {
  return wasp_fail(e, err.code.empty() ? "plugin-error" : err.code.c_str(), "%s", err.message.c_str());
}
inline wasp_bytes_t bytes(std::string_view s) { return wasp_bytes(s.data(), s.size()); }
}  // namespace detail

namespace metrics {
inline void counter(const std::string &name, uint64_t delta, const Labels &l = {}) {
  wasp_counter_add(name.c_str(), detail::labels(l).data(), delta);
}
inline void gauge(const std::string &name, double value, const Labels &l = {}) {
  wasp_gauge_set(name.c_str(), detail::labels(l).data(), value);
}
inline void histogram(const std::string &name, double value, const Labels &l = {}) {
  wasp_histogram_observe(name.c_str(), detail::labels(l).data(), value);
}
}  // namespace metrics

/// What a function emits to: the records it makes (and a processor forwards).
class Out {
 public:
  explicit Out(wasp_out_t *o) : o_(o) {}
  void emit(const std::optional<std::string_view> &key, const std::optional<std::string_view> &value) {
    wasp_emit(o_, bytes(key), bytes(value));
  }
  /// A processor forwards to the next step ("") or a named child, at the record's time or `at`.
  void forward(const std::optional<std::string_view> &key, const std::optional<std::string_view> &value,
               const char *child = "") {
    wasp_forward(o_, child, bytes(key), bytes(value));
  }
  void forward_at(const std::optional<std::string_view> &key, const std::optional<std::string_view> &value,
                  int64_t at, const char *child = "") {
    wasp_emit_to(o_, child, bytes(key), bytes(value), at);
  }
  int64_t timestamp() const { return o_->timestamp; }

 private:
  wasp_out_t *o_;
};

using Pairs = std::vector<std::pair<std::optional<std::string>, std::optional<std::string>>>;

// Adapters: a C++ function as the C function its table takes.

template <Result<bool> (*F)(const Record &)>
int filter(const wasp_record_t *r, wasp_error_t *e) {
  auto res = F(Record(r));
  return res.ok() ? (res.value() ? 1 : 0) : detail::fail(e, res.error());
}
template <Result<void> (*F)(const Record &)>
int for_each(const wasp_record_t *r, wasp_error_t *e) {
  auto res = F(Record(r));
  return res.ok() ? 0 : detail::fail(e, res.error());
}
template <Result<int64_t> (*F)(const Record &)>
int timestamp(const wasp_record_t *r, int64_t *ts, wasp_error_t *e) {
  auto res = F(Record(r));
  if (!res.ok()) return detail::fail(e, res.error());
  *ts = res.value();
  return 0;
}
/// map_values: the new value (nullopt: a tombstone).
template <Result<std::optional<std::string>> (*F)(const Record &)>
int map_values(const wasp_record_t *r, wasp_out_t *o, wasp_error_t *e) {
  auto res = F(Record(r));
  if (!res.ok()) return detail::fail(e, res.error());
  wasp_emit(o, wasp_absent(), bytes(res.value()));
  return 0;
}
/// map: the new key and value.
template <Result<std::pair<std::optional<std::string>, std::optional<std::string>>> (*F)(const Record &)>
int map(const wasp_record_t *r, wasp_out_t *o, wasp_error_t *e) {
  auto res = F(Record(r));
  if (!res.ok()) return detail::fail(e, res.error());
  wasp_emit(o, bytes(res.value().first), bytes(res.value().second));
  return 0;
}
/// flat_map: any number of (key, value).
template <Result<Pairs> (*F)(const Record &)>
int flat_map(const wasp_record_t *r, wasp_out_t *o, wasp_error_t *e) {
  auto res = F(Record(r));
  if (!res.ok()) return detail::fail(e, res.error());
  for (auto &[k, v] : res.value()) wasp_emit(o, bytes(k), bytes(v));
  return 0;
}
/// select_key and foreign_key: a key (nullopt: none).
template <Result<std::optional<std::string>> (*F)(const Record &)>
int select_key(const wasp_record_t *r, wasp_out_t *o, wasp_error_t *e) {
  auto res = F(Record(r));
  if (!res.ok()) return detail::fail(e, res.error());
  wasp_emit(o, bytes(res.value()), wasp_absent());
  return 0;
}
template <Result<std::optional<std::string>> (*F)(const Record &)>
int foreign_key(const wasp_record_t *r, wasp_out_t *o, wasp_error_t *e) {
  return select_key<F>(r, o, e);
}
/// value_joiner: the joined value of the two sides (either's value nullopt: no partner).
template <Result<std::optional<std::string>> (*F)(const Record &, const Record &)>
int value_joiner(const wasp_record_t *l, const wasp_record_t *r, wasp_out_t *o, wasp_error_t *e) {
  auto res = F(Record(l), Record(r));
  if (!res.ok()) return detail::fail(e, res.error());
  wasp_emit(o, wasp_absent(), bytes(res.value()));
  return 0;
}
/// aggregate's initializer: the aggregate a new key starts from.
template <std::string (*F)()>
int initializer(wasp_buf_t *initial, wasp_error_t *) {
  auto s = F();
  wasp_buf_append(initial, s.data(), s.size());
  return 0;
}
/// aggregate: the record folded into the aggregate.
template <Result<std::string> (*F)(const Record &, std::string_view)>
int aggregate(const wasp_record_t *r, wasp_bytes_t agg, wasp_buf_t *next, wasp_error_t *e) {
  auto res = F(Record(r), view(agg).value_or(std::string_view()));
  if (!res.ok()) return detail::fail(e, res.error());
  wasp_buf_append(next, res.value().data(), res.value().size());
  return 0;
}
/// merge: two aggregates of one key as one.
template <Result<std::string> (*F)(std::string_view, std::string_view)>
int merger(wasp_bytes_t a, wasp_bytes_t b, wasp_buf_t *merged, wasp_error_t *e) {
  auto res = F(view(a).value_or(std::string_view()), view(b).value_or(std::string_view()));
  if (!res.ok()) return detail::fail(e, res.error());
  wasp_buf_append(merged, res.value().data(), res.value().size());
  return 0;
}
/// reduce: the aggregate and the next record's value, as one value.
template <Result<std::string> (*F)(std::string_view, const Record &)>
int reducer(wasp_bytes_t agg, const wasp_record_t *r, wasp_buf_t *next, wasp_error_t *e) {
  auto res = F(view(agg).value_or(std::string_view()), Record(r));
  if (!res.ok()) return detail::fail(e, res.error());
  wasp_buf_append(next, res.value().data(), res.value().size());
  return 0;
}

#ifdef WASP_EXPORTS_PROCESSOR
/// A processor's timer.
struct Timer {
  std::string name;
  uint64_t interval_ms;
  wasp_clock_t clock;
  static Timer stream_time(std::string name, uint64_t ms) { return {std::move(name), ms, WASP_STREAM_TIME}; }
  static Timer wall_clock(std::string name, uint64_t ms) { return {std::move(name), ms, WASP_WALL_CLOCK}; }
};

template <std::vector<Timer> (*F)()>
int processor_init(wasp_timers_t *t, wasp_error_t *) {
  for (auto &timer : F()) wasp_timer(t, timer.name.c_str(), timer.interval_ms, timer.clock);
  return 0;
}
template <Result<void> (*F)(Out &, const Record &)>
int process(const wasp_record_t *r, wasp_out_t *o, wasp_error_t *e) {
  Out out(o);
  auto res = F(out, Record(r));
  return res.ok() ? 0 : detail::fail(e, res.error());
}
template <Result<void> (*F)(Out &, std::string_view, int64_t)>
int punctuate(const char *timer, int64_t time, wasp_out_t *o, wasp_error_t *e) {
  Out out(o);
  auto res = F(out, timer, time);
  return res.ok() ? 0 : detail::fail(e, res.error());
}
#endif

#ifdef WASP_IMPORTS_STATE
/// A key-value store the step names in `stores`, open while this object lives.
class KeyValueStore {
 public:
  /// Opens `name` (an Error when the step does not name it, or it is of another kind).
  static Result<KeyValueStore> open(const char *name) {
    wasp_kv_t kv;
    wasp_error_t e;
    if (wasp_kv_open(name, &kv, &e) < 0) return Error{e.code, e.message};
    return KeyValueStore(kv);
  }
  KeyValueStore(KeyValueStore &&o) noexcept : kv_(o.kv_), open_(o.open_) { o.open_ = false; }
  KeyValueStore(const KeyValueStore &) = delete;
  KeyValueStore &operator=(const KeyValueStore &) = delete;
  KeyValueStore &operator=(KeyValueStore &&) = delete;
  ~KeyValueStore() {
    if (open_) wasp_kv_close(kv_);
  }
  Result<std::optional<std::string>> get(std::string_view key) {
    wasp_buf_t b = {};
    wasp_error_t e;
    int rc = wasp_kv_get(kv_, detail::bytes(key), &b, &e);
    std::optional<std::string> v;
    if (rc == 1) v = std::string(reinterpret_cast<const char *>(b.ptr ? b.ptr : (const uint8_t *)""), b.len);
    wasp_buf_free(&b);
    if (rc < 0) return Error{e.code, e.message};
    return v;
  }
  Result<void> put(std::string_view key, std::string_view value) {
    wasp_error_t e;
    if (wasp_kv_put(kv_, detail::bytes(key), detail::bytes(value), &e) < 0) return Error{e.code, e.message};
    return {};
  }
  Result<void> remove(std::string_view key) {
    wasp_error_t e;
    if (wasp_kv_delete(kv_, detail::bytes(key), &e) < 0) return Error{e.code, e.message};
    return {};
  }
  /// The entries whose key starts with `prefix`, at most `limit`, in key order.
  Result<std::vector<std::pair<std::string, std::string>>> prefix_scan(std::string_view prefix, uint32_t limit) {
    wasp_plugin_state_list_entry_t entries;
    wasp_error_t e;
    if (wasp_kv_prefix_scan(kv_, detail::bytes(prefix), limit, &entries, &e) < 0) return Error{e.code, e.message};
    std::vector<std::pair<std::string, std::string>> out;
    out.reserve(entries.len);
    for (size_t i = 0; i < entries.len; i++) {
      auto &x = entries.ptr[i];
      out.emplace_back(std::string(reinterpret_cast<const char *>(x.key.ptr), x.key.len),
                       std::string(reinterpret_cast<const char *>(x.value.ptr), x.value.len));
    }
    wasp_plugin_state_list_entry_free(&entries);
    return out;
  }

 private:
  explicit KeyValueStore(wasp_kv_t kv) : kv_(kv), open_(true) {}
  wasp_kv_t kv_;
  bool open_;
};
#endif

}  // namespace wasp

#endif  // WASP_HPP

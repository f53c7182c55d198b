// The conformance suite's kit in C++: the functions every language's kit offers, as
// tests/conformance/README.md describes them.
#include "wasp.hpp"

namespace {

// Counts a record in `kit_records{function=…}`.
void seen(const char *function) { wasp::metrics::counter("kit_records", 1, {{"function", function}}); }

struct Event {
  int64_t amount;
  std::string user, text;
};

wasp::Result<Event> event(const wasp::Record &r) {
  auto j = wasp::Json::parse(r.value());
  if (!j.is_object()) return wasp::Error{"bad-json", "not a JSON object"};
  auto amount = j.field("amount").as_int();
  if (!amount) return wasp::Error{"bad-json", "no integer `amount`"};
  return Event{*amount, j.field("user").as_string().value_or(""), j.field("text").as_string().value_or("")};
}

wasp::Result<bool> positive(const wasp::Record &r) {
  seen("positive");
  auto e = event(r);
  if (!e.ok()) return e.error();
  return e.value().amount >= wasp::config_int("min_amount", 0);
}

wasp::Result<std::optional<std::string>> describe(const wasp::Record &r) {
  seen("describe");
  auto e = event(r);
  if (!e.ok()) return e.error();
  return std::optional<std::string>("{\"user\":" + wasp::quote(e.value().user) +
                                    ",\"cents\":" + std::to_string(e.value().amount * 100) +
                                    ",\"label\":" + wasp::quote(wasp::config("label").value_or("")) + "}");
}

wasp::Result<wasp::Pairs> words(const wasp::Record &r) {
  seen("words");
  auto e = event(r);
  if (!e.ok()) return e.error();
  wasp::Pairs out;
  std::string_view text = e.value().text;
  size_t start = 0;
  for (size_t i = 0; i <= text.size(); i++) {
    if (i == text.size() || text[i] == ' ') {
      if (i > start) out.emplace_back(std::string(text.substr(start, i - start)), e.value().user);
      start = i + 1;
    }
  }
  return out;
}

std::string start() { return "{\"count\":0,\"sum\":0}"; }

std::string total_json(int64_t count, int64_t sum) {
  return "{\"count\":" + std::to_string(count) + ",\"sum\":" + std::to_string(sum) + "}";
}

wasp::Result<std::pair<int64_t, int64_t>> totals(std::string_view aggregate) {
  auto j = wasp::Json::parse(aggregate);
  auto count = j.field("count").as_int(), sum = j.field("sum").as_int();
  if (!count || !sum) return wasp::Error{"bad-aggregate", "not a total"};
  return std::make_pair(*count, *sum);
}

wasp::Result<std::string> total(const wasp::Record &r, std::string_view aggregate) {
  seen("total");
  auto e = event(r);
  if (!e.ok()) return e.error();
  auto t = totals(aggregate);
  if (!t.ok()) return t.error();
  return total_json(t.value().first + 1, t.value().second + e.value().amount);
}

wasp::Result<std::string> merge_totals(std::string_view left, std::string_view right) {
  auto a = totals(left), b = totals(right);
  if (!a.ok()) return a.error();
  if (!b.ok()) return b.error();
  return total_json(a.value().first + b.value().first, a.value().second + b.value().second);
}

std::vector<wasp::Timer> timers() { return {wasp::Timer::stream_time("report", 10000)}; }

int64_t decimal(std::string_view s) {
  int64_t n = 0;
  for (char c : s) {
    if (c < '0' || c > '9') break;
    n = n * 10 + (c - '0');
  }
  return n;
}

wasp::Result<void> count(wasp::Out &out, const wasp::Record &r) {
  seen("count");
  auto key = r.key();
  if (!key) return wasp::Error{"no-key", "a record without a key has nothing to count"};
  auto counts = wasp::KeyValueStore::open("counts");
  if (!counts.ok()) return counts.error();
  auto held = counts.value().get(*key);
  if (!held.ok()) return held.error();
  std::string n = std::to_string(decimal(held.value().value_or("0")) + 1);
  auto put = counts.value().put(*key, n);
  if (!put.ok()) return put.error();
  wasp::log::info("kit counted " + n + " for a key");
  out.forward(key, n);
  return {};
}

wasp::Result<void> report(wasp::Out &out, std::string_view, int64_t time) {
  auto counts = wasp::KeyValueStore::open("counts");
  if (!counts.ok()) return counts.error();
  auto entries = counts.value().prefix_scan("", 10000);
  if (!entries.ok()) return entries.error();
  int64_t sum = 0;
  for (auto &[k, v] : entries.value()) sum += decimal(v);
  out.forward_at("total", std::to_string(sum), time);
  return {};
}

}  // namespace

WASP_FILTERS({"positive", wasp::filter<positive>})
WASP_MAP_VALUES({"describe", wasp::map_values<describe>})
WASP_FLAT_MAPS({"words", wasp::flat_map<words>})
WASP_AGGREGATES({"total", wasp::initializer<start>, wasp::aggregate<total>, wasp::merger<merge_totals>})
WASP_PROCESSORS({"count", wasp::processor_init<timers>, wasp::process<count>, wasp::punctuate<report>})

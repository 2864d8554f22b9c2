// Byte-level BPE tokenizer (see tokenizer.h). Mirrors HF `tokenizers`:
//   tokenizers/src/tokenizer/added_vocabulary.rs  (added tokens: find_matches, extract_and_normalize)
//   tokenizers/src/models/bpe/word.rs             (merge_all: min (rank, position) first)
//   tokenizers/src/pre_tokenizers/byte_level.rs   (GPT-2 bytes_to_unicode, decode_chain)
#include "tokenizer/tokenizer.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <unordered_map>

#include "core/error.h"
#include "tokenizer/unicode.h"

namespace qwen3vl {

namespace {

using json = nlohmann::json;

// GPT-2 bytes_to_unicode: byte -> code point.
std::array<uint32_t, 256> make_byte_to_cp() {
  std::array<uint32_t, 256> m{};
  std::array<bool, 256> direct{};
  for (int b = '!'; b <= '~'; ++b) direct[b] = true;
  for (int b = 0xA1; b <= 0xAC; ++b) direct[b] = true;
  for (int b = 0xAE; b <= 0xFF; ++b) direct[b] = true;
  uint32_t n = 0;
  for (int b = 0; b < 256; ++b) m[b] = direct[b] ? static_cast<uint32_t>(b) : 256 + n++;
  return m;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// String -> id map with open addressing over a flat slot array (keys kept in insertion order).
// About 2x faster to build and probe than std::unordered_map for the 151k-entry vocabulary.
class StrIndex {
 public:
  void reserve(size_t n) {
    keys_.reserve(n);
    vals_.reserve(n);
    size_t cap = 1024;
    while (cap < n * 2) cap <<= 1;
    if (cap > slots_.size()) rehash(cap);
  }
  int32_t find(std::string_view k) const {
    if (slots_.empty()) return -1;
    const uint32_t h = hash(k);
    for (size_t i = h & (slots_.size() - 1);; i = (i + 1) & (slots_.size() - 1)) {
      const Slot& sl = slots_[i];
      if (sl.idx < 0) return -1;
      if (sl.hash == h && keys_[static_cast<size_t>(sl.idx)] == k) return vals_[static_cast<size_t>(sl.idx)];
    }
  }
  void set(std::string k, int32_t v) {  // insert or overwrite
    if ((keys_.size() + 1) * 2 > slots_.size()) rehash(std::max<size_t>(1024, slots_.size() * 2));
    const uint32_t h = hash(k);
    size_t i = h & (slots_.size() - 1);
    for (;; i = (i + 1) & (slots_.size() - 1)) {
      Slot& sl = slots_[i];
      if (sl.idx < 0) break;
      if (sl.hash == h && keys_[static_cast<size_t>(sl.idx)] == k) {
        vals_[static_cast<size_t>(sl.idx)] = v;
        return;
      }
    }
    slots_[i] = Slot{h, static_cast<int32_t>(keys_.size())};
    keys_.push_back(std::move(k));
    vals_.push_back(v);
  }
  size_t size() const { return keys_.size(); }
  const std::vector<std::string>& keys() const { return keys_; }
  const std::vector<int32_t>& values() const { return vals_; }

 private:
  struct Slot {
    uint32_t hash = 0;
    int32_t idx = -1;
  };
  static uint32_t hash(std::string_view k) {
    const uint64_t h = std::hash<std::string_view>{}(k);
    return static_cast<uint32_t>(h ^ (h >> 32));
  }
  void rehash(size_t cap) {
    slots_.assign(cap, Slot{});
    for (size_t j = 0; j < keys_.size(); ++j) {
      const uint32_t h = hash(keys_[j]);
      size_t i = h & (cap - 1);
      while (slots_[i].idx >= 0) i = (i + 1) & (cap - 1);
      slots_[i] = Slot{h, static_cast<int32_t>(j)};
    }
  }
  std::vector<Slot> slots_;
  std::vector<std::string> keys_;
  std::vector<int32_t> vals_;
};

// BPE cache: piece bytes -> ids, open addressing over arenas (no per-entry allocation).
// HF caches words shorter than 256 chars, up to 10k entries; we keep up to kMaxEntries.
class PieceCache {
 public:
  static constexpr size_t kMaxEntries = 1 << 17;
  static constexpr size_t kMaxPieceBytes = 255;
  PieceCache() : slots_(1024) {}
  static uint64_t hash(std::string_view s) { return std::hash<std::string_view>{}(s) | 1; }  // 0 = empty
  bool get(std::string_view piece, uint64_t h, std::vector<int32_t>& out) const {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = h & (slots_.size() - 1);; i = (i + 1) & (slots_.size() - 1)) {
      const Slot& sl = slots_[i];
      if (sl.hash == 0) return false;
      if (sl.hash == h && sl.key_len == piece.size() && std::memcmp(keys_.data() + sl.key_off, piece.data(), piece.size()) == 0) {
        out.insert(out.end(), ids_.begin() + sl.ids_off, ids_.begin() + sl.ids_off + sl.n_ids);
        return true;
      }
    }
  }
  void put(std::string_view piece, uint64_t h, const int32_t* ids, size_t n) {
    std::lock_guard<std::mutex> lock(mu_);
    if (count_ >= kMaxEntries || piece.size() > kMaxPieceBytes || n > 0xFFFF) return;
    if ((count_ + 1) * 2 > slots_.size()) grow();
    size_t i = h & (slots_.size() - 1);
    for (;; i = (i + 1) & (slots_.size() - 1)) {
      const Slot& sl = slots_[i];
      if (sl.hash == 0) break;
      if (sl.hash == h && sl.key_len == piece.size() && std::memcmp(keys_.data() + sl.key_off, piece.data(), piece.size()) == 0)
        return;  // another thread got there first
    }
    slots_[i] = Slot{h, static_cast<uint32_t>(keys_.size()), static_cast<uint32_t>(ids_.size()),
                     static_cast<uint16_t>(piece.size()), static_cast<uint16_t>(n)};
    keys_.append(piece);
    ids_.insert(ids_.end(), ids, ids + n);
    ++count_;
  }

  void clear() {
    std::lock_guard<std::mutex> lock(mu_);
    slots_.assign(1024, Slot{});
    keys_.clear();
    ids_.clear();
    count_ = 0;
  }

 private:
  void grow() {
    std::vector<Slot> old(slots_.size() * 2);
    old.swap(slots_);
    for (const Slot& sl : old) {
      if (sl.hash == 0) continue;
      size_t i = sl.hash & (slots_.size() - 1);
      while (slots_[i].hash != 0) i = (i + 1) & (slots_.size() - 1);
      slots_[i] = sl;
    }
  }
  struct Slot {
    uint64_t hash = 0;
    uint32_t key_off = 0, ids_off = 0;
    uint16_t key_len = 0, n_ids = 0;
  };
  mutable std::mutex mu_;
  std::vector<Slot> slots_;
  std::string keys_;
  std::vector<int32_t> ids_;
  size_t count_ = 0;
};

// Open-addressing map (left id, right id) -> (rank, merged id).
class MergeTable {
 public:
  void reserve(size_t n) {
    size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    keys_.assign(cap, kEmpty);
    vals_.assign(cap, {0, 0});
    mask_ = cap - 1;
  }
  void insert(int32_t a, int32_t b, int32_t rank, int32_t id) {
    const uint64_t k = key(a, b);
    size_t h = hash(k);
    while (keys_[h] != kEmpty && keys_[h] != k) h = (h + 1) & mask_;
    // HF builds a HashMap from the merges in order, so a duplicated pair keeps the LAST rank.
    keys_[h] = k;
    vals_[h] = {rank, id};
  }
  // rank/id of the pair, or nullptr.
  const std::pair<int32_t, int32_t>* find(int32_t a, int32_t b) const {
    const uint64_t k = key(a, b);
    size_t h = hash(k);
    while (true) {
      const uint64_t kk = keys_[h];
      if (kk == k) return &vals_[h];
      if (kk == kEmpty) return nullptr;
      h = (h + 1) & mask_;
    }
  }

 private:
  static constexpr uint64_t kEmpty = ~0ULL;
  static uint64_t key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  size_t hash(uint64_t k) const { return static_cast<size_t>((k * 0x9E3779B97F4A7C15ULL) >> 17) & mask_; }
  std::vector<uint64_t> keys_;
  std::vector<std::pair<int32_t, int32_t>> vals_;
  size_t mask_ = 0;
};

// Leftmost-longest matcher over a handful of added-token patterns (Aho-Corasick
// MatchKind::LeftmostLongest semantics).
struct AddedMatcher {
  struct Pattern {
    std::string text;
    int32_t id;
  };
  std::vector<Pattern> patterns;                 // sorted by length, longest first
  std::array<std::vector<uint16_t>, 256> by_first;  // pattern indices per first byte
  bool empty() const { return patterns.empty(); }

  void build() {
    std::stable_sort(patterns.begin(), patterns.end(),
                     [](const Pattern& a, const Pattern& b) { return a.text.size() > b.text.size(); });
    for (auto& v : by_first) v.clear();
    for (size_t i = 0; i < patterns.size(); ++i)
      by_first[static_cast<unsigned char>(patterns[i].text[0])].push_back(static_cast<uint16_t>(i));
  }
  // Next match at or after `from`: sets start/len/id; false if none.
  bool next(std::string_view s, size_t from, size_t& start, size_t& len, int32_t& id) const {
    for (size_t p = from; p < s.size(); ++p) {
      const auto& cand = by_first[static_cast<unsigned char>(s[p])];
      if (cand.empty()) continue;
      for (uint16_t k : cand) {
        const Pattern& pat = patterns[k];
        if (s.size() - p >= pat.text.size() && std::memcmp(s.data() + p, pat.text.data(), pat.text.size()) == 0) {
          start = p;
          len = pat.text.size();
          id = pat.id;
          return true;
        }
      }
    }
    return false;
  }
};

}  // namespace

struct Tokenizer::Impl {
  std::string origin;
  // vocabulary
  StrIndex vocab;  // model vocab
  std::unordered_map<std::string, int32_t> added_by_content;
  std::vector<std::string> id_to_token;  // token string per id ("" if none)
  std::string bytes_arena;               // decoded bytes of every id, concatenated
  std::vector<uint32_t> bytes_off;       // [vocab_size + 1]
  std::vector<uint8_t> flags;            // per id: 1 = added, 2 = special
  int32_t vocab_size = 0;
  std::vector<AddedToken> added;
  std::unordered_map<int32_t, size_t> added_index;  // id -> index in `added`
  AddedMatcher raw_matcher, normalized_matcher;
  // model
  std::array<int32_t, 256> byte_id{};  // id of the single-byte token, -1 if missing
  MergeTable merges;
  bool ignore_merges = false;
  bool nfc = false;
  mutable PieceCache cache;

  void bpe(std::string_view piece, std::vector<int32_t>& out) const;
  void bpe_uncached(std::string_view piece, std::vector<int32_t>& out) const;
  void encode_model(std::string_view normalized, std::vector<int32_t>& out) const;
  void encode_normalizable(std::string_view segment, std::vector<int32_t>& out) const;
  template <typename F>
  void split_added(std::string_view s, const AddedMatcher& m, F&& emit) const;
};

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------
namespace {

[[noreturn]] void refuse(const std::string& origin, const std::string& field, const std::string& what) {
  throw Error(origin + ": " + field + ": " + what +
              " (supported: the byte-level BPE of Qwen2/Qwen3/Qwen3-VL: NFC normalizer, "
              "Split(Qwen regex, Isolated) + ByteLevel(use_regex=false) pre-tokenizer, BPE model, "
              "ByteLevel decoder)");
}

std::string dump_short(const json& j) {
  std::string s = j.dump();
  if (s.size() > 200) s = s.substr(0, 200) + "...";
  return s;
}

bool get_bool(const json& obj, const char* key, bool def, const std::string& origin, const std::string& field) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return def;
  if (!it->is_boolean()) refuse(origin, field + "." + key, "expected a boolean, got " + dump_short(*it));
  return it->get<bool>();
}

std::string type_of(const json& obj) {
  auto it = obj.find("type");
  if (it == obj.end() || !it->is_string()) return std::string();
  return it->get<std::string>();
}

void check_normalizer(const json& n, bool& nfc, const std::string& origin, const std::string& field) {
  if (n.is_null()) return;
  if (!n.is_object()) refuse(origin, field, "expected an object, got " + dump_short(n));
  const std::string t = type_of(n);
  if (t == "NFC") {
    nfc = true;
  } else if (t == "Sequence") {
    auto it = n.find("normalizers");
    if (it == n.end() || !it->is_array()) refuse(origin, field + ".normalizers", "missing list");
    for (size_t i = 0; i < it->size(); ++i)
      check_normalizer((*it)[i], nfc, origin, field + ".normalizers[" + std::to_string(i) + "]");
  } else {
    refuse(origin, field, "unsupported normalizer type '" + t + "'");
  }
}

void check_byte_level(const json& p, const std::string& origin, const std::string& field, bool allow_regex) {
  if (get_bool(p, "add_prefix_space", true, origin, field))
    refuse(origin, field + ".add_prefix_space", "must be false");
  if (!allow_regex && get_bool(p, "use_regex", true, origin, field))
    refuse(origin, field + ".use_regex", "must be false (the Split regex does the splitting)");
}

void check_pre_tokenizer(const json& p, const std::string& origin) {
  const std::string field = "pre_tokenizer";
  if (!p.is_object()) refuse(origin, field, "missing or not an object");
  if (type_of(p) != "Sequence") refuse(origin, field, "unsupported pre-tokenizer type '" + type_of(p) + "'");
  auto it = p.find("pretokenizers");
  if (it == p.end() || !it->is_array() || it->size() != 2)
    refuse(origin, field + ".pretokenizers", "expected exactly [Split, ByteLevel], got " + dump_short(p));
  const json& split = (*it)[0];
  const json& bl = (*it)[1];
  if (type_of(split) != "Split")
    refuse(origin, field + ".pretokenizers[0]", "expected Split, got '" + type_of(split) + "'");
  auto pat = split.find("pattern");
  if (pat == split.end() || !pat->is_object() || !pat->contains("Regex") || !(*pat)["Regex"].is_string())
    refuse(origin, field + ".pretokenizers[0].pattern", "expected {\"Regex\": ...}, got " +
                                                            (pat == split.end() ? std::string("nothing") : dump_short(*pat)));
  const std::string re = (*pat)["Regex"].get<std::string>();
  if (re != tok::kQwenSplitRegex)
    refuse(origin, field + ".pretokenizers[0].pattern.Regex", "unsupported regex " + json(re).dump());
  if (!split.contains("behavior") || split["behavior"] != "Isolated")
    refuse(origin, field + ".pretokenizers[0].behavior", "must be \"Isolated\"");
  if (get_bool(split, "invert", false, origin, field + ".pretokenizers[0]"))
    refuse(origin, field + ".pretokenizers[0].invert", "must be false");
  if (type_of(bl) != "ByteLevel")
    refuse(origin, field + ".pretokenizers[1]", "expected ByteLevel, got '" + type_of(bl) + "'");
  check_byte_level(bl, origin, field + ".pretokenizers[1]", false);
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw Error("cannot open tokenizer file " + p.string());
  std::ostringstream ss;
  ss << f.rdbuf();
  if (!f.good() && !f.eof()) throw Error("error reading tokenizer file " + p.string());
  return ss.str();
}

constexpr int32_t kMaxId = 1 << 24;

}  // namespace

Tokenizer Tokenizer::load(const std::filesystem::path& path) {
  std::filesystem::path p = path;
  std::error_code ec;
  if (std::filesystem::is_directory(p, ec)) p /= "tokenizer.json";
  if (!std::filesystem::exists(p, ec))
    throw Error("tokenizer file not found: " + p.string() +
                (p.filename() == "tokenizer.json" ? " (the checkpoint folder needs a tokenizer.json)" : ""));
  return from_json(read_file(p), p.string());
}

Tokenizer Tokenizer::from_json(std::string_view text, const std::string& origin) {
  // model.vocab and model.merges (hundreds of thousands of entries) are captured by the parser
  // callback instead of being built into the DOM (much faster); the DOM keeps them empty.
  std::vector<std::pair<std::string, int64_t>> vocab_entries;  // id -1: not an integer
  std::vector<json> merge_entries;
  json j;
  {
    std::string keys[3];
    std::string pending_key;
    auto in = [&](const char* field) { return keys[1] == "model" && keys[2] == field; };
    json::parser_callback_t cb = [&](int depth, json::parse_event_t ev, json& parsed) -> bool {
      if (ev == json::parse_event_t::key) {
        if (depth <= 2) {
          keys[depth] = parsed.get_ref<const std::string&>();
          if (depth == 1) keys[2].clear();
          return true;
        }
        if (depth == 3 && in("vocab")) {
          pending_key = std::move(parsed.get_ref<std::string&>());
          return false;
        }
        return true;
      }
      if (depth != 3) return true;
      if (ev == json::parse_event_t::value && in("vocab")) {
        vocab_entries.emplace_back(std::move(pending_key),
                                   parsed.is_number_integer() ? parsed.get<int64_t>() : int64_t{-1});
        return false;
      }
      if ((ev == json::parse_event_t::value || ev == json::parse_event_t::array_end) && in("merges")) {
        merge_entries.push_back(std::move(parsed));
        return false;
      }
      return true;
    };
    try {
      j = json::parse(text.begin(), text.end(), cb);
    } catch (const json::exception& e) {
      throw Error(origin + ": not valid JSON: " + e.what());
    }
  }
  if (!j.is_object()) throw Error(origin + ": expected a JSON object at top level");

  auto impl = std::make_shared<Impl>();
  impl->origin = origin;

  // truncation / padding change what encode returns: refuse rather than ignore.
  for (const char* k : {"truncation", "padding"})
    if (j.contains(k) && !j[k].is_null()) refuse(origin, k, "must be null (set by the caller, not supported here)");

  if (j.contains("normalizer")) check_normalizer(j["normalizer"], impl->nfc, origin, "normalizer");
  check_pre_tokenizer(j.contains("pre_tokenizer") ? j["pre_tokenizer"] : json(), origin);
  {
    const json d = j.contains("decoder") ? j["decoder"] : json();
    if (!d.is_object() || type_of(d) != "ByteLevel")
      refuse(origin, "decoder", "expected ByteLevel, got " + dump_short(d));
  }
  if (j.contains("post_processor") && !j["post_processor"].is_null()) {
    const json& pp = j["post_processor"];
    if (type_of(pp) != "ByteLevel")
      refuse(origin, "post_processor", "unsupported type '" + type_of(pp) + "' (would add tokens on encode)");
  }

  // ---- model
  if (!j.contains("model") || !j["model"].is_object()) refuse(origin, "model", "missing");
  const json& m = j["model"];
  if (type_of(m) != "BPE" && !(type_of(m).empty() && m.contains("merges")))
    refuse(origin, "model.type", "unsupported model type '" + type_of(m) + "'");
  if (m.contains("dropout") && !m["dropout"].is_null() && !(m["dropout"].is_number() && m["dropout"].get<double>() == 0.0))
    refuse(origin, "model.dropout", "must be null (BPE dropout is random)");
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (m.contains(k) && !m[k].is_null() && !(m[k].is_string() && m[k].get<std::string>().empty()))
      refuse(origin, std::string("model.") + k, "must be empty or null, got " + dump_short(m[k]));
  impl->ignore_merges = get_bool(m, "ignore_merges", false, origin, "model");
  if (!m.contains("vocab") || !m["vocab"].is_object()) refuse(origin, "model.vocab", "missing or not an object");
  if (!m.contains("merges") || !m["merges"].is_array()) refuse(origin, "model.merges", "missing or not a list");

  int32_t max_id = -1;
  if (!m["vocab"].empty()) refuse(origin, "model.vocab", "unexpected nested value");
  if (!m["merges"].empty()) refuse(origin, "model.merges", "unexpected entry " + dump_short(m["merges"][0]));
  impl->vocab.reserve(vocab_entries.size());
  for (auto& [tok, id] : vocab_entries) {
    if (id < 0 || id >= kMaxId)
      refuse(origin, "model.vocab[" + json(tok).dump() + "]", "id must be an integer in [0, 2^24)");
    max_id = std::max(max_id, static_cast<int32_t>(id));
    impl->vocab.set(std::move(tok), static_cast<int32_t>(id));  // JSON objects: the last duplicate wins
  }
  vocab_entries = {};

  // ---- added tokens
  // HF re-assigns added-token ids on load (the tokenizer.json deserializer calls add_tokens in
  // file order; the "id" field is only compared, with a warning): a content already in the
  // added vocabulary or in model.vocab keeps that id, otherwise it gets the next free id after
  // max(len(model.vocab), largest added id). For Qwen's files both agree.
  if (j.contains("added_tokens") && !j["added_tokens"].is_null()) {
    const json& at = j["added_tokens"];
    if (!at.is_array()) refuse(origin, "added_tokens", "expected a list");
    const int32_t model_len = static_cast<int32_t>(impl->vocab.size());
    int32_t max_added = -1;
    std::unordered_map<std::string, bool> special_contents;
    for (size_t i = 0; i < at.size(); ++i) {
      const std::string f = "added_tokens[" + std::to_string(i) + "]";
      const json& t = at[i];
      if (!t.is_object() || !t.contains("content") || !t["content"].is_string())
        refuse(origin, f, "expected {\"id\": int, \"content\": string, ...}, got " + dump_short(t));
      if (t.contains("id") && !t["id"].is_number_integer()) refuse(origin, f + ".id", "not an integer");
      AddedToken a;
      a.content = t["content"].get<std::string>();
      if (a.content.empty()) continue;  // HF ignores empty added tokens
      a.single_word = get_bool(t, "single_word", false, origin, f);
      a.lstrip = get_bool(t, "lstrip", false, origin, f);
      a.rstrip = get_bool(t, "rstrip", false, origin, f);
      a.normalized = get_bool(t, "normalized", true, origin, f);
      a.special = get_bool(t, "special", false, origin, f);
      if (a.special) special_contents[a.content] = true;
      if (auto it = impl->added_by_content.find(a.content); it != impl->added_by_content.end()) {
        a.id = it->second;
      } else if (const int32_t v = impl->vocab.find(a.content); v >= 0) {
        a.id = v;
      } else {
        a.id = max_added < 0 ? model_len : (max_added >= model_len || model_len == 0 ? max_added + 1 : model_len);
      }
      if (a.id >= kMaxId) refuse(origin, f, "too many tokens");
      max_added = std::max(max_added, a.id);
      max_id = std::max(max_id, a.id);
      impl->added_by_content[a.content] = a.id;
      if (auto it = impl->added_index.find(a.id); it != impl->added_index.end()) {
        impl->added[it->second] = a;  // same content again: the later flags win, as in HF
      } else {
        impl->added_index[a.id] = impl->added.size();
        impl->added.push_back(std::move(a));
      }
    }
    for (auto& a : impl->added) a.special = special_contents.count(a.content) > 0;
  }
  impl->vocab_size = max_id + 1;

  // ---- id tables and decoded bytes
  const auto byte_to_cp = make_byte_to_cp();
  std::unordered_map<uint32_t, uint8_t> cp_to_byte;
  for (int b = 0; b < 256; ++b) cp_to_byte[byte_to_cp[b]] = static_cast<uint8_t>(b);
  impl->id_to_token.assign(static_cast<size_t>(impl->vocab_size), std::string());
  impl->flags.assign(static_cast<size_t>(impl->vocab_size), 0);
  for (size_t k = 0; k < impl->vocab.size(); ++k)
    impl->id_to_token[static_cast<size_t>(impl->vocab.values()[k])] = impl->vocab.keys()[k];
  for (const auto& a : impl->added) {
    impl->id_to_token[static_cast<size_t>(a.id)] = a.content;  // added vocabulary wins in id_to_token
    impl->flags[static_cast<size_t>(a.id)] = static_cast<uint8_t>(1 | (a.special ? 2 : 0));
  }
  impl->bytes_off.assign(static_cast<size_t>(impl->vocab_size) + 1, 0);
  impl->bytes_arena.reserve(static_cast<size_t>(impl->vocab_size) * 7);
  for (int32_t id = 0; id < impl->vocab_size; ++id) {
    impl->bytes_off[static_cast<size_t>(id)] = static_cast<uint32_t>(impl->bytes_arena.size());
    const std::string& t = impl->id_to_token[static_cast<size_t>(id)];
    // ByteLevel decode_chain: map every char back to its byte; if any char is outside the
    // byte alphabet, the token's own UTF-8 bytes are used instead.
    std::string bytes;
    bool all = true;
    for (size_t i = 0; i < t.size();) {
      uint32_t cp = tok::next_cp(t, i);
      auto f = cp_to_byte.find(cp);
      if (f == cp_to_byte.end()) { all = false; break; }
      bytes.push_back(static_cast<char>(f->second));
    }
    impl->bytes_arena += all ? bytes : t;
  }
  impl->bytes_off[static_cast<size_t>(impl->vocab_size)] = static_cast<uint32_t>(impl->bytes_arena.size());

  // ---- byte alphabet
  for (int b = 0; b < 256; ++b) {
    std::string s;
    append_utf8(s, byte_to_cp[b]);
    impl->byte_id[b] = impl->vocab.find(s);
  }
  if (m.contains("unk_token") && !m["unk_token"].is_null()) {
    // Byte-level BPE never needs unk when all 256 byte symbols are in the vocab.
    for (int b = 0; b < 256; ++b)
      if (impl->byte_id[b] < 0)
        refuse(origin, "model.unk_token", "set while the byte symbol for 0x" + std::to_string(b) +
                                              " is missing from model.vocab (unk handling not supported)");
  }

  // ---- merges
  const std::vector<json>& merges = merge_entries;
  impl->merges.reserve(merges.size());
  std::string a, b, ab;
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& e = merges[i];
    if (e.is_string()) {
      const std::string& s = e.get_ref<const std::string&>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        refuse(origin, "model.merges[" + std::to_string(i) + "]", "expected \"left right\", got " + json(s).dump());
      a.assign(s, 0, sp);
      b.assign(s, sp + 1);
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      a = e[0].get<std::string>();
      b = e[1].get<std::string>();
    } else {
      refuse(origin, "model.merges[" + std::to_string(i) + "]", "expected a string or a pair, got " + dump_short(e));
    }
    ab.assign(a).append(b);
    const int32_t ia = impl->vocab.find(a), ib = impl->vocab.find(b), ic = impl->vocab.find(ab);
    if (ia < 0 || ib < 0 || ic < 0)
      refuse(origin, "model.merges[" + std::to_string(i) + "]",
             "merge " + json(a).dump() + " + " + json(b).dump() + " uses a token missing from model.vocab");
    impl->merges.insert(ia, ib, static_cast<int32_t>(i), ic);
  }

  // ---- added-token matchers (non-normalized on raw text, normalized on NFC text)
  for (const auto& t : impl->added) {
    if (t.normalized) {
      std::string pat = impl->nfc ? tok::nfc(t.content) : t.content;
      if (!pat.empty()) impl->normalized_matcher.patterns.push_back({pat, t.id});
    } else {
      impl->raw_matcher.patterns.push_back({t.content, t.id});
    }
  }
  if (impl->added.size() > 0xFFFF) refuse(origin, "added_tokens", "more than 65535 added tokens");
  impl->raw_matcher.build();
  impl->normalized_matcher.build();
  (void)tok::cp_class(0);  // builds the code-point class table now rather than in the first encode

  Tokenizer out;
  out.impl_ = std::move(impl);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------
namespace {

bool ends_with_word(std::string_view s) {
  if (s.empty()) return false;
  size_t i = s.size() - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  size_t k = i;
  return (tok::cp_class(tok::next_cp(s, k)) & tok::kWord) != 0;
}
bool starts_with_word(std::string_view s) {
  if (s.empty()) return false;
  size_t k = 0;
  return (tok::cp_class(tok::next_cp(s, k)) & tok::kWord) != 0;
}
// Start of the trailing whitespace of s (s.size() if none).
size_t space_leftmost_at_end(std::string_view s) {
  size_t start = s.size();
  while (start > 0) {
    size_t i = start - 1;
    while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
    size_t k = i;
    if (!(tok::cp_class(tok::next_cp(s, k)) & tok::kSpace)) break;
    start = i;
  }
  return start;
}
// Length of the leading whitespace of s.
size_t space_rightmost_at_start(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    size_t k = i;
    if (!(tok::cp_class(tok::next_cp(s, k)) & tok::kSpace)) break;
    i = k;
  }
  return i;
}

}  // namespace

// HF AddedVocabulary::find_matches: calls emit(segment, id) for every split in order; id < 0
// for text between added tokens. Empty splits are skipped (as PreTokenizedString::split does).
template <typename F>
void Tokenizer::Impl::split_added(std::string_view s, const AddedMatcher& m, F&& emit) const {
  if (m.empty()) {
    if (!s.empty()) emit(s, -1);
    return;
  }
  size_t start_offset = 0;
  size_t from = 0, mstart = 0, mlen = 0;
  int32_t id = -1;
  while (m.next(s, from, mstart, mlen, id)) {
    from = mstart + mlen;
    size_t start = mstart, stop = mstart + mlen;
    const AddedToken& t = added[added_index.at(id)];
    if (t.single_word) {
      const bool start_space = start == 0 || !ends_with_word(s.substr(0, start));
      const bool stop_space = stop == s.size() || !starts_with_word(s.substr(stop));
      if (!start_space || !stop_space) continue;
    }
    if (t.lstrip) start = std::max(space_leftmost_at_end(s.substr(0, start)), start_offset);
    if (t.rstrip) stop += space_rightmost_at_start(s.substr(stop));
    if (start_offset < start) emit(s.substr(start_offset, start - start_offset), -1);
    emit(s.substr(start, stop - start), id);
    start_offset = stop;
  }
  if (start_offset < s.size()) emit(s.substr(start_offset), -1);
}

void Tokenizer::Impl::bpe_uncached(std::string_view piece, std::vector<int32_t>& out) const {
  // Symbols as a doubly linked list over the initial byte symbols.
  struct Sym {
    int32_t id;
    int32_t prev, next;
    bool alive;
  };
  struct Cand {
    int32_t rank, pos, new_id;
  };
  thread_local std::vector<Sym> syms;
  thread_local std::vector<Cand> heap;
  syms.clear();
  heap.clear();
  for (unsigned char c : piece) {
    const int32_t id = byte_id[c];
    if (id < 0) continue;  // no unk: HF drops symbols missing from the vocab
    const int32_t n = static_cast<int32_t>(syms.size());
    syms.push_back({id, n - 1, n + 1, true});
  }
  if (syms.empty()) return;
  syms.back().next = -1;
  const int32_t n = static_cast<int32_t>(syms.size());
  // Min-heap on (rank, pos), as HF's BinaryHeap<Merge> ordering.
  auto greater = [](const Cand& x, const Cand& y) { return x.rank != y.rank ? x.rank > y.rank : x.pos > y.pos; };
  for (int32_t i = 0; i + 1 < n; ++i)
    if (auto* r = merges.find(syms[i].id, syms[i + 1].id)) heap.push_back({r->first, i, r->second});
  std::make_heap(heap.begin(), heap.end(), greater);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), greater);
    const Cand top = heap.back();
    heap.pop_back();
    Sym& cur = syms[static_cast<size_t>(top.pos)];
    if (!cur.alive || cur.next < 0) continue;
    const int32_t next_pos = cur.next;
    Sym& right = syms[static_cast<size_t>(next_pos)];
    const auto* r = merges.find(cur.id, right.id);
    if (!r || r->second != top.new_id) continue;  // stale entry
    cur.id = top.new_id;
    right.alive = false;
    cur.next = right.next;
    if (right.next >= 0) syms[static_cast<size_t>(right.next)].prev = top.pos;
    if (cur.prev >= 0) {
      if (auto* q = merges.find(syms[static_cast<size_t>(cur.prev)].id, cur.id)) {
        heap.push_back({q->first, cur.prev, q->second});
        std::push_heap(heap.begin(), heap.end(), greater);
      }
    }
    if (cur.next >= 0) {
      if (auto* q = merges.find(cur.id, syms[static_cast<size_t>(cur.next)].id)) {
        heap.push_back({q->first, top.pos, q->second});
        std::push_heap(heap.begin(), heap.end(), greater);
      }
    }
  }
  for (int32_t i = 0; i >= 0; i = syms[static_cast<size_t>(i)].next) out.push_back(syms[static_cast<size_t>(i)].id);
}

void Tokenizer::Impl::bpe(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.size() == 1) {
    const int32_t id = byte_id[static_cast<unsigned char>(piece[0])];
    if (id >= 0) out.push_back(id);
    return;
  }
  if (ignore_merges) {
    std::string mapped;
    static const auto b2c = make_byte_to_cp();
    for (unsigned char c : piece) append_utf8(mapped, b2c[c]);
    if (const int32_t id = vocab.find(mapped); id >= 0) {
      out.push_back(id);
      return;
    }
  }
  const bool cacheable = piece.size() <= PieceCache::kMaxPieceBytes;
  const uint64_t h = cacheable ? PieceCache::hash(piece) : 0;
  if (cacheable && cache.get(piece, h, out)) return;
  const size_t before = out.size();
  bpe_uncached(piece, out);
  if (cacheable) cache.put(piece, h, out.data() + before, out.size() - before);
}

void Tokenizer::Impl::encode_model(std::string_view s, std::vector<int32_t>& out) const {
  thread_local std::vector<uint32_t> ends;
  tok::pre_tokenize(s, ends);
  uint32_t start = 0;
  for (uint32_t e : ends) {
    bpe(s.substr(start, e - start), out);
    start = e;
  }
}

void Tokenizer::Impl::encode_normalizable(std::string_view segment, std::vector<int32_t>& out) const {
  std::string buf;
  std::string_view norm = segment;
  if (nfc && !tok::is_nfc_quick(segment)) {
    buf = tok::nfc(segment);
    norm = buf;
  }
  split_added(norm, normalized_matcher, [&](std::string_view seg, int32_t id) {
    if (id >= 0) out.push_back(id);
    else encode_model(seg, out);
  });
}

void Tokenizer::encode_into(std::string_view text, std::vector<int32_t>& out) const {
  if (!impl_) throw Error("Tokenizer::encode: no tokenizer loaded");
  const size_t bad = utf8::find_invalid(text);
  if (bad != std::string_view::npos)
    throw Error("tokenizer input is not valid UTF-8 (byte offset " + std::to_string(bad) + ", byte 0x" +
                [&] {
                  char h[3];
                  std::snprintf(h, sizeof h, "%02X", static_cast<unsigned char>(text[bad]));
                  return std::string(h);
                }() +
                ")");
  if (text.size() >= (size_t{1} << 32)) throw Error("tokenizer input too large (" + std::to_string(text.size()) + " bytes; limit 4 GiB)");
  const Impl& im = *impl_;
  im.split_added(text, im.raw_matcher, [&](std::string_view seg, int32_t id) {
    if (id >= 0) out.push_back(id);
    else im.encode_normalizable(seg, out);
  });
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  encode_into(text, out);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Decoding and lookups
// ---------------------------------------------------------------------------------------------
std::string_view Tokenizer::token_bytes(int32_t id) const {
  if (!impl_ || id < 0 || id >= impl_->vocab_size) return {};
  const uint32_t a = impl_->bytes_off[static_cast<size_t>(id)], b = impl_->bytes_off[static_cast<size_t>(id) + 1];
  return std::string_view(impl_->bytes_arena).substr(a, b - a);
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  if (!impl_) throw Error("Tokenizer::decode: no tokenizer loaded");
  std::string bytes;
  bytes.reserve(ids.size() * 4);
  for (int32_t id : ids) {
    if (id < 0 || id >= impl_->vocab_size) continue;
    if (skip_special_tokens && (impl_->flags[static_cast<size_t>(id)] & 2)) continue;
    bytes += token_bytes(id);
  }
  if (utf8::find_invalid(bytes) == std::string_view::npos) return bytes;
  std::string out;
  out.reserve(bytes.size() + 8);
  utf8::append_lossy(bytes, out, true);
  return out;
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  if (!impl_) return std::nullopt;
  const std::string key(token);
  if (auto it = impl_->added_by_content.find(key); it != impl_->added_by_content.end()) return it->second;
  if (const int32_t id = impl_->vocab.find(key); id >= 0) return id;
  return std::nullopt;
}

std::string Tokenizer::id_to_token(int32_t id) const {
  if (!impl_ || id < 0 || id >= impl_->vocab_size) return std::string();
  return impl_->id_to_token[static_cast<size_t>(id)];
}

void Tokenizer::clear_cache() const {
  if (impl_) impl_->cache.clear();
}

int32_t Tokenizer::vocab_size() const { return impl_ ? impl_->vocab_size : 0; }

bool Tokenizer::is_special(int32_t id) const {
  return impl_ && id >= 0 && id < impl_->vocab_size && (impl_->flags[static_cast<size_t>(id)] & 2);
}

bool Tokenizer::is_added(int32_t id) const {
  return impl_ && id >= 0 && id < impl_->vocab_size && (impl_->flags[static_cast<size_t>(id)] & 1);
}

const std::vector<AddedToken>& Tokenizer::added_tokens() const {
  static const std::vector<AddedToken> none;
  return impl_ ? impl_->added : none;
}

std::vector<std::string> Tokenizer::pre_tokenize(std::string_view text) {
  QWEN3VL_CHECK(utf8::find_invalid(text) == std::string_view::npos, "pre_tokenize: input is not valid UTF-8");
  std::vector<uint32_t> ends;
  tok::pre_tokenize(text, ends);
  std::vector<std::string> out;
  uint32_t start = 0;
  for (uint32_t e : ends) {
    out.emplace_back(text.substr(start, e - start));
    start = e;
  }
  return out;
}

std::string Tokenizer::nfc(std::string_view text) {
  QWEN3VL_CHECK(utf8::find_invalid(text) == std::string_view::npos, "nfc: input is not valid UTF-8");
  return tok::nfc(text);
}

// ---------------------------------------------------------------------------------------------
// Streaming decoder
// ---------------------------------------------------------------------------------------------
std::string StreamingDecoder::put(int32_t id) {
  if (!tok_.loaded()) throw Error("StreamingDecoder: no tokenizer loaded");
  if (id < 0 || id >= tok_.vocab_size()) return std::string();
  if (skip_special_ && tok_.is_special(id)) return std::string();
  pending_ += tok_.token_bytes(id);
  std::string out;
  const size_t used = utf8::append_lossy(pending_, out, false);
  pending_.erase(0, used);
  return out;
}

std::string StreamingDecoder::flush() {
  std::string out;
  utf8::append_lossy(pending_, out, true);
  pending_.clear();
  return out;
}

}  // namespace qwen3vl

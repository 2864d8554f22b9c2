// Tokenizer tests: every reference case of shared/data/tokenizer-cases.json (HF tokenizers ids),
// llama.cpp's Qwen2 vocab test run as is, HF-generated fuzz cases, a tiny tokenizer.json that
// exercises added-token flags, refusals, invalid UTF-8, and the streaming decoder.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <ctime>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include "common/compare.h"
#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace qwen3vl {
namespace {

using json = nlohmann::json;

std::filesystem::path shared() {
  if (const char* e = std::getenv("QWEN3VL_SHARED_DIR"); e && *e) return e;
  return test::shared_dir();
}

std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  EXPECT_TRUE(f.good()) << "cannot open " << p;
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

const Tokenizer& qwen() {
  static const Tokenizer t = Tokenizer::load(shared() / "data" / "qwen3-tokenizer");
  return t;
}

const json& cases_json() {
  static const json j = json::parse(slurp(shared() / "data" / "tokenizer-cases.json"));
  return j;
}

std::string ids_str(const std::vector<int32_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

std::string escaped(const std::string& s) { return json(s).dump(-1, ' ', true, json::error_handler_t::replace); }

bool valid_utf8(const std::string& s) { return utf8::find_invalid(s) == std::string_view::npos; }

// ---------------------------------------------------------------------------------------------
// Reference cases (HF tokenizers 0.23.2)
// ---------------------------------------------------------------------------------------------
TEST(Tokenizer, VocabularyAndSpecialTokens) {
  const Tokenizer& t = qwen();
  EXPECT_EQ(t.vocab_size(), 151669);
  EXPECT_EQ(t.added_tokens().size(), 26u);
  for (const auto& a : cases_json()["meta"]["added_tokens"]) {
    const int32_t id = a["id"].get<int32_t>();
    const std::string content = a["content"].get<std::string>();
    EXPECT_EQ(t.token_to_id(content), id) << content;
    EXPECT_EQ(t.id_to_token(id), content);
    EXPECT_EQ(t.is_special(id), a["special"].get<bool>()) << content;
    EXPECT_TRUE(t.is_added(id));
    // Matched atomically inside text.
    EXPECT_EQ(t.encode("x" + content + "x"), (std::vector<int32_t>{87, id, 87})) << content;
  }
  // Spec section 7 common ids.
  EXPECT_EQ(t.encode("\n"), std::vector<int32_t>{198});
  EXPECT_EQ(t.encode("\n\n"), std::vector<int32_t>{271});
  EXPECT_EQ(t.encode("user"), std::vector<int32_t>{872});
  EXPECT_EQ(t.encode("assistant"), std::vector<int32_t>{77091});
  EXPECT_EQ(t.encode("system"), std::vector<int32_t>{8948});
  EXPECT_EQ(t.token_to_id("Ġworld"), 1879);
  EXPECT_EQ(t.id_to_token(1879), "Ġworld");
  EXPECT_EQ(t.id_to_token(151669), "");
  EXPECT_EQ(t.id_to_token(-1), "");
  EXPECT_FALSE(t.token_to_id("no such token").has_value());
  EXPECT_FALSE(t.is_special(9707));
  EXPECT_FALSE(t.is_special(151669));
  EXPECT_EQ(t.token_bytes(198), "\n");
  EXPECT_EQ(t.token_bytes(378), "\xE2\x80");  // "âĢ": an incomplete UTF-8 prefix
}

TEST(Tokenizer, ReferenceCasesEncode) {
  const Tokenizer& t = qwen();
  int n = 0, bad = 0;
  for (const auto& c : cases_json()["cases"]) {
    const std::string text = c["text"].get<std::string>();
    const auto want = c["ids"].get<std::vector<int32_t>>();
    const auto got = t.encode(text);
    ++n;
    if (got != want) {
      ++bad;
      ADD_FAILURE() << c["id"].get<std::string>() << " text " << escaped(text) << "\n  ours " << ids_str(got)
                    << "\n  HF   " << ids_str(want);
    }
  }
  std::printf("[tokenizer] %d reference cases, %d mismatches\n", n, bad);
  EXPECT_EQ(n, 294);
}

TEST(Tokenizer, ReferenceCasesDecode) {
  const Tokenizer& t = qwen();
  for (const auto& c : cases_json()["cases"]) {
    const auto ids = c["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(t.decode(ids, false), c["decoded"].get<std::string>()) << c["id"];
    EXPECT_EQ(t.decode(ids, true), c["decoded_skip_special"].get<std::string>()) << c["id"];
    if (c["roundtrip"].get<bool>()) {
      EXPECT_EQ(t.decode(ids), c["text"].get<std::string>()) << c["id"];
    }
  }
  for (const auto& c : cases_json()["decode_cases"]) {
    const auto ids = c["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(t.decode(ids, false), c["decoded"].get<std::string>()) << c["note"];
    EXPECT_EQ(t.decode(ids, true), c["decoded_skip_special"].get<std::string>()) << c["note"];
  }
}

TEST(Tokenizer, ReferenceDocuments) {
  const Tokenizer& t = qwen();
  int n = 0;
  for (const auto& d : cases_json()["documents"]) {
    const std::string text = d["text"].get<std::string>();
    const auto want = d["ids"].get<std::vector<int32_t>>();
    ASSERT_EQ(text.size(), d["utf8_bytes"].get<size_t>());
    const auto got = t.encode(text);
    EXPECT_EQ(got.size(), want.size()) << d["id"];
    size_t first = 0;
    while (first < std::min(got.size(), want.size()) && got[first] == want[first]) ++first;
    EXPECT_TRUE(got == want) << d["id"] << ": first difference at token " << first;
    if (d["roundtrip"].get<bool>()) {
      EXPECT_EQ(t.decode(want), text) << d["id"];
    }
    ++n;
  }
  EXPECT_EQ(n, 4);
}

// llama.cpp tests/test-tokenizer-0.cpp, read exactly as it does: inputs are separated by
// "\n__ggml_vocab_test__\n" (so each input keeps its own leading/trailing newlines except the
// one newline that belongs to the separator line), the text after the last separator is one
// more input unless empty, and output line i (trimmed) holds the space-separated ids.
TEST(Tokenizer, LlamaCppQwen2VocabTest) {
  const std::string inp = slurp(shared() / "data" / "peer-tests" / "llama.cpp-qwen2-vocab.inp");
  const std::string outp = slurp(shared() / "data" / "peer-tests" / "llama.cpp-qwen2-vocab.out");
  std::vector<std::string> sinp, sout;
  {
    std::istringstream ss(outp);
    for (std::string line; std::getline(ss, line);) sout.push_back(line);
  }
  const std::string sep = "\n__ggml_vocab_test__\n";
  for (size_t pos = 0; pos < inp.size();) {
    const size_t next = inp.find(sep, pos);
    if (next == std::string::npos) {
      sinp.push_back(inp.substr(pos));
      break;
    }
    sinp.push_back(inp.substr(pos, next - pos));
    pos = next + sep.size();
  }
  ASSERT_EQ(sinp.size(), sout.size()) << "input and output files have different numbers of tests";
  ASSERT_GT(sinp.size(), 30u);
  const Tokenizer& t = qwen();
  for (size_t i = 0; i < sinp.size(); ++i) {
    std::vector<int32_t> want;
    std::istringstream ls(sout[i]);
    for (int32_t x; ls >> x;) want.push_back(x);
    EXPECT_EQ(ids_str(t.encode(sinp[i])), ids_str(want)) << "test #" << i << " input " << escaped(sinp[i]);
  }
}

// Random strings from tricky atoms, ids from HF tokenizers (tools/reference/make_tokenizer_fixtures.py).
TEST(Tokenizer, FuzzCasesMatchHF) {
  const json j = json::parse(slurp(test::fixtures_dir() / "tokenizer" / "fuzz_cases.json"));
  const Tokenizer& t = qwen();
  int n = 0, bad = 0;
  for (const auto& c : j["cases"]) {
    const std::string text = c["text"].get<std::string>();
    const auto want = c["ids"].get<std::vector<int32_t>>();
    const auto got = t.encode(text);
    ++n;
    if (got != want && ++bad <= 20)
      ADD_FAILURE() << "text " << escaped(text) << "\n  ours " << ids_str(got) << "\n  HF   " << ids_str(want);
    EXPECT_EQ(t.decode(want, false), c["decoded"].get<std::string>()) << escaped(text);
    EXPECT_EQ(t.decode(want, true), c["decoded_skip_special"].get<std::string>()) << escaped(text);
  }
  std::printf("[tokenizer] %d fuzz cases, %d mismatches\n", n, bad);
  EXPECT_EQ(bad, 0);
  EXPECT_EQ(n, 1500);
}

// ---------------------------------------------------------------------------------------------
// Edge cases
// ---------------------------------------------------------------------------------------------
TEST(Tokenizer, EmptyAndTrivial) {
  const Tokenizer& t = qwen();
  EXPECT_TRUE(t.encode("").empty());
  EXPECT_EQ(t.decode(std::vector<int32_t>{}), "");
  EXPECT_EQ(t.encode(" "), std::vector<int32_t>{220});
  // Embedded NUL is a normal character (byte 0 -> "Ā", id 188).
  EXPECT_EQ(t.encode(std::string_view("a\0b", 3)), (std::vector<int32_t>{64, 188, 65}));
  EXPECT_EQ(t.decode(std::vector<int32_t>{64, 188, 65}), std::string("a\0b", 3));
  // encode_into appends.
  std::vector<int32_t> out{1, 2};
  t.encode_into("hello world", out);
  EXPECT_EQ(out, (std::vector<int32_t>{1, 2, 14990, 1879}));
}

TEST(Tokenizer, InvalidUtf8InputIsRejected) {
  // HF cannot receive these (Python str / Rust &str are always valid), so we refuse clearly.
  const Tokenizer& t = qwen();
  const std::vector<std::string> bad = {
      "abc\x80",          // lone continuation byte
      "\xC3",             // truncated 2-byte sequence
      "x\xE2\x82",        // truncated 3-byte sequence
      "\xC0\x80",         // overlong NUL
      "\xE0\x80\xAF",     // overlong '/'
      "\xED\xA0\x80",     // UTF-16 surrogate
      "\xF4\x90\x80\x80", // above U+10FFFF
      "\xF5\x80\x80\x80", // invalid lead
      "\xFF",
      "<|im_start|>\xFE<|im_end|>",
  };
  for (const auto& s : bad) {
    try {
      t.encode(s);
      ADD_FAILURE() << "no error for " << escaped(s);
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("not valid UTF-8"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("byte offset"), std::string::npos) << e.what();
    }
  }
  try {
    t.encode("ab\xFF");
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("offset 2"), std::string::npos) << e.what();
  }
  // Valid 4-byte and boundary characters are accepted.
  EXPECT_FALSE(t.encode("\xF4\x8F\xBF\xBF").empty());  // U+10FFFF
  EXPECT_FALSE(t.encode("\xEF\xBF\xBF").empty());      // U+FFFF
}

TEST(Tokenizer, SpecialTokensAreAtomicAndNotFormedAcrossPieces) {
  const Tokenizer& t = qwen();
  const auto im_end = *t.token_to_id("<|im_end|>");
  // Adjacent specials, specials at both ends, repeated.
  EXPECT_EQ(t.encode("<|im_start|><|im_end|>"), (std::vector<int32_t>{151644, 151645}));
  EXPECT_EQ(t.encode("<|im_end|><|im_end|>"), (std::vector<int32_t>{151645, 151645}));
  // A special token split across two encode calls (or with a character inside) is plain text.
  for (const std::string s : {"<|im_", "end|>", "<|im_end|", "|im_end|>", "<|im end|>", "<|IM_END|>", "< |im_end|>"}) {
    auto ids = t.encode(s);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), im_end), 0) << s;
    EXPECT_EQ(t.decode(ids), s);
  }
  // Not split by a preceding partial: "<|<|im_end|>" = "<|" + special.
  auto ids = t.encode("<|<|im_end|>");
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids.back(), im_end);
  EXPECT_EQ(t.decode(ids), "<|<|im_end|>");
  // No lstrip/rstrip on Qwen tokens: spaces around stay as text.
  EXPECT_EQ(t.decode(t.encode(" <|im_end|> ")), " <|im_end|> ");
  // The special tokens are matched before NFC: an NFD neighbour does not disturb them.
  EXPECT_EQ(t.encode("e\xCC\x81<|im_end|>"), (std::vector<int32_t>{963, 151645}));
}

TEST(Tokenizer, PreTokenizerPieces) {
  using V = std::vector<std::string>;
  // Hand-derived from the regex semantics (see unicode.cpp); the fuzz and reference cases
  // check the same matcher against HF end to end.
  EXPECT_EQ(Tokenizer::pre_tokenize("Hello  world"), (V{"Hello", " ", " world"}));
  EXPECT_EQ(Tokenizer::pre_tokenize("don't I'LL"), (V{"don", "'t", " I", "'LL"}));
  EXPECT_EQ(Tokenizer::pre_tokenize("it'\xC5\xBF"), (V{"it", "'\xC5\xBF"}));  // 'ſ is no contraction
  EXPECT_EQ(Tokenizer::pre_tokenize("x = 123;\n\n  y"), (V{"x", " =", " ", "1", "2", "3", ";\n\n", " ", " y"}));
  EXPECT_EQ(Tokenizer::pre_tokenize("a \n \n  b  "), (V{"a", " \n \n", " ", " b", "  "}));
  EXPECT_EQ(Tokenizer::pre_tokenize("\t\tfoo"), (V{"\t", "\tfoo"}));
  EXPECT_EQ(Tokenizer::pre_tokenize("(word) ..."), (V{"(word", ")", " ..."}));
  EXPECT_EQ(Tokenizer::pre_tokenize("\xC2\x85x"), (V{"\xC2\x85x"}));           // U+0085 is \s but not \r\n
  EXPECT_EQ(Tokenizer::pre_tokenize(" \xEF\xBB\xBF"), (V{" \xEF\xBB\xBF"}));  // U+FEFF is not \s
  EXPECT_EQ(Tokenizer::pre_tokenize(""), V{});
  EXPECT_EQ(Tokenizer::nfc("e\xCC\x81"), "\xC3\xA9");
  EXPECT_EQ(Tokenizer::nfc("\xE2\x84\xAB"), "\xC3\x85");  // ANGSTROM SIGN -> Å
  // HF's NFC tables predate some Unicode additions (checked with tokenizers 0.22.2):
  // U+11935 U+11930 stays (utf8proc alone would compose U+11938), U+1AC1 (ccc 230, Unicode 14)
  // is not reordered after U+0316 (ccc 220), while U+0301 is and composes with a.
  EXPECT_EQ(Tokenizer::nfc("\U00011935\U00011930"), "\U00011935\U00011930");
  EXPECT_EQ(Tokenizer::nfc("a\u1ac1\u0316"), "a\u1ac1\u0316");
  EXPECT_EQ(Tokenizer::nfc("a\u0301\u0316"), "\u00e1\u0316");
  EXPECT_EQ(Tokenizer::nfc("e\u0301\u1ac1e\u0301"), "\u00e9\u1ac1\u00e9");
  EXPECT_EQ(Tokenizer::nfc("\u0b47\u0b3e"), "\u0b4b");
}

TEST(Tokenizer, LongInputsStayLinear) {
  const Tokenizer& t = qwen();
  using clk = std::chrono::steady_clock;
  const auto t0 = clk::now();
  // One 100 KB "word" (a single pre-tokenizer piece: BPE with the heap, not cached), a 100 KB
  // whitespace run, alternating newlines, and a long run of punctuation.
  const std::string word(100000, 'a');
  auto ids = t.encode(word);
  EXPECT_EQ(t.decode(ids), word);
  EXPECT_LT(ids.size(), word.size() / 2);
  std::string spaces(100000, ' ');
  spaces += "x";
  ids = t.encode(spaces);
  EXPECT_EQ(t.decode(ids), spaces);
  std::string nl;
  for (int i = 0; i < 30000; ++i) nl += (i % 3) ? " " : "\n";
  EXPECT_EQ(t.decode(t.encode(nl)), nl);
  const std::string punct(100000, '!');
  EXPECT_EQ(t.decode(t.encode(punct)), punct);
  const double s = std::chrono::duration<double>(clk::now() - t0).count();
  EXPECT_LT(s, 60.0) << "quadratic behaviour?";  // linear: ~0.2 s CPU in release; quadratic: minutes
}

TEST(Tokenizer, ConcurrentEncodeSharesTheCacheSafely) {
  const Tokenizer t = Tokenizer::load(test::fixtures_dir() / "tokenizer" / "tiny_tokenizer.json");
  const Tokenizer& q = qwen();
  std::vector<std::string> docs;
  std::vector<std::vector<int32_t>> want;
  for (const auto& d : cases_json()["documents"]) {
    docs.push_back(d["text"].get<std::string>());
    want.push_back(d["ids"].get<std::vector<int32_t>>());
  }
  std::vector<std::thread> th;
  std::vector<int> ok(4, 0);
  for (int k = 0; k < 4; ++k)
    th.emplace_back([&, k] {
      const Tokenizer copy = q;  // copies share tables and cache
      for (size_t i = 0; i < docs.size(); ++i) {
        const size_t j = (i + static_cast<size_t>(k)) % docs.size();
        ok[static_cast<size_t>(k)] += copy.encode(docs[j]) == want[j];
        ok[static_cast<size_t>(k)] += t.encode("hello world") == std::vector<int32_t>{259, 264};
      }
    });
  for (auto& x : th) x.join();
  for (int k = 0; k < 4; ++k) EXPECT_EQ(ok[static_cast<size_t>(k)], static_cast<int>(2 * docs.size())) << k;
}

// ---------------------------------------------------------------------------------------------
// Tiny tokenizer.json: legacy string merges, added-token flags (HF-generated expectations)
// ---------------------------------------------------------------------------------------------
TEST(Tokenizer, TinyTokenizerAddedTokenFlags) {
  const Tokenizer t = Tokenizer::load(test::fixtures_dir() / "tokenizer" / "tiny_tokenizer.json");
  const json j = json::parse(slurp(test::fixtures_dir() / "tokenizer" / "tiny_cases.json"));
  int n = 0;
  for (const auto& c : j["cases"]) {
    const std::string text = c["text"].get<std::string>();
    EXPECT_EQ(ids_str(t.encode(text)), ids_str(c["ids"].get<std::vector<int32_t>>())) << escaped(text);
    const auto ids = c["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(t.decode(ids, false), c["decoded"].get<std::string>()) << escaped(text);
    EXPECT_EQ(t.decode(ids, true), c["decoded_skip_special"].get<std::string>()) << escaped(text);
    const auto toks = c["tokens"].get<std::vector<std::string>>();
    for (size_t i = 0; i < ids.size(); ++i)
      if (!t.is_added(ids[i])) {
        EXPECT_EQ(t.id_to_token(ids[i]), toks[i]);
      }
    ++n;
  }
  EXPECT_GE(n, 30);
}

TEST(Tokenizer, MergesPairAndStringFormsAgree) {
  json j = json::parse(slurp(test::fixtures_dir() / "tokenizer" / "tiny_tokenizer.json"));
  const Tokenizer a = Tokenizer::from_json(j.dump());
  json pairs = json::array();
  for (const auto& m : j["model"]["merges"]) {
    const std::string s = m.get<std::string>();
    const size_t sp = s.find(' ');
    pairs.push_back(json::array({s.substr(0, sp), s.substr(sp + 1)}));
  }
  j["model"]["merges"] = pairs;
  const Tokenizer b = Tokenizer::from_json(j.dump());
  for (const std::string s : {"hello world", "aaaa aaaaa", "hello  world <s>!", "caf\xC3\xA9"}) {
    EXPECT_EQ(a.encode(s), b.encode(s)) << s;
  }
  EXPECT_EQ(a.encode("hello world"), (std::vector<int32_t>{259, 264}));
}

TEST(Tokenizer, RefusesUnsupportedStructureNamingTheField) {
  const json base = json::parse(slurp(test::fixtures_dir() / "tokenizer" / "tiny_tokenizer.json"));
  struct Case {
    const char* field;  // expected in the message
    std::function<void(json&)> edit;
  };
  const std::vector<Case> cases = {
      {"normalizer", [](json& j) { j["normalizer"] = {{"type", "NFKC"}}; }},
      {"normalizer.normalizers[1]",
       [](json& j) { j["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "NFC"}}, {{"type", "Lowercase"}}}}}; }},
      {"pre_tokenizer", [](json& j) { j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}}; }},
      {"pre_tokenizer.pretokenizers[0].pattern.Regex",
       [](json& j) { j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\s+|\\w+"; }},
      {"pre_tokenizer.pretokenizers[0].behavior",
       [](json& j) { j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed"; }},
      {"pre_tokenizer.pretokenizers[1].add_prefix_space",
       [](json& j) { j["pre_tokenizer"]["pretokenizers"][1]["add_prefix_space"] = true; }},
      {"pre_tokenizer.pretokenizers[1].use_regex",
       [](json& j) { j["pre_tokenizer"]["pretokenizers"][1]["use_regex"] = true; }},
      {"decoder", [](json& j) { j["decoder"] = {{"type", "WordPiece"}}; }},
      {"decoder", [](json& j) { j.erase("decoder"); }},
      {"post_processor", [](json& j) { j["post_processor"] = {{"type", "TemplateProcessing"}}; }},
      {"model.type", [](json& j) { j["model"]["type"] = "WordPiece"; }},
      {"model.continuing_subword_prefix", [](json& j) { j["model"]["continuing_subword_prefix"] = "##"; }},
      {"model.dropout", [](json& j) { j["model"]["dropout"] = 0.1; }},
      {"model.merges[2]", [](json& j) { j["model"]["merges"][2] = "he ll o"; }},
      {"model.merges[0]", [](json& j) { j["model"]["merges"][0] = "h zzz"; }},
      {"model.vocab", [](json& j) { j["model"].erase("vocab"); }},
      {"added_tokens[0]", [](json& j) { j["added_tokens"][0].erase("content"); }},
      {"added_tokens[1].lstrip", [](json& j) { j["added_tokens"][1]["lstrip"] = "yes"; }},
      {"padding", [](json& j) { j["padding"] = {{"strategy", "BatchLongest"}}; }},
  };
  for (const auto& c : cases) {
    json j = base;
    c.edit(j);
    try {
      Tokenizer::from_json(j.dump(), "my/tokenizer.json");
      ADD_FAILURE() << "accepted a tokenizer.json with a bad " << c.field;
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(std::string(c.field) + ":"), std::string::npos) << msg;
      EXPECT_NE(msg.find("my/tokenizer.json"), std::string::npos) << msg;
    }
  }
  EXPECT_THROW(Tokenizer::from_json("{not json"), Error);
  EXPECT_THROW(Tokenizer::load("/nonexistent/dir"), Error);
  // The unmodified base loads.
  EXPECT_NO_THROW(Tokenizer::from_json(base.dump()));
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------
TEST(Tokenizer, LossyDecodeMatchesRustFromUtf8Lossy) {
  // Maximal-subpart replacement, as String::from_utf8_lossy.
  auto lossy = [](std::string_view b) {
    std::string out;
    utf8::append_lossy(b, out, true);
    return out;
  };
  const std::string R = "\xEF\xBF\xBD";
  EXPECT_EQ(lossy("\xE2\x80"), R);
  EXPECT_EQ(lossy("\xF0\x9F\x98"), R);
  EXPECT_EQ(lossy("\xC0\x80"), R + R);
  EXPECT_EQ(lossy("\xED\xA0\x80"), R + R + R);
  EXPECT_EQ(lossy("\xF4\x90\x80\x80"), R + R + R + R);
  EXPECT_EQ(lossy("a\xE2\x80" "b"), "a" + R + "b");
  EXPECT_EQ(lossy("\xE2\x80\xE2\x80\x8D"), R + "\xE2\x80\x8D");
  EXPECT_EQ(lossy("\x80\x80"), R + R);
  EXPECT_EQ(lossy("\xF0\x9F\x98\x80"), "\xF0\x9F\x98\x80");
  // Not final: an incomplete tail is left for later.
  std::string out;
  EXPECT_EQ(utf8::append_lossy("ab\xF0\x9F\x98", out, false), 2u);
  EXPECT_EQ(out, "ab");
  // Unknown ids are dropped (HF returns "" for them).
  EXPECT_EQ(qwen().decode(std::vector<int32_t>{9707, -5, 151935, 1 << 30, 1879}), "Hello world");
}

TEST(Tokenizer, StreamingDecoderEmitsWholeCharacters) {
  const Tokenizer& t = qwen();
  auto stream = [&](const std::vector<int32_t>& ids, bool skip, bool& all_valid) {
    StreamingDecoder d(t, skip);
    std::string acc;
    all_valid = true;
    for (int32_t id : ids) {
      std::string piece = d.put(id);
      if (!valid_utf8(piece)) all_valid = false;
      acc += piece;
    }
    std::string tail = d.flush();
    if (!valid_utf8(tail)) all_valid = false;
    return acc + tail;
  };
  // An emoji split across byte-level tokens: nothing until the last byte arrives.
  {
    const auto ids = t.encode("\xF0\x9F\xAB\xA8");  // U+1FAE8 -> 3 byte-level tokens
    ASSERT_EQ(ids, (std::vector<int32_t>{9284, 104, 101}));
    StreamingDecoder d(t);
    for (size_t i = 0; i + 1 < ids.size(); ++i) EXPECT_EQ(d.put(ids[i]), "") << i;
    EXPECT_EQ(d.put(ids.back()), "\xF0\x9F\xAB\xA8");
    EXPECT_EQ(d.flush(), "");
  }
  {
    StreamingDecoder d(t);
    EXPECT_EQ(d.put(378), "");  // E2 80
    EXPECT_EQ(d.pending_bytes(), 2u);
    EXPECT_EQ(d.put(235), "\xE2\x80\x8D");  // + 8D = ZWJ
    EXPECT_EQ(d.put(145367), "\xF0\x9F\x91\xA8");
    EXPECT_EQ(d.put(378), "");
    EXPECT_EQ(d.put(9707), "\xEF\xBF\xBDHello");  // the dangling E2 80 is decided invalid now
    EXPECT_EQ(d.put(378), "");
    EXPECT_EQ(d.flush(), "\xEF\xBF\xBD");
  }
  // Every reference case and document: chunks are valid UTF-8 and concatenate to decode().
  int n = 0;
  for (const char* key : {"cases", "decode_cases", "documents"}) {
    for (const auto& c : cases_json()[key]) {
      const auto ids = c["ids"].get<std::vector<int32_t>>();
      for (bool skip : {false, true}) {
        bool ok = true;
        EXPECT_EQ(stream(ids, skip, ok), t.decode(ids, skip)) << key << " " << c.value("id", c.value("note", ""));
        EXPECT_TRUE(ok);
        ++n;
      }
    }
  }
  EXPECT_GT(n, 600);
}

// ---------------------------------------------------------------------------------------------
// Throughput (printed; HF numbers come from tools/reference/processor_tokenizer_bench.py)
// ---------------------------------------------------------------------------------------------
TEST(Tokenizer, EncodeThroughputOnDocuments) {
  std::vector<std::string> docs;
  size_t bytes = 0;
  for (const auto& d : cases_json()["documents"]) {
    docs.push_back(d["text"].get<std::string>());
    bytes += docs.back().size();
  }
  // Process CPU time (the machine may be shared) and wall time; the first pass runs with a
  // cold BPE cache.
  auto cpu_now = [] {
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
  };
  using clk = std::chrono::steady_clock;
  const Tokenizer& t = qwen();
  t.clear_cache();
  size_t tokens = 0;
  double c0 = cpu_now();
  auto w0 = clk::now();
  for (const auto& d : docs) tokens += t.encode(d).size();
  const double cold_cpu = cpu_now() - c0;
  const double cold_wall = std::chrono::duration<double>(clk::now() - w0).count();
  int reps = 0;
  c0 = cpu_now();
  w0 = clk::now();
  double warm_cpu = 0;
  while (warm_cpu < 0.3) {
    for (const auto& d : docs) tokens += t.encode(d).size();
    ++reps;
    warm_cpu = cpu_now() - c0;
  }
  const double warm_wall = std::chrono::duration<double>(clk::now() - w0).count();
  std::printf("[tokenizer] encode %zu bytes of documents, MB/s by CPU time (wall): cold cache %.2f (%.2f), "
              "warm %.2f (%.2f), %d reps\n",
              bytes, bytes / cold_cpu / 1e6, bytes / cold_wall / 1e6, bytes * reps / warm_cpu / 1e6,
              bytes * reps / warm_wall / 1e6, reps);
  EXPECT_EQ(tokens, static_cast<size_t>(reps + 1) * (2273 + 6143 + 2030 + 8341));
}

}  // namespace
}  // namespace qwen3vl

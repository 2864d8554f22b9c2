// qwen3vl tokenize: text -> ids (JSON array) and ids -> text with a checkpoint's tokenizer.json.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>

#include "cli/command.h"
#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace qwen3vl::cli {

static std::string read_stdin() {
  std::ios::sync_with_stdio(false);
  std::string s((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  return s;
}

static int cmd_tokenize(Args& a) {
  if (a.flag({"--help", "-h"})) {
    std::printf(
        "usage: qwen3vl tokenize -m DIR|tokenizer.json [--text STR]          text -> ids\n"
        "       qwen3vl tokenize -m DIR|tokenizer.json --decode [--skip-special] ids -> text\n"
        "Encode reads UTF-8 text from stdin (all of it, trailing newline included; or --text) and\n"
        "prints the ids as a JSON array, like HF tokenizer.encode(text) (added/special tokens in the\n"
        "text are matched; Qwen adds no BOS/EOS). --decode reads a JSON array of ids from stdin and\n"
        "prints the text exactly (no newline added), like HF tokenizer.decode(ids,\n"
        "skip_special_tokens); unknown ids are dropped, invalid UTF-8 becomes U+FFFD.\n");
    return 0;
  }
  auto model = a.get({"-m", "--model"});
  const bool decode = a.flag({"--decode", "-d"});
  const bool skip_special = a.flag({"--skip-special", "--skip-special-tokens"});
  auto text_arg = a.get({"--text"});
  a.reject_unknown();
  if (!a.positional().empty()) throw Error("tokenize: unexpected argument '" + a.positional()[0] + "'");
  if (!model) throw Error("tokenize: -m DIR (a checkpoint folder with tokenizer.json, or the file) is required");
  if (skip_special && !decode) throw Error("tokenize: --skip-special only applies with --decode");
  if (text_arg && decode) throw Error("tokenize: --text is for encoding; --decode reads ids from stdin");

  const Tokenizer tok = Tokenizer::load(*model);
  if (!decode) {
    const std::string text = text_arg ? *text_arg : read_stdin();
    const std::vector<int32_t> ids = tok.encode(text);
    std::string out = "[";
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i) out += ", ";
      out += std::to_string(ids[i]);
    }
    out += "]\n";
    std::fwrite(out.data(), 1, out.size(), stdout);
    return 0;
  }

  const std::string in = read_stdin();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("tokenize --decode: stdin is not a JSON array of ids: ") + e.what());
  }
  if (!j.is_array()) throw Error("tokenize --decode: stdin must be a JSON array of ids, e.g. [9707, 1879]");
  std::vector<int32_t> ids;
  ids.reserve(j.size());
  for (size_t i = 0; i < j.size(); ++i) {
    const auto& v = j[i];
    if (!v.is_number_integer() || (v.is_number_unsigned() ? v.get<uint64_t>() > 0xFFFFFFFFull : v.get<int64_t>() < 0))
      throw Error("tokenize --decode: element " + std::to_string(i) + " is not a token id (integer 0..2^32-1): " +
                  v.dump());
    const uint64_t x = v.get<uint64_t>();
    ids.push_back(x > 0x7FFFFFFFull ? -1 : static_cast<int32_t>(x));  // beyond any vocab: dropped like HF
  }
  const std::string text = tok.decode(ids, skip_special);
  std::fwrite(text.data(), 1, text.size(), stdout);
  return 0;
}
QWEN3VL_COMMAND("tokenize", "text -> token ids (JSON) or --decode ids -> text with a tokenizer.json", cmd_tokenize,
                {"--decode", "-d", "--skip-special", "--skip-special-tokens", "--help", "-h"});

}  // namespace qwen3vl::cli

// Generated test checkpoints (fixture contract: tools/reference/README.md): a fixture's metadata
// names the make-model arguments and the FNV-1a 64 of the checkpoint it was produced from; the
// checkpoint is generated once per build tree and reused.
#pragma once

#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <map>
#include <string>

#include "core/error.h"
#include "model/make_model.h"
#include "common/compare.h"

namespace qwen3vl::test {

// FNV-1a 64 over every *.safetensors file of `dir` in sorted name order, 16 lowercase hex digits.
inline std::string checkpoint_fnv1a64(const std::filesystem::path& dir) { return qwen3vl::checkpoint_fnv1a64(dir); }

// "--preset tiny --seed 0 --dtype f32" -> "preset-tiny_seed-0_dtype-f32"
inline std::string sanitise_args(const std::string& args) {
  std::string out;
  bool after_flag = false;
  size_t i = 0;
  while (i < args.size()) {
    while (i < args.size() && std::isspace(static_cast<unsigned char>(args[i]))) ++i;
    if (i >= args.size()) break;
    size_t j = i;
    while (j < args.size() && !std::isspace(static_cast<unsigned char>(args[j]))) ++j;
    std::string tok = args.substr(i, j - i);
    i = j;
    bool is_flag = tok.rfind("--", 0) == 0;
    if (is_flag) tok = tok.substr(2);
    std::string clean;
    for (char c : tok) clean += (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-') ? c : '_';
    if (!out.empty()) out += after_flag && !is_flag ? "-" : "_";
    out += clean;
    after_flag = is_flag;
  }
  return out;
}

// Generates (or reuses) the checkpoint described by args into <build>/test-models/<sanitised>.
// No hash check. Safe against concurrent test processes (build in a temp dir, then rename).
inline std::filesystem::path generated_model(const std::string& args) {
  namespace fs = std::filesystem;
  fs::path root = binary_dir() / "test-models";
  fs::path dir = root / sanitise_args(args);
  std::error_code ec;
  if (fs::exists(dir / "config.json", ec)) return dir;
  fs::create_directories(root, ec);
  static std::atomic<int> counter{0};
  fs::path tmp = root / (".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-" +
                         std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
  MakeModelOptions o = parse_make_model_args(args);
  o.out = tmp;
  fs::path tok = shared_dir() / "data" / "qwen3-tokenizer";
  if (o.write_tokenizer && o.tokenizer_dir.empty() && fs::exists(tok / "tokenizer.json", ec)) o.tokenizer_dir = tok;
  make_model(o);
  fs::rename(tmp, dir, ec);
  if (ec) fs::remove_all(tmp, ec);  // another process won the race: use its copy
  return dir;
}

// Fixture contract: reads md["make_model_args"], generates/reuses the checkpoint, checks
// md["checkpoint_fnv1a64"]. On mismatch the test fails (ADD_FAILURE) with the "stale" message
// and the path is still returned.
inline std::filesystem::path model_for_fixture(const std::map<std::string, std::string>& md) {
  namespace fs = std::filesystem;
  auto a = md.find("make_model_args");
  if (a == md.end()) {
    ADD_FAILURE() << "fixture metadata has no make_model_args: regenerate with tools/reference/make_fixtures.sh";
    return {};
  }
  fs::path dir = generated_model(a->second);
  auto h = md.find("checkpoint_fnv1a64");
  if (h == md.end()) {
    ADD_FAILURE() << "fixture metadata has no checkpoint_fnv1a64: regenerate with tools/reference/make_fixtures.sh";
    return dir;
  }
  std::string got = checkpoint_fnv1a64(dir);
  if (got != h->second) {
    // Maybe a checkpoint left by an older build of make-model: regenerate once and re-check.
    std::error_code ec;
    fs::path old = dir;
    old += ".old-" + std::to_string(::getpid());
    fs::rename(dir, old, ec);
    fs::remove_all(old, ec);
    dir = generated_model(a->second);
    got = checkpoint_fnv1a64(dir);
  }
  if (got != h->second)
    ADD_FAILURE() << "fixture is stale: regenerate with tools/reference/make_fixtures.sh (make-model args '"
                  << a->second << "': checkpoint fnv1a64 " << got << ", fixture says " << h->second << ")";
  return dir;
}

}  // namespace qwen3vl::test

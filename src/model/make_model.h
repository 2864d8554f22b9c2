// make-model: writes a complete HF-format Qwen3-VL checkpoint folder with deterministic random
// weights (config.json, safetensors shard(s) [+ index], tokenizer files, chat template,
// preprocessor / video preprocessor / generation configs). Streams every tensor chunk-wise, so
// even the 32B preset is written with a few MB of RAM.
//
// Values: for tensor `name`, element i is derived from splitmix64(key(seed, name) + (i+1)*gamma)
// (own integer RNG, no libm in the per-element path, identical bytes on every machine):
//   u = (int32(top 24 bits) - 2^23) * 2^-23  in [-1, 1)  (exact in float)
//   matrices / embeddings / biases: u * a, a = float(init_std * sqrt(3))  (std = init_std)
//   norm weights: 1 + u / 8
// computed in f32 and rounded to the checkpoint dtype (round to nearest even), so a bf16
// checkpoint is exactly the f32 checkpoint of the same seed rounded to bf16.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "model/config.h"

namespace qwen3vl {

struct MakeModelOptions {
  std::string preset = "tiny";
  std::filesystem::path out;
  DType dtype = DType::BF16;        // BF16, F16 or F32
  uint64_t seed = 0;
  double init_std = 0.02;
  std::filesystem::path tokenizer_dir;  // empty: default_tokenizer_dir() (none found: not written)
  bool write_tokenizer = true;
  uint64_t shard_size = 5000000000ull;  // bytes per shard like HF's "5GB"; 0 = never shard
  std::optional<Qwen3VLConfig> config;  // overrides the preset when set
  bool quiet = true;                    // progress lines on stderr when false
};

// Parses `--preset P --out DIR --dtype bf16|f16|f32 --seed N --init-std X --tokenizer DIR
// --no-tokenizer --shard-size 5GB|500MB|123|0` ("--name=value" also accepted). Throws Error on
// unknown flags or bad values. Shared by the CLI and tests/common/models.h.
MakeModelOptions parse_make_model_args(const std::vector<std::string>& args);
// Splits a command-line string on whitespace and parses it.
MakeModelOptions parse_make_model_args(const std::string& args);
// "5GB" -> 5e9, "500MB" -> 5e8, "64KiB" -> 65536, "123" -> 123 (bytes). Throws on garbage.
uint64_t parse_size(const std::string& s);

struct MakeModelResult {
  std::filesystem::path dir;
  std::vector<std::string> weight_files;  // file names, in order
  int64_t num_parameters = 0;             // tied embeddings counted once
  uint64_t data_bytes = 0;                // sum of tensor bytes
  bool wrote_tokenizer = false;
};

MakeModelResult make_model(const MakeModelOptions& opts);

// Where the real Qwen3 tokenizer lives by default: $QWEN3VL_SHARED_DIR/data/qwen3-tokenizer, or
// ../shared/data/qwen3-tokenizer relative to the working directory or to any ancestor of the
// running executable. Empty path when none exists.
std::filesystem::path default_tokenizer_dir();

// The value make-model writes for element `i` of tensor `name` (as f32, before dtype rounding).
// Exposed for tests.
float make_model_value(uint64_t seed, const std::string& name, bool is_norm, double init_std, uint64_t i);

// FNV-1a 64 over every *.safetensors file of `dir` in sorted file-name order, 16 hex digits
// (the fixture contract's checkpoint_fnv1a64).
std::string checkpoint_fnv1a64(const std::filesystem::path& dir);

}  // namespace qwen3vl

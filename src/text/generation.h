// Token generation: logits processors (HF semantics), seeded sampling, stop conditions,
// streaming.
//
// Per step, on the f32 logits of the last position (HF order):
//   repetition_penalty (HF: every distinct id of prompt + generated, l<0 ? l*p : l/p)
//   presence/frequency penalty (OpenAI/vLLM: generated ids only, l -= presence + frequency*count)
//   greedy: argmax (lowest index wins ties, as torch.argmax)
//   sampling: temperature -> top_k -> top_p -> min_p -> sample from softmax
// Sampling uses our own std::mt19937_64 with a fixed integer->double mapping, so a seed gives
// the same tokens on every platform.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "text/kv_cache.h"
#include "text/qwen3vl_model.h"

namespace qwen3vl {

struct GenerationConfig {
  bool do_sample = false;              // false: greedy
  float temperature = 1.0f;            // <= 0 with do_sample: greedy
  int top_k = 50;                      // 0: off
  float top_p = 1.0f;                  // >= 1: off
  float min_p = 0.0f;                  // 0: off
  float repetition_penalty = 1.0f;     // 1: off
  float presence_penalty = 0.0f;       // 0: off (not an HF field; vLLM/OpenAI semantics)
  float frequency_penalty = 0.0f;      // 0: off (vLLM/OpenAI)
  int64_t max_new_tokens = 512;
  std::vector<int64_t> eos_token_id;   // stop on any of these (the token is kept in the output)
  std::optional<int64_t> pad_token_id, bos_token_id;
  std::vector<std::string> stop_strings;  // need a detokenizer
  uint64_t seed = 0;

  // Fields of an HF generation_config.json over `base` (missing fields keep base values;
  // eos_token_id may be an int or a list). Throws Error naming a field of the wrong type.
  static GenerationConfig from_json(const nlohmann::json& j, const GenerationConfig& base);
  static GenerationConfig from_json(const nlohmann::json& j);
  static GenerationConfig load(const std::filesystem::path& generation_config_json, const GenerationConfig& base);
  static GenerationConfig load(const std::filesystem::path& generation_config_json);
  // <dir>/generation_config.json if present, else defaults; eos from config.json when the file
  // gives none.
  static GenerationConfig for_model(const std::filesystem::path& model_dir, const Qwen3VLConfig& config);
  void validate() const;  // throws Error on out-of-range values
  bool greedy() const { return !do_sample || temperature <= 0.0f; }
};

// ---- Logits processors, in place on one row of logits (exposed for tests) --------------------
void apply_repetition_penalty(std::vector<float>& logits, const std::vector<int64_t>& context, float penalty);
void apply_presence_frequency_penalty(std::vector<float>& logits, const std::vector<int64_t>& generated,
                                      float presence, float frequency);
void apply_temperature(std::vector<float>& logits, float temperature);
void apply_top_k(std::vector<float>& logits, int top_k);    // keeps ties with the k-th value
void apply_top_p(std::vector<float>& logits, float top_p);  // keeps at least the top token
void apply_min_p(std::vector<float>& logits, float min_p);  // keeps at least the top token
int64_t argmax(const float* logits, int64_t n);             // lowest index on ties
// top1 - top2 of a logits row (the greedy decision margin).
float top2_margin(const float* logits, int64_t n);

class Sampler {
 public:
  explicit Sampler(const GenerationConfig& cfg);
  // Picks the next token from raw logits [vocab] (copied), given prompt and generated ids.
  int64_t next(const float* logits, int64_t vocab, const std::vector<int64_t>& prompt,
               const std::vector<int64_t>& generated);
  // Uniform double in [0, 1) from 53 random bits (platform-independent).
  double uniform();

 private:
  GenerationConfig cfg_;
  std::mt19937_64 rng_;
};

enum class FinishReason { Length, Eos, StopString, Cancelled };
const char* finish_reason_name(FinishReason r);  // "length", "eos", "stop", "cancelled"

struct GenerationResult {
  std::vector<int64_t> tokens;  // new tokens (including a final eos token)
  std::string text;             // detokenized new text, cut before a matched stop string
  FinishReason finish = FinishReason::Length;
  int64_t prompt_tokens = 0;
  float min_margin = 0;         // smallest top1 - top2 raw-logit margin over the steps
};

struct GenerateOptions {
  // Text of one token id (bytes; may be a partial UTF-8 sequence). Needed for stop strings and
  // for GenerationResult::text / streamed text.
  std::function<std::string(int64_t)> detokenize;
  // Called once per new token except a final eos token, with the text that became final (may
  // be empty while a possible stop-string prefix is held back). Return false to cancel.
  // After the last token, a call with token = -1 flushes held-back text that was not a stop.
  std::function<bool(int64_t token, std::string_view text)> on_token;
  // Receives every step's raw logits [vocab] before processing (tests, debugging).
  std::function<void(const float* logits, int64_t vocab)> on_logits;
  const DumpHook* dump = nullptr;  // prefill dumps
};

// Clears `cache`, prefills the prompt, then generates step by step. Throws Error when the prompt
// (or a decode step) does not fit the cache's context length.
GenerationResult generate(const Qwen3VLForConditionalGeneration& model, const MultimodalInputs& prompt,
                          KVCache& cache, const GenerationConfig& cfg, const GenerateOptions& opts = {});

}  // namespace qwen3vl

// The library's public entry point for applications (the CLI `run` and `serve` use only this):
// load a Qwen3-VL checkpoint folder once, then run chat requests — OpenAI-style messages in,
// streamed text out — with per-stage timings and the effective image sizes / grids / tokens.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/quantize.h"
#include "pipeline/processor.h"
#include "text/generation.h"

namespace qwen3vl {

struct EngineOptions {
  std::filesystem::path model_dir;
  int threads = 0;                   // 0: all cores
  int64_t context_length = 8192;     // KV cache size per request (tokens, prompt + answer)
  // Block quantization at load (--quant / --quant-vision): none = weights as stored (a folder
  // written by `qwen3vl quantize` loads quantized as it is). See model/quantize.h.
  QuantOptions quant;
  // Load progress: fraction in [0, 1] and what is being done.
  std::function<void(double fraction, const std::string& what)> on_progress;
  std::function<void(const std::string&)> on_warning;  // default: stderr
};

struct ChatRequest {
  nlohmann::ordered_json messages;   // [{"role", "content"}...] as for apply_chat_template
  GenerationConfig generation;       // start from Engine::default_generation()
  ProcessorOptions processor;        // image budget, media access policy, chat template options
  int64_t context_length = 0;        // 0: the engine's
};

struct StageTimings {
  double media_ms = 0;      // fetch + decode + preprocess every image / video
  double vision_ms = 0;     // vision tower
  double prefill_ms = 0;    // text prefill (to the first sampled token)
  double decode_ms = 0;     // the remaining tokens
  int64_t decode_tokens = 0;
  double decode_tok_s() const { return decode_ms > 0 ? 1000.0 * decode_tokens / decode_ms : 0; }
  double prefill_tok_s(int64_t prompt_tokens) const { return prefill_ms > 0 ? 1000.0 * prompt_tokens / prefill_ms : 0; }
};

struct ChatResult {
  std::string text;                 // the answer (UTF-8, stop string removed)
  std::vector<int64_t> tokens;      // generated ids (eos included when it ended the answer)
  FinishReason finish = FinishReason::Length;
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  std::vector<MediaInfo> media;     // effective sizes, grids, token counts
  StageTimings timings;
};

// Receives each new piece of text (whole UTF-8 characters only) and the token that completed it;
// returning false cancels the request (finish = Cancelled).
using TextCallback = std::function<bool(const std::string& piece, int64_t token)>;

class Engine {
 public:
  static std::unique_ptr<Engine> load(const EngineOptions& opts);
  ~Engine();

  // Thread-safe; requests run one at a time (the kernels use every core already).
  ChatResult chat(const ChatRequest& req, const TextCallback& on_text = nullptr) const;

  GenerationConfig default_generation() const { return default_generation_; }
  const Qwen3VLConfig& config() const;
  const Qwen3VLProcessor& processor() const { return *processor_; }
  std::string model_name() const;   // the folder name
  double load_ms() const { return load_ms_; }
  int64_t context_length() const { return opts_.context_length; }

 private:
  Engine() = default;
  EngineOptions opts_;
  struct Model;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Qwen3VLProcessor> processor_;
  GenerationConfig default_generation_;
  double load_ms_ = 0;
  mutable std::mutex mu_;
};

}  // namespace qwen3vl

#include "pipeline/engine.h"

#include <chrono>
#include <cstdio>

#include "core/error.h"
#include "kernels/kernels.h"
#include "model/checkpoint.h"
#include "text/qwen3vl_model.h"

namespace qwen3vl {

namespace {
using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}
}  // namespace

struct Engine::Model {
  Checkpoint ckpt;
  std::unique_ptr<Qwen3VLForConditionalGeneration> net;
};

Engine::~Engine() = default;

std::unique_ptr<Engine> Engine::load(const EngineOptions& opts) {
  auto t0 = Clock::now();
  std::unique_ptr<Engine> e(new Engine());
  e->opts_ = opts;
  QWEN3VL_CHECK(opts.context_length > 0, "context length must be positive");
  if (opts.threads > 0) kernels::set_num_threads(opts.threads);
  auto progress = [&](double f, const std::string& what) {
    if (opts.on_progress) opts.on_progress(f, what);
  };
  progress(0.0, "reading config and tokenizer");
  e->processor_ = std::make_unique<Qwen3VLProcessor>(Qwen3VLProcessor::load(opts.model_dir, opts.on_warning));
  progress(0.1, opts.quant.any() ? "mapping and quantizing weights" : "mapping weights");
  LoadOptions lo;
  lo.quant = opts.quant;
  e->model_ = std::make_unique<Model>(Model{Checkpoint::load(opts.model_dir, lo), nullptr});
  progress(0.5, "binding modules");
  e->model_->net = std::make_unique<Qwen3VLForConditionalGeneration>(e->model_->ckpt);
  e->default_generation_ = GenerationConfig::for_model(opts.model_dir, e->model_->net->config());
  progress(1.0, "ready");
  e->load_ms_ = ms_since(t0);
  return e;
}

const Qwen3VLConfig& Engine::config() const { return model_->net->config(); }

std::string Engine::model_name() const {
  auto p = opts_.model_dir;
  if (p.filename().empty()) p = p.parent_path();
  return p.filename().string();
}

ChatResult Engine::chat(const ChatRequest& req, const TextCallback& on_text) const {
  std::lock_guard<std::mutex> lock(mu_);
  const Qwen3VLForConditionalGeneration& net = *model_->net;
  ChatResult res;

  auto t_media = Clock::now();
  ProcessorOutput po = (*processor_)(req.messages, req.processor);
  res.timings.media_ms = ms_since(t_media);
  res.media = po.media;
  MultimodalInputs& in = po.inputs;
  res.prompt_tokens = static_cast<int64_t>(in.input_ids.size());

  const int64_t ctx = req.context_length > 0 ? req.context_length : opts_.context_length;
  QWEN3VL_CHECK(res.prompt_tokens < ctx, "the prompt has " + std::to_string(res.prompt_tokens) +
                                             " tokens, more than the context length " + std::to_string(ctx) +
                                             " allows (raise --ctx, or lower the image budget with --max-pixels)");
  GenerationConfig cfg = req.generation;
  cfg.max_new_tokens = std::min<int64_t>(cfg.max_new_tokens, ctx - res.prompt_tokens);

  auto t_vision = Clock::now();
  if (!in.image_grid_thw.empty())
    in.image_features = net.model().visual().forward(in.pixel_values, in.image_grid_thw);
  if (!in.video_grid_thw.empty())
    in.video_features = net.model().visual().forward(in.pixel_values_videos, in.video_grid_thw);
  res.timings.vision_ms = ms_since(t_vision);

  KVCache cache = net.make_cache(ctx);
  const Tokenizer& tok = processor_->tokenizer();
  GenerateOptions go;
  go.detokenize = [&](int64_t id) -> std::string {
    if (tok.is_special(static_cast<int32_t>(id))) return "";
    return std::string(tok.token_bytes(static_cast<int32_t>(id)));
  };
  std::string pending;  // bytes of an incomplete UTF-8 character
  auto t_prefill = Clock::now();
  Clock::time_point t_first{};
  bool first = true;
  go.on_token = [&](int64_t token, std::string_view bytes) -> bool {
    if (first && token >= 0) {
      res.timings.prefill_ms = ms_since(t_prefill);
      t_first = Clock::now();
      first = false;
    }
    if (!on_text) return true;
    pending.append(bytes);
    std::string piece;
    size_t used = utf8::append_lossy(pending, piece, /*final=*/token < 0);
    pending.erase(0, used);
    if (piece.empty()) return true;
    return on_text(piece, token);
  };
  GenerationResult g = generate(net, in, cache, cfg, go);
  if (!first) {
    res.timings.decode_ms = ms_since(t_first);
    res.timings.decode_tokens = std::max<int64_t>(0, static_cast<int64_t>(g.tokens.size()) - 1);
  } else {
    res.timings.prefill_ms = ms_since(t_prefill);
  }
  if (on_text && !pending.empty()) {
    std::string piece;
    utf8::append_lossy(pending, piece, true);
    if (!piece.empty()) on_text(piece, -1);
  }
  utf8::append_lossy(g.text, res.text, true);
  res.tokens = g.tokens;
  res.finish = g.finish;
  res.completion_tokens = static_cast<int64_t>(g.tokens.size());
  return res;
}

}  // namespace qwen3vl

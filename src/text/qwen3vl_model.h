// HF Qwen3VLModel (vision tower + text decoder + visual splice + M-RoPE index) and
// Qwen3VLForConditionalGeneration (+ lm_head).
//
// The Checkpoint must outlive the model (weights are views of its mapped files).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/dump.h"
#include "core/tensor.h"
#include "kernels/kernels.h"
#include "model/checkpoint.h"
#include "text/kv_cache.h"
#include "text/qwen3vl_text.h"
#include "text/rope_index.h"
#include "vision/qwen3vl_vision.h"

namespace qwen3vl {

// One prompt: token ids with <|image_pad|> / <|video_pad|> placeholders already expanded, plus
// the visual inputs in prompt order. Either pixel values (run through the vision tower) or
// precomputed vision outputs (image_features / video_features: embeds + DeepStack, rows in
// prompt order) per kind.
struct MultimodalInputs {
  std::vector<int64_t> input_ids;
  Tensor pixel_values;                   // [sum t*h*w, C*T*P*P] f32 (images)
  std::vector<GridTHW> image_grid_thw;
  Tensor pixel_values_videos;            // [sum t*h*w, C*T*P*P] f32 (videos)
  std::vector<GridTHW> video_grid_thw;
  std::optional<VisionOutput> image_features;  // overrides pixel_values when set
  std::optional<VisionOutput> video_features;  // overrides pixel_values_videos when set
};

class Qwen3VLModel {
 public:
  explicit Qwen3VLModel(const Checkpoint& ckpt, const TextNumerics& numerics = {});

  const Qwen3VLConfig& config() const { return config_; }
  const Qwen3VLVisionModel& visual() const { return *visual_; }
  const Qwen3VLTextModel& language_model() const { return language_model_; }

  // What the decoder consumes for a prompt: embeddings after the visual splice, 3-D positions,
  // rope delta and the DeepStack rows. Dumps input_ids, position_ids, text.embeds.
  struct Prepared {
    Tensor inputs_embeds;  // [S, D] f32
    RopeIndex rope;
    DeepstackInput deepstack;
  };
  Prepared prepare(const MultimodalInputs& inputs, const DumpHook* dump = nullptr) const;

  // Prefill of a whole prompt into an EMPTY cache (sets cache.rope_delta) -> last_hidden_state
  // [S, D] (after the final norm). Throws Error if the cache is not empty or the prompt does
  // not fit.
  Tensor forward(const MultimodalInputs& inputs, KVCache& cache, const DumpHook* dump = nullptr) const;
  // Appends text tokens after what the cache holds (decode steps, or more text after a prompt):
  // positions cache.length() + i + cache.rope_delta. -> [n, D].
  Tensor forward_tokens(const std::vector<int64_t>& ids, KVCache& cache, const DumpHook* dump = nullptr) const;

 private:
  Qwen3VLConfig config_;
  std::unique_ptr<Qwen3VLVisionModel> visual_;
  Qwen3VLTextModel language_model_;
};

class Qwen3VLForConditionalGeneration {
 public:
  explicit Qwen3VLForConditionalGeneration(const Checkpoint& ckpt, const TextNumerics& numerics = {});

  const Qwen3VLConfig& config() const { return model_.config(); }
  const Qwen3VLModel& model() const { return model_; }
  int64_t vocab_size() const { return lm_head_.n; }
  // A cache for this model holding up to context_length tokens.
  // Its dtype: model().language_model().kv_cache_dtype() (BF16 for a bf16 model at the default
  // matmul precision).
  KVCache make_cache(int64_t context_length) const {
    return KVCache(config().text_config, context_length, model_.language_model().kv_cache_dtype());
  }

  // Prefill (see Qwen3VLModel::forward). Returns logits [n, vocab] f32 of the last n =
  // logits_to_keep rows (0: all rows, as HF). Dumps also "logits".
  Tensor forward(const MultimodalInputs& inputs, KVCache& cache, int64_t logits_to_keep = 1,
                 const DumpHook* dump = nullptr) const;
  // Decode / continuation (see Qwen3VLModel::forward_tokens).
  Tensor forward_tokens(const std::vector<int64_t>& ids, KVCache& cache, int64_t logits_to_keep = 1,
                        const DumpHook* dump = nullptr) const;
  // lm_head(hidden) for the last `logits_to_keep` rows (0 = all): [n, vocab] (rounded to the
  // checkpoint dtype when emulating it, as HF's bf16 logits).
  Tensor lm_head(const Tensor& hidden_states, int64_t logits_to_keep = 0) const;

 private:
  Qwen3VLModel model_;
  kernels::WeightRef lm_head_;
};

}  // namespace qwen3vl

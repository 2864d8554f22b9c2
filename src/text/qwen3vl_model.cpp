#include "text/qwen3vl_model.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "core/error.h"

namespace qwen3vl {

namespace {

// Rows of merged visual tokens a list of grids produces: sum(t*h*w) / merge^2.
int64_t merged_tokens(const std::vector<GridTHW>& grids, int64_t merge) {
  int64_t n = 0;
  for (const GridTHW& g : grids) n += g.t * g.h * g.w / (merge * merge);
  return n;
}

Tensor ids_tensor(const std::vector<int64_t>& ids) {
  return Tensor::from_data(ids.data(), {static_cast<int64_t>(ids.size())}, DType::I64);
}

// Checks one kind of visual features (image or video) against its placeholders and grids.
void check_features(const char* kind, const char* pad_name, int64_t n_tokens, const VisionOutput* f,
                    const std::vector<GridTHW>& grids, int64_t merge, int64_t hidden) {
  if (!f) {
    QWEN3VL_CHECK(n_tokens == 0, "the prompt contains " + std::to_string(n_tokens) + " " + pad_name +
                                     " tokens but no " + kind + " was given");
    return;
  }
  QWEN3VL_CHECK(f->embeds.dim() == 2 && f->embeds.size(1) == hidden && f->embeds.dtype() == DType::F32,
                std::string(kind) + " features must be F32 [tokens, " + std::to_string(hidden) + "], got " +
                    f->embeds.str());
  const int64_t rows = f->embeds.size(0);
  // get_placeholder_mask: "Image features and image tokens do not match"
  QWEN3VL_CHECK(rows == n_tokens, std::string(kind) + " features and " + kind + " tokens do not match: tokens: " +
                                      std::to_string(n_tokens) + " " + pad_name + ", features " +
                                      std::to_string(rows));
  QWEN3VL_CHECK(!grids.empty(), std::string(kind) + " features given without their grid_thw");
  QWEN3VL_CHECK(merged_tokens(grids, merge) == rows,
                std::string(kind) + " grid_thw describes " + std::to_string(merged_tokens(grids, merge)) +
                    " merged tokens but there are " + std::to_string(rows) + " feature rows");
  for (const Tensor& d : f->deepstack)
    QWEN3VL_CHECK(d.dim() == 2 && d.size(0) == rows && d.size(1) == hidden && d.dtype() == DType::F32,
                  std::string(kind) + " DeepStack features " + d.str() + " do not match the embeddings " +
                      f->embeds.str());
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Qwen3VLModel
// ---------------------------------------------------------------------------------------------
Qwen3VLModel::Qwen3VLModel(const Checkpoint& ckpt, const TextNumerics& numerics)
    : config_(ckpt.config()),
      visual_(std::make_unique<Qwen3VLVisionModel>(ckpt, "model.visual.")),
      language_model_(ckpt, "model.language_model.", numerics) {}

Qwen3VLModel::Prepared Qwen3VLModel::prepare(const MultimodalInputs& in, const DumpHook* dump) const {
  const std::vector<int64_t>& ids = in.input_ids;
  const int64_t S = static_cast<int64_t>(ids.size());
  const int64_t D = config_.text_config.hidden_size;
  const int64_t merge = config_.vision_config.spatial_merge_size;
  QWEN3VL_CHECK(S > 0, "the prompt is empty (no input_ids)");
  if (dump && *dump) (*dump)("input_ids", ids_tensor(ids));

  Prepared p;
  // inputs_embeds = embed_tokens(input_ids)
  p.inputs_embeds = language_model_.embed(ids);

  // get_image_features / get_video_features (vision tower), unless given precomputed.
  std::optional<VisionOutput> image = in.image_features, video = in.video_features;
  if (!image && in.pixel_values.defined()) image = visual_->forward(in.pixel_values, in.image_grid_thw, dump);
  if (!video && in.pixel_values_videos.defined())
    video = visual_->forward(in.pixel_values_videos, in.video_grid_thw, dump);

  // get_placeholder_mask + masked_scatter: visual rows in order into the pad positions.
  const int64_t image_id = config_.image_token_id, video_id = config_.video_token_id;
  const int64_t n_image = std::count(ids.begin(), ids.end(), image_id);
  const int64_t n_video = std::count(ids.begin(), ids.end(), video_id);
  check_features("image", "<|image_pad|>", n_image, image ? &*image : nullptr, in.image_grid_thw, merge, D);
  check_features("video", "<|video_pad|>", n_video, video ? &*video : nullptr, in.video_grid_thw, merge, D);
  // image_embeds.to(inputs_embeds.dtype): a BF16/F16 model holds them in that dtype.
  const DType act = language_model_.activation_dtype();
  float* e = p.inputs_embeds.data<float>();
  int64_t ii = 0, vi = 0;
  for (int64_t s = 0; s < S; ++s) {
    const int64_t id = ids[static_cast<size_t>(s)];
    if (id == image_id) {
      std::memcpy(e + s * D, image->embeds.data<float>() + (ii++) * D, static_cast<size_t>(D) * 4);
      round_to_dtype(e + s * D, D, act);
      p.deepstack.rows.push_back(s);
    } else if (id == video_id) {
      std::memcpy(e + s * D, video->embeds.data<float>() + (vi++) * D, static_cast<size_t>(D) * 4);
      round_to_dtype(e + s * D, D, act);
      p.deepstack.rows.push_back(s);
    }
  }

  // DeepStack: one tensor per level over the visual rows in sequence order (image rows from the
  // image features, video rows from the video features; HF zips the two lists).
  size_t levels = 0;
  if (image && video) levels = std::min(image->deepstack.size(), video->deepstack.size());
  else if (image) levels = image->deepstack.size();
  else if (video) levels = video->deepstack.size();
  const int64_t nvis = static_cast<int64_t>(p.deepstack.rows.size());
  for (size_t j = 0; j < levels && nvis > 0; ++j) {
    Tensor joint = Tensor::empty({nvis, D});
    float* o = joint.data<float>();
    int64_t a = 0, b = 0;
    for (int64_t r = 0; r < nvis; ++r) {
      const bool is_image = ids[static_cast<size_t>(p.deepstack.rows[static_cast<size_t>(r)])] == image_id;
      const float* src = is_image ? image->deepstack[j].data<float>() + (a++) * D
                                  : video->deepstack[j].data<float>() + (b++) * D;
      std::memcpy(o + r * D, src, static_cast<size_t>(D) * 4);
    }
    round_to_dtype(o, nvis * D, act);  // visual_embeds.to(hidden_states.dtype)
    p.deepstack.embeds.push_back(std::move(joint));
  }

  p.rope = get_rope_index(ids, in.image_grid_thw, in.video_grid_thw, config_);
  if (dump && *dump) {
    (*dump)("position_ids", p.rope.position_ids.clone());
    (*dump)("text.embeds", p.inputs_embeds.clone());
  }
  return p;
}

Tensor Qwen3VLModel::forward(const MultimodalInputs& in, KVCache& cache, const DumpHook* dump) const {
  QWEN3VL_CHECK(cache.length() == 0, "prefill needs an empty KV cache (it holds " + std::to_string(cache.length()) +
                                         " tokens); clear it or append text with forward_tokens");
  cache.check_fits(static_cast<int64_t>(in.input_ids.size()), "the prompt");  // before the vision tower
  Prepared p = prepare(in, dump);
  Tensor h = language_model_.forward(p.inputs_embeds, p.rope.position_ids, cache,
                                     p.deepstack.embeds.empty() ? nullptr : &p.deepstack, dump);
  cache.rope_delta = p.rope.rope_delta;  // self.rope_deltas = rope_deltas
  return h;
}

Tensor Qwen3VLModel::forward_tokens(const std::vector<int64_t>& ids, KVCache& cache, const DumpHook* dump) const {
  const int64_t n = static_cast<int64_t>(ids.size());
  cache.check_fits(n, "generation");
  // position_ids = arange(n) + cache_position[0] + rope_deltas, on all three axes
  Tensor pos = decode_position_ids(cache.length(), n, cache.rope_delta);
  Tensor embeds = language_model_.embed(ids);
  if (dump && *dump) {
    (*dump)("input_ids", ids_tensor(ids));
    (*dump)("position_ids", pos.clone());
    (*dump)("text.embeds", embeds.clone());
  }
  return language_model_.forward(embeds, pos, cache, nullptr, dump);
}

// ---------------------------------------------------------------------------------------------
// Qwen3VLForConditionalGeneration
// ---------------------------------------------------------------------------------------------
Qwen3VLForConditionalGeneration::Qwen3VLForConditionalGeneration(const Checkpoint& ckpt, const TextNumerics& numerics)
    : model_(ckpt, numerics) {
  // Checkpoint resolves "lm_head.weight" to the embedding for tied checkpoints.
  const Tensor& w = ckpt.get("lm_head.weight");
  const auto& tc = ckpt.config().text_config;
  QWEN3VL_CHECK(w.dim() == 2 && w.size(0) == tc.vocab_size && w.size(1) == tc.hidden_size,
                "tensor lm_head.weight has shape " + shape_str(w.shape()) + ", expected [" +
                    std::to_string(tc.vocab_size) + ", " + std::to_string(tc.hidden_size) + "]");
  lm_head_ = kernels::weight_ref(w);
  // Building the modules read (and copied) the small tensors; drop those mapped pages and their
  // readahead neighbours from the resident set (the weights used as mapped are faulted in again
  // from the page cache on first use).
  ckpt.release_all_pages();
}

Tensor Qwen3VLForConditionalGeneration::lm_head(const Tensor& hidden, int64_t logits_to_keep) const {
  const int64_t S = hidden.size(0);
  const int64_t keep = logits_to_keep <= 0 ? S : std::min(logits_to_keep, S);
  Tensor logits = Tensor::empty({keep, lm_head_.n});
  const DType em = model_.language_model().emulated_dtype();
  const float* x = hidden.data<float>() + (S - keep) * hidden.size(1);
  if (em != DType::F32) {
    linear_emulated(x, keep, lm_head_, logits.data<float>(), em);  // HF's summation order
  } else if (keep > 0) {
    kernels::linear(x, keep, lm_head_, nullptr, logits.data<float>());
  }
  round_to_dtype(logits.data<float>(), logits.numel(), em);
  return logits;
}

Tensor Qwen3VLForConditionalGeneration::forward(const MultimodalInputs& in, KVCache& cache, int64_t logits_to_keep,
                                                const DumpHook* dump) const {
  Tensor h = model_.forward(in, cache, dump);
  Tensor logits = lm_head(h, logits_to_keep);
  if (dump && *dump) (*dump)("logits", logits.clone());
  return logits;
}

Tensor Qwen3VLForConditionalGeneration::forward_tokens(const std::vector<int64_t>& ids, KVCache& cache,
                                                       int64_t logits_to_keep, const DumpHook* dump) const {
  Tensor h = model_.forward_tokens(ids, cache, dump);
  Tensor logits = lm_head(h, logits_to_keep);
  if (dump && *dump) (*dump)("logits", logits.clone());
  return logits;
}

}  // namespace qwen3vl

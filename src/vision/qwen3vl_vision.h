// Qwen3-VL vision tower: one C++ type per HF module of modeling_qwen3_vl.py (transformers
// 4.57.6), same names, same forward structure. Weights stay as stored in the checkpoint
// (F32/BF16/F16, used through kernels::linear); small ones (norms, biases) are converted to f32
// at load. Activations are f32 with f32 accumulation.
//
// Numerics for half-precision checkpoints: HF (running in the checkpoint dtype) rounds the
// activations to bf16 at every module boundary. We reproduce only the cheap roundings at the
// input of the tower, where they matter most because every later stage inherits them:
//   - pixel_values cast to the weight dtype (HF get_image_features: `pixel_values.type(visual.dtype)`),
//   - the patch-embed output rounded to it (Conv3d output tensor),
//   - fast_pos_embed_interpolate in that dtype (weights, products and the 4-term sum),
//   - the sum patch_embed + pos_embeds rounded to it.
// From the first block on, everything stays f32 (more accurate than HF; the parity test's bf16
// tolerance is derived from this, see tests/vision/test_vision_parity.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/dump.h"
#include "core/tensor.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "vision/vision_functional.h"

namespace qwen3vl {

// Seconds per stage of Qwen3VLVisionModel::forward, accumulated while attached to a model
// (set_profile; vision-bench --profile). Each stage is timed around its kernel calls.
struct VisionProfile {
  double patch_embed = 0, pos_embed = 0, rotary = 0;  // rotary: rot_pos_emb + cos/sin + cu_seqlens
  double norms = 0;                                    // norm1 + norm2 of every block
  double qkv = 0, rope = 0, attention = 0, attn_proj = 0;
  double mlp_fc1 = 0, mlp_act = 0, mlp_fc2 = 0;
  double residual = 0;  // the two residual adds per block
  double merger = 0, deepstack = 0;
  bool patch_embed_folded = false;  // the last forward used the temporal fold
  bool cpu_clock = false;           // time with the process CPU clock (all threads) instead of wall
  double total() const {
    return patch_embed + pos_embed + rotary + norms + qkv + rope + attention + attn_proj + mlp_fc1 + mlp_act +
           mlp_fc2 + residual + merger + deepstack;
  }
};

struct VisionOutput {
  Tensor embeds;                  // [sum(t*h*w)/4, out_hidden_size] f32, items concatenated
  std::vector<Tensor> deepstack;  // one per deepstack_visual_indexes entry, same shape
};

// nn.Linear with weight [out, in] as stored and an f32 bias (or none).
struct VisionLinear {
  Tensor weight;  // [out_features, in_features] as stored (F32/BF16/F16, or Q8_0/Q4_0 when quantized)
  Tensor bias;    // [out_features] f32
  int64_t in_features = 0, out_features = 0;
  VisionLinear() = default;
  VisionLinear(const Checkpoint& ckpt, const std::string& prefix, int64_t in_features, int64_t out_features);
  Tensor forward(const Tensor& x) const;  // [..., in] f32 -> [..., out] f32
};

// nn.LayerNorm(d, eps) with f32 weight and bias.
struct VisionLayerNorm {
  Tensor weight, bias;  // [d] f32
  int64_t d = 0;
  float eps = 1e-6f;
  VisionLayerNorm() = default;
  VisionLayerNorm(const Checkpoint& ckpt, const std::string& prefix, int64_t d, float eps = 1e-6f);
  Tensor forward(const Tensor& x) const;  // [rows, d] -> [rows, d]; x may be viewed with any rows*d
};

// HF Qwen3VLVisionPatchEmbed: Conv3d(C, Dv, kernel = stride = (T, P, P)) over each row, i.e. one
// GEMM with the weight [Dv, C, T, P, P] viewed as [Dv, C*T*P*P] (the row order is (c, t, y, x)).
//
// Temporal fold: for a still image the processor repeats the frame T times, so the T temporal
// slices of every row are equal and  sum_t W[:, c, t] x[c, t] = (sum_t W[:, c, t]) x[c, 0].
// Rows whose slices are all exactly equal (checked per row; images always, videos only for
// frozen frames) use the folded weight Wf [Dv, C*P*P]: a GEMM T times shorter. Wf is summed and
// kept in f32 (the sum of T bf16/f16 values is exact in f32 unless their exponents differ by
// more than 16), so the folded products are as exact as the unfolded bf16 ones; it runs on the
// f32 GEMM path (F32 weight). Only the accumulation order differs from the unfolded GEMM.
class Qwen3VLVisionPatchEmbed {
 public:
  Qwen3VLVisionPatchEmbed() = default;
  Qwen3VLVisionPatchEmbed(const Checkpoint& ckpt, const std::string& prefix, const Qwen3VLVisionConfig& config);
  // hidden_states [N, C*T*P*P] f32 -> [N, Dv] f32 (input and output rounded to the weight dtype).
  // *folded (optional) tells whether any row took the folded path.
  Tensor forward(const Tensor& hidden_states, bool* folded = nullptr) const;
  DType dtype() const { return proj_weight_.dtype(); }
  // Disables the temporal fold (tests compare both paths).
  void set_temporal_fold(bool on) { fold_enabled_ = on; }

 private:
  int64_t patch_dim_ = 0, embed_dim_ = 0, temporal_ = 1, slice_ = 0;  // slice_ = P*P
  bool fold_enabled_ = true;
  Tensor proj_weight_;  // [Dv, C, T, P, P] as stored
  Tensor proj_bias_;    // [Dv] f32
  Tensor folded_weight_;  // [Dv, C, P, P] f32 = sum over t of proj_weight_ (T > 1 only)
};

// HF Qwen3VLVisionRotaryEmbedding(dim, theta): forward(seqlen) -> freqs [seqlen, dim / 2].
class Qwen3VLVisionRotaryEmbedding {
 public:
  explicit Qwen3VLVisionRotaryEmbedding(int64_t dim = 0, double theta = 10000.0) : dim_(dim), theta_(theta) {}
  Tensor forward(int64_t seqlen) const { return qwen3_vision_rotary_embedding(seqlen, dim_, theta_); }

 private:
  int64_t dim_;
  double theta_;
};

// HF Qwen3VLVisionPatchMerger. use_postshuffle_norm false (main merger): LayerNorm(Dv) per patch,
// then merge 2x2 -> 4*Dv; true (DeepStack mergers): merge first, then LayerNorm(4*Dv).
// Then linear_fc1 (M -> M), exact erf GELU (nn.GELU()), linear_fc2 (M -> out_hidden_size).
class Qwen3VLVisionPatchMerger {
 public:
  Qwen3VLVisionPatchMerger() = default;
  Qwen3VLVisionPatchMerger(const Checkpoint& ckpt, const std::string& prefix, const Qwen3VLVisionConfig& config,
                           bool use_postshuffle_norm);
  Tensor forward(const Tensor& x) const;  // [N, Dv] -> [N / merge^2, out_hidden_size]

 private:
  int64_t hidden_size_ = 0;  // Dv * merge^2
  bool use_postshuffle_norm_ = false;
  VisionLayerNorm norm_;
  VisionLinear linear_fc1_, linear_fc2_;
};

// HF Qwen3VLVisionAttention: fused qkv, 2-D rotary, non-causal attention restricted to each
// cu_seqlens segment (each image, each temporal patch of a video), proj.
class Qwen3VLVisionAttention {
 public:
  Qwen3VLVisionAttention() = default;
  Qwen3VLVisionAttention(const Checkpoint& ckpt, const std::string& prefix, const Qwen3VLVisionConfig& config);
  // hidden_states [S, Dv]; cu_seqlens [segments+1] I64; cos/sin [S, head_dim] -> [S, Dv].
  // The fused attention runs at BF16 precision (q, k, v and probabilities rounded to bf16, as HF
  // in a bf16 model) when the weights are not F32 and kernels::matmul_precision() is BF16.
  Tensor forward(const Tensor& hidden_states, const Tensor& cu_seqlens, const Tensor& cos, const Tensor& sin,
                 VisionProfile* prof = nullptr) const;

 private:
  int64_t dim_ = 0, num_heads_ = 0, head_dim_ = 0;
  float scaling_ = 1.0f;
  VisionLinear qkv_, proj_;
};

// HF Qwen3VLVisionMLP: linear_fc2(act_fn(linear_fc1(x))), act = gelu_pytorch_tanh.
class Qwen3VLVisionMLP {
 public:
  Qwen3VLVisionMLP() = default;
  Qwen3VLVisionMLP(const Checkpoint& ckpt, const std::string& prefix, const Qwen3VLVisionConfig& config);
  Tensor forward(const Tensor& hidden_state, VisionProfile* prof = nullptr) const;  // [S, Dv] -> [S, Dv]

 private:
  bool tanh_approx_ = true;
  VisionLinear linear_fc1_, linear_fc2_;
};

// HF Qwen3VLVisionBlock: pre-norm attention and MLP, each with a residual add.
class Qwen3VLVisionBlock {
 public:
  Qwen3VLVisionBlock() = default;
  Qwen3VLVisionBlock(const Checkpoint& ckpt, const std::string& prefix, const Qwen3VLVisionConfig& config);
  // hidden_states [S, Dv] updated in place. The MLP half runs over row chunks of
  // `mlp_chunk_rows` (<= 0: all rows at once) to bound the [rows, Iv] intermediate.
  void forward(Tensor& hidden_states, const Tensor& cu_seqlens, const Tensor& cos, const Tensor& sin,
               int64_t mlp_chunk_rows = 4096, VisionProfile* prof = nullptr) const;

 private:
  VisionLayerNorm norm1_, norm2_;
  Qwen3VLVisionAttention attn_;
  Qwen3VLVisionMLP mlp_;
};

// HF Qwen3VLVisionModel: patch embed + interpolated learned position embedding + blocks, with
// DeepStack taps after the configured block indexes and the final merger.
class Qwen3VLVisionModel {
 public:
  // Binds the weights under `prefix` (HF: "model.visual.") of a loaded checkpoint.
  explicit Qwen3VLVisionModel(const Checkpoint& ckpt, const std::string& prefix = "model.visual.");
  // pixel_values [sum(t*h*w), C*T*P*P] f32 in the processor's merge-window row order; grid_thw
  // one entry per image or video (any number of each, in one call). Throws Error on bad input.
  // Dumps (FIXTURES.md): vision.patch_embed, vision.pos_embeds, vision.rotary.cos/sin,
  // vision.cu_seqlens, vision.blocks.<i>, deepstack.<j>, image_embeds.
  VisionOutput forward(const Tensor& pixel_values, const std::vector<GridTHW>& grid_thw,
                       const DumpHook* dump = nullptr) const;

  const Qwen3VLVisionConfig& config() const { return config_; }
  // The activation dtype HF runs the tower in (`self.visual.dtype`: the weights' dtype).
  DType dtype() const { return patch_embed_.dtype(); }
  // HF fast_pos_embed_interpolate(grid_thw) -> [sum(t*h*w), Dv] f32
  Tensor fast_pos_embed_interpolate(const std::vector<GridTHW>& grid_thw) const;
  // HF rot_pos_emb(grid_thw) -> [sum(t*h*w), head_dim / 2] f32
  Tensor rot_pos_emb(const std::vector<GridTHW>& grid_thw) const;
  // Rows per MLP chunk in the blocks (memory bound for large images; results do not depend on it).
  void set_mlp_chunk_rows(int64_t rows) { mlp_chunk_rows_ = rows; }
  // Accumulate per-stage times into *prof during forward (nullptr: off). Not thread-safe.
  void set_profile(VisionProfile* prof) { profile_ = prof; }
  // Temporal fold of the patch embedding (on by default; see Qwen3VLVisionPatchEmbed).
  void set_temporal_fold(bool on) { patch_embed_.set_temporal_fold(on); }

 private:
  Qwen3VLVisionConfig config_;
  int64_t spatial_merge_size_ = 2, num_grid_per_side_ = 0;
  int64_t mlp_chunk_rows_ = 4096;
  VisionProfile* profile_ = nullptr;
  Qwen3VLVisionPatchEmbed patch_embed_;
  Tensor pos_embed_;  // [num_position_embeddings, Dv] as stored
  Qwen3VLVisionRotaryEmbedding rotary_pos_emb_;
  std::vector<Qwen3VLVisionBlock> blocks_;
  Qwen3VLVisionPatchMerger merger_;
  std::vector<int> deepstack_visual_indexes_;
  std::vector<Qwen3VLVisionPatchMerger> deepstack_merger_list_;
};

}  // namespace qwen3vl

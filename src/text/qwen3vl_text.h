// Qwen3-VL text decoder: one C++ type per HF module of modeling_qwen3_vl.py
// (Qwen3VLTextRMSNorm, Qwen3VLTextRotaryEmbedding, Qwen3VLTextAttention, Qwen3VLTextMLP,
// Qwen3VLTextDecoderLayer, Qwen3VLTextModel).
//
// Activations are f32 row-major; weights are used as stored through kernels::linear. Norm
// weights are converted to f32 at load. Every forward appends to a KVCache (a full forward is a
// prefill into an empty cache), so prefill and incremental decoding share one code path.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/dump.h"
#include "core/tensor.h"
#include "kernels/kernels.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "text/kv_cache.h"

namespace qwen3vl {

// Numerics of the text decoder.
//  - default: f32 activations throughout (weights as stored). Faster and more accurate than HF
//    running in bf16; deviates from a bf16 HF run by ~1-3% of the largest value.
//  - emulate_activation_dtype: for a BF16/F16 checkpoint, round every intermediate to that dtype
//    where HF's bf16 ops do (linear outputs, norm steps, RoPE products and sum, attention
//    scores/probabilities/output, SiLU, products, residual adds, logits), with an op-by-op
//    eager-attention path. Reproduces a bf16 HF run up to rare 1-ulp differences (used by the
//    parity tests and for debugging; slower: scalar attention). No effect on F32 checkpoints.
struct TextNumerics {
  bool emulate_activation_dtype = false;
};

// HF Qwen3VLTextRMSNorm: y = w * (x * rsqrt(mean(x^2) + eps)), per row of `dim`.
class Qwen3VLTextRMSNorm {
 public:
  Qwen3VLTextRMSNorm() = default;
  // emulate: BF16/F16 -> `weight * hidden.to(dtype)` with both roundings (see TextNumerics).
  Qwen3VLTextRMSNorm(const Tensor& weight, double eps, DType emulate = DType::F32);
  void forward(const float* x, int64_t rows, float* y) const;
  int64_t dim() const { return static_cast<int64_t>(weight_.size()); }

 private:
  std::vector<float> weight_, ones_;
  float eps_ = 1e-6f;
  DType emulate_ = DType::F32;
};

// HF Qwen3VLTextRotaryEmbedding: interleaved M-RoPE. Frequency slot j (of head_dim/2) takes its
// position from axis H when j % 3 == 1 and j < 3*mrope_section[1], from W when j % 3 == 2 and
// j < 3*mrope_section[2], otherwise from T. inv_freq[j] = 1 / theta^(2j/head_dim) in f32.
class Qwen3VLTextRotaryEmbedding {
 public:
  // round_to: HF returns `cos.to(x.dtype)`; for a BF16/F16 model the values are rounded to it
  // (cheap, and the largest single deviation from HF otherwise). F32: kept as computed.
  explicit Qwen3VLTextRotaryEmbedding(const Qwen3VLTextConfig& cfg, DType round_to = DType::F32);
  // position_ids [3, S] (I64; rows t, h, w) -> cos, sin [S, head_dim] f32 (halves duplicated).
  void forward(const Tensor& position_ids, float* cos, float* sin) const;
  const std::vector<float>& inv_freq() const { return inv_freq_; }
  // 0 = T, 1 = H, 2 = W for each of the head_dim/2 frequency slots.
  const std::vector<int>& slot_axis() const { return slot_axis_; }
  int64_t head_dim() const { return head_dim_; }

 private:
  int64_t head_dim_ = 0;
  std::vector<float> inv_freq_;
  std::vector<int> slot_axis_;
  float attention_scaling_ = 1.0f;
  DType round_to_ = DType::F32;
};

// HF Qwen3VLTextAttention: q/k/v projections, per-head q_norm/k_norm, RoPE, GQA causal
// attention over the cache, o_proj.
class Qwen3VLTextAttention {
 public:
  Qwen3VLTextAttention(const Checkpoint& ckpt, const std::string& prefix, const Qwen3VLTextConfig& cfg,
                       int layer_idx, DType emulate = DType::F32);
  // x [S, D] (already input_layernorm'ed) at cache rows [cache.length(), +S) -> out [S, D].
  // Writes post-RoPE k, v of the S tokens into the cache (does not advance its length).
  void forward(const float* x, int64_t S, const float* cos, const float* sin, KVCache& cache, float* out) const;
  bool bf16_source() const { return bf16_source_; }

 private:
  int layer_idx_ = 0;
  int64_t hidden_ = 0, heads_ = 0, kv_heads_ = 0, head_dim_ = 0;
  float scaling_ = 1.0f;
  DType emulate_ = DType::F32;
  bool bf16_source_ = false;  // the checkpoint's q_proj was BF16/F16 (before any quantization)
  kernels::WeightRef q_proj_, k_proj_, v_proj_, o_proj_;
  Qwen3VLTextRMSNorm q_norm_, k_norm_;
};

// HF Qwen3VLTextMLP: down_proj(silu(gate_proj(x)) * up_proj(x)).
class Qwen3VLTextMLP {
 public:
  Qwen3VLTextMLP(const Checkpoint& ckpt, const std::string& prefix, const Qwen3VLTextConfig& cfg,
                 DType emulate = DType::F32);
  void forward(const float* x, int64_t S, float* out) const;  // [S, D] -> [S, D]

 private:
  int64_t hidden_ = 0, intermediate_ = 0;
  DType emulate_ = DType::F32;
  kernels::WeightRef gate_proj_, up_proj_, down_proj_;
};

// HF Qwen3VLTextDecoderLayer (pre-norm): x += attn(norm_in(x)); x += mlp(norm_post(x)).
class Qwen3VLTextDecoderLayer {
 public:
  Qwen3VLTextDecoderLayer(const Checkpoint& ckpt, const std::string& prefix, const Qwen3VLTextConfig& cfg,
                          int layer_idx, DType emulate = DType::F32);
  void forward(float* hidden, int64_t S, const float* cos, const float* sin, KVCache& cache) const;  // in place
  const Qwen3VLTextAttention& self_attn() const { return self_attn_; }

 private:
  int64_t hidden_ = 0;
  DType emulate_ = DType::F32;
  Qwen3VLTextAttention self_attn_;
  Qwen3VLTextMLP mlp_;
  Qwen3VLTextRMSNorm input_layernorm_, post_attention_layernorm_;
};

// DeepStack features of a forward chunk: embeds[j] [rows.size(), D] is added to the output of
// decoder layer j at the chunk rows `rows` (ascending), j < embeds.size().
struct DeepstackInput {
  std::vector<int64_t> rows;
  std::vector<Tensor> embeds;
};

// HF Qwen3VLTextModel (prefix "model.language_model.").
class Qwen3VLTextModel {
 public:
  explicit Qwen3VLTextModel(const Checkpoint& ckpt, const std::string& prefix = "model.language_model.",
                            const TextNumerics& numerics = {});

  const Qwen3VLTextConfig& config() const { return cfg_; }
  const Qwen3VLTextRotaryEmbedding& rotary_emb() const { return rotary_emb_; }
  // The dtype HF would run the activations in (= embed_tokens dtype in the HF checkpoint; for
  // quantized weights the float dtype they were quantized from).
  DType activation_dtype() const { return act_dtype_; }
  // The dtype intermediates are rounded to: activation_dtype() when emulating, else F32.
  DType emulated_dtype() const { return emulate_; }
  // The KV cache dtype that gives this model's results at the current matmul precision: BF16 for
  // a bf16/f16 checkpoint (also quantized from one) at MatmulPrecision::BF16 (its attention rounds
  // K and V to bf16 anyway), else F32.
  DType kv_cache_dtype() const;
  // embed_tokens(input_ids) -> [S, D] f32. Throws Error on an id outside [0, vocab_size).
  Tensor embed(const std::vector<int64_t>& input_ids) const;

  // inputs_embeds [S, D] f32, position_ids [3, S] I64. Runs every layer over the S
  // tokens at cache rows [cache.length(), +S), adds DeepStack features after the first layers,
  // advances the cache by S and returns the final-norm output [S, D].
  // Dumps text.layers.<l> and text.norm.
  Tensor forward(const Tensor& inputs_embeds, const Tensor& position_ids, KVCache& cache,
                 const DeepstackInput* deepstack = nullptr, const DumpHook* dump = nullptr) const;

 private:
  Qwen3VLTextConfig cfg_;
  Tensor embed_tokens_;  // [vocab, D] as stored (or Q8_0 / Q4_0: rows dequantized on lookup)
  DType act_dtype_ = DType::F32;
  DType emulate_ = DType::F32;
  std::vector<Qwen3VLTextDecoderLayer> layers_;
  Qwen3VLTextRMSNorm norm_;
  Qwen3VLTextRotaryEmbedding rotary_emb_;
};

// Rounds x in place to `dtype` (BF16/F16: nearest even; F32: nothing), as a tensor cast would.
void round_to_dtype(float* x, int64_t n, DType dtype);

// y[m, n] = x[m, k] W[n, k]^T in the summation order of HF's bf16 CPU matmul (oneDNN with
// AVX512-BF16 vdpbf16ps: exact products accumulated in f32 sequentially over k in pairs, odd
// element first), output rounded to `dt`. Emulation mode only (scalar, slow for big models).
void linear_emulated(const float* x, int64_t m, const kernels::WeightRef& w, float* y, DType dt);

// Calls the dump hook with a copy of t (model code keeps mutating its buffers).
inline void dump_copy(const DumpHook* hook, const std::string& name, const Tensor& t) {
  if (hook && *hook) (*hook)(name, t.clone());
}

}  // namespace qwen3vl

// Preallocated key/value cache of the text decoder (HF DynamicCache, but fixed-capacity).
//
// One K and one V buffer per decoder layer, each [context_length, num_key_value_heads, head_dim]
// f32, holding post-RoPE keys and values (HF Qwen3VLTextAttention caches k after q_norm/k_norm
// and RoPE). The cache also carries the sequence's M-RoPE offset (HF Qwen3VLModel.rope_deltas):
// a token at cache index c that is not part of a prompt prefill gets position c + rope_delta on
// all three axes.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "model/config.h"

namespace qwen3vl {

class KVCache {
 public:
  KVCache() = default;
  // Allocates num_hidden_layers x 2 x [context_length, K, head_dim] f32. Throws Error if
  // context_length < 1.
  KVCache(const Qwen3VLTextConfig& cfg, int64_t context_length);

  int64_t capacity() const { return capacity_; }
  int64_t length() const { return length_; }  // tokens already cached
  int64_t num_layers() const { return static_cast<int64_t>(k_.size()); }
  int64_t kv_heads() const { return kv_heads_; }
  int64_t head_dim() const { return head_dim_; }
  int64_t row_floats() const { return kv_heads_ * head_dim_; }  // floats per cached token

  // [capacity, K, head_dim] buffers of layer l.
  float* k(int64_t layer) { return k_[static_cast<size_t>(layer)].data<float>(); }
  float* v(int64_t layer) { return v_[static_cast<size_t>(layer)].data<float>(); }
  const float* k(int64_t layer) const { return k_[static_cast<size_t>(layer)].data<float>(); }
  const float* v(int64_t layer) const { return v_[static_cast<size_t>(layer)].data<float>(); }

  // Throws a clear Error when `n` more tokens do not fit (what = "prompt" / "generation" ...).
  void check_fits(int64_t n, const char* what = "input") const;
  void advance(int64_t n);  // after every layer wrote rows [length, length + n)
  void clear() { length_ = 0; rope_delta = 0; }
  void truncate(int64_t n);  // keep the first n tokens (n <= length)

  int64_t rope_delta = 0;  // HF rope_deltas of the prompt; set by Qwen3VLModel prefill

 private:
  std::vector<Tensor> k_, v_;
  int64_t capacity_ = 0, length_ = 0, kv_heads_ = 0, head_dim_ = 0;
};

}  // namespace qwen3vl

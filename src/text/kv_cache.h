// Preallocated key/value cache of the text decoder (HF DynamicCache, but fixed-capacity).
//
// One K and one V buffer per decoder layer, each [context_length, num_key_value_heads, head_dim]
// in F32, or in BF16 for a bf16 model attending at BF16 precision (the reference keeps a bf16
// model's keys and values in bf16 too, and the bf16 attention rounds them to bf16 anyway, so the
// results are the same at half the memory), holding post-RoPE keys and values (HF Qwen3VLTextAttention caches k after q_norm/k_norm
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
  // Allocates num_hidden_layers x 2 x [context_length, K, head_dim] of `dtype` (F32 or BF16).
  // Throws Error if context_length < 1 or the memory is not there.
  KVCache(const Qwen3VLTextConfig& cfg, int64_t context_length, DType dtype = DType::F32);

  int64_t capacity() const { return capacity_; }
  int64_t length() const { return length_; }  // tokens already cached
  int64_t num_layers() const { return static_cast<int64_t>(k_.size()); }
  int64_t kv_heads() const { return kv_heads_; }
  int64_t head_dim() const { return head_dim_; }
  int64_t row_floats() const { return kv_heads_ * head_dim_; }  // elements per cached token
  DType dtype() const { return dtype_; }                          // F32 or BF16

  // [capacity, K, head_dim] buffers of layer l: F32 caches through k()/v(), BF16 caches through
  // k_bf16()/v_bf16() (the other accessor throws).
  float* k(int64_t layer) { return f32(k_, layer); }
  float* v(int64_t layer) { return f32(v_, layer); }
  const float* k(int64_t layer) const { return f32(k_, layer); }
  const float* v(int64_t layer) const { return f32(v_, layer); }
  uint16_t* k_bf16(int64_t layer) { return bf16(k_, layer); }
  uint16_t* v_bf16(int64_t layer) { return bf16(v_, layer); }
  const uint16_t* k_bf16(int64_t layer) const { return bf16(k_, layer); }
  const uint16_t* v_bf16(int64_t layer) const { return bf16(v_, layer); }
  int64_t bytes() const;  // K and V of all layers

  // Throws a clear Error when `n` more tokens do not fit (what = "prompt" / "generation" ...).
  void check_fits(int64_t n, const char* what = "input") const;
  void advance(int64_t n);  // after every layer wrote rows [length, length + n)
  void clear() { length_ = 0; rope_delta = 0; }
  void truncate(int64_t n);  // keep the first n tokens (n <= length)

  int64_t rope_delta = 0;  // HF rope_deltas of the prompt; set by Qwen3VLModel prefill

 private:
  float* f32(const std::vector<Tensor>& t, int64_t layer) const;
  uint16_t* bf16(const std::vector<Tensor>& t, int64_t layer) const;

  std::vector<Tensor> k_, v_;
  int64_t capacity_ = 0, length_ = 0, kv_heads_ = 0, head_dim_ = 0;
  DType dtype_ = DType::F32;
};

}  // namespace qwen3vl

#include "text/kv_cache.h"

#include <string>

#include "core/error.h"

namespace qwen3vl {

KVCache::KVCache(const Qwen3VLTextConfig& cfg, int64_t context_length, DType dtype) : dtype_(dtype) {
  QWEN3VL_CHECK(context_length >= 1,
                "KV cache: context length must be at least 1 (got " + std::to_string(context_length) + ")");
  QWEN3VL_CHECK(cfg.num_hidden_layers >= 1 && cfg.num_key_value_heads >= 1 && cfg.head_dim >= 1,
                "KV cache: text_config has no layers / kv heads / head_dim");
  QWEN3VL_CHECK(dtype == DType::F32 || dtype == DType::BF16,
                std::string("KV cache: dtype must be F32 or BF16, not ") + dtype_name(dtype));
  capacity_ = context_length;
  kv_heads_ = cfg.num_key_value_heads;
  head_dim_ = cfg.head_dim;
  const double bytes = 2.0 * cfg.num_hidden_layers * static_cast<double>(context_length) * kv_heads_ * head_dim_ *
                       static_cast<double>(dtype_size(dtype));
  try {
    for (int l = 0; l < cfg.num_hidden_layers; ++l) {
      k_.push_back(Tensor::empty({context_length, kv_heads_, head_dim_}, dtype));
      v_.push_back(Tensor::empty({context_length, kv_heads_, head_dim_}, dtype));
    }
  } catch (const Error&) {
    throw Error("KV cache: cannot allocate " + std::to_string(static_cast<int64_t>(bytes / (1 << 20))) +
                " MiB for a context length of " + std::to_string(context_length) + " tokens; use a smaller context");
  }
}

float* KVCache::f32(const std::vector<Tensor>& t, int64_t layer) const {
  QWEN3VL_CHECK(dtype_ == DType::F32, "KV cache: f32 access to a BF16 cache");
  return const_cast<Tensor&>(t[static_cast<size_t>(layer)]).data<float>();
}

uint16_t* KVCache::bf16(const std::vector<Tensor>& t, int64_t layer) const {
  QWEN3VL_CHECK(dtype_ == DType::BF16, "KV cache: bf16 access to an F32 cache");
  return static_cast<uint16_t*>(const_cast<Tensor&>(t[static_cast<size_t>(layer)]).raw());
}

int64_t KVCache::bytes() const {
  return 2 * num_layers() * capacity_ * row_floats() * static_cast<int64_t>(dtype_size(dtype_));
}

void KVCache::check_fits(int64_t n, const char* what) const {
  if (length_ + n > capacity_) {
    throw Error(std::string(what) + " does not fit the context: " + std::to_string(length_) + " cached + " +
                std::to_string(n) + " new tokens > context length " + std::to_string(capacity_) +
                " (raise the context length)");
  }
}

void KVCache::advance(int64_t n) {
  check_fits(n);
  length_ += n;
}

void KVCache::truncate(int64_t n) {
  QWEN3VL_CHECK(n >= 0 && n <= length_, "KV cache: cannot truncate " + std::to_string(length_) + " tokens to " +
                                            std::to_string(n));
  length_ = n;
}

}  // namespace qwen3vl

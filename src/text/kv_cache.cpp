#include "text/kv_cache.h"

#include <string>

#include "core/error.h"

namespace qwen3vl {

KVCache::KVCache(const Qwen3VLTextConfig& cfg, int64_t context_length) {
  QWEN3VL_CHECK(context_length >= 1,
                "KV cache: context length must be at least 1 (got " + std::to_string(context_length) + ")");
  QWEN3VL_CHECK(cfg.num_hidden_layers >= 1 && cfg.num_key_value_heads >= 1 && cfg.head_dim >= 1,
                "KV cache: text_config has no layers / kv heads / head_dim");
  capacity_ = context_length;
  kv_heads_ = cfg.num_key_value_heads;
  head_dim_ = cfg.head_dim;
  const double bytes = 2.0 * cfg.num_hidden_layers * static_cast<double>(context_length) * kv_heads_ * head_dim_ * 4;
  try {
    for (int l = 0; l < cfg.num_hidden_layers; ++l) {
      k_.push_back(Tensor::empty({context_length, kv_heads_, head_dim_}));
      v_.push_back(Tensor::empty({context_length, kv_heads_, head_dim_}));
    }
  } catch (const Error&) {
    throw Error("KV cache: cannot allocate " + std::to_string(static_cast<int64_t>(bytes / (1 << 20))) +
                " MiB for a context length of " + std::to_string(context_length) + " tokens; use a smaller context");
  }
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

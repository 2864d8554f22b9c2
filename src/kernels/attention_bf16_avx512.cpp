// attention() with a.bf16 (avx512). PLACEHOLDER: rounds q, k, v to bf16 and runs the f32 kernel
// (probabilities not yet rounded); to be replaced by a real kernel.
#include <vector>

#include "core/dtype.h"
#include "kernels/kernels_impl.h"

namespace qwen3vl::kernels::detail {

void attention_bf16_avx512(const AttentionArgs& a) {
  auto rounded = [](const float* p, int64_t rows, int64_t stride, int64_t width) {
    std::vector<float> v(static_cast<size_t>(rows * stride));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < width; ++c) v[r * stride + c] = round_bf16(p[r * stride + c]);
    return v;
  };
  const int64_t qs = a.sq == 1 ? a.hq * a.d : a.q_stride, ks = a.sk <= 1 ? a.hk * a.d : a.k_stride,
                vs = a.sk <= 1 ? a.hk * a.d : a.v_stride;
  std::vector<float> q = rounded(a.q, a.sq, qs, a.hq * a.d), k = rounded(a.k, a.sk, ks, a.hk * a.d),
                     v = rounded(a.v, a.sk, vs, a.hk * a.d);
  AttentionArgs b = a;
  b.q = q.data(); b.q_stride = qs;
  b.k = k.data(); b.k_stride = ks;
  b.v = v.data(); b.v_stride = vs;
  b.bf16 = false;
  attention_avx512(b);
}

}  // namespace qwen3vl::kernels::detail

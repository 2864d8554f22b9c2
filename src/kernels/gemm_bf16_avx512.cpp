// linear() at MatmulPrecision::BF16 for BF16/F16 weights (avx512). PLACEHOLDER: emulates the
// rounding (x rounded to bf16, then the f32 path); to be replaced by a real kernel.
#include <vector>

#include "kernels/kernels_impl.h"

namespace qwen3vl::kernels::detail {

void linear_bf16_avx512(const float* x, int64_t m, const WeightRef& w, const float* bias, float* y) {
  std::vector<float> xr(static_cast<size_t>(m * w.k));
  for (size_t i = 0; i < xr.size(); ++i) xr[i] = round_bf16(x[i]);
  linear_f32_avx512(xr.data(), m, w, bias, y);
}

}  // namespace qwen3vl::kernels::detail

// linear() at MatmulPrecision::BF16 for BF16/F16 weights: the scalar twin that defines the
// numerics the SIMD versions are held to (tests/kernels/test_linear_bf16.cpp):
//   y[i, j] = sum_k round_bf16(x[i, k]) * w[j, k]  (+ bias[j])
// - x is rounded to bf16 (round to nearest even, as torch's float -> bfloat16 cast);
// - weights are used exactly as stored: BF16 widened to f32; F16 widened to f32 EXACTLY (an f16
//   value is generally not representable in bf16, and it is not rounded to it);
// - every product is exact in f32 (bf16 x bf16: 16 significant bits; bf16 x f16: 19 bits);
// - the sum is accumulated in f32 in increasing k order, bias added last.
// Multi-threaded over independent outputs (rows of W) only, so the thread count never changes
// a result.
#include <omp.h>

#include <cstdint>

#include "core/dtype.h"
#include "kernels/kernels_impl.h"

namespace qwen3vl::kernels::detail {

namespace {

inline float weight_at(const WeightRef& w, int64_t idx) {
  const uint16_t h = static_cast<const uint16_t*>(w.data)[idx];
  return w.dtype == DType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
}

}  // namespace

void linear_bf16_scalar(const float* x, int64_t m, const WeightRef& w, const float* bias, float* y) {
  const int64_t n = w.n, k = w.k;
  const int nt = m * n * (k > 0 ? k : 1) >= (int64_t{1} << 16) ? threads() : 1;
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t i = 0; i < m; ++i) {
      const float* xi = x + i * k;
      float acc = 0.0f;
      for (int64_t t = 0; t < k; ++t) acc += round_bf16(xi[t]) * weight_at(w, j * k + t);
      if (bias) acc += bias[j];
      y[i * n + j] = acc;
    }
  }
}

}  // namespace qwen3vl::kernels::detail

// linear() at MatmulPrecision::BF16 for BF16/F16 weights on AVX2 (no bf16 dot-product
// instruction): emulates the numerics of the scalar twin (gemm_bf16_scalar.cpp) by rounding x
// to bf16 into a per-thread buffer and running the f32 FMA path. Products of a bf16 x with a
// bf16/f16 weight are exact in f32, so the result differs from the twin only by f32 summation
// order (bound: tests/kernels/test_linear_bf16.cpp).
#include <immintrin.h>

#include <cstdlib>
#include <new>

#include "kernels/kernels_impl.h"

namespace qwen3vl::kernels::detail {

namespace {

// out[i] = round_bf16(in[i]) (round to nearest even; NaN stays NaN).
void round_bf16_avx2(const float* in, float* out, int64_t n) {
  const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7fff);
  const __m256i hi = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(in + i);
    const __m256i u = _mm256_castps_si256(v);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
    __m256i r = _mm256_and_si256(_mm256_add_epi32(u, _mm256_add_epi32(bias, lsb)), hi);
    // NaN: keep it a (quiet) NaN instead of letting the rounding carry change it.
    const __m256 nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
    const __m256i qnan = _mm256_and_si256(_mm256_or_si256(u, _mm256_set1_epi32(0x00400000)), hi);
    r = _mm256_blendv_epi8(r, qnan, _mm256_castps_si256(nan));
    _mm256_storeu_ps(out + i, _mm256_castsi256_ps(r));
  }
  for (; i < n; ++i) out[i] = round_bf16(in[i]);
}

}  // namespace

void linear_bf16_avx2(const float* x, int64_t m, const WeightRef& w, const float* bias, float* y) {
  // Rounded x in chunks of kRows rows (bounds the buffer to kRows * k floats).
  constexpr int64_t kRows = 512;
  static thread_local GrowBuffer<float> buf;
  const int64_t k = w.k, rows = m < kRows ? m : kRows;
  float* xr = buf.get(static_cast<size_t>(rows * k > 0 ? rows * k : 1));
  if (!xr) throw std::bad_alloc();
  for (int64_t i0 = 0; i0 < m; i0 += kRows) {
    const int64_t mc = m - i0 < kRows ? m - i0 : kRows;
    round_bf16_avx2(x + i0 * k, xr, mc * k);
    linear_f32_avx2(xr, mc, w, bias, y + i0 * w.n);
  }
}

}  // namespace qwen3vl::kernels::detail

// linear() for Q8_0 / Q4_0 weights, AVX2. Numerics: kernels/quant.h (scalar twin:
// linear_quant_scalar). One algorithm for every m: x is quantized to Q8_0 once per call
// (detail::quantize_activations); every W row is streamed once (threads split n), turned from
// the interleaved layout (core/quant.h) back into plain blocks in L1, and dotted
// with the m x rows while it is in L1, one block per ymm: |w| (u8) times x with the sign of w
// (s8) via maddubs (pair sums <= 2 * 128 * 127, no saturation), madd to int32 lanes of exact
// product sums, each lane scaled by dx * dw and accumulated in f32.
#include <immintrin.h>
#include <omp.h>

#include <cstring>
#include <vector>

#include "kernels/kernels_impl.h"
#include "kernels/quant.h"

namespace qwen3vl::kernels::detail {

namespace {

constexpr int64_t kParallelMacs = 1 << 17;

template <bool Q8>
inline __m256i load_w_block(const uint8_t* blk) {
  if constexpr (Q8) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
  } else {
    const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2));
    const __m128i lo = _mm_and_si128(t, _mm_set1_epi8(0x0F));
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(t, 4), _mm_set1_epi8(0x0F));
    return _mm256_sub_epi8(_mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1), _mm256_set1_epi8(8));
  }
}

template <bool Q8>
void rows_avx2(const int8_t* qs, const float* dx, int64_t m, int64_t k, const uint8_t* w, int64_t jb, int64_t je,
               const float* bias, float* y, int64_t n) {
  constexpr int BB = Q8 ? 34 : 18;
  const int64_t nb = k / 32, row_bytes = nb * BB;
  const __m256i ones = _mm256_set1_epi16(1);
  std::vector<uint8_t> plain(static_cast<size_t>(row_bytes));  // row j as plain blocks
  for (int64_t j = jb; j < je; ++j) {
    quant_row_to_blocks(Q8 ? DType::Q8_0 : DType::Q4_0, w + j * row_bytes, nb, plain.data());
    const uint8_t* row = plain.data();
    for (int64_t i = 0; i < m; ++i) {
      const int8_t* xq = qs + i * k;
      const float* dxi = dx + i * nb;
      __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
      for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* blk = row + b * BB;
        uint16_t dh;
        std::memcpy(&dh, blk, 2);
        const float scale = dxi[b] * _cvtsh_ss(dh);
        const __m256i wv = load_w_block<Q8>(blk);
        const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + b * 32));
        const __m256i p16 = _mm256_maddubs_epi16(_mm256_abs_epi8(wv), _mm256_sign_epi8(xv, wv));
        const __m256 p = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, ones));
        if (b & 1) a1 = _mm256_fmadd_ps(p, _mm256_set1_ps(scale), a1);
        else a0 = _mm256_fmadd_ps(p, _mm256_set1_ps(scale), a0);
      }
      const __m256 a = _mm256_add_ps(a0, a1);
      __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
      s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
      s4 = _mm_add_ss(s4, _mm_movehdup_ps(s4));
      float s = _mm_cvtss_f32(s4);
      if (bias) s += bias[j];
      y[i * n + j] = s;
    }
  }
}

template <typename T>
struct Buf {
  std::vector<T> v;
  T* get(size_t n) {
    if (v.size() < n) v.resize(n);
    return v.data();
  }
};

}  // namespace

void linear_quant_avx2(const float* x, int64_t m, const WeightRef& w, const float* bias, float* y) {
  const int64_t n = w.n, k = w.k, nb = k / 32;
  static thread_local Buf<int8_t> qb;
  static thread_local Buf<float> db;
  static thread_local Buf<int32_t> sb;
  int8_t* qs = qb.get(static_cast<size_t>(m * k));
  float* dx = db.get(static_cast<size_t>(m * nb));
  int32_t* sx = sb.get(static_cast<size_t>(m * nb));
  for (int64_t i = 0; i < m; ++i) {
    QuantizedRow qr{qs + i * k, dx + i * nb, sx + i * nb};
    quantize_activations(x + i * k, k, &qr);
  }
  const bool q8 = w.dtype == DType::Q8_0;
  const auto* wb = static_cast<const uint8_t*>(w.data);
  int nt = m * n * k >= kParallelMacs ? threads() : 1;
  if (nt > n) nt = static_cast<int>(n);
  if (nt <= 1) {
    if (q8) rows_avx2<true>(qs, dx, m, k, wb, 0, n, bias, y, n);
    else rows_avx2<false>(qs, dx, m, k, wb, 0, n, bias, y, n);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    int64_t jb, je;
    split_range(n, omp_get_num_threads(), omp_get_thread_num(), 1, &jb, &je);
    if (jb < je) {
      if (q8) rows_avx2<true>(qs, dx, m, k, wb, jb, je, bias, y, n);
      else rows_avx2<false>(qs, dx, m, k, wb, jb, je, bias, y, n);
    }
  }
}

}  // namespace qwen3vl::kernels::detail

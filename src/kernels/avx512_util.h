// Small AVX-512 helpers shared by the AVX-512 translation units (kernels_avx512.cpp,
// attention_bf16_avx512.cpp). Include only from files compiled with -mavx512*: everything here
// has internal linkage, so no AVX-512 code can be picked by the linker for another ISA's callers.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace qwen3vl::kernels::detail {
namespace {

// Mask of the first `left` lanes (all 16 when left >= 16, none when left <= 0).
inline __mmask16 tail_mask(int64_t left) {
  return left >= 16 ? static_cast<__mmask16>(0xffff) : left <= 0 ? 0 : static_cast<__mmask16>((1u << left) - 1u);
}

// exp(x) for f32 lanes: n = round(x log2 e), r = x - n ln2 (Cody-Waite, two constants),
// e^r by the degree-7 Taylor polynomial (|r| <= ln2/2: truncation < 2^-24 relative), scaled by
// 2^n with vscalefps (exact, handles overflow to inf and gradual underflow to 0). Max error
// ~2 ulp. This one takes x already clamped to [-110, 89]; exp512 below clamps.
inline __m512 exp512_clamped(__m512 x) {
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.4426950408889634f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// exp(x); exp(-inf) = 0.
inline __m512 exp512(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-110.0f));  // exp(-110) rounds to +0
  x = _mm512_min_ps(x, _mm512_set1_ps(89.0f));
  return exp512_clamped(x);
}

// The sums of 16 vectors at once: lane r of the result = the sum of v[r]'s lanes, added in exactly
// the order of _mm512_reduce_add_ps (lanes i + (i + 8), then + 4, + 2, + 1), so each row's result
// is the same bits as reducing it alone; 15 adds and 31 shuffles instead of 16 separate
// reductions (~9% of a Q4_0 decode's L2-resident time went to the per-row reductions, perf). Used by the
// quantized decode GEMV and the decode attention's scores.
inline __m512 reduce16(const __m512* v) {
  __m512 l1[8], l2[4], l3[2];
#pragma GCC unroll 8
  for (int q = 0; q < 8; ++q)  // chunks [A0+A2, A1+A3, B0+B2, B1+B3] of rows A = 2q, B = 2q + 1
    l1[q] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * q], v[2 * q + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                          _mm512_shuffle_f32x4(v[2 * q], v[2 * q + 1], _MM_SHUFFLE(3, 2, 3, 2)));
#pragma GCC unroll 4
  for (int q = 0; q < 4; ++q)  // chunk c: the 4 partial sums of row 4q + c
    l2[q] = _mm512_add_ps(_mm512_shuffle_f32x4(l1[2 * q], l1[2 * q + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                          _mm512_shuffle_f32x4(l1[2 * q], l1[2 * q + 1], _MM_SHUFFLE(3, 1, 3, 1)));
#pragma GCC unroll 2
  for (int q = 0; q < 2; ++q)  // chunk c: 2 partial sums of row 8q + c, then of row 8q + 4 + c
    l3[q] = _mm512_add_ps(_mm512_shuffle_ps(l2[2 * q], l2[2 * q + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                          _mm512_shuffle_ps(l2[2 * q], l2[2 * q + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  // lane 4c + t: row 4t + c
  const __m512 r = _mm512_add_ps(_mm512_shuffle_ps(l3[0], l3[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm512_shuffle_ps(l3[0], l3[1], _MM_SHUFFLE(3, 1, 3, 1)));
  const __m512i to_rows = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
  return _mm512_permutexvar_ps(to_rows, r);
}

// In-register 16 x 16 transpose: r[i][j] -> r[j][i]. 32-bit then 64-bit interleaves inside
// 128-bit blocks, then two rounds of 128-bit block shuffles.
inline void transpose16(__m512* r) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  // u[4g + c]: rows 4g..4g+3, columns c, c+4, c+8, c+12 (one per 128-bit block).
  __m512 u[16];
  for (int g = 0; g < 4; ++g) {
    const __m512d a = _mm512_castps_pd(t[4 * g]), b = _mm512_castps_pd(t[4 * g + 2]);
    const __m512d c = _mm512_castps_pd(t[4 * g + 1]), e = _mm512_castps_pd(t[4 * g + 3]);
    u[4 * g + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
    u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
    u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, e));
    u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, e));
  }
  for (int c = 0; c < 4; ++c) {
    const __m512 v0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88), w0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xDD);
    const __m512 v1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88), w1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xDD);
    r[c] = _mm512_shuffle_f32x4(v0, v1, 0x88);
    r[c + 8] = _mm512_shuffle_f32x4(v0, v1, 0xDD);
    r[c + 4] = _mm512_shuffle_f32x4(w0, w1, 0x88);
    r[c + 12] = _mm512_shuffle_f32x4(w0, w1, 0xDD);
  }
}

}  // namespace
}  // namespace qwen3vl::kernels::detail

// linear() at MatmulPrecision::BF16 for BF16/F16 weights on AVX-512 (F/BW/VL/DQ; the vdpbf16ps
// GEMV runs only when cpu_has_avx512_bf16(), else the rounding + f32 route below). Numerics of the scalar twin (gemm_bf16_scalar.cpp): x rounded to bf16
// (round to nearest even), products exact, f32 accumulation.
//
// Routing, by measurement on the target Sapphire Rapids (bench/bench_gemm_bf16.cpp,
// BM_Dpbf16Peak vs BM_FmaPeak): one vdpbf16ps zmm (64 flops) issues at about a quarter of the
// rate of vfmadd231ps zmm (32 flops), so bf16 dot products reach only ~half the f32 FMA flop
// rate; a cache-blocked vdpbf16ps GEMM (12 x 32 micro-kernel, k-pair packed panels) ran at
// 0.7x the f32 FMA GEMM. Since a bf16 x times a bf16 (or f16) weight is exact in f32, the f32
// FMA kernels on bf16-rounded x compute the same products, so:
//  - m <= kDpbf16MaxM (decode GEMV, memory-bound): vdpbf16ps streaming the bf16 weights
//    directly (no widening; fewer uops per byte than widen + FMA, measured faster at m = 1).
//    x is converted to bf16 once (row stride padded to 32 with zeros); per step one cache line
//    (32 bf16) of each of 4 W rows is dotted with the x rows; the last step of a row loads W
//    with a mask (zeros past k). Threads split n. vdpbf16ps adds the two products of a pair
//    one after the other, each rounded to f32; it and vcvtne2ps2bf16 treat denormals as zero
//    (the twin does not: a difference below 2^-126 per product).
//  - otherwise, and for F16 weights (not representable in bf16; kept exact): the f32 FMA path
//    on x rounded to bf16 (bit-exact with round_bf16): linear_f32_round_x_bf16_avx512
//    (kernels_avx512.cpp, linear_simd.inc): the cache-blocked GEMM rounds x while packing it
//    (no rounded copy of x), the multi-row GEMV below its crossover rounds its few rows first.

// GCC 12's AVX-512 intrinsics headers self-initialise "undefined" vectors, which -Wuninitialized
// reports at every inlined use; the warning location is the header, so silence it there.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <new>

#include "kernels/kernels_impl.h"

namespace qwen3vl::kernels::detail {

namespace {

// m up to this uses the vdpbf16ps GEMV (measured: faster than widen + FMA at m = 1, equal at
// m = 2, slower from m = 4; bench_gemm_bf16.cpp).
constexpr int64_t kDpbf16MaxM = 2;
constexpr int64_t kParallelMacs = 1 << 17;  // work below which an op stays single-threaded
constexpr int64_t kGemvUnit = 16;           // W rows per GEMV scheduling unit (4 tiles of 4)
constexpr int kMaxMulti = 4;                // most weights one fused GEMV call takes

struct Buffer {
  void* p = nullptr;
  size_t cap = 0;
  template <typename T>
  T* get(size_t count) {
    const size_t bytes = count * sizeof(T);
    if (bytes > cap) {
      std::free(p);
      p = std::aligned_alloc(64, ((bytes + 63) / 64) * 64);
      cap = p ? bytes : 0;
      if (!p) throw std::bad_alloc();
    }
    return static_cast<T*>(p);
  }
  ~Buffer() { std::free(p); }
};

inline __mmask16 mask16(int64_t n) { return n >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << n) - 1u); }
inline __mmask32 mask32(int64_t n) { return n >= 32 ? static_cast<__mmask32>(0xffffffffu) : static_cast<__mmask32>((1u << n) - 1u); }

// Horizontal sum (GCC 12's _mm512_reduce_add_ps trips -Wuninitialized in its own header).
inline float hsum(__m512 v) {
  const __m512i i8 = _mm512_set_epi32(7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8);
  const __m512i i4 = _mm512_set_epi32(11, 10, 9, 8, 15, 14, 13, 12, 3, 2, 1, 0, 7, 6, 5, 4);
  const __m512i i2 = _mm512_set_epi32(13, 12, 15, 14, 9, 8, 11, 10, 5, 4, 7, 6, 1, 0, 3, 2);
  const __m512i i1 = _mm512_set_epi32(14, 15, 12, 13, 10, 11, 8, 9, 6, 7, 4, 5, 2, 3, 0, 1);
  v = _mm512_add_ps(v, _mm512_permutexvar_ps(i8, v));
  v = _mm512_add_ps(v, _mm512_permutexvar_ps(i4, v));
  v = _mm512_add_ps(v, _mm512_permutexvar_ps(i2, v));
  v = _mm512_add_ps(v, _mm512_permutexvar_ps(i1, v));
  return _mm512_cvtss_f32(v);
}

// out[0 .. 2 * ceil(n / 2)) = bf16(in[0 .. n)) (round to nearest even), zero-padded to an even
// count; then zeros up to `padded` elements (padded >= that even count).
void cvt_row_bf16(const float* in, int64_t n, uint16_t* out, int64_t padded) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(in + i + 16), _mm512_loadu_ps(in + i));
    _mm512_storeu_si512(out + i, (__m512i)v);
  }
  for (; i < padded; i += 32) {
    const int64_t left = n - i;  // may be <= 0
    const __m512 lo = _mm512_maskz_loadu_ps(mask16(left > 0 ? left : 0), in + i);
    const __m512 hi = _mm512_maskz_loadu_ps(mask16(left > 16 ? left - 16 : 0), in + i + 16);
    const __m512i v = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
    const int64_t room = padded - i;
    _mm512_mask_storeu_epi16(out + i, mask32(room), v);
  }
}

// ------------------------------------------------------------------------------------------
// GEMV (small m).

// y[i, j0 + j] for i < MB, j < NB. xb: MB rows of bf16 x, row stride kp32 (multiple of 32,
// zero-padded past k).
template <int MB, int NB>
inline void gemv_tile(const uint16_t* xb, int64_t kp32, int64_t k, const uint16_t* w, int64_t j0, const float* bias,
                      float* y, int64_t n) {
  __m512 acc[MB][NB];
#pragma GCC unroll 4
  for (int i = 0; i < MB; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) acc[i][j] = _mm512_setzero_ps();
  const uint16_t* wr[NB];
#pragma GCC unroll 4
  for (int j = 0; j < NB; ++j) wr[j] = w + (j0 + j) * k;
  int64_t kk = 0;
  for (; kk + 32 <= k; kk += 32) {
    __m512bh wv[NB];
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) {
      // Prefetch the same line of the next tile's rows: a W row (4 KiB at k = 2048) is one
      // page, where the hardware streamer stops and has to ramp up again; this keeps 2 NB row
      // streams in flight (measured: faster on the noisy shared machine in 5 of 6 A/B runs).
      if constexpr (NB == 4) _mm_prefetch(reinterpret_cast<const char*>(wr[j] + NB * k + kk), _MM_HINT_T0);
      wv[j] = (__m512bh)_mm512_loadu_si512(wr[j] + kk);
    }
#pragma GCC unroll 4
    for (int i = 0; i < MB; ++i) {
      const __m512bh xv = (__m512bh)_mm512_load_si512(xb + i * kp32 + kk);
#pragma GCC unroll 4
      for (int j = 0; j < NB; ++j) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], xv, wv[j]);
    }
  }
  if (kk < k) {
    const __mmask32 mk = mask32(k - kk);
    __m512bh wv[NB];
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) wv[j] = (__m512bh)_mm512_maskz_loadu_epi16(mk, wr[j] + kk);
#pragma GCC unroll 4
    for (int i = 0; i < MB; ++i) {
      const __m512bh xv = (__m512bh)_mm512_load_si512(xb + i * kp32 + kk);
#pragma GCC unroll 4
      for (int j = 0; j < NB; ++j) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], xv, wv[j]);
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < MB; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) {
      float s = hsum(acc[i][j]);
      if (bias) s += bias[j0 + j];
      y[i * n + j0 + j] = s;
    }
}

template <int MB>
void gemv_rows(const uint16_t* xb, int64_t kp32, int64_t k, const uint16_t* w, int64_t jb, int64_t je,
               const float* bias, float* y, int64_t n) {
  int64_t j = jb;
  for (; j + 4 <= je; j += 4) gemv_tile<MB, 4>(xb, kp32, k, w, j, bias, y, n);
  for (; j < je; ++j) gemv_tile<MB, 1>(xb, kp32, k, w, j, bias, y, n);
}

void gemv_small_m(const uint16_t* xb, int64_t m, int64_t kp32, int64_t k, const uint16_t* w, int64_t jb, int64_t je,
                  const float* bias, float* y, int64_t n) {
  // Blocks of 64 W rows (256 KiB at k = 2048, L2-resident) are reused across all pairs of x
  // rows; for m <= 2 this is one pass over W.
  constexpr int64_t JB = 64;
  for (int64_t j0 = jb; j0 < je; j0 += JB) {
    const int64_t j1 = j0 + JB < je ? j0 + JB : je;
    int64_t i = 0;
    for (; i + 2 <= m; i += 2) gemv_rows<2>(xb + i * kp32, kp32, k, w, j0, j1, bias, y + i * n, n);
    if (i < m) gemv_rows<1>(xb + i * kp32, kp32, k, w, j0, j1, bias, y + i * n, n);
  }
}

// y[i] = x w[i]^T (+ bias[i]) for `count` weights sharing x and k (m <= kDpbf16MaxM): x rounded
// once; units of 16 rows of all the weights chunked by run_chunked (long contiguous runs first,
// single units at the end: a static half each, and later 64-row dynamic blocks, left one thread
// spinning at the join while the other still streamed, ~10% of decode time in libgomp's barrier,
// perf). Every row is computed the same way whichever thread takes it.
void gemv(const float* x, int64_t m, int64_t k, const uint16_t* const* w, const int64_t* n, const float* const* bias,
          float* const* y, int count, int nt) {
  const int64_t kp32 = (k + 31) / 32 * 32;
  static thread_local Buffer xbuf;
  uint16_t* xb = xbuf.get<uint16_t>(static_cast<size_t>(m * kp32));
  for (int64_t i = 0; i < m; ++i) cvt_row_bf16(x + i * k, k, xb + i * kp32, kp32);
  int64_t first[kMaxMulti + 1] = {0};  // first unit of each weight
  for (int i = 0; i < count; ++i) first[i + 1] = first[i] + (n[i] + kGemvUnit - 1) / kGemvUnit;
  const int64_t units = first[count];
  if (nt > units) nt = static_cast<int>(units);
  if (nt <= 1) {
    for (int i = 0; i < count; ++i) gemv_small_m(xb, m, kp32, k, w[i], 0, n[i], bias[i], y[i], n[i]);
    return;
  }
  run_chunked(units, nt, [&](int64_t u0, int64_t u1) {
    for (int i = 0; i < count; ++i) {  // the part of [u0, u1) in weight i: one run of rows
      const int64_t a = std::max(u0, first[i]) - first[i], b = std::min(u1, first[i + 1]) - first[i];
      if (a < b) gemv_small_m(xb, m, kp32, k, w[i], a * kGemvUnit, std::min(b * kGemvUnit, n[i]), bias[i], y[i], n[i]);
    }
  });
}

}  // namespace

void linear_bf16_avx512(const float* x, int64_t m, const WeightRef& w, const float* bias, float* y) {
  const int64_t n = w.n, k = w.k;
  if (w.dtype == DType::BF16 && m <= kDpbf16MaxM && k > 0 && cpu_has_avx512_bf16()) {
    const int nt = m * n * k >= kParallelMacs ? threads() : 1;
    const uint16_t* wd = static_cast<const uint16_t*>(w.data);
    return gemv(x, m, k, &wd, &n, &bias, &y, 1, nt);
  }
  // The f32 FMA kernels on bf16-rounded x; the GEMM rounds x while packing it (no rounded copy).
  linear_f32_round_x_bf16_avx512(x, m, w, bias, y);
}

bool linear_bf16_multi_avx512(const float* x, int64_t m, const WeightRef* w, float* const* y, int count) {
  if (count > kMaxMulti || m > kDpbf16MaxM || !cpu_has_avx512_bf16() || w[0].k == 0) return false;
  const uint16_t* wd[kMaxMulti];
  int64_t n[kMaxMulti], rows = 0;
  const float* const bias[kMaxMulti] = {};
  for (int i = 0; i < count; ++i) {
    if (w[i].dtype != DType::BF16 || w[i].k != w[0].k) return false;
    wd[i] = static_cast<const uint16_t*>(w[i].data);
    n[i] = w[i].n;
    rows += w[i].n;
  }
  gemv(x, m, w[0].k, wd, n, bias, y, count, m * rows * w[0].k >= kParallelMacs ? threads() : 1);
  return true;
}

}  // namespace qwen3vl::kernels::detail

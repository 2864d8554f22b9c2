// AVX2 + FMA + F16C kernels. Compiled with -mavx2 -mfma -mf16c; only reached when the CPU has
// them (dispatch.cpp). Everything here has internal linkage except avx2_table().
#include <immintrin.h>
#include <omp.h>

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "kernels/kernels_impl.h"

namespace qwen3vl::kernels::detail {
namespace {

constexpr int VW = 8;
using vf = __m256;
inline vf vzero() { return _mm256_setzero_ps(); }
inline vf vset1(float v) { return _mm256_set1_ps(v); }
inline vf vload(const float* p) { return _mm256_loadu_ps(p); }
inline void vstore(float* p, vf v) { _mm256_storeu_ps(p, v); }
inline vf vfma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
inline vf vadd(vf a, vf b) { return _mm256_add_ps(a, b); }
inline float vhsum(vf v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <DType DT>
inline vf vload_w(const void* base, int64_t idx) {
  if constexpr (DT == DType::F32) {
    return _mm256_loadu_ps(static_cast<const float*>(base) + idx);
  } else if constexpr (DT == DType::BF16) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(base) + idx));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  } else {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(base) + idx));
    return _mm256_cvtph_ps(h);
  }
}

template <DType DT>
inline float load_w1(const void* base, int64_t idx) {
  if constexpr (DT == DType::F32) {
    return static_cast<const float*>(base)[idx];
  } else if constexpr (DT == DType::BF16) {
    uint32_t u = static_cast<uint32_t>(static_cast<const uint16_t*>(base)[idx]) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  } else {
    return _cvtsh_ss(static_cast<const uint16_t*>(base)[idx]);
  }
}

// In-register 8 x 8 transpose: r[i][j] -> r[j][i].
inline void transpose_vw(__m256* r) {
  __m256 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int g = 0; g < 2; ++g) {
    const __m256d a = _mm256_castps_pd(t[4 * g]), b = _mm256_castps_pd(t[4 * g + 2]);
    const __m256d c = _mm256_castps_pd(t[4 * g + 1]), e = _mm256_castps_pd(t[4 * g + 3]);
    u[4 * g + 0] = _mm256_castpd_ps(_mm256_unpacklo_pd(a, b));
    u[4 * g + 1] = _mm256_castpd_ps(_mm256_unpackhi_pd(a, b));
    u[4 * g + 2] = _mm256_castpd_ps(_mm256_unpacklo_pd(c, e));
    u[4 * g + 3] = _mm256_castpd_ps(_mm256_unpackhi_pd(c, e));
  }
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
    r[c + 4] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
  }
}

constexpr int kMR = 6;  // 6 x 16 micro-kernel: 12 ymm accumulators

#include "kernels/linear_simd.inc"

// ------------------------------------------------------------------------------------------
// Element-wise ops and norms (AVX2). Attention stays on the scalar twin for this ISA.

// exp(x): n = round(x log2 e), r = x - n ln2 (two constants), degree-7 Taylor for e^r, times
// 2^n built in the exponent field. x is clamped to [-87.3, 89]: above, n = 128 gives +inf
// (overflow, as expf); below, the result stays at ~e^-87.3 ~ 1e-38 instead of decaying to 0,
// which only matters where callers use it as a negligible weight or add it to 1.
inline __m256 exp256(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.3f));
  x = _mm256_min_ps(x, _mm256_set1_ps(89.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.4426950408889634f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  // 2^n for n in [-126, 128]: (n + 127) << 23 (n = 128 is the +inf bit pattern).
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

constexpr int64_t kParallelElems = 1 << 16;

template <typename F>
inline void parallel_chunks(int64_t n, int64_t cost_per_elem, F body) {
  int nt = n * cost_per_elem >= kParallelElems ? threads() : 1;
  if (nt <= 1) return body(int64_t{0}, n);
#pragma omp parallel num_threads(nt)
  {
    int64_t b, e;
    split_range(n, omp_get_num_threads(), omp_get_thread_num(), 8, &b, &e);
    if (b < e) body(b, e);
  }
}

// Applies f to full vectors of [b, e) and the scalar tail through an 8-lane buffer, so every
// element takes the same vector path.
template <typename F>
inline void map_unary(float* x, int64_t b, int64_t e, F f) {
  int64_t i = b;
  for (; i + 8 <= e; i += 8) _mm256_storeu_ps(x + i, f(_mm256_loadu_ps(x + i)));
  if (i < e) {
    alignas(32) float t[8] = {};
    for (int64_t j = i; j < e; ++j) t[j - i] = x[j];
    _mm256_store_ps(t, f(_mm256_load_ps(t)));
    for (int64_t j = i; j < e; ++j) x[j] = t[j - i];
  }
}

void add_inplace_avx2(float* y, const float* x, int64_t n) {
  parallel_chunks(n, 1, [=](int64_t b, int64_t e) {
    int64_t i = b;
    for (; i + 8 <= e; i += 8) _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(x + i)));
    for (; i < e; ++i) y[i] += x[i];
  });
}

void silu_mul_avx2(const float* gate, const float* up, float* out, int64_t n) {
  parallel_chunks(n, 8, [=](int64_t b, int64_t e) {
    const __m256 one = _mm256_set1_ps(1.0f);
    auto silu = [&](__m256 g) { return _mm256_div_ps(g, _mm256_add_ps(one, exp256(_mm256_sub_ps(_mm256_setzero_ps(), g)))); };
    int64_t i = b;
    for (; i + 8 <= e; i += 8)
      _mm256_storeu_ps(out + i, _mm256_mul_ps(silu(_mm256_loadu_ps(gate + i)), _mm256_loadu_ps(up + i)));
    if (i < e) {
      alignas(32) float g[8] = {}, u[8] = {};
      for (int64_t j = i; j < e; ++j) { g[j - i] = gate[j]; u[j - i] = up[j]; }
      _mm256_store_ps(g, _mm256_mul_ps(silu(_mm256_load_ps(g)), _mm256_load_ps(u)));
      for (int64_t j = i; j < e; ++j) out[j] = g[j - i];
    }
  });
}

// gelu_tanh(x) = x / (1 + exp(-2 y)), y = sqrt(2/pi) (x + 0.044715 x^3) (see kernels_avx512.cpp).
void gelu_tanh_avx2(float* x, int64_t n) {
  parallel_chunks(n, 8, [=](int64_t b, int64_t e) {
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 beta2 = _mm256_set1_ps(-2.0f * 0.7978845608028654f), kappa = _mm256_set1_ps(0.044715f);
    map_unary(x, b, e, [&](__m256 v) {
      const __m256 cube = _mm256_mul_ps(_mm256_mul_ps(v, v), v);
      const __m256 inner = _mm256_mul_ps(beta2, _mm256_fmadd_ps(kappa, cube, v));
      return _mm256_div_ps(v, _mm256_add_ps(one, exp256(inner)));
    });
  });
}

void rms_norm_avx2(const float* x, int64_t rows, int64_t d, const float* w, float eps, float* y) {
  parallel_chunks(rows, d * 4, [=](int64_t rb, int64_t re) {
    for (int64_t r = rb; r < re; ++r) {
      const float* xr = x + r * d;
      float* yr = y + r * d;
      __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
      int64_t i = 0;
      for (; i + 16 <= d; i += 16) {
        const __m256 v0 = _mm256_loadu_ps(xr + i), v1 = _mm256_loadu_ps(xr + i + 8);
        a0 = _mm256_fmadd_ps(v0, v0, a0);
        a1 = _mm256_fmadd_ps(v1, v1, a1);
      }
      float ss = vhsum(_mm256_add_ps(a0, a1));
      for (; i < d; ++i) ss += xr[i] * xr[i];
      const float rstd = 1.0f / std::sqrt(ss / static_cast<float>(d) + eps);
      const __m256 vr = _mm256_set1_ps(rstd);
      for (i = 0; i + 8 <= d; i += 8) {
        __m256 t = _mm256_mul_ps(_mm256_loadu_ps(xr + i), vr);
        if (w) t = _mm256_mul_ps(_mm256_loadu_ps(w + i), t);
        _mm256_storeu_ps(yr + i, t);
      }
      for (; i < d; ++i) yr[i] = w ? w[i] * (xr[i] * rstd) : xr[i] * rstd;
    }
  });
}

void softmax_avx2(float* x, int64_t rows, int64_t n) {
  parallel_chunks(rows, n * 8, [=](int64_t rb, int64_t re) {
    for (int64_t r = rb; r < re; ++r) {
      float* xr = x + r * n;
      float mx = -INFINITY;
      for (int64_t i = 0; i < n; ++i) mx = xr[i] > mx ? xr[i] : mx;
      const __m256 vmax = _mm256_set1_ps(mx);
      map_unary(xr, 0, n, [&](__m256 v) { return exp256(_mm256_sub_ps(v, vmax)); });
      float sum = 0.0f;
      for (int64_t i = 0; i < n; ++i) sum += xr[i];
      const __m256 vs = _mm256_set1_ps(sum);
      map_unary(xr, 0, n, [&](__m256 v) { return _mm256_div_ps(v, vs); });
    }
  });
}

}  // namespace

const OpTable& avx2_table() {
  static const OpTable t = [] {
    OpTable o = scalar_table();
    o.linear = linear_simd;
    o.linear_bf16 = linear_bf16_avx2;
    o.linear_quant = linear_quant_avx2;
    o.attention_bf16 = o.attention;  // no bf16 attention kernel on AVX2: f32 (more exact)
    o.attention_bf16_kv = false;
    o.rms_norm = rms_norm_avx2;
    o.gelu_tanh = gelu_tanh_avx2;
    o.silu_mul = silu_mul_avx2;
    o.add_inplace = add_inplace_avx2;
    o.softmax_inplace = softmax_avx2;
    return o;
  }();
  return t;
}

void linear_f32_avx2(const float* x, int64_t m, const WeightRef& w, const float* bias, float* y) {
  linear_simd(x, m, w, bias, y);
}

}  // namespace qwen3vl::kernels::detail

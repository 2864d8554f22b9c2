// AVX-512 (F/BW/VL/DQ) kernels. Compiled with -mavx512*; only reached when the CPU has them
// (dispatch.cpp). Everything here has internal linkage except avx512_table(), so no code
// compiled for AVX-512 can be picked by the linker for another ISA's callers.
#include <immintrin.h>
#include <omp.h>

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "kernels/avx512_util.h"
#include "kernels/kernels_impl.h"

namespace qwen3vl::kernels::detail {
namespace {

constexpr int VW = 16;
using vf = __m512;
inline vf vzero() { return _mm512_setzero_ps(); }
inline vf vset1(float v) { return _mm512_set1_ps(v); }
inline vf vload(const float* p) { return _mm512_loadu_ps(p); }
inline void vstore(float* p, vf v) { _mm512_storeu_ps(p, v); }
inline vf vfma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
inline vf vadd(vf a, vf b) { return _mm512_add_ps(a, b); }
inline float vhsum(vf v) { return _mm512_reduce_add_ps(v); }

template <DType DT>
inline vf vload_w(const void* base, int64_t idx) {
  if constexpr (DT == DType::F32) {
    return _mm512_loadu_ps(static_cast<const float*>(base) + idx);
  } else if constexpr (DT == DType::BF16) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(base) + idx));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  } else {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(base) + idx));
    return _mm512_cvtph_ps(h);
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

inline void transpose_vw(__m512* r) { transpose16(r); }

constexpr int kMR = 12;  // 12 x 32 micro-kernel: 24 zmm accumulators

#include "kernels/linear_simd.inc"

// x op for MatmulPrecision::BF16 (gemm_bf16_avx512.cpp): x rounded to bf16 (as f32),
// bit-exact with round_bf16() (round to nearest even; NaN stays a quiet NaN).
struct RoundBf16XOp {
  static constexpr bool kIdentity = false;
  static vf apply(vf v) {
    const __m512i one = _mm512_set1_epi32(1), rb = _mm512_set1_epi32(0x7fff);
    const __m512i hi = _mm512_set1_epi32(static_cast<int>(0xffff0000u)), quiet = _mm512_set1_epi32(0x00400000);
    const __m512i u = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), one);
    __m512i r = _mm512_and_si512(_mm512_add_epi32(u, _mm512_add_epi32(rb, lsb)), hi);
    const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    r = _mm512_mask_mov_epi32(r, nan, _mm512_and_si512(_mm512_or_si512(u, quiet), hi));
    return _mm512_castsi512_ps(r);
  }
  static float apply1(float v) { return round_bf16(v); }
};

// ------------------------------------------------------------------------------------------
// Element-wise ops, norms, softmax, rope, attention.


constexpr int64_t kParallelElems = 1 << 16;

// Runs body(begin, end) over [0, n) split across threads (chunks aligned to 16) when n is large.
template <typename F>
inline void parallel_chunks(int64_t n, int64_t cost_per_elem, F body) {
  int nt = n * cost_per_elem >= kParallelElems ? threads() : 1;
  if (nt <= 1) return body(int64_t{0}, n);
#pragma omp parallel num_threads(nt)
  {
    int64_t b, e;
    split_range(n, omp_get_num_threads(), omp_get_thread_num(), 16, &b, &e);
    if (b < e) body(b, e);
  }
}

void add_inplace_avx512(float* y, const float* x, int64_t n) {
  parallel_chunks(n, 1, [=](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i += 16) {
      const __mmask16 k = tail_mask(e - i);
      _mm512_mask_storeu_ps(y + i, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, y + i), _mm512_maskz_loadu_ps(k, x + i)));
    }
  });
}

void silu_mul_avx512(const float* gate, const float* up, float* out, int64_t n) {
  parallel_chunks(n, 8, [=](int64_t b, int64_t e) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int64_t i = b; i < e; i += 16) {
      const __mmask16 k = tail_mask(e - i);
      const __m512 g = _mm512_maskz_loadu_ps(k, gate + i);
      const __m512 s = _mm512_div_ps(g, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), g))));
      _mm512_mask_storeu_ps(out + i, k, _mm512_mul_ps(s, _mm512_maskz_loadu_ps(k, up + i)));
    }
  });
}

// gelu_tanh(x) = 0.5 x (1 + tanh(y)) = x / (1 + exp(-2 y)), y = sqrt(2/pi) (x + 0.044715 x^3):
// the identity 1 + tanh(y) = 2 / (1 + exp(-2y)) avoids the cancellation of 1 + tanh in the
// negative tail, so this is at least as accurate as the literal formula.
void gelu_tanh_avx512(float* x, int64_t n) {
  parallel_chunks(n, 8, [=](int64_t b, int64_t e) {
    const __m512 one = _mm512_set1_ps(1.0f);
    const __m512 beta2 = _mm512_set1_ps(-2.0f * 0.7978845608028654f), kappa = _mm512_set1_ps(0.044715f);
    for (int64_t i = b; i < e; i += 16) {
      const __mmask16 k = tail_mask(e - i);
      const __m512 v = _mm512_maskz_loadu_ps(k, x + i);
      const __m512 cube = _mm512_mul_ps(_mm512_mul_ps(v, v), v);
      const __m512 inner = _mm512_mul_ps(beta2, _mm512_fmadd_ps(kappa, cube, v));
      _mm512_mask_storeu_ps(x + i, k, _mm512_div_ps(v, _mm512_add_ps(one, exp512(inner))));
    }
  });
}

void rms_norm_avx512(const float* x, int64_t rows, int64_t d, const float* w, float eps, float* y) {
  auto row = [=](int64_t r) {
    const float* xr = x + r * d;
    float* yr = y + r * d;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= d; i += 32) {
      const __m512 v0 = _mm512_loadu_ps(xr + i), v1 = _mm512_loadu_ps(xr + i + 16);
      a0 = _mm512_fmadd_ps(v0, v0, a0);
      a1 = _mm512_fmadd_ps(v1, v1, a1);
    }
    for (; i < d; i += 16) {
      const __m512 v = _mm512_maskz_loadu_ps(tail_mask(d - i), xr + i);
      a0 = _mm512_fmadd_ps(v, v, a0);
    }
    const float ss = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    const __m512 rstd = _mm512_set1_ps(1.0f / std::sqrt(ss / static_cast<float>(d) + eps));
    for (i = 0; i < d; i += 16) {
      const __mmask16 k = tail_mask(d - i);
      __m512 t = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, xr + i), rstd);
      if (w) t = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, w + i), t);
      _mm512_mask_storeu_ps(yr + i, k, t);
    }
  };
  parallel_chunks(rows, d * 4, [=](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) row(r);
  });
}

void layer_norm_avx512(const float* x, int64_t rows, int64_t d, const float* w, const float* b, float eps, float* y) {
  auto row = [=](int64_t r) {
    const float* xr = x + r * d;
    float* yr = y + r * d;
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= d; i += 32) {
      s0 = _mm512_add_ps(s0, _mm512_loadu_ps(xr + i));
      s1 = _mm512_add_ps(s1, _mm512_loadu_ps(xr + i + 16));
    }
    for (; i < d; i += 16) s0 = _mm512_add_ps(s0, _mm512_maskz_loadu_ps(tail_mask(d - i), xr + i));
    const float mean = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1)) / static_cast<float>(d);
    const __m512 vm = _mm512_set1_ps(mean);
    s0 = s1 = _mm512_setzero_ps();
    for (i = 0; i + 32 <= d; i += 32) {
      const __m512 t0 = _mm512_sub_ps(_mm512_loadu_ps(xr + i), vm);
      const __m512 t1 = _mm512_sub_ps(_mm512_loadu_ps(xr + i + 16), vm);
      s0 = _mm512_fmadd_ps(t0, t0, s0);
      s1 = _mm512_fmadd_ps(t1, t1, s1);
    }
    for (; i < d; i += 16) {
      const __mmask16 k = tail_mask(d - i);
      const __m512 t = _mm512_maskz_sub_ps(k, _mm512_maskz_loadu_ps(k, xr + i), vm);
      s0 = _mm512_fmadd_ps(t, t, s0);
    }
    const float var = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1)) / static_cast<float>(d);
    const __m512 rstd = _mm512_set1_ps(1.0f / std::sqrt(var + eps));
    for (i = 0; i < d; i += 16) {
      const __mmask16 k = tail_mask(d - i);
      __m512 t = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, xr + i), vm), rstd);
      if (w) t = _mm512_mul_ps(t, _mm512_maskz_loadu_ps(k, w + i));
      if (b) t = _mm512_add_ps(t, _mm512_maskz_loadu_ps(k, b + i));
      _mm512_mask_storeu_ps(yr + i, k, t);
    }
  };
  parallel_chunks(rows, d * 4, [=](int64_t bb, int64_t e) {
    for (int64_t r = bb; r < e; ++r) row(r);
  });
}

void softmax_avx512(float* x, int64_t rows, int64_t n) {
  auto row = [=](int64_t r) {
    float* xr = x + r * n;
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (int64_t i = 0; i < n; i += 16)
      mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), tail_mask(n - i), xr + i));
    const __m512 vmax = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
    __m512 sum = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
      const __mmask16 k = tail_mask(n - i);
      const __m512 e = _mm512_maskz_mov_ps(k, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, xr + i), vmax)));
      sum = _mm512_add_ps(sum, e);
      _mm512_mask_storeu_ps(xr + i, k, e);
    }
    const __m512 vs = _mm512_set1_ps(_mm512_reduce_add_ps(sum));
    for (int64_t i = 0; i < n; i += 16) {
      const __mmask16 k = tail_mask(n - i);
      _mm512_mask_storeu_ps(xr + i, k, _mm512_div_ps(_mm512_maskz_loadu_ps(k, xr + i), vs));
    }
  };
  parallel_chunks(rows, n * 8, [=](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) row(r);
  });
}

void rope_avx512(float* x, int64_t tokens, int64_t x_token_stride, int64_t heads, int64_t head_dim, const float* cos,
                 const float* sin) {
  const int64_t h = head_dim / 2;
  parallel_chunks(tokens, heads * head_dim * 2, [=](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const float* c = cos + t * head_dim;
      const float* s = sin + t * head_dim;
      for (int64_t hh = 0; hh < heads; ++hh) {
        float* v = x + t * x_token_stride + hh * head_dim;
        for (int64_t j = 0; j < h; j += 16) {
          const __mmask16 k = tail_mask(h - j);
          const __m512 a = _mm512_maskz_loadu_ps(k, v + j), bb = _mm512_maskz_loadu_ps(k, v + j + h);
          const __m512 c1 = _mm512_maskz_loadu_ps(k, c + j), s1 = _mm512_maskz_loadu_ps(k, s + j);
          const __m512 c2 = _mm512_maskz_loadu_ps(k, c + j + h), s2 = _mm512_maskz_loadu_ps(k, s + j + h);
          _mm512_mask_storeu_ps(v + j, k, _mm512_sub_ps(_mm512_mul_ps(a, c1), _mm512_mul_ps(bb, s1)));
          _mm512_mask_storeu_ps(v + j + h, k, _mm512_add_ps(_mm512_mul_ps(bb, c2), _mm512_mul_ps(a, s2)));
        }
      }
    }
  });
}

// Attention. Work item = (kv head, block of QB queries); its rows are (group head g, query i)
// pairs (GQA heads sharing a kv head share the K/V loads). Online softmax over key blocks of
// KB = 32 keys; per row the state is (m, l, acc[d]).
//  - Many rows (prefill, vision): rows go 16 to a zmm. Q of the row group is transposed once
//    per item into qt[d][16], then per key block
//      scores s_j[16 rows] = scale * sum_t qt[t] * k_j[t]   (8 keys at a time, broadcast k)
//    and the softmax update is vectorised across rows (no horizontal reductions):
//      m' = max(m, max_j s_j), alpha = exp(m - m'), p_j = exp(s_j - m'), l = l alpha + sum_j p_j
//    then acc_r = acc_r alpha_r + sum_j p_j[r] v_j (4 zmm of d at a time, even/odd keys in
//    separate accumulators for ILP).
//  - Few rows (decode): per row, direct dot products k_j . q with a horizontal sum.
// Masked keys (causal / past sk) get s = -inf, i.e. p = 0.
constexpr int64_t KB = 32;
constexpr int64_t QB = 64;

struct AttnScratch {
  void* block = nullptr;
  float* qt;     // [row groups][d][16]  (transposed q of each group of 16 rows)
  float* acc;    // [rows16][d]
  float* kbuf;   // [KB][d]   contiguous copy of the key block (no 4 KiB-stride set aliasing)
  float* vbuf;   // [KB][d]
  float* pbuf;   // [KB][16]
  float* m;      // [rows16]
  float* l;      // [rows16]
  const float** qrow;  // [rows16]
  float** orow;        // [rows16]
  int32_t* vis;        // [rows16]
  AttnScratch(int64_t d, int64_t rows) {
    const int64_t r16 = (rows + 15) / 16 * 16;
    const size_t floats = static_cast<size_t>(2 * r16 * d + 2 * KB * d + KB * 16 + 2 * r16);
    const size_t bytes = floats * 4 + static_cast<size_t>(r16) * (2 * sizeof(void*) + 4) + 128;
    block = std::aligned_alloc(64, ((bytes + 63) / 64) * 64);
    qt = static_cast<float*>(block);
    acc = qt + r16 * d;
    kbuf = acc + r16 * d;
    vbuf = kbuf + KB * d;
    pbuf = vbuf + KB * d;
    m = pbuf + KB * 16;
    l = m + r16;
    char* q = reinterpret_cast<char*>(l + r16);
    qrow = reinterpret_cast<const float**>(q);
    orow = reinterpret_cast<float**>(q + r16 * sizeof(void*));
    vis = reinterpret_cast<int32_t*>(q + 2 * r16 * sizeof(void*));
  }
  ~AttnScratch() { std::free(block); }
};

// s[jj] = <q, k_{jj}> for jj < jn (k rows k_stride apart).
inline void attn_scores_direct(const float* q, const float* kbase, int64_t k_stride, int64_t jn, int64_t d, float* s) {
  for (int64_t jj = 0; jj < jn; ++jj) {
    const float* kr = kbase + jj * k_stride;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t t = 0;
    for (; t + 32 <= d; t += 32) {
      a0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + t), _mm512_loadu_ps(kr + t), a0);
      a1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + t + 16), _mm512_loadu_ps(kr + t + 16), a1);
    }
    for (; t < d; t += 16) {
      const __mmask16 mk = tail_mask(d - t);
      a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, q + t), _mm512_maskz_loadu_ps(mk, kr + t), a0);
    }
    s[jj] = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
  }
}

// acc[0..d) = acc * alpha + sum_{jj < jn} p[jj * pstride] * v_jj  (v rows v_stride apart).
__attribute__((noinline)) void attn_pv(float* acc, float alpha, const float* p, int64_t pstride, const float* vbase, int64_t v_stride,
                    int64_t jn, int64_t d) {
  const __m512 va = _mm512_set1_ps(alpha);
  for (int64_t t = 0; t < d; t += 64) {
    const int64_t tl = d - t;
    const __mmask16 m0 = tail_mask(tl), m1 = tail_mask(tl - 16 > 0 ? tl - 16 : 0),
                    m2 = tail_mask(tl - 32 > 0 ? tl - 32 : 0), m3 = tail_mask(tl - 48 > 0 ? tl - 48 : 0);
    __m512 c0 = _mm512_mul_ps(_mm512_maskz_loadu_ps(m0, acc + t), va);
    __m512 c1 = _mm512_mul_ps(_mm512_maskz_loadu_ps(m1, acc + t + 16), va);
    __m512 c2 = _mm512_mul_ps(_mm512_maskz_loadu_ps(m2, acc + t + 32), va);
    __m512 c3 = _mm512_mul_ps(_mm512_maskz_loadu_ps(m3, acc + t + 48), va);
    __m512 e0 = _mm512_setzero_ps(), e1 = _mm512_setzero_ps(), e2 = _mm512_setzero_ps(), e3 = _mm512_setzero_ps();
    int64_t jj = 0;
    for (; jj + 2 <= jn; jj += 2) {
      const float* vr = vbase + jj * v_stride + t;
      const float* vs = vr + v_stride;
      const __m512 pa = _mm512_set1_ps(p[jj * pstride]), pb = _mm512_set1_ps(p[(jj + 1) * pstride]);
      c0 = _mm512_fmadd_ps(pa, _mm512_maskz_loadu_ps(m0, vr), c0);
      c1 = _mm512_fmadd_ps(pa, _mm512_maskz_loadu_ps(m1, vr + 16), c1);
      c2 = _mm512_fmadd_ps(pa, _mm512_maskz_loadu_ps(m2, vr + 32), c2);
      c3 = _mm512_fmadd_ps(pa, _mm512_maskz_loadu_ps(m3, vr + 48), c3);
      e0 = _mm512_fmadd_ps(pb, _mm512_maskz_loadu_ps(m0, vs), e0);
      e1 = _mm512_fmadd_ps(pb, _mm512_maskz_loadu_ps(m1, vs + 16), e1);
      e2 = _mm512_fmadd_ps(pb, _mm512_maskz_loadu_ps(m2, vs + 32), e2);
      e3 = _mm512_fmadd_ps(pb, _mm512_maskz_loadu_ps(m3, vs + 48), e3);
    }
    if (jj < jn) {
      const float* vr = vbase + jj * v_stride + t;
      const __m512 pa = _mm512_set1_ps(p[jj * pstride]);
      c0 = _mm512_fmadd_ps(pa, _mm512_maskz_loadu_ps(m0, vr), c0);
      c1 = _mm512_fmadd_ps(pa, _mm512_maskz_loadu_ps(m1, vr + 16), c1);
      c2 = _mm512_fmadd_ps(pa, _mm512_maskz_loadu_ps(m2, vr + 32), c2);
      c3 = _mm512_fmadd_ps(pa, _mm512_maskz_loadu_ps(m3, vr + 48), c3);
    }
    _mm512_mask_storeu_ps(acc + t, m0, _mm512_add_ps(c0, e0));
    _mm512_mask_storeu_ps(acc + t + 16, m1, _mm512_add_ps(c1, e1));
    _mm512_mask_storeu_ps(acc + t + 32, m2, _mm512_add_ps(c2, e2));
    _mm512_mask_storeu_ps(acc + t + 48, m3, _mm512_add_ps(c3, e3));
  }
}

// Scores of one row group (16 rows, qt[d][16]) against keys k_0..k_{n-1} (n <= 8):
// s[j] = sum_t qt[t] * k_j[t].
template <int N>
inline void attn_scores_group(const float* qt, const float* kbase, int64_t k_stride, int64_t d, __m512* s) {
  const float* kr[N];
#pragma GCC unroll 8
  for (int j = 0; j < N; ++j) {
    s[j] = _mm512_setzero_ps();
    kr[j] = kbase + j * k_stride;
  }
  for (int64_t t = 0; t < d; ++t) {
    const __m512 qv = _mm512_load_ps(qt + t * 16);
#pragma GCC unroll 8
    for (int j = 0; j < N; ++j) s[j] = _mm512_fmadd_ps(qv, _mm512_set1_ps(kr[j][t]), s[j]);
  }
}

void attention_avx512_impl(const AttentionArgs& a) {
  const int64_t d = a.d, group = a.hq / a.hk;
  const int64_t qblocks = (a.sq + QB - 1) / QB;
  const int64_t items = a.hk * qblocks;
  const int64_t rows_max = group * (a.sq < QB ? a.sq : QB);
  const int nt = a.sq * a.hq * a.sk * d * 2 >= (1 << 16) ? threads() : 1;
#pragma omp parallel num_threads(nt)
  {
    AttnScratch sc(d, rows_max);
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t kvh = item / qblocks, i0 = (item % qblocks) * QB;
      const int64_t qn = a.sq - i0 < QB ? a.sq - i0 : QB;
      const int64_t rows = group * qn;
      // Row r = g * qn + ii: head kvh * group + g, query i0 + ii.
      int64_t kend = 0;
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t g = r / qn, ii = r % qn;
        sc.qrow[r] = a.q + (i0 + ii) * a.q_stride + (kvh * group + g) * d;
        sc.orow[r] = a.out + (i0 + ii) * a.out_stride + (kvh * group + g) * d;
        int64_t vis = a.sk;
        if (a.causal) {
          const int64_t last = a.q_pos0 + i0 + ii;
          vis = last + 1 < a.sk ? last + 1 : a.sk;
        }
        sc.vis[r] = static_cast<int32_t>(vis);
        kend = vis > kend ? vis : kend;
        sc.m[r] = -INFINITY;
        sc.l[r] = 0.0f;
        std::memset(sc.acc + r * d, 0, static_cast<size_t>(d) * 4);
      }
      const float* kb0 = a.k + kvh * d;
      const float* vb0 = a.v + kvh * d;
      if (rows < 8) {
        // Few rows: per-row direct dots.
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t vis = sc.vis[r];
          float* acc = sc.acc + r * d;
          float m = -INFINITY, l = 0.0f;
          for (int64_t j0 = 0; j0 < vis; j0 += KB) {
            const int64_t jn = vis - j0 < KB ? vis - j0 : KB;
            alignas(64) float sd[KB];
            attn_scores_direct(sc.qrow[r], kb0 + j0 * a.k_stride, a.k_stride, jn, d, sd);
            const __mmask16 k0 = tail_mask(jn), k1 = tail_mask(jn - 16 > 0 ? jn - 16 : 0);
            const __m512 vscale = _mm512_set1_ps(a.scale), ninf = _mm512_set1_ps(-INFINITY);
            const __m512 t0 = _mm512_mask_mul_ps(ninf, k0, _mm512_load_ps(sd), vscale);
            const __m512 t1 = _mm512_mask_mul_ps(ninf, k1, _mm512_load_ps(sd + 16), vscale);
            const float bmax = _mm512_reduce_max_ps(_mm512_max_ps(t0, t1));
            const float mnew = bmax > m ? bmax : m;
            const __m512 vm = _mm512_set1_ps(mnew);
            const __m512 p0 = _mm512_maskz_mov_ps(k0, exp512(_mm512_sub_ps(t0, vm)));
            const __m512 p1 = _mm512_maskz_mov_ps(k1, exp512(_mm512_sub_ps(t1, vm)));
            alignas(64) float p[KB];
            _mm512_store_ps(p, p0);
            _mm512_store_ps(p + 16, p1);
            const float alpha = std::exp(m - mnew);  // 0 on the first block (m = -inf)
            l = l * alpha + _mm512_reduce_add_ps(_mm512_add_ps(p0, p1));
            attn_pv(acc, alpha, p, 1, vb0 + j0 * a.v_stride, a.v_stride, jn, d);
            m = mnew;
          }
          sc.l[r] = l;
        }
      } else {
        const int64_t ngroups = (rows + 15) / 16;
        // Transpose each group's q rows into qt[g][d][16] (zeros for missing rows).
        for (int64_t g = 0; g < ngroups; ++g) {
          float* qt = sc.qt + g * 16 * d;
          for (int rr = 0; rr < 16; ++rr) {
            const int64_t r = g * 16 + rr;
            if (r < rows) {
              const float* q = sc.qrow[r];
              for (int64_t t = 0; t < d; ++t) qt[t * 16 + rr] = q[t];
            } else {
              for (int64_t t = 0; t < d; ++t) qt[t * 16 + rr] = 0.0f;
              sc.vis[r] = 0;
              sc.m[r] = -INFINITY;
              sc.l[r] = 0.0f;
            }
          }
        }
        const __m512 vscale = _mm512_set1_ps(a.scale), ninf = _mm512_set1_ps(-INFINITY);
        for (int64_t j0 = 0; j0 < kend; j0 += KB) {
          const int64_t jn = kend - j0 < KB ? kend - j0 : KB;
          for (int64_t jj = 0; jj < jn; ++jj) {
            std::memcpy(sc.kbuf + jj * d, kb0 + (j0 + jj) * a.k_stride, static_cast<size_t>(d) * 4);
            std::memcpy(sc.vbuf + jj * d, vb0 + (j0 + jj) * a.v_stride, static_cast<size_t>(d) * 4);
          }
          for (int64_t g = 0; g < ngroups; ++g) {
            const int64_t r0 = g * 16;
            const int32_t* visv = sc.vis + r0;
            int64_t gend = 0;
            for (int rr = 0; rr < 16; ++rr) gend = visv[rr] > gend ? visv[rr] : gend;
            if (gend <= j0) continue;  // no row of this group sees this block
            const int64_t gn = gend - j0 < jn ? gend - j0 : jn;
            const __m512i vvis = _mm512_loadu_si512(visv);
            __m512 s[KB];
            int64_t j = 0;
            const float* qt = sc.qt + g * 16 * d;
            for (; j + 8 <= gn; j += 8) attn_scores_group<8>(qt, sc.kbuf + j * d, d, d, s + j);
            for (; j < gn; ++j) attn_scores_group<1>(qt, sc.kbuf + j * d, d, d, s + j);
            __m512 bmax = ninf;
            for (j = 0; j < gn; ++j) {
              const __mmask16 vk = _mm512_cmpgt_epi32_mask(vvis, _mm512_set1_epi32(static_cast<int32_t>(j0 + j)));
              s[j] = _mm512_mask_mul_ps(ninf, vk, s[j], vscale);
              bmax = _mm512_max_ps(bmax, s[j]);
            }
            const __m512 vmx = _mm512_loadu_ps(sc.m + r0);
            const __m512 mnew = _mm512_max_ps(vmx, bmax);
            // Rows with no visible key yet keep m = -inf; use 0 as their shift (p = alpha = 0).
            const __mmask16 dead = _mm512_cmp_ps_mask(mnew, ninf, _CMP_EQ_OQ);
            const __m512 shift = _mm512_mask_mov_ps(mnew, dead, _mm512_setzero_ps());
            const __m512 alpha = exp512(_mm512_sub_ps(vmx, shift));
            __m512 psum = _mm512_setzero_ps();
            for (j = 0; j < gn; ++j) {
              const __m512 pj = exp512(_mm512_sub_ps(s[j], shift));
              psum = _mm512_add_ps(psum, pj);
              _mm512_store_ps(sc.pbuf + j * 16, pj);
            }
            _mm512_storeu_ps(sc.l + r0, _mm512_fmadd_ps(_mm512_loadu_ps(sc.l + r0), alpha, psum));
            _mm512_storeu_ps(sc.m + r0, mnew);
            alignas(64) float al[16];
            _mm512_store_ps(al, alpha);
            for (int rr = 0; rr < 16 && r0 + rr < rows; ++rr) {
              if (visv[rr] <= j0) continue;  // nothing visible yet for this row
              const int64_t jv = visv[rr] - j0 < gn ? visv[rr] - j0 : gn;
              attn_pv(sc.acc + (r0 + rr) * d, al[rr], sc.pbuf + rr, 16, sc.vbuf, d, jv, d);
            }
          }
        }
      }
      for (int64_t r = 0; r < rows; ++r) {
        float* out = sc.orow[r];
        const float l = sc.l[r];
        const float* acc = sc.acc + r * d;
        if (l > 0.0f) {
          const __m512 vl = _mm512_set1_ps(l);
          for (int64_t t = 0; t < d; t += 16) {
            const __mmask16 kk = tail_mask(d - t);
            _mm512_mask_storeu_ps(out + t, kk, _mm512_div_ps(_mm512_maskz_loadu_ps(kk, acc + t), vl));
          }
        } else {
          std::memset(out, 0, static_cast<size_t>(d) * 4);
        }
      }
    }
  }
}

}  // namespace

const OpTable& avx512_table() {
  static const OpTable t = [] {
    OpTable o = scalar_table();
    o.linear = linear_simd;
    o.linear_bf16 = linear_bf16_avx512;  // checks cpu_has_avx512_bf16() itself
    o.linear_quant = linear_quant_avx512;
    o.linear_quant_multi = linear_quant_multi_avx512;
    o.linear_bf16_multi = linear_bf16_multi_avx512;
    o.layer_norm = layer_norm_avx512;
    o.rms_norm = rms_norm_avx512;
    o.gelu_tanh = gelu_tanh_avx512;
    o.silu_mul = silu_mul_avx512;
    o.add_inplace = add_inplace_avx512;
    o.softmax_inplace = softmax_avx512;
    o.rope_rotate_half = rope_avx512;
    o.attention = attention_avx512;
    // Without AVX512-BF16 the bf16 attention flag is ignored (the f32 kernel runs): the scalar
    // twin would be far slower, and f32 is the more exact of the two.
    o.attention_bf16 = cpu_has_avx512_bf16() ? attention_bf16_avx512 : attention_avx512;
    o.attention_bf16_kv = cpu_has_avx512_bf16() && kAttentionBf16Avx512ReadsKv;
    return o;
  }();
  return t;
}

void linear_f32_avx512(const float* x, int64_t m, const WeightRef& w, const float* bias, float* y) {
  linear_simd(x, m, w, bias, y);
}
// Declared in gemm_bf16_avx512.cpp (its only caller).
void linear_f32_round_x_bf16_avx512(const float* x, int64_t m, const WeightRef& w, const float* bias, float* y) {
  linear_simd_xop<RoundBf16XOp>(x, m, w, bias, y);
}
void attention_avx512(const AttentionArgs& a) { attention_avx512_impl(a); }
}  // namespace qwen3vl::kernels::detail

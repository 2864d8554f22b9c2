// attention() with a.bf16 on AVX512-BF16 (vdpbf16ps). Only called when cpu_has_avx512_bf16().
// Numerics: those of the scalar twin (attention_bf16_scalar.cpp): q, k, v rounded to bf16
// (vcvtne2ps2bf16, round to nearest even), exact products with f32 accumulation, online softmax
// in f32 over the same 64-key blocks, probabilities rounded to bf16 for the P V product, the row
// sum l over the unrounded probabilities.
//
// Flash-attention structure. Work item = (kv head, block of up to ~256 query rows); its rows are
// (query i, group head g) pairs, so the GQA heads sharing a kv head share every packed K/V block
// (decode: one item per kv head holds all its q heads). Per item:
//   Qb[r][d]      q rows as bf16 (consecutive t pairs = the pairs vdpbf16ps multiplies)
//   per key block of KB = 64 keys:
//     Kp[t/2][64] bf16 pairs (t, t+1) of each key: one zmm = 16 keys of one t pair
//     Vp[j/2][d]  bf16 pairs (v_j[t], v_{j+1}[t]): one zmm = 16 t of one key pair
//     per tile of 4 rows:
//       S[4][64] = Qb Kp^T           16 zmm accumulators, lanes = keys, 1 dpbf16 per 16 keys x 2 t
//       softmax update per row (mask, block max, exp, l), P rounded to bf16 -> Pb[4][64]
//       O[4][d] = O * alpha + Pb Vp  16 zmm accumulators per 64 columns, lanes = t
// K/V blocks are packed once per call in a parallel pre-pass when a kv head has several query
// blocks (vision, prefill; <= 64 MiB packed), else per item with software prefetch of the next
// block (decode: the K/V rows of a cache are 4 KiB apart, one page each).
// Items go to threads dynamically, heaviest (latest causal query blocks) first; every row is
// computed the same way whatever the thread count.
// Cost per row and 64-key block: d/2 x 4 dpbf16 for S, d/16 x 32 for P V, 4 exps; measured
// ~75% of the vdpbf16ps issue rate in the S/PV tile (perf, d = 64).
#include <immintrin.h>
#include <omp.h>

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "kernels/avx512_util.h"
#include "kernels/kernels_impl.h"

namespace qwen3vl::kernels::detail {
namespace {

constexpr int64_t KB = 64;           // keys per block (must match attention_bf16_scalar.cpp)
constexpr int64_t kRowsTarget = 256;  // rows (query x group head) per work item
constexpr int NR = 4;                // rows per register tile




// 32 floats (masked to `left`) -> 32 bf16 in order.
inline __m512i cvt32(const float* p, int64_t left) {
  const __m512 lo = _mm512_maskz_loadu_ps(tail_mask(left), p);
  const __m512 hi = _mm512_maskz_loadu_ps(tail_mask(left - 16), p + 16);
  return reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo));
}

struct Scratch {
  void* block = nullptr;
  uint16_t* qb;  // [rows][d32] bf16
  float* o;      // [rows][d16]
  uint32_t* kp;  // [d32 / 2][KB] bf16 pairs
  uint32_t* vp;  // [KB / 2][d16] bf16 pairs
  uint16_t* pb;  // [NR][KB] bf16
  float* m;      // [rows]
  float* l;      // [rows]
  int64_t* vis;  // [rows]
  Scratch(int64_t rows, int64_t d16, int64_t d32) {
    const size_t bytes = static_cast<size_t>(rows * d32 * 2 + rows * d16 * 4 + d32 / 2 * KB * 4 + KB / 2 * d16 * 4 +
                                             NR * KB * 2 + rows * 16) + 6 * 64;
    block = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    char* p = static_cast<char*>(block);
    auto take = [&p](size_t n) {
      char* r = p;
      p += (n + 63) / 64 * 64;
      return r;
    };
    qb = reinterpret_cast<uint16_t*>(take(static_cast<size_t>(rows * d32 * 2)));
    o = reinterpret_cast<float*>(take(static_cast<size_t>(rows * d16 * 4)));
    kp = reinterpret_cast<uint32_t*>(take(static_cast<size_t>(d32 / 2 * KB * 4)));
    vp = reinterpret_cast<uint32_t*>(take(static_cast<size_t>(KB / 2 * d16 * 4)));
    pb = reinterpret_cast<uint16_t*>(take(static_cast<size_t>(NR * KB * 2)));
    m = reinterpret_cast<float*>(take(static_cast<size_t>(rows * 4)));
    l = reinterpret_cast<float*>(take(static_cast<size_t>(rows * 4)));
    vis = reinterpret_cast<int64_t*>(take(static_cast<size_t>(rows * 8)));
  }
  ~Scratch() { std::free(block); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

// Software prefetch (into L2) of rows [0, n) of d floats, `stride` floats apart: K/V rows of a
// KV cache or a fused qkv buffer are 4-12 KiB apart, one row per page, where the hardware
// prefetchers do not follow.
inline void prefetch_rows(const float* p, int64_t stride, int64_t n, int64_t d) {
  for (int64_t j = 0; j < n; ++j)
    for (int64_t t = 0; t < d; t += 16) _mm_prefetch(reinterpret_cast<const char*>(p + j * stride + t), _MM_HINT_T1);
}

// Packs keys [0, jn) of the block (rows k_stride apart) into kp[t/2][KB]; missing keys are zero.
void pack_k(const float* k, int64_t k_stride, int64_t jn, int64_t d, int64_t d32, uint32_t* kp) {
  for (int64_t g = 0; g < KB / 16; ++g) {
    for (int64_t tc = 0; tc < d32; tc += 32) {
      __m512i r[16];
      for (int64_t jl = 0; jl < 16; ++jl) {
        const int64_t j = g * 16 + jl;
        r[jl] = j < jn ? cvt32(k + j * k_stride + tc, d - tc) : _mm512_setzero_si512();
      }
      transpose16(reinterpret_cast<__m512*>(r));  // r[tp] = pair tc/2 + tp of the 16 keys
      for (int64_t tp = 0; tp < 16; ++tp) _mm512_store_si512(kp + (tc / 2 + tp) * KB + g * 16, r[tp]);
    }
  }
}

// Packs values [0, jn) into vp[j/2][d16] (bf16 pairs (v_j[t], v_{j+1}[t])); missing keys zero.
void pack_v(const float* v, int64_t v_stride, int64_t jn, int64_t d, int64_t d16, uint32_t* vp) {
  const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21,
                                       5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  for (int64_t jp = 0; jp < KB / 2; ++jp) {
    const int64_t j = 2 * jp;
    uint32_t* dst = vp + jp * d16;
    if (j >= jn) {
      for (int64_t t = 0; t < d16; t += 16) _mm512_store_si512(dst + t, _mm512_setzero_si512());
      continue;
    }
    const float* a = v + j * v_stride;
    const float* b = v + (j + 1) * v_stride;
    const bool has_b = j + 1 < jn;
    for (int64_t t = 0; t < d16; t += 16) {
      const __mmask16 mk = tail_mask(d - t);
      const __m512 va = _mm512_maskz_loadu_ps(mk, a + t);
      const __m512 vb = has_b ? _mm512_maskz_loadu_ps(mk, b + t) : _mm512_setzero_ps();
      const __m512i x = reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(vb, va));
      _mm512_store_si512(dst + t, _mm512_permutexvar_epi16(idx, x));
    }
  }
}

// S[r][16 C] for R rows (Qb rows qs32 pairs apart) against the first 16 C keys of the packed
// block, dp2 t pairs (C < 4: a partial last block or the causal diagonal).
template <int R, int C>
inline void s_tile(const uint32_t* q, int64_t qs32, const uint32_t* kp, int64_t dp2, __m512 (&s)[NR][4]) {
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) s[r][c] = _mm512_setzero_ps();
  for (int64_t tp = 0; tp < dp2; ++tp) {
    const uint32_t* kr = kp + tp * KB;
    __m512bh kv[C];
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) kv[c] = reinterpret_cast<__m512bh>(_mm512_load_si512(kr + 16 * c));
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m512bh b = reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(q[r * qs32 + tp])));
#pragma GCC unroll 4
      for (int c = 0; c < C; ++c) s[r][c] = _mm512_dpbf16_ps(s[r][c], kv[c], b);
    }
  }
}

// O[r][c0 .. c0 + 16 C) = O * alpha_r + sum_jp Pb[r][jp] . Vp[jp][...], for R rows.
template <int R, int C>
inline void pv_tile(float* o, int64_t os, const float* alpha, const uint32_t* pb32, const uint32_t* vp, int64_t d16,
                    int64_t c0, int64_t npairs) {
  __m512 acc[R][C];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    const __m512 al = _mm512_set1_ps(alpha[r]);
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_mul_ps(_mm512_load_ps(o + r * os + c0 + 16 * c), al);
  }
  for (int64_t jp = 0; jp < npairs; ++jp) {
    __m512bh vv[C];
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) vv[c] = reinterpret_cast<__m512bh>(_mm512_load_si512(vp + jp * d16 + c0 + 16 * c));
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m512bh b = reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(pb32[r * (KB / 2) + jp])));
#pragma GCC unroll 4
      for (int c = 0; c < C; ++c) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], vv[c], b);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) _mm512_store_ps(o + r * os + c0 + 16 * c, acc[r][c]);
}

template <int R>
void pv_rows(float* o, int64_t os, const float* alpha, const uint32_t* pb32, const uint32_t* vp, int64_t d16,
             int64_t npairs) {
  int64_t c0 = 0;
  for (; c0 + 64 <= d16; c0 += 64) pv_tile<R, 4>(o, os, alpha, pb32, vp, d16, c0, npairs);
  for (; c0 < d16; c0 += 16) pv_tile<R, 1>(o, os, alpha, pb32, vp, d16, c0, npairs);
}

// One tile of R rows (r0 ..) against the packed key block j0 .. j0 + jn.
template <int R>
void tile(Scratch& sc, const uint32_t* kp, const uint32_t* vp, int64_t r0, int64_t j0, int64_t jn, int64_t d16,
          int64_t d32, float scale) {
  const int64_t qs32 = d32 / 2;
  __m512 s[NR][4];
  // Keys of the block that some row of the tile sees: only those 16-key vectors are computed.
  int64_t tv = 0;
  for (int r = 0; r < R; ++r) tv = sc.vis[r0 + r] > tv ? sc.vis[r0 + r] : tv;
  const int64_t jl = tv - j0 < jn ? tv - j0 : jn;
  const int nc = static_cast<int>((jl + 15) / 16);
  const uint32_t* qr = reinterpret_cast<const uint32_t*>(sc.qb) + r0 * qs32;
  switch (nc) {
    case 1: s_tile<R, 1>(qr, qs32, kp, d32 / 2, s); break;
    case 2: s_tile<R, 2>(qr, qs32, kp, d32 / 2, s); break;
    case 3: s_tile<R, 3>(qr, qs32, kp, d32 / 2, s); break;
    default: s_tile<R, 4>(qr, qs32, kp, d32 / 2, s); break;
  }
  const __m512 vscale = _mm512_set1_ps(scale), ninf = _mm512_set1_ps(-INFINITY);
  alignas(64) float alpha[NR];
  int64_t jmax = 0;  // keys of the block that some row of the tile sees
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    uint16_t* pbr = sc.pb + r * KB;
    const int64_t lim = sc.vis[r0 + r] - j0;  // keys of this block row r sees
    if (lim <= 0) {  // nothing visible: p = 0, state unchanged
      alpha[r] = 1.0f;
      std::memset(pbr, 0, KB * 2);
      continue;
    }
    const int64_t lv = lim < jn ? lim : jn;
    jmax = lv > jmax ? lv : jmax;
    __m512 x[4];
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) x[c] = c < nc ? _mm512_mask_mul_ps(ninf, tail_mask(lv - 16 * c), s[r][c], vscale) : ninf;
    const float bmax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(x[0], x[1]), _mm512_max_ps(x[2], x[3])));
    const float mold = sc.m[r0 + r];
    const float mnew = bmax > mold ? bmax : mold;
    float al;
    if (mold == mnew) al = 1.0f;
    else if (mold == -INFINITY) al = 0.0f;
    else al = _mm512_cvtss_f32(exp512(_mm512_set1_ps(mold - mnew)));
    alpha[r] = al;
    const __m512 vm = _mm512_set1_ps(mnew);
    __m512 p[4];
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) p[c] = c < nc ? exp512(_mm512_sub_ps(x[c], vm)) : _mm512_setzero_ps();
    sc.l[r0 + r] = sc.l[r0 + r] * al + _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(p[0], p[1]), _mm512_add_ps(p[2], p[3])));
    sc.m[r0 + r] = mnew;
    _mm512_store_si512(pbr, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(p[1], p[0])));
    _mm512_store_si512(pbr + 32, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(p[3], p[2])));
  }
  if (jmax == 0) return;
  pv_rows<R>(sc.o + r0 * d16, d16, alpha, reinterpret_cast<const uint32_t*>(sc.pb), vp, d16, (jmax + 1) / 2);
}

void attention_bf16_impl(const AttentionArgs& a) {
  const int64_t d = a.d, group = a.hq / a.hk;
  const int64_t d16 = (d + 15) / 16 * 16, d32 = (d + 31) / 32 * 32;
  int64_t qn_max = kRowsTarget / group;
  if (qn_max < 1) qn_max = 1;
  const int64_t qblocks = (a.sq + qn_max - 1) / qn_max;
  const int64_t qn_blk = (a.sq + qblocks - 1) / qblocks;  // even split of the queries
  const int64_t items = a.hk * qblocks;
  const int64_t rows_max = group * qn_blk;
  const int nt = a.sq * a.hq * a.sk * d * 2 >= (1 << 16) ? threads() : 1;
  // With several query blocks per kv head (prefill, vision) every key block is packed once per
  // call into kp_all / vp_all (a pre-pass over (kv head, key block)) and shared by the items;
  // with one (decode) each item packs its blocks itself, prefetching the next one.
  const int64_t nblocks = (a.sk + KB - 1) / KB;
  const int64_t kp_words = d32 / 2 * KB, vp_words = KB / 2 * d16;  // per packed block
  // (bounded to 64 MiB of packed K/V: a very long cache packs per item instead)
  bool prepack = qblocks > 1 && nblocks > 0 && a.hk * nblocks * (kp_words + vp_words) * 4 <= (int64_t{64} << 20);
  uint32_t* kp_all = nullptr;
  uint32_t* vp_all = nullptr;
  if (prepack) {
    kp_all = static_cast<uint32_t*>(std::aligned_alloc(64, static_cast<size_t>(a.hk * nblocks * (kp_words + vp_words)) * 4));
    if (kp_all) vp_all = kp_all + a.hk * nblocks * kp_words;
    else prepack = false;  // out of memory: pack per item
  }
#pragma omp parallel num_threads(nt)
  {
    if (prepack) {
#pragma omp for schedule(static)
      for (int64_t hb = 0; hb < a.hk * nblocks; ++hb) {
        const int64_t kvh = hb / nblocks, j0 = (hb % nblocks) * KB;
        const int64_t jn = a.sk - j0 < KB ? a.sk - j0 : KB;
        pack_k(a.k + kvh * d + j0 * a.k_stride, a.k_stride, jn, d, d32, kp_all + hb * kp_words);
        pack_v(a.v + kvh * d + j0 * a.v_stride, a.v_stride, jn, d, d16, vp_all + hb * vp_words);
      }
    }  // implicit barrier
    Scratch sc(rows_max, d16, d32);
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < items; ++it) {
      // Heaviest first: for causal attention the last query blocks see the most keys.
      const int64_t qbk = qblocks - 1 - it / a.hk, kvh = it % a.hk;
      const int64_t i0 = qbk * qn_blk;
      const int64_t qn = a.sq - i0 < qn_blk ? a.sq - i0 : qn_blk;
      const int64_t rows = qn * group;
      // The q rows are strided (a fused qkv buffer): request them all before converting.
      for (int64_t r = 0; r < rows; ++r) {
        const float* q = a.q + (i0 + r / group) * a.q_stride + (kvh * group + r % group) * d;
        for (int64_t t = 0; t < d; t += 16) _mm_prefetch(reinterpret_cast<const char*>(q + t), _MM_HINT_T0);
      }
      int64_t kend = 0;
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t ii = r / group, g = r % group;  // row r: query i0 + ii, head kvh * group + g
        const float* q = a.q + (i0 + ii) * a.q_stride + (kvh * group + g) * d;
        uint16_t* qb = sc.qb + r * d32;
        for (int64_t t = 0; t < d32; t += 32) _mm512_store_si512(qb + t, cvt32(q + t, d - t));
        int64_t vis = a.sk;
        if (a.causal) {
          const int64_t last = a.q_pos0 + i0 + ii;
          vis = last + 1 < a.sk ? last + 1 : a.sk;
        }
        sc.vis[r] = vis;
        kend = vis > kend ? vis : kend;
        sc.m[r] = -INFINITY;
        sc.l[r] = 0.0f;
        std::memset(sc.o + r * d16, 0, static_cast<size_t>(d16) * 4);
      }
      const float* kb0 = a.k + kvh * d;
      const float* vb0 = a.v + kvh * d;
      for (int64_t j0 = 0; j0 < kend; j0 += KB) {
        const int64_t jn = kend - j0 < KB ? kend - j0 : KB;
        const uint32_t* kp = sc.kp;
        const uint32_t* vp = sc.vp;
        if (prepack) {
          kp = kp_all + (kvh * nblocks + j0 / KB) * kp_words;
          vp = vp_all + (kvh * nblocks + j0 / KB) * vp_words;
        } else {
          if (j0 + KB < kend) {  // the next block, while this one is computed
            const int64_t nn = kend - j0 - KB < KB ? kend - j0 - KB : KB;
            prefetch_rows(kb0 + (j0 + KB) * a.k_stride, a.k_stride, nn, d);
            prefetch_rows(vb0 + (j0 + KB) * a.v_stride, a.v_stride, nn, d);
          }
          pack_k(kb0 + j0 * a.k_stride, a.k_stride, jn, d, d32, sc.kp);
          pack_v(vb0 + j0 * a.v_stride, a.v_stride, jn, d, d16, sc.vp);
        }
        for (int64_t r0 = 0; r0 < rows; r0 += NR) {
          const int64_t rn = rows - r0 < NR ? rows - r0 : NR;
          int64_t tv = 0;
          for (int64_t r = r0; r < r0 + rn; ++r) tv = sc.vis[r] > tv ? sc.vis[r] : tv;
          if (tv <= j0) continue;  // no row of the tile sees this block
          switch (rn) {
            case 4: tile<4>(sc, kp, vp, r0, j0, jn, d16, d32, a.scale); break;
            case 3: tile<3>(sc, kp, vp, r0, j0, jn, d16, d32, a.scale); break;
            case 2: tile<2>(sc, kp, vp, r0, j0, jn, d16, d32, a.scale); break;
            default: tile<1>(sc, kp, vp, r0, j0, jn, d16, d32, a.scale); break;
          }
        }
      }
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t ii = r / group, g = r % group;
        float* out = a.out + (i0 + ii) * a.out_stride + (kvh * group + g) * d;
        const float l = sc.l[r];
        const float* o = sc.o + r * d16;
        if (l > 0.0f) {
          const __m512 vl = _mm512_set1_ps(l);
          for (int64_t t = 0; t < d; t += 16)
            _mm512_mask_storeu_ps(out + t, tail_mask(d - t), _mm512_div_ps(_mm512_load_ps(o + t), vl));
        } else {
          std::memset(out, 0, static_cast<size_t>(d) * 4);
        }
      }
    }
  }
  std::free(kp_all);
}

}  // namespace

void attention_bf16_avx512(const AttentionArgs& a) { attention_bf16_impl(a); }

}  // namespace qwen3vl::kernels::detail

// attention() with a.bf16 on AVX-512 (f32 FMA for many query rows, AVX512-BF16 vdpbf16ps for
// few). Only called when cpu_has_avx512_bf16().
// Numerics: those of the scalar twin (attention_bf16_scalar.cpp): q, k, v rounded to bf16
// (round to nearest even), exact products with f32 accumulation, online softmax in f32 over the
// same 64-key blocks, probabilities rounded to bf16 for the P V product, the row sum l over the
// unrounded probabilities. Keys/values are read from AttentionArgs::k_bf16 / v_bf16 when set
// (already bf16: no rounding), else from k / v (rounded while packing).
//
// Work item = (kv head, block of up to ~256 query rows); its rows are (query i, group head g)
// pairs, so the GQA heads sharing a kv head share every packed K/V block (decode: one item per
// kv head holds all its q heads). Items go to threads dynamically, heaviest (latest causal query
// blocks) first; every row is computed the same way whatever the thread count. Key blocks of
// KB = 64 keys are packed per item (software prefetch of the next block: the K/V rows of a cache
// or a fused qkv buffer are 4-12 KiB apart, one page each), except on the FMA path with several
// query blocks per kv head (vision, prefill), where a parallel pre-pass packs every block once
// per call (<= 64 MiB; a longer cache packs per item).
//
// Two inner kernels, chosen by the rows per item (both give the twin's numerics):
//  * FMA path (rows >= kFmaMinRows: prefill, vision; compute-bound). vdpbf16ps has half the
//    flop rate of f32 FMA on Sapphire Rapids, and the product of two bf16 values is exact in
//    f32, so f32 FMAs on bf16-ROUNDED operands give the same products; S sums over t and P V
//    over the keys j in the twin's order, so the f32 sums are the twin's bit for bit (only exp
//    and the row sum l differ in the last bits). Per item:
//      Qf[r][d16]      q rows, bf16-rounded f32
//      per key block:  Kf[t][64]  (bf16-rounded keys, transposed: one zmm = 16 keys at one t)
//                      Vf[j][d16] (bf16-rounded values)
//      per tile of up to 6 rows:
//        S[6][64] = Qf Kf         24 zmm accumulators, FMAs of broadcast q[r][t] x 4 zmm of keys
//        softmax update per row (mask, block max, exp, l), P rounded to bf16 (as f32) -> Pf[6][64]
//        O[6][c0 .. c0 + 64) = O alpha + Pf Vf    24 accumulators, broadcast p[r][j] x 4 zmm of V
//    Cost per row and 64-key block (d = 64): 256 + 256 FMAs, 4 exps (the softmax, ~100 vector
//    ops per row and block, is most of the rest). Measured (perf, sq = sk = 4096, d = 64): the
//    two FMA loops run at the FMA issue rate and take ~75% of the time; ~105-110 GFLOP/s on one
//    thread (vdpbf16ps kernel: 61).
//  * vdpbf16ps path (few rows: decode; memory-bound, where half-size bf16 pairs win):
//      Qb[r][d]      q rows as bf16 (consecutive t pairs = the pairs vdpbf16ps multiplies)
//      K rows        read in place: per key, d / 32 vdpbf16ps of its row with a q row into one
//                    accumulator, 16 keys summed at once (reduce16); no per-step packing of
//                    the cache (a transpose of every key block per decode step cost more than
//                    the dot products at d = 128, 2 rows per kv head)
//      Vp[j/2][d]    bf16 pairs (v_j[t], v_{j+1}[t]): one zmm = 16 t of one key pair
//      per tile of 4 rows: S = Qb K^T (dpbf16), softmax, O = O alpha + Pb Vp (dpbf16).
//    (exact products, f32 accumulation; held to the twin within the f32 bound of the tests).
//    With bf16 K/V the V packing is an interleave of the bf16 rows (no conversion): decode
//    reads half the bytes.
#include <immintrin.h>
#include <omp.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "kernels/avx512_util.h"
#include "kernels/kernels_impl.h"

namespace qwen3vl::kernels::detail {
namespace {

constexpr int64_t KB = 64;            // keys per block (must match attention_bf16_scalar.cpp)
constexpr int64_t kRowsTarget = 256;  // rows (query x group head) per work item
constexpr int NR = 4;                 // rows per register tile (vdpbf16ps path)
constexpr int NRF = 6;                // rows per register tile (FMA path)
constexpr int64_t kFmaMinRows = 8;    // FMA path from this many rows per work item

// ---- loads from f32 or bf16 (uint16_t) K/V --------------------------------------------------

inline __mmask32 tail_mask32(int64_t left) {
  return left >= 32 ? static_cast<__mmask32>(0xffffffffu)
                    : left <= 0 ? 0 : static_cast<__mmask32>((1u << left) - 1u);
}

// 16 f32 lanes rounded to bf16 and widened back to f32 (exact bf16 values).
inline __m512 round_bf16_ps(__m512 x) {
  const __m256i h = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(x));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// 16 elements (masked to `left`) as bf16-valued f32.
inline __m512 load16_f32(const float* p, int64_t left) {
  return round_bf16_ps(_mm512_maskz_loadu_ps(tail_mask(left), p));
}
inline __m512 load16_f32(const uint16_t* p, int64_t left) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(tail_mask(left), p)), 16));
}

// 16 elements (masked to `left`) as 16 bf16 in order.
inline __m256i load16_bf16(const float* p, int64_t left) {
  return reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(tail_mask(left), p)));
}
inline __m256i load16_bf16(const uint16_t* p, int64_t left) { return _mm256_maskz_loadu_epi16(tail_mask(left), p); }

// 32 elements (masked to `left`) as 32 bf16 in order.
inline __m512i load32_bf16(const float* p, int64_t left) {
  const __m512 lo = _mm512_maskz_loadu_ps(tail_mask(left), p);
  const __m512 hi = _mm512_maskz_loadu_ps(tail_mask(left - 16), p + 16);
  return reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo));
}
inline __m512i load32_bf16(const uint16_t* p, int64_t left) { return _mm512_maskz_loadu_epi16(tail_mask32(left), p); }

// Software prefetch (into L2) of rows [0, n) of d elements, `stride` elements apart.
template <typename T>
inline void prefetch_rows(const T* p, int64_t stride, int64_t n, int64_t d) {
  const int64_t bytes = d * static_cast<int64_t>(sizeof(T));
  for (int64_t j = 0; j < n; ++j) {
    const char* row = reinterpret_cast<const char*>(p + j * stride);
    for (int64_t b = 0; b < bytes; b += 64) _mm_prefetch(row + b, _MM_HINT_T1);
  }
}

inline void* alloc64(size_t bytes) { return std::aligned_alloc(64, (bytes + 63) / 64 * 64); }

// Carves 64-byte aligned pieces out of one block.
struct Carver {
  char* p;
  template <typename T>
  T* take(int64_t n) {
    T* r = reinterpret_cast<T*>(p);
    p += (static_cast<size_t>(n) * sizeof(T) + 63) / 64 * 64;
    return r;
  }
};

// Per-thread scratch memory kept across calls (a decode step calls attention once per layer:
// no allocation per call). Grows when a call needs more; freed when the thread ends.
inline void* thread_block(size_t bytes) {
  static thread_local GrowBuffer<char> b;
  return b.get(bytes);
}

// Row r of an item: query i0 + r / group, head kvh * group + r % group.
struct Item {
  int64_t kvh, i0, rows, group;
};

// Visible keys of row r (causal: up to its position).
inline int64_t visible(const AttentionArgs& a, const Item& it, int64_t r) {
  if (!a.causal) return a.sk;
  const int64_t last = a.q_pos0 + it.i0 + r / it.group;
  return last + 1 < a.sk ? last + 1 : a.sk;
}

// One row's softmax update for a block: s[0 .. 16 nc) raw scores, lim = keys of the block the
// row sees (<= the block's keys). Writes p (f32 lanes, not yet rounded) into p[4]; returns alpha.
inline float softmax_row(const __m512* s, int nc, int64_t lim, float scale, float* m, float* l, __m512* p) {
  const __m512 vscale = _mm512_set1_ps(scale), ninf = _mm512_set1_ps(-INFINITY);
  __m512 x[4];
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) x[c] = c < nc ? _mm512_mask_mul_ps(ninf, tail_mask(lim - 16 * c), s[c], vscale) : ninf;
  const float bmax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(x[0], x[1]), _mm512_max_ps(x[2], x[3])));
  const float mold = *m;
  const float mnew = bmax > mold ? bmax : mold;
  float al;
  if (mold == mnew) al = 1.0f;
  else if (mold == -INFINITY) al = 0.0f;
  else al = _mm512_cvtss_f32(exp512(_mm512_set1_ps(mold - mnew)));
  const __m512 vm = _mm512_set1_ps(mnew);
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) p[c] = c < nc ? exp512(_mm512_sub_ps(x[c], vm)) : _mm512_setzero_ps();
  *l = *l * al + _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(p[0], p[1]), _mm512_add_ps(p[2], p[3])));
  *m = mnew;
  return al;
}

// Every lane = the max of the 16 lanes of x.
inline __m512 allmax(__m512 x) {
  x = _mm512_max_ps(x, _mm512_shuffle_f32x4(x, x, 0x4E));
  x = _mm512_max_ps(x, _mm512_shuffle_f32x4(x, x, 0xB1));
  x = _mm512_max_ps(x, _mm512_permute_ps(x, 0x4E));
  return _mm512_max_ps(x, _mm512_permute_ps(x, 0xB1));
}

// exp512 (avx512_util.h) for x <= 0 (or -inf): the same value without the upper clamp.
inline __m512 exp_le0(__m512 x) {
  return exp512_clamped(_mm512_max_ps(x, _mm512_set1_ps(-110.0f)));  // exp(-110) rounds to +0
}

// ============================== FMA path ======================================================

struct FScratch {
  float* q;      // [rows][d16] bf16-rounded q
  float* o;      // [rows][d16]
  float* kp;     // [d16][KB]  keys transposed
  float* vp;     // [KB][d16]
  float* s;      // [NRF][KB]  scores of a tile
  float* p;      // [NRF][KB]  bf16-rounded probabilities of a tile
  float* m;      // [rows]
  float* l;      // [rows]
  float* lv;     // [rows][16] row sums per lane
  int64_t* vis;  // [rows]
  FScratch(int64_t rows, int64_t d16) {
    const int64_t n = 2 * rows * d16 + 2 * d16 * KB + 2 * NRF * KB + 20 * rows + 64 * 11;
    Carver c{static_cast<char*>(thread_block(static_cast<size_t>(n) * 4))};
    q = c.take<float>(rows * d16);
    o = c.take<float>(rows * d16);
    kp = c.take<float>(d16 * KB);
    vp = c.take<float>(KB * d16);
    s = c.take<float>(NRF * KB);
    p = c.take<float>(NRF * KB);
    m = c.take<float>(rows);
    l = c.take<float>(rows);
    lv = c.take<float>(rows * 16);
    vis = c.take<int64_t>(rows);
  }
  FScratch(const FScratch&) = delete;
  FScratch& operator=(const FScratch&) = delete;
};

// Keys [0, jn) of the block (rows k_stride apart) -> kp[t][KB] (t < d16), bf16-rounded;
// missing keys of a 16-key group are zero (groups past jn are not written).
template <typename T>
void fpack_k(const T* k, int64_t k_stride, int64_t jn, int64_t d, int64_t d16, float* kp) {
  for (int64_t g = 0; g * 16 < jn; ++g) {
    for (int64_t tc = 0; tc < d16; tc += 16) {
      __m512 r[16];
      for (int64_t jl = 0; jl < 16; ++jl) {
        const int64_t j = g * 16 + jl;
        r[jl] = j < jn ? load16_f32(k + j * k_stride + tc, d - tc) : _mm512_setzero_ps();
      }
      transpose16(r);  // r[tt] = t = tc + tt of the 16 keys
      for (int64_t tt = 0; tt < 16; ++tt) _mm512_store_ps(kp + (tc + tt) * KB + g * 16, r[tt]);
    }
  }
}

// Values [0, jn) -> vp[j][d16], bf16-rounded, zero past d.
template <typename T>
void fpack_v(const T* v, int64_t v_stride, int64_t jn, int64_t d, int64_t d16, float* vp) {
  for (int64_t j = 0; j < jn; ++j)
    for (int64_t t = 0; t < d16; t += 16) _mm512_store_ps(vp + j * d16 + t, load16_f32(v + j * v_stride + t, d - t));
}

// S[r][16 c] (c < C) for R rows of Qf (qs floats apart) against the packed block, t < d.
// Sequential FMAs over t from 0: the twin's dot product bit for bit.
template <int R, int C>
inline void fs_tile(const float* q, int64_t qs, const float* kp, int64_t d, __m512 (&s)[NRF][4]) {
  __m512 acc[R][C];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  for (int64_t t = 0; t < d; ++t) {
    const float* kr = kp + t * KB;
    __m512 kv[C];
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) kv[c] = _mm512_load_ps(kr + 16 * c);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 b = _mm512_set1_ps(q[r * qs + t]);
#pragma GCC unroll 4
      for (int c = 0; c < C; ++c) acc[r][c] = _mm512_fmadd_ps(b, kv[c], acc[r][c]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) s[r][c] = c < C ? acc[r][c] : _mm512_setzero_ps();
}

// O[r][c0 .. c0 + 16 C) = O alpha_r + sum_{j < jn} Pf[r][j] Vf[j][...] for R rows, the twin's
// order (scale first, then the keys in order).
template <int R, int C>
inline void fpv_tile(float* o, int64_t os, const float* alpha, const float* p, const float* vp, int64_t d16,
                     int64_t c0, int64_t jn) {
  __m512 acc[R][C];
  bool rescale = false;  // x * 1 = x: skip the products when no row's max moved
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) rescale |= alpha[r] != 1.0f;
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    const __m512 al = _mm512_set1_ps(alpha[r]);
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) {
      acc[r][c] = _mm512_load_ps(o + r * os + c0 + 16 * c);
      if (rescale) acc[r][c] = _mm512_mul_ps(acc[r][c], al);
    }
  }
  for (int64_t j = 0; j < jn; ++j) {
    const float* vr = vp + j * d16 + c0;
    __m512 vv[C];
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) vv[c] = _mm512_load_ps(vr + 16 * c);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 b = _mm512_set1_ps(p[r * KB + j]);
#pragma GCC unroll 4
      for (int c = 0; c < C; ++c) acc[r][c] = _mm512_fmadd_ps(b, vv[c], acc[r][c]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) _mm512_store_ps(o + r * os + c0 + 16 * c, acc[r][c]);
}

template <int R>
void fpv_rows(float* o, int64_t os, const float* alpha, const float* p, const float* vp, int64_t d16, int64_t jn) {
  int64_t c0 = 0;
  for (; c0 + 64 <= d16; c0 += 64) fpv_tile<R, 4>(o, os, alpha, p, vp, d16, c0, jn);
  switch ((d16 - c0) / 16) {
    case 3: fpv_tile<R, 3>(o, os, alpha, p, vp, d16, c0, jn); break;
    case 2: fpv_tile<R, 2>(o, os, alpha, p, vp, d16, c0, jn); break;
    case 1: fpv_tile<R, 1>(o, os, alpha, p, vp, d16, c0, jn); break;
    default: break;
  }
}

// One tile of R rows (r0 ..) against the packed key block j0 .. j0 + jn.
template <int R>
void ftile(FScratch& sc, const float* kp, const float* vp, int64_t r0, int64_t j0, int64_t jn, int64_t d, int64_t d16, float scale) {
  int64_t tv = 0;
  for (int r = 0; r < R; ++r) tv = sc.vis[r0 + r] > tv ? sc.vis[r0 + r] : tv;
  const int64_t jl = tv - j0 < jn ? tv - j0 : jn;  // keys of the block that some row sees
  const int nc = static_cast<int>((jl + 15) / 16);
  __m512 s[NRF][4];
  const float* q = sc.q + r0 * d16;
  switch (nc) {
    case 1: fs_tile<R, 1>(q, d16, kp, d, s); break;
    case 2: fs_tile<R, 2>(q, d16, kp, d, s); break;
    case 3: fs_tile<R, 3>(q, d16, kp, d, s); break;
    default: fs_tile<R, 4>(q, d16, kp, d, s); break;
  }
  // Softmax update of the R rows. Pass 1: masked scaled scores -> sc.s, the new running max of
  // each row, and all the rescale factors alpha_r = exp(m_r - m'_r) with one exp (lane r).
  const __m512 vscale = _mm512_set1_ps(scale), ninf = _mm512_set1_ps(-INFINITY);
  alignas(64) float alpha[16];
  alignas(64) float mnew[NRF];
  __m512 diff = _mm512_setzero_ps();
  int64_t lvis[NRF];
  int64_t jmax = 0;
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    const int64_t lim = sc.vis[r0 + r] - j0;
    lvis[r] = lim <= 0 ? 0 : lim < jn ? lim : jn;  // keys of the block row r sees
    jmax = lvis[r] > jmax ? lvis[r] : jmax;
    const float mold = sc.m[r0 + r];
    if (lvis[r] == 0) {  // nothing visible: p = 0, state unchanged (alpha = exp(0) = 1)
      mnew[r] = mold;
      continue;
    }
    float* sr = sc.s + r * KB;
    __m512 x[4];
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      x[c] = c < nc ? _mm512_mask_mul_ps(ninf, tail_mask(lvis[r] - 16 * c), s[r][c], vscale) : ninf;
      _mm512_store_ps(sr + 16 * c, x[c]);
    }
    const __m512 bmax = allmax(_mm512_max_ps(_mm512_max_ps(x[0], x[1]), _mm512_max_ps(x[2], x[3])));
    const float mn = _mm512_cvtss_f32(_mm512_max_ps(bmax, _mm512_set1_ps(mold)));
    mnew[r] = mn;
    // alpha = 1 when the max is unchanged (also -inf - -inf), 0 when m was -inf (exp clamps).
    if (mn != mold) diff = _mm512_mask_mov_ps(diff, static_cast<__mmask16>(1u << r), _mm512_set1_ps(mold - mn));
    sc.m[r0 + r] = mn;
  }
  _mm512_store_ps(alpha, exp512(diff));
  // Pass 2: p = exp(x - m') (f32, summed into the per-lane row sums), rounded to bf16 for P V.
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    float* pr = sc.p + r * KB;
    if (lvis[r] == 0) {
      for (int c = 0; c < 4; ++c) _mm512_store_ps(pr + 16 * c, _mm512_setzero_ps());
      continue;
    }
    const float* sr = sc.s + r * KB;
    const __m512 vm = _mm512_set1_ps(mnew[r]);
    __m512 p[4];
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) p[c] = c < nc ? exp_le0(_mm512_sub_ps(_mm512_load_ps(sr + 16 * c), vm)) : _mm512_setzero_ps();
    float* lr = sc.lv + (r0 + r) * 16;
    const __m512 psum = _mm512_add_ps(_mm512_add_ps(p[0], p[1]), _mm512_add_ps(p[2], p[3]));
    _mm512_store_ps(lr, _mm512_fmadd_ps(_mm512_load_ps(lr), _mm512_set1_ps(alpha[r]), psum));
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) _mm512_store_ps(pr + 16 * c, round_bf16_ps(p[c]));
  }
  if (jmax == 0) return;
  fpv_rows<R>(sc.o + r0 * d16, d16, alpha, sc.p, vp, d16, jmax);
}

// Packed K/V blocks of the FMA path: kp_all[kvh][block][d16 * KB], vp_all[kvh][block][KB * d16]
// when the call packs every block once up front (several query blocks per kv head: prefill,
// vision), else null (each item packs its blocks into its scratch).
struct FPacked {
  const float* kp_all = nullptr;
  const float* vp_all = nullptr;
  int64_t nblocks = 0, kp_floats = 0, vp_floats = 0;
};

template <typename T>
void fma_item(const AttentionArgs& a, const T* kbase, const T* vbase, const FPacked& pk, const Item& it, FScratch& sc) {
  const int64_t d = a.d, d16 = (d + 15) / 16 * 16;
  int64_t kend = 0;
  for (int64_t r = 0; r < it.rows; ++r) {
    const float* q = a.q + (it.i0 + r / it.group) * a.q_stride + (it.kvh * it.group + r % it.group) * d;
    float* qf = sc.q + r * d16;
    for (int64_t t = 0; t < d16; t += 16) _mm512_store_ps(qf + t, load16_f32(q + t, d - t));
    sc.vis[r] = visible(a, it, r);
    kend = sc.vis[r] > kend ? sc.vis[r] : kend;
    sc.m[r] = -INFINITY;
    sc.l[r] = 0.0f;
    _mm512_store_ps(sc.lv + r * 16, _mm512_setzero_ps());
    std::memset(sc.o + r * d16, 0, static_cast<size_t>(d16) * 4);
  }
  if (kend == 0) return;
  const T* kb0 = kbase + it.kvh * d;
  const T* vb0 = vbase + it.kvh * d;
  for (int64_t j0 = 0; j0 < kend; j0 += KB) {
    const int64_t jn = kend - j0 < KB ? kend - j0 : KB;
    const float* kp = sc.kp;
    const float* vp = sc.vp;
    if (pk.kp_all) {
      kp = pk.kp_all + (it.kvh * pk.nblocks + j0 / KB) * pk.kp_floats;
      vp = pk.vp_all + (it.kvh * pk.nblocks + j0 / KB) * pk.vp_floats;
    } else {
      if (j0 + KB < kend) {  // the next block, while this one is computed
        const int64_t nn = kend - j0 - KB < KB ? kend - j0 - KB : KB;
        prefetch_rows(kb0 + (j0 + KB) * a.k_stride, a.k_stride, nn, d);
        prefetch_rows(vb0 + (j0 + KB) * a.v_stride, a.v_stride, nn, d);
      }
      fpack_k(kb0 + j0 * a.k_stride, a.k_stride, jn, d, d16, sc.kp);
      fpack_v(vb0 + j0 * a.v_stride, a.v_stride, jn, d, d16, sc.vp);
    }
    for (int64_t r0 = 0; r0 < it.rows; r0 += NRF) {
      const int64_t rn = it.rows - r0 < NRF ? it.rows - r0 : NRF;
      int64_t tv = 0;
      for (int64_t r = r0; r < r0 + rn; ++r) tv = sc.vis[r] > tv ? sc.vis[r] : tv;
      if (tv <= j0) continue;  // no row of the tile sees this block
      switch (rn) {
        case 6: ftile<6>(sc, kp, vp, r0, j0, jn, d, d16, a.scale); break;
        case 5: ftile<5>(sc, kp, vp, r0, j0, jn, d, d16, a.scale); break;
        case 4: ftile<4>(sc, kp, vp, r0, j0, jn, d, d16, a.scale); break;
        case 3: ftile<3>(sc, kp, vp, r0, j0, jn, d, d16, a.scale); break;
        case 2: ftile<2>(sc, kp, vp, r0, j0, jn, d, d16, a.scale); break;
        default: ftile<1>(sc, kp, vp, r0, j0, jn, d, d16, a.scale); break;
      }
    }
  }
  for (int64_t r = 0; r < it.rows; ++r) sc.l[r] = _mm512_reduce_add_ps(_mm512_load_ps(sc.lv + r * 16));
}

// ============================== vdpbf16ps path ================================================

struct Scratch {
  uint16_t* qb;  // [rows][d32] bf16
  float* o;      // [rows][d16]
  uint32_t* vp;  // [KB / 2][d16] bf16 pairs
  uint16_t* pb;  // [NR][KB] bf16
  float* m;      // [rows]
  float* l;      // [rows]
  int64_t* vis;  // [rows]
  Scratch(int64_t rows, int64_t d16, int64_t d32) {
    const int64_t bytes = rows * d32 * 2 + rows * d16 * 4 + KB / 2 * d16 * 4 + NR * KB * 2 + rows * 16 + 64 * 9;
    Carver c{static_cast<char*>(thread_block(static_cast<size_t>(bytes)))};
    qb = c.take<uint16_t>(rows * d32);
    o = c.take<float>(rows * d16);
    vp = c.take<uint32_t>(KB / 2 * d16);
    pb = c.take<uint16_t>(NR * KB);
    m = c.take<float>(rows);
    l = c.take<float>(rows);
    vis = c.take<int64_t>(rows);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

// Packs values [0, jn) into vp[j/2][d16] (bf16 pairs (v_j[t], v_{j+1}[t])); missing keys zero.
template <typename T>
void pack_v(const T* v, int64_t v_stride, int64_t jn, int64_t d, int64_t d16, uint32_t* vp) {
  const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21,
                                       5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  for (int64_t jp = 0; jp < KB / 2; ++jp) {
    const int64_t j = 2 * jp;
    uint32_t* dst = vp + jp * d16;
    if (j >= jn) {
      for (int64_t t = 0; t < d16; t += 16) _mm512_store_si512(dst + t, _mm512_setzero_si512());
      continue;
    }
    const T* ra = v + j * v_stride;
    const T* rb = v + (j + 1) * v_stride;
    const bool has_b = j + 1 < jn;
    for (int64_t t = 0; t < d16; t += 16) {
      const __m256i va = load16_bf16(ra + t, d - t);
      const __m256i vb = has_b ? load16_bf16(rb + t, d - t) : _mm256_setzero_si256();
      const __m512i x = _mm512_inserti64x4(_mm512_castsi256_si512(va), vb, 1);  // [a0..a15, b0..b15]
      _mm512_store_si512(dst + t, _mm512_permutexvar_epi16(idx, x));
    }
  }
}

// S[r][16 c] (c < nc) for R rows of Qb (d32 bf16 apart) against keys [0, jn) of the block, read
// in place (rows k_stride apart, no packing): per key, d32 / 32 vdpbf16ps of its row with the
// q row into one accumulator, then a group's 16 keys summed at once (reduce16: lane jl = key
// jl). Keys past jn score 0 (the softmax masks them).
template <int R, typename T>
inline void s_direct(const uint16_t* qb, int64_t d32, const T* k, int64_t k_stride, int64_t jn, int nc, int64_t d,
                     __m512 (&s)[NR][4]) {
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    const uint16_t* q = qb + r * d32;
    for (int c = 0; c < 4; ++c) {
      if (c >= nc) {
        s[r][c] = _mm512_setzero_ps();
        continue;
      }
      const int64_t jg = jn - 16 * c < 16 ? jn - 16 * c : 16;  // keys of the group
      const T* kg = k + 16 * c * k_stride;
      __m512 acc[16];
#pragma GCC unroll 16
      for (int jl = 0; jl < 16; ++jl) acc[jl] = _mm512_setzero_ps();
      for (int64_t tc = 0; tc < d32; tc += 32) {
        const __m512bh qv = reinterpret_cast<__m512bh>(_mm512_load_si512(q + tc));
#pragma GCC unroll 16
        for (int jl = 0; jl < 16; ++jl)
          if (jl < jg)
            acc[jl] = _mm512_dpbf16_ps(acc[jl], reinterpret_cast<__m512bh>(load32_bf16(kg + jl * k_stride + tc, d - tc)), qv);
      }
      s[r][c] = reduce16(acc);
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

// One tile of R rows (r0 ..) against the key block j0 .. j0 + jn (K rows at kblk, read in place;
// V packed in sc.vp).
template <int R, typename T>
void tile(Scratch& sc, const T* kblk, int64_t k_stride, int64_t r0, int64_t j0, int64_t jn, int64_t d, int64_t d16,
          int64_t d32, float scale) {
  __m512 s[NR][4];
  int64_t tv = 0;
  for (int r = 0; r < R; ++r) tv = sc.vis[r0 + r] > tv ? sc.vis[r0 + r] : tv;
  const int64_t jl = tv - j0 < jn ? tv - j0 : jn;  // keys of the block that some row sees
  const int nc = static_cast<int>((jl + 15) / 16);
  s_direct<R>(sc.qb + r0 * d32, d32, kblk, k_stride, jl, nc, d, s);
  alignas(64) float alpha[NR];
  int64_t jmax = 0;
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    uint16_t* pbr = sc.pb + r * KB;
    const int64_t lim = sc.vis[r0 + r] - j0;
    if (lim <= 0) {  // nothing visible: p = 0, state unchanged
      alpha[r] = 1.0f;
      std::memset(pbr, 0, KB * 2);
      continue;
    }
    const int64_t lv = lim < jn ? lim : jn;
    jmax = lv > jmax ? lv : jmax;
    __m512 p[4];
    alpha[r] = softmax_row(s[r], nc, lv, scale, sc.m + r0 + r, sc.l + r0 + r, p);
    _mm512_store_si512(pbr, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(p[1], p[0])));
    _mm512_store_si512(pbr + 32, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(p[3], p[2])));
  }
  if (jmax == 0) return;
  pv_rows<R>(sc.o + r0 * d16, d16, alpha, reinterpret_cast<const uint32_t*>(sc.pb), sc.vp, d16, (jmax + 1) / 2);
}

template <typename T>
void dp_item(const AttentionArgs& a, const T* kbase, const T* vbase, const Item& it, Scratch& sc) {
  const int64_t d = a.d, d16 = (d + 15) / 16 * 16, d32 = (d + 31) / 32 * 32;
  int64_t kend = 0;
  for (int64_t r = 0; r < it.rows; ++r) {
    const float* q = a.q + (it.i0 + r / it.group) * a.q_stride + (it.kvh * it.group + r % it.group) * d;
    uint16_t* qb = sc.qb + r * d32;
    for (int64_t t = 0; t < d32; t += 32) _mm512_store_si512(qb + t, load32_bf16(q + t, d - t));
    sc.vis[r] = visible(a, it, r);
    kend = sc.vis[r] > kend ? sc.vis[r] : kend;
    sc.m[r] = -INFINITY;
    sc.l[r] = 0.0f;
    std::memset(sc.o + r * d16, 0, static_cast<size_t>(d16) * 4);
  }
  if (kend == 0) return;
  const T* kb0 = kbase + it.kvh * d;
  const T* vb0 = vbase + it.kvh * d;
  for (int64_t j0 = 0; j0 < kend; j0 += KB) {
    const int64_t jn = kend - j0 < KB ? kend - j0 : KB;
    if (j0 + KB < kend) {  // the next block, while this one is computed
      const int64_t nn = kend - j0 - KB < KB ? kend - j0 - KB : KB;
      prefetch_rows(kb0 + (j0 + KB) * a.k_stride, a.k_stride, nn, d);
      prefetch_rows(vb0 + (j0 + KB) * a.v_stride, a.v_stride, nn, d);
    }
    pack_v(vb0 + j0 * a.v_stride, a.v_stride, jn, d, d16, sc.vp);
    const T* kblk = kb0 + j0 * a.k_stride;
    for (int64_t r0 = 0; r0 < it.rows; r0 += NR) {
      const int64_t rn = it.rows - r0 < NR ? it.rows - r0 : NR;
      int64_t tv = 0;
      for (int64_t r = r0; r < r0 + rn; ++r) tv = sc.vis[r] > tv ? sc.vis[r] : tv;
      if (tv <= j0) continue;  // no row of the tile sees this block
      switch (rn) {
        case 4: tile<4>(sc, kblk, a.k_stride, r0, j0, jn, d, d16, d32, a.scale); break;
        case 3: tile<3>(sc, kblk, a.k_stride, r0, j0, jn, d, d16, d32, a.scale); break;
        case 2: tile<2>(sc, kblk, a.k_stride, r0, j0, jn, d, d16, d32, a.scale); break;
        default: tile<1>(sc, kblk, a.k_stride, r0, j0, jn, d, d16, d32, a.scale); break;
      }
    }
  }
}

// ============================== driver ========================================================

// out rows of an item = O / l (zeros where the query sees no key).
void write_out(const AttentionArgs& a, const Item& it, const float* o, const float* l) {
  const int64_t d = a.d, d16 = (d + 15) / 16 * 16;
  for (int64_t r = 0; r < it.rows; ++r) {
    float* out = a.out + (it.i0 + r / it.group) * a.out_stride + (it.kvh * it.group + r % it.group) * d;
    const float* orow = o + r * d16;
    if (l[r] > 0.0f) {
      const __m512 vl = _mm512_set1_ps(l[r]);
      for (int64_t t = 0; t < d; t += 16)
        _mm512_mask_storeu_ps(out + t, tail_mask(d - t), _mm512_div_ps(_mm512_load_ps(orow + t), vl));
    } else {
      std::memset(out, 0, static_cast<size_t>(d) * 4);
    }
  }
}

template <typename T>
void attention_bf16_impl(const AttentionArgs& a, const T* kbase, const T* vbase) {
  const int64_t d = a.d, group = a.hq / a.hk;
  const int64_t d16 = (d + 15) / 16 * 16, d32 = (d + 31) / 32 * 32;
  int64_t qn_max = kRowsTarget / group;
  if (qn_max < 1) qn_max = 1;
  const int64_t qblocks = (a.sq + qn_max - 1) / qn_max;
  const int64_t qn_blk = (a.sq + qblocks - 1) / qblocks;  // even split of the queries
  const int64_t items = a.hk * qblocks;
  const int64_t rows_max = group * qn_blk;
  const bool use_fma = rows_max >= kFmaMinRows;
  const int nt = a.sq * a.hq * a.sk * d * 2 >= (1 << 16) ? threads() : 1;
  // FMA path with several query blocks per kv head: every key block is packed once per call (a
  // parallel pre-pass over (kv head, key block); bounded to 64 MiB, a longer cache packs per item).
  FPacked pk;
  float* packed = nullptr;
  pk.nblocks = (a.sk + KB - 1) / KB;
  pk.kp_floats = d16 * KB;
  pk.vp_floats = KB * d16;
  const int64_t packed_floats = a.hk * pk.nblocks * (pk.kp_floats + pk.vp_floats);
  if (use_fma && qblocks > 1 && pk.nblocks > 0 && packed_floats * 4 <= (int64_t{64} << 20)) {
    packed = static_cast<float*>(alloc64(static_cast<size_t>(packed_floats) * 4));  // null: pack per item
    if (packed) {
      pk.kp_all = packed;
      pk.vp_all = packed + a.hk * pk.nblocks * pk.kp_floats;
    }
  }
#pragma omp parallel num_threads(nt)
  {
    if (packed) {
#pragma omp for schedule(static)
      for (int64_t hb = 0; hb < a.hk * pk.nblocks; ++hb) {
        const int64_t kvh = hb / pk.nblocks, j0 = (hb % pk.nblocks) * KB;
        const int64_t jn = a.sk - j0 < KB ? a.sk - j0 : KB;
        fpack_k(kbase + kvh * d + j0 * a.k_stride, a.k_stride, jn, d, d16, packed + hb * pk.kp_floats);
        fpack_v(vbase + kvh * d + j0 * a.v_stride, a.v_stride, jn, d, d16,
                packed + a.hk * pk.nblocks * pk.kp_floats + hb * pk.vp_floats);
      }
    }  // implicit barrier
    // One of them per call, carved from the thread's block.
    std::optional<FScratch> fsc;
    std::optional<Scratch> dsc;
    if (use_fma) fsc.emplace(rows_max, d16);
    else dsc.emplace(rows_max, d16, d32);
#pragma omp for schedule(dynamic, 1)
    for (int64_t idx = 0; idx < items; ++idx) {
      // Heaviest first: for causal attention the last query blocks see the most keys.
      Item it;
      it.kvh = idx % a.hk;
      it.i0 = (qblocks - 1 - idx / a.hk) * qn_blk;
      it.group = group;
      it.rows = (a.sq - it.i0 < qn_blk ? a.sq - it.i0 : qn_blk) * group;
      // The q rows are strided (a fused qkv buffer): request them all before converting.
      for (int64_t r = 0; r < it.rows; ++r) {
        const float* q = a.q + (it.i0 + r / group) * a.q_stride + (it.kvh * group + r % group) * d;
        for (int64_t t = 0; t < d; t += 16) _mm_prefetch(reinterpret_cast<const char*>(q + t), _MM_HINT_T0);
      }
      if (use_fma) {
        fma_item(a, kbase, vbase, pk, it, *fsc);
        write_out(a, it, fsc->o, fsc->l);
      } else {
        dp_item(a, kbase, vbase, it, *dsc);
        write_out(a, it, dsc->o, dsc->l);
      }
    }
  }
  std::free(packed);
}

}  // namespace

void attention_bf16_avx512(const AttentionArgs& a) {
  if (a.k_bf16) attention_bf16_impl(a, a.k_bf16, a.v_bf16);
  else attention_bf16_impl(a, a.k, a.v);
}
const bool kAttentionBf16Avx512ReadsKv = true;

}  // namespace qwen3vl::kernels::detail

// linear() for Q8_0 / Q4_0 weights, AVX-512 (BW; VNNI vpdpbusd when the CPU has it). Numerics:
// kernels/quant.h (scalar twin: linear_quant_scalar). Two algorithms, same numerics:
//  - decode (m < kGemmM, or no VNNI): x is quantized to Q8_0 once per call; every W row is
//    streamed once (contiguous per thread, threads split n) and dotted with the m x rows while it
//    is in L1, with a software prefetch kPrefetch bytes ahead (DRAM streaming). The interleaved
//    row layout (core/quant.h) puts one block per 32-bit lane: the int8 products are summed
//    exactly per block in int32 (u8 x s8 with the offset undone), then each block's isum is
//    scaled by dx * dw and accumulated in f32 (see group_term).
//  - prefill (m >= kGemmM, VNNI): int8 GEMM. W is packed per call into panels of 16 rows as
//    u8 (w + 128) in [k / 4][16][4] order (vpdpbusd layout) plus f32 scales; a 4 x 32 register
//    tile accumulates one block's isum per lane exactly (started at -128 * sum(qx) to undo the
//    offset), then y += (dx * dw) * isum in f32.
#include <immintrin.h>
#include <omp.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/avx512_util.h"
#include "kernels/kernels_impl.h"
#include "kernels/quant.h"

namespace qwen3vl::kernels::detail {

namespace {

std::atomic<bool> g_vnni_enabled{true};

// m at or above which the VNNI GEMM is used (measured crossover, bench_quant).
constexpr int64_t kGemmM = 4;
std::atomic<int64_t> g_gemm_min_m{kGemmM};
// Work (multiply-adds) below which a call stays single-threaded.
constexpr int64_t kParallelMacs = 1 << 17;
// Most weights one linear_quant_multi_avx512 call fuses (q/k/v_proj: 3).
constexpr int kMaxMulti = 4;


// ---- activation quantization (bit-exact with detail::quantize_activations) -----------------

inline __m512 round_half_away(__m512 v) {
  const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(v, t);  // exact
  const __mmask16 up = _mm512_cmp_ps_mask(_mm512_abs_ps(f), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
  const __m512 one = _mm512_castsi512_ps(
      _mm512_or_si512(_mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(static_cast<int>(0x80000000u))),
                      _mm512_castps_si512(_mm512_set1_ps(1.0f))));
  return _mm512_mask_add_ps(t, up, t, one);
}

inline __m512i quant16(__m512 v, float id) {
  __m512 q = round_half_away(_mm512_mul_ps(v, _mm512_set1_ps(id)));
  q = _mm512_min_ps(_mm512_max_ps(q, _mm512_set1_ps(-127.0f)), _mm512_set1_ps(127.0f));
  const __mmask16 ord = _mm512_cmp_ps_mask(q, q, _CMP_ORD_Q);
  return _mm512_maskz_cvttps_epi32(ord, q);  // NaN -> 0
}

// One block of 32: qs (int8), returns dx; *sum = sum(qs).
inline float quant_block_x(const float* x, int8_t* qs, int32_t* sum) {
  const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
  const __m512 a0 = _mm512_abs_ps(v0), a1 = _mm512_abs_ps(v1);
  const __m512 fmax = _mm512_set1_ps(3.4028234663852886e38f);
  const __mmask16 ok = _mm512_cmp_ps_mask(a0, fmax, _CMP_LE_OQ) & _mm512_cmp_ps_mask(a1, fmax, _CMP_LE_OQ);
  const float amax = _mm512_reduce_max_ps(_mm512_max_ps(a0, a1));
  if (ok != 0xFFFF) {  // inf / nan in the block (max_ps would drop a NaN)
    std::memset(qs, 0, 32);
    *sum = 0;
    return NAN;
  }
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  const __m512i i0 = quant16(v0, id), i1 = quant16(v1, id);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(qs), _mm512_cvtepi32_epi8(i0));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(qs + 16), _mm512_cvtepi32_epi8(i1));
  *sum = _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
  return _cvtsh_ss(_cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT));
}

// ---- weight quantization (bit-exact with quant_scalar.cpp's reference quantizers) ---------

// Q8_0 block: false when it holds inf / nan.
inline bool quant_w_q8_0(const float* x, uint8_t* out) {
  const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
  const __m512 a0 = _mm512_abs_ps(v0), a1 = _mm512_abs_ps(v1);
  const __m512 fmax = _mm512_set1_ps(3.4028234663852886e38f);
  if ((_mm512_cmp_ps_mask(a0, fmax, _CMP_LE_OQ) & _mm512_cmp_ps_mask(a1, fmax, _CMP_LE_OQ)) != 0xFFFF) return false;
  const float amax = _mm512_reduce_max_ps(_mm512_max_ps(a0, a1));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  const uint16_t dh = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
  std::memcpy(out, &dh, 2);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2), _mm512_cvtepi32_epi8(quant16(v0, id)));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 18), _mm512_cvtepi32_epi8(quant16(v1, id)));
  return true;
}

// Q4_0 levels of 16 values: min(15, trunc(v * id + 8.5)) with the product and the sum rounded
// separately (embedded-rounding intrinsics: the compiler must not fuse them), NaN -> 0.
inline __m512i q4_levels(__m512 v, float id) {
  const __m512 p = _mm512_mul_round_ps(v, _mm512_set1_ps(id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 t = _mm512_add_round_ps(p, _mm512_set1_ps(8.5f), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __mmask16 pos = _mm512_cmp_ps_mask(t, _mm512_setzero_ps(), _CMP_GE_OQ);  // false for NaN
  const __m512 c = _mm512_min_ps(t, _mm512_set1_ps(15.0f));
  return _mm512_maskz_cvttps_epi32(pos, c);
}

inline bool quant_w_q4_0(const float* x, uint8_t* out) {
  const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
  const __m512 a0 = _mm512_abs_ps(v0), a1 = _mm512_abs_ps(v1);
  const __m512 fmax = _mm512_set1_ps(3.4028234663852886e38f);
  if ((_mm512_cmp_ps_mask(a0, fmax, _CMP_LE_OQ) & _mm512_cmp_ps_mask(a1, fmax, _CMP_LE_OQ)) != 0xFFFF) return false;
  const float amax = _mm512_reduce_max_ps(_mm512_max_ps(a0, a1));
  // The first element of largest magnitude (llama.cpp keeps the first on ties).
  const __m512 am = _mm512_set1_ps(amax);
  const uint32_t hit = static_cast<uint32_t>(_mm512_cmp_ps_mask(a0, am, _CMP_EQ_OQ)) |
                       (static_cast<uint32_t>(_mm512_cmp_ps_mask(a1, am, _CMP_EQ_OQ)) << 16);
  const float max = amax != 0.0f ? x[__builtin_ctz(hit)] : 0.0f;
  const float d = max / -8.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  const uint16_t dh = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
  std::memcpy(out, &dh, 2);
  const __m512i q = _mm512_or_si512(q4_levels(v0, id), _mm512_slli_epi32(q4_levels(v1, id), 4));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2), _mm512_cvtepi32_epi8(q));
  return true;
}

// ---- int8 dot products ---------------------------------------------------------------------

template <bool VNNI>
inline __m512i dot_u8s8(__m512i acc, __m512i u, __m512i s) {
  if constexpr (VNNI) {
    return _mm512_dpbusd_epi32(acc, u, s);
  } else {
    // u <= 128, |s| <= 127: the pairwise i16 sums (<= 32512) never saturate.
    return _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1)));
  }
}

inline uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// Stores the 16 x 8 dword matrix rw[row][group] transposed: group g's 16 rows (64 bytes) at
// d + g * 64. Rows r and r + 8 share a zmm; a per-256-bit 8 x 8 transpose does both halves.
// The first two stages of a dword transpose of N rows: per 128-bit chunk c, u[4i + j] holds the
// dwords 4c + j of rows 4i .. 4i + 3.
template <int N>
inline void transpose_4x4_chunks(const __m512i* a, __m512i* u) {
  __m512i t[N];
#pragma GCC unroll 8
  for (int i = 0; i < N; i += 2) {
    t[i] = _mm512_unpacklo_epi32(a[i], a[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(a[i], a[i + 1]);
  }
#pragma GCC unroll 4
  for (int i = 0; i < N; i += 4) {
    u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
}

inline void transpose_store(const __m256i* rw, uint8_t* d) {
  __m512i z[8], u[8];
#pragma GCC unroll 8
  for (int r = 0; r < 8; ++r) z[r] = _mm512_inserti64x4(_mm512_castsi256_si512(rw[r]), rw[r + 8], 1);
  transpose_4x4_chunks<8>(z, u);
  const __m512i lo = _mm512_set_epi64(13, 12, 5, 4, 9, 8, 1, 0);
  const __m512i hi = _mm512_set_epi64(15, 14, 7, 6, 11, 10, 3, 2);
#pragma GCC unroll 4
  for (int g = 0; g < 4; ++g) {
    _mm512_storeu_si512(d + g * 64, _mm512_permutex2var_epi64(u[g], lo, u[g + 4]));
    _mm512_storeu_si512(d + (g + 4) * 64, _mm512_permutex2var_epi64(u[g], hi, u[g + 4]));
  }
}

// ---- decode: stream W rows ---------------------------------------------------------------
//
// W rows are in the interleaved layout (core/quant.h): per group of 16 blocks, the 16 f16 scales,
// then P zmm of quants (Q8_0 8, Q4_0 4), zmm p lane L = bytes 4p .. 4p + 3 of block L. x is
// prepared per row and group in the matching order (8 zmm; zmm p lane L = qx[block L][4p .. 4p+3]),
// so every vpdpbusd adds 4 products of one block into that block's int32 lane: no shuffles, no
// reduction tree. After a group, lane L = isum(block L) exactly (the lanes start at the offset
// correction), and one cvt + fma adds (dx * dw) * isum for all 16 blocks. Q8_0: u8 = w ^ 0x80
// (= w + 128), corr = -128 sum(qx); Q4_0: u8 = nibble, the low nibbles of piece p pair with x
// piece p (elements 4p..4p+3), the high nibbles with piece 4 + p (16 + 4p..), corr = -8 sum(qx).
// Without VNNI, Q8_0 uses |w| times x with the sign of w (maddubs would saturate w + 128), corr 0.
// A row's last nb % 16 blocks (plain blocks in the layout) are interleaved into a zero-padded
// group on the fly.

constexpr int kGroup = kQuantGroup;  // blocks per group
// Software prefetch distance (bytes ahead of the group being read). One core's demand misses
// plus the hardware prefetchers do not keep enough lines in flight to stream W from DRAM while
// the core also computes; prefetching 4 KiB ahead raised one thread's streaming rate by ~25%
// (Q8_0) and ~40% (Q4_0) (BM_QuantDecode, best call, 1 thread, on a busy machine; 2-8 KiB
// measured alike).
constexpr int64_t kPrefetch = 4096;

// x prepared for the decode kernel, per row and group: qs 512 int8 (8 zmm: zmm p lane L =
// qx[16g + L][4p .. 4p + 3]), corr[16] (int32, the offset correction the lanes start from) and
// dx[16] (f32), lane L = block 16g + L (0 past the row's last block).
struct DecodeX {
  int8_t* qs;     // [m][groups * 512]
  int32_t* corr;  // [m][groups * 16]
  float* dx;      // [m][groups * 16]
  int64_t groups;
};

template <bool Q8, bool SIGN>
void prepare_decode_x(const float* x, int64_t m, int64_t k, DecodeX* dx, GrowBuffer<int8_t>& qbuf, GrowBuffer<int32_t>& cbuf,
                      GrowBuffer<float>& dbuf) {
  const int64_t nb = k / 32, groups = (nb + kGroup - 1) / kGroup;
  dx->groups = groups;
  dx->qs = qbuf.get(static_cast<size_t>(m * groups * 512));
  dx->corr = cbuf.get(static_cast<size_t>(m * groups * 16));
  dx->dx = dbuf.get(static_cast<size_t>(m * groups * 16));
  alignas(64) int8_t t[kGroup * 32];
  for (int64_t i = 0; i < m; ++i)
    for (int64_t g = 0; g < groups; ++g) {
      int32_t* c = dx->corr + (i * groups + g) * 16;
      float* d = dx->dx + (i * groups + g) * 16;
      __m256i rw[kGroup];
      for (int l = 0; l < kGroup; ++l) {
        const int64_t b = g * kGroup + l;
        int32_t sum = 0;
        if (b < nb) {
          d[l] = quant_block_x(x + i * k + b * 32, t + 32 * l, &sum);
        } else {
          d[l] = 0.0f;
          std::memset(t + 32 * l, 0, 32);
        }
        c[l] = SIGN ? 0 : -(Q8 ? 128 : 8) * sum;
        rw[l] = _mm256_load_si256(reinterpret_cast<const __m256i*>(t + 32 * l));
      }
      transpose_store(rw, reinterpret_cast<uint8_t*>(dx->qs + (i * groups + g) * 512));
    }
}

// acc += (dx * dw) * isum for the 16 blocks of the group at grp.
template <bool VNNI, bool Q8, bool SIGN>
inline __m512 group_term(const uint8_t* grp, const int8_t* x, const int32_t* corr, const float* dx, __m512 acc) {
  __m512i s0 = _mm512_load_si512(corr), s1 = _mm512_setzero_si512();
  if constexpr (Q8) {
#pragma GCC unroll 8
    for (int p = 0; p < 8; ++p) {
      const __m512i w = _mm512_loadu_si512(grp + 32 + 64 * p);
      const __m512i xv = _mm512_load_si512(x + 64 * p);
      __m512i& s = p % 2 ? s1 : s0;
      if constexpr (SIGN)
        s = dot_u8s8<VNNI>(s, _mm512_abs_epi8(w),
                           _mm512_mask_sub_epi8(xv, _mm512_movepi8_mask(w), _mm512_setzero_si512(), xv));
      else
        s = dot_u8s8<VNNI>(s, _mm512_xor_si512(w, _mm512_set1_epi8(static_cast<char>(0x80))), xv);
    }
  } else {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
#pragma GCC unroll 4
    for (int p = 0; p < 4; ++p) {
      __m512i v = _mm512_loadu_si512(grp + 32 + 64 * p);
      asm("" : "+v"(v));  // one load for both nibble masks (the compiler would fold it into each)
      s0 = dot_u8s8<VNNI>(s0, _mm512_and_si512(v, m4), _mm512_load_si512(x + 64 * p));
      if constexpr (VNNI)  // the high nibbles in place (16 q): no shift per piece, one per group
        s1 = dot_u8s8<VNNI>(s1, _mm512_andnot_si512(m4, v), _mm512_load_si512(x + 64 * (p + 4)));
      else  // (maddubs would saturate 16 q * x)
        s1 = dot_u8s8<VNNI>(s1, _mm512_and_si512(_mm512_srli_epi16(v, 4), m4), _mm512_load_si512(x + 64 * (p + 4)));
    }
    // s1 = 16 * (the high nibbles' sum) exactly (|s1| <= 16 * 16 * 15 * 127 < 2^31)
    if constexpr (VNNI) s1 = _mm512_srai_epi32(s1, 4);
  }
  const __m512i isum = _mm512_add_epi32(s0, s1);
  const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(grp)));
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(_mm512_load_ps(dx), dw), acc);
}

template <bool VNNI, bool Q8, bool SIGN>
void decode_rows(const DecodeX& dx, int64_t m, int64_t k, const uint8_t* w, int64_t jb, int64_t je,
                 const float* bias, float* y, int64_t n) {
  constexpr DType DT = Q8 ? DType::Q8_0 : DType::Q4_0;
  constexpr int64_t BB = Q8 ? 34 : 18, GB = kGroup * BB;  // bytes per block / group
  constexpr int RB = 16;  // W rows per batch (one reduce16)
  const int64_t nb = k / 32, groups = dx.groups, row_bytes = nb * BB, full = nb / kGroup;
  alignas(64) uint8_t tail[GB];  // a row's last nb % 16 blocks as a zero-padded group
  {  // the first kPrefetch bytes of this run of rows (the loop prefetches the rest)
    const char* p0 = reinterpret_cast<const char*>(w + jb * row_bytes);
    const int64_t bytes = (je - jb) * row_bytes < kPrefetch ? (je - jb) * row_bytes : kPrefetch;
    for (int64_t o = 0; o < bytes; o += 64) _mm_prefetch(p0 + o, _MM_HINT_T0);
  }
  __m512 acc[RB];
  for (int64_t j0 = jb; j0 < je; j0 += RB) {
    const int rn = static_cast<int>(je - j0 < RB ? je - j0 : RB);
    for (int64_t i = 0; i < m; ++i) {
      const int8_t* xq = dx.qs + i * groups * 512;
      const int32_t* corr = dx.corr + i * groups * 16;
      const float* dxi = dx.dx + i * groups * 16;
      for (int r = 0; r < rn; ++r) {
        const uint8_t* row = w + (j0 + r) * row_bytes;
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        int64_t g = 0;
        for (; g + 2 <= full; g += 2) {
          if (i == 0) {  // the 2 groups' bytes, kPrefetch ahead (rows are contiguous)
            const char* pp = reinterpret_cast<const char*>(row + g * GB) + kPrefetch;
#pragma GCC unroll 18
            for (int l = 0; l < (2 * GB + 63) / 64; ++l) _mm_prefetch(pp + 64 * l, _MM_HINT_T0);
          }
          a0 = group_term<VNNI, Q8, SIGN>(row + g * GB, xq + g * 512, corr + g * 16, dxi + g * 16, a0);
          a1 = group_term<VNNI, Q8, SIGN>(row + (g + 1) * GB, xq + (g + 1) * 512, corr + (g + 1) * 16,
                                          dxi + (g + 1) * 16, a1);
        }
        for (; g < full; ++g) a0 = group_term<VNNI, Q8, SIGN>(row + g * GB, xq + g * 512, corr + g * 16, dxi + g * 16, a0);
        if (g < groups) {
          quant_group_from_blocks(DT, row + full * GB, static_cast<int>(nb - full * kGroup), tail);
          a1 = group_term<VNNI, Q8, SIGN>(tail, xq + g * 512, corr + g * 16, dxi + g * 16, a1);
        }
        acc[r] = _mm512_add_ps(a0, a1);
      }
      for (int r = rn; r < RB; ++r) acc[r] = _mm512_setzero_ps();
      __m512 s = reduce16(acc);
      const __mmask16 mk = static_cast<__mmask16>((1u << rn) - 1u);
      if (bias) s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(mk, bias + j0));
      _mm512_mask_storeu_ps(y + i * n + j0, mk, s);
    }
  }
}

constexpr int64_t kDecodeUnit = 16;  // W rows per scheduling unit (one reduce16 batch)

// y[i] = x w[i]^T (+ bias[i]) for `count` weights sharing x and k: x prepared once, one thread
// team over the rows of all of them in units of 16 rows, chunked by run_chunked (long runs
// first, single units at the end). Rows do not depend on the split.
template <bool VNNI, bool Q8>
void decode(const float* x, int64_t m, const WeightRef* w, const float* const* bias, float* const* y, int count,
            int nt) {
  constexpr bool SIGN = Q8 && !VNNI;
  static thread_local GrowBuffer<int8_t> qbuf;
  static thread_local GrowBuffer<int32_t> cbuf;
  static thread_local GrowBuffer<float> dbuf;
  DecodeX dx;
  const int64_t k = w[0].k;
  prepare_decode_x<Q8, SIGN>(x, m, k, &dx, qbuf, cbuf, dbuf);
  if (nt <= 1) {
    for (int i = 0; i < count; ++i)
      decode_rows<VNNI, Q8, SIGN>(dx, m, k, static_cast<const uint8_t*>(w[i].data), 0, w[i].n, bias[i], y[i], w[i].n);
    return;
  }
  int64_t first[kMaxMulti + 1] = {0};  // first unit of each weight
  for (int i = 0; i < count; ++i) first[i + 1] = first[i] + (w[i].n + kDecodeUnit - 1) / kDecodeUnit;
  const int64_t units = first[count];
  run_chunked(units, nt, [&](int64_t u0, int64_t u1) {
    for (int i = 0; i < count; ++i) {  // the part of [u0, u1) in weight i: one run of rows
      const int64_t a = std::max(u0, first[i]) - first[i], b = std::min(u1, first[i + 1]) - first[i];
      if (a >= b) continue;
      const int64_t n = w[i].n, je = b * kDecodeUnit < n ? b * kDecodeUnit : n;
      decode_rows<VNNI, Q8, SIGN>(dx, m, k, static_cast<const uint8_t*>(w[i].data), a * kDecodeUnit, je, bias[i], y[i],
                                  n);
    }
  });
}

// ---- prefill: int8 VNNI GEMM ----------------------------------------------------------------

constexpr int PW = 16;           // W rows per panel (one zmm of int32 outputs)
constexpr int NP = 2;            // panels per micro-tile (32 output columns)
constexpr int MR = 4;            // x rows per micro-tile
constexpr int64_t KC = 512;      // k chunk: a panel pair (2 x 16 x 512 B) stays in L1
constexpr int64_t NC = 256;      // W rows packed per round (256 x 512 B = 128 KiB, L2)

// x for the GEMM: qs [m][k] int8, dx [m][nb], c [m][nb] = -128 * sum(qs of the block).
struct GemmX {
  int8_t* qs;
  float* d;
  int32_t* c;
};

void alloc_gemm_x(int64_t m, int64_t k, GemmX* g, GrowBuffer<int8_t>& qb, GrowBuffer<float>& db, GrowBuffer<int32_t>& cb) {
  const int64_t nb = k / 32;
  g->qs = qb.get(static_cast<size_t>(m * k));
  g->d = db.get(static_cast<size_t>(m * nb));
  g->c = cb.get(static_cast<size_t>(m * nb));
}

void quantize_gemm_x_row(const float* x, int64_t i, int64_t k, const GemmX& g) {
  const int64_t nb = k / 32;
  for (int64_t b = 0; b < nb; ++b) {
    int32_t s;
    g.d[i * nb + b] = quant_block_x(x + i * k + b * 32, g.qs + i * k + b * 32, &s);
    g.c[i * nb + b] = -128 * s;
  }
}

// The 16 x 16 dword matrix a[row][col] transposed: o[col] lane row = a[row] lane col.
inline void transpose16(const __m512i* a, __m512i* o) {
  __m512i u[16];  // u[4i + j], 128-bit chunk c = rows 4i .. 4i + 3 of column 4c + j
  transpose_4x4_chunks<16>(a, u);
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {  // column 4c + j = chunk c of u[j], u[4 + j], u[8 + j], u[12 + j]
    const __m512i v0 = _mm512_shuffle_i32x4(u[j], u[4 + j], _MM_SHUFFLE(1, 0, 1, 0));
    const __m512i v1 = _mm512_shuffle_i32x4(u[j], u[4 + j], _MM_SHUFFLE(3, 2, 3, 2));
    const __m512i v2 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], _MM_SHUFFLE(1, 0, 1, 0));
    const __m512i v3 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], _MM_SHUFFLE(3, 2, 3, 2));
    o[j] = _mm512_shuffle_i32x4(v0, v2, _MM_SHUFFLE(2, 0, 2, 0));
    o[4 + j] = _mm512_shuffle_i32x4(v0, v2, _MM_SHUFFLE(3, 1, 3, 1));
    o[8 + j] = _mm512_shuffle_i32x4(v1, v3, _MM_SHUFFLE(2, 0, 2, 0));
    o[12 + j] = _mm512_shuffle_i32x4(v1, v3, _MM_SHUFFLE(3, 1, 3, 1));
  }
}

// Packs W rows [j0, j0 + rows) (rows <= NC), k range [k0, k0 + kb) into panels of PW rows:
// panel p at out + p * kb * PW: byte ((t / 4) * PW + r) * 4 + t % 4 = w[j0 + p*PW + r, k0 + t] + 128
// (u8); scales at sc + p * (kb / 32) * PW: [block][r]. Rows past `rows` are zero with scale 0.
// A chunk is one interleaved group of every row (k0 % 512 == 0, kb = KC), read as 16 x 16 dword
// transposes of each piece, or the plain blocks after a row's last group.
static_assert(KC == 32 * kQuantGroup, "pack_w reads one interleaved group per k chunk");
template <bool Q8>
void pack_w(const uint8_t* w, int64_t row_bytes, int64_t j0, int64_t rows, int64_t k0, int64_t kb, uint8_t* out,
            float* sc) {
  constexpr int BB = Q8 ? 34 : 18;
  constexpr int64_t GB = kQuantGroup * BB;
  const int64_t panels = (rows + PW - 1) / PW, nbc = kb / 32, b0 = k0 / 32;
  const bool grouped = b0 / kQuantGroup < (row_bytes / BB) / kQuantGroup;  // else: the plain tail blocks
  alignas(64) uint16_t dh[(KC / 32) * PW];
  for (int64_t p = 0; p < panels; ++p) {
    const int64_t r = rows - p * PW < PW ? rows - p * PW : PW;
    const uint8_t* base = w + (j0 + p * PW) * row_bytes;
    uint8_t* dst = out + p * kb * PW;
    float* sdst = sc + p * nbc * PW;
    if (grouped) {
      const uint8_t* grp = base + (b0 / kQuantGroup) * GB;
      for (int64_t b = 0; b < nbc; ++b)
        for (int rr = 0; rr < PW; ++rr) dh[b * PW + rr] = rr < r ? load_u16(grp + rr * row_bytes + 2 * b) : 0;
      // Piece q of the 16 rows: [row][block] dwords; transposed, block b's dwords for rows 0-15.
      for (int q = 0; q < (Q8 ? 8 : 4); ++q) {
        __m512i a[PW], o[PW];
        if constexpr (Q8) {
#pragma GCC unroll 16
          for (int rr = 0; rr < PW; ++rr) {
            const __m512i v = rr < r ? _mm512_loadu_si512(grp + rr * row_bytes + 32 + 64 * q) : _mm512_setzero_si512();
            a[rr] = _mm512_xor_si512(v, _mm512_set1_epi8(static_cast<char>(0x80)));
          }
          transpose16(a, o);
#pragma GCC unroll 16
          for (int b = 0; b < PW; ++b) _mm512_storeu_si512(dst + b * 8 * PW * 4 + q * 64, o[b]);
        } else {
          __m512i hi[PW];
#pragma GCC unroll 16
          for (int rr = 0; rr < PW; ++rr) {
            const __m512i v = rr < r ? _mm512_loadu_si512(grp + rr * row_bytes + 32 + 64 * q) : _mm512_set1_epi8(0x08);
            a[rr] = _mm512_add_epi8(_mm512_and_si512(v, _mm512_set1_epi8(0x0F)), _mm512_set1_epi8(120));
            hi[rr] = _mm512_add_epi8(_mm512_and_si512(_mm512_srli_epi16(v, 4), _mm512_set1_epi8(0x0F)),
                                     _mm512_set1_epi8(120));
          }
          transpose16(a, o);
#pragma GCC unroll 16
          for (int b = 0; b < PW; ++b) _mm512_storeu_si512(dst + b * 8 * PW * 4 + q * 64, o[b]);
          transpose16(hi, o);
#pragma GCC unroll 16
          for (int b = 0; b < PW; ++b) _mm512_storeu_si512(dst + b * 8 * PW * 4 + (4 + q) * 64, o[b]);
        }
      }
    } else {
      for (int64_t b = 0; b < nbc; ++b) {
        const uint8_t* blk = base + (b0 + b) * BB;
        // f16 scales, 0 for missing rows; converted after the block loop (a vector load right
        // after 16 narrow stores would stall on store forwarding).
        for (int rr = 0; rr < PW; ++rr) dh[b * PW + rr] = rr < r ? load_u16(blk + rr * row_bytes) : 0;
        uint8_t* d = dst + b * 8 * PW * 4;  // 8 groups of 4 k per block
        // Row rr's block as 8 dwords in group order (group g = elements 4g..4g+3), offset to u8.
        __m256i rw[PW];
#pragma GCC unroll 16
        for (int rr = 0; rr < PW; ++rr) {
          const uint8_t* q = blk + rr * row_bytes + 2;
          if constexpr (Q8) {
            const __m256i v = rr < r ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q)) : _mm256_setzero_si256();
            rw[rr] = _mm256_xor_si256(v, _mm256_set1_epi8(static_cast<char>(0x80)));
          } else {
            const __m128i v = rr < r ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(q)) : _mm_set1_epi8(0x08);
            const __m128i lo = _mm_and_si128(v, _mm_set1_epi8(0x0F));
            const __m128i hi = _mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(0x0F));
            rw[rr] = _mm256_add_epi8(_mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1), _mm256_set1_epi8(120));
          }
        }
        transpose_store(rw, d);
      }
    }
    for (int64_t b = 0; b < nbc; ++b)
      _mm512_storeu_ps(sdst + b * PW, _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(dh + b * PW))));
  }
}

// y[i0 : i0 + R, j : j + 32] over k chunk [k0, k0 + kb): panels pw (2 consecutive panels,
// kb * PW bytes each), scales ps. first: start from 0, else from y; bias on the last chunk.
template <int R>
void micro(const GemmX& gx, int64_t i0, int64_t k, int64_t k0, int64_t kb, const uint8_t* pw, const float* ps,
           float* yt, int64_t n, __mmask16 m0, __mmask16 m1, bool first, const float* bias) {
  const int64_t nb = k / 32, nbc = kb / 32, b0 = k0 / 32;
  __m512 f[R][NP];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    if (first) {
      f[r][0] = f[r][1] = _mm512_setzero_ps();
    } else {
      f[r][0] = _mm512_maskz_loadu_ps(m0, yt + r * n);
      f[r][1] = _mm512_maskz_loadu_ps(m1, yt + r * n + 16);
    }
  }
  const uint8_t* p0 = pw;
  const uint8_t* p1 = pw + kb * PW;
  for (int64_t b = 0; b < nbc; ++b) {
    __m512i acc[R][NP];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm512_set1_epi32(gx.c[(i0 + r) * nb + b0 + b]);
    const int8_t* xb = gx.qs + i0 * k + k0 + b * 32;
#pragma GCC unroll 8
    for (int g = 0; g < 8; ++g) {
      const __m512i w0 = _mm512_loadu_si512(p0 + (b * 8 + g) * 64);
      const __m512i w1 = _mm512_loadu_si512(p1 + (b * 8 + g) * 64);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        int32_t xv;
        std::memcpy(&xv, xb + r * k + g * 4, 4);
        const __m512i xb4 = _mm512_set1_epi32(xv);
        acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], w0, xb4);
        acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], w1, xb4);
      }
    }
    const __m512 d0 = _mm512_loadu_ps(ps + b * PW);
    const __m512 d1 = _mm512_loadu_ps(ps + nbc * PW + b * PW);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 dxr = _mm512_set1_ps(gx.d[(i0 + r) * nb + b0 + b]);
      f[r][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[r][0]), _mm512_mul_ps(dxr, d0), f[r][0]);
      f[r][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[r][1]), _mm512_mul_ps(dxr, d1), f[r][1]);
    }
  }
  if (bias) {
    const __m512 b0v = _mm512_maskz_loadu_ps(m0, bias), b1v = _mm512_maskz_loadu_ps(m1, bias + 16);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      f[r][0] = _mm512_add_ps(f[r][0], b0v);
      f[r][1] = _mm512_add_ps(f[r][1], b1v);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    _mm512_mask_storeu_ps(yt + r * n, m0, f[r][0]);
    _mm512_mask_storeu_ps(yt + r * n + 16, m1, f[r][1]);
  }
}

template <int R>
void micro_tail(int rows, const GemmX& gx, int64_t i0, int64_t k, int64_t k0, int64_t kb, const uint8_t* pw,
                const float* ps, float* yt, int64_t n, __mmask16 m0, __mmask16 m1, bool first, const float* bias) {
  if constexpr (R >= 1) {
    if (rows == R) return micro<R>(gx, i0, k, k0, kb, pw, ps, yt, n, m0, m1, first, bias);
    micro_tail<R - 1>(rows, gx, i0, k, k0, kb, pw, ps, yt, n, m0, m1, first, bias);
  }
}

inline __mmask16 cols_mask(int64_t c) { return static_cast<__mmask16>(c >= 16 ? 0xFFFF : c <= 0 ? 0 : (1u << c) - 1); }

// Rows [ib, ie) of y, columns [jb, je): packs W blocks itself (per thread).
template <bool Q8>
void gemm_part(const GemmX& gx, int64_t k, const WeightRef& w, const float* bias, float* y, int64_t ib, int64_t ie,
               int64_t jb, int64_t je, GrowBuffer<uint8_t>& pbuf, GrowBuffer<float>& sbuf) {
  const int64_t n = w.n, row_bytes = static_cast<int64_t>(dtype_row_bytes(w.dtype, k));
  const auto* wb = static_cast<const uint8_t*>(w.data);
  const int64_t kc_max = k < KC ? k : KC;
  // Panels are packed in pairs: round NC up to whole pairs.
  uint8_t* packed = pbuf.get(static_cast<size_t>(NC * kc_max));
  float* scales = sbuf.get(static_cast<size_t>(NC * (kc_max / 32)));
  for (int64_t jc = jb; jc < je; jc += NC) {
    const int64_t rows = je - jc < NC ? je - jc : NC;
    const int64_t pairs = (rows + PW * NP - 1) / (PW * NP);
    for (int64_t kc = 0; kc < k; kc += KC) {
      const int64_t kb = k - kc < KC ? k - kc : KC;
      const bool first = kc == 0, last = kc + kb == k;
      // Pack whole pairs (the second panel of a ragged pair is zero-padded).
      pack_w<Q8>(wb, row_bytes, jc, rows, kc, kb, packed, scales);
      if (rows < pairs * PW * NP && (rows + PW - 1) / PW < pairs * NP) {
        // the last pair's second panel does not exist: make it a zero panel
        const int64_t p = pairs * NP - 1;
        std::memset(packed + p * kb * PW, 128, static_cast<size_t>(kb * PW));
        std::memset(scales + p * (kb / 32) * PW, 0, static_cast<size_t>((kb / 32) * PW) * 4);
      }
      for (int64_t q = 0; q < pairs; ++q) {
        const int64_t j = jc + q * PW * NP;
        const __mmask16 m0 = cols_mask(je - j), m1 = cols_mask(je - j - 16);
        const uint8_t* pw = packed + q * NP * kb * PW;
        const float* ps = scales + q * NP * (kb / 32) * PW;
        const float* bj = last && bias ? bias + j : nullptr;
        int64_t i = ib;
        for (; i + MR <= ie; i += MR) micro<MR>(gx, i, k, kc, kb, pw, ps, y + i * n + j, n, m0, m1, first, bj);
        if (i < ie)
          micro_tail<MR - 1>(static_cast<int>(ie - i), gx, i, k, kc, kb, pw, ps, y + i * n + j, n, m0, m1, first, bj);
      }
    }
  }
}

template <bool Q8>
void gemm(const float* x, int64_t m, const WeightRef& w, const float* bias, float* y, int nt) {
  static thread_local GrowBuffer<int8_t> qb;
  static thread_local GrowBuffer<float> db;
  static thread_local GrowBuffer<int32_t> cb;
  GemmX gx;
  alloc_gemm_x(m, w.k, &gx, qb, db, cb);
  const int64_t n = w.n;
  const bool split_n = n >= static_cast<int64_t>(nt) * 2 * PW * NP;
#pragma omp parallel num_threads(nt)
  {
#pragma omp for schedule(static)
    for (int64_t i = 0; i < m; ++i) quantize_gemm_x_row(x, i, w.k, gx);
    // (implicit barrier: x is quantized)
    static thread_local GrowBuffer<uint8_t> pbuf;
    static thread_local GrowBuffer<float> sbuf;
    const int parts = omp_get_num_threads(), me = omp_get_thread_num();
    int64_t b, e;
    if (split_n) {
      split_range(n, parts, me, PW * NP, &b, &e);
      if (b < e) gemm_part<Q8>(gx, w.k, w, bias, y, 0, m, b, e, pbuf, sbuf);
    } else {
      split_range(m, parts, me, MR, &b, &e);
      if (b < e) gemm_part<Q8>(gx, w.k, w, bias, y, b, e, 0, n, pbuf, sbuf);
    }
  }
}

}  // namespace

bool quantize_blocks_avx512(DType dtype, const float* x, int64_t nb, uint8_t* out) {
  bool ok = true;
  if (dtype == DType::Q8_0) {
    for (int64_t b = 0; b < nb; ++b) ok &= quant_w_q8_0(x + b * 32, out + b * 34);
  } else {
    for (int64_t b = 0; b < nb; ++b) ok &= quant_w_q4_0(x + b * 32, out + b * 18);
  }
  return ok;
}

void quant_set_vnni_enabled(bool enabled) { g_vnni_enabled.store(enabled); }
int64_t quant_set_gemm_min_m(int64_t m) { return g_gemm_min_m.exchange(m > 0 ? m : kGemmM); }

void linear_quant_avx512(const float* x, int64_t m, const WeightRef& w, const float* bias, float* y) {
  const bool q8 = w.dtype == DType::Q8_0;
  const int64_t macs = m * w.n * w.k;
  const int nt = macs >= kParallelMacs ? threads() : 1;
  const bool vnni = cpu_has_avx512_vnni() && g_vnni_enabled.load(std::memory_order_relaxed);
  if (w.k == 0) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < w.n; ++j) y[i * w.n + j] = bias ? bias[j] : 0.0f;
    return;
  }
  if (vnni && m >= g_gemm_min_m.load(std::memory_order_relaxed)) return q8 ? gemm<true>(x, m, w, bias, y, nt) : gemm<false>(x, m, w, bias, y, nt);
  if (vnni) return q8 ? decode<true, true>(x, m, &w, &bias, &y, 1, nt) : decode<true, false>(x, m, &w, &bias, &y, 1, nt);
  return q8 ? decode<false, true>(x, m, &w, &bias, &y, 1, nt) : decode<false, false>(x, m, &w, &bias, &y, 1, nt);
}

void linear_quant_multi_avx512(const float* x, int64_t m, const WeightRef* w, float* const* y, int count) {
  const bool q8 = w[0].dtype == DType::Q8_0;
  int64_t rows = 0;
  for (int i = 0; i < count; ++i) rows += w[i].n;
  const int nt = m * rows * w[0].k >= kParallelMacs ? threads() : 1;
  const bool vnni = cpu_has_avx512_vnni() && g_vnni_enabled.load(std::memory_order_relaxed);
  if (nt <= 1 || count > kMaxMulti || w[0].k == 0 || (vnni && m >= g_gemm_min_m.load(std::memory_order_relaxed))) {
    for (int i = 0; i < count; ++i) linear_quant_avx512(x, m, w[i], nullptr, y[i]);
    return;
  }
  const float* const bias[kMaxMulti] = {};
  if (vnni) return q8 ? decode<true, true>(x, m, w, bias, y, count, nt) : decode<true, false>(x, m, w, bias, y, count, nt);
  return q8 ? decode<false, true>(x, m, w, bias, y, count, nt) : decode<false, false>(x, m, w, bias, y, count, nt);
}

}  // namespace qwen3vl::kernels::detail

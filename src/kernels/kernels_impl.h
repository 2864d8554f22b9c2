// Internal to src/kernels: the per-ISA function table and the shared helpers of the ISA files.
// Not part of the op interface (model code includes kernels.h only).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>

#include "kernels/kernels.h"

namespace qwen3vl::kernels::detail {

// One entry per op of kernels.h. Arguments are validated by the public wrappers (dispatch.cpp)
// before the table is called, so implementations may assume sane sizes and non-null pointers
// for non-empty data.
struct OpTable {
  // linear: the F32-precision path (any float weight dtype); linear_bf16: BF16 precision for
  // BF16/F16 weights; linear_quant: Q8_0/Q4_0 weights. dispatch.cpp's linear() picks one.
  void (*linear)(const float* x, int64_t m, const WeightRef& w, const float* bias, float* y);
  void (*linear_bf16)(const float* x, int64_t m, const WeightRef& w, const float* bias, float* y);
  void (*linear_quant)(const float* x, int64_t m, const WeightRef& w, const float* bias, float* y);
  void (*layer_norm)(const float* x, int64_t rows, int64_t d, const float* w, const float* b, float eps, float* y);
  void (*rms_norm)(const float* x, int64_t rows, int64_t d, const float* w, float eps, float* y);
  void (*gelu_tanh)(float* x, int64_t n);
  void (*gelu_erf)(float* x, int64_t n);
  void (*silu_mul)(const float* gate, const float* up, float* out, int64_t n);
  void (*add_inplace)(float* y, const float* x, int64_t n);
  void (*softmax_inplace)(float* x, int64_t rows, int64_t n);
  void (*rope_rotate_half)(float* x, int64_t tokens, int64_t x_token_stride, int64_t heads, int64_t head_dim,
                           const float* cos, const float* sin);
  void (*attention)(const AttentionArgs& a);       // f32
  void (*attention_bf16)(const AttentionArgs& a);  // a.bf16 (attention_bf16_*.cpp)
  // attention_bf16 reads AttentionArgs::k_bf16 / v_bf16 itself; when false, dispatch.cpp widens
  // bf16 K/V to f32 buffers first.
  bool attention_bf16_kv = false;
  // linear_multi for Q8_0/Q4_0 weights of one dtype and k (nullptr: dispatch.cpp loops linear_quant).
  void (*linear_quant_multi)(const float* x, int64_t m, const WeightRef* w, float* const* y, int count) = nullptr;
  // linear_multi at BF16 precision; returns false (nothing done) where it does not fuse.
  bool (*linear_bf16_multi)(const float* x, int64_t m, const WeightRef* w, float* const* y, int count) = nullptr;
};

namespace {
// A 64-byte aligned buffer of T that only grows; kept as a static thread_local by its users, so
// there is no heap traffic per call in steady state. Internal linkage: each ISA's translation unit
// compiles its own copy with its own flags.
template <typename T>
struct GrowBuffer {
  T* p = nullptr;
  size_t cap = 0;
  T* get(size_t n) {
    if (n > cap) {
      std::free(p);
      p = static_cast<T*>(std::aligned_alloc(64, ((n * sizeof(T) + 63) / 64) * 64));
      cap = p ? n : 0;
    }
    return p;
  }
  ~GrowBuffer() { std::free(p); }
};
}  // namespace

// The scalar reference table (kernels_scalar.cpp). ISA tables fall back to its entries for ops
// they do not specialise.
const OpTable& scalar_table();
// Defined in kernels_avx2.cpp / kernels_avx512.cpp. Only called when the CPU supports the ISA.
const OpTable& avx2_table();
const OpTable& avx512_table();

// Thread count for the ops (>= 1); see set_num_threads().
int threads();

// Runs f(u0, u1) over the units [0, units) on nt threads, each taking chunks from a shared counter:
// 1 / (4 nt) of the units still left (at least one), so a thread first streams a long contiguous
// run, then shorter ones, down to single units at the end. No chunk is so large that a thread
// running slower than the other (a busy neighbour on a VM) holds up the join: OpenMP's guided
// schedule hands out half of the work at once, and there the threads of a decode GEMV finished
// 20 us apart on average (6.6% of the region time, measured on the Q4_0 2B decoder).
template <typename F>
void run_chunked(int64_t units, int nt, const F& f) {
  std::atomic<int64_t> next{0};
#pragma omp parallel num_threads(nt)
  for (;;) {
    const int64_t left = units - next.load(std::memory_order_relaxed);
    const int64_t c = std::max<int64_t>(1, left / (4 * static_cast<int64_t>(nt)));
    const int64_t u0 = next.fetch_add(c, std::memory_order_relaxed);
    if (u0 >= units) break;
    f(u0, std::min(units, u0 + c));
  }
}

// ---- linear() variants, routed by the ISA tables' linear entry (see route_linear) ----
// f32 FMA path of each ISA (linear_simd.inc / scalar linear).
void linear_f32_scalar(const float* x, int64_t m, const WeightRef& w, const float* bias, float* y);
void linear_f32_avx2(const float* x, int64_t m, const WeightRef& w, const float* bias, float* y);
void linear_f32_avx512(const float* x, int64_t m, const WeightRef& w, const float* bias, float* y);
// linear_f32_avx512 on round_bf16(x) (kernels_avx512.cpp; the GEMM rounds while packing x).
void linear_f32_round_x_bf16_avx512(const float* x, int64_t m, const WeightRef& w, const float* bias, float* y);
// BF16 precision (MatmulPrecision::BF16) for BF16/F16 weights: x rounded to bf16, exact
// products, f32 accumulation. Scalar twin: gemm_bf16_scalar.cpp; AVX512-BF16: gemm_bf16_avx512.cpp
// (only called when cpu_has_avx512_bf16()); AVX2 emulation: gemm_bf16_avx2.cpp.
void linear_bf16_scalar(const float* x, int64_t m, const WeightRef& w, const float* bias, float* y);
void linear_bf16_avx2(const float* x, int64_t m, const WeightRef& w, const float* bias, float* y);
void linear_bf16_avx512(const float* x, int64_t m, const WeightRef& w, const float* bias, float* y);
bool linear_bf16_multi_avx512(const float* x, int64_t m, const WeightRef* w, float* const* y, int count);
// Q8_0 / Q4_0 weights: quant_scalar.cpp, quant_avx2.cpp, quant_avx512.cpp (VNNI where present).
void linear_quant_scalar(const float* x, int64_t m, const WeightRef& w, const float* bias, float* y);
void linear_quant_avx2(const float* x, int64_t m, const WeightRef& w, const float* bias, float* y);
void linear_quant_avx512(const float* x, int64_t m, const WeightRef& w, const float* bias, float* y);
void linear_quant_multi_avx512(const float* x, int64_t m, const WeightRef* w, float* const* y, int count);

// Attention per ISA (attention_*.cpp or the ISA file).
void attention_scalar(const AttentionArgs& a);
void attention_avx512(const AttentionArgs& a);
void attention_bf16_scalar(const AttentionArgs& a);  // scalar twin of the bf16 precision
void attention_bf16_avx512(const AttentionArgs& a);  // only called when cpu_has_avx512_bf16()
// Whether attention_bf16_avx512 reads AttentionArgs::k_bf16 / v_bf16 (attention_bf16_avx512.cpp).
extern const bool kAttentionBf16Avx512ReadsKv;

// Splits [0, n) into `parts` nearly equal chunks aligned to `align`; chunk `i` is [*b, *e).
static inline void split_range(int64_t n, int parts, int i, int64_t align, int64_t* b, int64_t* e) {
  int64_t units = (n + align - 1) / align;
  int64_t per = units / parts, rem = units % parts;
  int64_t ub = i * per + (i < rem ? i : rem);
  int64_t ue = ub + per + (i < rem ? 1 : 0);
  *b = ub * align < n ? ub * align : n;
  *e = ue * align < n ? ue * align : n;
}

}  // namespace qwen3vl::kernels::detail

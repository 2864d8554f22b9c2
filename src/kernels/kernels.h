// The op interface the model code calls. Model code never contains intrinsics: it calls these
// functions on contiguous row-major f32 activations and on weights as stored (F32/BF16/F16).
//
// Every op has a plain scalar implementation (kernels_scalar.cpp) that is the reference; AVX2
// and AVX-512 versions (kernels_avx2.cpp, kernels_avx512.cpp) are chosen at run time from what
// the CPU supports and are held to the scalar twin by tests/kernels. Multi-threading (OpenMP)
// happens inside the ops; the thread count is global and set by the user.
//
// The interface is backend-neutral (pointers + sizes, no CPU types), so a GPU backend can
// implement the same table later.
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "core/tensor.h"

namespace qwen3vl::kernels {

enum class Isa { Scalar = 0, AVX2 = 1, AVX512 = 2 };
const char* isa_name(Isa isa);
Isa best_isa();            // the best the CPU supports (cpuid)
Isa active_isa();          // the one in use (default: best_isa(), or QWEN3VL_ISA=scalar|avx2|avx512)
void set_isa(Isa isa);     // throws Error if the CPU lacks it
void set_num_threads(int n);  // <= 0: all cores
int num_threads();

// Precision of the matrix products (linear, attention) whose weights are not F32:
//  F32:  activations stay f32; weights are widened to f32; f32 FMA accumulation.
//  BF16: activations are rounded to bf16 (as a bf16 model in PyTorch stores them), products
//        are exact in f32, f32 accumulation. BF16 weights are used as stored; F16 weights keep
//        their exact value (bf16 x f16 products are still exact in f32). Default.
//        AVX-512: vdpbf16ps for the m <= 2 GEMV (where it is faster), the f32 FMA GEMM on the
//        rounded x above (vdpbf16ps has half the FMA flop rate on Sapphire Rapids). Attention
//        with AttentionArgs::bf16 uses vdpbf16ps; without AVX512-BF16 the flag is ignored.
//  F32 weights always use the F32 path.
// Quantized weights (Q8_0/Q4_0) always quantize the activations to Q8_0 blocks per row (as
// llama.cpp does) and use exact integer block dot products; see kernels/quant.h.
// QWEN3VL_MATMUL=f32|bf16 sets the initial value.
enum class MatmulPrecision { F32 = 0, BF16 = 1 };
void set_matmul_precision(MatmulPrecision p);
MatmulPrecision matmul_precision();
bool cpu_has_avx512_bf16();  // vdpbf16ps
bool cpu_has_avx512_vnni();  // vpdpbusd

// A weight matrix W [n, k], row-major, as stored by nn.Linear ([out_features, in_features]).
struct WeightRef {
  DType dtype = DType::F32;  // F32, BF16, F16, Q8_0 or Q4_0 (k % 32 == 0 for the last two)
  const void* data = nullptr;
  int64_t n = 0;  // rows (output features)
  int64_t k = 0;  // cols (input features)
};
// Views a 2-D tensor as a WeightRef; an N-D tensor is viewed as [size(0), numel/size(0)]
// (e.g. the Conv3d patch-embed weight [Dv, 3, 2, 16, 16] -> [Dv, 1536]).
WeightRef weight_ref(const Tensor& w);

// y[m, n] = sum_k x[m, k] * W[n, k] (+ bias[n]). x, y, bias are f32; accumulation in f32.
// Products follow matmul_precision() (above).
void linear(const float* x, int64_t m, const WeightRef& w, const float* bias, float* y);
// y[i] = linear(x, m, w[i], no bias) for `count` weights that share x and k (q/k/v_proj,
// gate/up_proj): the same bits as `count` linear() calls. Block-quantized decode (AVX-512)
// quantizes x once and streams the rows of all the weights with one thread team (one join
// instead of `count`); everything else runs the calls one after the other.
void linear_multi(const float* x, int64_t m, const WeightRef* w, float* const* y, int count);

// y = (x - mean) / sqrt(var + eps) * w + b over the last dim D, per row; computed in f32.
void layer_norm(const float* x, int64_t rows, int64_t d, const float* w, const float* b, float eps, float* y);
// y = x * rsqrt(mean(x^2) + eps) * w over the last dim D, per row.
void rms_norm(const float* x, int64_t rows, int64_t d, const float* w, float eps, float* y);

void gelu_tanh(float* x, int64_t n);                                  // in place, gelu_pytorch_tanh
void gelu_erf(float* x, int64_t n);                                   // in place, exact nn.GELU()
void silu_mul(const float* gate, const float* up, float* out, int64_t n);  // out = silu(gate) * up
void add_inplace(float* y, const float* x, int64_t n);               // y += x
void softmax_inplace(float* x, int64_t rows, int64_t n);             // per row, max-subtracted

// Rotate-half rotary embedding in place on x [tokens, heads, head_dim] (row stride in floats
// between tokens = x_token_stride, heads contiguous within a token):
//   x' = x * cos + rotate_half(x) * sin, rotate_half(v) = [-v[h:], v[:h]], h = head_dim / 2,
// with cos/sin [tokens, head_dim] (the same for every head).
void rope_rotate_half(float* x, int64_t tokens, int64_t x_token_stride, int64_t heads, int64_t head_dim,
                      const float* cos, const float* sin);

// Scaled dot-product attention with online softmax (never materialises [sq, sk] per head).
// q: [sq, hq, d] rows of q_stride floats; k, v: [sk, hk, d] rows of k_stride / v_stride floats;
// out: [sq, hq, d] rows of out_stride floats. GQA: query head h uses kv head h / (hq / hk).
// causal: key j is visible to query i iff j <= q_pos0 + i (q_pos0 = cache length before q).
struct AttentionArgs {
  const float* q = nullptr; int64_t q_stride = 0;
  const float* k = nullptr; int64_t k_stride = 0;
  const float* v = nullptr; int64_t v_stride = 0;
  float* out = nullptr; int64_t out_stride = 0;
  int64_t sq = 0, sk = 0, hq = 0, hk = 0, d = 0;
  float scale = 1.0f;
  bool causal = false;
  int64_t q_pos0 = 0;
  // BF16 precision (a bf16 model at MatmulPrecision::BF16): q, k, v and the softmax
  // probabilities are rounded to bf16 before their products; products exact, f32 accumulation.
  bool bf16 = false;
  // Optional bf16 keys/values (a bf16 KV cache): when k_bf16 / v_bf16 are
  // set, k / v are ignored and the keys / values are read from these bf16 arrays, with the same
  // k_stride / v_stride (in elements). Same results as f32 k / v holding those values.
  const uint16_t* k_bf16 = nullptr;
  const uint16_t* v_bf16 = nullptr;
};
void attention(const AttentionArgs& a);
// Whether attention() runs the BF16 numerics for AttentionArgs::bf16 on the active ISA (scalar
// twin, AVX512-BF16); false where the flag is ignored and f32 attention runs (AVX2, AVX-512
// without BF16): there a bf16 KV cache rounds K and V where the f32 kernel would not.
bool attention_honours_bf16();

}  // namespace qwen3vl::kernels

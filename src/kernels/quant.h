// Block quantization of weights (DType::Q8_0 / Q4_0, blocks and the interleaved row layout in
// core/quant.h: quantize_rows writes it, dequantize_rows and linear() read it). Scalar,
// deterministic, llama.cpp's reference rounding: the same f32 input gives the same blocks as
// llama.cpp's quantize_row_q8_0_ref / quantize_row_q4_0_ref (and gguf-py's gguf.quants.quantize;
// tests/fixtures/quant pins this, tools/reference/quant_fixtures.py writes the fixtures).
// Q4_0's x * id + 8.5 is computed with the product rounded to f32 before the add (as gguf-py
// and the C source without FMA contraction do; an FMA truncates differently for about 1 in 10^5
// values, which tests/fixtures/quant contains). Non-finite inputs (inf / nan) are rejected with
// qwen3vl::Error. Large inputs use OpenMP (detail::threads()) and, when the active ISA is
// AVX-512, a vectorized quantizer with identical output.
//
// linear() with Q8_0 / Q4_0 weights (every ISA; the scalar twin is linear_quant_scalar in
// quant_scalar.cpp) computes, like llama.cpp's vec_dot_q8_0_q8_0 / vec_dot_q4_0_q8_0:
//   1. each row of x [m, k] is quantized to Q8_0 blocks exactly like a Q8_0 weight row
//      (quantize_row_q8_0_ref): qx[i, b, :] int8, dx[i, b] = f16 scale widened to f32
//      (a block with inf / nan gets dx = NaN: that row of y is NaN);
//   2. isum(i, j, b) = sum_t qx[i, b, t] * qw[j, b, t]  (exact integer; Q4_0: qw = nibble - 8);
//   3. y[i, j] = sum over blocks b of (dx[i, b] * dw[j, b]) * isum(i, j, b)  (+ bias[j]),
//      the product dx * dw rounded to f32. The scalar twin rounds each term and adds them in
//      increasing b order in f32; SIMD versions may fuse the multiply-add and use any
//      summation order (lanes, trees), so they agree with the twin within
//      2 (nb + 3) u sum_b |dx dw| sum_t |qx qw| + 2 u |bias|   (u = 2^-24, nb = k / 32).
// The same numerics hold for every m: quant_avx512.cpp streams W for m < 4 (decode) and runs an
// int8 VNNI GEMM for m >= 4 (prefill; x quantized per row as above, so no bf16 path and no
// second definition is needed); without VNNI, and in quant_avx2.cpp, the streaming kernel
// serves every m. Results do not depend on the thread count.
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "core/quant.h"

namespace qwen3vl::kernels {

// Quantizes rows x[rows, k] (f32) to `dtype` (Q8_0 or Q4_0) into out (rows * row_bytes bytes),
// in the interleaved row layout (core/quant.h; quant_row_to_blocks gives llama.cpp's order).
// k must be a multiple of 32.
void quantize_rows(DType dtype, const float* x, int64_t rows, int64_t k, void* out);
// The same from bf16 source rows (uint16 bit patterns), widened exactly to f32 first.
void quantize_rows_bf16(DType dtype, const uint16_t* x, int64_t rows, int64_t k, void* out);
// Dequantizes rows [row0, row0 + rows) of a quantized [*, k] matrix to f32 out[rows, k].
void dequantize_rows(DType dtype, const void* w, int64_t k, int64_t row0, int64_t rows, float* out);

namespace detail {
// Internal to src/kernels (shared by the quant_*.cpp files and tests).
void quantize_block_q8_0(const float* x, BlockQ8_0* out);  // one block of 32, reference rounding
void quantize_block_q4_0(const float* x, BlockQ4_0* out);
// One activation row quantized to Q8_0 blocks, unpacked: qs[k] int8, d[k / 32] (f16 scale
// widened to f32), sum[k / 32] = sum of the block's qs. A block holding inf / nan gets d = NaN
// (qs = 0), so linear() outputs NaN for that row instead of throwing.
struct QuantizedRow {
  int8_t* qs;
  float* d;
  int32_t* sum;
};
void quantize_activations(const float* x, int64_t k, QuantizedRow* out);
// AVX-512 weight quantizer (same bytes as the scalar one; quantize_rows uses it when the active
// ISA is AVX-512). nb blocks of x -> out; false when a block holds inf / nan.
bool quantize_blocks_avx512(DType dtype, const float* x, int64_t nb, uint8_t* out);
// Tests only: lets the AVX-512 kernel use its non-VNNI (AVX-512BW) code even where the CPU has
// VNNI (default: VNNI whenever cpu_has_avx512_vnni()). Not thread-safe against running linears.
void quant_set_vnni_enabled(bool enabled);
// Tests / benchmarks only: the m from which the AVX-512 VNNI kernel uses its GEMM instead of the
// decode kernel (<= 0: the built-in default). Returns the previous value.
int64_t quant_set_gemm_min_m(int64_t m);
}  // namespace detail

}  // namespace qwen3vl::kernels

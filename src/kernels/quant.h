// Block quantization of weights (DType::Q8_0 / Q4_0, layouts in core/quant.h). Scalar,
// deterministic, llama.cpp's reference rounding: the same f32 input gives the same bytes as
// llama.cpp's quantize_row_q8_0_ref / quantize_row_q4_0_ref.
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "core/quant.h"

namespace qwen3vl::kernels {

// Quantizes rows x[rows, k] (f32) to `dtype` (Q8_0 or Q4_0) into out (rows * row_bytes bytes).
// k must be a multiple of 32.
void quantize_rows(DType dtype, const float* x, int64_t rows, int64_t k, void* out);
// The same from bf16 source rows (uint16 bit patterns), widened exactly to f32 first.
void quantize_rows_bf16(DType dtype, const uint16_t* x, int64_t rows, int64_t k, void* out);
// Dequantizes rows [row0, row0 + rows) of a quantized [*, k] matrix to f32 out[rows, k].
void dequantize_rows(DType dtype, const void* w, int64_t k, int64_t row0, int64_t rows, float* out);

}  // namespace qwen3vl::kernels

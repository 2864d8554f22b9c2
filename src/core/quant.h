// Block-quantized weight layouts (DType::Q8_0, DType::Q4_0). Byte-compatible with llama.cpp's
// block_q8_0 / block_q4_0, so the same weights quantize to the same bits in both engines.
//
// A quantized [n, k] matrix is n rows of k / 32 blocks each (k must be a multiple of 32), rows
// contiguous: row j starts at byte j * (k / 32) * quant_block_bytes(dtype).
//
//   Q8_0: { f16 d; int8 qs[32]; }          x[i] = d * qs[i]
//         d = amax / 127, qs[i] = round(x[i] / d)          (round half away from zero)
//   Q4_0: { f16 d; uint8 qs[16]; }         x[i] = d * (q[i] - 8), q[i] in [0, 15]
//         q[i] = qs[i] & 0x0F for i < 16, qs[i - 16] >> 4 for i >= 16
//         d = max / -8 where max is the signed value of largest magnitude,
//         q[i] = min(15, (int8)(x[i] / d + 8.5))
// (These are llama.cpp's reference quantizers, quantize_row_q8_0_ref / quantize_row_q4_0_ref.)
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace qwen3vl {

struct BlockQ8_0 {
  uint16_t d;  // f16 scale
  int8_t qs[32];
};
static_assert(sizeof(BlockQ8_0) == 34, "BlockQ8_0 must be 34 bytes");

struct BlockQ4_0 {
  uint16_t d;  // f16 scale
  uint8_t qs[16];
};
static_assert(sizeof(BlockQ4_0) == 18, "BlockQ4_0 must be 18 bytes");

// Bytes of one row of k elements of dtype t (any dtype).
inline size_t dtype_row_bytes(DType t, int64_t k) { return dtype_nbytes(t, k); }

}  // namespace qwen3vl

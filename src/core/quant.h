// Block-quantized weight formats (DType::Q8_0, DType::Q4_0). The blocks are llama.cpp's
// block_q8_0 / block_q4_0, so the same weights quantize to the same bits in both engines:
//
//   Q8_0: { f16 d; int8 qs[32]; }          x[i] = d * qs[i]
//         d = amax / 127, qs[i] = round(x[i] / d)          (round half away from zero)
//   Q4_0: { f16 d; uint8 qs[16]; }         x[i] = d * (q[i] - 8), q[i] in [0, 15]
//         q[i] = qs[i] & 0x0F for i < 16, qs[i - 16] >> 4 for i >= 16
//         d = max / -8 where max is the signed value of largest magnitude,
//         q[i] = min(15, (int8)(x[i] / d + 8.5))
// (These are llama.cpp's reference quantizers, quantize_row_q8_0_ref / quantize_row_q4_0_ref.)
//
// Row layout in memory (and in files written by `qwen3vl quantize`, metadata version 2): a
// quantized [n, k] matrix is n rows of nb = k / 32 blocks, rows contiguous (row j starts at byte
// j * nb * quant_block_bytes(dtype), the same sizes as llama.cpp). Within a row the blocks come
// in groups of kQuantGroup = 16, each group "interleaved" so that one 512-bit register holds one
// 4-byte piece of each of its 16 blocks (a vpdpbusd then sums one block per 32-bit lane):
//   group (16 * block bytes: Q8_0 544, Q4_0 288) = [16 f16 scales d_0 .. d_15]
//                                                 [P pieces x 16 blocks x 4 bytes]
//   byte 32 + (p * 16 + L) * 4 + t = qs byte 4p + t of block L   (p < P: Q8_0 P = 8, Q4_0 P = 4)
// The nb % 16 blocks after the last whole group are stored as plain llama.cpp blocks.
// quant_row_from_blocks / quant_row_to_blocks convert one row between the two orders (llama.cpp
// order = all nb blocks plain, as in a GGUF file).
#pragma once

#include <cstdint>
#include <cstring>

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

// ---- the interleaved row layout (see the top of this file) ------------------------------------

constexpr int kQuantGroup = 16;  // blocks per interleaved group
// 4-byte pieces of quants per block: Q8_0 8 (32 bytes), Q4_0 4 (16 bytes).
constexpr int quant_group_pieces(DType t) { return t == DType::Q8_0 ? 8 : 4; }
constexpr int64_t quant_group_bytes(DType t) { return kQuantGroup * static_cast<int64_t>(quant_block_bytes(t)); }

// cnt (<= 16) plain blocks at `blocks` -> one interleaved group at `grp`; blocks cnt..15 of the
// group are zero (scale 0). `blocks` and `grp` must not overlap.
inline void quant_group_from_blocks(DType t, const uint8_t* blocks, int cnt, uint8_t* grp) {
  const int64_t bb = static_cast<int64_t>(quant_block_bytes(t));
  const int pieces = quant_group_pieces(t);
  std::memset(grp, 0, static_cast<size_t>(quant_group_bytes(t)));
  for (int l = 0; l < cnt; ++l) {
    const uint8_t* b = blocks + l * bb;
    std::memcpy(grp + 2 * l, b, 2);
    for (int p = 0; p < pieces; ++p) std::memcpy(grp + 32 + (p * 16 + l) * 4, b + 2 + 4 * p, 4);
  }
}

// Block l (< 16) of the interleaved group at `grp` -> one plain block at `out`.
inline void quant_block_from_group(DType t, const uint8_t* grp, int l, uint8_t* out) {
  std::memcpy(out, grp + 2 * l, 2);
  for (int p = 0; p < quant_group_pieces(t); ++p) std::memcpy(out + 2 + 4 * p, grp + 32 + (p * 16 + l) * 4, 4);
}

// Block b of an interleaved row of nb blocks -> one plain block at `out`.
inline void quant_row_block(DType t, const uint8_t* row, int64_t nb, int64_t b, uint8_t* out) {
  const int64_t bb = static_cast<int64_t>(quant_block_bytes(t)), full = nb / kQuantGroup;
  if (b < full * kQuantGroup)
    quant_block_from_group(t, row + (b / kQuantGroup) * quant_group_bytes(t), static_cast<int>(b % kQuantGroup), out);
  else
    std::memcpy(out, row + b * bb, static_cast<size_t>(bb));
}

// One row of nb plain blocks -> the interleaved layout (`out` must not overlap `blocks`).
inline void quant_row_from_blocks(DType t, const uint8_t* blocks, int64_t nb, uint8_t* out) {
  const int64_t bb = static_cast<int64_t>(quant_block_bytes(t)), gb = quant_group_bytes(t), full = nb / kQuantGroup;
  for (int64_t g = 0; g < full; ++g) quant_group_from_blocks(t, blocks + g * gb, kQuantGroup, out + g * gb);
  std::memcpy(out + full * gb, blocks + full * gb, static_cast<size_t>((nb - full * kQuantGroup) * bb));
}

// One interleaved row of nb blocks -> nb plain blocks (`out` must not overlap `row`).
inline void quant_row_to_blocks(DType t, const uint8_t* row, int64_t nb, uint8_t* out) {
  const int64_t bb = static_cast<int64_t>(quant_block_bytes(t));
  for (int64_t b = 0; b < nb; ++b) quant_row_block(t, row, nb, b, out + b * bb);
}

}  // namespace qwen3vl

// Element types and scalar conversions (bf16/f16 <-> f32).
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace qwen3vl {

// Q8_0 and Q4_0 are block-quantized weight formats (llama.cpp-compatible layouts, see
// core/quant.h): 32 consecutive elements of a row share one f16 scale. They have no per-element
// size (dtype_size() == 0); use dtype_nbytes(). They never appear in a safetensors header.
enum class DType : uint8_t { F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL, Q8_0, Q4_0 };

constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::F64: case DType::I64: return 8;
    case DType::F32: case DType::I32: return 4;
    case DType::F16: case DType::BF16: case DType::I16: return 2;
    case DType::I8: case DType::U8: case DType::BOOL: return 1;
    case DType::Q8_0: case DType::Q4_0: return 0;  // block formats: see dtype_nbytes()
  }
  return 0;
}

constexpr bool dtype_is_quantized(DType t) { return t == DType::Q8_0 || t == DType::Q4_0; }
constexpr int64_t kQuantBlockSize = 32;  // elements per block of a quantized dtype
// Bytes of one block: Q8_0 = f16 scale + 32 x int8; Q4_0 = f16 scale + 16 bytes of nibbles.
constexpr size_t quant_block_bytes(DType t) { return t == DType::Q8_0 ? 34 : t == DType::Q4_0 ? 18 : 0; }
// Bytes of `numel` elements (for quantized dtypes numel must be a multiple of 32, per row).
constexpr size_t dtype_nbytes(DType t, int64_t numel) {
  return dtype_is_quantized(t) ? static_cast<size_t>(numel / kQuantBlockSize) * quant_block_bytes(t)
                               : static_cast<size_t>(numel) * dtype_size(t);
}

// Safetensors spelling: "F32", "BF16", ...
const char* dtype_name(DType t);
std::optional<DType> dtype_from_name(std::string_view name);

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round to nearest even, like torch's float -> bfloat16 cast (NaN stays NaN).
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// Round f32 to the nearest bf16 value and back (simulates a bf16 tensor store).
inline float round_bf16(float f) { return bf16_to_f32(f32_to_bf16(f)); }

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);  // round to nearest even, overflow -> inf

}  // namespace qwen3vl

// Q8_0 / Q4_0 block quantization (llama.cpp's reference rounding) and the scalar twin of
// linear() for quantized weights. See kernels/quant.h for the numerics every ISA follows.
#include <omp.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/kernels_impl.h"
#include "kernels/quant.h"

namespace qwen3vl::kernels {

namespace {

void check_dtype(DType dtype, int64_t k, const char* op) {
  QWEN3VL_CHECK(dtype_is_quantized(dtype),
                std::string(op) + ": dtype " + dtype_name(dtype) + " is not Q8_0 or Q4_0");
  QWEN3VL_CHECK(k >= 0 && k % kQuantBlockSize == 0,
                std::string(op) + ": k = " + std::to_string(k) + " is not a multiple of 32");
}

// roundf() semantics (half away from zero), clamped to [-127, 127]; NaN -> 0. Clamping and
// NaN are only reachable when 1 / d overflowed (a block of subnormal-size values), where
// llama.cpp's float -> int8 cast is undefined.
inline int8_t round_q8(float v) {
  if (v != v) return 0;
  if (v <= -127.0f) return -127;
  if (v >= 127.0f) return 127;
  int t = static_cast<int>(v);               // toward zero
  const float f = v - static_cast<float>(t);  // exact
  t += static_cast<int>(f >= 0.5f) - static_cast<int>(f <= -0.5f);  // branchless: the direction is random
  return static_cast<int8_t>(t);
}

// The f16 scale at the start of a block (any alignment).
inline float load_scale(const uint8_t* blk) {
  uint16_t h;
  std::memcpy(&h, blk, 2);
  return f16_to_f32(h);
}

// llama.cpp quantize_row_q8_0_ref: d = amax / 127, id = d ? 1/d : 0, q = roundf(x * id).
// Returns false (and leaves *out unspecified) when the block holds inf / nan.
bool quant_q8_0(const float* x, BlockQ8_0* out) {
  float amax = 0.0f;
  bool finite = true;
  for (int j = 0; j < 32; ++j) {
    const float a = std::fabs(x[j]);
    finite = finite && a <= 3.4028234663852886e38f;
    amax = amax > a ? amax : a;
  }
  if (!finite) return false;
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  out->d = f32_to_f16(d);
  for (int j = 0; j < 32; ++j) {
    const float v = x[j] * id;
    out->qs[j] = round_q8(v);
  }
  return true;
}

// llama.cpp quantize_row_q4_0_ref: max = the first value of largest magnitude, d = max / -8,
// id = d ? 1/d : 0, q = min(15, (int8)(x * id + 8.5)) (truncation; product and sum rounded
// separately, as numpy / the C source without FMA contraction computes them).
bool quant_q4_0(const float* x, BlockQ4_0* out) {
  float amax = 0.0f, max = 0.0f;
  bool finite = true;
  for (int j = 0; j < 32; ++j) {
    const float a = std::fabs(x[j]);
    if (amax < a) {
      amax = a;
      max = x[j];
    }
    finite = finite && a <= 3.4028234663852886e38f;
  }
  if (!finite) return false;
  const float d = max / -8.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  out->d = f32_to_f16(d);
  auto q = [&](float v) -> uint8_t {
    // Product and sum rounded separately (this file is compiled without FMA; the gguf fixtures
    // in tests/fixtures/quant pin it).
    const float t = v * id + 8.5f;
    if (!(t >= 0.0f)) return 0;
    if (t >= 15.0f) return 15;
    return static_cast<uint8_t>(static_cast<int>(t));
  };
  for (int j = 0; j < 16; ++j) out->qs[j] = static_cast<uint8_t>(q(x[j]) | (q(x[j + 16]) << 4));
  return true;
}

const char* const kNonFinite = "quantize: non-finite value (inf/nan) in the input";

// Rows of plain blocks at `w` (rows x nb) -> the interleaved row layout (core/quant.h), in place.
void interleave_rows_in_place(DType dtype, uint8_t* w, int64_t rows, int64_t nb) {
  const int64_t full = nb / kQuantGroup, gb = quant_group_bytes(dtype);
  if (full == 0) return;  // rows shorter than a group are plain blocks in both orders
  const size_t row_bytes = dtype_row_bytes(dtype, nb * kQuantBlockSize);
  const int nt = rows * full >= 4096 ? detail::threads() : 1;
#pragma omp parallel num_threads(nt)
  {
    std::vector<uint8_t> tmp(static_cast<size_t>(gb));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t g = 0; g < full; ++g) {
        uint8_t* grp = w + static_cast<size_t>(r) * row_bytes + g * gb;
        std::memcpy(tmp.data(), grp, tmp.size());
        quant_group_from_blocks(dtype, tmp.data(), kQuantGroup, grp);
      }
  }
}

// Quantizes nb blocks (src(b, tmp) returns a pointer to block b's 32 floats, tmp: 32 floats of
// scratch) into out; OpenMP over blocks for large inputs. Throws after the loop (never inside
// the parallel region) when a block holds inf / nan.
template <typename Src>
void quantize_blocks(DType dtype, int64_t nb, Src src, uint8_t* out) {
  const int nt = nb >= 4096 ? detail::threads() : 1;
  int bad = 0;
  const bool avx512 = active_isa() == Isa::AVX512;  // the same bytes, faster
#pragma omp parallel for num_threads(nt) schedule(static) reduction(| : bad)
  for (int64_t b = 0; b < nb; ++b) {
    float tmp[32];
    const float* xb = src(b, tmp);
    if (avx512) {
      bad |= !detail::quantize_blocks_avx512(dtype, xb, 1, out + b * quant_block_bytes(dtype));
    } else if (dtype == DType::Q8_0) {
      BlockQ8_0 blk;
      bad |= !quant_q8_0(xb, &blk);
      std::memcpy(out + b * sizeof(blk), &blk, sizeof(blk));  // `out` need not be 2-byte aligned
    } else {
      BlockQ4_0 blk;
      bad |= !quant_q4_0(xb, &blk);
      std::memcpy(out + b * sizeof(blk), &blk, sizeof(blk));
    }
  }
  QWEN3VL_CHECK(!bad, kNonFinite);
}

}  // namespace

void detail::quantize_block_q8_0(const float* x, BlockQ8_0* out) { QWEN3VL_CHECK(quant_q8_0(x, out), kNonFinite); }
void detail::quantize_block_q4_0(const float* x, BlockQ4_0* out) { QWEN3VL_CHECK(quant_q4_0(x, out), kNonFinite); }

void quantize_rows(DType dtype, const float* x, int64_t rows, int64_t k, void* out) {
  check_dtype(dtype, k, "quantize_rows");
  QWEN3VL_CHECK(rows >= 0, "quantize_rows: negative row count");
  const int64_t nb = rows * (k / kQuantBlockSize);
  if (nb == 0) return;
  QWEN3VL_CHECK(x != nullptr && out != nullptr, "quantize_rows: null pointer");
  quantize_blocks(dtype, nb, [x](int64_t b, float*) { return x + b * 32; }, static_cast<uint8_t*>(out));
  interleave_rows_in_place(dtype, static_cast<uint8_t*>(out), rows, k / kQuantBlockSize);
}

void quantize_rows_bf16(DType dtype, const uint16_t* x, int64_t rows, int64_t k, void* out) {
  check_dtype(dtype, k, "quantize_rows_bf16");
  QWEN3VL_CHECK(rows >= 0, "quantize_rows_bf16: negative row count");
  const int64_t nb = rows * (k / kQuantBlockSize);
  if (nb == 0) return;
  QWEN3VL_CHECK(x != nullptr && out != nullptr, "quantize_rows_bf16: null pointer");
  quantize_blocks(
      dtype, nb,
      [x](int64_t b, float* tmp) {
        for (int j = 0; j < 32; ++j) tmp[j] = bf16_to_f32(x[b * 32 + j]);
        return static_cast<const float*>(tmp);
      },
      static_cast<uint8_t*>(out));
  interleave_rows_in_place(dtype, static_cast<uint8_t*>(out), rows, k / kQuantBlockSize);
}

void dequantize_rows(DType dtype, const void* w, int64_t k, int64_t row0, int64_t rows, float* out) {
  check_dtype(dtype, k, "dequantize_rows");
  QWEN3VL_CHECK(row0 >= 0 && rows >= 0, "dequantize_rows: negative row index or count");
  const int64_t nbr = k / kQuantBlockSize;
  if (rows == 0 || nbr == 0) return;
  QWEN3VL_CHECK(w != nullptr && out != nullptr, "dequantize_rows: null pointer");
  const size_t row_bytes = dtype_row_bytes(dtype, k);
  std::vector<uint8_t> plain(row_bytes);  // one row as plain blocks
  for (int64_t r = 0; r < rows; ++r) {
    quant_row_to_blocks(dtype, static_cast<const uint8_t*>(w) + static_cast<size_t>(row0 + r) * row_bytes, nbr,
                        plain.data());
    for (int64_t b = 0; b < nbr; ++b) {
      float* o = out + (r * nbr + b) * 32;
      const uint8_t* blk = plain.data() + b * quant_block_bytes(dtype);
      const float d = load_scale(blk);
      if (dtype == DType::Q8_0) {
        for (int j = 0; j < 32; ++j) o[j] = static_cast<float>(static_cast<int8_t>(blk[2 + j])) * d;
      } else {
        for (int j = 0; j < 16; ++j) {
          o[j] = static_cast<float>((blk[2 + j] & 0x0F) - 8) * d;
          o[j + 16] = static_cast<float>((blk[2 + j] >> 4) - 8) * d;
        }
      }
    }
  }
}

void detail::quantize_activations(const float* x, int64_t k, QuantizedRow* out) {
  const int64_t nb = k / kQuantBlockSize;
  for (int64_t b = 0; b < nb; ++b) {
    const float* xb = x + b * 32;
    bool finite = true;
    for (int j = 0; j < 32; ++j) finite = finite && std::fabs(xb[j]) <= 3.4028234663852886e38f;
    int8_t* qs = out->qs + b * 32;
    if (!finite) {  // inf / nan activations: the block's scale is NaN, so the outputs are NaN
      out->d[b] = NAN;
      std::memset(qs, 0, 32);
      out->sum[b] = 0;
      continue;
    }
    BlockQ8_0 blk;
    quantize_block_q8_0(xb, &blk);
    out->d[b] = f16_to_f32(blk.d);
    int32_t s = 0;
    for (int j = 0; j < 32; ++j) {
      qs[j] = blk.qs[j];
      s += blk.qs[j];
    }
    out->sum[b] = s;
  }
}

namespace detail {

// y[i, j] = sum_b (dx[i, b] * dw[j, b]) * isum(i, j, b) (+ bias[j]), b increasing, f32.
void linear_quant_scalar(const float* x, int64_t m, const WeightRef& w, const float* bias, float* y) {
  const int64_t n = w.n, k = w.k, nb = k / kQuantBlockSize;
  const bool q8 = w.dtype == DType::Q8_0;
  const size_t row_bytes = dtype_row_bytes(w.dtype, k);
  // x quantized once (all rows), then one parallel loop over the weight rows.
  std::vector<int8_t> qs(static_cast<size_t>(m * k));
  std::vector<float> dx(static_cast<size_t>(m * nb));
  std::vector<int32_t> sx(static_cast<size_t>(m * nb));
  for (int64_t i = 0; i < m; ++i) {
    QuantizedRow qr{qs.data() + i * k, dx.data() + i * nb, sx.data() + i * nb};
    quantize_activations(x + i * k, k, &qr);
  }
  const int nt = m * n * k >= (1 << 17) ? threads() : 1;
#pragma omp parallel num_threads(nt)
  {
  std::vector<uint8_t> plain(row_bytes);  // row j as plain blocks
#pragma omp for schedule(static)
  for (int64_t j = 0; j < n; ++j) {
    quant_row_to_blocks(w.dtype, static_cast<const uint8_t*>(w.data) + static_cast<size_t>(j) * row_bytes, nb,
                        plain.data());
    const uint8_t* row = plain.data();
    for (int64_t i = 0; i < m; ++i) {
      float s = 0.0f;
      for (int64_t b = 0; b < nb; ++b) {
        const int8_t* xq = qs.data() + i * k + b * 32;
        int32_t isum = 0;
        const uint8_t* blk = row + b * (q8 ? 34 : 18);
        const float dw = load_scale(blk);
        if (q8) {
          for (int t = 0; t < 32; ++t) isum += static_cast<int32_t>(static_cast<int8_t>(blk[2 + t])) * xq[t];
        } else {
          for (int t = 0; t < 16; ++t) {
            isum += ((blk[2 + t] & 0x0F) - 8) * xq[t];
            isum += ((blk[2 + t] >> 4) - 8) * xq[t + 16];
          }
        }
        const float scale = dx[i * nb + b] * dw;
        const float term = scale * static_cast<float>(isum);
        s += term;
      }
      if (bias) s += bias[j];
      y[i * n + j] = s;
    }
  }
  }
}

}  // namespace detail
}  // namespace qwen3vl::kernels

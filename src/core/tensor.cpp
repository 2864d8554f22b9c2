#include "core/tensor.h"

#include <cstdlib>
#include <cstring>
#include <sstream>

namespace qwen3vl {

std::string shape_str(const Shape& s) {
  std::ostringstream o;
  o << '[';
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << ']';
  return o.str();
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

// Block-quantized tensors hold whole 32-element blocks per row: the last dimension must be a
// multiple of 32 (then every row, and every slice of rows, starts on a block boundary).
static void check_block_shape(const char* what, const Shape& shape, DType dtype) {
  if (!dtype_is_quantized(dtype)) return;
  QWEN3VL_CHECK(!shape.empty() && shape.back() % kQuantBlockSize == 0,
                std::string(what) + ": a " + dtype_name(dtype) + " tensor needs a last dimension that is a multiple of " +
                    std::to_string(kQuantBlockSize) + " (got " + shape_str(shape) + ")");
}

Tensor Tensor::empty(Shape shape, DType dtype) {
  for (int64_t d : shape) QWEN3VL_CHECK(d >= 0, "Tensor::empty: negative dimension in " + shape_str(shape));
  check_block_shape("Tensor::empty", shape, dtype);
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  size_t bytes = t.nbytes();
  size_t alloc = ((bytes + 63) / 64) * 64;
  if (alloc == 0) alloc = 64;
  void* p = std::aligned_alloc(64, alloc);
  if (!p) throw Error("out of memory allocating " + std::to_string(bytes) + " bytes for tensor " + shape_str(t.shape_));
  t.storage_ = std::shared_ptr<void>(p, [](void* q) { std::free(q); });
  t.data_ = p;
  return t;
}

Tensor Tensor::zeros(Shape shape, DType dtype) {
  Tensor t = empty(std::move(shape), dtype);
  std::memset(t.data_, 0, t.nbytes());
  return t;
}

Tensor Tensor::from_data(const void* data, Shape shape, DType dtype) {
  Tensor t = empty(std::move(shape), dtype);
  if (t.nbytes()) std::memcpy(t.data_, data, t.nbytes());
  return t;
}

Tensor Tensor::view(const void* data, Shape shape, DType dtype, std::shared_ptr<const void> owner) {
  check_block_shape("Tensor::view", shape, dtype);
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.storage_ = std::move(owner);
  t.data_ = const_cast<void*>(data);
  return t;
}

int64_t Tensor::size(int64_t i) const {
  int64_t n = dim();
  if (i < 0) i += n;
  QWEN3VL_CHECK(i >= 0 && i < n, "Tensor::size: dimension " + std::to_string(i) + " out of range for " + str());
  return shape_[static_cast<size_t>(i)];
}

Tensor Tensor::reshape(Shape shape) const {
  QWEN3VL_CHECK(shape_numel(shape) == numel(), "reshape " + str() + " -> " + shape_str(shape) + ": numel differs");
  check_block_shape("reshape", shape, dtype_);
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::slice_rows(int64_t begin, int64_t end) const {
  QWEN3VL_CHECK(dim() >= 1 && begin >= 0 && begin <= end && end <= shape_[0],
                "slice_rows [" + std::to_string(begin) + ", " + std::to_string(end) + ") of " + str());
  Tensor t = *this;
  int64_t row = shape_[0] ? numel() / shape_[0] : 0;
  t.shape_[0] = end - begin;
  t.data_ = static_cast<char*>(data_) + dtype_nbytes(dtype_, begin * row);
  return t;
}

static double load_as_double(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::F32: return static_cast<const float*>(p)[i];
    case DType::F64: return static_cast<const double*>(p)[i];
    case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::I64: return static_cast<double>(static_cast<const int64_t*>(p)[i]);
    case DType::I32: return static_cast<const int32_t*>(p)[i];
    case DType::I16: return static_cast<const int16_t*>(p)[i];
    case DType::I8: return static_cast<const int8_t*>(p)[i];
    case DType::U8: case DType::BOOL: return static_cast<const uint8_t*>(p)[i];
    case DType::Q8_0: case DType::Q4_0: break;  // block formats: not element-addressable
  }
  throw Error(std::string("element access to a ") + dtype_name(t) + " tensor (block-quantized)");
}

static void store_from_double(void* p, DType t, int64_t i, double v) {
  switch (t) {
    case DType::F32: static_cast<float*>(p)[i] = static_cast<float>(v); break;
    case DType::F64: static_cast<double*>(p)[i] = v; break;
    case DType::BF16: static_cast<uint16_t*>(p)[i] = f32_to_bf16(static_cast<float>(v)); break;
    case DType::F16: static_cast<uint16_t*>(p)[i] = f32_to_f16(static_cast<float>(v)); break;
    case DType::I64: static_cast<int64_t*>(p)[i] = static_cast<int64_t>(v); break;
    case DType::I32: static_cast<int32_t*>(p)[i] = static_cast<int32_t>(v); break;
    case DType::I16: static_cast<int16_t*>(p)[i] = static_cast<int16_t>(v); break;
    case DType::I8: static_cast<int8_t*>(p)[i] = static_cast<int8_t>(v); break;
    case DType::U8: case DType::BOOL: static_cast<uint8_t*>(p)[i] = static_cast<uint8_t>(v); break;
    case DType::Q8_0: case DType::Q4_0:
      throw Error(std::string("element store to a ") + dtype_name(t) + " tensor (block-quantized)");
  }
}

Tensor Tensor::to(DType dtype) const {
  if (dtype != dtype_ && (dtype_is_quantized(dtype) || dtype_is_quantized(dtype_)))
    throw Error(std::string("Tensor::to: cannot convert ") + str() + " to " + dtype_name(dtype) +
                ": block-quantized data is converted by kernels::quantize_rows / dequantize_rows "
                "(kernels/quant.h), not by core");
  Tensor t = empty(shape_, dtype);
  const int64_t n = numel();
  if (dtype == dtype_) {
    if (n) std::memcpy(t.data_, data_, nbytes());
  } else if (dtype_ == DType::BF16 && dtype == DType::F32) {
    const uint16_t* s = data_u16();
    float* d = t.data<float>();
    for (int64_t i = 0; i < n; ++i) d[i] = bf16_to_f32(s[i]);
  } else if (dtype_ == DType::F32 && dtype == DType::BF16) {
    const float* s = data<float>();
    uint16_t* d = static_cast<uint16_t*>(t.data_);
    for (int64_t i = 0; i < n; ++i) d[i] = f32_to_bf16(s[i]);
  } else {
    // Float -> float goes through float (exact for every pair used here: f16/bf16 <-> f32);
    // int64 goes through double (exact below 2^53).
    for (int64_t i = 0; i < n; ++i) store_from_double(t.data_, dtype, i, load_as_double(data_, dtype_, i));
  }
  return t;
}

double Tensor::item(int64_t i) const {
  QWEN3VL_CHECK(i >= 0 && i < numel(), "Tensor::item: index out of range for " + str());
  return load_as_double(data_, dtype_, i);
}

std::string Tensor::str() const { return std::string(dtype_name(dtype_)) + shape_str(shape_); }

void Tensor::check_type(DType t) const {
  QWEN3VL_CHECK(t == dtype_, std::string("tensor ") + str() + " accessed as " + dtype_name(t));
}

}  // namespace qwen3vl

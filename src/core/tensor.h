// Tensor: a dtype, a shape (PyTorch dimension order, row-major / contiguous) and a pointer into
// shared storage. Storage is either owned (64-byte aligned heap block) or borrowed from an owner
// kept alive by shared_ptr (e.g. a memory-mapped safetensors file: such views are read-only).
//
// Deliberately small: no strides, no autograd, no broadcasting. Model code works on contiguous
// row-major buffers and calls kernels (src/kernels) on raw pointers.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"

namespace qwen3vl {

using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& s);  // "[2, 3, 4]"
int64_t shape_numel(const Shape& s);

template <typename T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::F32; }
template <> constexpr DType dtype_of<double>() { return DType::F64; }
template <> constexpr DType dtype_of<int64_t>() { return DType::I64; }
template <> constexpr DType dtype_of<int32_t>() { return DType::I32; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::U8; }
template <> constexpr DType dtype_of<int8_t>() { return DType::I8; }

class Tensor {
 public:
  Tensor() = default;

  // Uninitialised owned tensor (64-byte aligned).
  static Tensor empty(Shape shape, DType dtype = DType::F32);
  static Tensor zeros(Shape shape, DType dtype = DType::F32);
  // Owned copy of `data` (numel(shape) elements of dtype).
  static Tensor from_data(const void* data, Shape shape, DType dtype);
  template <typename T>
  static Tensor from_vector(const std::vector<T>& v, Shape shape) {
    QWEN3VL_CHECK(shape_numel(shape) == static_cast<int64_t>(v.size()), "from_vector: size mismatch");
    return from_data(v.data(), std::move(shape), dtype_of<T>());
  }
  // Q8_0 / Q4_0 tensors (empty, view, reshape) must have a last dimension that is a multiple of
  // 32; their bytes are dtype_nbytes(dtype, numel) (see core/quant.h for the row layout).
  // Borrowed view: `owner` keeps `data` alive.
  static Tensor view(const void* data, Shape shape, DType dtype, std::shared_ptr<const void> owner);

  bool defined() const { return data_ != nullptr; }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t dim() const { return static_cast<int64_t>(shape_.size()); }
  int64_t size(int64_t i) const;  // negative i counts from the end
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return dtype_nbytes(dtype_, numel()); }

  const void* raw() const { return data_; }
  void* raw() { return data_; }
  template <typename T> const T* data() const { check_type(dtype_of<T>()); return static_cast<const T*>(data_); }
  template <typename T> T* data() { check_type(dtype_of<T>()); return static_cast<T*>(data_); }
  const uint16_t* data_u16() const { return static_cast<const uint16_t*>(data_); }  // bf16 / f16

  // Same storage, new shape (numel must match).
  Tensor reshape(Shape shape) const;
  // Rows [begin, end) of the first dimension, sharing storage.
  Tensor slice_rows(int64_t begin, int64_t end) const;
  // Converting copy (any float/int dtype to any other; floats round to nearest even). Block-
  // quantized tensors (Q8_0 / Q4_0) only copy to their own dtype (clone); any other conversion
  // throws Error (quantizing needs kernels/quant.h, which core does not call).
  Tensor to(DType dtype) const;
  Tensor clone() const { return to(dtype_); }
  // Element i (flat index) converted to double / float, for tests and debugging.
  double item(int64_t i) const;

  std::string str() const;  // "F32[2, 3]"

 private:
  void check_type(DType t) const;
  std::shared_ptr<const void> storage_;
  void* data_ = nullptr;
  DType dtype_ = DType::F32;
  Shape shape_;
};

}  // namespace qwen3vl

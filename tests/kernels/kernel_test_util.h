// Shared helpers of the kernel tests: random data, ISA iteration, tolerance bounds.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "kernels/kernels.h"

namespace qwen3vl::kernels::test {

// Unit roundoff of f32 (round to nearest): 2^-24.
constexpr double kU = 5.9604644775390625e-08;

inline std::vector<float> random_vec(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// Restores ISA and thread count on scope exit.
struct IsaGuard {
  Isa isa = active_isa();
  int threads = num_threads();
  ~IsaGuard() {
    set_isa(isa);
    set_num_threads(threads);
  }
};

// Every ISA the CPU supports (always includes Scalar).
inline std::vector<Isa> supported_isas() {
  std::vector<Isa> out;
  IsaGuard g;
  for (Isa isa : {Isa::Scalar, Isa::AVX2, Isa::AVX512}) {
    try {
      set_isa(isa);
      out.push_back(isa);
    } catch (const std::exception&) {
    }
  }
  return out;
}

// The optimized ISAs the CPU supports (those held to the scalar twin).
inline std::vector<Isa> simd_isas() {
  std::vector<Isa> out;
  for (Isa isa : supported_isas())
    if (isa != Isa::Scalar) out.push_back(isa);
  return out;
}

// A weight matrix stored as `dtype`, plus its exact f32 values (what the kernels must use).
struct TestWeight {
  DType dtype;
  int64_t n, k;
  std::vector<float> f32;       // used when dtype == F32
  std::vector<uint16_t> half;   // used when dtype is BF16 / F16
  std::vector<float> values;    // exact value of every stored element, as f32
  WeightRef ref() const {
    WeightRef r;
    r.dtype = dtype;
    r.n = n;
    r.k = k;
    r.data = dtype == DType::F32 ? static_cast<const void*>(f32.data()) : static_cast<const void*>(half.data());
    return r;
  }
};

inline TestWeight make_weight(DType dtype, int64_t n, int64_t k, uint32_t seed) {
  TestWeight w{dtype, n, k, {}, {}, {}};
  std::vector<float> v = random_vec(static_cast<size_t>(n * k), seed);
  w.values.resize(v.size());
  if (dtype == DType::F32) {
    w.f32 = v;
    w.values = v;
  } else {
    w.half.resize(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      w.half[i] = dtype == DType::BF16 ? f32_to_bf16(v[i]) : f32_to_f16(v[i]);
      w.values[i] = dtype == DType::BF16 ? bf16_to_f32(w.half[i]) : f16_to_f32(w.half[i]);
    }
  }
  return w;
}

}  // namespace qwen3vl::kernels::test

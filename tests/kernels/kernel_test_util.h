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

// linear() on a test weight; y starts as NaN so unwritten outputs fail the bound.
inline std::vector<float> run_linear(const std::vector<float>& x, int64_t m, const TestWeight& w,
                                     const float* bias) {
  std::vector<float> y(static_cast<size_t>(m * w.n), NAN);
  linear(x.data(), m, w.ref(), bias, y.data());
  return y;
}

// Counts outputs outside factor * bound; reports how many and the worst one.
inline void expect_within(const std::string& what, const std::vector<float>& y, const std::vector<double>& ref,
                          const std::vector<double>& bound, double factor) {
  ASSERT_EQ(y.size(), ref.size());
  double worst_ratio = 0;
  size_t worst = 0, bad = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    const double diff = std::fabs(y[i] - ref[i]);
    const double b = factor * bound[i] + 1e-30;
    if (!(diff <= b)) ++bad;
    const double ratio = std::isnan(diff) ? INFINITY : diff / b;
    if (ratio > worst_ratio) {
      worst_ratio = ratio;
      worst = i;
    }
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << y.size() << " outputs out of bound; worst #" << worst
                     << " got " << y[worst] << " expected " << ref[worst] << " bound " << factor * bound[worst];
}

}  // namespace qwen3vl::kernels::test

// linear at MatmulPrecision::F32 (the f32 path; BF16 precision is tested in test_linear_bf16.cpp):
// scalar vs double-precision math, every SIMD ISA vs the scalar twin, thread-count independence,
// edge cases.
//
// Tolerance derivation. Each output is y = sum_{i<k} x_i w_i (+ b). With f32 products and any
// summation order (sequential, blocked, FMA, tree), the standard bound (Higham, Accuracy and
// Stability, Thm 3.1 / eq. 3.5) is
//     |y_computed - y_exact| <= gamma_{k+1} * (sum_i |x_i w_i| + |b|),   gamma_n = n u / (1 - n u),
// with u = 2^-24 (the weights are exact: bf16/f16 widen to f32 without rounding). We use
// (k + 2) u S (S = sum|x_i w_i| + |b|) against exact (double) math, and 2 (k + 2) u S between two
// f32 implementations (both are within the bound of the exact value).
#include <cmath>
#include <vector>

#include "kernels/kernel_test_util.h"

namespace qwen3vl::kernels::test {
namespace {

// Pins MatmulPrecision::F32 for the scope (the default is BF16, which routes bf16/f16 weights
// to linear_bf16); restores the previous value on exit.
struct F32PrecisionGuard {
  MatmulPrecision prev = matmul_precision();
  F32PrecisionGuard() { set_matmul_precision(MatmulPrecision::F32); }
  ~F32PrecisionGuard() { set_matmul_precision(prev); }
};

struct LinearRef {
  std::vector<double> y;      // exact (double) result
  std::vector<double> bound;  // (k + 2) u (sum|x w| + |b|) per output
};

LinearRef linear_double(const std::vector<float>& x, int64_t m, const TestWeight& w, const float* bias) {
  LinearRef r;
  r.y.resize(static_cast<size_t>(m * w.n));
  r.bound.resize(r.y.size());
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < w.n; ++j) {
      double acc = 0, mag = 0;
      for (int64_t kk = 0; kk < w.k; ++kk) {
        double p = static_cast<double>(x[i * w.k + kk]) * w.values[j * w.k + kk];
        acc += p;
        mag += std::fabs(p);
      }
      if (bias) {
        acc += bias[j];
        mag += std::fabs(bias[j]);
      }
      r.y[i * w.n + j] = acc;
      r.bound[i * w.n + j] = (w.k + 2) * kU * mag;
    }
  return r;
}

const int64_t kMs[] = {1, 2, 3, 4, 5, 7, 17, 33};
const int64_t kKs[] = {1, 3, 17, 33, 129, 300};
const int64_t kNs[] = {1, 3, 17, 33, 129};
const DType kDTypes[] = {DType::F32, DType::BF16, DType::F16};

TEST(Linear, ScalarMatchesDoubleMath) {
  IsaGuard g;
  F32PrecisionGuard pg;
  set_isa(Isa::Scalar);
  uint32_t seed = 1;
  for (DType dt : kDTypes)
    for (int64_t m : {1, 3, 17})
      for (int64_t k : kKs)
        for (int64_t n : {1, 17, 33}) {
          TestWeight w = make_weight(dt, n, k, seed++);
          auto x = random_vec(static_cast<size_t>(m * k), seed++);
          auto b = random_vec(static_cast<size_t>(n), seed++);
          for (const float* bias : {static_cast<const float*>(nullptr), static_cast<const float*>(b.data())}) {
            LinearRef r = linear_double(x, m, w, bias);
            expect_within(std::string("scalar ") + dtype_name(dt) + " m" + std::to_string(m) + " k" +
                              std::to_string(k) + " n" + std::to_string(n),
                          run_linear(x, m, w, bias), r.y, r.bound, 1.0);
          }
        }
}

TEST(Linear, SimdMatchesScalarOddSizes) {
  IsaGuard g;
  F32PrecisionGuard pg;
  auto isas = simd_isas();
  if (isas.empty()) GTEST_SKIP() << "no SIMD ISA on this CPU";
  uint32_t seed = 100;
  for (DType dt : kDTypes)
    for (int64_t m : kMs)
      for (int64_t k : kKs)
        for (int64_t n : kNs) {
          TestWeight w = make_weight(dt, n, k, seed++);
          auto x = random_vec(static_cast<size_t>(m * k), seed++);
          auto b = random_vec(static_cast<size_t>(n), seed++);
          const float* bias = (seed % 2) ? b.data() : nullptr;
          LinearRef r = linear_double(x, m, w, bias);
          set_isa(Isa::Scalar);
          auto ys = run_linear(x, m, w, bias);
          std::vector<double> ysd(ys.begin(), ys.end());
          for (Isa isa : isas) {
            set_isa(isa);
            auto yo = run_linear(x, m, w, bias);
            std::string what = std::string(isa_name(isa)) + " " + dtype_name(dt) + " m" + std::to_string(m) + " k" +
                               std::to_string(k) + " n" + std::to_string(n);
            expect_within(what + " vs scalar", yo, ysd, r.bound, 2.0);
            expect_within(what + " vs double", yo, r.y, r.bound, 1.0);
            if (HasFailure()) return;
          }
        }
}

// Larger shapes that cross every cache block boundary (k > the k-block, m > the m-block,
// n not a multiple of the panel width) and the GEMV / GEMM switch.
TEST(Linear, SimdMatchesScalarBlockedShapes) {
  IsaGuard g;
  F32PrecisionGuard pg;
  auto isas = simd_isas();
  if (isas.empty()) GTEST_SKIP() << "no SIMD ISA on this CPU";
  struct Shape3 { int64_t m, k, n; };
  uint32_t seed = 5000;
  for (Shape3 s : {Shape3{129, 700, 100}, Shape3{300, 257, 67}, Shape3{1, 2100, 70}, Shape3{6, 1030, 50},
                   Shape3{16, 64, 1000}})
    for (DType dt : kDTypes) {
      TestWeight w = make_weight(dt, s.n, s.k, seed++);
      auto x = random_vec(static_cast<size_t>(s.m * s.k), seed++);
      auto b = random_vec(static_cast<size_t>(s.n), seed++);
      LinearRef r = linear_double(x, s.m, w, b.data());
      for (Isa isa : supported_isas()) {
        set_isa(isa);
        expect_within(std::string(isa_name(isa)) + " " + dtype_name(dt) + " m" + std::to_string(s.m) + " k" +
                          std::to_string(s.k) + " n" + std::to_string(s.n),
                      run_linear(x, s.m, w, b.data()), r.y, r.bound, 1.0);
      }
    }
}

TEST(Linear, ThreadCountDoesNotChangeResults) {
  IsaGuard g;
  F32PrecisionGuard pg;
  const int64_t m = 37, k = 520, n = 131;
  for (DType dt : {DType::F32, DType::BF16}) {
    TestWeight w = make_weight(dt, n, k, 77);
    auto x = random_vec(static_cast<size_t>(m * k), 78);
    auto x1 = random_vec(static_cast<size_t>(k), 79);
    LinearRef r = linear_double(x, m, w, nullptr);
    LinearRef r1 = linear_double(x1, 1, w, nullptr);
    for (Isa isa : supported_isas()) {
      set_isa(isa);
      set_num_threads(1);
      auto y1 = run_linear(x, m, w, nullptr);
      auto g1 = run_linear(x1, 1, w, nullptr);
      std::vector<double> y1d(y1.begin(), y1.end()), g1d(g1.begin(), g1.end());
      for (int t : {2, 3, 5}) {
        set_num_threads(t);
        std::string what = std::string(isa_name(isa)) + " " + dtype_name(dt) + " threads " + std::to_string(t);
        expect_within(what + " gemm", run_linear(x, m, w, nullptr), y1d, r.bound, 2.0);
        expect_within(what + " gemv", run_linear(x1, 1, w, nullptr), g1d, r1.bound, 2.0);
      }
    }
  }
}

TEST(Linear, ZeroSizes) {
  IsaGuard g;
  F32PrecisionGuard pg;
  for (Isa isa : supported_isas()) {
    set_isa(isa);
    // k == 0: y = bias (or 0).
    TestWeight w = make_weight(DType::BF16, 5, 0, 1);
    std::vector<float> bias = {1, 2, 3, 4, 5};
    std::vector<float> y(3 * 5, NAN);
    std::vector<float> x(1);
    linear(x.data(), 3, w.ref(), bias.data(), y.data());
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 5; ++j) EXPECT_EQ(y[i * 5 + j], bias[j]) << isa_name(isa);
    linear(x.data(), 3, w.ref(), nullptr, y.data());
    for (float v : y) EXPECT_EQ(v, 0.0f) << isa_name(isa);
    // m == 0 and n == 0 touch nothing (null outputs allowed).
    TestWeight w2 = make_weight(DType::F32, 4, 8, 2);
    linear(nullptr, 0, w2.ref(), nullptr, nullptr);
    TestWeight w3 = make_weight(DType::F32, 0, 8, 3);
    std::vector<float> x3(16, 1.0f);
    linear(x3.data(), 2, w3.ref(), nullptr, nullptr);
  }
}

TEST(Linear, RejectsBadArguments) {
  WeightRef w;
  w.dtype = DType::I32;
  w.n = 2;
  w.k = 2;
  int32_t data[4] = {};
  w.data = data;
  float x[2] = {}, y[2] = {};
  EXPECT_THROW(linear(x, 1, w, nullptr, y), Error);
  w.dtype = DType::F32;
  w.data = nullptr;
  EXPECT_THROW(linear(x, 1, w, nullptr, y), Error);
}

TEST(Linear, WeightRefViewsNdTensorAs2d) {
  Tensor t = Tensor::zeros({8, 3, 2, 4, 4}, DType::BF16);
  WeightRef r = weight_ref(t);
  EXPECT_EQ(r.n, 8);
  EXPECT_EQ(r.k, 96);
  EXPECT_EQ(r.dtype, DType::BF16);
  EXPECT_EQ(r.data, t.raw());
  EXPECT_THROW(weight_ref(Tensor::zeros({2, 2}, DType::I64)), Error);
}

}  // namespace
}  // namespace qwen3vl::kernels::test

// Norms, activations, softmax, add, rope: scalar vs double-precision math, every SIMD ISA vs
// the scalar twin, on odd sizes.
//
// Tolerances (u = 2^-24):
//  - element-wise activations: a handful of roundings each (libm tanh/erf/exp are <= 1-2 ulp);
//    near the negative tail 1 + tanh(.) / 1 + erf(.) cancels, so the absolute error is ~u |x|:
//    tol = 8 u (|ref| + |x|).
//  - rms_norm: sum of d squares (gamma_{d+1} relative) then rsqrt and two products:
//    tol = (d + 8) u |ref|.
//  - layer_norm: the mean carries (d + 1) u mean|x| absolute error, which shifts x - mean; the
//    variance (d + 3) u relative; tol = (d + 8) u |w| rstd (|x - mean| + mean|x|) + 2 u |b|.
//  - softmax: the sum over n carries gamma_n; tol = (n + 8) u |ref| + u / n.
//  - rope: two products and a sum: tol = 4 u (|x_a cos| + |x_b sin|).
// Between two f32 implementations the bound doubles.
#include <cmath>
#include <functional>
#include <vector>

#include "kernels/kernel_test_util.h"

namespace qwen3vl::kernels::test {
namespace {

void check(const std::string& what, const std::vector<float>& got, const std::vector<double>& ref,
           const std::vector<double>& tol, double factor) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  size_t bad = 0, worst = 0;
  double worst_ratio = -1;
  for (size_t i = 0; i < ref.size(); ++i) {
    double diff = std::fabs(got[i] - ref[i]);
    double b = factor * tol[i] + 1e-37;
    if (!(diff <= b)) ++bad;
    double ratio = std::isnan(diff) ? INFINITY : diff / b;
    if (ratio > worst_ratio) { worst_ratio = ratio; worst = i; }
  }
  EXPECT_EQ(bad, 0u) << what << ": worst #" << worst << " got " << got[worst] << " expected " << ref[worst]
                     << " bound " << factor * tol[worst];
}

const int64_t kLens[] = {1, 3, 7, 15, 16, 17, 31, 33, 64, 129, 1000, 4099};

// Runs `op` under the scalar ISA (checked against double) and under every SIMD ISA (checked
// against double and the scalar result).
void check_all_isas(const std::string& what, const std::function<std::vector<float>()>& op,
                    const std::vector<double>& ref, const std::vector<double>& tol) {
  IsaGuard g;
  set_isa(Isa::Scalar);
  auto ys = op();
  check("scalar " + what, ys, ref, tol, 1.0);
  std::vector<double> ysd(ys.begin(), ys.end());
  for (Isa isa : simd_isas()) {
    set_isa(isa);
    auto yo = op();
    check(std::string(isa_name(isa)) + " " + what + " vs double", yo, ref, tol, 1.0);
    check(std::string(isa_name(isa)) + " " + what + " vs scalar", yo, ysd, tol, 2.0);
  }
}

void test_activation(const char* name, void (*fn)(float*, int64_t), double (*ref_fn)(double)) {
  for (int64_t n : kLens) {
    auto x = random_vec(static_cast<size_t>(n), static_cast<uint32_t>(n), -9.0f, 9.0f);
    x[0] = 0.0f;
    if (n > 2) x[2] = -20.0f;
    std::vector<double> ref(x.size()), tol(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      ref[i] = ref_fn(x[i]);
      tol[i] = 8 * kU * (std::fabs(ref[i]) + std::fabs(x[i]));
    }
    check_all_isas(std::string(name) + " n" + std::to_string(n), [&] {
      auto y = x;
      fn(y.data(), n);
      return y;
    }, ref, tol);
  }
}

TEST(Elementwise, GeluTanh) {
  test_activation("gelu_tanh", gelu_tanh, [](double v) {
    const double beta = std::sqrt(2.0 / M_PI);
    return 0.5 * v * (1.0 + std::tanh(beta * (v + 0.044715 * v * v * v)));
  });
}

TEST(Elementwise, GeluErf) {
  test_activation("gelu_erf", gelu_erf, [](double v) { return 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0))); });
}

TEST(Elementwise, SiluMulAndAdd) {
  for (int64_t n : kLens) {
    auto g = random_vec(static_cast<size_t>(n), 3 + n, -12.0f, 12.0f);
    auto u = random_vec(static_cast<size_t>(n), 4 + n, -3.0f, 3.0f);
    std::vector<double> ref(g.size()), tol(g.size()), aref(g.size()), atol(g.size());
    for (size_t i = 0; i < g.size(); ++i) {
      ref[i] = g[i] / (1.0 + std::exp(-static_cast<double>(g[i]))) * u[i];
      tol[i] = 8 * kU * std::fabs(ref[i]);
      aref[i] = static_cast<double>(g[i]) + u[i];
      atol[i] = kU * std::fabs(aref[i]);
    }
    check_all_isas("silu_mul n" + std::to_string(n), [&] {
      std::vector<float> out(g.size(), NAN);
      silu_mul(g.data(), u.data(), out.data(), n);
      return out;
    }, ref, tol);
    check_all_isas("add_inplace n" + std::to_string(n), [&] {
      auto y = g;
      add_inplace(y.data(), u.data(), n);
      return y;
    }, aref, atol);
  }
}

TEST(Elementwise, RmsNorm) {
  for (int64_t d : {1, 3, 17, 64, 129, 2048}) {
    const int64_t rows = 5;
    auto x = random_vec(static_cast<size_t>(rows * d), 7 + d, -3.0f, 3.0f);
    auto w = random_vec(static_cast<size_t>(d), 8 + d, 0.5f, 1.5f);
    for (bool with_w : {true, false}) {
      std::vector<double> ref(x.size()), tol(x.size());
      for (int64_t r = 0; r < rows; ++r) {
        double sq = 0;
        for (int64_t i = 0; i < d; ++i) sq += static_cast<double>(x[r * d + i]) * x[r * d + i];
        double rstd = 1.0 / std::sqrt(sq / d + 1e-6);
        for (int64_t i = 0; i < d; ++i) {
          size_t k = static_cast<size_t>(r * d + i);
          ref[k] = x[k] * rstd * (with_w ? w[i] : 1.0);
          tol[k] = (d + 8) * kU * std::fabs(ref[k]);
        }
      }
      check_all_isas("rms_norm d" + std::to_string(d), [&] {
        std::vector<float> y(x.size(), NAN);
        rms_norm(x.data(), rows, d, with_w ? w.data() : nullptr, 1e-6f, y.data());
        return y;
      }, ref, tol);
    }
  }
}

TEST(Elementwise, LayerNorm) {
  for (int64_t d : {1, 3, 17, 64, 129, 1152}) {
    const int64_t rows = 4;
    // A non-zero mean makes the two-pass variance matter.
    auto x = random_vec(static_cast<size_t>(rows * d), 9 + d, 1.0f, 4.0f);
    auto w = random_vec(static_cast<size_t>(d), 10 + d, 0.5f, 1.5f);
    auto b = random_vec(static_cast<size_t>(d), 11 + d);
    for (bool affine : {true, false}) {
      std::vector<double> ref(x.size()), tol(x.size());
      for (int64_t r = 0; r < rows; ++r) {
        double mean = 0, mabs = 0, var = 0;
        for (int64_t i = 0; i < d; ++i) { mean += x[r * d + i]; mabs += std::fabs(x[r * d + i]); }
        mean /= d;
        mabs /= d;
        for (int64_t i = 0; i < d; ++i) var += (x[r * d + i] - mean) * (x[r * d + i] - mean);
        var /= d;
        double rstd = 1.0 / std::sqrt(var + 1e-6);
        for (int64_t i = 0; i < d; ++i) {
          size_t k = static_cast<size_t>(r * d + i);
          double wi = affine ? w[i] : 1.0, bi = affine ? b[i] : 0.0;
          ref[k] = (x[k] - mean) * rstd * wi + bi;
          tol[k] = (d + 8) * kU * std::fabs(wi) * rstd * (std::fabs(x[k] - mean) + mabs) + 2 * kU * std::fabs(bi);
        }
      }
      check_all_isas("layer_norm d" + std::to_string(d), [&] {
        std::vector<float> y(x.size(), NAN);
        layer_norm(x.data(), rows, d, affine ? w.data() : nullptr, affine ? b.data() : nullptr, 1e-6f, y.data());
        return y;
      }, ref, tol);
    }
  }
}

TEST(Elementwise, Softmax) {
  for (int64_t n : {1, 3, 17, 33, 129, 1000}) {
    const int64_t rows = 3;
    auto x = random_vec(static_cast<size_t>(rows * n), 12 + n, -10.0f, 10.0f);
    x[0] = 80.0f;  // large logits: max subtraction must prevent overflow
    std::vector<double> ref(x.size()), tol(x.size());
    for (int64_t r = 0; r < rows; ++r) {
      double mx = -INFINITY, sum = 0;
      for (int64_t i = 0; i < n; ++i) mx = std::max(mx, static_cast<double>(x[r * n + i]));
      for (int64_t i = 0; i < n; ++i) sum += std::exp(x[r * n + i] - mx);
      for (int64_t i = 0; i < n; ++i) {
        size_t k = static_cast<size_t>(r * n + i);
        ref[k] = std::exp(x[k] - mx) / sum;
        tol[k] = (n + 8) * kU * ref[k] + kU / n;
      }
    }
    check_all_isas("softmax n" + std::to_string(n), [&] {
      auto y = x;
      softmax_inplace(y.data(), rows, n);
      return y;
    }, ref, tol);
  }
}

TEST(Elementwise, RopeRotateHalf) {
  for (int64_t hd : {2, 16, 64, 72, 128})
    for (int64_t heads : {1, 3}) {
      const int64_t tokens = 5, stride = heads * hd + 7;
      auto x = random_vec(static_cast<size_t>(tokens * stride), 13 + hd, -2.0f, 2.0f);
      auto c = random_vec(static_cast<size_t>(tokens * hd), 14 + hd);
      auto s = random_vec(static_cast<size_t>(tokens * hd), 15 + hd);
      std::vector<double> ref(x.begin(), x.end()), tol(x.size(), 0.0);
      const int64_t h = hd / 2;
      for (int64_t t = 0; t < tokens; ++t)
        for (int64_t hh = 0; hh < heads; ++hh)
          for (int64_t j = 0; j < hd; ++j) {
            size_t k = static_cast<size_t>(t * stride + hh * hd + j);
            double other = j < h ? -static_cast<double>(x[k + h]) : x[k - h];
            ref[k] = x[k] * static_cast<double>(c[t * hd + j]) + other * s[t * hd + j];
            tol[k] = 4 * kU * (std::fabs(x[k] * c[t * hd + j]) + std::fabs(other * s[t * hd + j]));
          }
      check_all_isas("rope hd" + std::to_string(hd) + " heads" + std::to_string(heads), [&] {
        auto y = x;
        rope_rotate_half(y.data(), tokens, stride, heads, hd, c.data(), s.data());
        return y;
      }, ref, tol);
    }
  float x[3] = {};
  EXPECT_THROW(rope_rotate_half(x, 1, 3, 1, 3, x, x), Error);
}

TEST(Dispatch, IsaSelectionAndThreads) {
  IsaGuard g;
  EXPECT_STREQ(isa_name(Isa::AVX512), "avx512");
  set_isa(Isa::Scalar);
  EXPECT_EQ(active_isa(), Isa::Scalar);
  const Isa best = best_isa();
  set_isa(best);
  EXPECT_EQ(active_isa(), best);
  if (best != Isa::AVX512) {
    EXPECT_THROW(set_isa(Isa::AVX512), Error);
  }
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq")) {
    EXPECT_EQ(best, Isa::AVX512);
  }
  set_num_threads(3);
  EXPECT_EQ(num_threads(), 3);
  set_num_threads(0);
  EXPECT_GE(num_threads(), 1);
}

}  // namespace
}  // namespace qwen3vl::kernels::test

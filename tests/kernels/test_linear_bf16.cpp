// linear at MatmulPrecision::BF16 (bf16/f16 weights): the scalar twin vs double math of the
// bf16-rounded inputs, every SIMD ISA (AVX512-BF16 vdpbf16ps kernel, AVX2 emulation) vs the
// twin, thread-count independence, and proof that the routing is real (BF16 precision differs
// from F32 precision on inputs that are not bf16-representable).
//
// Tolerance derivation. The twin computes y = sum_i r(x_i) w_i (+ b) with r = round to bf16
// (nearest even) and w_i the exact weight value. Every product r(x_i) w_i is exact in f32
// (8 x 8 or 8 x 11 significant bits), so only the k additions (+ bias) round; for any order
// (sequential, blocked, vdpbf16ps pairs) Higham's bound (Accuracy and Stability, Thm 3.1)
// gives |y_computed - y_exact| <= gamma_{k+1} S, S = sum_i |r(x_i) w_i| + |b|, u = 2^-24.
// We use (k + 2) u S against exact (double) math of the ROUNDED x, and 2 (k + 2) u S between
// two implementations. (vdpbf16ps flushes bf16 denormals; the random data has none.)
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/kernel_test_util.h"

namespace qwen3vl::kernels::test {
namespace {

// Pins a matmul precision for the scope; restores the previous value on exit.
struct PrecisionGuard {
  MatmulPrecision prev = matmul_precision();
  explicit PrecisionGuard(MatmulPrecision p) { set_matmul_precision(p); }
  ~PrecisionGuard() { set_matmul_precision(prev); }
};

struct Ref {
  std::vector<double> y;      // exact result
  std::vector<double> bound;  // (k + 2) u S
};

// Exact math with x rounded to bf16 (round_x) or as given.
Ref linear_double(const std::vector<float>& x, int64_t m, const TestWeight& w, const float* bias, bool round_x) {
  Ref r;
  r.y.resize(static_cast<size_t>(m * w.n));
  r.bound.resize(r.y.size());
  std::vector<double> xr(x.size());
  for (size_t i = 0; i < x.size(); ++i) xr[i] = round_x ? round_bf16(x[i]) : x[i];
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < w.n; ++j) {
      double acc = 0, mag = 0;
      const double* xi = xr.data() + i * w.k;
      const float* wj = w.values.data() + j * w.k;
      for (int64_t t = 0; t < w.k; ++t) {
        const double p = xi[t] * wj[t];
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

std::string shape_str(DType dt, int64_t m, int64_t k, int64_t n) {
  return std::string(dtype_name(dt)) + " m" + std::to_string(m) + " k" + std::to_string(k) + " n" + std::to_string(n);
}

bool has_bf16_kernel() {
  for (Isa isa : simd_isas())
    if (isa == Isa::AVX512) return cpu_has_avx512_bf16();
  return false;
}

TEST(LinearBf16, ScalarTwinMatchesDoubleMathOfRoundedInputs) {
  IsaGuard g;
  PrecisionGuard pg(MatmulPrecision::BF16);
  set_isa(Isa::Scalar);
  uint32_t seed = 1;
  for (DType dt : {DType::BF16, DType::F16})
    for (int64_t m : {1, 3, 17})
      for (int64_t k : {1, 2, 3, 17, 64, 301})
        for (int64_t n : {1, 17, 33}) {
          TestWeight w = make_weight(dt, n, k, seed++);
          auto x = random_vec(static_cast<size_t>(m * k), seed++);
          auto b = random_vec(static_cast<size_t>(n), seed++);
          for (const float* bias : {static_cast<const float*>(nullptr), static_cast<const float*>(b.data())}) {
            Ref r = linear_double(x, m, w, bias, true);
            expect_within("scalar " + shape_str(dt, m, k, n), run_linear(x, m, w, bias), r.y, r.bound, 1.0);
          }
        }
}

// Every SIMD ISA (AVX-512 with vdpbf16ps where the CPU has it, else the emulation; AVX2
// emulation) against the twin and exact math, 1 and 2 threads, m = 1..70 (GEMV, the switch,
// GEMM row tails), odd/even/small k (pair padding, masked GEMV tails), n around the panel width.
TEST(LinearBf16, SimdMatchesScalarTwinOddShapes) {
  IsaGuard g;
  PrecisionGuard pg(MatmulPrecision::BF16);
  auto isas = simd_isas();
  if (isas.empty()) GTEST_SKIP() << "no SIMD ISA on this CPU";
  struct KN { int64_t k, n; };
  const KN kns[] = {{1, 33}, {2, 17}, {3, 65}, {31, 32}, {33, 31}, {64, 1}, {129, 100}, {300, 47}, {257, 34}};
  uint32_t seed = 100;
  int idx = 0;
  for (DType dt : {DType::BF16, DType::F16})
    for (int64_t m = 1; m <= 70; m += (m < 18 ? 1 : 13)) {
      for (int rep = 0; rep < 3; ++rep) {
        const KN s = kns[idx++ % (sizeof(kns) / sizeof(kns[0]))];
        TestWeight w = make_weight(dt, s.n, s.k, seed++);
        auto x = random_vec(static_cast<size_t>(m * s.k), seed++);
        auto b = random_vec(static_cast<size_t>(s.n), seed++);
        const float* bias = (seed % 2) ? b.data() : nullptr;
        Ref r = linear_double(x, m, w, bias, true);
        set_isa(Isa::Scalar);
        auto ys = run_linear(x, m, w, bias);
        const std::vector<double> ysd(ys.begin(), ys.end());
        for (Isa isa : isas)
          for (int t : {1, 2}) {
            set_isa(isa);
            set_num_threads(t);
            auto yo = run_linear(x, m, w, bias);
            const std::string what = std::string(isa_name(isa)) + " thr" + std::to_string(t) + " " +
                                     shape_str(dt, m, s.k, s.n);
            expect_within(what + " vs twin", yo, ysd, r.bound, 2.0);
            expect_within(what + " vs double", yo, r.y, r.bound, 1.0);
            if (HasFailure()) return;
          }
      }
    }
}

// Shapes crossing every cache block of the GEMM (k > the k block and odd, m > the x-packing
// chunk, n > the n block and not a multiple of the panel width) and the GEMV at decode-like k.
TEST(LinearBf16, SimdMatchesScalarTwinBlockedShapes) {
  IsaGuard g;
  PrecisionGuard pg(MatmulPrecision::BF16);
  auto isas = simd_isas();
  if (isas.empty()) GTEST_SKIP() << "no SIMD ISA on this CPU";
  struct Shape3 { int64_t m, k, n; };
  uint32_t seed = 5000;
  for (Shape3 s : {Shape3{129, 701, 100}, Shape3{800, 40, 70}, Shape3{20, 64, 1100}, Shape3{1, 2100, 70},
                   Shape3{6, 1030, 50}, Shape3{16, 513, 200}})
    for (DType dt : {DType::BF16, DType::F16}) {
      TestWeight w = make_weight(dt, s.n, s.k, seed++);
      auto x = random_vec(static_cast<size_t>(s.m * s.k), seed++);
      auto b = random_vec(static_cast<size_t>(s.n), seed++);
      Ref r = linear_double(x, s.m, w, b.data(), true);
      for (Isa isa : supported_isas())
        for (int t : {1, 2}) {
          set_isa(isa);
          set_num_threads(t);
          expect_within(std::string(isa_name(isa)) + " thr" + std::to_string(t) + " " + shape_str(dt, s.m, s.k, s.n),
                        run_linear(x, s.m, w, b.data()), r.y, r.bound, 1.0);
        }
    }
}

// The AVX512-BF16 route itself (vdpbf16ps GEMV for m <= 2, rounded x + f32 kernels above):
// skipped where the CPU lacks AVX512-BF16.
TEST(LinearBf16, Avx512Bf16KernelMatchesTwin) {
  if (!has_bf16_kernel()) GTEST_SKIP() << "CPU lacks AVX512-BF16";
  IsaGuard g;
  PrecisionGuard pg(MatmulPrecision::BF16);
  uint32_t seed = 900;
  for (int64_t m : {1, 2, 3, 4, 5, 16, 17, 33, 70})
    for (int64_t k : {2, 7, 256, 258, 515}) {
      // m <= 2: n large enough that the GEMV is split over 2 threads (k >= 258).
      const int64_t n = 32 * (m % 3) + 19 + (m <= 2 ? 300 : 0);
      TestWeight w = make_weight(DType::BF16, n, k, seed++);
      auto x = random_vec(static_cast<size_t>(m * k), seed++);
      auto b = random_vec(static_cast<size_t>(n), seed++);
      Ref r = linear_double(x, m, w, b.data(), true);
      set_isa(Isa::Scalar);
      auto ys = run_linear(x, m, w, b.data());
      const std::vector<double> ysd(ys.begin(), ys.end());
      set_isa(Isa::AVX512);
      for (int t : {1, 2}) {
        set_num_threads(t);
        expect_within("avx512-bf16 thr" + std::to_string(t) + " " + shape_str(DType::BF16, m, k, n),
                      run_linear(x, m, w, b.data()), ysd, r.bound, 2.0);
      }
      if (HasFailure()) return;
    }
}

// Each output is computed by one thread in a fixed order, so the thread count changes nothing
// (bit-identical for the twin and the AVX512-BF16 route: m = 37 GEMM, m = 3 f32 GEMV on the
// rounded x, m = 1 vdpbf16ps GEMV).
TEST(LinearBf16, ThreadCountDoesNotChangeResults) {
  IsaGuard g;
  PrecisionGuard pg(MatmulPrecision::BF16);
  const int64_t m = 37, k = 520, n = 131;
  TestWeight w = make_weight(DType::BF16, n, k, 77);
  auto x = random_vec(static_cast<size_t>(m * k), 78);
  auto x1 = random_vec(static_cast<size_t>(3 * k), 79);
  TestWeight wv = make_weight(DType::BF16, 301, k, 80);  // m = 1: n k above the threading threshold
  for (Isa isa : supported_isas()) {
    set_isa(isa);
    const bool exact = isa == Isa::Scalar || (isa == Isa::AVX512 && cpu_has_avx512_bf16());
    if (!exact) continue;  // the emulation inherits the f32 path's guarantees (test_linear.cpp)
    set_num_threads(1);
    auto y1 = run_linear(x, m, w, nullptr);
    auto g1 = run_linear(x1, 3, w, nullptr);
    auto v1 = run_linear(x1, 1, wv, nullptr);
    for (int t : {2, 3, 5}) {
      set_num_threads(t);
      EXPECT_EQ(run_linear(x, m, w, nullptr), y1) << isa_name(isa) << " gemm threads " << t;
      EXPECT_EQ(run_linear(x1, 3, w, nullptr), g1) << isa_name(isa) << " gemv m3 threads " << t;
      EXPECT_EQ(run_linear(x1, 1, wv, nullptr), v1) << isa_name(isa) << " gemv m1 threads " << t;
    }
  }
}

// linear_multi (q/k/v_proj, gate/up_proj in one call): the same bits as one linear() per weight
// at both precisions, every ISA, m = 1, 2 (fused vdpbf16ps GEMV) and 3 (separate calls), 1-3
// threads, ragged n, and a mixed-dtype list (not fused).
TEST(LinearBf16, MultiEqualsSeparateCalls) {
  IsaGuard g;
  const int64_t k = 520;
  const TestWeight a = make_weight(DType::BF16, 301, k, 81), b = make_weight(DType::BF16, 16, k, 82),
                   c = make_weight(DType::BF16, 45, k, 83), h = make_weight(DType::F16, 45, k, 84);
  for (MatmulPrecision p : {MatmulPrecision::BF16, MatmulPrecision::F32}) {
    PrecisionGuard pg(p);
    for (Isa isa : supported_isas()) {
      set_isa(isa);
      for (bool mixed : {false, true}) {
        const TestWeight& last = mixed ? h : c;
        const WeightRef ws[3] = {a.ref(), b.ref(), last.ref()};
        for (int64_t m : {1, 2, 3})
          for (int nt : {1, 2, 3}) {
            set_num_threads(nt);
            auto x = random_vec(static_cast<size_t>(m * k), 85 + static_cast<uint32_t>(m));
            std::vector<float> ya(static_cast<size_t>(m * 301), NAN), yb(static_cast<size_t>(m * 16), NAN),
                yc(static_cast<size_t>(m * 45), NAN);
            float* const ys[3] = {ya.data(), yb.data(), yc.data()};
            linear_multi(x.data(), m, ws, ys, 3);
            const std::string what = std::string(isa_name(isa)) + (p == MatmulPrecision::BF16 ? " bf16" : " f32") +
                                     (mixed ? " mixed" : "") + " m" + std::to_string(m) + " t" + std::to_string(nt);
            EXPECT_EQ(ya, run_linear(x, m, a, nullptr)) << what;
            EXPECT_EQ(yb, run_linear(x, m, b, nullptr)) << what;
            EXPECT_EQ(yc, run_linear(x, m, last, nullptr)) << what;
            if (::testing::Test::HasFailure()) return;
          }
      }
    }
  }
}

// The routing is real: with x not representable in bf16, BF16 precision matches exact math of
// the ROUNDED x and is measurably far (beyond the f32 error bound) from exact math of x itself,
// which is what F32 precision matches. Run on every ISA.
TEST(LinearBf16, Bf16PrecisionDiffersFromF32Precision) {
  IsaGuard g;
  PrecisionGuard pg(MatmulPrecision::BF16);
  const int64_t m = 40, k = 96, n = 50;
  for (int64_t mm : {int64_t{1}, m}) {
    TestWeight w = make_weight(DType::BF16, n, k, 31);
    auto x = random_vec(static_cast<size_t>(mm * k), 32);
    Ref rr = linear_double(x, mm, w, nullptr, true);   // rounded x
    Ref rf = linear_double(x, mm, w, nullptr, false);  // x as given
    for (Isa isa : supported_isas()) {
      set_isa(isa);
      set_matmul_precision(MatmulPrecision::BF16);
      auto yb = run_linear(x, mm, w, nullptr);
      set_matmul_precision(MatmulPrecision::F32);
      auto yf = run_linear(x, mm, w, nullptr);
      const std::string what = std::string(isa_name(isa)) + " m" + std::to_string(mm);
      expect_within(what + " bf16 vs rounded-x math", yb, rr.y, rr.bound, 1.0);
      expect_within(what + " f32 vs exact math", yf, rf.y, rf.bound, 1.0);
      size_t far = 0;
      for (size_t i = 0; i < yb.size(); ++i)
        if (std::fabs(yb[i] - rf.y[i]) > 4 * rf.bound[i]) ++far;
      EXPECT_GT(far, yb.size() / 2) << what << ": BF16 precision is not distinguishable from F32 precision";
    }
  }
}

// For m > 2 the AVX-512 route runs the f32 kernels on x rounded to bf16 (the GEMM rounds while
// packing x, in 16 x 16 transposed blocks; the GEMV below 32 rows rounds into a buffer): BF16
// precision on x must equal F32 precision on round_bf16(x) bit for bit. (The AVX2 route rounds
// in chunks of 512 rows, so a short last chunk takes the GEMV: equal within the bounds the
// tests above check, not bitwise.) Shapes around the GEMV/GEMM switch (m 31/32), the micro-kernel
// rows (12), the x-packing chunk (768 rows), the packing transpose width (k % 16, k % 8), the
// k block (256) and the n block (1024); special values (NaN, inf, FLT_MAX, -0, denormals,
// rounding ties) in the first and last rows.
TEST(LinearBf16, MatchesF32PrecisionOnRoundedXBitExact) {
  IsaGuard g;
  PrecisionGuard pg(MatmulPrecision::BF16);
  struct Shape3 { int64_t m, k, n; };
  const Shape3 shapes[] = {{3, 40, 33},    {31, 17, 70},  {32, 17, 70},   {33, 300, 65},  {37, 1, 31},
                           {40, 15, 33},   {61, 16, 40},  {100, 513, 33}, {767, 23, 34},  {768, 31, 20},
                           {769, 9, 47},   {781, 33, 31}, {50, 24, 1030}, {1540, 18, 19}};
  const uint32_t specials[] = {0x7fc00000u, 0x7f800000u, 0xff800000u, 0x7f7fffffu, 0x80000000u, 0x00000001u,
                               0x807fffffu, 0x3f808000u, 0x3f818000u, 0xbf80ffffu, 0x7f812345u, 0x3f7fffffu};
  bool has_avx512 = false;
  for (Isa isa : simd_isas()) has_avx512 |= isa == Isa::AVX512;
  if (!has_avx512) GTEST_SKIP() << "CPU lacks AVX-512";
  const Isa isa = Isa::AVX512;
  uint32_t seed = 7000;
  for (const Shape3& s : shapes) {
      TestWeight w = make_weight(seed % 2 ? DType::BF16 : DType::F16, s.n, s.k, seed);
      ++seed;
      auto x = random_vec(static_cast<size_t>(s.m * s.k), seed++);
      for (size_t i = 0; i < sizeof(specials) / sizeof(specials[0]); ++i) {
        const size_t at = i % 2 ? i / 2 : x.size() - 1 - i / 2;  // first and last rows
        if (at < x.size()) std::memcpy(&x[at], &specials[i], 4);
      }
      std::vector<float> xr(x.size());
      for (size_t i = 0; i < x.size(); ++i) xr[i] = round_bf16(x[i]);
      auto b = random_vec(static_cast<size_t>(s.n), seed++);
      const float* bias = seed % 3 ? b.data() : nullptr;
      set_isa(isa);
      for (int t : {1, 2}) {
        set_num_threads(t);
        set_matmul_precision(MatmulPrecision::F32);
        const auto yf = run_linear(xr, s.m, w, bias);
        set_matmul_precision(MatmulPrecision::BF16);
        const auto yb = run_linear(x, s.m, w, bias);
        ASSERT_EQ(yb.size(), yf.size());
        size_t diff = 0, nan = 0;
        for (size_t i = 0; i < yb.size(); ++i) {
          diff += std::memcmp(&yb[i], &yf[i], 4) != 0;
          nan += std::isnan(yb[i]);
        }
        EXPECT_EQ(diff, 0u) << isa_name(isa) << " thr" << t << " " << shape_str(w.dtype, s.m, s.k, s.n);
        // The specials sit in at most 12 rows: the others must compare real numbers.
        EXPECT_LE(nan, static_cast<size_t>(12 * s.n)) << "special values swamp the comparison";
        if (HasFailure()) return;
      }
    }
}

TEST(LinearBf16, ZeroK) {
  IsaGuard g;
  PrecisionGuard pg(MatmulPrecision::BF16);
  for (Isa isa : supported_isas()) {
    set_isa(isa);
    for (DType dt : {DType::BF16, DType::F16}) {
      TestWeight w = make_weight(dt, 5, 0, 1);
      std::vector<float> bias = {1, 2, 3, 4, 5};
      std::vector<float> y(20 * 5, NAN);
      std::vector<float> x(1);
      linear(x.data(), 20, w.ref(), bias.data(), y.data());
      for (int i = 0; i < 20; ++i)
        for (int j = 0; j < 5; ++j) EXPECT_EQ(y[i * 5 + j], bias[j]) << isa_name(isa);
      linear(x.data(), 20, w.ref(), nullptr, y.data());
      for (float v : y) EXPECT_EQ(v, 0.0f) << isa_name(isa);
    }
  }
}

}  // namespace
}  // namespace qwen3vl::kernels::test

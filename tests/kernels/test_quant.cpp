// Q8_0 / Q4_0: quantizer bytes vs llama.cpp's reference (gguf-py fixtures), dequantization
// error bounds, the scalar linear twin vs double math, every SIMD ISA (and the AVX-512 non-VNNI
// fallback) vs the scalar twin across decode and prefill sizes, thread-count independence,
// a mutation check and argument errors.
//
// Tolerances (kernels/quant.h): with S = sum_b |dx dw| sum_t |qx qw| over the nb = k / 32 blocks,
// the scalar twin is within (nb + 3) u S (+ |bias| u) of exact math on the same quantized
// operands, and SIMD versions within 2 (nb + 3) u S (+ 2 u |bias|) of the twin.
#include <cmath>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/kernel_test_util.h"
#include "kernels/kernels_impl.h"
#include "kernels/quant.h"

namespace qwen3vl::kernels::test {
namespace {

const DType kQTypes[] = {DType::Q8_0, DType::Q4_0};

struct Fixture {
  std::string name;
  int32_t rows = 0, k = 0;
  bool bf16_exact = false;
  std::vector<float> x;
  std::vector<uint8_t> q8, q4;
};

Fixture load_fixture(const std::string& name) {
  Fixture f;
  f.name = name;
  const std::string path = std::string(QWEN3VL_SOURCE_DIR) + "/tests/fixtures/quant/" + name + ".bin";
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "missing fixture " << path << " (tools/reference/quant_fixtures.py)";
  if (!in.good()) return f;
  char magic[4];
  int32_t hdr[3];
  in.read(magic, 4);
  in.read(reinterpret_cast<char*>(hdr), sizeof(hdr));
  EXPECT_EQ(std::string(magic, 4), "QFX1");
  f.rows = hdr[0];
  f.k = hdr[1];
  f.bf16_exact = hdr[2] != 0;
  const size_t numel = static_cast<size_t>(f.rows) * f.k;
  f.x.resize(numel);
  f.q8.resize(dtype_nbytes(DType::Q8_0, static_cast<int64_t>(numel)));
  f.q4.resize(dtype_nbytes(DType::Q4_0, static_cast<int64_t>(numel)));
  in.read(reinterpret_cast<char*>(f.x.data()), static_cast<std::streamsize>(numel * 4));
  in.read(reinterpret_cast<char*>(f.q8.data()), static_cast<std::streamsize>(f.q8.size()));
  in.read(reinterpret_cast<char*>(f.q4.data()), static_cast<std::streamsize>(f.q4.size()));
  EXPECT_TRUE(in.good()) << path << " is truncated";
  char extra;
  EXPECT_FALSE(in.read(&extra, 1)) << path << " has trailing bytes";
  return f;
}

// Index of the first differing byte, or -1.
int64_t first_diff(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  if (a.size() != b.size()) return 0;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i] != b[i]) return static_cast<int64_t>(i);
  return -1;
}

// Rows in the interleaved layout (core/quant.h) -> llama.cpp block order, and back.
std::vector<uint8_t> plain_rows(DType dt, const std::vector<uint8_t>& q, int64_t rows, int64_t k) {
  std::vector<uint8_t> out(q.size());
  const size_t rb = dtype_row_bytes(dt, k);
  for (int64_t r = 0; r < rows; ++r) quant_row_to_blocks(dt, q.data() + r * rb, k / 32, out.data() + r * rb);
  return out;
}
std::vector<uint8_t> interleaved_rows(DType dt, const std::vector<uint8_t>& q, int64_t rows, int64_t k) {
  std::vector<uint8_t> out(q.size());
  const size_t rb = dtype_row_bytes(dt, k);
  for (int64_t r = 0; r < rows; ++r) quant_row_from_blocks(dt, q.data() + r * rb, k / 32, out.data() + r * rb);
  return out;
}

const char* const kFixtures[] = {"random_normal", "random_scaled_bf16", "heavy_tail_bf16", "special"};

TEST(Quant, BytesMatchLlamaCppReference) {
  IsaGuard g;
  for (Isa isa : supported_isas())  // quantize_rows uses an AVX-512 quantizer when active
  for (const char* name : kFixtures) {
    set_isa(isa);
    Fixture f = load_fixture(name);
    ASSERT_GT(f.rows, 0) << name;
    for (DType dt : kQTypes) {
      const std::vector<uint8_t>& want = dt == DType::Q8_0 ? f.q8 : f.q4;
      std::vector<uint8_t> got(want.size(), 0xAA);
      quantize_rows(dt, f.x.data(), f.rows, f.k, got.data());
      got = plain_rows(dt, got, f.rows, f.k);  // (fixtures with k >= 512 hold interleaved groups)
      const int64_t d = first_diff(got, want);
      EXPECT_EQ(d, -1) << isa_name(isa) << " " << name << " " << dtype_name(dt) << ": first differing byte " << d << " (block "
                       << d / static_cast<int64_t>(quant_block_bytes(dt)) << ")";
      if (f.bf16_exact) {
        std::vector<uint16_t> xb(f.x.size());
        for (size_t i = 0; i < xb.size(); ++i) {
          xb[i] = f32_to_bf16(f.x[i]);
          ASSERT_EQ(bf16_to_f32(xb[i]), f.x[i]) << name << " is marked bf16-exact";
        }
        std::vector<uint8_t> got_b(want.size(), 0x55);
        quantize_rows_bf16(dt, xb.data(), f.rows, f.k, got_b.data());
        EXPECT_EQ(first_diff(plain_rows(dt, got_b, f.rows, f.k), want), -1) << name << " " << dtype_name(dt) << " (bf16 source)";
      }
    }
  }
}

// The fixture comparison can fail: one ulp at a Q8_0 tie changes the byte it checks.
TEST(Quant, FixtureCheckIsSensitive) {
  Fixture f = load_fixture("special");
  ASSERT_EQ(f.k, 64);
  // Row 2, first block: [127, -14.5, -13.5, ...] with d = 1: element 1 (-14.5) -> -15.
  const size_t e = 2 * 64 + 1;
  ASSERT_EQ(f.x[e], -14.5f);
  std::vector<uint8_t> got(f.q8.size());
  quantize_rows(DType::Q8_0, f.x.data(), f.rows, f.k, got.data());
  const size_t byte = 4 * 34 + 2 + 1;  // row 2 = blocks 4, 5; qs[1] of block 4
  EXPECT_EQ(static_cast<int8_t>(got[byte]), -15);
  f.x[e] = std::nextafter(-14.5f, 0.0f);
  quantize_rows(DType::Q8_0, f.x.data(), f.rows, f.k, got.data());
  EXPECT_EQ(static_cast<int8_t>(got[byte]), -14);
  EXPECT_NE(first_diff(got, f.q8), -1);
}

TEST(Quant, DequantizeErrorWithinFormatBound) {
  for (DType dt : kQTypes) {
    const int64_t rows = 7, k = 640;  // 20 blocks: an interleaved group + 4 plain blocks
    std::vector<float> x = random_vec(static_cast<size_t>(rows * k), 11, -3.0f, 3.0f);
    for (int64_t i = 0; i < k; ++i) x[2 * k + i] *= 1e-3f;  // a small-magnitude row
    for (int64_t i = 0; i < 32; ++i) x[4 * k + 64 + i] = 0.0f;  // an all-zero block
    std::vector<uint8_t> q(dtype_nbytes(dt, rows * k));
    quantize_rows(dt, x.data(), rows, k, q.data());
    // Dequantize rows [1, 6) only: row0 / rows must be honoured.
    std::vector<float> out(static_cast<size_t>(5 * k), NAN);
    dequantize_rows(dt, q.data(), k, 1, 5, out.data());
    for (int64_t r = 1; r < 6; ++r)
      for (int64_t b = 0; b < k / 32; ++b) {
        const float* xb = x.data() + r * k + b * 32;
        float amax = 0, maxv = 0;
        for (int t = 0; t < 32; ++t)
          if (std::fabs(xb[t]) > amax) amax = std::fabs(xb[t]), maxv = xb[t];
        const double d = dt == DType::Q8_0 ? amax / 127.0 : maxv / -8.0;  // exact-ish scale
        const double d16 = f16_to_f32(f32_to_f16(static_cast<float>(d)));
        for (int t = 0; t < 32; ++t) {
          const double v = xb[t];
          // Rounding to the nearest level: |d| / 2; Q4_0's top level is 7 d, so x / d in (7.5, 8]
          // errs by up to (x / d - 7) |d|. Plus the f16 rounding of d times the level.
          double allowed = 0.5 * std::fabs(d);
          if (dt == DType::Q4_0 && d != 0 && v / d > 7.5) allowed = (v / d - 7.0) * std::fabs(d);
          allowed += (dt == DType::Q8_0 ? 127 : 8) * std::fabs(d - d16) + 1e-6 * amax + 1e-30;
          const double got = out[(r - 1) * k + b * 32 + t];
          ASSERT_LE(std::fabs(got - v), allowed) << dtype_name(dt) << " row " << r << " block " << b << " t " << t;
        }
      }
    // The zero block dequantizes to exact zeros.
    for (int i = 0; i < 32; ++i) EXPECT_EQ(out[3 * k + 64 + i], 0.0f);
  }
}

// Large inputs are quantized by several threads: same bytes as block by block, and a
// non-finite value anywhere still throws (after the parallel loop).
TEST(Quant, LargeInputThreadedSameBytes) {
  IsaGuard g;
  const int64_t rows = 160, k = 1024;  // 5120 blocks (threaded above 4096)
  std::vector<float> x = random_vec(static_cast<size_t>(rows * k), 21, -5.0f, 5.0f);
  std::vector<uint16_t> xb(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    xb[i] = f32_to_bf16(x[i]);
    x[i] = bf16_to_f32(xb[i]);
  }
  for (DType dt : kQTypes) {
    const size_t bb = quant_block_bytes(dt);
    std::vector<uint8_t> want(dtype_nbytes(dt, rows * k));
    set_isa(Isa::Scalar);
    for (int64_t b = 0; b < rows * k / 32; ++b)
      quantize_rows(dt, x.data() + b * 32, 1, 32, want.data() + b * bb);  // one block per call
    want = interleaved_rows(dt, want, rows, k);
    for (Isa isa : supported_isas())
    for (int nt : {1, 2}) {
      set_isa(isa);
      set_num_threads(nt);
      std::vector<uint8_t> got(want.size()), got_b(want.size());
      quantize_rows(dt, x.data(), rows, k, got.data());
      quantize_rows_bf16(dt, xb.data(), rows, k, got_b.data());
      EXPECT_EQ(first_diff(got, want), -1) << isa_name(isa) << " " << dtype_name(dt) << " threads " << nt;
      EXPECT_EQ(first_diff(got_b, want), -1) << dtype_name(dt) << " bf16, threads " << nt;
      std::vector<float> bad = x;
      bad[bad.size() - 5] = NAN;
      EXPECT_THROW(quantize_rows(dt, bad.data(), rows, k, got.data()), Error);
    }
  }
}

// The interleaved row layout (core/quant.h) byte by byte: group g of a row = 16 f16 scales, then
// piece p of block l at 32 + (p * 16 + l) * 4; the blocks after the last whole group stay plain;
// the two conversions are inverse; quantize_rows writes the layout (and block-per-call agrees).
TEST(Quant, InterleavedLayoutPinned) {
  for (DType dt : kQTypes) {
    const int64_t nb = 35, bb = static_cast<int64_t>(quant_block_bytes(dt)), gb = 16 * bb;  // 2 groups + 3
    std::vector<uint8_t> plain(static_cast<size_t>(nb * bb));
    for (size_t i = 0; i < plain.size(); ++i) plain[i] = static_cast<uint8_t>(i * 7 + i / 251);
    std::vector<uint8_t> row(plain.size(), 0xEE), back(plain.size(), 0xDD);
    quant_row_from_blocks(dt, plain.data(), nb, row.data());
    const int pieces = dt == DType::Q8_0 ? 8 : 4;
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk = plain.data() + b * bb;
      if (b < 32) {
        const uint8_t* grp = row.data() + (b / 16) * gb;
        const int64_t l = b % 16;
        EXPECT_EQ(std::memcmp(grp + 2 * l, blk, 2), 0) << dtype_name(dt) << " scale of block " << b;
        for (int p = 0; p < pieces; ++p)
          EXPECT_EQ(std::memcmp(grp + 32 + (p * 16 + l) * 4, blk + 2 + 4 * p, 4), 0) << dtype_name(dt) << " block " << b;
      } else {
        EXPECT_EQ(std::memcmp(row.data() + b * bb, blk, static_cast<size_t>(bb)), 0) << dtype_name(dt) << " tail " << b;
      }
    }
    quant_row_to_blocks(dt, row.data(), nb, back.data());
    EXPECT_EQ(first_diff(back, plain), -1) << dtype_name(dt);
    // quantize_rows: the same layout as quantizing block by block and interleaving.
    std::vector<float> x = random_vec(static_cast<size_t>(2 * nb * 32), 3, -2.0f, 2.0f);
    std::vector<uint8_t> q(static_cast<size_t>(2 * nb * bb)), qb(q.size());
    quantize_rows(dt, x.data(), 2, nb * 32, q.data());
    for (int64_t b = 0; b < 2 * nb; ++b) quantize_rows(dt, x.data() + b * 32, 1, 32, qb.data() + b * bb);
    EXPECT_EQ(first_diff(q, interleaved_rows(dt, qb, 2, nb * 32)), -1) << dtype_name(dt);
    EXPECT_NE(first_diff(q, qb), -1) << dtype_name(dt) << ": rows of 35 blocks must not be plain";
  }
}

TEST(Quant, ArgumentErrors) {
  std::vector<float> x(64, 1.0f);
  std::vector<uint8_t> q(34 * 2);
  EXPECT_THROW(quantize_rows(DType::Q8_0, x.data(), 1, 48, q.data()), Error);
  EXPECT_THROW(quantize_rows(DType::BF16, x.data(), 1, 64, q.data()), Error);
  x[40] = INFINITY;
  EXPECT_THROW(quantize_rows(DType::Q8_0, x.data(), 1, 64, q.data()), Error);
  EXPECT_THROW(quantize_rows(DType::Q4_0, x.data(), 1, 64, q.data()), Error);
  x[40] = NAN;
  EXPECT_THROW(quantize_rows(DType::Q8_0, x.data(), 1, 64, q.data()), Error);
  EXPECT_THROW(quantize_rows(DType::Q4_0, x.data(), 1, 64, q.data()), Error);
  EXPECT_THROW(dequantize_rows(DType::Q4_0, q.data(), 33, 0, 1, x.data()), Error);
  // linear() rejects a quantized weight whose k is not a multiple of 32.
  WeightRef w{DType::Q8_0, q.data(), 1, 48};
  std::vector<float> y(1);
  EXPECT_THROW(linear(x.data(), 1, w, nullptr, y.data()), Error);
}

// ---- linear ---------------------------------------------------------------------------------

struct QWeight {
  DType dtype;
  int64_t n, k;
  std::vector<uint8_t> bytes;
  WeightRef ref() const { return WeightRef{dtype, bytes.data(), n, k}; }
};

QWeight make_qweight(DType dt, int64_t n, int64_t k, uint32_t seed) {
  QWeight w{dt, n, k, {}};
  std::vector<float> v = random_vec(static_cast<size_t>(n * k), seed);
  // Vary block magnitudes so the scales differ a lot between blocks.
  for (size_t i = 0; i < v.size(); ++i) v[i] *= static_cast<float>(1 + (i / 32) % 5);
  w.bytes.resize(dtype_nbytes(dt, n * k));
  quantize_rows(dt, v.data(), n, k, w.bytes.data());
  return w;
}

// Exact (double) result on the quantized operands and the tolerance scale S per output.
struct QRef {
  std::vector<double> y, s;
};

QRef quant_linear_double(const std::vector<float>& x, int64_t m, const QWeight& w, const float* bias) {
  const int64_t nb = w.k / 32;
  // x quantized through the public (fixture-checked) quantizer, then unpacked.
  std::vector<uint8_t> xq(dtype_nbytes(DType::Q8_0, m * w.k));
  quantize_rows(DType::Q8_0, x.data(), m, w.k, xq.data());
  xq = plain_rows(DType::Q8_0, xq, m, w.k);
  const std::vector<uint8_t> wp = plain_rows(w.dtype, w.bytes, w.n, w.k);
  std::vector<float> wd(static_cast<size_t>(w.n * w.k));
  dequantize_rows(w.dtype, w.bytes.data(), w.k, 0, w.n, wd.data());
  QRef r;
  r.y.resize(static_cast<size_t>(m * w.n));
  r.s.resize(r.y.size());
  const size_t wrow = dtype_row_bytes(w.dtype, w.k);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < w.n; ++j) {
      double acc = 0, mag = 0;
      for (int64_t b = 0; b < nb; ++b) {
        const auto* xb = reinterpret_cast<const BlockQ8_0*>(xq.data()) + i * nb + b;
        uint16_t dwh;
        std::memcpy(&dwh, wp.data() + j * wrow + b * quant_block_bytes(w.dtype), 2);
        const double dw = f16_to_f32(dwh), dx = f16_to_f32(xb->d);
        const float scale = static_cast<float>(dx) * static_cast<float>(dw);  // rounded, as specified
        double isum = 0, iabs = 0;
        for (int t = 0; t < 32; ++t) {
          // integer weight level: dequantized value / dw (exact when dw != 0)
          const double qw = dw != 0 ? std::nearbyint(wd[j * w.k + b * 32 + t] / dw) : 0.0;
          isum += xb->qs[t] * qw;
          iabs += std::fabs(xb->qs[t] * qw);
        }
        acc += static_cast<double>(scale) * isum;
        mag += std::fabs(static_cast<double>(scale)) * iabs;
      }
      double bmag = 0;
      if (bias) {
        acc += bias[j];
        bmag = std::fabs(bias[j]);
      }
      r.y[i * w.n + j] = acc;
      r.s[i * w.n + j] = (nb + 3) * kU * mag + kU * bmag + 1e-30;
    }
  return r;
}

std::vector<float> run(const std::vector<float>& x, int64_t m, const QWeight& w, const float* bias) {
  std::vector<float> y(static_cast<size_t>(m * w.n), NAN);
  linear(x.data(), m, w.ref(), bias, y.data());
  return y;
}

void expect_close(const std::string& what, const std::vector<float>& got, const std::vector<double>& want,
                  const std::vector<double>& tol, double factor) {
  ASSERT_EQ(got.size(), want.size());
  size_t bad = 0, worst = 0;
  double worst_ratio = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double diff = std::fabs(got[i] - want[i]);
    if (!(diff <= factor * tol[i])) ++bad;
    const double ratio = std::isnan(diff) ? INFINITY : diff / (factor * tol[i]);
    if (ratio > worst_ratio) worst_ratio = ratio, worst = i;
  }
  EXPECT_EQ(bad, 0u) << what << ": worst #" << worst << " got " << got[worst] << " want " << want[worst]
                     << " tol " << factor * tol[worst];
}

TEST(QuantLinear, ScalarMatchesDoubleMath) {
  IsaGuard g;
  set_isa(Isa::Scalar);
  uint32_t seed = 100;
  for (DType dt : kQTypes)
    for (int64_t m : {1, 3, 8})
      for (int64_t n : {1, 7, 33})
        for (int64_t k : {32, 96, 512}) {
          QWeight w = make_qweight(dt, n, k, ++seed);
          auto x = random_vec(static_cast<size_t>(m * k), ++seed, -2.0f, 2.0f);
          auto bias = random_vec(static_cast<size_t>(n), ++seed);
          QRef ref = quant_linear_double(x, m, w, bias.data());
          expect_close(std::string(dtype_name(dt)) + " m" + std::to_string(m) + " n" + std::to_string(n) + " k" +
                           std::to_string(k),
                       run(x, m, w, bias.data()), ref.y, ref.s, 1.0);
        }
}

// The quantized result is close to the f32 product with the dequantized weights (llama.cpp's
// error model: activation quantization costs about amax(x) / 254 per element).
TEST(QuantLinear, CloseToDequantizedF32) {
  IsaGuard g;
  set_isa(Isa::Scalar);
  for (DType dt : kQTypes) {
    const int64_t m = 3, n = 17, k = 256;
    QWeight w = make_qweight(dt, n, k, 7);
    auto x = random_vec(static_cast<size_t>(m * k), 8);
    std::vector<float> wd(static_cast<size_t>(n * k));
    dequantize_rows(dt, w.bytes.data(), k, 0, n, wd.data());
    auto y = run(x, m, w, nullptr);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double exact = 0, bound = 0;
        for (int64_t b = 0; b < k / 32; ++b) {
          float amax = 0;
          for (int t = 0; t < 32; ++t) amax = std::max(amax, std::fabs(x[i * k + b * 32 + t]));
          for (int t = 0; t < 32; ++t) {
            const double wv = wd[j * k + b * 32 + t];
            exact += x[i * k + b * 32 + t] * wv;
            bound += (amax / 254.0 * 1.01 + amax * 1e-3) * std::fabs(wv);  // half a level + f16 scale
          }
        }
        EXPECT_NEAR(y[i * n + j], exact, bound + 1e-5) << dtype_name(dt) << " " << i << "," << j;
      }
  }
}

// Every SIMD ISA vs the scalar twin: m = 1..70, odd n, bias / no bias. AVX-512 runs in every
// variant: its default (decode below the GEMM threshold, VNNI GEMM above), forced GEMM for every
// m, forced decode for every m, and without VNNI (AVX-512BW). 2 threads for a subset of m (the
// result must be bitwise the same as with 1 thread).
struct Variant {
  Isa isa;
  std::string label;
  int64_t gemm_min_m;  // 0: default
  bool vnni;
};

std::vector<Variant> simd_variants() {
  std::vector<Variant> v;
  for (Isa isa : simd_isas()) {
    v.push_back({isa, isa_name(isa), 0, true});
    if (isa == Isa::AVX512) {
      if (cpu_has_avx512_vnni()) {
        v.push_back({isa, "avx512-gemm", 1, true});
        v.push_back({isa, "avx512-decode", 1 << 30, true});
      }
      v.push_back({isa, "avx512-novnni", 0, false});
    }
  }
  return v;
}

void apply(const Variant& v) {
  set_isa(v.isa);
  detail::quant_set_gemm_min_m(v.gemm_min_m);
  detail::quant_set_vnni_enabled(v.vnni);
}

struct VariantGuard {
  ~VariantGuard() {
    detail::quant_set_gemm_min_m(0);
    detail::quant_set_vnni_enabled(true);
  }
};

TEST(QuantLinear, SimdMatchesScalarTwin) {
  IsaGuard g;
  VariantGuard vg;
  const std::vector<Variant> variants = simd_variants();
  uint32_t seed = 500;
  for (DType dt : kQTypes)
    for (int64_t k : {64, 544}) {  // 2 blocks; 17 blocks (a full group of 16 + a tail)
      const int64_t n = k == 64 ? 67 : 37;
      QWeight w = make_qweight(dt, n, k, ++seed);
      auto bias = random_vec(static_cast<size_t>(n), ++seed);
      for (int64_t m = 1; m <= 70; ++m) {
        auto x = random_vec(static_cast<size_t>(m * k), ++seed, -4.0f, 4.0f);
        const float* b = m % 2 ? bias.data() : nullptr;
        set_isa(Isa::Scalar);
        set_num_threads(1);
        auto ys = run(x, m, w, b);
        QRef ref = quant_linear_double(x, m, w, b);
        std::vector<double> yd(ys.begin(), ys.end());
        const bool two = m <= 3 || m % 16 == 1 || m == 70;
        for (const Variant& v : variants) {
          apply(v);
          set_num_threads(1);
          auto y1 = run(x, m, w, b);
          const std::string what = v.label + " " + dtype_name(dt) + " m" + std::to_string(m) + " k" + std::to_string(k);
          expect_close(what, y1, yd, ref.s, 2.0);
          if (two) {
            set_num_threads(2);
            auto y2 = run(x, m, w, b);
            EXPECT_EQ(std::memcmp(y1.data(), y2.data(), y1.size() * 4), 0) << what << ": 1 vs 2 threads differ";
          }
          if (::testing::Test::HasFailure()) return;
        }
      }
    }
}

// Non-finite activations: the affected rows are NaN (every ISA), the others finite.
TEST(QuantLinear, NonFiniteActivationRowsAreNan) {
  IsaGuard g;
  VariantGuard vg;
  for (DType dt : kQTypes) {
    const int64_t m = 6, n = 40, k = 96;
    QWeight w = make_qweight(dt, n, k, 5);
    auto x = random_vec(static_cast<size_t>(m * k), 6);
    x[1 * k + 70] = INFINITY;
    x[4 * k + 3] = NAN;
    std::vector<Variant> variants = simd_variants();
    variants.insert(variants.begin(), Variant{Isa::Scalar, "scalar", 0, true});
    for (const Variant& v : variants) {
      apply(v);
      auto y = run(x, m, w, nullptr);
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          if (i == 1 || i == 4) EXPECT_TRUE(std::isnan(y[i * n + j])) << v.label << " " << i << "," << j;
          else EXPECT_TRUE(std::isfinite(y[i * n + j])) << v.label << " " << i << "," << j;
        }
    }
  }
}

// Larger shapes (several KC / panel blocks, many threads' chunks) at a few m, SIMD vs scalar.
TEST(QuantLinear, SimdLargerShapes) {
  IsaGuard g;
  VariantGuard vg;
  for (DType dt : kQTypes) {
    const int64_t n = 300, k = 1056;  // 33 blocks: 2 full groups + a tail; several KC chunks
    QWeight w = make_qweight(dt, n, k, 77);
    for (int64_t m : {1, 2, 5, 40}) {
      auto x = random_vec(static_cast<size_t>(m * k), 78 + static_cast<uint32_t>(m));
      set_isa(Isa::Scalar);
      auto ys = run(x, m, w, nullptr);
      QRef ref = quant_linear_double(x, m, w, nullptr);
      for (const Variant& v : simd_variants()) {
        apply(v);
        set_num_threads(2);
        auto y = run(x, m, w, nullptr);
        expect_close(v.label + " " + dtype_name(dt) + " m" + std::to_string(m), y,
                     std::vector<double>(ys.begin(), ys.end()), ref.s, 2.0);
      }
    }
  }
}

// Mutation check: changing one stored weight level changes exactly the outputs of that row, by
// dx * dw * qx * delta (every ISA), for a block inside an interleaved group and a plain tail
// block. Guards against kernels that ignore part of the data or misread the layout.
TEST(QuantLinear, MutationChangesTheRightOutput) {
  IsaGuard g;
  for (Isa isa : supported_isas())
    for (DType dt : kQTypes)
      for (int64_t b : {2, 13, 17}) {  // block of row 5: in the group (twice), in the tail
        set_isa(isa);
        const int64_t m = 2, n = 9, k = 640, nb = k / 32;
        QWeight w = make_qweight(dt, n, k, 31);
        auto x = random_vec(static_cast<size_t>(m * k), 32);
        auto y0 = run(x, m, w, nullptr);
        const int64_t j = 5, t = b == 13 ? 20 : 7;  // element 7: low nibble for Q4_0; 20: high nibble
        std::vector<uint8_t> plain = plain_rows(dt, w.bytes, n, k);
        uint8_t* blk = plain.data() + j * dtype_row_bytes(dt, k) + b * quant_block_bytes(dt);
        uint16_t dwh;
        std::memcpy(&dwh, blk, 2);
        int delta;
        if (dt == DType::Q8_0) {
          int8_t v;
          std::memcpy(&v, blk + 2 + t, 1);
          delta = v > 0 ? -50 : 50;
          v = static_cast<int8_t>(v + delta);
          std::memcpy(blk + 2 + t, &v, 1);
        } else {
          const int sh = t < 16 ? 0 : 4, i = t % 16;
          const int q = (blk[2 + i] >> sh) & 0x0F;
          delta = q >= 8 ? -5 : 5;
          blk[2 + i] = static_cast<uint8_t>((blk[2 + i] & ~(0x0F << sh)) | ((q + delta) << sh));
        }
        w.bytes = interleaved_rows(dt, plain, n, k);
        auto y1 = run(x, m, w, nullptr);
        std::vector<uint8_t> xq(dtype_nbytes(DType::Q8_0, m * k));
        quantize_rows(DType::Q8_0, x.data(), m, k, xq.data());
        xq = plain_rows(DType::Q8_0, xq, m, k);
        for (int64_t i = 0; i < m; ++i)
          for (int64_t jj = 0; jj < n; ++jj) {
            if (jj != j) {
              EXPECT_EQ(y1[i * n + jj], y0[i * n + jj]) << isa_name(isa) << " row " << jj << " changed";
              continue;
            }
            const auto* xb = reinterpret_cast<const BlockQ8_0*>(xq.data()) + i * nb + b;
            const double want = static_cast<double>(f16_to_f32(xb->d)) * f16_to_f32(dwh) * xb->qs[t] * delta;
            EXPECT_NEAR(y1[i * n + j] - y0[i * n + j], want, 1e-4 * (std::fabs(y0[i * n + j]) + std::fabs(want)) + 1e-6)
                << isa_name(isa) << " " << dtype_name(dt) << " block " << b;
            EXPECT_NE(want, 0.0);
          }
      }
}

// The decode kernel (m < 4) at the edges of its blocking: k = 32 (only a partial group), one
// group (odd group count), 2 groups (only the paired loop), 3 groups, 4 groups + a tail; n = 1
// .. 17 (a thread gets no row, one row, or an odd count); every SIMD variant vs the double
// reference, 1 vs 2 threads bitwise the same.
TEST(QuantLinear, DecodeBlockingAndSplits) {
  IsaGuard g;
  VariantGuard vg;
  uint32_t seed = 900;
  for (DType dt : kQTypes)
    for (int64_t k : {32, 512, 1024, 1536, 2080})
      for (int64_t n : {1, 2, 3, 17})
        for (int64_t m : {1, 2}) {
          QWeight w = make_qweight(dt, n, k, ++seed);
          auto x = random_vec(static_cast<size_t>(m * k), ++seed, -3.0f, 3.0f);
          auto bias = random_vec(static_cast<size_t>(n), ++seed);
          const float* b = n % 2 ? bias.data() : nullptr;
          QRef ref = quant_linear_double(x, m, w, b);
          for (const Variant& v : simd_variants()) {
            apply(v);
            set_num_threads(1);
            auto y1 = run(x, m, w, b);
            const std::string what = v.label + " " + dtype_name(dt) + " m" + std::to_string(m) + " n" +
                                     std::to_string(n) + " k" + std::to_string(k);
            expect_close(what, y1, ref.y, ref.s, 2.0);
            set_num_threads(2);
            auto y2 = run(x, m, w, b);
            EXPECT_EQ(std::memcmp(y1.data(), y2.data(), y1.size() * 4), 0) << what << ": 1 vs 2 threads differ";
            if (::testing::Test::HasFailure()) return;
          }
        }
}

// Q4_0 at the largest block sums: every nibble 15 (or 0) against activations that quantize to
// +-127, so a block's int32 lane holds 32 * 15 * 127 = 60960 (an int16 step anywhere would
// saturate). Every block has its own scale (a mixed-up scale order fails too).
TEST(QuantLinear, Q4ExtremeBlockSums) {
  IsaGuard g;
  VariantGuard vg;
  const int64_t n = 5, k = 544, nb = k / 32;
  QWeight w{DType::Q4_0, n, k, std::vector<uint8_t>(dtype_nbytes(DType::Q4_0, n * k))};
  for (int64_t j = 0; j < n; ++j)
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t* p = w.bytes.data() + (j * nb + b) * 18;
      const uint16_t d = f32_to_f16(0.01f * static_cast<float>(1 + (j * nb + b) % 7));
      std::memcpy(p, &d, 2);
      // rows: all 15; all 0; low nibbles 15, high 0; 15 / 0 alternating by block; all 15 but block 3
      uint8_t q = 0xFF;
      if (j == 1) q = 0x00;
      if (j == 2) q = 0x0F;
      if (j == 3) q = b % 2 ? 0xFF : 0x00;
      if (j == 4 && b == 3) q = 0x00;
      std::memset(p + 2, q, 16);
    }
  w.bytes = interleaved_rows(DType::Q4_0, w.bytes, n, k);
  const int64_t m = 3;
  std::vector<float> x(static_cast<size_t>(m * k));
  for (int64_t t = 0; t < k; ++t) {
    x[t] = 1.0f;                                   // every qx +127
    x[k + t] = -2.0f;                              // every qx -127
    x[2 * k + t] = (t / 16) % 2 ? -0.5f : 0.5f;    // +-127 by half block
  }
  for (int64_t mm = 1; mm <= m; ++mm) {
    std::vector<float> xm(x.begin(), x.begin() + mm * k);
    QRef ref = quant_linear_double(xm, mm, w, nullptr);
    for (const Variant& v : simd_variants()) {
      apply(v);
      for (int nt : {1, 2}) {
        set_num_threads(nt);
        expect_close(v.label + " m" + std::to_string(mm) + " t" + std::to_string(nt), run(xm, mm, w, nullptr), ref.y,
                     ref.s, 2.0);
      }
    }
  }
}

// linear_multi (q/k/v_proj, gate/up_proj in one call): the same bits as one linear() per weight,
// for every variant (fused decode, GEMM, fallbacks), several thread counts, ragged n.
TEST(QuantLinear, MultiEqualsSeparateCalls) {
  IsaGuard g;
  VariantGuard vg;
  std::vector<Variant> variants = simd_variants();
  variants.insert(variants.begin(), Variant{Isa::Scalar, "scalar", 0, true});
  for (DType dt : kQTypes) {
    const int64_t k = 544;
    const QWeight a = make_qweight(dt, 67, k, 41), b = make_qweight(dt, 16, k, 42), c = make_qweight(dt, 33, k, 43);
    const WeightRef ws[3] = {a.ref(), b.ref(), c.ref()};
    for (int64_t m : {1, 2, 5}) {
      auto x = random_vec(static_cast<size_t>(m * k), 44 + static_cast<uint32_t>(m), -3.0f, 3.0f);
      for (const Variant& v : variants) {
        apply(v);
        for (int nt : {1, 2, 3}) {
          set_num_threads(nt);
          std::vector<float> ya(static_cast<size_t>(m * 67), NAN), yb(static_cast<size_t>(m * 16), NAN),
              yc(static_cast<size_t>(m * 33), NAN);
          float* const ys[3] = {ya.data(), yb.data(), yc.data()};
          linear_multi(x.data(), m, ws, ys, 3);
          const std::string what = v.label + " " + dtype_name(dt) + " m" + std::to_string(m) + " t" + std::to_string(nt);
          EXPECT_EQ(std::memcmp(ya.data(), run(x, m, a, nullptr).data(), ya.size() * 4), 0) << what;
          EXPECT_EQ(std::memcmp(yb.data(), run(x, m, b, nullptr).data(), yb.size() * 4), 0) << what;
          EXPECT_EQ(std::memcmp(yc.data(), run(x, m, c, nullptr).data(), yc.size() * 4), 0) << what;
          if (::testing::Test::HasFailure()) return;
        }
      }
    }
  }
}

// Weight level -128 (a valid Q8_0 byte, never produced by the quantizer) and +127 extremes.
TEST(QuantLinear, ExtremeLevels) {
  IsaGuard g;
  const int64_t n = 5, k = 544;  // a group and a plain block per row
  QWeight w{DType::Q8_0, n, k, std::vector<uint8_t>(dtype_nbytes(DType::Q8_0, n * k))};
  for (int64_t blk = 0; blk < n * k / 32; ++blk) {
    uint8_t* p = w.bytes.data() + blk * 34;
    const uint16_t d = f32_to_f16(0.01f * static_cast<float>(1 + blk % 3));
    std::memcpy(p, &d, 2);
    for (int t = 0; t < 32; ++t) p[2 + t] = static_cast<uint8_t>((blk + t) % 3 == 0 ? 0x80 : (t % 2 ? 0x7F : 0x81));
  }
  w.bytes = interleaved_rows(DType::Q8_0, w.bytes, n, k);
  std::vector<float> x(static_cast<size_t>(3 * k));
  for (size_t i = 0; i < x.size(); ++i) x[i] = (i % 3 == 0 ? -1.0f : 1.0f) * (1.0f + static_cast<float>(i % 7));
  QRef ref = quant_linear_double(x, 3, w, nullptr);
  for (Isa isa : supported_isas()) {
    set_isa(isa);
    expect_close(isa_name(isa), run(x, 3, w, nullptr), ref.y, ref.s, 3.0);
  }
}

}  // namespace
}  // namespace qwen3vl::kernels::test

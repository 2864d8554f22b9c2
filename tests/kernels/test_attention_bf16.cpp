// attention() at BF16 precision (AttentionArgs::bf16): the scalar twin against a double-precision
// model of the documented numerics, and the AVX512-BF16 kernel against the twin and the model.
//
// Model (attention_bf16_scalar.cpp): q, k, v rounded to bf16; keys in blocks of 64 with the
// online-softmax running max m; p_j = exp(s_j - m) (relative to the running max of its block);
// acc += bf16(p_j) v_j, l += p_j; out = acc / l. The reference computes this in double from the
// same bf16-rounded inputs, rounding p to bf16 exactly as the kernels do.
//
// Tolerance (per output element), against the model:
//   f32 part: (2 ds + 4 (sk + d + 8) u) max|v|, with ds the f32 dot-product error bound of the
//     scores (as in test_attention.cpp; the bf16 products are exact in f32).
//   rounding flips: the kernels compute p_j in f32 with relative error e_j <= 2.1 ds + 8 u
//     (the score error enters once through s_j and once through the max). Where p_j lies within
//     e_j p_j of a bf16 rounding midpoint, the kernel may round it to the other neighbour: such
//     "ambiguous" j add one bf16 ulp(p_j) |v_j[t]| / l to the bound. Everywhere else the kernel's
//     bf16(p_j) equals the model's exactly.
// The twin-vs-SIMD check uses twice the sum (both sides carry the error).
// Mutation checks: the same comparison against a model WITHOUT the p rounding, and one without
// the q/k/v rounding, must fail somewhere, so the bound is tight enough to see both.
// bf16 K/V (AttentionArgs::k_bf16 / v_bf16): the same results as f32 K/V holding those values,
// bit for bit, on every ISA (Bf16KvMatchesF32KvAndTwin).
// The cases reach both AVX-512 inner kernels (f32 FMA from 8 rows per work item, vdpbf16ps below)
// and the pre-packed K/V of several query blocks per kv head.
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/kernel_test_util.h"

namespace qwen3vl::kernels::test {
namespace {

constexpr int64_t kBlock = 64;  // key block of the kernels

struct Case {
  int64_t sq, sk, hq, hk, d;
  bool causal;
  int64_t q_pos0;
  int64_t pad;
};

struct Data {
  Case c;
  std::vector<float> q, k, v;
  int64_t qs, ks, vs, os;
  AttentionArgs args(float* out) const {
    AttentionArgs a;
    a.q = q.data(); a.q_stride = qs;
    a.k = k.data(); a.k_stride = ks;
    a.v = v.data(); a.v_stride = vs;
    a.out = out; a.out_stride = os;
    a.sq = c.sq; a.sk = c.sk; a.hq = c.hq; a.hk = c.hk; a.d = c.d;
    a.scale = 1.0f / std::sqrt(static_cast<float>(c.d));
    a.causal = c.causal;
    a.q_pos0 = c.q_pos0;
    a.bf16 = true;
    return a;
  }
};

Data make(const Case& c, uint32_t seed) {
  Data t{c, {}, {}, {}, c.hq * c.d + c.pad, c.hk * c.d + 2 * c.pad, c.hk * c.d + c.pad, c.hq * c.d + 3 * c.pad};
  t.q = random_vec(static_cast<size_t>(std::max<int64_t>(c.sq, 1) * t.qs), seed, -2.0f, 2.0f);
  t.k = random_vec(static_cast<size_t>(std::max<int64_t>(c.sk, 1) * t.ks), seed + 1, -2.0f, 2.0f);
  t.v = random_vec(static_cast<size_t>(std::max<int64_t>(c.sk, 1) * t.vs), seed + 2);
  return t;
}

// Distance from x > 0 to the nearest bf16 rounding midpoint, and ulp_bf16(x).
void bf16_midpoint(double x, double* dist, double* ulp) {
  int e;
  std::frexp(x, &e);                  // x = f * 2^e, f in [0.5, 1)
  *ulp = std::ldexp(1.0, e - 8);      // 8 significant bits
  const double lo = std::floor(x / *ulp) * *ulp;
  *dist = std::fabs(x - (lo + *ulp / 2));
}

struct Model {
  std::vector<double> out, tol;
};

// round_p / round_in = false give the mutated models.
Model model(const Data& t, bool round_p = true, bool round_in = true) {
  const Case& c = t.c;
  const float scale_f = 1.0f / std::sqrt(static_cast<float>(c.d));
  auto rb = [round_in](float x) { return round_in ? static_cast<double>(round_bf16(x)) : static_cast<double>(x); };
  Model md;
  md.out.assign(static_cast<size_t>(c.sq * t.os), 0.0);
  md.tol.assign(md.out.size(), 0.0);
  for (int64_t i = 0; i < c.sq; ++i)
    for (int64_t h = 0; h < c.hq; ++h) {
      const int64_t kvh = h / (c.hq / c.hk);
      int64_t vis = c.sk;
      if (c.causal) vis = std::min<int64_t>(c.sk, c.q_pos0 + i + 1);
      std::vector<double> s(static_cast<size_t>(vis));
      double ds = 0, vmax = 0;
      for (int64_t j = 0; j < vis; ++j) {
        double dot = 0, mag = 0;
        for (int64_t x = 0; x < c.d; ++x) {
          const double p = rb(t.q[i * t.qs + h * c.d + x]) * rb(t.k[j * t.ks + kvh * c.d + x]);
          dot += p;
          mag += std::fabs(p);
        }
        s[j] = dot * scale_f;
        ds = std::max(ds, (c.d + 2) * kU * scale_f * mag);
        for (int64_t x = 0; x < c.d; ++x) vmax = std::max(vmax, std::fabs(rb(t.v[j * t.vs + kvh * c.d + x])));
      }
      const double erel = 2.1 * ds + 8 * kU;
      std::vector<double> acc(static_cast<size_t>(c.d), 0.0), flip(static_cast<size_t>(c.d), 0.0);
      double m = -INFINITY, l = 0;
      for (int64_t j0 = 0; j0 < vis; j0 += kBlock) {
        const int64_t jn = std::min(kBlock, vis - j0);
        double bmax = -INFINITY;
        for (int64_t j = j0; j < j0 + jn; ++j) bmax = std::max(bmax, s[j]);
        const double mnew = std::max(m, bmax);
        const double alpha = std::exp(m - mnew);
        l *= alpha;
        for (int64_t x = 0; x < c.d; ++x) {
          acc[x] *= alpha;
          flip[x] *= alpha;
        }
        for (int64_t j = j0; j < j0 + jn; ++j) {
          const double p = std::exp(s[j] - mnew);
          l += p;
          const double pr = round_p ? static_cast<double>(round_bf16(static_cast<float>(p))) : p;
          double dist, ulp;
          bf16_midpoint(p, &dist, &ulp);
          const bool ambiguous = dist <= erel * p;
          for (int64_t x = 0; x < c.d; ++x) {
            const double vv = rb(t.v[j * t.vs + kvh * c.d + x]);
            acc[x] += pr * vv;
            if (ambiguous) flip[x] += ulp * std::fabs(vv);
          }
        }
        m = mnew;
      }
      const double f32_part = (2 * ds + 4 * (c.sk + c.d + 8) * kU) * vmax;
      for (int64_t x = 0; x < c.d; ++x) {
        md.out[i * t.os + h * c.d + x] = l > 0 ? acc[x] / l : 0.0;
        md.tol[i * t.os + h * c.d + x] = f32_part + (l > 0 ? flip[x] / l : 0.0);
      }
    }
  return md;
}

std::vector<float> run(const Data& t) {
  std::vector<float> out(static_cast<size_t>(t.c.sq * t.os), 0.0f);
  for (int64_t i = 0; i < t.c.sq; ++i)
    for (int64_t x = 0; x < t.c.hq * t.c.d; ++x) out[i * t.os + x] = NAN;
  attention(t.args(out.data()));
  return out;
}

std::string name(const Case& c, const char* what) {
  return std::string(what) + " sq" + std::to_string(c.sq) + " sk" + std::to_string(c.sk) + " hq" +
         std::to_string(c.hq) + " hk" + std::to_string(c.hk) + " d" + std::to_string(c.d) +
         (c.causal ? " causal q_pos0 " + std::to_string(c.q_pos0) : "");
}

// Number of elements outside factor * tol (only the head outputs, not the padding).
size_t count_bad(const Data& t, const std::vector<float>& got, const std::vector<double>& ref,
                 const std::vector<double>& tol, double factor, std::string* worst_msg) {
  size_t bad = 0;
  double worst_ratio = -1;
  for (int64_t i = 0; i < t.c.sq; ++i)
    for (int64_t x = 0; x < t.c.hq * t.c.d; ++x) {
      const size_t e = static_cast<size_t>(i * t.os + x);
      const double diff = std::fabs(got[e] - ref[e]);
      const double b = factor * tol[e] + 1e-30;
      if (!(diff <= b)) ++bad;
      const double ratio = std::isnan(diff) ? INFINITY : diff / b;
      if (ratio > worst_ratio && worst_msg) {
        worst_ratio = ratio;
        *worst_msg = "worst [" + std::to_string(i) + "][" + std::to_string(x) + "] got " + std::to_string(got[e]) +
                     " expected " + std::to_string(ref[e]) + " bound " + std::to_string(b);
      }
    }
  return bad;
}

std::vector<Case> cases() {
  std::vector<Case> cs;
  const std::pair<int64_t, int64_t> heads[] = {{2, 2}, {4, 2}, {6, 1}};
  const std::pair<int64_t, int64_t> lens[] = {{1, 1}, {1, 37}, {5, 5}, {7, 130}, {33, 70}, {70, 33}, {3, 200}};
  for (int64_t d : {16, 64, 72, 128})
    for (auto [hq, hk] : heads)
      for (auto [sq, sk] : lens) {
        if (hq == 4 && d != 64) continue;
        if ((d == 16 || d == 72) && hq != 2) continue;  // odd head_dims at one head layout: keeps the test fast
        cs.push_back({sq, sk, hq, hk, d, false, 0, (d + sq) % 3});
        cs.push_back({sq, sk, hq, hk, d, true, std::max<int64_t>(sk - sq, 0), 1});
        cs.push_back({sq, sk, hq, hk, d, true, 3, 0});
      }
  cs.push_back({1, 1000, 16, 8, 128, true, 999, 0});  // decode, long cache, GQA 2:1
  cs.push_back({300, 300, 2, 2, 64, false, 0, 0});    // more rows than one work item
  cs.push_back({9, 5, 3, 3, 30, false, 0, 1});        // head_dim not a multiple of 16 (even)
  cs.push_back({6, 70, 2, 1, 5, true, 66, 2});        // odd head_dim (a zero-padded bf16 pair)
  return cs;
}

// Scalar twin vs the model, and (with AVX512-BF16) the AVX-512 kernel vs the twin and the model;
// one model evaluation per case serves both.
TEST(AttentionBf16, ScalarAndAvx512MatchModel) {
  IsaGuard g;
  const bool simd = cpu_has_avx512_bf16();
  uint32_t seed = 500;
  for (const Case& c : cases()) {
    Data t = make(c, seed += 3);
    Model md = model(t);
    set_isa(Isa::Scalar);
    auto ys = run(t);
    std::string msg;
    EXPECT_EQ(count_bad(t, ys, md.out, md.tol, 1.0, &msg), 0u) << name(c, "scalar") << ": " << msg;
    if (simd) {
      std::vector<double> ysd(ys.begin(), ys.end());
      set_isa(Isa::AVX512);
      auto yo = run(t);
      EXPECT_EQ(count_bad(t, yo, ysd, md.tol, 2.0, &msg), 0u) << name(c, "avx512 vs scalar") << ": " << msg;
      EXPECT_EQ(count_bad(t, yo, md.out, md.tol, 1.0, &msg), 0u) << name(c, "avx512 vs model") << ": " << msg;
    }
    if (HasFailure()) return;
  }
  if (!simd) GTEST_SKIP() << "no AVX512-BF16 on this CPU: only the scalar twin was checked";
}

// The bound is tight enough to see a kernel that skipped the p rounding or the input rounding:
// against such mutated models, the kernels must fail on the long-key cases.
TEST(AttentionBf16, BoundDetectsMissingRoundings) {
  IsaGuard g;
  std::vector<Isa> isas{Isa::Scalar};
  if (cpu_has_avx512_bf16()) isas.push_back(Isa::AVX512);
  for (Isa isa : isas) {
    set_isa(isa);
    for (const Case& c : {Case{7, 130, 2, 2, 64, false, 0, 0}, Case{5, 64, 2, 2, 64, false, 0, 0}}) {
      Data t = make(c, 9001);
      const auto y = run(t);
      const Model exact = model(t), no_p = model(t, false, true), no_in = model(t, true, false);
      EXPECT_EQ(count_bad(t, y, exact.out, exact.tol, 1.0, nullptr), 0u) << name(c, isa_name(isa));
      EXPECT_GT(count_bad(t, y, no_p.out, exact.tol, 1.0, nullptr), 0u) << name(c, isa_name(isa)) << " p rounding";
      EXPECT_GT(count_bad(t, y, no_in.out, exact.tol, 1.0, nullptr), 0u) << name(c, isa_name(isa)) << " q/k/v rounding";
    }
  }
}

TEST(AttentionBf16, ThreadCountDoesNotChangeResults) {
  IsaGuard g;
  // FMA path (one query block per kv head), FMA path with K/V packed up front (several query
  // blocks), vdpbf16ps path (decode).
  const Case cs[] = {{45, 300, 4, 2, 64, true, 255, 0}, {300, 300, 2, 2, 64, false, 0, 0}, {1, 300, 4, 2, 64, true, 299, 0}};
  for (const Case& c : cs) {
    Data t = make(c, 4243);
    Model md = model(t);
    for (Isa isa : supported_isas()) {
      // Only the scalar twin and the AVX512-BF16 kernel implement the bf16 rules; the other ISA
      // tables ignore a.bf16 and run their f32 kernel (tested in test_attention.cpp).
      if (isa == Isa::AVX2 || (isa == Isa::AVX512 && !cpu_has_avx512_bf16())) continue;
      set_isa(isa);
      set_num_threads(1);
      auto y1 = run(t);
      for (int n : {2, 3}) {
        set_num_threads(n);
        auto yn = run(t);
        // Work is split by (head, query block) only: every row is computed the same way.
        for (size_t e = 0; e < y1.size(); ++e)
          if (!(y1[e] == yn[e] || (std::isnan(y1[e]) && std::isnan(yn[e])))) {
            ADD_FAILURE() << name(c, isa_name(isa)) << " threads " << n << " differs at " << e;
            break;
          }
      }
      EXPECT_EQ(count_bad(t, y1, md.out, md.tol, 1.0, nullptr), 0u) << name(c, isa_name(isa));
    }
  }
}

// bf16 K/V (AttentionArgs::k_bf16 / v_bf16, a bf16 KV cache). Per case, with k / v holding
// bf16 values (f32 copies) and k_bf16 / v_bf16 the same values as bf16 (row padding NaN, so a
// read outside the heads shows; k / v null in the bf16 runs, so they cannot be read):
//   each ISA: bf16 K/V == f32 K/V holding those values, bit for bit;
//   scalar twin vs the model, AVX-512 vs the twin (2x bound) and the model, as above.
std::vector<Case> kv_cases() {
  return {
      {1, 1000, 16, 8, 128, true, 999, 0},   // decode, long cache (not a multiple of 64), GQA 2:1
      {1, 300, 4, 2, 64, true, 299, 1},      // decode
      {3, 257, 16, 8, 128, true, 254, 0},    // few queries (speculative / chunk tail)
      {40, 40, 4, 2, 64, true, 0, 2},        // prefill, GQA
      {70, 133, 6, 2, 72, true, 63, 1},      // chunked prefill, d not a multiple of 16
      {150, 150, 4, 2, 64, true, 0, 0},      // several query blocks per kv head
      {300, 300, 2, 2, 64, false, 0, 1},     // vision-like: non-causal, several query blocks
      {9, 70, 2, 1, 30, true, 61, 1},        // d even, not a multiple of 16
      {6, 70, 2, 1, 5, true, 66, 2},         // odd d, few rows
      {20, 70, 2, 1, 5, false, 0, 0},        // odd d, many rows
  };
}

struct KvData {
  Data t;                       // k / v: bf16 values as f32, padding NaN
  std::vector<uint16_t> kb, vb;  // the same as bf16, padding NaN
};

KvData make_kv(const Case& c, uint32_t seed) {
  KvData x{make(c, seed), {}, {}};
  auto fill = [&c](std::vector<float>& f, std::vector<uint16_t>& h, int64_t stride) {
    h.resize(f.size());
    for (size_t e = 0; e < f.size(); ++e) {
      const bool head = static_cast<int64_t>(e) % stride < c.hk * c.d;
      f[e] = head ? round_bf16(f[e]) : NAN;
      h[e] = f32_to_bf16(f[e]);
    }
  };
  fill(x.t.k, x.kb, x.t.ks);
  fill(x.t.v, x.vb, x.t.vs);
  return x;
}

std::vector<float> run_kv(const KvData& x) {
  std::vector<float> out(static_cast<size_t>(x.t.c.sq * x.t.os), 0.0f);
  AttentionArgs a = x.t.args(out.data());
  a.k = nullptr;
  a.v = nullptr;
  a.k_bf16 = x.kb.data();
  a.v_bf16 = x.vb.data();
  attention(a);
  return out;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b, size_t* at) {
  for (size_t e = 0; e < a.size(); ++e)
    if (std::memcmp(&a[e], &b[e], 4) != 0) {
      *at = e;
      return false;
    }
  return true;
}

TEST(AttentionBf16, Bf16KvMatchesF32KvAndTwin) {
  IsaGuard g;
  const bool simd = cpu_has_avx512_bf16();
  uint32_t seed = 7000;
  for (const Case& c : kv_cases()) {
    const KvData x = make_kv(c, seed += 3);
    const Model md = model(x.t);
    std::vector<Isa> isas{Isa::Scalar};
    if (simd) isas.push_back(Isa::AVX512);
    std::vector<float> ys;
    for (Isa isa : isas) {
      set_isa(isa);
      const auto yf = run(x.t);
      const auto yb = run_kv(x);
      size_t at = 0;
      EXPECT_TRUE(same_bits(yf, yb, &at)) << name(c, isa_name(isa)) << ": bf16 K/V " << yb[at] << " vs f32 K/V "
                                          << yf[at] << " at " << at;
      std::string msg;
      EXPECT_EQ(count_bad(x.t, yb, md.out, md.tol, 1.0, &msg), 0u) << name(c, isa_name(isa)) << " bf16 K/V: " << msg;
      if (isa == Isa::Scalar) {
        ys = yb;
      } else {
        const std::vector<double> ysd(ys.begin(), ys.end());
        EXPECT_EQ(count_bad(x.t, yb, ysd, md.tol, 2.0, &msg), 0u) << name(c, "avx512 vs scalar, bf16 K/V") << ": " << msg;
      }
    }
    if (HasFailure()) return;
  }
  if (!simd) GTEST_SKIP() << "no AVX512-BF16 on this CPU: only the scalar twin was checked";
}

TEST(AttentionBf16, ZeroKeys) {
  IsaGuard g;
  for (Isa isa : supported_isas()) {
    set_isa(isa);
    AttentionArgs a;
    a.bf16 = true;
    a.sq = 0; a.hq = 2; a.hk = 1; a.d = 8;
    attention(a);
    std::vector<float> q(16, 1.0f), out(16, NAN);
    a.q = q.data(); a.q_stride = 16; a.out = out.data(); a.out_stride = 16; a.sq = 1; a.sk = 0;
    attention(a);
    for (float v : out) EXPECT_EQ(v, 0.0f) << isa_name(isa);
    // Causal with sk > 0 but a query that sees... every query sees key 0 at least; sk = 1:
    std::vector<float> k(8, 0.5f), v(8, 2.0f);
    a.k = k.data(); a.v = v.data(); a.k_stride = a.v_stride = 8; a.sk = 1; a.causal = true;
    attention(a);
    for (float x : out) EXPECT_EQ(x, 2.0f) << isa_name(isa);
  }
}

}  // namespace
}  // namespace qwen3vl::kernels::test

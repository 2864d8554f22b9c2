// attention: scalar online-softmax vs naive softmax(Q K^T * scale) V in double; every SIMD ISA
// vs the scalar twin (head_dim 16/64/72/128, sq != sk, GQA, causal with q_pos0 > 0, padded
// strides, zero sizes).
//
// Tolerance derivation (per output row of one (query, head)). Scores s_j = scale <q, k_j> carry
// the dot-product error ds_j <= (d + 2) u scale sum_t |q_t k_jt| (see test_linear.cpp). A
// perturbation ds of the logits changes softmax weights by |dp_j| <= p_j (|ds_j| + max|ds|), so
// the output moves by at most 2 max|ds| max|v|. exp / rescaling / the weighted sum of v add a
// few u per step of the (sk + d) long chains: another c (sk + d + 8) u max|v|. Bound used:
//     tol = (2 max_j ds_j + 4 (sk + d + 8) u) * max|v|   (against double; x2 between f32 twins).
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/kernel_test_util.h"

namespace qwen3vl::kernels::test {
namespace {

struct AttnCase {
  int64_t sq, sk, hq, hk, d;
  bool causal;
  int64_t q_pos0;
  int64_t pad;  // extra floats per row (strides > hq * d)
};

struct AttnData {
  AttnCase c;
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
    return a;
  }
};

AttnData make_data(const AttnCase& c, uint32_t seed) {
  AttnData t{c, {}, {}, {}, c.hq * c.d + c.pad, c.hk * c.d + 2 * c.pad, c.hk * c.d + c.pad, c.hq * c.d + 3 * c.pad};
  // Scores of O(few units) so the softmax is neither flat nor one-hot.
  t.q = random_vec(static_cast<size_t>(std::max<int64_t>(c.sq, 1) * t.qs), seed, -2.0f, 2.0f);
  t.k = random_vec(static_cast<size_t>(std::max<int64_t>(c.sk, 1) * t.ks), seed + 1, -2.0f, 2.0f);
  t.v = random_vec(static_cast<size_t>(std::max<int64_t>(c.sk, 1) * t.vs), seed + 2);
  return t;
}

// Naive double-precision reference and the per-row bound.
void attention_double(const AttnData& t, std::vector<double>* out, std::vector<double>* tol) {
  const AttnCase& c = t.c;
  const double scale = 1.0 / std::sqrt(static_cast<double>(static_cast<float>(c.d)));
  const float scale_f = 1.0f / std::sqrt(static_cast<float>(c.d));
  out->assign(static_cast<size_t>(c.sq * t.os), 0.0);
  tol->assign(out->size(), 0.0);
  for (int64_t i = 0; i < c.sq; ++i)
    for (int64_t h = 0; h < c.hq; ++h) {
      const int64_t kvh = h / (c.hq / c.hk);
      int64_t visible = c.sk;
      if (c.causal) visible = std::min<int64_t>(c.sk, c.q_pos0 + i + 1);
      std::vector<double> s(static_cast<size_t>(visible));
      double smax = -INFINITY, ds_max = 0, vmax = 0;
      for (int64_t j = 0; j < visible; ++j) {
        double dot = 0, mag = 0;
        for (int64_t x = 0; x < c.d; ++x) {
          double p = static_cast<double>(t.q[i * t.qs + h * c.d + x]) * t.k[j * t.ks + kvh * c.d + x];
          dot += p;
          mag += std::fabs(p);
        }
        s[j] = dot * static_cast<double>(scale_f);
        (void)scale;
        smax = std::max(smax, s[j]);
        ds_max = std::max(ds_max, (c.d + 2) * kU * scale_f * mag);
        for (int64_t x = 0; x < c.d; ++x) vmax = std::max(vmax, std::fabs(static_cast<double>(t.v[j * t.vs + kvh * c.d + x])));
      }
      double l = 0;
      for (int64_t j = 0; j < visible; ++j) {
        s[j] = std::exp(s[j] - smax);  // s now holds the unnormalised probabilities
        l += s[j];
      }
      const double bound = (2 * ds_max + 4 * (c.sk + c.d + 8) * kU) * vmax;
      for (int64_t x = 0; x < c.d; ++x) {
        double acc = 0;
        for (int64_t j = 0; j < visible; ++j) acc += s[j] / l * t.v[j * t.vs + kvh * c.d + x];
        (*out)[i * t.os + h * c.d + x] = acc;
        (*tol)[i * t.os + h * c.d + x] = bound;
      }
    }
}

std::vector<float> run(const AttnData& t) {
  std::vector<float> out(static_cast<size_t>(t.c.sq * t.os), 0.0f);
  // Poison the head outputs (not the padding), so unwritten outputs fail.
  for (int64_t i = 0; i < t.c.sq; ++i)
    for (int64_t x = 0; x < t.c.hq * t.c.d; ++x) out[i * t.os + x] = NAN;
  attention(t.args(out.data()));
  return out;
}

std::string name(const AttnCase& c, Isa isa) {
  return std::string(isa_name(isa)) + " sq" + std::to_string(c.sq) + " sk" + std::to_string(c.sk) + " hq" +
         std::to_string(c.hq) + " hk" + std::to_string(c.hk) + " d" + std::to_string(c.d) +
         (c.causal ? " causal q_pos0 " + std::to_string(c.q_pos0) : "");
}

void check(const std::string& what, const std::vector<float>& got, const std::vector<double>& ref,
           const std::vector<double>& tol, double factor) {
  size_t bad = 0, worst = 0;
  double worst_ratio = -1;
  for (size_t i = 0; i < ref.size(); ++i) {
    double diff = std::fabs(got[i] - ref[i]);
    double b = factor * tol[i] + 1e-30;
    if (!(diff <= b)) ++bad;
    double ratio = std::isnan(diff) ? INFINITY : diff / b;
    if (ratio > worst_ratio) { worst_ratio = ratio; worst = i; }
  }
  EXPECT_EQ(bad, 0u) << what << ": worst #" << worst << " got " << got[worst] << " expected " << ref[worst]
                     << " bound " << factor * tol[worst];
}

std::vector<AttnCase> cases() {
  std::vector<AttnCase> cs;
  const std::pair<int64_t, int64_t> heads[] = {{2, 2}, {4, 2}, {6, 1}};
  const std::pair<int64_t, int64_t> lens[] = {{1, 1}, {1, 37}, {5, 5}, {7, 130}, {33, 70}, {70, 33}};
  for (int64_t d : {16, 64, 72, 128})
    for (auto [hq, hk] : heads)
      for (auto [sq, sk] : lens) {
        if (hq == 4 && d != 64) continue;  // GQA 2:1 at one head_dim keeps the test fast
        cs.push_back({sq, sk, hq, hk, d, false, 0, (d + sq) % 3});
        // Causal, query block at the end of the cache (prefill / decode with a cache) ...
        cs.push_back({sq, sk, hq, hk, d, true, std::max<int64_t>(sk - sq, 0), 1});
        // ... and with queries that see only part of the keys even at q_pos0 > 0.
        cs.push_back({sq, sk, hq, hk, d, true, 3, 0});
      }
  return cs;
}

TEST(Attention, ScalarMatchesNaiveDouble) {
  IsaGuard g;
  set_isa(Isa::Scalar);
  uint32_t seed = 10;
  for (const AttnCase& c : cases()) {
    AttnData t = make_data(c, seed += 3);
    std::vector<double> ref, tol;
    attention_double(t, &ref, &tol);
    check(name(c, Isa::Scalar), run(t), ref, tol, 1.0);
    if (HasFailure()) return;
  }
}

TEST(Attention, SimdMatchesScalar) {
  IsaGuard g;
  auto isas = simd_isas();
  if (isas.empty()) GTEST_SKIP() << "no SIMD ISA on this CPU";
  uint32_t seed = 1000;
  for (const AttnCase& c : cases()) {
    AttnData t = make_data(c, seed += 3);
    std::vector<double> ref, tol;
    attention_double(t, &ref, &tol);
    set_isa(Isa::Scalar);
    auto ys = run(t);
    std::vector<double> ysd(ys.begin(), ys.end());
    for (Isa isa : isas) {
      set_isa(isa);
      auto yo = run(t);
      check(name(c, isa) + " vs scalar", yo, ysd, tol, 2.0);
      check(name(c, isa) + " vs double", yo, ref, tol, 1.0);
      if (HasFailure()) return;
    }
  }
}

TEST(Attention, ThreadCountDoesNotChangeResults) {
  IsaGuard g;
  AttnCase c{45, 300, 4, 2, 64, true, 255, 0};
  AttnData t = make_data(c, 4242);
  std::vector<double> ref, tol;
  attention_double(t, &ref, &tol);
  for (Isa isa : supported_isas()) {
    set_isa(isa);
    set_num_threads(1);
    auto y1 = run(t);
    std::vector<double> y1d(y1.begin(), y1.end());
    for (int n : {2, 3}) {
      set_num_threads(n);
      check(name(c, isa) + " threads " + std::to_string(n), run(t), y1d, tol, 2.0);
    }
  }
}

TEST(Attention, ZeroSizesAndBadArguments) {
  IsaGuard g;
  for (Isa isa : supported_isas()) {
    set_isa(isa);
    AttentionArgs a;
    a.sq = 0; a.hq = 2; a.hk = 1; a.d = 8;
    attention(a);  // nothing to do, null pointers allowed
    // sk == 0: no visible key -> zeros.
    std::vector<float> q(16, 1.0f), out(16, NAN);
    a.q = q.data(); a.q_stride = 16; a.out = out.data(); a.out_stride = 16; a.sq = 1; a.sk = 0;
    attention(a);
    for (float v : out) EXPECT_EQ(v, 0.0f) << isa_name(isa);
  }
  AttentionArgs bad;
  bad.sq = 1; bad.sk = 1; bad.hq = 3; bad.hk = 2; bad.d = 4;
  float buf[64] = {};
  bad.q = bad.k = bad.v = buf; bad.out = buf;
  bad.q_stride = bad.k_stride = bad.v_stride = bad.out_stride = 12;
  EXPECT_THROW(attention(bad), Error);
}

}  // namespace
}  // namespace qwen3vl::kernels::test

// Logits processors (HF semantics), seeded sampling and generation_config parsing. Expected
// values of the processors were computed with transformers 4.57.6's own classes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "text/generation.h"

namespace qwen3vl {
namespace {

const float kInf = std::numeric_limits<float>::infinity();

std::vector<float> log_probs(std::vector<float> p) {
  for (float& v : p) v = std::log(v);
  return p;
}

TEST(LogitsProcessors, RepetitionPenaltyHF) {
  // RepetitionPenaltyLogitsProcessor(2.0)([[0,1,1]], [[2,-1,0.5,3]]) = [[1,-2,0.5,3]]
  std::vector<float> l = {2.0f, -1.0f, 0.5f, 3.0f};
  apply_repetition_penalty(l, {0, 1, 1}, 2.0f);
  EXPECT_EQ(l, (std::vector<float>{1.0f, -2.0f, 0.5f, 3.0f}));
}

TEST(LogitsProcessors, PresenceAndFrequencyPenalty) {
  std::vector<float> l = {1.0f, 1.0f, 1.0f, 1.0f};
  apply_presence_frequency_penalty(l, {2, 2, 3}, 0.5f, 0.25f);
  EXPECT_EQ(l, (std::vector<float>{1.0f, 1.0f, 0.0f, 0.25f}));
}

TEST(LogitsProcessors, TopKKeepsTies) {
  // TopKLogitsWarper(2)([[1,3,3,2]]) = [[-inf,3,3,-inf]]
  std::vector<float> l = {1, 3, 3, 2};
  apply_top_k(l, 2);
  EXPECT_EQ(l, (std::vector<float>{-kInf, 3, 3, -kInf}));
  std::vector<float> m = {1, 3, 3, 2};
  apply_top_k(m, 3);
  EXPECT_EQ(m, (std::vector<float>{-kInf, 3, 3, 2}));
}

TEST(LogitsProcessors, TopPHF) {
  // TopPLogitsWarper(0.7)(log[.5,.3,.15,.05]) keeps 2; TopPLogitsWarper(0.85) keeps 3.
  std::vector<float> l = log_probs({0.5f, 0.3f, 0.15f, 0.05f});
  auto a = l;
  apply_top_p(a, 0.7f);
  EXPECT_TRUE(std::isfinite(a[0]) && std::isfinite(a[1]) && a[2] == -kInf && a[3] == -kInf);
  auto b = l;
  apply_top_p(b, 0.85f);
  EXPECT_TRUE(std::isfinite(b[0]) && std::isfinite(b[1]) && std::isfinite(b[2]) && b[3] == -kInf);
  auto c = l;
  apply_top_p(c, 0.01f);  // always keeps the top token
  EXPECT_TRUE(std::isfinite(c[0]) && c[1] == -kInf);
}

TEST(LogitsProcessors, MinPHF) {
  // MinPLogitsWarper(0.2)(log[.5,.3,.15,.05]): threshold 0.1 removes the last.
  std::vector<float> l = log_probs({0.5f, 0.3f, 0.15f, 0.05f});
  apply_min_p(l, 0.2f);
  EXPECT_TRUE(std::isfinite(l[2]) && l[3] == -kInf);
}

TEST(LogitsProcessors, ArgmaxLowestIndexOnTies) {
  std::vector<float> l = {0.5f, 2.0f, -1.0f, 2.0f};
  EXPECT_EQ(argmax(l.data(), 4), 1);
  EXPECT_FLOAT_EQ(top2_margin(l.data(), 4), 0.0f);
}

std::vector<float> random_logits(int64_t n, uint64_t seed, float scale = 3.0f) {
  std::mt19937_64 g(seed);
  std::vector<float> l(static_cast<size_t>(n));
  for (auto& v : l) v = scale * static_cast<float>(static_cast<double>(g() >> 11) * 0x1.0p-53 * 2 - 1);
  return l;
}

std::vector<double> softmax(const std::vector<float>& l) {
  double mx = *std::max_element(l.begin(), l.end()), s = 0;
  std::vector<double> p(l.size());
  for (size_t i = 0; i < l.size(); ++i) s += (p[i] = std::exp(l[i] - mx));
  for (auto& v : p) v /= s;
  return p;
}

TEST(Sampler, SameSeedSameTokensDifferentSeedDiffers) {
  GenerationConfig c;
  c.do_sample = true;
  c.top_k = 0;
  c.seed = 1234;
  auto l = random_logits(500, 7, 1.0f);
  auto run = [&](uint64_t seed) {
    GenerationConfig cc = c;
    cc.seed = seed;
    Sampler s(cc);
    std::vector<int64_t> out;
    for (int i = 0; i < 200; ++i) out.push_back(s.next(l.data(), 500, {}, {}));
    return out;
  };
  EXPECT_EQ(run(1234), run(1234));
  EXPECT_NE(run(1234), run(1235));
}

// Draws follow the (renormalised) distribution: 40000 draws over 5 tokens, each frequency
// within 0.01 of its probability (std of a frequency <= 0.0025, so 4 sigma).
TEST(Sampler, FrequenciesMatchProbabilities) {
  GenerationConfig c;
  c.do_sample = true;
  c.top_k = 0;
  c.temperature = 0.8f;
  c.seed = 99;
  std::vector<float> l = {1.0f, 0.2f, -0.5f, 2.0f, 0.0f};
  std::vector<float> t = l;
  for (auto& v : t) v /= 0.8f;
  auto p = softmax(t);
  Sampler s(c);
  std::vector<int> count(5, 0);
  const int n = 40000;
  for (int i = 0; i < n; ++i) count[static_cast<size_t>(s.next(l.data(), 5, {}, {}))]++;
  for (int i = 0; i < 5; ++i) EXPECT_NEAR(count[i] / double(n), p[i], 0.01) << "token " << i;
}

// Statistical exclusion tests: thousands of draws never leave the allowed set, computed here
// independently (descending order, by definition of each filter).
TEST(Sampler, TopKTopPMinPNeverEmitExcludedTokens) {
  const int64_t V = 1000;
  for (int trial = 0; trial < 3; ++trial) {
    auto l = random_logits(V, 100 + trial, 4.0f);
    std::vector<int64_t> order(V);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return l[a] > l[b]; });
    auto p = softmax(l);

    struct Case { const char* name; GenerationConfig cfg; std::set<int64_t> allowed; };
    std::vector<Case> cases;
    {  // top_k = 20: the 20 largest
      Case k{"top_k", {}, {}};
      k.cfg.top_k = 20;
      k.allowed.insert(order.begin(), order.begin() + 20);
      cases.push_back(k);
    }
    {  // top_p = 0.3: smallest descending prefix with mass >= 0.3 (token kept iff mass before it < 0.3)
      Case tp{"top_p", {}, {}};
      tp.cfg.top_k = 0;
      tp.cfg.top_p = 0.3f;
      double before = 0;
      for (int64_t i : order) {
        if (before < 0.3 - 1e-9) tp.allowed.insert(i);
        before += p[i];
      }
      cases.push_back(tp);
    }
    {  // min_p = 0.5: p >= 0.5 * p_max
      Case mp{"min_p", {}, {}};
      mp.cfg.top_k = 0;
      mp.cfg.min_p = 0.5f;
      for (int64_t i = 0; i < V; ++i)
        if (p[i] >= 0.5 * p[order[0]]) mp.allowed.insert(i);
      cases.push_back(mp);
    }
    for (auto& cs : cases) {
      cs.cfg.do_sample = true;
      cs.cfg.seed = 5 + trial;
      Sampler s(cs.cfg);
      std::set<int64_t> seen;
      for (int i = 0; i < 1500; ++i) {
        int64_t t = s.next(l.data(), V, {}, {});
        ASSERT_TRUE(cs.allowed.count(t)) << cs.name << ": emitted excluded token " << t;
        seen.insert(t);
      }
      // And it really samples: more than one token of the allowed set shows up.
      EXPECT_GT(seen.size(), std::min<size_t>(2, cs.allowed.size() - 1)) << cs.name;
    }
  }
}

TEST(Sampler, TemperatureToZeroEqualsGreedy) {
  for (int trial = 0; trial < 50; ++trial) {
    auto l = random_logits(2000, 1000 + trial);
    const int64_t g = argmax(l.data(), 2000);
    GenerationConfig c;
    c.do_sample = true;
    c.top_k = 0;
    c.seed = trial;
    c.temperature = 1e-6f;  // margins here are >= ~1e-4, so exp(-margin/T) underflows
    Sampler s(c);
    ASSERT_EQ(s.next(l.data(), 2000, {}, {}), g);
    c.temperature = 0.0f;  // exactly 0: greedy
    Sampler z(c);
    ASSERT_EQ(z.next(l.data(), 2000, {}, {}), g);
  }
}

TEST(Sampler, GreedyAppliesRepetitionPenaltyFirst) {
  GenerationConfig c;  // greedy
  c.repetition_penalty = 4.0f;
  std::vector<float> l = {1.0f, 3.0f, 2.0f};
  Sampler s(c);
  EXPECT_EQ(s.next(l.data(), 3, {1}, {}), 2);  // 3/4 < 2
  GenerationConfig p;
  p.presence_penalty = 1.5f;
  Sampler sp(p);
  EXPECT_EQ(sp.next(l.data(), 3, {1}, {}), 1);  // presence only counts generated ids
  EXPECT_EQ(sp.next(l.data(), 3, {}, {1}), 2);  // 3 - 1.5 < 2
}

TEST(GenerationConfig, FromJsonEosIntOrList) {
  auto a = GenerationConfig::from_json(nlohmann::json::parse(
      R"({"do_sample": true, "temperature": 0.7, "top_k": 20, "top_p": 0.8, "eos_token_id": [151645, 151643],
          "pad_token_id": 151643, "repetition_penalty": 1.0, "min_p": null, "transformers_version": "4.57.6"})"));
  EXPECT_TRUE(a.do_sample);
  EXPECT_FLOAT_EQ(a.temperature, 0.7f);
  EXPECT_EQ(a.top_k, 20);
  EXPECT_FLOAT_EQ(a.top_p, 0.8f);
  EXPECT_EQ(a.min_p, 0.0f);
  EXPECT_EQ(a.eos_token_id, (std::vector<int64_t>{151645, 151643}));
  EXPECT_EQ(a.pad_token_id.value(), 151643);
  auto b = GenerationConfig::from_json(nlohmann::json::parse(R"({"eos_token_id": 7})"));
  EXPECT_EQ(b.eos_token_id, (std::vector<int64_t>{7}));
  EXPECT_FALSE(b.do_sample);
  EXPECT_EQ(b.top_k, 50);  // HF default
  EXPECT_THROW(GenerationConfig::from_json(nlohmann::json::parse(R"({"top_k": "20"})")), Error);
  EXPECT_THROW(GenerationConfig::from_json(nlohmann::json::parse(R"({"eos_token_id": "x"})")), Error);
  GenerationConfig bad;
  bad.top_p = 0.0f;
  EXPECT_THROW(bad.validate(), Error);
}

}  // namespace
}  // namespace qwen3vl

// Accuracy cost of block-quantized text weights (--quant q8 / q4): logits of the quantized model
// against the unquantized one on parity prompts of tests/fixtures/model (text_only, one_image,
// video: 92 positions per set; the fixture vision outputs are spliced in, so only the text
// decoder differs), for a tied f32, a tied bf16 and an untied f32 checkpoint. Prints
// max |diff| / max |logit|, relative RMS and top-1 agreement. --quant-vision: vision outputs.
//
// Bounds. Both runs use MatmulPrecision::F32 so that the difference is the quantization alone:
// the weights (per block of 32: Q8_0 error <= amax/254; Q4_0 <= amax/16 inside the range, amax/8
// at its clamp) and the activations, which every quantized linear rounds to Q8_0 blocks (as
// llama.cpp does). The fixture models are random with init-std 0.2, so they amplify any
// perturbation strongly (4 layers, large attention logits): a 0.4%-rms rounding of the
// activations alone becomes ~2.5% rms of the logits. Measured (Release, this machine):
//   q8 vs unquantized:  rel_rms 2.8-3.1 %, max|diff|/max|logit| 5.0-5.2 %, top-1 agreement 93-95 %
//   q4 vs unquantized:  rel_rms 27-29 %,   max|diff|/max|logit| 42-57 %, top-1 51-55 %
//   q8 / q4 vs the same model with dequantized F32 weights (tiny-f32): rel_rms ~2.5 %, max 3.9-4.6 %
//   vision (--quant-vision): q8 rel_rms 1.2 %, q4 11.4 % of the merger / DeepStack outputs
// The Q4_0 step is 16x the Q8_0 step, hence ~9x the logit error here. Bounds are ~1.6-2x the
// measurements (q8: rms 6 %, max 10 %; q4: rms 45 %, max 90 %; vs dequantized: rms 5 %, max 9 %)
// and q4 must cost > 3x q8: a defect (a wrong scale or nibble order, a misplaced row) gives
// errors of the order of the logits themselves (rms ~100 %+), and the dequantized comparison
// holds both block formats to the activation-rounding level.
//
// QWEN3VL_QUANT_MODEL=DIR additionally measures a real-size checkpoint (e.g. the 2B random bf16
// model) on a 32-token prompt: QuantAccuracyExternal.ExternalModel (skipped without the variable).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "kernels/quant.h"
#include "model/quantize.h"
#include "model/weight_names.h"
#include "text/text_fixture.h"

namespace qwen3vl::test {
namespace {

struct PrecisionGuard {
  kernels::MatmulPrecision saved = kernels::matmul_precision();
  explicit PrecisionGuard(kernels::MatmulPrecision p) { kernels::set_matmul_precision(p); }
  ~PrecisionGuard() { kernels::set_matmul_precision(saved); }
};

struct QuantModel {
  Checkpoint ckpt;
  std::unique_ptr<Qwen3VLModel> model;
  kernels::WeightRef lm_head;
};

std::unique_ptr<QuantModel> load_model(const std::filesystem::path& dir, QuantMode mode) {
  auto m = std::make_unique<QuantModel>();
  LoadOptions lo;
  lo.quant.text = mode;
  m->ckpt = Checkpoint::load(dir, lo);
  m->model = std::make_unique<Qwen3VLModel>(m->ckpt);
  const Tensor& w = m->ckpt.get("lm_head.weight");  // tied: the embedding
  m->lm_head.dtype = w.dtype();
  m->lm_head.data = w.raw();
  m->lm_head.n = w.size(0);
  m->lm_head.k = w.size(1);
  return m;
}

// logits [S, V] of every prompt position.
Tensor logits_of(const QuantModel& m, const MultimodalInputs& in) {
  KVCache cache(m.ckpt.config().text_config, static_cast<int64_t>(in.input_ids.size()) + 1);
  Tensor h = m.model->forward(in, cache);
  Tensor logits = Tensor::empty({h.size(0), m.lm_head.n});
  kernels::linear(h.data<float>(), h.size(0), m.lm_head, nullptr, logits.data<float>());
  return logits;
}

struct Err {
  double max_abs = 0, max_ref = 0, sq = 0, sq_ref = 0;
  int64_t rows = 0, top1_same = 0;
  void add(const Tensor& ours, const Tensor& ref) {
    const int64_t S = ref.size(0), V = ref.size(1);
    const float* a = ours.data<float>();
    const float* b = ref.data<float>();
    for (int64_t s = 0; s < S; ++s) {
      int64_t ia = 0, ib = 0;
      for (int64_t v = 0; v < V; ++v) {
        const double x = a[s * V + v], y = b[s * V + v];
        const double d = std::isnan(x) ? INFINITY : std::fabs(x - y);
        max_abs = std::max(max_abs, d);
        max_ref = std::max(max_ref, std::fabs(y));
        sq += d * d;
        sq_ref += y * y;
        if (a[s * V + v] > a[s * V + ia]) ia = v;
        if (b[s * V + v] > b[s * V + ib]) ib = v;
      }
      ++rows;
      top1_same += ia == ib;
    }
  }
  double rel_max() const { return max_ref > 0 ? max_abs / max_ref : 0; }
  double rel_rms() const { return sq_ref > 0 ? std::sqrt(sq / sq_ref) : 0; }
  double top1() const { return rows ? static_cast<double>(top1_same) / static_cast<double>(rows) : 0; }
};

void print(const std::string& what, const char* mode, const Err& e, bool logits = true) {
  std::printf("[quant-accuracy] %-12s %-3s max|diff| %.4e  max|%s| %.4e  rel_max %.4f%%  rel_rms %.4f%%", what.c_str(),
              mode, e.max_abs, logits ? "logit" : "ref", e.max_ref, 100 * e.rel_max(), 100 * e.rel_rms());
  if (logits)
    std::printf("  top-1 agreement %lld/%lld (%.1f%%)", static_cast<long long>(e.top1_same),
                static_cast<long long>(e.rows), 100 * e.top1());
  std::printf("\n");
}

// The same checkpoint with the weights `mode` quantizes replaced by their dequantized values
// (F32): the model the quantized one computes, up to the Q8_0 rounding of its activations.
std::unique_ptr<QuantModel> load_dequantized(const std::filesystem::path& dir, QuantMode mode) {
  auto m = std::make_unique<QuantModel>();
  LoadOptions lo;
  lo.quant.text = mode;
  m->ckpt = Checkpoint::load(dir, lo);
  std::vector<std::string> names;
  for (auto& [name, t] : m->ckpt.tensors())
    if (dtype_is_quantized(t.dtype())) names.push_back(name);
  for (auto& name : names) m->ckpt.replace_tensor(name, dequantize_weight(m->ckpt.get(name)));
  m->model = std::make_unique<Qwen3VLModel>(m->ckpt);
  const Tensor& w = m->ckpt.get("lm_head.weight");
  m->lm_head = kernels::weight_ref(w);
  return m;
}

class QuantAccuracy : public ::testing::TestWithParam<std::string> {};

TEST_P(QuantAccuracy, LogitsOnParityPrompts) {
  const std::string set = GetParam();
  const std::vector<std::string> cases = {"text_only", "one_image", "video"};
  std::vector<std::unique_ptr<TextFixture>> fxs;
  for (auto& c : cases)
    if (auto fx = load_text_fixture(set, c)) fxs.push_back(std::move(fx));
  if (fxs.empty()) GTEST_SKIP() << "no text fixtures for " << set;
  const std::filesystem::path dir = model_for_fixture(fxs[0]->md);
  const Qwen3VLTextConfig tc = Checkpoint::load(dir).config().text_config;
  ASSERT_EQ(tc.hidden_size % 32, 0);
  ASSERT_EQ(tc.intermediate_size % 32, 0);
  ASSERT_EQ(tc.num_attention_heads * tc.head_dim % 32, 0);

  PrecisionGuard guard(kernels::MatmulPrecision::F32);
  auto base = load_model(dir, QuantMode::None);
  std::vector<Tensor> ref;
  for (auto& fx : fxs) ref.push_back(logits_of(*base, fixture_inputs(*fx, false)));

  double q8_rms = 0;
  for (QuantMode mode : {QuantMode::Q8, QuantMode::Q4}) {
    auto q = load_model(dir, mode);
    EXPECT_EQ(q->ckpt.get(weight_names::text_layer(0) + "mlp.down_proj.weight").dtype(), quant_mode_dtype(mode));
    // The embedding lookup of a quantized table is its dequantized row.
    const auto& lm = q->model->language_model();
    const Tensor& table = q->ckpt.get(weight_names::kEmbedTokens);
    EXPECT_TRUE(dtype_is_quantized(table.dtype()));
    EXPECT_EQ(lm.activation_dtype(), base->model->language_model().activation_dtype());
    Tensor e = lm.embed({5, 0, 151643});
    std::vector<float> row(static_cast<size_t>(tc.hidden_size));
    for (int64_t i = 0; i < 3; ++i) {
      const int64_t id = std::vector<int64_t>{5, 0, 151643}[static_cast<size_t>(i)];
      kernels::dequantize_rows(table.dtype(), table.raw(), tc.hidden_size, id, 1, row.data());
      EXPECT_EQ(0, std::memcmp(row.data(), e.data<float>() + i * tc.hidden_size, row.size() * 4)) << id;
    }

    Err err;
    std::vector<Tensor> got;
    for (size_t i = 0; i < fxs.size(); ++i) {
      got.push_back(logits_of(*q, fixture_inputs(*fxs[i], false)));
      Err one;
      one.add(got.back(), ref[i]);
      print(set + "/" + fxs[i]->name, quant_mode_name(mode), one);
      err.add(got.back(), ref[i]);
    }
    print(set + " (all)", quant_mode_name(mode), err);
    EXPECT_GT(err.max_abs, 0.0) << "quantization changed nothing: weights not quantized?";
    if (mode == QuantMode::Q8) {
      EXPECT_LE(err.rel_rms(), 0.06);
      EXPECT_LE(err.rel_max(), 0.10);
      EXPECT_GE(err.top1(), 0.85);
      q8_rms = err.rel_rms();
    } else {
      EXPECT_LE(err.rel_rms(), 0.45);
      EXPECT_LE(err.rel_max(), 0.90);
      EXPECT_GT(err.rel_rms(), 3 * q8_rms) << "4-bit weights should cost clearly more than 8-bit ones";
    }
    if (set == "tiny-f32") {
      // Against the dequantized-weight model (same activation dtype: an f32 checkpoint; one set
      // keeps the test fast): what remains is the Q8_0 rounding of the activations, the same for
      // both modes, so this also holds the q4 path to a tight bound.
      auto deq = load_dequantized(dir, mode);
      Err derr;
      for (size_t i = 0; i < fxs.size(); ++i) derr.add(got[i], logits_of(*deq, fixture_inputs(*fxs[i], false)));
      print(set + " vs deq", quant_mode_name(mode), derr);
      EXPECT_GT(derr.max_abs, 0.0);
      EXPECT_LE(derr.rel_rms(), 0.05);
      EXPECT_LE(derr.rel_max(), 0.09);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, QuantAccuracy, ::testing::Values("tiny-f32", "tiny-bf16", "tiny-b-f32"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n)
                             if (c == '-') c = '_';
                           return n;
                         });

// --quant-vision: the vision tower's outputs (merger embeds + DeepStack features) on the fixture
// images, quantized vs not (text weights as stored). tiny: Dv 32, Iv 64, merged 128 (all whole
// blocks). Bounds ~2x the measured error, q4 clearly above q8 (see the header comment).
TEST(QuantAccuracyVision, VisionOutputsOnFixtureImages) {
  for (const std::string set : {"tiny-f32", "tiny-bf16"}) {
    std::vector<std::unique_ptr<TextFixture>> fxs;
    for (const char* c : {"one_image", "two_images", "video"})
      if (auto fx = load_text_fixture(set, c)) fxs.push_back(std::move(fx));
    if (fxs.empty()) GTEST_SKIP() << "no text fixtures for " << set;
    const std::filesystem::path dir = model_for_fixture(fxs[0]->md);
    PrecisionGuard guard(kernels::MatmulPrecision::F32);
    auto run = [&](QuantMode mode, std::vector<Tensor>& outs) {
      LoadOptions lo;
      lo.quant.vision = mode;
      Checkpoint ck = Checkpoint::load(dir, lo);
      Qwen3VLVisionModel vis(ck);
      for (auto& fx : fxs) {
        MultimodalInputs in = fixture_inputs(*fx, true);
        const bool video = in.pixel_values_videos.defined();
        VisionOutput o = video ? vis.forward(in.pixel_values_videos, in.video_grid_thw)
                               : vis.forward(in.pixel_values, in.image_grid_thw);
        outs.push_back(o.embeds);
        for (auto& d : o.deepstack) outs.push_back(d);
      }
    };
    std::vector<Tensor> ref, q8, q4;
    run(QuantMode::None, ref);
    run(QuantMode::Q8, q8);
    run(QuantMode::Q4, q4);
    Err e8, e4;
    for (size_t i = 0; i < ref.size(); ++i) {
      e8.add(q8[i], ref[i]);
      e4.add(q4[i], ref[i]);
    }
    print(set + " vision", "q8", e8, false);
    print(set + " vision", "q4", e4, false);
    EXPECT_GT(e8.max_abs, 0.0);
    EXPECT_LE(e8.rel_rms(), 0.03);
    EXPECT_LE(e4.rel_rms(), 0.3);
    EXPECT_GT(e4.rel_rms(), 3 * e8.rel_rms());
  }
}

// A real-size checkpoint: QWEN3VL_QUANT_MODEL=/work/bench-models/2b-bf16 (32 pseudo-random
// ordinary-text tokens). Reference: the unquantized model at MatmulPrecision::F32. As a yardstick
// for how much the (random) model amplifies small perturbations, the unquantized model at the
// default BF16 precision (activations rounded to bf16 before each product) is measured too.
TEST(QuantAccuracyExternal, ExternalModel) {
  const char* dir = std::getenv("QWEN3VL_QUANT_MODEL");
  if (!dir || !*dir) GTEST_SKIP() << "set QWEN3VL_QUANT_MODEL=DIR to measure a real-size checkpoint";
  MultimodalInputs in;
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (int i = 0; i < 32; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    in.input_ids.push_back(static_cast<int64_t>(1000 + x % 100000));
  }
  const std::string name = std::filesystem::path(dir).filename().string();
  Tensor ref;
  {
    auto base = load_model(dir, QuantMode::None);
    {
      PrecisionGuard guard(kernels::MatmulPrecision::F32);
      ref = logits_of(*base, in);
    }
    PrecisionGuard guard(kernels::MatmulPrecision::BF16);
    Err err;
    err.add(logits_of(*base, in), ref);
    print(name + " bf16-act", "-", err);
  }
  PrecisionGuard guard(kernels::MatmulPrecision::F32);
  for (QuantMode mode : {QuantMode::Q8, QuantMode::Q4}) {
    auto q = load_model(dir, mode);
    Err err;
    err.add(logits_of(*q, in), ref);
    print(name, quant_mode_name(mode), err);
    EXPECT_GT(err.max_abs, 0.0);
  }
}

}  // namespace
}  // namespace qwen3vl::test

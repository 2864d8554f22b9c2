// Shared helpers of the text tests: HF fixtures (tests/fixtures/model/<set>/text_<case>) and the
// generated checkpoints they were made from (one model per checkpoint, loaded once).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/compare.h"
#include "common/models.h"
#include "core/safetensors.h"
#include "model/checkpoint.h"
#include "text/generation.h"
#include "text/qwen3vl_model.h"

namespace qwen3vl::test {

struct TextFixture {
  std::string set, name;  // "tiny-f32", "one_image"
  std::map<std::string, Tensor> t;
  std::map<std::string, std::string> md;

  bool has(const std::string& k) const { return t.count(k) > 0; }
  const Tensor& at(const std::string& k) const {
    auto it = t.find(k);
    if (it == t.end()) throw Error("fixture " + set + "/text_" + name + " has no tensor " + k);
    return it->second;
  }
  std::vector<int64_t> ids(const std::string& k) const {
    const Tensor& x = at(k);
    std::vector<int64_t> v(static_cast<size_t>(x.numel()));
    for (int64_t i = 0; i < x.numel(); ++i) v[static_cast<size_t>(i)] = static_cast<int64_t>(x.item(i));
    return v;
  }
  std::vector<GridTHW> grids(const std::string& k) const {
    std::vector<GridTHW> g;
    if (!has(k)) return g;
    std::vector<int64_t> v = ids(k);
    for (size_t i = 0; i + 3 <= v.size(); i += 3) g.push_back({v[i], v[i + 1], v[i + 2]});
    return g;
  }
  int deepstack_levels() const {
    int n = 0;
    while (has("deepstack." + std::to_string(n))) ++n;
    return n;
  }
  bool is_bf16() const { return set.find("bf16") != std::string::npos; }
};

inline std::filesystem::path text_fixture_path(const std::string& set, const std::string& name) {
  return fixtures_dir() / "model" / set / ("text_" + name + ".safetensors");
}

// nullptr if the file is absent (the caller skips).
inline std::unique_ptr<TextFixture> load_text_fixture(const std::string& set, const std::string& name) {
  auto path = text_fixture_path(set, name);
  if (!std::filesystem::exists(path)) return nullptr;
  auto fx = std::make_unique<TextFixture>();
  fx->set = set;
  fx->name = name;
  fx->t = load_safetensors(path);
  fx->md = SafetensorsFile::open(path)->metadata();
  return fx;
}

struct LoadedModel {
  Checkpoint ckpt;
  std::unique_ptr<Qwen3VLForConditionalGeneration> model;
};

// The model a fixture was made from, loaded once per make-model arguments and numerics.
inline const Qwen3VLForConditionalGeneration& model_for(const TextFixture& fx, bool emulate_dtype = false) {
  static std::map<std::string, std::unique_ptr<LoadedModel>> cache;
  const std::string key =
      (fx.md.count("make_model_args") ? fx.md.at("make_model_args") : "") + (emulate_dtype ? " #emulate" : "");
  auto it = cache.find(key);
  if (it == cache.end()) {
    auto lm = std::make_unique<LoadedModel>();
    lm->ckpt = Checkpoint::load(model_for_fixture(fx.md));
    TextNumerics nm;
    nm.emulate_activation_dtype = emulate_dtype;
    lm->model = std::make_unique<Qwen3VLForConditionalGeneration>(lm->ckpt, nm);
    it = cache.emplace(key, std::move(lm)).first;
  }
  return *it->second->model;
}

// The prompt of a fixture: either the fixture's vision outputs (image_embeds / video_embeds +
// deepstack.<j>) or its pixel values (run through our vision tower).
inline MultimodalInputs fixture_inputs(const TextFixture& fx, bool from_pixels) {
  MultimodalInputs in;
  in.input_ids = fx.ids("input_ids");
  in.image_grid_thw = fx.grids("image_grid_thw");
  in.video_grid_thw = fx.grids("video_grid_thw");
  if (from_pixels) {
    if (fx.has("pixel_values")) in.pixel_values = fx.at("pixel_values");
    if (fx.has("pixel_values_videos")) in.pixel_values_videos = fx.at("pixel_values_videos");
    return in;
  }
  auto features = [&](const std::string& k) {
    VisionOutput v;
    v.embeds = fx.at(k);
    for (int j = 0; j < fx.deepstack_levels(); ++j) v.deepstack.push_back(fx.at("deepstack." + std::to_string(j)));
    return v;
  };
  // The fixture cases have one kind of media each, so deepstack.<j> belongs to that kind.
  if (fx.has("image_embeds")) in.image_features = features("image_embeds");
  if (fx.has("video_embeds")) in.video_features = features("video_embeds");
  return in;
}

// expect_close for large F32 tensors (same report and criterion, without per-element item()).
inline void expect_close_f32(const std::string& name, const Tensor& ours, const Tensor& ref, double rel_tol) {
  ASSERT_EQ(ours.shape(), ref.shape()) << name;
  ASSERT_TRUE(ours.dtype() == DType::F32 && ref.dtype() == DType::F32) << name;
  const float* a = ours.data<float>();
  const float* b = ref.data<float>();
  double max_ref = 0, max_diff = 0;
  int64_t worst = 0;
  for (int64_t i = 0; i < ref.numel(); ++i) {
    max_ref = std::max(max_ref, static_cast<double>(std::fabs(b[i])));
    double d = std::fabs(static_cast<double>(a[i]) - b[i]);
    if (std::isnan(d)) d = INFINITY;
    if (d > max_diff) { max_diff = d; worst = i; }
  }
  std::printf("[compare] %-28s %-18s max|diff| %.3e  max|ref| %.3e  rel %.3e  (bound %.3e) worst #%lld ours %.7g ref %.7g\n",
              name.c_str(), shape_str(ref.shape()).c_str(), max_diff, max_ref, max_ref > 0 ? max_diff / max_ref : 0.0,
              rel_tol * max_ref, static_cast<long long>(worst), a[worst], b[worst]);
  EXPECT_LE(max_diff, rel_tol * max_ref) << name << ": worst element #" << worst;
}

// Columns `cols` of logits [S, V] -> [S, C].
inline Tensor gather_cols(const Tensor& logits, const std::vector<int64_t>& cols) {
  const int64_t S = logits.size(0), V = logits.size(1), C = static_cast<int64_t>(cols.size());
  Tensor out = Tensor::empty({S, C});
  for (int64_t s = 0; s < S; ++s)
    for (int64_t c = 0; c < C; ++c) out.data<float>()[s * C + c] = logits.data<float>()[s * V + cols[c]];
  return out;
}

}  // namespace qwen3vl::test

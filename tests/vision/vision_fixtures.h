// Shared helpers of the vision tests: the HF fixture sets and cases (FIXTURES.md), reading one.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "common/compare.h"
#include "core/safetensors.h"
#include "core/tensor.h"
#include "vision/vision_functional.h"

namespace qwen3vl::test {

// Fixture sets (tests/fixtures/model/<set>/) and vision cases (vision_<case>.safetensors).
inline const std::vector<std::string>& vision_fixture_sets() {
  static const std::vector<std::string> s = {"tiny-f32", "tiny-b-f32", "tiny-bf16"};
  return s;
}
inline const std::vector<std::string>& vision_fixture_cases() {
  static const std::vector<std::string> c = {"square", "nonsquare", "large", "small", "two_images", "video"};
  return c;
}

struct VisionFixture {
  std::filesystem::path path;
  std::map<std::string, std::string> metadata;
  std::map<std::string, Tensor> tensors;
  std::vector<GridTHW> grid;
  const Tensor& at(const std::string& name) const {
    auto it = tensors.find(name);
    if (it == tensors.end()) throw Error(path.string() + ": fixture has no tensor '" + name + "'");
    return it->second;
  }
};

inline std::filesystem::path vision_fixture_path(const std::string& set, const std::string& cas) {
  return fixtures_dir() / "model" / set / ("vision_" + cas + ".safetensors");
}

// Loads a fixture. Returns false (after GTEST_SKIP-worthy reasoning by the caller) only when the
// whole set directory is absent; a set that exists but lacks a case is a failure.
inline bool load_vision_fixture(const std::string& set, const std::string& cas, VisionFixture& f) {
  f.path = vision_fixture_path(set, cas);
  if (!std::filesystem::exists(f.path.parent_path())) return false;
  if (!std::filesystem::exists(f.path))
    throw Error(f.path.string() + " is missing: regenerate with tools/reference/make_fixtures.sh");
  f.metadata = SafetensorsFile::open(f.path)->metadata();
  f.tensors = load_safetensors(f.path);
  const Tensor& g = f.at("image_grid_thw");
  if (g.dim() != 2 || g.size(1) != 3) throw Error(f.path.string() + ": image_grid_thw is not [n, 3]");
  f.grid.clear();
  for (int64_t i = 0; i < g.size(0); ++i)
    f.grid.push_back({static_cast<int64_t>(g.item(3 * i)), static_cast<int64_t>(g.item(3 * i + 1)),
                      static_cast<int64_t>(g.item(3 * i + 2))});
  return true;
}

inline std::string fixture_param_name(const std::string& set, const std::string& cas) {
  std::string s = set + "_" + cas;
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return s;
}

}  // namespace qwen3vl::test

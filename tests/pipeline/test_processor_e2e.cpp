// Qwen3VLProcessor end to end (chat template + real image files + frames-list video + placeholder
// expansion + tokenizer) vs HF AutoProcessor (tools/reference/pipeline_fixtures.py).
#include <gtest/gtest.h>

#include <fstream>

#include "common/compare.h"
#include "common/models.h"
#include "core/hash.h"
#include "pipeline/processor.h"

using namespace qwen3vl;
using ordered_json = nlohmann::ordered_json;

namespace {

// Image references in the fixture are relative to ../shared/data/images.
void resolve_paths(ordered_json& messages) {
  const std::string base = (test::shared_dir() / "data" / "images").string() + "/";
  for (auto& m : messages) {
    if (!m["content"].is_array()) continue;
    for (auto& part : m["content"]) {
      if (part.contains("image")) part["image"] = base + part["image"].get<std::string>();
      if (part.contains("video") && part["video"].is_array())
        for (auto& f : part["video"]) f = base + f.get<std::string>();
    }
  }
}

std::string fnv_hex(const Tensor& t) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(fnv1a64(t.raw(), t.nbytes())));
  return buf;
}

}  // namespace

TEST(ProcessorE2E, MatchesHFQwen3VLProcessor) {
  std::ifstream f(test::fixtures_dir() / "pipeline" / "processor.json");
  ASSERT_TRUE(f.good());
  ordered_json doc = ordered_json::parse(f);
  auto dir = test::generated_model("--preset tiny --seed 0 --dtype bf16");
  Qwen3VLProcessor proc = Qwen3VLProcessor::load(dir);
  ProcessorOptions o;
  o.min_pixels = doc["image_size"]["shortest_edge"].get<int64_t>();
  o.max_pixels = doc["image_size"]["longest_edge"].get<int64_t>();
  o.video_min_pixels = doc["video_size"]["shortest_edge"].get<int64_t>();
  o.video_max_pixels = doc["video_size"]["longest_edge"].get<int64_t>();
  for (auto c : doc["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    ordered_json messages = c["messages"];
    resolve_paths(messages);
    EXPECT_EQ(chat::render_chat(messages, proc.template_kind()), c["rendered"].get<std::string>());
    ProcessorOutput out = proc(messages, o);
    EXPECT_EQ(out.inputs.input_ids, c["input_ids"].get<std::vector<int64_t>>());
    if (c.contains("image_grid_thw")) {
      ASSERT_EQ(out.inputs.image_grid_thw.size(), c["image_grid_thw"].size());
      for (size_t i = 0; i < out.inputs.image_grid_thw.size(); ++i) {
        const auto& g = out.inputs.image_grid_thw[i];
        EXPECT_EQ((std::vector<int64_t>{g.t, g.h, g.w}), c["image_grid_thw"][i].get<std::vector<int64_t>>());
      }
      EXPECT_EQ(out.inputs.pixel_values.shape(), c["pixel_values_shape"].get<Shape>());
      EXPECT_EQ(fnv_hex(out.inputs.pixel_values), c["pixel_values_fnv1a64"].get<std::string>())
          << "pixel_values differ from HF's (bit-exact expected)";
    }
    if (c.contains("video_grid_thw")) {
      ASSERT_EQ(out.inputs.video_grid_thw.size(), c["video_grid_thw"].size());
      const auto& g = out.inputs.video_grid_thw[0];
      EXPECT_EQ((std::vector<int64_t>{g.t, g.h, g.w}), c["video_grid_thw"][0].get<std::vector<int64_t>>());
      EXPECT_EQ(out.inputs.pixel_values_videos.shape(), c["pixel_values_videos_shape"].get<Shape>());
      EXPECT_EQ(fnv_hex(out.inputs.pixel_values_videos), c["pixel_values_videos_fnv1a64"].get<std::string>())
          << "pixel_values_videos differ from HF's (bit-exact expected)";
    }
  }
}

TEST(ProcessorE2E, ClearErrorsForBadMedia) {
  auto dir = test::generated_model("--preset tiny --seed 0 --dtype bf16");
  Qwen3VLProcessor proc = Qwen3VLProcessor::load(dir);
  auto msg = [](const std::string& ref) {
    return ordered_json::parse(R"([{"role": "user", "content": [{"type": "image", "image": ")" + ref +
                               R"("}, {"type": "text", "text": "x"}]}])");
  };
  EXPECT_THROW(proc(msg("/nonexistent/file.png")), Error);
  EXPECT_THROW(proc(msg("data:image/png;base64,@@@@")), Error);
  EXPECT_THROW(proc(msg("https://example.com/a.png")), Error);
  // Every hostile file the manifest says must be refused is refused through the processor too
  // (the others, e.g. a PNG named .jpg, may decode).
  std::ifstream mf(test::shared_dir() / "data" / "bad-images" / "manifest.json");
  ordered_json manifest = ordered_json::parse(mf);
  int refused = 0;
  for (const auto& e : manifest["files"]) {
    const std::string expected = e["expected"].get<std::string>();
    auto path = test::shared_dir() / "data" / "bad-images" / e["file"].get<std::string>();
    if (expected.rfind("error", 0) == 0 || expected.rfind("reject", 0) == 0) {
      EXPECT_THROW(proc(msg(path.string())), Error) << path;
      ++refused;
    } else {
      try { proc(msg(path.string())); } catch (const Error&) {}
    }
  }
  EXPECT_GE(refused, 5);
}

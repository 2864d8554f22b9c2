// Video frame sampling / resize budget / timestamps vs HF (tools/reference/video_sampling_fixtures.py).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "chat/chat_template.h"
#include "common/compare.h"
#include "core/error.h"
#include "processor/video.h"

using namespace qwen3vl;

static nlohmann::json load_sampling() {
  std::ifstream f(test::fixtures_dir() / "video" / "sampling.json");
  EXPECT_TRUE(f.good());
  return nlohmann::json::parse(f);
}

TEST(VideoSampling, FrameIndicesAndTimestampsMatchHF) {
  auto doc = load_sampling();
  for (const auto& c : doc["sampling"]) {
    VideoProcessorConfig cfg;
    std::optional<double> fps;
    std::optional<int64_t> num_frames;
    if (!c["num_frames"].is_null()) num_frames = c["num_frames"].get<int64_t>();
    else if (!c["fps"].is_null()) fps = c["fps"].get<double>();
    auto idx = sample_frame_indices(c["total"].get<int64_t>(), c["video_fps"].get<double>(), cfg, fps, num_frames);
    EXPECT_EQ(idx, c["indices"].get<std::vector<int64_t>>()) << c.dump();
    auto ts = video_timestamps(idx, c["video_fps"].get<double>(), 2);
    auto want = c["timestamps"].get<std::vector<double>>();
    ASSERT_EQ(ts.size(), want.size());
    for (size_t i = 0; i < ts.size(); ++i) {
      EXPECT_EQ(ts[i], want[i]) << "timestamp " << i << " of " << c.dump();
      EXPECT_EQ(chat::format_seconds(ts[i]), c["stamps"][i].get<std::string>());
    }
  }
}

TEST(VideoSampling, SmartResizeMatchesHF) {
  auto doc = load_sampling();
  for (const auto& s : doc["sizes"]) {
    auto r = smart_resize_video(s["num_frames"], s["height"], s["width"], 2, 32, 4096, 25165824);
    EXPECT_EQ(r.height, s["resized_height"].get<int64_t>()) << s.dump();
    EXPECT_EQ(r.width, s["resized_width"].get<int64_t>()) << s.dump();
  }
}

TEST(VideoSampling, RejectsDegenerateVideos) {
  EXPECT_THROW(sample_frame_indices(0, 30.0, VideoProcessorConfig{}), Error);
  EXPECT_THROW(smart_resize_video(1, 100, 100, 2, 32, 4096, 25165824), Error);   // fewer frames than 2
  EXPECT_THROW(smart_resize_video(4, 16, 100, 2, 32, 4096, 25165824), Error);    // frame below 32 px
  EXPECT_THROW(smart_resize_video(4, 32, 9000, 2, 32, 4096, 25165824), Error);   // aspect > 200
}

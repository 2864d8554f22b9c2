// Video frames path against HF Qwen3VLVideoProcessor + Qwen3VLProcessor._calculate_timestamps
// (transformers 4.57.6): sampled indices, grid, timestamps text and pixel_values (sha256).
#include <gtest/gtest.h>

#include "processor/video.h"
#include "processor_test_util.h"

namespace qwen3vl::test {
namespace {

std::vector<Image> make_frames(int t, int h, int w) {
  std::vector<Image> v(static_cast<size_t>(t));
  for (int k = 0; k < t; ++k) {
    Image& f = v[static_cast<size_t>(k)];
    f.width = w;
    f.height = h;
    f.rgb.resize(size_t(h) * w * 3);
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        for (int c = 0; c < 3; ++c)
          f.rgb[(size_t(y) * w + x) * 3 + c] = static_cast<uint8_t>((7 * x + 13 * y + 61 * c + 29 * k + (x * y % 17)) & 255);
  }
  return v;
}

TEST(Video, MatchesHFVideoProcessor) {
  const nlohmann::json doc = load_json(processor_fixtures() / "videos.json");
  const VideoProcessorConfig base = VideoProcessorConfig::from_json_file(processor_fixtures() / "video_preprocessor_config.json");
  EXPECT_EQ(base.min_pixels, 4096);
  EXPECT_EQ(base.max_pixels, 25165824);
  for (const auto& c : doc["cases"]) {
    const int t = c["frames"], h = c["height"], w = c["width"];
    SCOPED_TRACE(std::to_string(t) + " frames " + std::to_string(w) + "x" + std::to_string(h));
    VideoProcessorConfig cfg = base;
    if (c["kwargs"].contains("size")) {
      cfg.min_pixels = c["kwargs"]["size"]["shortest_edge"];
      cfg.max_pixels = c["kwargs"]["size"]["longest_edge"];
    }
    if (c["kwargs"].contains("fps")) cfg.fps = c["kwargs"]["fps"];
    std::optional<double> vfps;
    if (!c["video_fps"].is_null()) vfps = c["video_fps"].get<double>();
    ProcessedVideo p = preprocess_video(make_frames(t, h, w), vfps, cfg);
    EXPECT_EQ(p.frame_indices, c["frame_indices"].get<std::vector<int64_t>>());
    EXPECT_EQ(p.grid_t, c["grid_thw"][0].get<int64_t>());
    EXPECT_EQ(p.grid_h, c["grid_thw"][1].get<int64_t>());
    EXPECT_EQ(p.grid_w, c["grid_thw"][2].get<int64_t>());
    const auto ts = c["timestamps"].get<std::vector<double>>();
    ASSERT_EQ(p.timestamps.size(), ts.size());
    for (size_t i = 0; i < ts.size(); ++i) {
      EXPECT_EQ(p.timestamps[i], ts[i]);  // same double arithmetic
      EXPECT_EQ(format_timestamp(p.timestamps[i]), c["timestamp_text"][i].get<std::string>());
    }
    ASSERT_EQ(p.pixel_values_videos.shape(), (Shape{c["pixel_values_shape"][0], c["pixel_values_shape"][1]}));
    EXPECT_EQ(sha256_hex(p.pixel_values_videos.raw(), p.pixel_values_videos.nbytes()), c["pixel_values_sha256"].get<std::string>());
    const int64_t cols = p.pixel_values_videos.size(1), rows = p.pixel_values_videos.size(0);
    expect_equal("first row", p.pixel_values_videos.slice_rows(0, 1).reshape({cols}),
                 f32_tensor_from_b64(c["first_row_f32_b64"], {cols}));
    expect_equal("last row", p.pixel_values_videos.slice_rows(rows - 1, rows).reshape({cols}),
                 f32_tensor_from_b64(c["last_row_f32_b64"], {cols}));
  }
}

TEST(Video, SpecWorkedExampleTimestamps) {
  // 30 fps, 120 frames -> 8 samples, stamps 0.283, 1.417, 2.55, 3.683 -> "2.5" (binary 2.55 < 2.55).
  VideoProcessorConfig cfg;
  auto idx = sample_frame_indices(120, 30.0, cfg);
  EXPECT_EQ(idx, (std::vector<int64_t>{0, 17, 34, 51, 68, 85, 102, 119}));
  auto ts = video_timestamps(idx, 30.0, 2);
  ASSERT_EQ(ts.size(), 4u);
  EXPECT_EQ(format_timestamp(ts[0]), "<0.3 seconds>");
  EXPECT_EQ(format_timestamp(ts[1]), "<1.4 seconds>");
  EXPECT_EQ(format_timestamp(ts[2]), "<2.5 seconds>");
  EXPECT_EQ(format_timestamp(ts[3]), "<3.7 seconds>");
  EXPECT_THROW(sample_frame_indices(120, 30.0, cfg, 2.0, 8), Error);  // fps and num_frames exclusive
  EXPECT_EQ(sample_frame_indices(120, 30.0, cfg, std::nullopt, 3), (std::vector<int64_t>{0, 60, 119}));  // 59.5 -> 60
  // Video smart_resize: 1280x720, 8 frames -> 1280x704; frames smaller than 32 px are an error.
  ResizedSize s = smart_resize_video(8, 720, 1280, 2, 32, 4096, 25165824);
  EXPECT_EQ(s.height, 704);
  EXPECT_EQ(s.width, 1280);
  EXPECT_THROW(smart_resize_video(8, 20, 100, 2, 32, 4096, 25165824), Error);
  EXPECT_THROW(smart_resize_video(1, 64, 64, 2, 32, 4096, 25165824), Error);
}

}  // namespace
}  // namespace qwen3vl::test

namespace qwen3vl::test {
namespace {

TEST(VideoFile, MatchesHFReadVideoPyAV) {
  const nlohmann::json doc = load_json(processor_fixtures() / "videos.json");
  const VideoProcessorConfig cfg = VideoProcessorConfig::from_json_file(processor_fixtures() / "video_preprocessor_config.json");
  int n = 0;
  for (const auto& c : doc["files"]) {
    const std::string name = c["file"];
    SCOPED_TRACE(name);
    const auto path = processor_fixtures() / "video" / name;
    VideoFileInfo info = probe_video_file(path);
    EXPECT_EQ(info.total_num_frames, c["total_num_frames"].get<int64_t>());
    ASSERT_TRUE(info.fps.has_value());
    EXPECT_EQ(*info.fps, c["fps"].get<double>());
    const auto idx = c["frame_indices"].get<std::vector<int64_t>>();
    std::vector<Image> frames = decode_video_frames(path, idx);
    ASSERT_EQ(frames.size(), idx.size());
    // Frame pixels vs PyAV's to_ndarray("rgb24"): exact for the RGB (ffv1 bgr0) file; the
    // yuv420p file goes through swscale's YUV->RGB, whose rounding differs between FFmpeg builds
    // (Debian 5.1 here vs PyAV's bundled FFmpeg), so only the mean is compared there.
    const bool rgb_source = name.find("bgr0") != std::string::npos;
    bool all_exact = true;
    for (size_t i = 0; i < frames.size(); ++i) {
      const bool exact = sha256_hex(frames[i].rgb.data(), frames[i].rgb.size()) == c["frames_sha256"][i].get<std::string>();
      all_exact &= exact;
      int64_t sums[3] = {0, 0, 0};
      for (size_t k = 0; k < frames[i].rgb.size(); ++k) sums[k % 3] += frames[i].rgb[k];
      const double np = double(frames[i].width) * frames[i].height;
      for (int ch = 0; ch < 3; ++ch) {
        const double d = (sums[ch] - c["frames_channel_sums"][i][ch].get<int64_t>()) / np;
        std::printf("[video] %-28s frame %lld ch %d %s mean diff %.4f\n", name.c_str(), (long long)idx[i], ch,
                    exact ? "exact" : "inexact", d);
        EXPECT_LT(std::abs(d), 2.0);
      }
      if (rgb_source) EXPECT_TRUE(exact) << "frame " << idx[i];
    }
    ProcessedVideo p = preprocess_video_file(path, cfg);
    EXPECT_EQ(p.frame_indices, idx);
    EXPECT_EQ(p.grid_t, c["grid_thw"][0].get<int64_t>());
    EXPECT_EQ(p.grid_h, c["grid_thw"][1].get<int64_t>());
    EXPECT_EQ(p.grid_w, c["grid_thw"][2].get<int64_t>());
    for (size_t i = 0; i < p.timestamps.size(); ++i)
      EXPECT_EQ(format_timestamp(p.timestamps[i]), c["timestamp_text"][i].get<std::string>());
    const bool pv_exact = sha256_hex(p.pixel_values_videos.raw(), p.pixel_values_videos.nbytes()) ==
                          c["pixel_values_sha256"].get<std::string>();
    std::printf("[video] %-28s pixel_values %s\n", name.c_str(), pv_exact ? "exact" : "inexact (frame decode differs)");
    if (rgb_source || all_exact) EXPECT_TRUE(pv_exact);
    ++n;
  }
  EXPECT_EQ(n, 2);
}

TEST(VideoFile, BadFilesGiveErrors) {
  EXPECT_THROW(probe_video_file(shared_dir() / "data" / "bad-images" / "random_bytes.png"), Error);
  EXPECT_THROW(probe_video_file(shared_dir() / "data" / "bad-images" / "zero_bytes.jpg"), Error);
  EXPECT_THROW(probe_video_file(processor_fixtures() / "video" / "missing.avi"), Error);
}

}  // namespace
}  // namespace qwen3vl::test

#include "pipeline/video_sampling.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"

namespace qwen3vl {

std::vector<int64_t> sample_frame_indices(int64_t total, double video_fps, const VideoSamplingConfig& cfg) {
  QWEN3VL_CHECK(total > 0, "video has no frames");
  int64_t n;
  if (cfg.num_frames) {
    n = *cfg.num_frames;
  } else {
    const double vfps = video_fps > 0 ? video_fps : 24.0;
    n = static_cast<int64_t>(static_cast<double>(total) / vfps * cfg.fps);  // Python int(): truncation
    n = std::min(std::min(std::max(n, cfg.min_frames), cfg.max_frames), total);
  }
  QWEN3VL_CHECK(n > 0, "video frame sampling selected no frames");
  // numpy.linspace(0, total-1, n): start + i * step, last element set to stop exactly.
  std::vector<int64_t> idx(static_cast<size_t>(n));
  const double stop = static_cast<double>(total - 1);
  const double step = n > 1 ? stop / static_cast<double>(n - 1) : 0.0;
  for (int64_t i = 0; i < n; ++i) {
    double v = (i == n - 1 && n > 1) ? stop : static_cast<double>(i) * step;
    idx[static_cast<size_t>(i)] = static_cast<int64_t>(std::nearbyint(v));  // np.round: half to even
  }
  return idx;
}

VideoFrameSize video_smart_resize(int64_t num_frames, int64_t height, int64_t width, int64_t temporal_factor,
                               int64_t factor, int64_t min_pixels, int64_t max_pixels) {
  QWEN3VL_CHECK(num_frames >= temporal_factor, "video: " + std::to_string(num_frames) +
                                                   " frames, must be at least temporal_patch_size " +
                                                   std::to_string(temporal_factor));
  QWEN3VL_CHECK(height >= factor && width >= factor,
                "video frames " + std::to_string(width) + "x" + std::to_string(height) + " are smaller than " +
                    std::to_string(factor) + " pixels");
  QWEN3VL_CHECK(static_cast<double>(std::max(height, width)) / static_cast<double>(std::min(height, width)) <= 200,
                "video aspect ratio must be smaller than 200");
  auto pyround = [](double x) { return static_cast<int64_t>(std::nearbyint(x)); };  // Python round(): half even
  const double H = static_cast<double>(height), W = static_cast<double>(width), F = static_cast<double>(factor);
  int64_t h = pyround(H / F) * factor;
  int64_t w = pyround(W / F) * factor;
  int64_t t = pyround(static_cast<double>(num_frames) / static_cast<double>(temporal_factor)) * temporal_factor;
  if (t * h * w > max_pixels) {
    double beta = std::sqrt(static_cast<double>(num_frames) * H * W / static_cast<double>(max_pixels));
    h = std::max(factor, static_cast<int64_t>(std::floor(H / beta / F)) * factor);
    w = std::max(factor, static_cast<int64_t>(std::floor(W / beta / F)) * factor);
  } else if (t * h * w < min_pixels) {
    double beta = std::sqrt(static_cast<double>(min_pixels) / (static_cast<double>(num_frames) * H * W));
    h = static_cast<int64_t>(std::ceil(H * beta / F)) * factor;
    w = static_cast<int64_t>(std::ceil(W * beta / F)) * factor;
  }
  return {h, w};
}

std::vector<double> calculate_timestamps(std::vector<int64_t> indices, double video_fps, int64_t merge_size) {
  QWEN3VL_CHECK(!indices.empty() && merge_size > 0 && video_fps > 0, "calculate_timestamps: bad arguments");
  while (static_cast<int64_t>(indices.size()) % merge_size != 0) indices.push_back(indices.back());
  std::vector<double> out;
  for (size_t i = 0; i < indices.size(); i += static_cast<size_t>(merge_size)) {
    double a = static_cast<double>(indices[i]) / video_fps;
    double b = static_cast<double>(indices[i + static_cast<size_t>(merge_size) - 1]) / video_fps;
    out.push_back((a + b) / 2);
  }
  return out;
}

}  // namespace qwen3vl

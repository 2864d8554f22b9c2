// Video frame sampling, resizing budget and timestamps of HF's Qwen3VLVideoProcessor /
// Qwen3VLProcessor (transformers 4.57.6): which frames are taken, at what size, and the
// "<t seconds>" stamp of each temporal group.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace qwen3vl {

struct VideoSamplingConfig {
  double fps = 2.0;          // target frames per second (Qwen3VLVideoProcessor.fps)
  int64_t min_frames = 4;
  int64_t max_frames = 768;
  std::optional<int64_t> num_frames;  // exclusive with fps, as in HF
};

// Qwen3VLVideoProcessor.sample_frames: n = int(total / video_fps * fps), clamped to
// [min_frames, max_frames] and to total; indices = round_half_even(linspace(0, total-1, n)).
// video_fps <= 0 means unknown: HF assumes 24.
std::vector<int64_t> sample_frame_indices(int64_t total_frames, double video_fps, const VideoSamplingConfig& cfg);

struct VideoFrameSize {
  int64_t height = 0, width = 0;
};
// The video smart_resize: the pixel budget is over all frames (num_frames * h * w). Throws Error
// for frames smaller than `factor` or aspect ratio > 200 (as 4.57.6 does).
VideoFrameSize video_smart_resize(int64_t num_frames, int64_t height, int64_t width, int64_t temporal_factor,
                               int64_t factor, int64_t min_pixels, int64_t max_pixels);

// Qwen3VLProcessor._calculate_timestamps: pad indices to a multiple of merge_size with the last
// one, t = idx / video_fps, one stamp per group = (first + last) / 2.
std::vector<double> calculate_timestamps(std::vector<int64_t> indices, double video_fps, int64_t merge_size = 2);

}  // namespace qwen3vl

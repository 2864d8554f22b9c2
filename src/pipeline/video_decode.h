// Video file decoding with FFmpeg's libraries (libavformat / libavcodec / libswscale): the frames
// HF's video processor would sample (sample_frame_indices), as uint8 RGB.
#pragma once

#include <filesystem>

#include "pipeline/processor.h"

namespace qwen3vl {

struct VideoDecodeLimits {
  int64_t max_frames_in_file = 1 << 20;  // refuse absurd frame counts
  int64_t max_pixels_per_frame = 8192LL * 8192;
};

// Decodes the frames chosen by `sampling` (HF semantics: n from the file's frame count and
// average frame rate). Throws Error naming the file on any failure.
VideoFrames decode_video_file(const std::filesystem::path& path, const VideoSamplingConfig& sampling,
                              const VideoDecodeLimits& limits = {});

}  // namespace qwen3vl

// Video preprocessing as transformers 4.57.6 Qwen3VLVideoProcessor (torchvision backend, CPU),
// for a video given as decoded RGB frames plus its native fps:
//   1. frame sampling (sample_frames): n = int(N / video_fps * fps), clamped to
//      [min_frames, max_frames] and to N; indices = np.round(np.linspace(0, N - 1, n)) (half to
//      even). video_fps unknown -> 24 (HF warns and does the same).
//   2. video smart_resize over the sampled clip: t*h*w against [min_pixels, max_pixels]
//      (4.57.6 errors when a side < 32 or fewer frames than temporal_patch_size).
//   3. per-frame uint8 AA bicubic resize, fused normalize, last frame repeated to a multiple of
//      temporal_patch_size, patchify (as images; grid_t = padded frames / 2).
//   4. timestamps as Qwen3VLProcessor._calculate_timestamps: indices padded with the last one
//      to a multiple of merge_size, ts = idx / video_fps, mean of first and last per group;
//      rendered "<%.1f seconds>".
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "processor/image.h"
#include "processor/image_processor.h"

namespace qwen3vl {

struct VideoProcessorConfig {
  // Published Qwen3-VL video_preprocessor_config.json values.
  int64_t min_pixels = 4096;      // size.shortest_edge (area over all frames)
  int64_t max_pixels = 25165824;  // size.longest_edge
  int patch_size = 16;
  int temporal_patch_size = 2;
  int merge_size = 2;
  std::array<float, 3> image_mean{0.5f, 0.5f, 0.5f};
  std::array<float, 3> image_std{0.5f, 0.5f, 0.5f};
  double rescale_factor = 1.0 / 255.0;
  double fps = 2.0;  // target sampling rate
  int64_t min_frames = 4;
  int64_t max_frames = 768;
  bool do_sample_frames = true;

  // video_preprocessor_config.json; missing keys take Qwen3VLVideoProcessor class defaults
  // (size {shortest_edge 131072, longest_edge 786432}, fps 2, min/max frames 4/768).
  static VideoProcessorConfig from_json_string(const std::string& json, const std::string& name = "<string>");
  static VideoProcessorConfig from_json_file(const std::filesystem::path& path);
  ImageProcessorConfig as_image_config() const;
};

// Qwen3VLVideoProcessor.sample_frames. Exactly one of fps / num_frames may be set; with neither,
// cfg.fps is used. video_fps: the source's frame rate (nullopt -> 24).
std::vector<int64_t> sample_frame_indices(int64_t total_num_frames, std::optional<double> video_fps,
                                          const VideoProcessorConfig& cfg, std::optional<double> fps = std::nullopt,
                                          std::optional<int64_t> num_frames = std::nullopt);

// transformers.models.qwen3_vl.video_processing_qwen3_vl.smart_resize.
ResizedSize smart_resize_video(int num_frames, int height, int width, int temporal_factor, int factor,
                               int64_t min_pixels, int64_t max_pixels);

// Group timestamps (seconds) and their "<x.y seconds>" text.
std::vector<double> video_timestamps(const std::vector<int64_t>& indices, double video_fps, int merge_size);
std::string format_timestamp(double seconds);  // "<%.1f seconds>"

struct ProcessedVideo {
  Tensor pixel_values_videos;  // [grid_t * grid_h * grid_w, 3 * T * P * P] f32
  int64_t grid_t = 0, grid_h = 0, grid_w = 0;
  int resized_height = 0, resized_width = 0;
  std::vector<int64_t> frame_indices;  // sampled indices into the input frames
  std::vector<double> timestamps;      // one per temporal group
};

// frames: every decoded frame of the video (all the same size); video_fps: its frame rate
// (nullopt -> 24). Samples (if cfg.do_sample_frames), resizes, normalizes and patchifies.
ProcessedVideo preprocess_video(const std::vector<Image>& frames, std::optional<double> video_fps,
                                const VideoProcessorConfig& cfg);

}  // namespace qwen3vl

namespace qwen3vl {

// ------------------------------------------------------------------------------------------------
// Video files (FFmpeg libavformat/libavcodec/libswscale), like transformers' read_video_pyav:
// total_num_frames = the stream's frame count (nb_frames; counted by decoding when the
// container does not store it), fps = the stream's average_rate; frames are decoded in order
// and those whose index is in the sampled set are kept (converted to RGB24 by swscale).
// ------------------------------------------------------------------------------------------------
struct VideoFileInfo {
  int64_t total_num_frames = 0;
  std::optional<double> fps;  // average frame rate; nullopt when unknown
  int width = 0, height = 0;
  std::string codec;
};

VideoFileInfo probe_video_file(const std::filesystem::path& path, const DecodeLimits& limits = {});

// Decodes the frames with the given (ascending) indices. Frames past the end of the stream are
// silently missing, as in read_video_pyav.
std::vector<Image> decode_video_frames(const std::filesystem::path& path, const std::vector<int64_t>& indices,
                                       const DecodeLimits& limits = {});

// probe -> sample_frame_indices -> decode -> preprocess (resize/normalize/patchify/timestamps).
ProcessedVideo preprocess_video_file(const std::filesystem::path& path, const VideoProcessorConfig& cfg,
                                     const DecodeLimits& limits = {});

}  // namespace qwen3vl

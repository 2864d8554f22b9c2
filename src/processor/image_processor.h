// Image preprocessing as transformers 4.57.6 Qwen2VLImageProcessorFast (torchvision backend, CPU)
// does for Qwen3-VL, bit for bit:
//   1. smart_resize (factor = patch_size * merge_size, Python round() = half to even, double math)
//   2. if the size changes: torchvision F.resize(BICUBIC, antialias=True) on uint8 CHW, i.e.
//      torch's CPU uint8 _upsample_bicubic2d_aa (Pillow-SIMD port: separable, horizontal pass
//      first into a uint8 intermediate, Keys cubic a = -0.5, support scaled by the down-scale
//      factor, double weights normalised per output pixel then quantised to int16 with a
//      per-pass precision; each pass rounds and clamps to uint8).
//   3. fused rescale + normalize in f32: mean' = f32(mean) * f32(1 / rescale_factor),
//      std' likewise; p = (f32(x) - mean') / std' (a true division, as torchvision normalize).
//   4. temporal duplication to temporal_patch_size frames, patchify to
//      [grid_t * grid_h * grid_w, C * T * P * P] with rows in merge-window order.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "processor/image.h"

namespace qwen3vl {

struct ImageProcessorConfig {
  // Defaults are the published Qwen3-VL preprocessor_config.json values (NOT the HF class
  // defaults, which from_json falls back to for missing keys).
  int64_t min_pixels = 65536;     // size.shortest_edge (an area)
  int64_t max_pixels = 16777216;  // size.longest_edge (an area)
  int patch_size = 16;
  int temporal_patch_size = 2;
  int merge_size = 2;
  std::array<float, 3> image_mean{0.5f, 0.5f, 0.5f};
  std::array<float, 3> image_std{0.5f, 0.5f, 0.5f};
  double rescale_factor = 1.0 / 255.0;
  bool do_resize = true;
  bool do_rescale = true;
  bool do_normalize = true;

  // Parses preprocessor_config.json like Qwen2VLImageProcessorFast.__init__: "size"
  // {shortest_edge, longest_edge}; top-level "min_pixels"/"max_pixels" override it.
  static ImageProcessorConfig from_json_string(const std::string& json, const std::string& name = "<string>");
  static ImageProcessorConfig from_json_file(const std::filesystem::path& path);
};

struct ResizedSize {
  int height = 0;
  int width = 0;
};

// transformers.models.qwen2_vl.image_processing_qwen2_vl.smart_resize (4.57.6): throws Error when
// the aspect ratio exceeds 200; no minimum-size error.
ResizedSize smart_resize(int height, int width, int factor, int64_t min_pixels, int64_t max_pixels);

// torch uint8 antialiased bicubic resize (see above). Returns a copy when the size is unchanged.
Image resize_bicubic_aa(const Image& img, int out_height, int out_width);

struct ProcessedImage {
  Tensor pixel_values;  // [grid_t * grid_h * grid_w, 3 * T * P * P] f32
  int64_t grid_t = 0, grid_h = 0, grid_w = 0;
  int resized_height = 0, resized_width = 0;
  int64_t num_patches() const { return grid_t * grid_h * grid_w; }
  // Placeholder tokens for the LLM: num_patches / merge_size^2.
  int64_t num_tokens(int merge_size = 2) const { return num_patches() / (merge_size * merge_size); }
};

ProcessedImage preprocess_image(const Image& img, const ImageProcessorConfig& cfg);

// Steps 3-4 on an already resized image (exposed for tests and for video frames).
// frames: equally sized uint8 RGB frames (1 for an image); padded to a multiple of
// temporal_patch_size by repeating the last frame.
Tensor normalize_and_patchify(const std::vector<const Image*>& frames, const ImageProcessorConfig& cfg,
                              int64_t* grid_t, int64_t* grid_h, int64_t* grid_w);

}  // namespace qwen3vl

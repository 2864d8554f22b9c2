// Qwen3VLVideoProcessor (transformers 4.57.6) for decoded frames. See video.h.
#include "processor/video.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace qwen3vl {

VideoProcessorConfig VideoProcessorConfig::from_json_string(const std::string& text, const std::string& name) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    throw Error("video preprocessor config '" + name + "': invalid JSON: " + e.what());
  }
  if (!j.is_object()) throw Error("video preprocessor config '" + name + "': expected a JSON object");
  VideoProcessorConfig c;
  c.min_pixels = 128 * 32 * 32;  // class defaults
  c.max_pixels = 32 * 32 * 768;
  auto field = [&](const char* key) -> const nlohmann::json* {
    auto it = j.find(key);
    return (it == j.end() || it->is_null()) ? nullptr : &*it;
  };
  try {
    if (auto* s = field("size")) {
      if (!s->contains("shortest_edge") || !s->contains("longest_edge"))
        throw Error("video preprocessor config '" + name + "': size must contain 'shortest_edge' and 'longest_edge' keys");
      c.min_pixels = s->at("shortest_edge").get<int64_t>();
      c.max_pixels = s->at("longest_edge").get<int64_t>();
    }
    if (auto* v = field("patch_size")) c.patch_size = v->get<int>();
    if (auto* v = field("temporal_patch_size")) c.temporal_patch_size = v->get<int>();
    if (auto* v = field("merge_size")) c.merge_size = v->get<int>();
    for (auto [key, arr] : {std::pair{"image_mean", &c.image_mean}, std::pair{"image_std", &c.image_std}}) {
      if (auto* v = field(key)) {
        if (!v->is_array() || v->size() != 3) throw Error("video preprocessor config '" + name + "': " + key + " must have 3 numbers");
        for (int i = 0; i < 3; ++i) (*arr)[i] = (*v)[i].get<float>();
      }
    }
    if (auto* v = field("rescale_factor")) c.rescale_factor = v->get<double>();
    if (auto* v = field("fps")) c.fps = v->get<double>();
    if (auto* v = field("min_frames")) c.min_frames = v->get<int64_t>();
    if (auto* v = field("max_frames")) c.max_frames = v->get<int64_t>();
    if (auto* v = field("do_sample_frames")) c.do_sample_frames = v->get<bool>();
  } catch (const nlohmann::json::exception& e) {
    throw Error("video preprocessor config '" + name + "': " + e.what());
  }
  if (c.patch_size <= 0 || c.merge_size <= 0 || c.temporal_patch_size <= 0 || c.min_frames < 1 || c.max_frames < c.min_frames)
    throw Error("video preprocessor config '" + name + "': invalid patch/merge/temporal sizes or frame limits");
  return c;
}

VideoProcessorConfig VideoProcessorConfig::from_json_file(const std::filesystem::path& path) {
  std::ifstream f(path);
  if (!f) throw Error("video preprocessor config '" + path.string() + "': cannot open file");
  std::stringstream ss;
  ss << f.rdbuf();
  return from_json_string(ss.str(), path.string());
}

ImageProcessorConfig VideoProcessorConfig::as_image_config() const {
  ImageProcessorConfig c;
  c.min_pixels = min_pixels;
  c.max_pixels = max_pixels;
  c.patch_size = patch_size;
  c.temporal_patch_size = temporal_patch_size;
  c.merge_size = merge_size;
  c.image_mean = image_mean;
  c.image_std = image_std;
  c.rescale_factor = rescale_factor;
  return c;
}

std::vector<int64_t> sample_frame_indices(int64_t total, std::optional<double> video_fps, const VideoProcessorConfig& cfg,
                                          std::optional<double> fps, std::optional<int64_t> num_frames) {
  if (total <= 0) throw Error("video has no frames");
  if (fps && num_frames) throw Error("`num_frames` and `fps` are mutually exclusive arguments, please use only one!");
  int64_t n;
  if (num_frames) {
    n = *num_frames;
  } else {
    const double f = fps ? *fps : cfg.fps;
    const double vf = video_fps.value_or(24.0);
    if (!(vf > 0)) throw Error("video fps must be positive");
    n = static_cast<int64_t>(static_cast<double>(total) / vf * f);  // Python int(): truncation
    n = std::min(std::min(std::max(n, cfg.min_frames), cfg.max_frames), total);
  }
  if (n <= 0) throw Error("number of frames to sample must be positive");
  // np.linspace(0, total - 1, n).round().astype(int)
  std::vector<int64_t> idx(static_cast<size_t>(n));
  const double stop = static_cast<double>(total - 1);
  if (n == 1) {
    idx[0] = 0;
  } else {
    const double step = stop / static_cast<double>(n - 1);
    for (int64_t i = 0; i < n; ++i) {
      const double y = (i == n - 1) ? stop : static_cast<double>(i) * step + 0.0;
      idx[static_cast<size_t>(i)] = static_cast<int64_t>(std::nearbyint(y));
    }
  }
  return idx;
}

ResizedSize smart_resize_video(int num_frames, int height, int width, int temporal_factor, int factor,
                               int64_t min_pixels, int64_t max_pixels) {
  if (num_frames < temporal_factor)
    throw Error("video: t:" + std::to_string(num_frames) + " must be larger than temporal_factor:" + std::to_string(temporal_factor));
  if (height < factor || width < factor)
    throw Error("video: height:" + std::to_string(height) + " or width:" + std::to_string(width) +
                " must be larger than factor:" + std::to_string(factor));
  const double ratio = static_cast<double>(std::max(height, width)) / std::min(height, width);
  if (ratio > 200) throw Error("video: absolute aspect ratio must be smaller than 200, got " + std::to_string(ratio));
  int64_t h_bar = static_cast<int64_t>(std::nearbyint(static_cast<double>(height) / factor)) * factor;
  int64_t w_bar = static_cast<int64_t>(std::nearbyint(static_cast<double>(width) / factor)) * factor;
  const int64_t t_bar = static_cast<int64_t>(std::nearbyint(static_cast<double>(num_frames) / temporal_factor)) * temporal_factor;
  const int64_t vol = int64_t(num_frames) * height * width;
  if (t_bar * h_bar * w_bar > max_pixels) {
    const double beta = std::sqrt(static_cast<double>(vol) / static_cast<double>(max_pixels));
    h_bar = std::max<int64_t>(factor, static_cast<int64_t>(std::floor(height / beta / factor)) * factor);
    w_bar = std::max<int64_t>(factor, static_cast<int64_t>(std::floor(width / beta / factor)) * factor);
  } else if (t_bar * h_bar * w_bar < min_pixels) {
    const double beta = std::sqrt(static_cast<double>(min_pixels) / static_cast<double>(vol));
    h_bar = static_cast<int64_t>(std::ceil(height * beta / factor)) * factor;
    w_bar = static_cast<int64_t>(std::ceil(width * beta / factor)) * factor;
  }
  return {static_cast<int>(h_bar), static_cast<int>(w_bar)};
}

std::vector<double> video_timestamps(const std::vector<int64_t>& indices_in, double video_fps, int merge_size) {
  std::vector<int64_t> idx = indices_in;
  if (idx.empty()) return {};
  while (idx.size() % static_cast<size_t>(merge_size) != 0) idx.push_back(idx.back());
  std::vector<double> ts;
  for (size_t i = 0; i < idx.size(); i += merge_size) {
    const double a = static_cast<double>(idx[i]) / video_fps, b = static_cast<double>(idx[i + merge_size - 1]) / video_fps;
    ts.push_back((a + b) / 2);
  }
  return ts;
}

std::string format_timestamp(double seconds) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "<%.1f seconds>", seconds);  // glibc: correctly rounded, like Python
  return buf;
}

ProcessedVideo preprocess_video(const std::vector<Image>& frames, std::optional<double> video_fps,
                                const VideoProcessorConfig& cfg) {
  if (frames.empty()) throw Error("video has no frames");
  for (const Image& f : frames)
    if (f.width != frames[0].width || f.height != frames[0].height) throw Error("video frames differ in size");
  ProcessedVideo r;
  if (cfg.do_sample_frames) {
    r.frame_indices = sample_frame_indices(static_cast<int64_t>(frames.size()), video_fps, cfg);
  } else {
    for (size_t i = 0; i < frames.size(); ++i) r.frame_indices.push_back(static_cast<int64_t>(i));
  }
  const int H = frames[0].height, W = frames[0].width;
  const ResizedSize s = smart_resize_video(static_cast<int>(r.frame_indices.size()), H, W, cfg.temporal_patch_size,
                                           cfg.patch_size * cfg.merge_size, cfg.min_pixels, cfg.max_pixels);
  std::vector<Image> resized;
  resized.reserve(r.frame_indices.size());
  for (int64_t i : r.frame_indices) resized.push_back(resize_bicubic_aa(frames[static_cast<size_t>(i)], s.height, s.width));
  std::vector<const Image*> ptrs;
  for (const Image& f : resized) ptrs.push_back(&f);
  r.resized_height = s.height;
  r.resized_width = s.width;
  r.pixel_values_videos = normalize_and_patchify(ptrs, cfg.as_image_config(), &r.grid_t, &r.grid_h, &r.grid_w);
  r.timestamps = video_timestamps(r.frame_indices, video_fps.value_or(24.0), cfg.merge_size);
  return r;
}

}  // namespace qwen3vl

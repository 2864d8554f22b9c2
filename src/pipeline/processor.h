// Qwen3VLProcessor: OpenAI-style chat messages (+ images / videos they reference) -> the model's
// inputs, as HF's Qwen3VLProcessor does: render the chat template, load and preprocess every
// image / video in message order, expand each placeholder to the number of pad tokens its grid
// needs (videos get "<t seconds>" stamps per temporal group), tokenize.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "chat/chat_template.h"
#include "processor/image.h"
#include "processor/image_processor.h"
#include "processor/video.h"
#include "text/qwen3vl_model.h"
#include "tokenizer/tokenizer.h"

namespace qwen3vl {

// Resolves a media reference found in a message ("image": "...", "image_url": {"url": "..."},
// "video": "...") to bytes. The default accepts local paths and data: URLs (base64); servers
// install a stricter one (a media directory, no remote URLs).
using MediaFetcher = std::function<std::vector<uint8_t>(const std::string& ref)>;
std::vector<uint8_t> default_media_fetch(const std::string& ref);
std::filesystem::path default_video_path(const std::string& ref);
// "data:image/png;base64,...." or raw base64 -> bytes; throws Error on bad base64.
std::vector<uint8_t> decode_data_url(const std::string& ref);

struct ProcessorOptions {
  std::optional<int64_t> min_pixels, max_pixels;  // per-request image budget (areas)
  std::optional<int64_t> video_min_pixels, video_max_pixels;  // per-video budget over all frames
  std::optional<double> video_fps;          // frames sampled per second of video (default 2)
  std::optional<int64_t> video_max_frames;  // default 768
  DecodeLimits limits;
  MediaFetcher fetch = default_media_fetch;
  // Maps a video reference to a local file path (servers restrict it to a media directory).
  std::function<std::filesystem::path(const std::string& ref)> resolve_video_path = default_video_path;
  chat::ChatTemplateOptions chat;
};

struct MediaInfo {
  std::string kind;  // "image" | "video"
  std::string source;
  int width = 0, height = 0;                  // as decoded (after EXIF orientation)
  int resized_width = 0, resized_height = 0;  // fed to the vision tower
  GridTHW grid;
  int64_t tokens = 0;                         // placeholder tokens in the prompt
  int64_t frames = 0;                         // videos: frames used
  std::vector<double> timestamps;             // videos: one per temporal group
};

struct ProcessorOutput {
  std::string prompt;  // rendered and expanded text
  MultimodalInputs inputs;
  std::vector<MediaInfo> media;
};

class Qwen3VLProcessor {
 public:
  // Reads tokenizer.json, preprocessor_config.json, video_preprocessor_config.json and the chat
  // template (chat_template.json / chat_template.jinja / tokenizer_config.json). An unrecognised
  // template is reported through `warn` (default: stderr) and rendered as Qwen3-VL Instruct.
  static Qwen3VLProcessor load(const std::filesystem::path& dir,
                               const std::function<void(const std::string&)>& warn = nullptr);

  ProcessorOutput operator()(const nlohmann::ordered_json& messages, const ProcessorOptions& opts = {}) const;

  const Tokenizer& tokenizer() const { return tokenizer_; }
  chat::TemplateKind template_kind() const { return template_kind_; }
  const ImageProcessorConfig& image_config() const { return image_cfg_; }
  const VideoProcessorConfig& video_config() const { return video_cfg_; }

 private:
  Tokenizer tokenizer_;
  ImageProcessorConfig image_cfg_;
  VideoProcessorConfig video_cfg_;
  chat::TemplateKind template_kind_ = chat::TemplateKind::Instruct;
};

}  // namespace qwen3vl

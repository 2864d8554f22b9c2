#include "pipeline/processor.h"

#include <cstdio>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "pipeline/video_decode.h"

namespace qwen3vl {

using ordered_json = nlohmann::ordered_json;

namespace {

std::string read_text(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  QWEN3VL_CHECK(f.good(), "cannot read " + p.string());
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::vector<uint8_t> read_bytes(const std::filesystem::path& p, size_t max_bytes) {
  std::error_code ec;
  auto size = std::filesystem::file_size(p, ec);
  QWEN3VL_CHECK(!ec, "cannot read media file '" + p.string() + "': " + ec.message());
  QWEN3VL_CHECK(size <= max_bytes, "media file '" + p.string() + "' is too large (" + std::to_string(size) + " bytes)");
  std::ifstream f(p, std::ios::binary);
  QWEN3VL_CHECK(f.good(), "cannot open media file '" + p.string() + "'");
  std::vector<uint8_t> b(size);
  f.read(reinterpret_cast<char*>(b.data()), static_cast<std::streamsize>(size));
  QWEN3VL_CHECK(static_cast<size_t>(f.gcount()) == size, "short read of media file '" + p.string() + "'");
  return b;
}

// The template text a checkpoint ships, or "" if none.
std::string find_chat_template(const std::filesystem::path& dir) {
  if (std::filesystem::exists(dir / "chat_template.jinja")) return read_text(dir / "chat_template.jinja");
  if (std::filesystem::exists(dir / "chat_template.json")) {
    auto j = nlohmann::json::parse(read_text(dir / "chat_template.json"), nullptr, false);
    QWEN3VL_CHECK(!j.is_discarded() && j.is_object(), (dir / "chat_template.json").string() + ": not a JSON object");
    if (j.contains("chat_template") && j["chat_template"].is_string()) return j["chat_template"].get<std::string>();
  }
  if (std::filesystem::exists(dir / "tokenizer_config.json")) {
    auto j = nlohmann::json::parse(read_text(dir / "tokenizer_config.json"), nullptr, false);
    QWEN3VL_CHECK(!j.is_discarded() && j.is_object(), (dir / "tokenizer_config.json").string() + ": not a JSON object");
    if (j.contains("chat_template") && j["chat_template"].is_string()) return j["chat_template"].get<std::string>();
  }
  return "";
}

std::string media_ref(const ordered_json& part, const char* key) {
  // {"type": "image", "image": "..."} / {"image_url": {"url": "..."}} / {"type": "image", "url"|"path": "..."}
  auto str_of = [](const ordered_json& v) -> std::string {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_object() && v.contains("url") && v["url"].is_string()) return v["url"].get<std::string>();
    return "";
  };
  for (const char* k : {key, "image_url", "video_url", "url", "path"}) {
    if (part.contains(k)) {
      std::string s = str_of(part[k]);
      if (!s.empty()) return s;
    }
  }
  return "";
}

int b64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62;
  if (c == '/' || c == '_') return 63;
  return -1;
}

}  // namespace

std::vector<uint8_t> decode_data_url(const std::string& ref) {
  std::string_view s = ref;
  if (s.rfind("data:", 0) == 0) {
    auto comma = s.find(',');
    QWEN3VL_CHECK(comma != std::string_view::npos, "malformed data: URL (no comma)");
    QWEN3VL_CHECK(s.substr(0, comma).find(";base64") != std::string_view::npos, "data: URL must be base64-encoded");
    s = s.substr(comma + 1);
  }
  std::vector<uint8_t> out;
  out.reserve(s.size() / 4 * 3);
  uint32_t acc = 0;
  int bits = 0, pad = 0;
  for (unsigned char c : s) {
    if (c == '=') { ++pad; continue; }
    if (c == '\n' || c == '\r' || c == ' ' || c == '\t') continue;
    QWEN3VL_CHECK(pad == 0, "invalid base64: data after '=' padding");
    int v = b64_value(c);
    QWEN3VL_CHECK(v >= 0, "invalid base64 character in image data");
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<uint8_t>((acc >> bits) & 0xff));
    }
  }
  QWEN3VL_CHECK(!out.empty(), "empty base64 image data");
  return out;
}

std::vector<uint8_t> default_media_fetch(const std::string& ref) {
  QWEN3VL_CHECK(!ref.empty(), "media reference is empty");
  if (ref.rfind("data:", 0) == 0) return decode_data_url(ref);
  QWEN3VL_CHECK(ref.rfind("http://", 0) != 0 && ref.rfind("https://", 0) != 0,
                "remote media URLs are not fetched: '" + ref + "' (download it and pass a local path)");
  std::string path = ref.rfind("file://", 0) == 0 ? ref.substr(7) : ref;
  return read_bytes(path, size_t(1) << 30);
}

std::filesystem::path default_video_path(const std::string& ref) {
  QWEN3VL_CHECK(ref.rfind("http://", 0) != 0 && ref.rfind("https://", 0) != 0,
                "remote media URLs are not fetched: '" + ref + "' (download it and pass a local path)");
  return ref.rfind("file://", 0) == 0 ? ref.substr(7) : ref;
}

Qwen3VLProcessor Qwen3VLProcessor::load(const std::filesystem::path& dir,
                                        const std::function<void(const std::string&)>& warn) {
  Qwen3VLProcessor p;
  auto tok = std::filesystem::exists(dir / "tokenizer.json") ? dir / "tokenizer.json" : dir;
  p.tokenizer_ = Tokenizer::load(tok);
  if (std::filesystem::exists(dir / "preprocessor_config.json"))
    p.image_cfg_ = ImageProcessorConfig::from_json_file(dir / "preprocessor_config.json");
  // Video defaults: the published video_preprocessor_config.json.
  p.video_cfg_ = p.image_cfg_;
  p.video_cfg_.min_pixels = 4096;
  p.video_cfg_.max_pixels = 25165824;
  if (std::filesystem::exists(dir / "video_preprocessor_config.json")) {
    p.video_cfg_ = ImageProcessorConfig::from_json_file(dir / "video_preprocessor_config.json");
    auto j = nlohmann::json::parse(read_text(dir / "video_preprocessor_config.json"), nullptr, false);
    if (j.is_object()) {
      if (j.contains("fps") && j["fps"].is_number()) p.video_sampling_.fps = j["fps"].get<double>();
      if (j.contains("min_frames") && j["min_frames"].is_number_integer()) p.video_sampling_.min_frames = j["min_frames"];
      if (j.contains("max_frames") && j["max_frames"].is_number_integer()) p.video_sampling_.max_frames = j["max_frames"];
    }
  }
  std::string tmpl = find_chat_template(dir);
  p.template_kind_ = tmpl.empty() ? chat::TemplateKind::Unknown : chat::identify_template(tmpl);
  if (p.template_kind_ == chat::TemplateKind::Unknown) {
    std::string msg = tmpl.empty()
        ? "WARNING: " + dir.string() + " ships no chat template; using the built-in Qwen3-VL Instruct template"
        : "WARNING: the chat template in " + dir.string() +
              " is not one of the Qwen3-VL templates this engine renders natively; prompts are rendered with "
              "the built-in Qwen3-VL Instruct template and may differ from HF apply_chat_template";
    if (warn) warn(msg); else std::fprintf(stderr, "%s\n", msg.c_str());
    p.template_kind_ = chat::TemplateKind::Instruct;
  }
  return p;
}

ProcessorOutput Qwen3VLProcessor::operator()(const ordered_json& messages, const ProcessorOptions& opts) const {
  ProcessorOutput out;
  const std::string rendered = chat::render_chat(messages, template_kind_, opts.chat);

  ImageProcessorConfig icfg = image_cfg_;
  if (opts.min_pixels) icfg.min_pixels = *opts.min_pixels;
  if (opts.max_pixels) icfg.max_pixels = *opts.max_pixels;
  QWEN3VL_CHECK(icfg.min_pixels > 0 && icfg.min_pixels <= icfg.max_pixels,
                "image min_pixels must be positive and <= max_pixels");
  ImageProcessorConfig vcfg = video_cfg_;
  if (opts.video_min_pixels) vcfg.min_pixels = *opts.video_min_pixels;
  if (opts.video_max_pixels) vcfg.max_pixels = *opts.video_max_pixels;
  const int64_t merge2 = static_cast<int64_t>(icfg.merge_size) * icfg.merge_size;

  std::vector<int64_t> image_tokens;
  std::vector<chat::VideoPlaceholder> videos;
  std::vector<Tensor> image_pv, video_pv;
  for (const ordered_json* part : chat::rendered_media_parts(messages, template_kind_)) {
    MediaInfo info;
    if (chat::is_image_part(*part)) {
      info.kind = "image";
      info.source = media_ref(*part, "image");
      QWEN3VL_CHECK(!info.source.empty(), "image part without a source: " + part->dump());
      std::vector<uint8_t> bytes = opts.fetch(info.source);
      std::string name = info.source.rfind("data:", 0) == 0 ? "<data URL image>" : info.source;
      Image img = decode_image(bytes, opts.limits, name);
      ProcessedImage pi = preprocess_image(img, icfg);
      info.width = img.width;
      info.height = img.height;
      info.resized_width = pi.resized_width;
      info.resized_height = pi.resized_height;
      info.grid = GridTHW{pi.grid_t, pi.grid_h, pi.grid_w};
      info.tokens = pi.num_patches() / merge2;
      image_tokens.push_back(info.tokens);
      out.inputs.image_grid_thw.push_back(info.grid);
      image_pv.push_back(pi.pixel_values);
    } else {
      info.kind = "video";
      VideoFrames vf;
      const ordered_json* v = part->contains("video") ? &(*part)["video"] : nullptr;
      VideoSamplingConfig sampling = video_sampling_;
      if (opts.video.num_frames) sampling.num_frames = opts.video.num_frames;
      if (opts.video.fps != VideoSamplingConfig{}.fps) sampling.fps = opts.video.fps;
      if (opts.video.max_frames != VideoSamplingConfig{}.max_frames) sampling.max_frames = opts.video.max_frames;
      if (v && v->is_array()) {
        // A list of frames, taken as already sampled at `fps` (part["fps"], else the sampling fps).
        vf.fps = part->contains("fps") && (*part)["fps"].is_number() ? (*part)["fps"].get<double>() : sampling.fps;
        info.source = "frames[" + std::to_string(v->size()) + "]";
        int64_t i = 0;
        for (const auto& fr : *v) {
          QWEN3VL_CHECK(fr.is_string(), "video frames must be image references (strings)");
          vf.frames.push_back(decode_image(opts.fetch(fr.get<std::string>()), opts.limits, fr.get<std::string>()));
          vf.indices.push_back(i++);
        }
        QWEN3VL_CHECK(!vf.frames.empty(), "video part with no frames");
      } else {
        info.source = media_ref(*part, "video");
        QWEN3VL_CHECK(!info.source.empty(), "video part without a source: " + part->dump());
        QWEN3VL_CHECK(info.source.rfind("data:", 0) != 0, "videos must be files, not data: URLs");
        vf = decode_video_file(opts.resolve_video_path(info.source), sampling);
      }
      for (const Image& f : vf.frames)
        QWEN3VL_CHECK(f.width == vf.frames[0].width && f.height == vf.frames[0].height,
                      "video frames must all have the same size");
      const int64_t n = static_cast<int64_t>(vf.frames.size());
      VideoFrameSize rs = video_smart_resize(n, vf.frames[0].height, vf.frames[0].width, vcfg.temporal_patch_size,
                                             static_cast<int64_t>(vcfg.patch_size) * vcfg.merge_size, vcfg.min_pixels,
                                             vcfg.max_pixels);
      std::vector<Image> resized;
      resized.reserve(vf.frames.size());
      for (const Image& f : vf.frames)
        resized.push_back(resize_bicubic_aa(f, static_cast<int>(rs.height), static_cast<int>(rs.width)));
      std::vector<const Image*> ptrs;
      for (const Image& f : resized) ptrs.push_back(&f);
      int64_t gt = 0, gh = 0, gw = 0;
      Tensor pv = normalize_and_patchify(ptrs, vcfg, &gt, &gh, &gw);
      info.width = vf.frames[0].width;
      info.height = vf.frames[0].height;
      info.resized_width = static_cast<int>(rs.width);
      info.resized_height = static_cast<int>(rs.height);
      info.grid = GridTHW{gt, gh, gw};
      info.frames = n;
      info.timestamps = calculate_timestamps(vf.indices, vf.fps > 0 ? vf.fps : 24.0, vcfg.temporal_patch_size);
      QWEN3VL_CHECK(static_cast<int64_t>(info.timestamps.size()) == gt, "video: timestamp groups != grid_t");
      info.tokens = gt * gh * gw / merge2;
      videos.push_back({info.timestamps, gh * gw / merge2});
      out.inputs.video_grid_thw.push_back(info.grid);
      video_pv.push_back(pv);
    }
    out.media.push_back(std::move(info));
  }

  auto concat_rows = [](const std::vector<Tensor>& parts) {
    if (parts.empty()) return Tensor();
    int64_t rows = 0, cols = parts[0].size(1);
    for (const Tensor& t : parts) rows += t.size(0);
    Tensor r = Tensor::empty({rows, cols}, DType::F32);
    float* d = r.data<float>();
    for (const Tensor& t : parts) {
      std::copy(t.data<float>(), t.data<float>() + t.numel(), d);
      d += t.numel();
    }
    return r;
  };
  out.inputs.pixel_values = concat_rows(image_pv);
  out.inputs.pixel_values_videos = concat_rows(video_pv);

  std::string text = chat::expand_image_pads(rendered, image_tokens);
  text = chat::expand_video_pads(text, videos);
  std::vector<int32_t> ids = tokenizer_.encode(text);
  out.inputs.input_ids.assign(ids.begin(), ids.end());
  out.prompt = std::move(text);
  return out;
}

}  // namespace qwen3vl

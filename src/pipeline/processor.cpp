#include "pipeline/processor.h"

#include <cstdio>
#include <fstream>
#include <sstream>

#include "core/error.h"

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
  if (std::filesystem::exists(dir / "video_preprocessor_config.json"))
    p.video_cfg_ = VideoProcessorConfig::from_json_file(dir / "video_preprocessor_config.json");
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
  VideoProcessorConfig vcfg = video_cfg_;
  if (opts.video_min_pixels) vcfg.min_pixels = *opts.video_min_pixels;
  if (opts.video_max_pixels) vcfg.max_pixels = *opts.video_max_pixels;
  if (opts.video_fps) vcfg.fps = *opts.video_fps;
  if (opts.video_max_frames) vcfg.max_frames = *opts.video_max_frames;
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
      const ordered_json* v = part->contains("video") ? &(*part)["video"] : nullptr;
      ProcessedVideo pv;
      if (v && v->is_array()) {
        // A list of frames, taken as already sampled at part["fps"] (default: the sampling fps),
        // as HF does for frames passed with do_sample_frames=False.
        const double fps =
            part->contains("fps") && (*part)["fps"].is_number() ? (*part)["fps"].get<double>() : vcfg.fps;
        info.source = "frames[" + std::to_string(v->size()) + "]";
        std::vector<Image> frames;
        for (const auto& fr : *v) {
          QWEN3VL_CHECK(fr.is_string(), "video frames must be image references (strings)");
          frames.push_back(decode_image(opts.fetch(fr.get<std::string>()), opts.limits, fr.get<std::string>()));
        }
        QWEN3VL_CHECK(!frames.empty(), "video part with no frames");
        info.width = frames[0].width;
        info.height = frames[0].height;
        VideoProcessorConfig c = vcfg;
        c.do_sample_frames = false;
        pv = preprocess_video(frames, fps, c);
      } else {
        info.source = media_ref(*part, "video");
        QWEN3VL_CHECK(!info.source.empty(), "video part without a source: " + part->dump());
        QWEN3VL_CHECK(info.source.rfind("data:", 0) != 0, "videos must be files, not data: URLs");
        const std::filesystem::path path = opts.resolve_video_path(info.source);
        VideoFileInfo fi = probe_video_file(path, opts.limits);
        info.width = fi.width;
        info.height = fi.height;
        pv = preprocess_video_file(path, vcfg, opts.limits);
      }
      info.resized_width = pv.resized_width;
      info.resized_height = pv.resized_height;
      info.grid = GridTHW{pv.grid_t, pv.grid_h, pv.grid_w};
      info.frames = static_cast<int64_t>(pv.frame_indices.size());
      info.timestamps = pv.timestamps;
      QWEN3VL_CHECK(static_cast<int64_t>(info.timestamps.size()) == pv.grid_t, "video: timestamp groups != grid_t");
      info.tokens = pv.grid_t * pv.grid_h * pv.grid_w / merge2;
      videos.push_back({info.timestamps, pv.grid_h * pv.grid_w / merge2});
      out.inputs.video_grid_thw.push_back(info.grid);
      video_pv.push_back(pv.pixel_values_videos);
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

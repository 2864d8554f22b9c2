// Qwen2VLImageProcessorFast (transformers 4.57.6) preprocessing, bit-exact. See image_processor.h.
#include "processor/image_processor.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace qwen3vl {

// ------------------------------------------------------------------------------------------------
// Config
// ------------------------------------------------------------------------------------------------
ImageProcessorConfig ImageProcessorConfig::from_json_string(const std::string& text, const std::string& name) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    throw Error("preprocessor config '" + name + "': invalid JSON: " + e.what());
  }
  if (!j.is_object()) throw Error("preprocessor config '" + name + "': expected a JSON object");
  ImageProcessorConfig c;
  // Qwen2VLImageProcessorFast class defaults, used for keys the file does not set.
  c.min_pixels = 56 * 56;
  c.max_pixels = 28 * 28 * 1280;
  c.patch_size = 14;
  c.temporal_patch_size = 2;
  c.merge_size = 2;
  c.image_mean = {0.48145466f, 0.4578275f, 0.40821073f};  // OPENAI_CLIP_MEAN
  c.image_std = {0.26862954f, 0.26130258f, 0.27577711f};  // OPENAI_CLIP_STD
  c.rescale_factor = 1.0 / 255.0;
  auto field = [&](const char* key) -> const nlohmann::json* {
    auto it = j.find(key);
    return (it == j.end() || it->is_null()) ? nullptr : &*it;
  };
  auto get_int = [&](const nlohmann::json& v, const std::string& key) -> int64_t {
    if (!v.is_number_integer()) throw Error("preprocessor config '" + name + "': field '" + key + "' must be an integer");
    return v.get<int64_t>();
  };
  try {
    if (auto* s = field("size")) {
      if (!s->contains("shortest_edge") || !s->contains("longest_edge"))
        throw Error("preprocessor config '" + name + "': size must contain 'shortest_edge' and 'longest_edge' keys");
      c.min_pixels = get_int(s->at("shortest_edge"), "size.shortest_edge");
      c.max_pixels = get_int(s->at("longest_edge"), "size.longest_edge");
    }
    if (auto* v = field("min_pixels")) c.min_pixels = get_int(*v, "min_pixels");
    if (auto* v = field("max_pixels")) c.max_pixels = get_int(*v, "max_pixels");
    if (auto* v = field("patch_size")) c.patch_size = static_cast<int>(get_int(*v, "patch_size"));
    if (auto* v = field("temporal_patch_size")) c.temporal_patch_size = static_cast<int>(get_int(*v, "temporal_patch_size"));
    if (auto* v = field("merge_size")) c.merge_size = static_cast<int>(get_int(*v, "merge_size"));
    auto triple = [&](const char* key, std::array<float, 3>& out) {
      if (auto* v = field(key)) {
        if (v->is_number()) {
          out.fill(v->get<float>());
        } else if (v->is_array() && v->size() == 3) {
          for (int i = 0; i < 3; ++i) out[i] = (*v)[i].get<float>();  // Python float -> torch f32
        } else {
          throw Error("preprocessor config '" + name + "': field '" + key + "' must be a number or 3 numbers");
        }
      }
    };
    triple("image_mean", c.image_mean);
    triple("image_std", c.image_std);
    if (auto* v = field("rescale_factor")) c.rescale_factor = v->get<double>();
    if (auto* v = field("do_resize")) c.do_resize = v->get<bool>();
    if (auto* v = field("do_rescale")) c.do_rescale = v->get<bool>();
    if (auto* v = field("do_normalize")) c.do_normalize = v->get<bool>();
  } catch (const nlohmann::json::exception& e) {
    throw Error("preprocessor config '" + name + "': " + e.what());
  }
  if (c.patch_size <= 0 || c.merge_size <= 0 || c.temporal_patch_size <= 0)
    throw Error("preprocessor config '" + name + "': patch_size, merge_size, temporal_patch_size must be positive");
  if (c.min_pixels < 0 || c.max_pixels <= 0 || c.min_pixels > c.max_pixels)
    throw Error("preprocessor config '" + name + "': need 0 <= min_pixels <= max_pixels, got " +
                std::to_string(c.min_pixels) + ", " + std::to_string(c.max_pixels));
  for (float s : c.image_std)
    if (s == 0.0f) throw Error("preprocessor config '" + name + "': image_std has a zero entry");
  return c;
}

ImageProcessorConfig ImageProcessorConfig::from_json_file(const std::filesystem::path& path) {
  std::ifstream f(path);
  if (!f) throw Error("preprocessor config '" + path.string() + "': cannot open file");
  std::stringstream ss;
  ss << f.rdbuf();
  return from_json_string(ss.str(), path.string());
}

// ------------------------------------------------------------------------------------------------
// smart_resize
// ------------------------------------------------------------------------------------------------
ResizedSize smart_resize(int height, int width, int factor, int64_t min_pixels, int64_t max_pixels) {
  if (height <= 0 || width <= 0) throw Error("smart_resize: invalid image size " + std::to_string(width) + "x" + std::to_string(height));
  const double ratio = static_cast<double>(std::max(height, width)) / std::min(height, width);
  if (ratio > 200)
    throw Error("image of " + std::to_string(width) + "x" + std::to_string(height) +
                ": absolute aspect ratio must be smaller than 200, got " + std::to_string(ratio));
  // Python round(): half to even (the default FE_TONEAREST mode of nearbyint).
  int64_t h_bar = static_cast<int64_t>(std::nearbyint(static_cast<double>(height) / factor)) * factor;
  int64_t w_bar = static_cast<int64_t>(std::nearbyint(static_cast<double>(width) / factor)) * factor;
  const int64_t area = int64_t(height) * width;
  if (h_bar * w_bar > max_pixels) {
    const double beta = std::sqrt(static_cast<double>(area) / static_cast<double>(max_pixels));
    h_bar = std::max<int64_t>(factor, static_cast<int64_t>(std::floor(height / beta / factor)) * factor);
    w_bar = std::max<int64_t>(factor, static_cast<int64_t>(std::floor(width / beta / factor)) * factor);
  } else if (h_bar * w_bar < min_pixels) {
    const double beta = std::sqrt(static_cast<double>(min_pixels) / static_cast<double>(area));
    h_bar = static_cast<int64_t>(std::ceil(height * beta / factor)) * factor;
    w_bar = static_cast<int64_t>(std::ceil(width * beta / factor)) * factor;
  }
  if (h_bar <= 0 || w_bar <= 0 || h_bar > (1 << 20) || w_bar > (1 << 20))
    throw Error("smart_resize: image of " + std::to_string(width) + "x" + std::to_string(height) +
                " gives an unusable target size " + std::to_string(w_bar) + "x" + std::to_string(h_bar));
  return {static_cast<int>(h_bar), static_cast<int>(w_bar)};
}

// ------------------------------------------------------------------------------------------------
// uint8 antialiased bicubic resize (torch CPU / Pillow-SIMD arithmetic)
// ------------------------------------------------------------------------------------------------
namespace {

// HelperInterpCubic::aa_filter with Keys a = -0.5 (torch's cubic_convolution1/2 forms).
inline double cubic_aa_filter(double x) {
  constexpr double a = -0.5;
  x = std::abs(x);
  if (x < 1.0) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2.0) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  return 0.0;
}

struct AAWeights {
  std::vector<int64_t> xmin, xsize;
  std::vector<int16_t> w;  // [out_size, max_interp_size]
  int max_interp_size = 0;
  unsigned precision = 0;
};

// HelperInterpBase::_compute_index_ranges_weights (antialias=true) + _compute_index_ranges_int16_weights.
AAWeights compute_aa_weights(int64_t in_size, int64_t out_size) {
  const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);  // area_pixel_compute_scale
  const double support = (scale >= 1.0) ? (4 * 0.5) * scale : 4 * 0.5;
  AAWeights r;
  r.max_interp_size = static_cast<int>(std::ceil(support)) * 2 + 1;
  const int64_t M = r.max_interp_size;
  std::vector<double> wd(static_cast<size_t>(out_size * M), 0.0);
  r.xmin.resize(out_size);
  r.xsize.resize(out_size);
  double wt_max = 0.0;
  for (int64_t i = 0; i < out_size; ++i) {
    const double center = scale * (i + 0.5);
    double total_w = 0.0;
    const double invscale = (scale >= 1.0) ? 1.0 / scale : 1.0;
    int64_t xmin = std::max(static_cast<int64_t>(center - support + 0.5), int64_t(0));
    int64_t xsize = std::min(static_cast<int64_t>(center + support + 0.5), in_size) - xmin;
    xsize = std::clamp(xsize, int64_t(0), M);
    double* wp = &wd[static_cast<size_t>(i * M)];
    int64_t j = 0;
    for (; j < xsize; ++j) {
      const double w = cubic_aa_filter((j + xmin - center + 0.5) * invscale);
      wp[j] = w;
      total_w += w;
    }
    double wmax_i = 0.0;
    if (total_w != 0.0) {
      for (j = 0; j < xsize; ++j) {
        wp[j] /= total_w;
        wmax_i = std::max(wmax_i, wp[j]);
      }
    }
    for (; j < M; ++j) wp[j] = 0.0;
    wt_max = std::max(wt_max, wmax_i);
    r.xmin[i] = xmin;
    r.xsize[i] = xsize;
  }
  unsigned prec = 0;
  for (prec = 0; prec < 22; ++prec) {
    const int next_value = static_cast<int>(0.5 + wt_max * (1 << (prec + 1)));
    if (next_value >= (1 << 15)) break;
  }
  r.precision = prec;
  r.w.resize(wd.size());
  for (size_t k = 0; k < wd.size(); ++k) {
    const double v = wd[k] * (1 << prec);
    r.w[k] = static_cast<int16_t>((v < 0) ? static_cast<int>(-0.5 + v) : static_cast<int>(0.5 + v));
  }
  return r;
}

inline uint8_t clamp_u8_shift(int acc, unsigned prec) {
  const int v = acc >> prec;  // arithmetic shift (floor), as in torch
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

}  // namespace

Image resize_bicubic_aa(const Image& in, int out_h, int out_w) {
  if (out_h <= 0 || out_w <= 0) throw Error("resize: invalid output size");
  if (out_h == in.height && out_w == in.width) return in;
  const int in_w = in.width, in_h = in.height;
  // Horizontal pass (width) first into a uint8 [in_h, out_w, 3] buffer, then vertical.
  Image tmp;
  const Image* src = &in;
  if (out_w != in_w) {
    const AAWeights W = compute_aa_weights(in_w, out_w);
    tmp.width = out_w;
    tmp.height = in_h;
    tmp.rgb.resize(static_cast<size_t>(out_w) * in_h * 3);
    const int rnd = 1 << (W.precision - 1);
    for (int y = 0; y < in_h; ++y) {
      const uint8_t* row = in.rgb.data() + static_cast<size_t>(y) * in_w * 3;
      uint8_t* orow = tmp.rgb.data() + static_cast<size_t>(y) * out_w * 3;
      for (int x = 0; x < out_w; ++x) {
        const int16_t* k = &W.w[static_cast<size_t>(x) * W.max_interp_size];
        const uint8_t* s = row + W.xmin[x] * 3;
        int a0 = rnd, a1 = rnd, a2 = rnd;
        for (int64_t j = 0; j < W.xsize[x]; ++j) {
          a0 += s[3 * j] * k[j];
          a1 += s[3 * j + 1] * k[j];
          a2 += s[3 * j + 2] * k[j];
        }
        orow[3 * x] = clamp_u8_shift(a0, W.precision);
        orow[3 * x + 1] = clamp_u8_shift(a1, W.precision);
        orow[3 * x + 2] = clamp_u8_shift(a2, W.precision);
      }
    }
    src = &tmp;
  }
  if (out_h == in_h) return tmp;  // only the width changed
  const AAWeights H = compute_aa_weights(in_h, out_h);
  Image out;
  out.width = out_w;
  out.height = out_h;
  out.rgb.resize(static_cast<size_t>(out_w) * out_h * 3);
  const size_t stride = static_cast<size_t>(out_w) * 3;
  const int rnd = 1 << (H.precision - 1);
  std::vector<int> acc(stride);
  for (int y = 0; y < out_h; ++y) {
    const int16_t* k = &H.w[static_cast<size_t>(y) * H.max_interp_size];
    std::fill(acc.begin(), acc.end(), rnd);
    for (int64_t j = 0; j < H.xsize[y]; ++j) {
      const uint8_t* s = src->rgb.data() + static_cast<size_t>(H.xmin[y] + j) * stride;
      const int kj = k[j];
      for (size_t i = 0; i < stride; ++i) acc[i] += s[i] * kj;
    }
    uint8_t* o = out.rgb.data() + static_cast<size_t>(y) * stride;
    for (size_t i = 0; i < stride; ++i) o[i] = clamp_u8_shift(acc[i], H.precision);
  }
  return out;
}

// ------------------------------------------------------------------------------------------------
// Normalize + patchify
// ------------------------------------------------------------------------------------------------
Tensor normalize_and_patchify(const std::vector<const Image*>& frames, const ImageProcessorConfig& cfg,
                              int64_t* grid_t, int64_t* grid_h, int64_t* grid_w) {
  QWEN3VL_CHECK(!frames.empty(), "normalize_and_patchify: no frames");
  const int H = frames[0]->height, W = frames[0]->width;
  for (const Image* f : frames)
    QWEN3VL_CHECK(f->height == H && f->width == W, "normalize_and_patchify: frames differ in size");
  const int P = cfg.patch_size, M = cfg.merge_size, T = cfg.temporal_patch_size;
  if (H % (P * M) != 0 || W % (P * M) != 0)
    throw Error("image of " + std::to_string(W) + "x" + std::to_string(H) + " is not divisible by patch_size*merge_size = " +
                std::to_string(P * M) + " (needs do_resize)");
  const int64_t nf = static_cast<int64_t>(frames.size());
  const int64_t gt = (nf + T - 1) / T;  // frames padded with the last one
  const int64_t gh = H / P, gw = W / P;

  // Value table: the 256 possible outputs per channel, computed with torch's f32 arithmetic.
  float lut[3][256];
  const float inv = static_cast<float>(1.0 / cfg.rescale_factor);
  for (int c = 0; c < 3; ++c) {
    for (int v = 0; v < 256; ++v) {
      const float x = static_cast<float>(v);
      float r;
      if (cfg.do_rescale && cfg.do_normalize) {
        const float mean = cfg.image_mean[c] * inv, std = cfg.image_std[c] * inv;
        r = (x - mean) / std;
      } else if (cfg.do_normalize) {
        r = (x - cfg.image_mean[c]) / cfg.image_std[c];
      } else if (cfg.do_rescale) {
        r = x * static_cast<float>(cfg.rescale_factor);
      } else {
        r = x;
      }
      lut[c][v] = r;
    }
  }

  const int64_t cols = 3 * int64_t(T) * P * P;
  Tensor out = Tensor::empty({gt * gh * gw, cols}, DType::F32);
  float* o = out.data<float>();
  int64_t row = 0;
  for (int64_t t = 0; t < gt; ++t) {
    for (int64_t bh = 0; bh < gh / M; ++bh) {
      for (int64_t bw = 0; bw < gw / M; ++bw) {
        for (int ih = 0; ih < M; ++ih) {
          for (int iw = 0; iw < M; ++iw, ++row) {
            float* dst = o + row * cols;
            const int64_t y0 = (bh * M + ih) * P, x0 = (bw * M + iw) * P;
            for (int c = 0; c < 3; ++c) {
              for (int tp = 0; tp < T; ++tp) {
                const int64_t fi = std::min<int64_t>(t * T + tp, nf - 1);
                const uint8_t* px = frames[static_cast<size_t>(fi)]->rgb.data();
                for (int py = 0; py < P; ++py) {
                  const uint8_t* src = px + ((y0 + py) * W + x0) * 3 + c;
                  for (int qx = 0; qx < P; ++qx) *dst++ = lut[c][src[3 * qx]];
                }
              }
            }
          }
        }
      }
    }
  }
  *grid_t = gt;
  *grid_h = gh;
  *grid_w = gw;
  return out;
}

ProcessedImage preprocess_image(const Image& img, const ImageProcessorConfig& cfg) {
  QWEN3VL_CHECK(img.width > 0 && img.height > 0 && img.rgb.size() == size_t(img.width) * img.height * 3,
                "preprocess_image: empty or malformed image");
  ProcessedImage r;
  Image resized;
  const Image* src = &img;
  if (cfg.do_resize) {
    const ResizedSize s = smart_resize(img.height, img.width, cfg.patch_size * cfg.merge_size, cfg.min_pixels, cfg.max_pixels);
    if (s.height != img.height || s.width != img.width) {
      resized = resize_bicubic_aa(img, s.height, s.width);
      src = &resized;
    }
  }
  r.resized_height = src->height;
  r.resized_width = src->width;
  r.pixel_values = normalize_and_patchify({src}, cfg, &r.grid_t, &r.grid_h, &r.grid_w);
  return r;
}

}  // namespace qwen3vl

// Image decoding with Pillow 13 semantics (see image.h).
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

// libjpeg needs size_t/FILE declared before its header.
#include <jerror.h>
#include <jpeglib.h>
#include <png.h>
#include <webp/decode.h>
#include <webp/demux.h>

#include "core/error.h"
#include "processor/image.h"

namespace qwen3vl {

namespace {

uint32_t be32(const uint8_t* p) { return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | p[3]; }
uint16_t be16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
uint32_t le32(const uint8_t* p) { return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24); }

[[noreturn]] void fail(const std::string& name, const std::string& msg) {
  throw Error("image '" + name + "': " + msg);
}

void check_limits(const std::string& name, int64_t w, int64_t h, const DecodeLimits& lim) {
  if (w <= 0 || h <= 0)
    fail(name, "invalid dimensions " + std::to_string(w) + "x" + std::to_string(h));
  if (w > lim.max_side || h > lim.max_side)
    fail(name, "dimensions " + std::to_string(w) + "x" + std::to_string(h) + " exceed the per-side limit of " +
                   std::to_string(lim.max_side) + " pixels");
  // w, h <= 2^31 here, so the product cannot overflow int64.
  if (w * h > lim.max_pixels)
    fail(name, "image size (" + std::to_string(w * h) + " pixels, " + std::to_string(w) + "x" + std::to_string(h) +
                   ") exceeds the limit of " + std::to_string(lim.max_pixels) +
                   " pixels (possible decompression bomb); raise DecodeLimits::max_pixels to allow it");
}

// ------------------------------------------------------------------------------------------------
// EXIF / XMP orientation
// ------------------------------------------------------------------------------------------------
struct Meta {
  std::vector<uint8_t> exif;  // info["exif"]
  bool has_exif = false;
  std::vector<uint8_t> xmp;  // info["XML:com.adobe.xmp"] or info["xmp"]
  bool has_xmp = false;
};

int orientation_from_meta(const Meta& m) {
  int o = -1;
  if (m.has_exif) o = parse_exif_orientation(m.exif.data(), m.exif.size());
  if (o == -1 && m.has_xmp) o = parse_xmp_orientation(m.xmp.data(), m.xmp.size());
  return o < 0 ? 1 : o;
}

// ------------------------------------------------------------------------------------------------
// Headers
// ------------------------------------------------------------------------------------------------
const uint8_t kPngSig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

bool is_sof(uint8_t m) { return m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC; }

// Walks JPEG marker segments up to SOS. Collects SOF facts and EXIF/XMP APP1 payloads like
// Pillow's JpegImagePlugin.APP: the first Exif segment, later ones appended without their
// 6-byte header; the last XMP segment.
struct JpegScan {
  int width = 0, height = 0, components = 0, precision = 0;
  bool have_sof = false;
  Meta meta;
};

JpegScan scan_jpeg(const uint8_t* d, size_t n, const std::string& name) {
  JpegScan s;
  size_t p = 2;
  while (p < n) {
    if (d[p] != 0xFF) { ++p; continue; }  // junk between segments (Pillow skips it too)
    while (p < n && d[p] == 0xFF) ++p;
    if (p >= n) break;
    const uint8_t m = d[p++];
    if (m == 0x00 || m == 0x01 || (m >= 0xD0 && m <= 0xD8)) continue;  // standalone markers
    if (m == 0xD9) break;                                              // EOI
    if (p + 2 > n) fail(name, "truncated JPEG header (marker segment cut off)");
    const size_t len = be16(d + p);
    if (len < 2 || p + len > n) fail(name, "truncated or corrupt JPEG header (segment length " + std::to_string(len) + ")");
    const uint8_t* seg = d + p + 2;
    const size_t sl = len - 2;
    if (is_sof(m)) {
      if (sl < 6) fail(name, "corrupt JPEG SOF segment");
      s.precision = seg[0];
      s.height = be16(seg + 1);
      s.width = be16(seg + 3);
      s.components = seg[5];
      s.have_sof = true;
    } else if (m == 0xE1 && sl >= 6 && std::memcmp(seg, "Exif\0\0", 6) == 0) {
      if (!s.meta.has_exif) {
        s.meta.exif.assign(seg, seg + sl);
        s.meta.has_exif = true;
      } else {
        s.meta.exif.insert(s.meta.exif.end(), seg + 6, seg + sl);
      }
    } else if (m == 0xE1 && sl >= 29 && std::memcmp(seg, "http://ns.adobe.com/xap/1.0/\0", 29) == 0) {
      s.meta.xmp.assign(seg + 29, seg + sl);
      s.meta.has_xmp = true;
    } else if (m == 0xDA) {
      break;  // start of scan: header done
    }
    p += len;
  }
  if (!s.have_sof) fail(name, "not a decodable JPEG: no frame header (SOF) before the image data");
  return s;
}

const char* png_mode(int bit_depth, int color_type) {
  switch (color_type) {
    case 0: return bit_depth == 1 ? "1" : bit_depth == 16 ? "I;16" : "L";
    case 2: return "RGB";
    case 3: return "P";
    case 4: return bit_depth == 16 ? "RGBA" : "LA";
    case 6: return "RGBA";
  }
  return "?";
}

// ------------------------------------------------------------------------------------------------
// PNG (libpng)
// ------------------------------------------------------------------------------------------------
struct PngCtx {
  const uint8_t* data;
  size_t size;
  size_t pos;
  char err[512];
};

void png_read_cb(png_structp png, png_bytep out, size_t len) {
  auto* c = static_cast<PngCtx*>(png_get_io_ptr(png));
  if (len > c->size - c->pos) png_error(png, "file is truncated (unexpected end of data)");
  std::memcpy(out, c->data + c->pos, len);
  c->pos += len;
}
void png_error_cb(png_structp png, png_const_charp msg) {
  auto* c = static_cast<PngCtx*>(png_get_error_ptr(png));
  std::snprintf(c->err, sizeof(c->err), "%s", msg);
  png_longjmp(png, 1);
}
void png_warning_cb(png_structp, png_const_charp) {}

struct PngInfo {
  png_uint_32 width = 0, height = 0;
  int bit_depth = 0, color_type = 0, interlace = 0;
  size_t rowbytes = 0;
  int channels = 0;
};

// The two functions below hold no C++ objects with destructors: libpng longjmps out of them.
bool png_phase_header(png_structp png, png_infop info, PngInfo* pi, int64_t max_side, size_t max_chunk) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_user_limits(png, static_cast<png_uint_32>(max_side), static_cast<png_uint_32>(max_side));
  png_set_chunk_malloc_max(png, max_chunk);
  png_set_chunk_cache_max(png, 1000);
  png_read_info(png, info);
  pi->width = png_get_image_width(png, info);
  pi->height = png_get_image_height(png, info);
  pi->bit_depth = png_get_bit_depth(png, info);
  pi->color_type = png_get_color_type(png, info);
  pi->interlace = png_get_interlace_type(png, info);
  if (pi->bit_depth == 16 && pi->color_type != PNG_COLOR_TYPE_GRAY) png_set_strip_16(png);  // high byte
  if (pi->color_type == PNG_COLOR_TYPE_GRAY && pi->bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (pi->color_type == PNG_COLOR_TYPE_PALETTE && pi->bit_depth < 8) png_set_packing(png);
  if (pi->interlace != PNG_INTERLACE_NONE) png_set_interlace_handling(png);
  png_read_update_info(png, info);
  pi->rowbytes = png_get_rowbytes(png, info);
  pi->channels = png_get_channels(png, info);
  return true;
}

bool png_phase_rows(png_structp png, png_infop info, bool interlaced, png_bytep buf, size_t rowbytes,
                    png_uint_32 height, png_bytepp rows, void (*emit)(void*, png_uint_32, png_const_bytep),
                    void* emit_ctx) {
  if (setjmp(png_jmpbuf(png))) return false;
  if (interlaced) {
    for (png_uint_32 y = 0; y < height; ++y) rows[y] = buf + static_cast<size_t>(y) * rowbytes;
    png_read_image(png, rows);
    for (png_uint_32 y = 0; y < height; ++y) emit(emit_ctx, y, rows[y]);
  } else {
    for (png_uint_32 y = 0; y < height; ++y) {
      png_read_row(png, buf, nullptr);
      emit(emit_ctx, y, buf);
    }
  }
  png_read_end(png, info);
  return true;
}

struct PngEmit {
  Image* img;
  const PngInfo* pi;
  png_colorp palette;
  int num_palette;
};

void png_emit_row(void* vctx, png_uint_32 y, png_const_bytep row) {
  auto* e = static_cast<PngEmit*>(vctx);
  const int w = e->img->width;
  uint8_t* out = e->img->rgb.data() + static_cast<size_t>(y) * w * 3;
  const int ct = e->pi->color_type;
  if (ct == PNG_COLOR_TYPE_GRAY && e->pi->bit_depth == 16) {
    for (int x = 0; x < w; ++x) {  // Pillow I;16 -> RGB clamps to 255
      const unsigned v = (unsigned(row[2 * x]) << 8) | row[2 * x + 1];
      out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = static_cast<uint8_t>(v > 255 ? 255 : v);
    }
  } else if (ct == PNG_COLOR_TYPE_GRAY || ct == PNG_COLOR_TYPE_GRAY_ALPHA) {
    const int ch = e->pi->channels;
    for (int x = 0; x < w; ++x) out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = row[ch * x];
  } else if (ct == PNG_COLOR_TYPE_RGB || ct == PNG_COLOR_TYPE_RGB_ALPHA) {
    const int ch = e->pi->channels;
    for (int x = 0; x < w; ++x) {
      out[3 * x] = row[ch * x];
      out[3 * x + 1] = row[ch * x + 1];
      out[3 * x + 2] = row[ch * x + 2];
    }
  } else {  // palette
    for (int x = 0; x < w; ++x) {
      const int i = row[x];
      if (i < e->num_palette) {
        out[3 * x] = e->palette[i].red;
        out[3 * x + 1] = e->palette[i].green;
        out[3 * x + 2] = e->palette[i].blue;
      } else {
        out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = 0;
      }
    }
  }
}

bool png_phase_meta(png_structp png, png_infop info, Meta* meta) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_textp text = nullptr;
  int num_text = 0;
  png_get_text(png, info, &text, &num_text);
  // Pillow: tEXt "exif" -> info["exif"] (raw); "Raw profile type exif" -> hex after 3 lines;
  // iTXt "XML:com.adobe.xmp" -> XMP. eXIf chunk -> info["exif"] (takes precedence below).
  const char* raw_exif_text = nullptr;
  size_t raw_exif_len = 0;
  for (int i = 0; i < num_text; ++i) {
    const char* key = text[i].key;
    const size_t len = text[i].compression > 0 ? text[i].itxt_length : text[i].text_length;
    if (std::strcmp(key, "XML:com.adobe.xmp") == 0) {
      meta->xmp.assign(text[i].text, text[i].text + len);
      meta->has_xmp = true;
    } else if (std::strcmp(key, "Raw profile type exif") == 0) {
      raw_exif_text = text[i].text;
      raw_exif_len = len;
    } else if (std::strcmp(key, "exif") == 0) {
      meta->exif.assign(text[i].text, text[i].text + len);
      meta->has_exif = true;
    }
  }
#ifdef PNG_eXIf_SUPPORTED
  png_uint_32 exif_len = 0;
  png_bytep exif = nullptr;
  if (png_get_eXIf_1(png, info, &exif_len, &exif) != 0 && exif != nullptr) {
    meta->exif.assign({'E', 'x', 'i', 'f', 0, 0});
    meta->exif.insert(meta->exif.end(), exif, exif + exif_len);
    meta->has_exif = true;
  }
#endif
  if (!meta->has_exif && raw_exif_text != nullptr) {
    // "\nexif\n      NN\nHEX..." : skip three newlines, then hex digits (whitespace ignored).
    size_t p = 0;
    for (int nl = 0; nl < 3 && p < raw_exif_len; ++p)
      if (raw_exif_text[p] == '\n') ++nl;
    int hi = -1;
    for (; p < raw_exif_len; ++p) {
      const char ch = raw_exif_text[p];
      int v = (ch >= '0' && ch <= '9') ? ch - '0' : (ch >= 'a' && ch <= 'f') ? ch - 'a' + 10
              : (ch >= 'A' && ch <= 'F') ? ch - 'A' + 10 : -1;
      if (v < 0) continue;
      if (hi < 0) {
        hi = v;
      } else {
        meta->exif.push_back(static_cast<uint8_t>(hi * 16 + v));
        hi = -1;
      }
    }
    meta->has_exif = true;
  }
  return true;
}

Image decode_png(const uint8_t* d, size_t n, const DecodeLimits& lim, const std::string& name, Meta* meta) {
  if (n < 33) fail(name, "truncated PNG (no complete IHDR chunk)");
  if (std::memcmp(d + 12, "IHDR", 4) != 0) fail(name, "corrupt PNG: first chunk is not IHDR");
  check_limits(name, be32(d + 16), be32(d + 20), lim);

  PngCtx ctx{d, n, 0, {0}};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, png_error_cb, png_warning_cb);
  if (!png) fail(name, "libpng initialisation failed");
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    fail(name, "libpng initialisation failed");
  }
  struct Guard {
    png_structp* p;
    png_infop* i;
    ~Guard() { png_destroy_read_struct(p, i, nullptr); }
  } guard{&png, &info};
  png_set_read_fn(png, &ctx, png_read_cb);

  PngInfo pi;
  if (!png_phase_header(png, info, &pi, lim.max_side, lim.max_metadata_bytes))
    fail(name, std::string("invalid PNG: ") + ctx.err);
  check_limits(name, pi.width, pi.height, lim);

  Image img;
  img.width = static_cast<int>(pi.width);
  img.height = static_cast<int>(pi.height);
  img.rgb.resize(static_cast<size_t>(img.width) * img.height * 3);
  const bool interlaced = pi.interlace != PNG_INTERLACE_NONE;
  std::vector<uint8_t> buf(interlaced ? pi.rowbytes * pi.height : pi.rowbytes);
  std::vector<png_bytep> rows(interlaced ? pi.height : 0);

  PngEmit emit{&img, &pi, nullptr, 0};
  if (pi.color_type == PNG_COLOR_TYPE_PALETTE) {
    if (png_get_PLTE(png, info, &emit.palette, &emit.num_palette) == 0) fail(name, "invalid PNG: palette image without PLTE");
  }
  if (!png_phase_rows(png, info, interlaced, buf.data(), pi.rowbytes, pi.height, rows.data(), png_emit_row, &emit))
    fail(name, std::string("corrupt PNG data: ") + ctx.err);
  if (!png_phase_meta(png, info, meta)) fail(name, std::string("corrupt PNG metadata: ") + ctx.err);
  return img;
}

// ------------------------------------------------------------------------------------------------
// JPEG (libjpeg-turbo)
// ------------------------------------------------------------------------------------------------
struct JpegErr {
  jpeg_error_mgr pub;
  jmp_buf jb;
  char msg[JMSG_LENGTH_MAX];
  bool premature_eof;
};

void jpeg_error_exit_cb(j_common_ptr cinfo) {
  auto* e = reinterpret_cast<JpegErr*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, e->msg);
  std::longjmp(e->jb, 1);
}
void jpeg_emit_message_cb(j_common_ptr cinfo, int level) {
  auto* e = reinterpret_cast<JpegErr*>(cinfo->err);
  // Pillow ignores libjpeg warnings but fails on a file that ends early (its reader runs out of
  // data); libjpeg's memory source reports that as the JWRN_JPEG_EOF warning.
  if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) e->premature_eof = true;
}
void jpeg_output_message_cb(j_common_ptr) {}

bool jpeg_phase_header(jpeg_decompress_struct* cinfo, JpegErr* err, const uint8_t* d, size_t n, long max_mem) {
  if (setjmp(err->jb)) return false;
  jpeg_create_decompress(cinfo);
  jpeg_mem_src(cinfo, d, static_cast<unsigned long>(n));
  jpeg_read_header(cinfo, TRUE);
  switch (cinfo->num_components) {
    case 1: cinfo->out_color_space = JCS_GRAYSCALE; break;
    case 3: cinfo->out_color_space = JCS_RGB; break;
    case 4: cinfo->out_color_space = JCS_CMYK; break;
    default: ERREXIT1(cinfo, JERR_BAD_COMPONENT_ID, cinfo->num_components);
  }
  cinfo->mem->max_memory_to_use = max_mem;
  jpeg_start_decompress(cinfo);
  return true;
}

bool jpeg_phase_rows(jpeg_decompress_struct* cinfo, JpegErr* err, uint8_t* buf, size_t stride) {
  if (setjmp(err->jb)) return false;
  while (cinfo->output_scanline < cinfo->output_height) {
    JSAMPROW row = buf + static_cast<size_t>(cinfo->output_scanline) * stride;
    jpeg_read_scanlines(cinfo, &row, 1);
  }
  jpeg_finish_decompress(cinfo);
  return true;
}

Image decode_jpeg(const uint8_t* d, size_t n, const DecodeLimits& lim, const std::string& name, Meta* meta) {
  JpegScan scan = scan_jpeg(d, n, name);
  if (scan.precision != 8) fail(name, "cannot handle " + std::to_string(scan.precision) + "-bit JPEG samples");
  if (scan.components != 1 && scan.components != 3 && scan.components != 4)
    fail(name, "cannot handle JPEG with " + std::to_string(scan.components) + " components");
  check_limits(name, scan.width, scan.height, lim);
  *meta = std::move(scan.meta);

  jpeg_decompress_struct cinfo;
  std::memset(&cinfo, 0, sizeof(cinfo));
  JpegErr err;
  std::memset(&err, 0, sizeof(err));
  cinfo.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = jpeg_error_exit_cb;
  err.pub.emit_message = jpeg_emit_message_cb;
  err.pub.output_message = jpeg_output_message_cb;
  struct Guard {
    jpeg_decompress_struct* c;
    ~Guard() { jpeg_destroy_decompress(c); }
  } guard{&cinfo};

  // Coefficient buffers of a progressive file: ~2 bytes per sample plus slack.
  const long max_mem = static_cast<long>(std::min<int64_t>(lim.max_pixels, int64_t(1) << 40) * 16 + (64 << 20));
  if (!jpeg_phase_header(&cinfo, &err, d, n, max_mem)) fail(name, std::string("invalid JPEG: ") + err.msg);
  if (err.premature_eof) fail(name, "JPEG file is truncated (premature end of data in the header)");
  check_limits(name, cinfo.output_width, cinfo.output_height, lim);

  const int w = static_cast<int>(cinfo.output_width), h = static_cast<int>(cinfo.output_height);
  const int nc = cinfo.output_components;
  std::vector<uint8_t> buf(static_cast<size_t>(w) * h * nc);
  if (!jpeg_phase_rows(&cinfo, &err, buf.data(), static_cast<size_t>(w) * nc))
    fail(name, std::string("corrupt JPEG data: ") + err.msg);
  if (err.premature_eof) fail(name, "JPEG file is truncated (premature end of data)");

  Image img;
  img.width = w;
  img.height = h;
  img.rgb.resize(static_cast<size_t>(w) * h * 3);
  const size_t np = static_cast<size_t>(w) * h;
  uint8_t* o = img.rgb.data();
  if (nc == 3) {
    std::memcpy(o, buf.data(), np * 3);
  } else if (nc == 1) {
    for (size_t i = 0; i < np; ++i) o[3 * i] = o[3 * i + 1] = o[3 * i + 2] = buf[i];
  } else {
    // Pillow: rawmode "CMYK;I" (Adobe-inverted), then cmyk2rgb with MULDIV255.
    for (size_t i = 0; i < np; ++i) {
      const uint8_t* s = &buf[4 * i];
      const int nk = s[3];  // 255 - (255 - k)
      for (int c = 0; c < 3; ++c) {
        const int cc = 255 - s[c];
        const int t = cc * nk + 128;
        const int v = nk - (((t >> 8) + t) >> 8);
        o[3 * i + c] = static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
      }
    }
  }
  return img;
}

// ------------------------------------------------------------------------------------------------
// WebP (libwebp, WebPAnimDecoder like Pillow's _webp module; first frame)
// ------------------------------------------------------------------------------------------------
Image decode_webp(const uint8_t* d, size_t n, const DecodeLimits& lim, const std::string& name, Meta* meta) {
  WebPBitstreamFeatures feat;
  if (WebPGetFeatures(d, n, &feat) != VP8_STATUS_OK) fail(name, "invalid or truncated WebP header");
  check_limits(name, feat.width, feat.height, lim);

  WebPData wd{d, n};
  WebPDemuxer* demux = WebPDemux(&wd);
  if (!demux) fail(name, "invalid WebP container");
  const int64_t cw = WebPDemuxGetI(demux, WEBP_FF_CANVAS_WIDTH), ch = WebPDemuxGetI(demux, WEBP_FF_CANVAS_HEIGHT);
  WebPChunkIterator it;
  if (WebPDemuxGetChunk(demux, "EXIF", 1, &it)) {
    meta->exif.assign(it.chunk.bytes, it.chunk.bytes + it.chunk.size);
    meta->has_exif = true;
    WebPDemuxReleaseChunkIterator(&it);
  }
  if (WebPDemuxGetChunk(demux, "XMP ", 1, &it)) {
    meta->xmp.assign(it.chunk.bytes, it.chunk.bytes + it.chunk.size);
    meta->has_xmp = true;
    WebPDemuxReleaseChunkIterator(&it);
  }
  WebPDemuxDelete(demux);
  check_limits(name, cw, ch, lim);

  WebPAnimDecoderOptions opt;
  WebPAnimDecoderOptionsInit(&opt);
  opt.color_mode = MODE_RGBA;
  opt.use_threads = 0;
  WebPAnimDecoder* dec = WebPAnimDecoderNew(&wd, &opt);
  if (!dec) fail(name, "invalid WebP data");
  struct Guard {
    WebPAnimDecoder* d;
    ~Guard() { WebPAnimDecoderDelete(d); }
  } guard{dec};
  WebPAnimInfo ai;
  if (!WebPAnimDecoderGetInfo(dec, &ai)) fail(name, "invalid WebP data");
  uint8_t* frame = nullptr;
  int ts = 0;
  if (!WebPAnimDecoderHasMoreFrames(dec) || !WebPAnimDecoderGetNext(dec, &frame, &ts))
    fail(name, "corrupt or truncated WebP image data");
  Image img;
  img.width = static_cast<int>(ai.canvas_width);
  img.height = static_cast<int>(ai.canvas_height);
  const size_t np = static_cast<size_t>(img.width) * img.height;
  img.rgb.resize(np * 3);
  for (size_t i = 0; i < np; ++i) {
    img.rgb[3 * i] = frame[4 * i];
    img.rgb[3 * i + 1] = frame[4 * i + 1];
    img.rgb[3 * i + 2] = frame[4 * i + 2];
  }
  return img;
}

}  // namespace

// ------------------------------------------------------------------------------------------------
// Public
// ------------------------------------------------------------------------------------------------
const char* image_format_name(ImageFormat f) {
  switch (f) {
    case ImageFormat::PNG: return "PNG";
    case ImageFormat::JPEG: return "JPEG";
    case ImageFormat::WEBP: return "WEBP";
    default: return "unknown";
  }
}

ImageFormat sniff_image_format(const uint8_t* d, size_t n) {
  if (n >= 8 && std::memcmp(d, kPngSig, 8) == 0) return ImageFormat::PNG;
  if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return ImageFormat::JPEG;
  if (n >= 16 && std::memcmp(d, "RIFF", 4) == 0 && std::memcmp(d + 8, "WEBP", 4) == 0 &&
      (std::memcmp(d + 12, "VP8 ", 4) == 0 || std::memcmp(d + 12, "VP8L", 4) == 0 || std::memcmp(d + 12, "VP8X", 4) == 0))
    return ImageFormat::WEBP;
  return ImageFormat::Unknown;
}

namespace {
[[noreturn]] void fail_unknown(const uint8_t* d, size_t n, const std::string& name) {
  if (n == 0) fail(name, "cannot identify image file: the file is empty");
  char hex[64] = {0};
  size_t k = 0;
  for (size_t i = 0; i < std::min<size_t>(n, 8); ++i) k += std::snprintf(hex + k, sizeof(hex) - k, "%02x ", d[i]);
  fail(name, std::string("cannot identify image file (supported: PNG, JPEG, WebP; first bytes: ") + hex + ")");
}
}  // namespace

ImageHeader read_image_header(const uint8_t* d, size_t n, const std::string& name) {
  ImageHeader h;
  h.format = sniff_image_format(d, n);
  switch (h.format) {
    case ImageFormat::PNG: {
      if (n < 33 || std::memcmp(d + 12, "IHDR", 4) != 0) fail(name, "truncated or corrupt PNG header");
      h.width = static_cast<int>(std::min<uint32_t>(be32(d + 16), 0x7fffffff));
      h.height = static_cast<int>(std::min<uint32_t>(be32(d + 20), 0x7fffffff));
      h.pil_mode = png_mode(d[24], d[25]);
      break;
    }
    case ImageFormat::JPEG: {
      JpegScan s = scan_jpeg(d, n, name);
      h.width = s.width;
      h.height = s.height;
      h.pil_mode = s.components == 1 ? "L" : s.components == 3 ? "RGB" : s.components == 4 ? "CMYK" : "?";
      break;
    }
    case ImageFormat::WEBP: {
      WebPBitstreamFeatures feat;
      if (WebPGetFeatures(d, n, &feat) != VP8_STATUS_OK) fail(name, "invalid or truncated WebP header");
      h.width = feat.width;
      h.height = feat.height;
      h.pil_mode = feat.has_alpha ? "RGBA" : "RGB";
      break;
    }
    default: fail_unknown(d, n, name);
  }
  return h;
}

int parse_exif_orientation(const uint8_t* d, size_t n) {
  if (n >= 6 && std::memcmp(d, "Exif\0\0", 6) == 0) {
    d += 6;
    n -= 6;
  }
  if (n < 8) return -1;
  bool le;
  if (d[0] == 'I' && d[1] == 'I') le = true;
  else if (d[0] == 'M' && d[1] == 'M') le = false;
  else return -1;
  auto u16 = [&](size_t o) -> uint32_t { return le ? (d[o] | (d[o + 1] << 8)) : be16(d + o); };
  auto u32 = [&](size_t o) -> uint32_t { return le ? le32(d + o) : be32(d + o); };
  const uint32_t ifd = u32(4);
  if (ifd > n || n - ifd < 2) return -1;
  const uint32_t count = u16(ifd);
  for (uint32_t i = 0; i < count; ++i) {
    const size_t e = ifd + 2 + size_t(i) * 12;
    if (e + 12 > n) break;
    if (u16(e) != 0x0112) continue;
    const uint32_t type = u16(e + 2), cnt = u32(e + 4);
    if (cnt != 1) return 0;
    if (type == 3) return static_cast<int>(u16(e + 8));
    if (type == 4) return static_cast<int>(std::min<uint32_t>(u32(e + 8), 1000));
    if (type == 1) return d[e + 8];
    return 0;
  }
  return -1;
}

int parse_xmp_orientation(const uint8_t* d, size_t n) {
  static const char kKey[] = "tiff:Orientation";
  const size_t kl = sizeof(kKey) - 1;
  for (size_t p = 0; p + kl < n; ++p) {
    if (std::memcmp(d + p, kKey, kl) != 0) continue;
    size_t q = p + kl;
    if (q + 1 < n && d[q] == '=' && d[q + 1] == '"') q += 2;
    else if (q < n && d[q] == '>') q += 1;
    else continue;
    if (q < n && d[q] >= '0' && d[q] <= '9') return d[q] - '0';
  }
  return -1;
}

Image apply_orientation(const Image& in, int orientation) {
  if (orientation < 2 || orientation > 8) return in;
  const int W = in.width, H = in.height;
  const bool swap = orientation >= 5;
  Image out;
  out.width = swap ? H : W;
  out.height = swap ? W : H;
  out.rgb.resize(in.rgb.size());
  for (int y = 0; y < out.height; ++y) {
    for (int x = 0; x < out.width; ++x) {
      int sx = x, sy = y;
      switch (orientation) {
        case 2: sx = W - 1 - x; break;                  // FLIP_LEFT_RIGHT
        case 3: sx = W - 1 - x; sy = H - 1 - y; break;  // ROTATE_180
        case 4: sy = H - 1 - y; break;                  // FLIP_TOP_BOTTOM
        case 5: sx = y; sy = x; break;                  // TRANSPOSE
        case 6: sx = y; sy = H - 1 - x; break;          // ROTATE_270 (90 clockwise)
        case 7: sx = W - 1 - y; sy = H - 1 - x; break;  // TRANSVERSE
        case 8: sx = W - 1 - y; sy = x; break;          // ROTATE_90 (90 counter-clockwise)
      }
      const uint8_t* s = in.pixel(sx, sy);
      uint8_t* o = out.rgb.data() + (static_cast<size_t>(y) * out.width + x) * 3;
      o[0] = s[0];
      o[1] = s[1];
      o[2] = s[2];
    }
  }
  return out;
}

Image decode_image(const uint8_t* d, size_t n, const DecodeLimits& lim, const std::string& name) {
  if (n > lim.max_file_bytes) fail(name, "file of " + std::to_string(n) + " bytes exceeds DecodeLimits::max_file_bytes");
  Meta meta;
  Image img;
  switch (sniff_image_format(d, n)) {
    case ImageFormat::PNG: img = decode_png(d, n, lim, name, &meta); break;
    case ImageFormat::JPEG: img = decode_jpeg(d, n, lim, name, &meta); break;
    case ImageFormat::WEBP: img = decode_webp(d, n, lim, name, &meta); break;
    default: fail_unknown(d, n, name);
  }
  if (lim.apply_exif_orientation) {
    const int o = orientation_from_meta(meta);
    if (o >= 2 && o <= 8) img = apply_orientation(img, o);
  }
  return img;
}

Image load_image(const std::filesystem::path& path, const DecodeLimits& lim) {
  const std::string name = path.string();
  std::error_code ec;
  const auto fsize = std::filesystem::file_size(path, ec);
  if (ec) fail(name, "cannot open image file: " + ec.message());
  if (fsize > lim.max_file_bytes)
    fail(name, "file of " + std::to_string(fsize) + " bytes exceeds DecodeLimits::max_file_bytes");
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(name, "cannot open image file");
  std::vector<uint8_t> bytes(static_cast<size_t>(fsize));
  if (fsize > 0 && !f.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(fsize)))
    fail(name, "error reading image file");
  return decode_image(bytes.data(), bytes.size(), lim, name);
}

}  // namespace qwen3vl

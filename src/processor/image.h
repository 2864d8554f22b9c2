// Image decoding: PNG (libpng), JPEG (libjpeg-turbo) and WebP (libwebp), giving the pixels that
// transformers.image_utils.load_image gives in transformers 4.57.6 with Pillow 13:
//
//   image = PIL.Image.open(path)                 # format sniffed from magic bytes
//   image = PIL.ImageOps.exif_transpose(image)   # EXIF (or XMP tiff:Orientation) applied
//   image = image.convert("RGB")
//
// Pillow conversion rules reproduced here (checked against the venv's Pillow 13.0.0):
//   - "1" (1-bit gray): 0 -> 0, 1 -> 255; 2/4-bit gray scaled (x*85, x*17); "L" replicated.
//   - "LA" / "RGBA": alpha dropped, no compositing. 16-bit RGB/RGBA/LA: high byte.
//   - 16-bit gray ("I;16"): min(v, 255) (a clamp, not the high byte: nearly white for most files).
//   - "P": palette lookup (tRNS ignored); indices past the PLTE entries give (0, 0, 0).
//   - JPEG CMYK/YCCK: libjpeg output treated as Adobe-inverted ("CMYK;I"), then
//     R = clip(nk - (c*nk + 128 + ((c*nk + 128) >> 8)) >> 8), nk = 255 - k (Pillow cmyk2rgb).
//   - gamma, ICC profiles and sBIT are ignored, as Pillow does.
//
// Hostile input: the header is parsed first and the image refused before any pixel buffer is
// allocated when width*height exceeds DecodeLimits::max_pixels (Pillow's hard limit
// 2 * MAX_IMAGE_PIXELS = 178,956,970 by default) or a side exceeds max_side. libpng/libjpeg errors
// are caught with setjmp/longjmp and rethrown as qwen3vl::Error naming the file.
//
// Deliberate differences from Pillow (see tests/processor/test_bad_images.cpp):
//   - a PNG whose IDAT CRC is wrong is rejected (libpng default); Pillow ignores IDAT CRCs.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace qwen3vl {

// 8-bit RGB, row-major [height, width, 3].
struct Image {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> rgb;

  const uint8_t* pixel(int x, int y) const { return rgb.data() + (static_cast<size_t>(y) * width + x) * 3; }
};

struct DecodeLimits {
  int64_t max_pixels = 178956970;        // PIL.Image.MAX_IMAGE_PIXELS * 2 (Pillow's DecompressionBombError)
  int64_t max_side = 1000000;            // per dimension (libpng's default user limit)
  size_t max_file_bytes = size_t(1) << 30;  // files larger than this are refused before reading
  size_t max_metadata_bytes = 8u << 20;  // any single ancillary chunk / decompressed text chunk
  bool apply_exif_orientation = true;    // ImageOps.exif_transpose, as load_image does
};

enum class ImageFormat { Unknown, PNG, JPEG, WEBP };
const char* image_format_name(ImageFormat f);

// Format from magic bytes only (as Pillow does; the file extension is ignored).
ImageFormat sniff_image_format(const uint8_t* data, size_t size);

// Header-only facts, cheap to obtain (no pixel decoding).
struct ImageHeader {
  ImageFormat format = ImageFormat::Unknown;
  int width = 0, height = 0;  // as stored (before EXIF orientation)
  std::string pil_mode;       // Pillow's mode for this file: "RGB", "L", "P", "I;16", "CMYK", ...
};
ImageHeader read_image_header(const uint8_t* data, size_t size, const std::string& name = "<memory>");

// Decodes an encoded image held in memory. `name` only labels error messages.
Image decode_image(const uint8_t* data, size_t size, const DecodeLimits& limits = {},
                   const std::string& name = "<memory>");
inline Image decode_image(const std::vector<uint8_t>& bytes, const DecodeLimits& limits = {},
                          const std::string& name = "<memory>") {
  return decode_image(bytes.data(), bytes.size(), limits, name);
}

// Reads and decodes a file (transformers.image_utils.load_image for a local path).
Image load_image(const std::filesystem::path& path, const DecodeLimits& limits = {});

// Orientation from EXIF bytes (TIFF IFD0 tag 0x0112; an optional "Exif\0\0" prefix is skipped, as
// PIL.Image.Exif.load does): 1..8, 0 when the tag is present but unusable, -1 when absent.
int parse_exif_orientation(const uint8_t* data, size_t size);
// Orientation from XMP text, PIL's regex tiff:Orientation(="|>)([0-9]); -1 when absent.
int parse_xmp_orientation(const uint8_t* data, size_t size);

// Applies an EXIF orientation like ImageOps.exif_transpose (2: flip L-R, 3: rotate 180, 4: flip
// T-B, 5: transpose, 6: rotate 90 CW, 7: transverse, 8: rotate 90 CCW). Others: no-op.
Image apply_orientation(const Image& img, int orientation);

}  // namespace qwen3vl

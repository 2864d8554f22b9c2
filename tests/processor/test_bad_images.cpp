// Every file in shared/data/bad-images: a clear qwen3vl::Error (or, for the valid PNG named .jpg,
// the same pixels as the real PNG), in well under a second and without large allocations.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <map>

#include "processor/image.h"
#include "processor_test_util.h"

namespace qwen3vl::test {
namespace {

// Peak-RSS probe: resets VmHWM via /proc/self/clear_refs (Linux >= 4.0) and reads it back.
bool reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  if (!f) return false;
  f << "5";
  return static_cast<bool>(f.flush());
}
long read_status_kb(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key, 0) == 0) return std::stol(line.substr(std::strlen(key)));
  return -1;
}

// What each file must produce: a substring of the error message, or "" for a successful decode.
const std::map<std::string, std::string> kExpected = {
    {"skimage_truncated.jpg", "JPEG"},
    {"truncated_half.jpg", "truncated"},
    {"truncated_in_header.jpg", "JPEG"},
    {"jpeg_no_eoi.jpg", "truncated"},  // Pillow: "image file is truncated" (libjpeg alone would accept)
    {"soi_only.jpg", "cannot identify"},
    {"jpeg_dim_bomb_65500x65500.jpg", "decompression bomb"},
    {"png_bad_ihdr_crc.png", "CRC"},
    {"png_bad_idat_crc.png", "CRC"},  // deliberate: libpng rejects; Pillow ignores IDAT CRCs
    {"png_corrupt_zlib_valid_crc.png", "corrupt PNG data"},
    {"png_truncated_half.png", "truncated"},
    {"png_signature_only.png", "PNG"},
    {"png_dim_bomb_65535x65535.png", "decompression bomb"},
    {"png_dim_bomb_2147483647x1.png", "per-side limit"},
    {"png_zero_width.png", "invalid dimensions"},
    {"png_zlib_bomb_16384x16384_gray.png", "decompression bomb"},
    {"zero_bytes.jpg", "empty"},
    {"zero_bytes.png", "empty"},
    {"text_named.jpg", "cannot identify"},
    {"html_named.png", "cannot identify"},
    {"png_named.jpg", ""},
    {"random_bytes.png", "cannot identify"},
};

TEST(BadImages, EachGivesAClearErrorQuicklyInBoundedMemory) {
  const auto dir = shared_dir() / "data" / "bad-images";
  const nlohmann::json manifest = load_json(dir / "manifest.json");
  int n = 0;
  for (const auto& f : manifest["files"]) {
    const std::string name = f["file"];
    SCOPED_TRACE(name);
    auto it = kExpected.find(name);
    ASSERT_NE(it, kExpected.end()) << "new bad image without an expectation: " << name;
    const bool probe = reset_peak_rss();
    const long rss0 = read_status_kb("VmRSS:");
    const auto t0 = std::chrono::steady_clock::now();
    std::string err;
    bool ok = false;
    try {
      Image img = load_image(dir / name);
      ok = img.width > 0;
    } catch (const Error& e) {
      err = e.what();
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const long peak_mb = probe ? (read_status_kb("VmHWM:") - rss0) / 1024 : -1;
    std::printf("[bad] %-36s %7.1f ms  peak +%ld MB  %s\n", name.c_str(), secs * 1e3, peak_mb,
                ok ? "decoded" : err.c_str());
    EXPECT_LT(secs, 1.0);
    if (probe) EXPECT_LT(peak_mb, 64) << "decoding a hostile file must not allocate much";
    if (it->second.empty()) {
      EXPECT_TRUE(ok) << err;
    } else {
      EXPECT_FALSE(ok) << "expected an error";
      EXPECT_NE(err.find(it->second), std::string::npos) << "message: " << err;
      EXPECT_NE(err.find(name), std::string::npos) << "the message must name the file: " << err;
    }
    ++n;
  }
  EXPECT_EQ(n, static_cast<int>(kExpected.size()));
}

TEST(BadImages, TruncatedPrefixesOfGoodFilesNeverCrash) {
  // Every prefix length class of a PNG, a JPEG and a WebP: either an Error or (rarely) a decode.
  for (const char* file : {"chelsea.png", "rocket.jpg", "vnc-d.webp", "ela_original.jpg", "gvim_16x16.png"}) {
    std::vector<uint8_t> bytes = read_file_bytes(shared_dir() / "data" / "images" / file);
    for (size_t len : {size_t(0), size_t(1), size_t(7), size_t(8), size_t(20), size_t(33), size_t(100),
                       bytes.size() / 3, bytes.size() / 2, bytes.size() - 1}) {
      if (len > bytes.size()) continue;
      try {
        Image img = decode_image(bytes.data(), len, {}, std::string(file) + "[:" + std::to_string(len) + "]");
        EXPECT_GT(img.width, 0);
      } catch (const Error&) {
      }
    }
    // Flip bytes through the file: decoders must fail cleanly or decode something.
    for (size_t pos = 16; pos < bytes.size(); pos += bytes.size() / 17 + 1) {
      std::vector<uint8_t> b = bytes;
      b[pos] ^= 0x5A;
      try {
        decode_image(b, {}, file);
      } catch (const Error&) {
      }
    }
  }
}

}  // namespace
}  // namespace qwen3vl::test

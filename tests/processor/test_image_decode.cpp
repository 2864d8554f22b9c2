// Decoding: our PNG/JPEG/WebP decoders against transformers.image_utils.load_image (Pillow 13):
// exact RGB bytes (sha256) for every shared image and every synthetic case.
#include <gtest/gtest.h>

#include <map>

#include "processor/image.h"
#include "processor_test_util.h"

namespace qwen3vl::test {
namespace {

std::filesystem::path image_path(const nlohmann::json& rec) {
  if (rec["source"] == "shared") return shared_dir() / "data" / "images" / rec["file"].get<std::string>();
  return processor_fixtures() / "synthetic" / rec["file"].get<std::string>();
}

// Images whose decode is known not to be bit-exact vs Pillow 13, with the reason. Empty: every
// case is exact (JPEG via the same libjpeg-turbo ISLOW IDCT + fancy upsampling, WebP via libwebp).
const std::map<std::string, std::string> kInexactDecode = {};

TEST(ImageDecode, EveryImageMatchesHFLoadImage) {
  const nlohmann::json doc = load_json(processor_fixtures() / "images.json");
  int checked = 0;
  for (const auto& rec : doc["images"]) {
    const std::string name = rec["file"];
    SCOPED_TRACE(name);
    Image img = load_image(image_path(rec));
    ASSERT_EQ(img.width, rec["width"].get<int>());
    ASSERT_EQ(img.height, rec["height"].get<int>());
    const std::string sha = sha256_hex(img.rgb.data(), img.rgb.size());
    int64_t sums[3] = {0, 0, 0};
    for (size_t i = 0; i < img.rgb.size(); ++i) sums[i % 3] += img.rgb[i];
    const auto ref_sums = rec["decoded_channel_sums"];
    const double np = double(img.width) * img.height;
    std::printf("[decode] %-36s %5dx%-5d %s  mean diff (%.4f, %.4f, %.4f)\n", name.c_str(), img.width, img.height,
                sha == rec["decoded_sha256"] ? "exact" : "DIFFERENT", (sums[0] - ref_sums[0].get<int64_t>()) / np,
                (sums[1] - ref_sums[1].get<int64_t>()) / np, (sums[2] - ref_sums[2].get<int64_t>()) / np);
    if (kInexactDecode.count(name)) continue;
    EXPECT_EQ(sha, rec["decoded_sha256"].get<std::string>()) << name << " decodes differently from Pillow";
    EXPECT_EQ(img.rgb[0], rec["decoded_first_pixel"][0].get<int>());
    ++checked;
  }
  EXPECT_GE(checked, 40);
}

TEST(ImageDecode, SniffsFormatFromMagicNotExtension) {
  const auto dir = shared_dir() / "data";
  Image a = load_image(dir / "images" / "chelsea.png");
  Image b = load_image(dir / "bad-images" / "png_named.jpg");  // a PNG with a .jpg name
  EXPECT_EQ(a.width, b.width);
  EXPECT_EQ(a.rgb, b.rgb);
  std::vector<uint8_t> png = read_file_bytes(dir / "images" / "chelsea.png");
  EXPECT_EQ(sniff_image_format(png.data(), png.size()), ImageFormat::PNG);
  ImageHeader h = read_image_header(png.data(), png.size());
  EXPECT_EQ(h.width, 451);
  EXPECT_EQ(h.height, 300);
  EXPECT_EQ(h.pil_mode, "RGB");
  std::vector<uint8_t> jpg = read_file_bytes(dir / "images" / "chelsea_cmyk.jpg");
  h = read_image_header(jpg.data(), jpg.size());
  EXPECT_EQ(h.format, ImageFormat::JPEG);
  EXPECT_EQ(h.pil_mode, "CMYK");
}

TEST(ImageDecode, ExifOrientationParsersFollowPillow) {
  // Little-endian TIFF with Orientation = 6, with and without the "Exif\0\0" prefix.
  const uint8_t tiff[] = {'I', 'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0};
  EXPECT_EQ(parse_exif_orientation(tiff, sizeof(tiff)), 6);
  std::vector<uint8_t> pre = {'E', 'x', 'i', 'f', 0, 0};
  pre.insert(pre.end(), tiff, tiff + sizeof(tiff));
  EXPECT_EQ(parse_exif_orientation(pre.data(), pre.size()), 6);
  EXPECT_EQ(parse_exif_orientation(tiff, 10), -1);  // truncated IFD: absent, no crash
  const std::string x1 = "<a tiff:Orientation=\"8\"/>", x2 = "<tiff:Orientation>3</tiff:Orientation>",
                    x3 = "tiff:Orientation=x tiff:Orientation>5";
  EXPECT_EQ(parse_xmp_orientation(reinterpret_cast<const uint8_t*>(x1.data()), x1.size()), 8);
  EXPECT_EQ(parse_xmp_orientation(reinterpret_cast<const uint8_t*>(x2.data()), x2.size()), 3);
  EXPECT_EQ(parse_xmp_orientation(reinterpret_cast<const uint8_t*>(x3.data()), x3.size()), 5);
}

TEST(ImageDecode, OrientationCanBeDisabled) {
  DecodeLimits lim;
  lim.apply_exif_orientation = false;
  Image raw = load_image(shared_dir() / "data" / "images" / "rocket_exif_orientation6.jpg", lim);
  Image rot = load_image(shared_dir() / "data" / "images" / "rocket_exif_orientation6.jpg");
  EXPECT_EQ(raw.width, 640);
  EXPECT_EQ(rot.width, 427);
  EXPECT_EQ(apply_orientation(raw, 6).rgb, rot.rgb);
}

TEST(ImageDecode, PixelLimitIsConfigurable) {
  DecodeLimits lim;
  lim.max_pixels = 451 * 300 - 1;
  EXPECT_THROW(load_image(shared_dir() / "data" / "images" / "chelsea.png", lim), Error);
  lim.max_pixels = 451 * 300;
  EXPECT_NO_THROW(load_image(shared_dir() / "data" / "images" / "chelsea.png", lim));
}

}  // namespace
}  // namespace qwen3vl::test

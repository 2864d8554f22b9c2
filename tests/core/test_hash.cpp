// FNV-1a 64 over files. Reference values: the standard FNV test vectors and
// tools/reference/make_core_fixture.py (Python) over tests/fixtures/core/python_made.safetensors.
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "common/compare.h"
#include "core/hash.h"

namespace qwen3vl {
namespace {

namespace fs = std::filesystem;

fs::path hash_dir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  fs::path d = test::binary_dir() / "test-tmp" / "core" / (std::string(info->test_suite_name()) + "." + info->name());
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

TEST(Hash, Fnv1a64KnownVectors) {
  EXPECT_EQ(fnv1a64("", 0), 0xcbf29ce484222325ull);
  EXPECT_EQ(fnv1a64("a", 1), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(fnv1a64("foobar", 6), 0x85944171f73967e8ull);
  // Chaining equals hashing the concatenation.
  EXPECT_EQ(fnv1a64("bar", 3, fnv1a64("foo", 3)), 0x85944171f73967e8ull);
}

TEST(Hash, Fnv1a64FileMatchesPython) {
  fs::path p = test::fixtures_dir() / "core" / "python_made.safetensors";
  const uint64_t h = fnv1a64_file(p);
  EXPECT_EQ(h, 0x97cd0965a4b8fedeull);             // printed by make_core_fixture.py
  EXPECT_EQ(fnv1a64_file(p, h), 0x9ff35d498a771b3dull);  // the file twice, chained via seed
}

TEST(Hash, Fnv1a64FileAcrossChunkBoundariesAndEdgeCases) {
  fs::path d = hash_dir();
  // 3 MiB + 5 bytes: crosses the 1 MiB read chunks.
  std::string data(3 * (1 << 20) + 5, '\0');
  uint32_t x = 12345;
  for (auto& c : data) {
    x = x * 1664525u + 1013904223u;
    c = static_cast<char>(x >> 24);
  }
  fs::path big = d / "big.bin";
  std::ofstream(big, std::ios::binary).write(data.data(), static_cast<std::streamsize>(data.size()));
  EXPECT_EQ(fnv1a64_file(big), fnv1a64(data.data(), data.size()));

  fs::path empty = d / "empty.bin";
  std::ofstream(empty, std::ios::binary).flush();
  EXPECT_EQ(fnv1a64_file(empty), kFnv1a64Offset);
  EXPECT_EQ(fnv1a64_file(empty, 42), 42u);

  try {
    fnv1a64_file(d / "missing.bin");
    ADD_FAILURE() << "missing file did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing.bin"), std::string::npos) << e.what();
  }
  EXPECT_THROW(fnv1a64_file(d), Error);  // a directory
}

}  // namespace
}  // namespace qwen3vl

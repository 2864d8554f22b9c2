// The bandwidth probe over caller-held spans (kernels/membw.h): every byte of every span read
// exactly once per pass, whatever the alignment, span sizes and thread count (the byte sum it
// returns is checked against a plain sum), and a positive rate.
#include <gtest/gtest.h>

#include <cstdint>
#include <numeric>
#include <vector>

#include "kernel_test_util.h"
#include "kernels/membw.h"

namespace qwen3vl::kernels::test {
namespace {

TEST(MemBw, SpansReadEveryByteOnceAtAnyAlignment) {
  std::vector<uint8_t> buf(200000 + 1000);  // the last span ends at 200000
  uint32_t x = 7;
  for (auto& b : buf) {
    x = x * 1664525u + 1013904223u;
    b = static_cast<uint8_t>(x >> 24);
  }
  // Offsets and lengths chosen to cut across 64-byte lines and the 256-byte SIMD step: empty,
  // 1 byte, sub-line, unaligned heads and tails, and one long span.
  const std::vector<std::pair<size_t, size_t>> cuts = {{0, 0}, {3, 1}, {5, 63}, {64, 64}, {129, 300}, {1001, 70000}, {71003, 9}, {80000, 120000}};
  std::vector<ReadSpan> spans;
  uint64_t expect = 0;
  for (auto [off, len] : cuts) {
    ASSERT_LE(off + len, buf.size());
    spans.push_back({buf.data() + off, len});
    expect = std::accumulate(buf.begin() + static_cast<std::ptrdiff_t>(off), buf.begin() + static_cast<std::ptrdiff_t>(off + len), expect);
  }
  IsaGuard g;
  for (Isa isa : supported_isas()) {
    set_isa(isa);
    for (int threads : {1, 2, 3, 7}) {
      uint64_t sum = 0;
      const double gbs = measure_spans_read_gbs(spans, threads, 2, &sum);
      EXPECT_EQ(sum, expect) << isa_name(isa) << ", " << threads << " threads";
      EXPECT_GT(gbs, 0.0);
    }
  }
  uint64_t sum = 1;
  EXPECT_EQ(measure_spans_read_gbs({}, 2, 1, &sum), 0.0);
  EXPECT_EQ(sum, 0u);
}

}  // namespace
}  // namespace qwen3vl::kernels::test

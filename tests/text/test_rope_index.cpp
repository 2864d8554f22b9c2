// get_rope_index and the M-RoPE frequency layout, against hand-computed values (spec §4.3, §5.2)
// and torch's inv_freq.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "text/qwen3vl_text.h"
#include "text/rope_index.h"

namespace qwen3vl {
namespace {

constexpr int64_t kVS = 151652, kVE = 151653, kIP = 151655, kVP = 151656;

std::vector<int64_t> pos_row(const RopeIndex& r, int axis) {
  const int64_t S = r.position_ids.size(1);
  const int64_t* p = r.position_ids.data<int64_t>() + axis * S;
  return std::vector<int64_t>(p, p + S);
}

TEST(RopeIndex, TextOnlyIsArange) {
  Qwen3VLConfig cfg;
  std::vector<int64_t> ids = {1, 2, 3, 4, 5};
  RopeIndex r = get_rope_index(ids, {}, {}, cfg);
  for (int a = 0; a < 3; ++a) EXPECT_EQ(pos_row(r, a), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(r.rope_delta, 0);
}

// Spec §5.2: 640x480 image, grid (1, 30, 40) -> 300 tokens (15 x 20), delta -280.
TEST(RopeIndex, SpecWorkedExample) {
  Qwen3VLConfig cfg;
  std::vector<int64_t> ids = {151644, 872, 198, kVS};
  ids.insert(ids.end(), 300, kIP);
  ids.push_back(kVE);
  for (int i = 0; i < 10; ++i) ids.push_back(1000 + i);
  RopeIndex r = get_rope_index(ids, {{1, 30, 40}}, {}, cfg);
  auto t = pos_row(r, 0), h = pos_row(r, 1), w = pos_row(r, 2);
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(t[i] == i && h[i] == i && w[i] == i) << i;
  for (int row = 0; row < 15; ++row)
    for (int c = 0; c < 20; ++c) {
      const int i = 4 + 20 * row + c;
      ASSERT_EQ(t[i], 4);
      ASSERT_EQ(h[i], 4 + row);
      ASSERT_EQ(w[i], 4 + c);
    }
  EXPECT_EQ(h[303], 18);
  EXPECT_EQ(w[303], 23);
  for (size_t i = 304; i < ids.size(); ++i) {
    ASSERT_EQ(t[i], static_cast<int64_t>(i) - 280);
    ASSERT_EQ(h[i], t[i]);
    ASSERT_EQ(w[i], t[i]);
  }
  EXPECT_EQ(r.rope_delta, -280);
  Tensor d = decode_position_ids(static_cast<int64_t>(ids.size()), 2, r.rope_delta);
  EXPECT_EQ(d.data<int64_t>()[0], static_cast<int64_t>(ids.size()) - 280);
  EXPECT_EQ(d.data<int64_t>()[5], static_cast<int64_t>(ids.size()) - 279);
}

// A 2-group video (grid (2, 4, 6): 2 blocks of 2 x 3) with timestamp text between the blocks.
TEST(RopeIndex, VideoGroupsAreSeparateBlocks) {
  Qwen3VLConfig cfg;
  std::vector<int64_t> ids = {10, 11, 20, 21, kVS};
  ids.insert(ids.end(), 6, kVP);
  ids.insert(ids.end(), {kVE, 22, kVS});
  ids.insert(ids.end(), 6, kVP);
  ids.insert(ids.end(), {kVE, 12});
  RopeIndex r = get_rope_index(ids, {}, {{2, 4, 6}}, cfg);
  std::vector<int64_t> et = {0, 1, 2, 3, 4, 5, 5, 5, 5, 5, 5, 8, 9, 10, 11, 11, 11, 11, 11, 11, 14, 15};
  std::vector<int64_t> eh = {0, 1, 2, 3, 4, 5, 5, 5, 6, 6, 6, 8, 9, 10, 11, 11, 11, 12, 12, 12, 14, 15};
  std::vector<int64_t> ew = {0, 1, 2, 3, 4, 5, 6, 7, 5, 6, 7, 8, 9, 10, 11, 12, 13, 11, 12, 13, 14, 15};
  EXPECT_EQ(pos_row(r, 0), et);
  EXPECT_EQ(pos_row(r, 1), eh);
  EXPECT_EQ(pos_row(r, 2), ew);
  EXPECT_EQ(r.rope_delta, 16 - 22);
}

// Video before image; the image grid is wide (1 x 4 merged cells).
TEST(RopeIndex, VideoThenImageAnyOrder) {
  Qwen3VLConfig cfg;
  std::vector<int64_t> ids = {kVS, kVP, kVP, kVP, kVP, kVE, kVS, kVP, kVP, kVP, kVP, kVE, kVS,
                              kIP, kIP, kIP, kIP, kVE, 7};
  RopeIndex r = get_rope_index(ids, {{1, 2, 8}}, {{2, 4, 4}}, cfg);
  std::vector<int64_t> et = {0, 1, 1, 1, 1, 3, 4, 5, 5, 5, 5, 7, 8, 9, 9, 9, 9, 13, 14};
  std::vector<int64_t> eh = {0, 1, 1, 2, 2, 3, 4, 5, 5, 6, 6, 7, 8, 9, 9, 9, 9, 13, 14};
  std::vector<int64_t> ew = {0, 1, 2, 1, 2, 3, 4, 5, 6, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14};
  EXPECT_EQ(pos_row(r, 0), et);
  EXPECT_EQ(pos_row(r, 1), eh);
  EXPECT_EQ(pos_row(r, 2), ew);
  EXPECT_EQ(r.rope_delta, 15 - 19);
}

TEST(RopeIndex, ClearErrors) {
  Qwen3VLConfig cfg;
  std::vector<int64_t> ids = {kVS, kIP, kIP, kIP, kVE};  // 3 pads, grid needs 4
  EXPECT_THROW(get_rope_index(ids, {{1, 4, 4}}, {}, cfg), Error);
  std::vector<int64_t> two = {kVS, kIP, kVE, kVS, kIP, kVE};  // two blocks, one grid
  EXPECT_THROW(get_rope_index(two, {{1, 2, 2}}, {}, cfg), Error);
  try {
    get_rope_index(ids, {{1, 4, 4}}, {}, cfg);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("placeholder"), std::string::npos) << e.what();
  }
}

// Spec §4.3 slot map for mrope_section [24, 20, 20] and head_dim 128.
TEST(TextRotary, InterleavedSlotMap) {
  Qwen3VLTextConfig tc;  // head_dim 128, theta 5e6, [24, 20, 20]
  Qwen3VLTextRotaryEmbedding rope(tc);
  const auto& ax = rope.slot_axis();
  ASSERT_EQ(ax.size(), 64u);
  int counts[3] = {0, 0, 0};
  for (int j = 0; j < 64; ++j) {
    int expect = (j % 3 == 1 && j < 60) ? 1 : (j % 3 == 2 && j < 60) ? 2 : 0;
    EXPECT_EQ(ax[j], expect) << "slot " << j;
    counts[ax[j]]++;
  }
  EXPECT_EQ(counts[0], 24);
  EXPECT_EQ(counts[1], 20);
  EXPECT_EQ(counts[2], 20);
}

// inv_freq vs torch 2.9.1 (1 / 5e6 ** (arange(0, 128, 2).float() / 128)), at most 1 ulp apart
// (torch's vectorised pow is not correctly rounded; we use the correctly rounded value).
TEST(TextRotary, InvFreqMatchesTorch) {
  const float torch128[64] = {
      0x1.0000000000000p+0f, 0x1.9258500000000p-1f, 0x1.3c2cba0000000p-1f, 0x1.f0eb4e0000000p-2f, 0x1.867e740000000p-2f,
      0x1.32dca40000000p-2f, 0x1.e248520000000p-3f, 0x1.7afdf80000000p-3f, 0x1.29d2c60000000p-3f, 0x1.d413b60000000p-4f,
      0x1.6fd4340000000p-4f, 0x1.210d0e0000000p-4f, 0x1.c64a360000000p-5f, 0x1.64fea00000000p-5f, 0x1.18897e0000000p-5f,
      0x1.b8e8ac0000000p-6f, 0x1.5a7abc0000000p-6f, 0x1.10461e0000000p-6f, 0x1.abec0a0000000p-7f, 0x1.5046220000000p-7f,
      0x1.0841100000000p-7f, 0x1.9f51520000000p-8f, 0x1.465e7c0000000p-8f, 0x1.00787a0000000p-8f, 0x1.9315a60000000p-9f,
      0x1.3cc1860000000p-9f, 0x1.f1d5260000000p-10f, 0x1.8736380000000p-10f, 0x1.336d0c0000000p-10f, 0x1.e32b4a0000000p-11f,
      0x1.7bb0520000000p-11f, 0x1.2a5eec0000000p-11f, 0x1.d4effe0000000p-12f, 0x1.7081500000000p-12f, 0x1.2195160000000p-12f,
      0x1.c720000000000p-13f, 0x1.65a69e0000000p-13f, 0x1.190d820000000p-13f, 0x1.b9b8280000000p-14f, 0x1.5b1dc80000000p-14f,
      0x1.10c6400000000p-14f, 0x1.acb56a0000000p-15f, 0x1.50e4600000000p-15f, 0x1.08bd6c0000000p-15f, 0x1.a014c40000000p-16f,
      0x1.46f8120000000p-16f, 0x1.00f12c0000000p-16f, 0x1.93d3560000000p-17f, 0x1.3d56960000000p-17f, 0x1.f2bf6c0000000p-18f,
      0x1.87ee540000000p-18f, 0x1.33fdb80000000p-18f, 0x1.e40eaa0000000p-19f, 0x1.7c63000000000p-19f, 0x1.2aeb560000000p-19f,
      0x1.d5ccaa0000000p-20f, 0x1.712eba0000000p-20f, 0x1.221d5c0000000p-20f, 0x1.c7f6300000000p-21f, 0x1.664eee0000000p-21f,
      0x1.1991c60000000p-21f, 0x1.ba880a0000000p-22f, 0x1.5bc1220000000p-22f, 0x1.11469e0000000p-22f};
  Qwen3VLTextConfig tc;
  Qwen3VLTextRotaryEmbedding rope(tc);
  int exact = 0;
  for (int j = 0; j < 64; ++j) {
    const float ours = rope.inv_freq()[j];
    EXPECT_LE(std::fabs(ours - torch128[j]), std::nextafter(torch128[j], 1e9f) - torch128[j]) << "slot " << j;
    exact += ours == torch128[j];
  }
  std::printf("[inv_freq] head_dim 128: %d of 64 bit-identical to torch, the rest within 1 ulp\n", exact);
  EXPECT_GE(exact, 62);
}

// Text-only positions (t = h = w = p): cos/sin reduce to 1-D RoPE, halves duplicated; the
// BF16 variant rounds them like `cos.to(bfloat16)`.
TEST(TextRotary, OneDimensionalForTextAndBf16Rounding) {
  Qwen3VLTextConfig tc;
  tc.head_dim = 16;
  tc.mrope_section = {4, 2, 2};
  Qwen3VLTextRotaryEmbedding rope(tc), rope_bf16(tc, DType::BF16);
  const int64_t S = 5;
  std::vector<int64_t> p(3 * S);
  for (int a = 0; a < 3; ++a)
    for (int s = 0; s < S; ++s) p[a * S + s] = 100 * s;
  Tensor pos = Tensor::from_vector(p, {3, S});
  std::vector<float> c(S * 16), sn(S * 16), cb(S * 16), sb(S * 16);
  rope.forward(pos, c.data(), sn.data());
  rope_bf16.forward(pos, cb.data(), sb.data());
  for (int s = 0; s < S; ++s)
    for (int j = 0; j < 8; ++j) {
      const float angle = static_cast<float>(100 * s) * rope.inv_freq()[j];
      EXPECT_NEAR(c[s * 16 + j], std::cos(angle), 1e-6);
      EXPECT_NEAR(sn[s * 16 + j], std::sin(angle), 1e-6);
      EXPECT_EQ(c[s * 16 + j], c[s * 16 + j + 8]);
      EXPECT_EQ(sn[s * 16 + j], sn[s * 16 + j + 8]);
      EXPECT_EQ(cb[s * 16 + j], round_bf16(c[s * 16 + j]));
      EXPECT_EQ(sb[s * 16 + j], round_bf16(sn[s * 16 + j]));
    }
}

}  // namespace
}  // namespace qwen3vl

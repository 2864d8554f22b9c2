// Tensor basics and dtype conversions. Expected bit patterns were produced by torch 2.9.1
// (`torch.tensor(v, dtype=torch.float32).to(torch.bfloat16 / torch.float16).view(torch.int16)`).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/tensor.h"

namespace qwen3vl {
namespace {

float bits_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

TEST(DType, NamesRoundTrip) {
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::F64, DType::I64, DType::I32, DType::I16, DType::I8,
                  DType::U8, DType::BOOL}) {
    auto back = dtype_from_name(dtype_name(t));
    ASSERT_TRUE(back.has_value()) << dtype_name(t);
    EXPECT_EQ(*back, t);
  }
  EXPECT_FALSE(dtype_from_name("f32").has_value());
  EXPECT_FALSE(dtype_from_name("F8_E4M3").has_value());
  EXPECT_EQ(dtype_size(DType::BF16), 2u);
  EXPECT_EQ(dtype_size(DType::I64), 8u);
  EXPECT_EQ(dtype_size(DType::BOOL), 1u);
}

TEST(DType, Bf16RoundsToNearestEvenLikeTorch) {
  const float in[] = {1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, -1.0f - 0x1p-8f, std::numeric_limits<float>::max(),
                      INFINITY, -INFINITY, 1e-40f, -0.0f, 0.1f, 65504.0f, 1.00390625f + 0x1p-20f};
  const uint16_t torch_bits[] = {0x3f80, 0x3f82, 0xbf80, 0x7f80, 0x7f80, 0xff80, 0x0001, 0x8000, 0x3dcd, 0x4780, 0x3f81};
  for (size_t i = 0; i < std::size(in); ++i)
    EXPECT_EQ(f32_to_bf16(in[i]), torch_bits[i]) << "input " << in[i] << " (#" << i << ")";
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(bits_f32(0x7f800001u)))));  // signalling NaN stays NaN
  EXPECT_EQ(round_bf16(1.0f + 0x1p-8f), 1.0f);
}

TEST(DType, Bf16RoundTripAndHalfwayRule) {
  // Every bf16 value converts to f32 and back unchanged (NaNs stay NaN).
  for (uint32_t h = 0; h < 65536; ++h) {
    float f = bf16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      ASSERT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(f))));
    } else {
      ASSERT_EQ(f32_to_bf16(f), h) << std::hex << h;
    }
  }
  // Midpoints between neighbours go to the even one; one ulp either side goes to the nearer.
  for (uint32_t h = 0; h < 0x7f7f; h += 37) {
    uint32_t mid = (h << 16) | 0x8000u;
    uint16_t even = (h & 1) ? static_cast<uint16_t>(h + 1) : static_cast<uint16_t>(h);
    ASSERT_EQ(f32_to_bf16(bits_f32(mid)), even) << std::hex << h;
    ASSERT_EQ(f32_to_bf16(bits_f32(mid - 1)), h) << std::hex << h;
    ASSERT_EQ(f32_to_bf16(bits_f32(mid + 1)), h + 1) << std::hex << h;
    ASSERT_EQ(f32_to_bf16(-bits_f32(mid + 1)), (h + 1) | 0x8000u) << std::hex << h;
  }
}

TEST(DType, F16RoundsToNearestEvenLikeTorchIncludingSubnormals) {
  const float in[] = {0x1p-24f,  0x1p-25f, 3 * 0x1p-25f, 0x1p-14f, 0x1p-14f - 0x1p-24f, 1023 * 0x1p-24f,
                      65504.0f,  65519.0f, 65520.0f,     -0x1p-24f, 1e-8f,              0.1f,
                      1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f, 1.5f * 0x1p-24f, 1.0f / 3.0f, -1e-3f, 65519.99f};
  const uint16_t torch_bits[] = {0x0001, 0x0000, 0x0002, 0x0400, 0x03ff, 0x03ff, 0x7bff, 0x7bff, 0x7c00,
                                 0x8001, 0x0000, 0x2e66, 0x3c00, 0x3c02, 0x0002, 13653,  0x9419, 31743};
  for (size_t i = 0; i < std::size(in); ++i)
    EXPECT_EQ(f32_to_f16(in[i]), torch_bits[i]) << "input " << in[i] << " (#" << i << ")";
  EXPECT_EQ(f32_to_f16(-INFINITY), 0xfc00);
  EXPECT_EQ(f32_to_f16(1e30f), 0x7c00);
  EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(NAN))));
  // Decoding subnormals: value = mantissa * 2^-24 exactly.
  EXPECT_EQ(f16_to_f32(0x0001), 0x1p-24f);
  EXPECT_EQ(f16_to_f32(0x03ff), 1023 * 0x1p-24f);
  EXPECT_EQ(f16_to_f32(0x8001), -0x1p-24f);
  EXPECT_EQ(f16_to_f32(0x0400), 0x1p-14f);
  EXPECT_EQ(f16_to_f32(0x7bff), 65504.0f);
  EXPECT_EQ(f16_to_f32(0x7c00), INFINITY);
  EXPECT_EQ(f32_bits(f16_to_f32(0x8000)), 0x80000000u);  // -0 keeps its sign
}

TEST(DType, F16RoundTripAndHalfwayRule) {
  for (uint32_t h = 0; h < 65536; ++h) {
    float f = f16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      ASSERT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f))));
    } else {
      ASSERT_EQ(f32_to_f16(f), h) << std::hex << h;
    }
  }
  // Every pair of neighbouring finite positive f16 values (subnormal and normal): the exact
  // midpoint rounds to the even code, anything just off it to the nearer one.
  for (uint32_t h = 0; h < 0x7bff; ++h) {
    float lo = f16_to_f32(static_cast<uint16_t>(h)), hi = f16_to_f32(static_cast<uint16_t>(h + 1));
    float mid = (lo + hi) / 2;  // exact in f32
    uint16_t even = (h & 1) ? static_cast<uint16_t>(h + 1) : static_cast<uint16_t>(h);
    ASSERT_EQ(f32_to_f16(mid), even) << std::hex << h;
    ASSERT_EQ(f32_to_f16(std::nextafter(mid, 0.0f)), h) << std::hex << h;
    ASSERT_EQ(f32_to_f16(std::nextafter(mid, INFINITY)), h + 1) << std::hex << h;
    ASSERT_EQ(f32_to_f16(-std::nextafter(mid, INFINITY)), (h + 1) | 0x8000u) << std::hex << h;
  }
}

TEST(Tensor, ConstructionShapeAndAccess) {
  Tensor t = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(t.str(), "F32[2, 3]");
  EXPECT_EQ(t.numel(), 6);
  EXPECT_EQ(t.nbytes(), 24u);
  EXPECT_EQ(t.size(-1), 3);
  EXPECT_EQ(t.size(0), 2);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw()) % 64, 0u);
  EXPECT_THROW(t.size(2), Error);
  EXPECT_THROW(t.data<int32_t>(), Error);
  EXPECT_THROW(t.item(6), Error);
  EXPECT_THROW(Tensor::from_vector<float>({1, 2, 3}, {2, 2}), Error);
  EXPECT_THROW(Tensor::empty({2, -1}), Error);
  EXPECT_EQ(Tensor::zeros({0, 5}).numel(), 0);
  EXPECT_TRUE(Tensor::zeros({0, 5}).defined());
  EXPECT_FALSE(Tensor().defined());
  Tensor z = Tensor::zeros({3}, DType::I64);
  EXPECT_EQ(z.data<int64_t>()[2], 0);

  Tensor r = t.reshape({3, 2});
  EXPECT_EQ(r.raw(), t.raw());  // shares storage
  EXPECT_EQ(r.item(5), 6.0);
  EXPECT_THROW(t.reshape({4, 2}), Error);

  Tensor rows = t.slice_rows(1, 2);
  EXPECT_EQ(rows.str(), "F32[1, 3]");
  EXPECT_EQ(rows.item(0), 4.0);
  EXPECT_THROW(t.slice_rows(1, 3), Error);
  EXPECT_THROW(t.slice_rows(2, 1), Error);
  EXPECT_EQ(t.slice_rows(2, 2).numel(), 0);
}

TEST(Tensor, ConversionsMatchTorch) {
  Tensor f = Tensor::from_vector<float>({1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, 0.1f, 0x1p-24f, -2.7f, 2.7f, -0.5f,
                                         255.9f},
                                        {8});
  Tensor bf = f.to(DType::BF16);
  EXPECT_EQ(bf.str(), "BF16[8]");
  EXPECT_EQ(bf.data_u16()[0], 0x3f80);
  EXPECT_EQ(bf.data_u16()[1], 0x3f82);
  EXPECT_EQ(bf.data_u16()[2], 0x3dcd);
  Tensor back = bf.to(DType::F32);
  EXPECT_EQ(back.item(0), 1.0);
  EXPECT_EQ(back.item(2), static_cast<double>(bf16_to_f32(0x3dcd)));

  Tensor h = f.to(DType::F16);
  EXPECT_EQ(h.data_u16()[2], 0x2e66);
  EXPECT_EQ(h.data_u16()[3], 0x0001);  // subnormal
  EXPECT_EQ(h.to(DType::F32).item(3), std::ldexp(1.0, -24));
  EXPECT_EQ(h.to(DType::BF16).to(DType::F32).item(3), std::ldexp(1.0, -24));  // f16 -> bf16 exact here

  // Float -> int truncates toward zero like torch: [-2, 2, 0, 255].
  Tensor i = f.slice_rows(4, 8).to(DType::I32);
  const int32_t ei[4] = {-2, 2, 0, 255};
  for (int k = 0; k < 4; ++k) EXPECT_EQ(i.data<int32_t>()[k], ei[k]) << k;
  Tensor l = f.slice_rows(4, 8).to(DType::I64);
  EXPECT_EQ(l.data<int64_t>()[0], -2);

  Tensor ids = Tensor::from_vector<int64_t>({151643, -1, int64_t{1} << 40}, {3});
  Tensor idf = ids.to(DType::F32);
  EXPECT_EQ(idf.item(0), 151643.0);
  EXPECT_EQ(idf.item(2), std::ldexp(1.0, 40));
  EXPECT_EQ(ids.clone().data<int64_t>()[2], int64_t{1} << 40);
  EXPECT_NE(ids.clone().raw(), ids.raw());

  Tensor u = Tensor::from_vector<uint8_t>({0, 128, 255}, {3}).to(DType::F32);
  EXPECT_EQ(u.item(2), 255.0);
  EXPECT_EQ(Tensor::zeros({0, 2}).to(DType::BF16).str(), "BF16[0, 2]");
}

}  // namespace
}  // namespace qwen3vl

// Unit tests of the stateless vision helpers (src/vision/vision_functional.h): hand-computed
// values, and the reference values of the HF fixtures (rotary cos/sin, cu_seqlens, pos embeds).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "common/compare.h"
#include "common/models.h"
#include "model/checkpoint.h"
#include "vision/vision_functional.h"
#include "vision_fixtures.h"

namespace qwen3vl {
namespace {

Tensor make_tensor(const std::vector<float>& v, Shape s) { return Tensor::from_vector(v, std::move(s)); }

TEST(VisionFunctional, RotateHalf) {
  // rotate_half([1, 2, 3, 4]) = cat(-x2, x1) = [-3, -4, 1, 2], per row.
  Tensor x = make_tensor({1, 2, 3, 4, 5, 6, 7, 8}, {2, 4});
  Tensor r = rotate_half(x);
  test::expect_equal("rotate_half", r, make_tensor({-3, -4, 1, 2, -7, -8, 5, 6}, {2, 4}));
  EXPECT_THROW(rotate_half(make_tensor({1, 2, 3}, {3})), Error);
}

TEST(VisionFunctional, ApplyRotaryPosEmbVisionMatchesRotateHalfFormula) {
  // q, k inside a fused [S, 3, heads, hd] buffer (token stride 3 * heads * hd), as the attention uses them.
  const int64_t S = 5, heads = 2, hd = 8, stride = 3 * heads * hd;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  std::vector<float> qkv(static_cast<size_t>(S * stride));
  for (float& x : qkv) x = u(rng);
  std::vector<float> cs(static_cast<size_t>(S * hd)), sn(cs.size());
  for (size_t i = 0; i < cs.size(); ++i) {
    cs[i] = std::cos(0.3f * static_cast<float>(i));
    sn[i] = std::sin(0.3f * static_cast<float>(i));
  }
  Tensor cos = make_tensor(cs, {S, hd}), sin = make_tensor(sn, {S, hd});
  std::vector<float> orig = qkv;
  apply_rotary_pos_emb_vision(qkv.data(), qkv.data() + heads * hd, S, stride, heads, hd, cos, sin);
  for (int part = 0; part < 3; ++part)
    for (int64_t s = 0; s < S; ++s)
      for (int64_t h = 0; h < heads; ++h) {
        const float* src = orig.data() + s * stride + part * heads * hd + h * hd;
        const float* got = qkv.data() + s * stride + part * heads * hd + h * hd;
        Tensor x = make_tensor(std::vector<float>(src, src + hd), {hd});
        Tensor rx = rotate_half(x);
        for (int64_t d = 0; d < hd; ++d) {
          // q_embed = (q * cos) + (rotate_half(q) * sin); v untouched
          const float want = part == 2 ? src[d] : src[d] * cs[s * hd + d] + rx.data<float>()[d] * sn[s * hd + d];
          EXPECT_NEAR(got[d], want, 1e-6f) << "part " << part << " token " << s << " head " << h << " dim " << d;
        }
      }
  EXPECT_THROW(apply_rotary_pos_emb_vision(qkv.data(), qkv.data(), S + 1, stride, heads, hd, cos, sin), Error);
}

TEST(VisionFunctional, RotaryEmbeddingTable) {
  // inv_freq[k] = 1 / 10000^(2k / dim); freqs[s, k] = s * inv_freq[k]
  const int64_t dim = 8;
  Tensor f = qwen3_vision_rotary_embedding(6, dim);
  ASSERT_EQ(f.shape(), Shape({6, 4}));
  for (int64_t s = 0; s < 6; ++s)
    for (int64_t k = 0; k < 4; ++k) {
      const double want = static_cast<double>(s) / std::pow(10000.0, 2.0 * static_cast<double>(k) / dim);
      EXPECT_NEAR(f.item(s * 4 + k), want, 1e-6 * std::max(1.0, want)) << s << "," << k;
    }
}

TEST(VisionFunctional, RotPosEmbMergeWindowOrder) {
  // Grid (t=2, h=4, w=6), merge 2, head_dim 16: 8 columns = 4 row freqs then 4 col freqs; inv_freq[0] = 1,
  // so column 0 is the row index and column 4 the col index of each token.
  std::vector<GridTHW> grid = {{2, 4, 6}};
  Tensor e = qwen3_vl_rot_pos_emb(grid, 2, 16);
  ASSERT_EQ(e.shape(), Shape({48, 8}));
  int64_t tok = 0;
  for (int64_t tt = 0; tt < 2; ++tt)
    for (int64_t br = 0; br < 2; ++br)
      for (int64_t bc = 0; bc < 3; ++bc)
        for (int64_t ir = 0; ir < 2; ++ir)
          for (int64_t ic = 0; ic < 2; ++ic, ++tok) {
            EXPECT_EQ(e.item(tok * 8 + 0), static_cast<double>(2 * br + ir)) << "token " << tok;
            EXPECT_EQ(e.item(tok * 8 + 4), static_cast<double>(2 * bc + ic)) << "token " << tok;
          }
}

TEST(VisionFunctional, PreprocessCuSeqlensAndCosSin) {
  // Two images and a 3-frame video: one segment per image and per temporal patch.
  std::vector<GridTHW> grid = {{1, 4, 6}, {3, 2, 2}, {1, 2, 4}};
  VisionPreprocess p = qwen3_vision_transformer_preprocess(24 + 12 + 8, grid, 16, 2);
  test::expect_equal("cu_seqlens", p.cu_seqlens, Tensor::from_vector<int64_t>({0, 24, 28, 32, 36, 44}, {6}));
  ASSERT_EQ(p.cos.shape(), Shape({44, 16}));
  Tensor r = qwen3_vl_rot_pos_emb(grid, 2, 16);
  for (int64_t t = 0; t < 44; ++t)
    for (int64_t j = 0; j < 16; ++j) {
      // emb = cat((rotary_pos_emb, rotary_pos_emb), -1)
      const double a = r.item(t * 8 + j % 8);
      EXPECT_NEAR(p.cos.item(t * 16 + j), std::cos(a), 1e-6);
      EXPECT_NEAR(p.sin.item(t * 16 + j), std::sin(a), 1e-6);
    }
  EXPECT_THROW(qwen3_vision_transformer_preprocess(43, grid, 16, 2), Error);
}

TEST(VisionFunctional, BadGridIsAnError) {
  EXPECT_THROW(check_grid_thw({{1, 3, 4}}, 2), Error);
  EXPECT_THROW(check_grid_thw({{0, 4, 4}}, 2), Error);
  EXPECT_THROW(check_grid_thw({}, 2), Error);
  EXPECT_NO_THROW(check_grid_thw({{1, 4, 4}, {4, 2, 8}}, 2));
}

TEST(VisionFunctional, PosEmbedInterpolationOfALinearTable) {
  // Bilinear interpolation reproduces a linear function: E[r*G + c][ch] = r + 10c + 100ch gives
  // pe(i, j)[ch] = hs[i] + 10 ws[j] + 100ch, hs/ws = linspace(0, G-1, h/w). Also checks the
  // merge-window permutation and the repeat over t.
  const int64_t G = 5, D = 3;
  std::vector<float> table(static_cast<size_t>(G * G * D));
  for (int64_t r = 0; r < G; ++r)
    for (int64_t c = 0; c < G; ++c)
      for (int64_t ch = 0; ch < D; ++ch) table[static_cast<size_t>((r * G + c) * D + ch)] = float(r + 10 * c + 100 * ch);
  Tensor E = Tensor::from_vector(table, {G * G, D});
  for (GridTHW g : {GridTHW{1, 4, 6}, GridTHW{2, 8, 2}, GridTHW{1, 2, 2}}) {
    Tensor pe = qwen3_vl_fast_pos_embed_interpolation({g}, G, E, 2);
    ASSERT_EQ(pe.shape(), Shape({g.t * g.h * g.w, D}));
    int64_t tok = 0;
    for (int64_t tt = 0; tt < g.t; ++tt)
      for (int64_t br = 0; br < g.h / 2; ++br)
        for (int64_t bc = 0; bc < g.w / 2; ++bc)
          for (int64_t ir = 0; ir < 2; ++ir)
            for (int64_t ic = 0; ic < 2; ++ic, ++tok) {
              const double hs = double(G - 1) * double(2 * br + ir) / double(g.h - 1);
              const double ws = double(G - 1) * double(2 * bc + ic) / double(g.w - 1);
              for (int64_t ch = 0; ch < D; ++ch)
                EXPECT_NEAR(pe.item(tok * D + ch), hs + 10 * ws + 100 * ch, 1e-4) << "token " << tok << " ch " << ch;
            }
  }
  // bf16 table: the products and the 4-term sum are rounded to bf16 (transformers 4.57.6), so the
  // result is a bf16 value and within a few bf16 ulps of the exact interpolation.
  Tensor Eb = E.to(DType::BF16);
  Tensor pe = qwen3_vl_fast_pos_embed_interpolation({{1, 4, 6}}, G, Eb, 2);
  Tensor pe32 = qwen3_vl_fast_pos_embed_interpolation({{1, 4, 6}}, G, E, 2);
  for (int64_t i = 0; i < pe.numel(); ++i) {
    const float v = pe.data<float>()[i];
    EXPECT_EQ(v, round_bf16(v)) << "#" << i << " is not a bf16 value";
    EXPECT_NEAR(v, pe32.item(i), 4 * std::ldexp(std::fabs(pe32.item(i)) + 1, -8)) << "#" << i;
  }
}

// ---- against the HF fixtures ---------------------------------------------------------------

class VisionFunctionalFixture : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {};

TEST_P(VisionFunctionalFixture, MatchesHF) {
  const auto& [set, cas] = GetParam();
  test::VisionFixture f;
  if (!test::load_vision_fixture(set, cas, f)) GTEST_SKIP() << "no fixture set " << set;
  const Tensor& ref_cos = f.at("vision.rotary.cos");
  const int64_t n = ref_cos.size(0), head_dim = ref_cos.size(1);

  // cos/sin: fp32 angles (single multiply) and fp32 cos/sin in both; torch's vectorised cos/sin
  // differ from libm by at most an ulp or two.
  VisionPreprocess p = qwen3_vision_transformer_preprocess(n, f.grid, head_dim, 2);
  test::expect_close(set + "/" + cas + " rotary.cos", p.cos, ref_cos, 0, 1e-6);
  test::expect_close(set + "/" + cas + " rotary.sin", p.sin, f.at("vision.rotary.sin"), 0, 1e-6);
  test::expect_equal(set + "/" + cas + " cu_seqlens", p.cu_seqlens, f.at("vision.cu_seqlens"));

  // Position embeddings from the checkpoint's table. f32: same operations in the same order as
  // torch (fp32 weights, products, left-to-right sum), so agreement to rounding noise. bf16: the
  // same bf16 roundings as 4.57.6; they can differ only where a torch.linspace value differs
  // from ours (we reproduce its FMA form exactly for steps 1..299) -- so require bit equality
  // up to 1 bf16 ulp of the largest value (2^-8 relative).
  Checkpoint ckpt = Checkpoint::load(test::model_for_fixture(f.metadata));
  const Tensor& table = ckpt.get("model.visual.pos_embed.weight");
  const int64_t side = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(table.size(0)))));
  Tensor pe = qwen3_vl_fast_pos_embed_interpolation(f.grid, side, table, 2);
  const double tol = table.dtype() == DType::F32 ? 1e-6 : std::ldexp(1.0, -8);
  test::expect_close(set + "/" + cas + " pos_embeds", pe, f.at("vision.pos_embeds"), tol);
}

std::vector<std::tuple<std::string, std::string>> all_params() {
  std::vector<std::tuple<std::string, std::string>> v;
  for (const auto& s : test::vision_fixture_sets())
    for (const auto& c : test::vision_fixture_cases()) v.emplace_back(s, c);
  return v;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, VisionFunctionalFixture, ::testing::ValuesIn(all_params()),
                         [](const auto& info) {
                           return test::fixture_param_name(std::get<0>(info.param), std::get<1>(info.param));
                         });

}  // namespace
}  // namespace qwen3vl

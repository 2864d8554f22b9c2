// generate(): stop strings, streaming, cancellation, EOS, seeded sampling, and the clear errors
// (context length, placeholder/feature mismatch), on the tiny-f32 fixture model.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/error.h"
#include "text/text_fixture.h"

namespace qwen3vl::test {
namespace {

class Generation : public ::testing::Test {
 protected:
  void SetUp() override {
    fx_ = load_text_fixture("tiny-f32", "one_image");
    if (!fx_) GTEST_SKIP() << "fixture tiny-f32/text_one_image not present";
    model_ = &model_for(*fx_);
    in_ = fixture_inputs(*fx_, false);
    greedy_ = fx_->ids("generate.greedy");
  }
  KVCache cache(int64_t extra = 64) const {
    return model_->make_cache(static_cast<int64_t>(in_.input_ids.size()) + extra);
  }
  static std::string piece(int64_t id) { return "<" + std::to_string(id) + ">"; }

  std::unique_ptr<TextFixture> fx_;
  const Qwen3VLForConditionalGeneration* model_ = nullptr;
  MultimodalInputs in_;
  std::vector<int64_t> greedy_;
};

// A stop string spanning two tokens ends generation at the token that completes it; the text
// is cut before it, and the streamed text equals the result text (held-back prefix released
// only when it turned out not to be a stop string).
TEST_F(Generation, StopStringAcrossTokensAndStreaming) {
  GenerationConfig cfg;
  cfg.max_new_tokens = 40;
  cfg.eos_token_id.clear();
  // Stop at the first occurrence of the text of greedy tokens 5 and 6 (ends mid-piece of 6).
  std::string full;
  for (int64_t t : greedy_) full += piece(t);
  const std::string stop = piece(greedy_[5]) + piece(greedy_[6]).substr(0, 3);
  cfg.stop_strings = {stop, "never-produced"};
  const size_t cut = full.find(stop);
  ASSERT_NE(cut, std::string::npos);
  size_t ntok = 0, len = 0;
  while (len < cut + stop.size()) len += piece(greedy_[ntok++]).size();

  std::string streamed;
  int calls = 0;
  GenerateOptions o;
  o.detokenize = piece;
  o.on_token = [&](int64_t, std::string_view t) {
    streamed += t;
    ++calls;
    return true;
  };
  KVCache c = cache();
  GenerationResult r = generate(*model_, in_, c, cfg, o);
  EXPECT_EQ(r.finish, FinishReason::StopString);
  EXPECT_EQ(r.tokens, std::vector<int64_t>(greedy_.begin(), greedy_.begin() + ntok));
  EXPECT_EQ(r.text, full.substr(0, cut));
  EXPECT_EQ(streamed, r.text);
  EXPECT_EQ(calls, static_cast<int>(ntok));
}

TEST_F(Generation, StreamingWithoutStopsAndCancel) {
  GenerationConfig cfg;
  cfg.max_new_tokens = 10;
  cfg.eos_token_id.clear();
  cfg.stop_strings = {"<zz"};  // a prefix "<" is held back each time, then released
  std::string streamed;
  GenerateOptions o;
  o.detokenize = piece;
  o.on_token = [&](int64_t, std::string_view t) {
    streamed += t;
    return true;
  };
  KVCache c = cache();
  GenerationResult r = generate(*model_, in_, c, cfg, o);
  EXPECT_EQ(r.finish, FinishReason::Length);
  EXPECT_EQ(r.tokens, std::vector<int64_t>(greedy_.begin(), greedy_.begin() + 10));
  EXPECT_EQ(streamed, r.text);
  EXPECT_EQ(c.length(), static_cast<int64_t>(in_.input_ids.size()) + 9);  // last token not decoded

  int n = 0;
  o.on_token = [&](int64_t, std::string_view) { return ++n < 3; };
  r = generate(*model_, in_, c, cfg, o);
  EXPECT_EQ(r.finish, FinishReason::Cancelled);
  EXPECT_EQ(r.tokens.size(), 3u);
}

TEST_F(Generation, StopsOnEosAndKeepsIt) {
  GenerationConfig cfg;
  cfg.max_new_tokens = 64;
  cfg.eos_token_id = {999999999, greedy_[7]};  // pretend the 8th greedy token is an EOS id
  size_t first = 0;
  while (greedy_[first] != greedy_[7]) ++first;
  int streamed = 0;
  GenerateOptions o;
  o.on_token = [&](int64_t, std::string_view) { return ++streamed > 0; };
  KVCache c = cache();
  GenerationResult r = generate(*model_, in_, c, cfg, o);
  EXPECT_EQ(r.finish, FinishReason::Eos);
  EXPECT_EQ(r.tokens, std::vector<int64_t>(greedy_.begin(), greedy_.begin() + first + 1));
  EXPECT_EQ(streamed, static_cast<int>(first));  // the EOS token is not streamed
}

TEST_F(Generation, SeededSamplingIsReproducible) {
  GenerationConfig cfg;
  cfg.do_sample = true;
  cfg.temperature = 1.5f;
  cfg.top_k = 40;
  cfg.top_p = 0.95f;
  cfg.min_p = 0.01f;
  cfg.max_new_tokens = 8;
  cfg.eos_token_id.clear();
  cfg.seed = 42;
  KVCache c = cache();
  auto a = generate(*model_, in_, c, cfg).tokens;
  auto b = generate(*model_, in_, c, cfg).tokens;
  EXPECT_EQ(a, b);
  cfg.seed = 43;
  auto d = generate(*model_, in_, c, cfg).tokens;
  EXPECT_NE(a, d);  // a tiny random model at T = 1.5 is far from deterministic
  EXPECT_NE(a, std::vector<int64_t>(greedy_.begin(), greedy_.begin() + 8));
}

TEST_F(Generation, ContextLengthErrors) {
  const int64_t S = static_cast<int64_t>(in_.input_ids.size());
  KVCache small = model_->make_cache(S - 1);
  GenerationConfig cfg;
  cfg.eos_token_id.clear();
  try {
    generate(*model_, in_, small, cfg);
    ADD_FAILURE() << "prompt longer than the context did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("context length"), std::string::npos) << e.what();
  }
  KVCache c = model_->make_cache(S + 3);
  cfg.max_new_tokens = 10;
  EXPECT_THROW(generate(*model_, in_, c, cfg), Error);
  cfg.max_new_tokens = 4;  // S + 3 cached tokens: the 4th new token needs no cache slot
  EXPECT_EQ(generate(*model_, in_, c, cfg).tokens.size(), 4u);
  // Prefill into a non-empty cache is refused; appending text is fine.
  EXPECT_THROW(model_->forward(in_, c, 1), Error);
}

TEST_F(Generation, PlaceholderMismatchErrors) {
  MultimodalInputs bad = in_;
  auto it = std::find(bad.input_ids.begin(), bad.input_ids.end(), model_->config().image_token_id);
  ASSERT_NE(it, bad.input_ids.end());
  bad.input_ids.erase(it);  // one <|image_pad|> fewer than the features
  KVCache c = cache();
  try {
    model_->forward(bad, c, 1);
    ADD_FAILURE() << "placeholder/feature mismatch did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("do not match"), std::string::npos) << e.what();
  }
  MultimodalInputs none = in_;
  none.image_features.reset();  // pads but no image
  KVCache c2 = cache();
  EXPECT_THROW(model_->forward(none, c2, 1), Error);
  MultimodalInputs oov = in_;
  oov.input_ids[0] = model_->vocab_size();
  KVCache c3 = cache();
  EXPECT_THROW(model_->forward(oov, c3, 1), Error);
  EXPECT_EQ(c3.length(), 0);
}

}  // namespace
}  // namespace qwen3vl::test

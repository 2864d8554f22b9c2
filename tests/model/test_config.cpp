// Qwen3VLConfig: both RoPE config forms, dtype spellings, tie handling, typed errors naming the
// field, validate() listing every violation, presets = published values, parameter counts.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "common/compare.h"
#include "core/error.h"
#include "model/config.h"
#include "model/presets.h"
#include "model/weight_names.h"

namespace qwen3vl {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// config.json as transformers 4.57.6 save_pretrained writes it for the 2B architecture
// (Qwen3VLConfig(...).save_pretrained, with transformers_version as in the published file).
const char* kHf2bConfig = R"({
  "architectures": ["Qwen3VLForConditionalGeneration"],
  "dtype": "bfloat16",
  "image_token_id": 151655,
  "model_type": "qwen3_vl",
  "text_config": {
    "attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 151643, "dtype": "bfloat16",
    "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu", "hidden_size": 2048,
    "initializer_range": 0.02, "intermediate_size": 6144, "max_position_embeddings": 262144,
    "model_type": "qwen3_vl_text", "num_attention_heads": 16, "num_hidden_layers": 28,
    "num_key_value_heads": 8, "rms_norm_eps": 1e-06,
    "rope_scaling": {"mrope_interleaved": true, "mrope_section": [24, 20, 20], "rope_type": "default"},
    "rope_theta": 5000000.0, "tie_word_embeddings": true, "use_cache": true, "vocab_size": 151936
  },
  "tie_word_embeddings": true,
  "transformers_version": "4.57.0.dev0",
  "video_token_id": 151656,
  "vision_config": {
    "deepstack_visual_indexes": [5, 11, 17], "depth": 24, "hidden_act": "gelu_pytorch_tanh",
    "hidden_size": 1024, "in_channels": 3, "initializer_range": 0.02, "intermediate_size": 4096,
    "model_type": "qwen3_vl", "num_heads": 16, "num_position_embeddings": 2304, "out_hidden_size": 2048,
    "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2
  },
  "vision_end_token_id": 151653,
  "vision_start_token_id": 151652
})";

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Config, ParsesRopeScalingForm) {
  auto c = Qwen3VLConfig::from_json(json::parse(kHf2bConfig));
  EXPECT_EQ(c.text_config.hidden_size, 2048);
  EXPECT_EQ(c.text_config.num_key_value_heads, 8);
  EXPECT_EQ(c.text_config.rope_theta, 5000000.0);
  EXPECT_EQ(c.text_config.mrope_section, (std::vector<int>{24, 20, 20}));
  EXPECT_TRUE(c.text_config.mrope_interleaved);
  EXPECT_EQ(c.text_config.rope_type, "default");
  EXPECT_EQ(c.text_config.eos_token_id, std::vector<int>{151645});
  EXPECT_EQ(c.vision_config.deepstack_visual_indexes, (std::vector<int>{5, 11, 17}));
  EXPECT_EQ(c.vision_config.depth, 24);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.dtype, "bfloat16");
  EXPECT_TRUE(c.validate().empty());
}

TEST(Config, ParsesRopeParametersForm) {
  json j = json::parse(kHf2bConfig);
  auto& t = j["text_config"];
  t.erase("rope_scaling");
  t.erase("rope_theta");
  t["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1234567.0}, {"mrope_section", {16, 24, 24}},
                          {"mrope_interleaved", true}};
  j.erase("dtype");
  j["torch_dtype"] = "float32";
  auto c = Qwen3VLConfig::from_json(j);
  EXPECT_EQ(c.text_config.rope_theta, 1234567.0);
  EXPECT_EQ(c.text_config.mrope_section, (std::vector<int>{16, 24, 24}));
  EXPECT_EQ(c.dtype, "float32");
  // rope_parameters wins over a legacy rope_scaling in the same file.
  t = j["text_config"];
  j["text_config"]["rope_scaling"] = {{"rope_type", "default"}, {"mrope_section", {24, 20, 20}}};
  j["text_config"]["rope_theta"] = 10.0;
  auto c2 = Qwen3VLConfig::from_json(j);
  EXPECT_EQ(c2.text_config.mrope_section, (std::vector<int>{16, 24, 24}));
  EXPECT_EQ(c2.text_config.rope_theta, 1234567.0);
}

TEST(Config, EosListAndKvDefault) {
  json j = json::parse(kHf2bConfig);
  j["text_config"]["eos_token_id"] = {151645, 151643};
  j["text_config"].erase("num_key_value_heads");
  auto c = Qwen3VLConfig::from_json(j);
  EXPECT_EQ(c.text_config.eos_token_id, (std::vector<int>{151645, 151643}));
  EXPECT_EQ(c.text_config.num_key_value_heads, 16);  // HF: None -> num_attention_heads
}

TEST(Config, TieFollowsTextConfigLikeTransformers4576) {
  json j = json::parse(kHf2bConfig);
  // transformers 4.57.6 ties iff get_text_config().tie_word_embeddings.
  j["tie_word_embeddings"] = true;
  j["text_config"]["tie_word_embeddings"] = false;
  auto c = Qwen3VLConfig::from_json(j);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.text_config.tie_word_embeddings);
  // Only the top level says it: HF 4.57.6 still builds an untied model (text_config default).
  j["text_config"].erase("tie_word_embeddings");
  c = Qwen3VLConfig::from_json(j);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.text_config.tie_word_embeddings);
  j["tie_word_embeddings"] = false;
  j["text_config"]["tie_word_embeddings"] = true;
  c = Qwen3VLConfig::from_json(j);
  EXPECT_TRUE(c.tie_word_embeddings);
  j["text_config"].erase("tie_word_embeddings");
  // Neither: false (class default).
  j.erase("tie_word_embeddings");
  c = Qwen3VLConfig::from_json(j);
  EXPECT_FALSE(c.tie_word_embeddings);
}

TEST(Config, ToJsonMatchesHfSavePretrained) {
  json ours = preset_config("2b").to_json();
  json hf = json::parse(kHf2bConfig);
  ours.erase("torch_dtype");  // we also write the pre-4.56 spelling
  EXPECT_EQ(ours, hf) << "ours:\n" << ours.dump(2) << "\nHF:\n" << hf.dump(2);
  // And it parses back to the same config.
  auto back = Qwen3VLConfig::from_json(preset_config("2b").to_json());
  EXPECT_EQ(back.to_json(), preset_config("2b").to_json());
}

TEST(Config, WrongTypeNamesTheField) {
  json j = json::parse(kHf2bConfig);
  j["text_config"]["hidden_size"] = "big";
  std::string e = error_of([&] { Qwen3VLConfig::from_json(j); });
  EXPECT_NE(e.find("text_config.hidden_size"), std::string::npos) << e;
  EXPECT_NE(e.find("config.json"), std::string::npos) << e;

  j = json::parse(kHf2bConfig);
  j["vision_config"]["deepstack_visual_indexes"] = {5, "x", 17};
  e = error_of([&] { Qwen3VLConfig::from_json(j); });
  EXPECT_NE(e.find("vision_config.deepstack_visual_indexes"), std::string::npos) << e;

  j = json::parse(kHf2bConfig);
  j["text_config"]["rope_scaling"]["mrope_interleaved"] = 1;
  e = error_of([&] { Qwen3VLConfig::from_json(j); });
  EXPECT_NE(e.find("text_config.rope_scaling.mrope_interleaved"), std::string::npos) << e;

  j = json::parse(kHf2bConfig);
  j["model_type"] = "qwen3_vl_moe";
  e = error_of([&] { Qwen3VLConfig::from_json(j); });
  EXPECT_NE(e.find("model_type"), std::string::npos) << e;
}

TEST(Config, LoadMalformedFileNamesThePath) {
  fs::path d = test::binary_dir() / "test-tmp" / "model" / "LoadMalformed";
  fs::create_directories(d);
  {
    std::ofstream(d / "config.json") << "{\"text_config\": {\"hidden_size\": 12,}";
  }
  std::string e = error_of([&] { Qwen3VLConfig::load(d / "config.json"); });
  EXPECT_NE(e.find((d / "config.json").string()), std::string::npos) << e;
  EXPECT_NE(e.find("malformed JSON"), std::string::npos) << e;
  {
    std::ofstream(d / "config.json") << "{\"vision_config\": {\"depth\": 2.5}}";
  }
  e = error_of([&] { Qwen3VLConfig::load(d / "config.json"); });
  EXPECT_NE(e.find((d / "config.json").string()), std::string::npos) << e;
  EXPECT_NE(e.find("vision_config.depth"), std::string::npos) << e;
  e = error_of([&] { Qwen3VLConfig::load(d / "missing.json"); });
  EXPECT_NE(e.find("missing.json"), std::string::npos) << e;
}

TEST(Config, ValidateListsEveryViolation) {
  Qwen3VLConfig c = preset_config("8b");
  ASSERT_TRUE(c.validate().empty());
  c.text_config.mrope_section = {24, 20, 21};            // sum 65 != 64
  c.vision_config.deepstack_visual_indexes = {8, 8, 30};  // duplicate + out of range
  c.vision_config.num_heads = 7;                         // 1152 % 7 != 0
  c.text_config.num_key_value_heads = 5;                 // 32 % 5 != 0
  c.vision_config.out_hidden_size = 4000;                // != 4096
  c.vision_config.num_position_embeddings = 2300;        // not a square
  c.text_config.vocab_size = 151000;                     // < special ids
  c.vision_config.patch_size = 0;
  auto bad = c.validate();
  auto has = [&](const std::string& s) {
    for (auto& b : bad)
      if (b.find(s) != std::string::npos) return true;
    return false;
  };
  std::string all;
  for (auto& b : bad) all += b + "\n";
  EXPECT_TRUE(has("sum(mrope_section) = 65 must equal head_dim/2 = 64")) << all;
  EXPECT_TRUE(has("index 8 appears twice")) << all;
  EXPECT_TRUE(has("deepstack_visual_indexes[2] = 30 is outside [0, depth=27)")) << all;
  EXPECT_TRUE(has("vision_config.hidden_size (1152) must be divisible by vision_config.num_heads (7)")) << all;
  EXPECT_TRUE(has("num_attention_heads (32) must be divisible by text_config.num_key_value_heads (5)")) << all;
  EXPECT_TRUE(has("out_hidden_size (4000) must equal text_config.hidden_size (4096)")) << all;
  EXPECT_TRUE(has("num_position_embeddings (2300) must be a perfect square")) << all;
  EXPECT_TRUE(has("image_token_id = 151655 is outside [0, vocab_size=151000)")) << all;
  EXPECT_TRUE(has("patch_size must be in [1, 64]")) << all;
  EXPECT_GE(bad.size(), 10u) << all;
  std::string e = error_of([&] { c.validate_or_throw(); });
  EXPECT_NE(e.find("sum(mrope_section)"), std::string::npos) << e;
  EXPECT_NE(e.find("perfect square"), std::string::npos) << e;

  Qwen3VLConfig d = preset_config("tiny");
  d.text_config.head_dim = 0;
  d.vision_config.depth = -1;
  d.text_config.rope_type = "yarn";
  bad = d.validate();
  all.clear();
  for (auto& b : bad) all += b + "\n";
  EXPECT_TRUE(has("text_config.head_dim must be positive")) << all;
  EXPECT_TRUE(has("vision_config.depth must be positive")) << all;
  EXPECT_TRUE(has("rope_type 'yarn' is not supported")) << all;
}

TEST(Presets, PublishedValues) {
  struct Row {
    const char* name;
    int D, I, L, H, K, vdepth, vD, vI;
    std::vector<int> ds;
    bool tie;
  };
  const Row rows[] = {
      {"2b", 2048, 6144, 28, 16, 8, 24, 1024, 4096, {5, 11, 17}, true},
      {"4b", 2560, 9728, 36, 32, 8, 24, 1024, 4096, {5, 11, 17}, true},
      {"8b", 4096, 12288, 36, 32, 8, 27, 1152, 4304, {8, 16, 24}, false},
      {"32b", 5120, 25600, 64, 64, 8, 27, 1152, 4304, {8, 16, 24}, false},
  };
  for (const Row& r : rows) {
    SCOPED_TRACE(r.name);
    Qwen3VLConfig c = preset_config(r.name);
    EXPECT_TRUE(c.validate().empty());
    const auto& t = c.text_config;
    const auto& v = c.vision_config;
    EXPECT_EQ(t.hidden_size, r.D);
    EXPECT_EQ(t.intermediate_size, r.I);
    EXPECT_EQ(t.num_hidden_layers, r.L);
    EXPECT_EQ(t.num_attention_heads, r.H);
    EXPECT_EQ(t.num_key_value_heads, r.K);
    EXPECT_EQ(t.head_dim, 128);
    EXPECT_EQ(t.vocab_size, 151936);
    EXPECT_EQ(t.max_position_embeddings, 262144);
    EXPECT_EQ(t.rope_theta, 5000000.0);
    EXPECT_EQ(t.mrope_section, (std::vector<int>{24, 20, 20}));
    EXPECT_EQ(t.rms_norm_eps, 1e-6);
    EXPECT_EQ(v.depth, r.vdepth);
    EXPECT_EQ(v.hidden_size, r.vD);
    EXPECT_EQ(v.intermediate_size, r.vI);
    EXPECT_EQ(v.num_heads, 16);
    EXPECT_EQ(v.out_hidden_size, r.D);
    EXPECT_EQ(v.deepstack_visual_indexes, r.ds);
    EXPECT_EQ(v.patch_size, 16);
    EXPECT_EQ(v.temporal_patch_size, 2);
    EXPECT_EQ(v.spatial_merge_size, 2);
    EXPECT_EQ(v.num_position_embeddings, 2304);
    EXPECT_EQ(c.tie_word_embeddings, r.tie);
    EXPECT_EQ(t.tie_word_embeddings, r.tie);
  }
  EXPECT_THROW(preset_config("7b"), Error);
}

TEST(Presets, TinyPresetsExerciseEveryFeature) {
  for (const char* name : {"tiny", "tiny-b"}) {
    SCOPED_TRACE(name);
    Qwen3VLConfig c = preset_config(name);
    EXPECT_TRUE(c.validate().empty());
    const auto& t = c.text_config;
    const auto& v = c.vision_config;
    EXPECT_GE(v.depth, 4);
    EXPECT_EQ(v.deepstack_visual_indexes.size(), 3u);
    EXPECT_GT(t.num_attention_heads, t.num_key_value_heads);  // GQA
    EXPECT_GT(t.num_key_value_heads, 1);
    EXPECT_LT(v.num_position_embeddings, 2304);  // test images can exceed the table
    EXPECT_EQ(t.vocab_size, 151936);             // real tokenizer ids fit
    EXPECT_GE(t.num_hidden_layers, 3);
  }
  auto a = preset_config("tiny"), b = preset_config("tiny-b");
  EXPECT_TRUE(a.tie_word_embeddings);
  EXPECT_FALSE(b.tie_word_embeddings);
  EXPECT_NE(a.vision_config.deepstack_visual_indexes, b.vision_config.deepstack_visual_indexes);
  EXPECT_NE(a.text_config.head_dim, b.text_config.head_dim);
  EXPECT_NE(a.vision_config.hidden_size, b.vision_config.hidden_size);
  EXPECT_NE(a.text_config.num_hidden_layers, b.text_config.num_hidden_layers);
  EXPECT_NE(b.text_config.num_attention_heads * b.text_config.head_dim, b.text_config.hidden_size);  // q width != D
}

// Totals printed by `qwen3vl inspect` (tied embeddings counted once); 2B checked by hand:
// vision 406,957,056 + text 1,720,574,976.
TEST(Presets, ParameterCounts) {
  EXPECT_EQ(count_parameters(preset_config("2b")).total(), 2127532032LL);
  EXPECT_EQ(count_parameters(preset_config("4b")).total(), 4437815808LL);
  EXPECT_EQ(count_parameters(preset_config("8b")).total(), 8767123696LL);
  EXPECT_EQ(count_parameters(preset_config("32b")).total(), 33357390064LL);
  ParamCounts p = count_parameters(preset_config("2b"));
  EXPECT_EQ(p.vision(), 331416576LL);
  EXPECT_EQ(p.deepstack_mergers, 75540480LL);
  EXPECT_EQ(p.vision_patch_embed, 1024LL * 1536 + 1024);
  EXPECT_EQ(p.vision_pos_embed, 2304LL * 1024);
  EXPECT_EQ(p.text_embedding, 151936LL * 2048);
  EXPECT_EQ(p.text_layers, 28LL * 50336000);
  EXPECT_EQ(p.lm_head, 0);
  EXPECT_EQ(count_parameters(preset_config("8b")).lm_head, 151936LL * 4096);
}

TEST(WeightNames, RegistryShapes) {
  Qwen3VLConfig c = preset_config("8b");
  auto w = expected_weights(c);
  std::map<std::string, Shape> m;
  for (auto& s : w) {
    EXPECT_TRUE(m.emplace(s.name, s.shape).second) << "duplicate " << s.name;
  }
  EXPECT_EQ(m.at("model.visual.patch_embed.proj.weight"), (Shape{1152, 3, 2, 16, 16}));
  EXPECT_EQ(m.at("model.visual.pos_embed.weight"), (Shape{2304, 1152}));
  EXPECT_EQ(m.at("model.visual.blocks.26.attn.qkv.weight"), (Shape{3456, 1152}));
  EXPECT_EQ(m.at("model.visual.blocks.0.mlp.linear_fc1.weight"), (Shape{4304, 1152}));
  EXPECT_EQ(m.at("model.visual.merger.norm.weight"), (Shape{1152}));
  EXPECT_EQ(m.at("model.visual.merger.linear_fc1.weight"), (Shape{4608, 4608}));
  EXPECT_EQ(m.at("model.visual.deepstack_merger_list.2.norm.weight"), (Shape{4608}));
  EXPECT_EQ(m.at("model.visual.deepstack_merger_list.0.linear_fc2.weight"), (Shape{4096, 4608}));
  EXPECT_EQ(m.at("model.language_model.layers.35.self_attn.k_proj.weight"), (Shape{1024, 4096}));
  EXPECT_EQ(m.at("model.language_model.layers.0.self_attn.q_norm.weight"), (Shape{128}));
  EXPECT_EQ(m.at("model.language_model.layers.0.mlp.down_proj.weight"), (Shape{4096, 12288}));
  EXPECT_EQ(m.at("lm_head.weight"), (Shape{151936, 4096}));
  EXPECT_EQ(m.count("model.visual.blocks.27.norm1.weight"), 0u);
  EXPECT_EQ(m.count("model.visual.deepstack_merger_list.3.norm.weight"), 0u);
  // 32B: q width 8192 != hidden 5120.
  auto w32 = expected_weights(preset_config("32b"));
  for (auto& s : w32)
    if (s.name == "model.language_model.layers.0.self_attn.o_proj.weight") EXPECT_EQ(s.shape, (Shape{5120, 8192}));
  // Tied: no lm_head entry.
  for (auto& s : expected_weights(preset_config("2b"))) EXPECT_NE(s.name, "lm_head.weight");
  EXPECT_EQ(w.size(), 3u + 27 * 12 + 6 + 3 * 6 + 1 + 36 * 11 + 1 + 1);
}

}  // namespace
}  // namespace qwen3vl

// make-model + Checkpoint::load: round trips (single file and sharded), determinism, the value
// recipe, the written side files, and one clear error per kind of damaged checkpoint.
#include <gtest/gtest.h>
#include <gtest/gtest-spi.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/compare.h"
#include "common/files.h"
#include "common/models.h"
#include "core/error.h"
#include "core/safetensors.h"
#include "model/checkpoint.h"
#include "chat/templates.h"
#include "model/make_model.h"
#include "model/presets.h"
#include "model/weight_names.h"

namespace qwen3vl {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

fs::path test_dir() { return test::scratch_dir("model"); }
using test::read_bytes;
using test::write_bytes;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

MakeModelResult make(const fs::path& out, const std::string& args) {
  MakeModelOptions o = parse_make_model_args(args);
  o.out = out;
  o.write_tokenizer = false;
  return make_model(o);
}

// A bf16 tiny checkpoint copied into a fresh folder for each damage test.
fs::path damaged_copy(const fs::path& d) {
  static fs::path base = test::generated_model("--preset tiny --dtype bf16 --seed 3 --no-tokenizer");
  fs::path c = d / "ckpt";
  fs::create_directories(c);
  for (auto& e : fs::directory_iterator(base)) fs::copy_file(e.path(), c / e.path().filename());
  return c;
}

TEST(MakeModel, TinyRoundTripLoads) {
  fs::path d = test_dir();
  auto r = make(d, "--preset tiny --dtype f32 --seed 7 --init-std 0.1");
  EXPECT_EQ(r.weight_files, std::vector<std::string>{"model.safetensors"});
  Checkpoint ck = Checkpoint::load(d);
  const Qwen3VLConfig& c = ck.config();
  EXPECT_EQ(c.to_json(), [] {
    auto p = preset_config("tiny");
    p.dtype = "float32";
    return p.to_json();
  }());
  EXPECT_EQ(r.num_parameters, count_parameters(c).total());
  for (const WeightSpec& w : expected_weights(c)) {
    SCOPED_TRACE(w.name);
    const Tensor& t = ck.get(w.name);
    EXPECT_EQ(t.shape(), w.shape);
    EXPECT_EQ(t.dtype(), DType::F32);
    EXPECT_EQ(ck.file_of(w.name), "model.safetensors");
    // Values follow the documented recipe (first, middle, last element).
    for (int64_t i : {int64_t{0}, t.numel() / 2, t.numel() - 1})
      EXPECT_EQ(t.data<float>()[i], make_model_value(7, w.name, w.init == WeightInit::Norm, 0.1, i));
  }
  // Tied: lm_head resolves to the embedding (same storage).
  EXPECT_TRUE(ck.has("lm_head.weight"));
  EXPECT_EQ(ck.get("lm_head.weight").raw(), ck.get(weight_names::kEmbedTokens).raw());
  EXPECT_EQ(ck.file_of("lm_head.weight"), "model.safetensors");
  EXPECT_THROW(ck.get("model.visual.blocks.99.norm1.weight"), Error);
  // Value ranges: weights in [-a, a) with a = 0.1*sqrt(3); norms in [0.875, 1.125).
  const Tensor& q = ck.get("model.language_model.layers.0.self_attn.q_proj.weight");
  float lo = 1, hi = -1;
  double sum2 = 0;
  for (int64_t i = 0; i < q.numel(); ++i) {
    float x = q.data<float>()[i];
    lo = std::min(lo, x);
    hi = std::max(hi, x);
    sum2 += double(x) * x;
  }
  EXPECT_GE(lo, -0.1732051f);
  EXPECT_LT(hi, 0.1732051f);
  EXPECT_NEAR(std::sqrt(sum2 / q.numel()), 0.1, 0.005);  // std = init_std
  const Tensor& n = ck.get("model.language_model.norm.weight");
  for (int64_t i = 0; i < n.numel(); ++i) {
    EXPECT_GE(n.data<float>()[i], 0.875f);
    EXPECT_LT(n.data<float>()[i], 1.125f);
  }
}

TEST(MakeModel, TinyBUntiedHasLmHead) {
  fs::path d = test_dir();
  make(d, "--preset tiny-b --dtype bf16");
  Checkpoint ck = Checkpoint::load(d);
  EXPECT_FALSE(ck.config().tie_word_embeddings);
  const Tensor& lm = ck.get("lm_head.weight");
  const Tensor& emb = ck.get(weight_names::kEmbedTokens);
  EXPECT_NE(lm.raw(), emb.raw());
  EXPECT_EQ(lm.shape(), (Shape{151936, 96}));
  EXPECT_EQ(lm.dtype(), DType::BF16);
  EXPECT_NE(std::memcmp(lm.raw(), emb.raw(), 64), 0);
}

TEST(MakeModel, DeterministicAndDtypeConsistent) {
  fs::path d = test_dir();
  make(d / "a", "--preset tiny --dtype bf16 --seed 5");
  make(d / "b", "--preset tiny --dtype bf16 --seed 5");
  make(d / "c", "--preset tiny --dtype bf16 --seed 6");
  make(d / "f", "--preset tiny --dtype f32 --seed 5");
  EXPECT_EQ(read_bytes(d / "a" / "model.safetensors"), read_bytes(d / "b" / "model.safetensors"));
  EXPECT_EQ(test::checkpoint_fnv1a64(d / "a"), test::checkpoint_fnv1a64(d / "b"));
  EXPECT_NE(test::checkpoint_fnv1a64(d / "a"), test::checkpoint_fnv1a64(d / "c"));
  // bf16 checkpoint == f32 checkpoint of the same seed rounded to nearest even.
  auto a = load_safetensors(d / "a" / "model.safetensors");
  auto f = load_safetensors(d / "f" / "model.safetensors");
  ASSERT_EQ(a.size(), f.size());
  for (auto& [name, t] : a) {
    const Tensor& tf = f.at(name);
    ASSERT_EQ(t.numel(), tf.numel());
    for (int64_t i = 0; i < t.numel(); i += 97)
      ASSERT_EQ(t.data_u16()[i], f32_to_bf16(tf.data<float>()[i])) << name << " #" << i;
  }
}

// Pins the RNG: these bytes are what every fixture's checkpoint_fnv1a64 was computed from.
// Changing the value recipe makes every fixture stale (regenerate them, then update this).
TEST(MakeModel, GoldenHash) {
  fs::path d = test_dir();
  make(d, "--preset tiny --dtype f32 --seed 0 --init-std 0.1");
  EXPECT_EQ(test::checkpoint_fnv1a64(d), "12b6cb8e21441ff5");
  EXPECT_EQ(make_model_value(0, "model.language_model.norm.weight", true, 0.02, 0), 
            make_model_value(0, "model.language_model.norm.weight", true, 0.5, 0));  // norms ignore init_std
}

TEST(MakeModel, ShardedLoadsIdentically) {
  fs::path d = test_dir();
  make(d / "one", "--preset tiny --dtype bf16 --seed 1 --shard-size 0");
  auto r = make(d / "sh", "--preset tiny --dtype bf16 --seed 1 --shard-size 200KB");
  ASSERT_GE(r.weight_files.size(), 4u);
  EXPECT_EQ(r.weight_files[0], "model-00001-of-" + [&] {
              char b[8];
              std::snprintf(b, sizeof b, "%05zu", r.weight_files.size());
              return std::string(b);
            }() + ".safetensors");
  EXPECT_FALSE(fs::exists(d / "sh" / "model.safetensors"));
  json index = json::parse(read_bytes(d / "sh" / "model.safetensors.index.json"));
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), r.data_bytes);
  EXPECT_EQ(index["metadata"]["total_parameters"].get<int64_t>(), r.num_parameters);
  // Every shard but an oversized single-tensor one stays within the limit.
  for (auto& f : r.weight_files) {
    auto sf = SafetensorsFile::open(d / "sh" / f);
    uint64_t bytes = 0;
    for (auto& i : sf->infos()) bytes += i.end - i.begin;
    if (sf->infos().size() > 1) {
      EXPECT_LE(bytes, 200000u) << f;
    }
  }
  Checkpoint a = Checkpoint::load(d / "one"), b = Checkpoint::load(d / "sh");
  ASSERT_EQ(a.tensors().size(), b.tensors().size());
  for (auto& [name, t] : a.tensors()) {
    const Tensor& u = b.get(name);
    ASSERT_EQ(t.shape(), u.shape()) << name;
    ASSERT_EQ(std::memcmp(t.raw(), u.raw(), t.nbytes()), 0) << name;
    EXPECT_EQ(b.file_of(name), index["weight_map"][name].get<std::string>());
  }
  // Re-writing into the same folder unsharded removes the stale shards.
  make(d / "sh", "--preset tiny --dtype bf16 --seed 1");
  EXPECT_FALSE(fs::exists(d / "sh" / "model.safetensors.index.json"));
  EXPECT_FALSE(fs::exists(d / "sh" / r.weight_files[0]));
  EXPECT_NO_THROW(Checkpoint::load(d / "sh"));
}

TEST(MakeModel, SideFiles) {
  fs::path d = test_dir();
  MakeModelOptions o = parse_make_model_args("--preset tiny --dtype f16");
  o.out = d;
  o.tokenizer_dir = test::shared_dir() / "data" / "qwen3-tokenizer";
  if (!fs::exists(o.tokenizer_dir / "tokenizer.json")) GTEST_SKIP() << "no shared tokenizer";
  make_model(o);
  json gen = json::parse(read_bytes(d / "generation_config.json"));
  EXPECT_EQ(gen["bos_token_id"], 151643);
  EXPECT_EQ(gen["eos_token_id"], json({151645, 151643}));
  EXPECT_EQ(gen["pad_token_id"], 151643);
  EXPECT_EQ(gen["do_sample"], true);
  EXPECT_EQ(gen["temperature"], 0.7);
  EXPECT_EQ(gen["top_p"], 0.8);
  EXPECT_EQ(gen["top_k"], 20);
  EXPECT_EQ(gen["repetition_penalty"], 1.0);
  json pre = json::parse(read_bytes(d / "preprocessor_config.json"));
  EXPECT_EQ(pre["size"]["longest_edge"], 16777216);
  EXPECT_EQ(pre["size"]["shortest_edge"], 65536);
  EXPECT_EQ(pre["image_mean"], json({0.5, 0.5, 0.5}));
  EXPECT_EQ(pre["patch_size"], 16);
  EXPECT_EQ(pre["image_processor_type"], "Qwen2VLImageProcessorFast");
  json vpre = json::parse(read_bytes(d / "video_preprocessor_config.json"));
  EXPECT_EQ(vpre["size"]["longest_edge"], 25165824);
  EXPECT_EQ(vpre["size"]["shortest_edge"], 4096);
  EXPECT_EQ(vpre["video_processor_type"], "Qwen3VLVideoProcessor");
  json tc = json::parse(read_bytes(d / "tokenizer_config.json"));
  EXPECT_EQ(tc["chat_template"], chat::kQwen3VLInstructTemplate);
  EXPECT_EQ(tc["model_max_length"], 262144);
  EXPECT_EQ(tc["eos_token"], "<|im_end|>");
  json ct = json::parse(read_bytes(d / "chat_template.json"));
  EXPECT_EQ(ct["chat_template"], chat::kQwen3VLInstructTemplate);
  EXPECT_EQ(read_bytes(d / "tokenizer.json"), read_bytes(o.tokenizer_dir / "tokenizer.json"));
  json cfg = json::parse(read_bytes(d / "config.json"));
  EXPECT_EQ(cfg["torch_dtype"], "float16");
  EXPECT_EQ(cfg["text_config"]["rope_scaling"]["mrope_section"], json({4, 2, 2}));
  Checkpoint ck = Checkpoint::load(d);
  EXPECT_EQ(ck.get("model.visual.pos_embed.weight").dtype(), DType::F16);
}

TEST(MakeModel, ParseArgs) {
  MakeModelOptions o = parse_make_model_args(
      std::vector<std::string>{"--preset", "8b", "--out=/x", "--dtype", "f32", "--seed", "42", "--init-std", "0.5",
                               "--shard-size", "500MB", "--tokenizer", "/tok"});
  EXPECT_EQ(o.preset, "8b");
  EXPECT_EQ(o.out, "/x");
  EXPECT_EQ(o.dtype, DType::F32);
  EXPECT_EQ(o.seed, 42u);
  EXPECT_EQ(o.init_std, 0.5);
  EXPECT_EQ(o.shard_size, 500000000u);
  EXPECT_EQ(o.tokenizer_dir, "/tok");
  EXPECT_EQ(parse_make_model_args("").shard_size, 5000000000u);  // HF default "5GB"
  EXPECT_EQ(parse_make_model_args("").dtype, DType::BF16);
  EXPECT_EQ(parse_size("5GB"), 5000000000u);
  EXPECT_EQ(parse_size("64KiB"), 65536u);
  EXPECT_EQ(parse_size("0"), 0u);
  EXPECT_EQ(parse_size("1.5MB"), 1500000u);
  EXPECT_THROW(parse_size("lots"), Error);
  EXPECT_THROW(parse_size("5XB"), Error);
  EXPECT_THROW(parse_make_model_args("--preset 7b"), Error);
  EXPECT_THROW(parse_make_model_args("--dtype i8"), Error);
  EXPECT_THROW(parse_make_model_args("--seed -1"), Error);
  EXPECT_THROW(parse_make_model_args("--bogus 1"), Error);
  EXPECT_THROW(parse_make_model_args("--seed"), Error);
  EXPECT_THROW(make_model(parse_make_model_args("--preset tiny")), Error);  // no --out
}

TEST(MakeModel, FixtureHelper) {
  std::map<std::string, std::string> md{{"make_model_args", "--preset tiny --dtype f32 --seed 0 --init-std 0.1"},
                                        {"checkpoint_fnv1a64", "12b6cb8e21441ff5"}};
  fs::path dir = test::model_for_fixture(md);
  EXPECT_TRUE(fs::exists(dir / "model.safetensors"));
  EXPECT_EQ(dir.filename(), "preset-tiny_dtype-f32_seed-0_init-std-0.1");
  EXPECT_NO_THROW(Checkpoint::load(dir));
  // A stale hash fails the test with the contract's message.
  md["checkpoint_fnv1a64"] = "0000000000000000";
  testing::TestPartResultArray failures;
  {
    testing::ScopedFakeTestPartResultReporter rep(testing::ScopedFakeTestPartResultReporter::INTERCEPT_ONLY_CURRENT_THREAD,
                                                  &failures);
    test::model_for_fixture(md);
  }
  ASSERT_EQ(failures.size(), 1);
  EXPECT_NE(std::string(failures.GetTestPartResult(0).message()).find("fixture is stale: regenerate with tools/reference/make_fixtures.sh"),
            std::string::npos);
}

// ----------------------------------------------------------------------------------------------
// Damaged checkpoints: each gives one Error naming the file and the tensor.

void expect_error(const fs::path& dir, std::initializer_list<std::string> parts) {
  std::string e = error_of([&] { Checkpoint::load(dir); });
  ASSERT_FALSE(e.empty()) << "Checkpoint::load accepted a damaged checkpoint";
  for (auto& p : parts) EXPECT_NE(e.find(p), std::string::npos) << "missing '" << p << "' in: " << e;
  std::printf("[error] %s\n", e.c_str());
}

// Rewrites model.safetensors with `edit` applied to the tensor map.
void rewrite(const fs::path& c, const std::function<void(std::map<std::string, Tensor>&)>& edit) {
  std::map<std::string, Tensor> m;
  for (auto& [k, v] : load_safetensors(c / "model.safetensors")) m[k] = v.clone();
  edit(m);
  save_safetensors(c / "model.safetensors", m);
}

TEST(CheckpointDamage, TruncatedShard) {
  fs::path c = damaged_copy(test_dir());
  std::string b = read_bytes(c / "model.safetensors");
  write_bytes(c / "model.safetensors", b.substr(0, b.size() - 1000));
  expect_error(c, {"model.safetensors"});
}

TEST(CheckpointDamage, HeaderPointsPastTheEnd) {
  fs::path c = damaged_copy(test_dir());
  std::string b = read_bytes(c / "model.safetensors");
  uint64_t n;
  std::memcpy(&n, b.data(), 8);
  json h = json::parse(b.substr(8, n));
  // Move the last tensor beyond the data block.
  std::string last;
  uint64_t maxend = 0;
  for (auto& [k, v] : h.items())
    if (k != "__metadata__" && v["data_offsets"][1].get<uint64_t>() > maxend) {
      maxend = v["data_offsets"][1].get<uint64_t>();
      last = k;
    }
  uint64_t len = h[last]["data_offsets"][1].get<uint64_t>() - h[last]["data_offsets"][0].get<uint64_t>();
  h[last]["data_offsets"] = {maxend + 4096, maxend + 4096 + len};
  std::string hs = h.dump();
  hs.append((8 - hs.size() % 8) % 8, ' ');
  uint64_t hn = hs.size();
  std::string out(reinterpret_cast<const char*>(&hn), 8);
  write_bytes(c / "model.safetensors", out + hs + b.substr(8 + n));
  expect_error(c, {"model.safetensors", last});
}

TEST(CheckpointDamage, WrongShape) {
  fs::path c = damaged_copy(test_dir());
  const std::string name = "model.visual.blocks.2.attn.qkv.weight";
  rewrite(c, [&](auto& m) { m[name] = Tensor::zeros({96, 33}, DType::BF16); });
  expect_error(c, {"model.safetensors", name, "[96, 33]", "[96, 32]"});
}

TEST(CheckpointDamage, MissingTensor) {
  fs::path c = damaged_copy(test_dir());
  rewrite(c, [&](auto& m) {
    m.erase("model.language_model.layers.3.mlp.up_proj.weight");
    m.erase("model.visual.deepstack_merger_list.1.norm.bias");
  });
  expect_error(c, {"model.safetensors", "2 expected tensors missing", "model.language_model.layers.3.mlp.up_proj.weight",
                   "model.visual.deepstack_merger_list.1.norm.bias"});
}

TEST(CheckpointDamage, ExtraTensor) {
  fs::path c = damaged_copy(test_dir());
  rewrite(c, [&](auto& m) { m["model.visual.blocks.4.norm1.weight"] = Tensor::zeros({32}, DType::BF16); });
  expect_error(c, {"model.safetensors", "unexpected tensor 'model.visual.blocks.4.norm1.weight'"});
}

TEST(CheckpointDamage, WrongDtype) {
  fs::path c = damaged_copy(test_dir());
  const std::string name = "model.language_model.layers.1.self_attn.o_proj.weight";
  rewrite(c, [&](auto& m) { m[name] = Tensor::zeros(m[name].shape(), DType::I32); });
  expect_error(c, {"model.safetensors", name, "I32", "float dtype"});
}

TEST(CheckpointDamage, TiedCheckpointWithLmHeadIsAccepted) {
  fs::path c = damaged_copy(test_dir());
  rewrite(c, [&](auto& m) { m["lm_head.weight"] = m.at(weight_names::kEmbedTokens).clone(); });
  Checkpoint ck = Checkpoint::load(c);
  EXPECT_EQ(ck.get("lm_head.weight").raw(), ck.get(weight_names::kEmbedTokens).raw());
  // ... but not with a wrong shape.
  rewrite(c, [&](auto& m) { m["lm_head.weight"] = Tensor::zeros({10, 64}, DType::BF16); });
  expect_error(c, {"model.safetensors", "lm_head.weight", "[10, 64]"});
}

TEST(CheckpointDamage, MalformedConfig) {
  fs::path c = damaged_copy(test_dir());
  std::string cfg = read_bytes(c / "config.json");
  write_bytes(c / "config.json", cfg.substr(0, cfg.size() / 2));
  expect_error(c, {"config.json", "malformed JSON"});
  json j = json::parse(cfg);
  j["text_config"]["num_key_value_heads"] = 3;
  write_bytes(c / "config.json", j.dump());
  expect_error(c, {"config.json", "num_key_value_heads (3)"});
  fs::remove(c / "config.json");
  expect_error(c, {"config.json not found"});
}

TEST(CheckpointDamage, IndexNamesMissingShard) {
  fs::path d = test_dir();
  auto r = make(d, "--preset tiny --dtype bf16 --shard-size 4MB");
  ASSERT_GE(r.weight_files.size(), 2u);
  fs::remove(d / r.weight_files[1]);
  expect_error(d, {"model.safetensors.index.json", r.weight_files[1], "does not exist"});
}

TEST(CheckpointDamage, IndexPointsToWrongShard) {
  fs::path d = test_dir();
  auto r = make(d, "--preset tiny --dtype bf16 --shard-size 4MB");
  json index = json::parse(read_bytes(d / "model.safetensors.index.json"));
  const std::string name = "model.language_model.norm.weight";
  std::string real = index["weight_map"][name];
  std::string other = real == r.weight_files[0] ? r.weight_files[1] : r.weight_files[0];
  index["weight_map"][name] = other;
  write_bytes(d / "model.safetensors.index.json", index.dump(2));
  expect_error(d, {"model.safetensors.index.json", name, other});
}

TEST(CheckpointDamage, NoWeights) {
  fs::path c = damaged_copy(test_dir());
  fs::remove(c / "model.safetensors");
  expect_error(c, {"neither model.safetensors nor model.safetensors.index.json"});
}

}  // namespace
}  // namespace qwen3vl

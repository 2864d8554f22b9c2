// Block-quantized weights at the checkpoint level (model/quantize.h): which tensors a mode
// quantizes, quantization at load (bytes = the kernels' reference quantizer), the stored form
// written by quantize_folder (round trip to the same bytes, zero-copy), mode conflicts, and one
// clear error per kind of damaged quantized folder.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "common/compare.h"
#include "common/files.h"
#include "common/models.h"
#include "core/error.h"
#include "core/safetensors.h"
#include "kernels/quant.h"
#include "model/checkpoint.h"
#include "model/presets.h"
#include "model/quantize.h"
#include "model/weight_names.h"

namespace qwen3vl {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

const fs::path& tiny_bf16() {
  static fs::path p = test::generated_model("--preset tiny --dtype bf16 --seed 5 --no-tokenizer");
  return p;
}
const fs::path& tiny_f32() {
  static fs::path p = test::generated_model("--preset tiny --dtype f32 --seed 5 --no-tokenizer");
  return p;
}

// The reference bytes: the kernels' row quantizer applied to the float tensor.
std::string reference_bytes(const Tensor& w, DType dtype) {
  const int64_t n = w.size(0), k = w.numel() / n;
  std::string out(dtype_nbytes(dtype, n * k), '\0');
  if (w.dtype() == DType::BF16) kernels::quantize_rows_bf16(dtype, w.data_u16(), n, k, out.data());
  else kernels::quantize_rows(dtype, w.data<float>(), n, k, out.data());
  return out;
}

std::string bytes_of(const Tensor& t) { return std::string(static_cast<const char*>(t.raw()), t.nbytes()); }

TEST(QuantPlan, ParseModes) {
  EXPECT_EQ(parse_quant_mode("none"), QuantMode::None);
  EXPECT_EQ(parse_quant_mode("q8"), QuantMode::Q8);
  EXPECT_EQ(parse_quant_mode("Q8_0"), QuantMode::Q8);
  EXPECT_EQ(parse_quant_mode("q4"), QuantMode::Q4);
  EXPECT_EQ(parse_quant_mode("q4_0"), QuantMode::Q4);
  const std::string e = error_of([] { parse_quant_mode("q5", "--quant"); });
  EXPECT_NE(e.find("--quant"), std::string::npos) << e;
  EXPECT_NE(e.find("q5"), std::string::npos) << e;
  EXPECT_STREQ(quant_mode_name(QuantMode::Q4), "q4");
}

// llama-quantize's choices at equal bits (see model/quantize.h), tied and untied.
TEST(QuantPlan, TextRulesTiedAndUntied) {
  using namespace weight_names;
  const Qwen3VLConfig tiny = preset_config("tiny");  // tied, text dims multiples of 32
  auto q4 = quant_plan(tiny, {QuantMode::Q4, QuantMode::None});
  EXPECT_EQ(q4.size(), 4u * 7 + 1);  // 7 linears per layer + the tied embedding
  for (int l = 0; l < 4; ++l)
    for (const char* p : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                          "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}) {
      auto it = q4.find(text_layer(l) + p + ".weight");
      ASSERT_NE(it, q4.end()) << p;
      EXPECT_EQ(it->second, DType::Q4_0);
    }
  EXPECT_EQ(q4.at(kEmbedTokens), DType::Q8_0);  // tied: it is the output matrix (llama.cpp Q6_K)
  EXPECT_FALSE(q4.count(text_layer(0) + "input_layernorm.weight"));
  EXPECT_FALSE(q4.count(text_layer(0) + "self_attn.q_norm.weight"));
  auto q8 = quant_plan(tiny, {QuantMode::Q8, QuantMode::None});
  for (auto& [n, d] : q8) EXPECT_EQ(d, DType::Q8_0) << n;
  EXPECT_EQ(q8.size(), q4.size());

  const Qwen3VLConfig tb = preset_config("tiny-b");  // untied lm_head
  auto b4 = quant_plan(tb, {QuantMode::Q4, QuantMode::None});
  EXPECT_EQ(b4.at(kEmbedTokens), DType::Q4_0);  // llama.cpp: token_embd gets the file type
  EXPECT_EQ(b4.at(kLmHead), DType::Q8_0);       // llama.cpp: output Q6_K; nearest we have
  EXPECT_EQ(b4.at(text_layer(2) + "mlp.down_proj.weight"), DType::Q4_0);
  EXPECT_TRUE(quant_plan(tb, {}).empty());
}

TEST(QuantPlan, VisionRulesAndFallback) {
  using namespace weight_names;
  const Qwen3VLConfig tiny = preset_config("tiny");  // Dv 32, Iv 64, merged 128
  auto v = quant_plan(tiny, {QuantMode::None, QuantMode::Q4});
  EXPECT_EQ(v.size(), 4u * 4 + 2 + 3 * 2);  // 4 linears per block, merger fc1/fc2, 3 DeepStack x 2
  EXPECT_EQ(v.at(vision_block(3) + "attn.qkv.weight"), DType::Q4_0);
  EXPECT_EQ(v.at(kVisual + "merger.linear_fc2.weight"), DType::Q4_0);
  EXPECT_EQ(v.at(deepstack_merger(2) + "linear_fc1.weight"), DType::Q4_0);
  EXPECT_FALSE(v.count(kVisual + "patch_embed.proj.weight"));
  EXPECT_FALSE(v.count(kVisual + "pos_embed.weight"));
  EXPECT_FALSE(v.count(kEmbedTokens));
  // tiny-b: Dv 48 and Iv 80 are not whole blocks: those matrices stay as stored (llama.cpp: F16).
  auto b = quant_plan(preset_config("tiny-b"), {QuantMode::None, QuantMode::Q8});
  EXPECT_FALSE(b.count(vision_block(0) + "attn.qkv.weight"));
  EXPECT_FALSE(b.count(vision_block(0) + "mlp.linear_fc2.weight"));
  EXPECT_EQ(b.at(kVisual + "merger.linear_fc1.weight"), DType::Q8_0);  // 192 x 192
  EXPECT_TRUE(quantizable_weight(vision_block(0) + "attn.proj.weight", tiny));
  EXPECT_FALSE(quantizable_weight(vision_block(0) + "norm1.weight", tiny));
}

TEST(QuantTensor, BlockShapesViewsAndConversions) {
  EXPECT_NE(error_of([] { Tensor::empty({4, 48}, DType::Q8_0); }).find("multiple of 32"), std::string::npos);
  Tensor q = Tensor::zeros({3, 64}, DType::Q4_0);
  EXPECT_EQ(q.nbytes(), 3u * 2 * 18);
  Tensor s = q.slice_rows(1, 3);
  EXPECT_EQ(static_cast<const char*>(s.raw()) - static_cast<const char*>(q.raw()), 2 * 18);
  EXPECT_EQ(s.nbytes(), 2u * 2 * 18);
  EXPECT_EQ(bytes_of(q.clone()), bytes_of(q));
  const std::string e = error_of([&] { q.to(DType::F32); });
  EXPECT_NE(e.find("quantize"), std::string::npos) << e;
  EXPECT_FALSE(error_of([&] { Tensor::empty({2}, DType::F32).to(DType::Q8_0); }).empty());
  EXPECT_FALSE(error_of([&] { q.reshape({6, 32}); }).size());  // whole blocks: fine
  EXPECT_FALSE(error_of([&] { q.reshape({12, 16}); }).empty());
}

TEST(QuantLoad, QuantizesAtLoadToTheReferenceBytes) {
  for (const fs::path* dir : {&tiny_bf16(), &tiny_f32()}) {
    Checkpoint plain = Checkpoint::load(*dir);
    LoadOptions lo;
    lo.quant = {QuantMode::Q4, QuantMode::Q8};
    Checkpoint q = Checkpoint::load(*dir, lo);
    const auto plan = quant_plan(q.config(), lo.quant);
    ASSERT_FALSE(plan.empty());
    for (auto& [name, t] : q.tensors()) {
      const Tensor& src = plain.get(name);
      auto p = plan.find(name);
      if (p == plan.end()) {
        EXPECT_EQ(t.dtype(), src.dtype()) << name;
        EXPECT_EQ(bytes_of(t), bytes_of(src)) << name;
        EXPECT_FALSE(q.quantized_at_load(name)) << name;
        continue;
      }
      EXPECT_EQ(t.dtype(), p->second) << name;
      EXPECT_EQ(t.shape(), src.shape()) << name;
      EXPECT_TRUE(q.quantized_at_load(name)) << name;
      EXPECT_EQ(q.source_dtype(name), src.dtype()) << name;
      EXPECT_TRUE(bytes_of(t) == reference_bytes(src, p->second)) << name;
    }
    // Tied lm_head resolves to the (Q8_0) embedding.
    EXPECT_EQ(q.get("lm_head.weight").raw(), q.get(weight_names::kEmbedTokens).raw());
    EXPECT_EQ(q.get("lm_head.weight").dtype(), DType::Q8_0);
    EXPECT_EQ(q.source_dtype("lm_head.weight"), plain.get(weight_names::kEmbedTokens).dtype());
    // Dequantized weights are close to the originals. Q4_0: d = (signed max) / -8, levels
    // d * (q - 8), q in [0, 15]: half a step (amax / 16) inside the range, but values of the
    // opposite sign clamp at 7 |d| = 7/8 amax, so the error bound is amax / 8 of the block.
    const std::string up = weight_names::text_layer(1) + "mlp.up_proj.weight";
    Tensor deq = dequantize_weight(q.get(up));
    Tensor ref = plain.get(up).to(DType::F32);
    double amax = 0, err = 0;
    for (int64_t i = 0; i < ref.numel(); ++i) {
      amax = std::max(amax, std::abs(ref.item(i)));
      err = std::max(err, std::abs(ref.item(i) - deq.item(i)));
    }
    EXPECT_GT(err, 0.0);
    EXPECT_LE(err, amax / 8 * 1.01);
  }
}

TEST(QuantLoad, MultithreadedEqualsSingleThreaded) {
  Checkpoint plain = Checkpoint::load(tiny_bf16());
  const Tensor& w = plain.get(weight_names::kEmbedTokens);  // 151936 x 64 rows: several threads
  EXPECT_TRUE(bytes_of(quantize_weight(w, DType::Q4_0, 1)) == bytes_of(quantize_weight(w, DType::Q4_0, 3)));
  EXPECT_TRUE(bytes_of(quantize_weight(w, DType::Q8_0, 4)) == reference_bytes(w, DType::Q8_0));
}

// --- stored form ---------------------------------------------------------------------------

fs::path stored_q4(const fs::path& scratch) {
  QuantizeFolderOptions o;
  o.in = tiny_bf16();
  o.out = scratch / "q4";
  o.quant = {QuantMode::Q4, QuantMode::Q8};
  QuantizeFolderResult r = quantize_folder(o);
  EXPECT_EQ(r.quantized_tensors, static_cast<int>(quant_plan(preset_config("tiny"), o.quant).size()));
  EXPECT_LT(r.out_bytes, r.in_bytes);
  return o.out;
}

TEST(QuantStored, RoundTripSameBytesAsAtLoad) {
  const fs::path d = test::scratch_dir("model");
  const fs::path out = stored_q4(d);
  LoadOptions lo;
  lo.quant = {QuantMode::Q4, QuantMode::Q8};
  Checkpoint at_load = Checkpoint::load(tiny_bf16(), lo);
  Checkpoint stored = Checkpoint::load(out);  // no --quant: as stored
  ASSERT_EQ(stored.tensors().size(), at_load.tensors().size());
  for (auto& [name, t] : at_load.tensors()) {
    ASSERT_TRUE(stored.has(name)) << name;
    const Tensor& s = stored.get(name);
    EXPECT_EQ(s.dtype(), t.dtype()) << name;
    EXPECT_EQ(s.shape(), t.shape()) << name;
    EXPECT_TRUE(bytes_of(s) == bytes_of(t)) << name;
    EXPECT_FALSE(stored.quantized_at_load(name)) << name;  // zero-copy views of the file
    EXPECT_EQ(stored.source_dtype(name), at_load.source_dtype(name)) << name;
  }
  // Same mode again: nothing to do, still the stored views.
  Checkpoint again = Checkpoint::load(out, lo);
  EXPECT_FALSE(again.quantized_at_load(weight_names::text_layer(0) + "mlp.up_proj.weight"));
  // Another mode: a clear error instead of a second rounding.
  LoadOptions lo8;
  lo8.quant.text = QuantMode::Q8;
  const std::string e = error_of([&] { Checkpoint::load(out, lo8); });
  EXPECT_NE(e.find("stored as Q4_0"), std::string::npos) << e;
  EXPECT_NE(e.find("without --quant"), std::string::npos) << e;

  // Side files: config.json with quantization_config, the rest copied byte for byte.
  std::ifstream cf(out / "config.json");
  json cfg = json::parse(cf);
  ASSERT_TRUE(cfg.contains("quantization_config"));
  EXPECT_EQ(cfg["quantization_config"]["quant_method"], kQuantMethod);
  EXPECT_EQ(cfg["quantization_config"]["text"], "q4");
  EXPECT_EQ(cfg["quantization_config"]["vision"], "q8");
  for (auto& e2 : fs::directory_iterator(tiny_bf16())) {
    const std::string n = e2.path().filename().string();
    if (n == "config.json" || n.find(".safetensors") != std::string::npos) continue;
    EXPECT_EQ(test::read_bytes(out / n), test::read_bytes(e2.path())) << n;
  }
  // The stored tensors are U8 blocks described by the metadata.
  auto f = SafetensorsFile::open(out / "model.safetensors");
  const std::string up = weight_names::text_layer(0) + "mlp.up_proj.weight";  // [128, 64] Q4_0
  EXPECT_EQ(f->info(up).dtype, DType::U8);
  EXPECT_EQ(f->info(up).shape, (Shape{128, 2 * 18}));
  auto md = parse_quant_metadata(f->metadata().at(kQuantMetadataKey), "test");
  EXPECT_EQ(md.at(up).dtype, DType::Q4_0);
  EXPECT_EQ(md.at(up).shape, (Shape{128, 64}));
  EXPECT_EQ(md.at(up).source, DType::BF16);
  // Refuses to overwrite.
  QuantizeFolderOptions o;
  o.in = tiny_bf16();
  o.out = out;
  o.quant.text = QuantMode::Q8;
  EXPECT_NE(error_of([&] { quantize_folder(o); }).find("already exists"), std::string::npos);
}

// Rewrites OUT/model.safetensors after `edit` changed its tensors / metadata, then loads it.
std::string load_damaged(const fs::path& scratch, const std::string& what,
                         const std::function<void(std::map<std::string, Tensor>&, json&)>& edit) {
  const fs::path dir = scratch / what;
  fs::create_directories(dir);
  static const fs::path base = [&] { return stored_q4(scratch / "base"); }();
  for (auto& e : fs::directory_iterator(base)) fs::copy_file(e.path(), dir / e.path().filename());
  auto tensors = load_safetensors(base / "model.safetensors");
  auto md = SafetensorsFile::open(base / "model.safetensors")->metadata();
  json q = json::parse(md.at(kQuantMetadataKey));
  edit(tensors, q);
  md[kQuantMetadataKey] = q.dump();
  fs::remove(dir / "model.safetensors");
  save_safetensors(dir / "model.safetensors", tensors, md);
  return error_of([&] { Checkpoint::load(dir); });
}

// Version-1 files hold rows as plain llama.cpp blocks (GGUF order): converted at load, they are the
// same weights as quantizing at load (rows of 33 blocks: two interleaved groups and a plain one).
TEST(QuantStored, PlainBlockRowsConvertToTheInterleavedLayout) {
  const int64_t n = 5, k = 33 * 32;
  Tensor w = Tensor::empty({n, k}, DType::F32);
  for (int64_t i = 0; i < n * k; ++i) w.data<float>()[i] = std::sin(0.37f * static_cast<float>(i)) * (1 + i % 7);
  for (DType dt : {DType::Q8_0, DType::Q4_0}) {
    Tensor plain = Tensor::empty({n, k}, dt);  // block by block: llama.cpp order
    const size_t bb = quant_block_bytes(dt);
    for (int64_t b = 0; b < n * k / 32; ++b)
      kernels::quantize_rows(dt, w.data<float>() + b * 32, 1, 32, static_cast<uint8_t*>(plain.raw()) + b * bb);
    const Tensor at_load = quantize_weight(w, dt, 1);
    const Tensor converted = quant_from_plain_blocks(plain);
    EXPECT_TRUE(bytes_of(converted) == bytes_of(at_load)) << dtype_name(dt);
    EXPECT_FALSE(bytes_of(plain) == bytes_of(at_load)) << dtype_name(dt) << ": the layouts must differ here";
    const Tensor a = dequantize_weight(converted), b = dequantize_weight(at_load);
    EXPECT_EQ(std::memcmp(a.raw(), b.raw(), a.nbytes()), 0) << dtype_name(dt);
  }
}

TEST(QuantStored, DamagedFoldersGiveClearErrors) {
  const fs::path d = test::scratch_dir("model");
  const std::string up = weight_names::text_layer(1) + "mlp.up_proj.weight";  // Q4_0 [128, 64] -> U8 [128, 36]
  // Control: an unchanged rewrite loads.
  EXPECT_EQ(load_damaged(d, "unchanged", [](auto&, json&) {}), "");

  std::string e = load_damaged(d, "missing", [](auto&, json& q) {
    q["tensors"]["model.language_model.layers.9.mlp.up_proj.weight"] = {{"dtype", "Q4_0"}, {"shape", {128, 64}}};
  });
  EXPECT_NE(e.find("describes tensor 'model.language_model.layers.9.mlp.up_proj.weight', which is not in that file"),
            std::string::npos)
      << e;

  // Logical shape consistent with the bytes but not with config.json: 127 rows.
  e = load_damaged(d, "shape", [&](std::map<std::string, Tensor>& t, json& q) {
    t[up] = t[up].slice_rows(0, 127).clone();
    q["tensors"][up]["shape"] = {127, 64};
  });
  EXPECT_NE(e.find("'" + up + "' in 'model.safetensors' has shape [127, 64], expected [128, 64] from config.json"),
            std::string::npos)
      << e;

  // Bytes that do not fit the declared logical shape (one byte short per row).
  e = load_damaged(d, "bytes", [&](std::map<std::string, Tensor>& t, json&) {
    Tensor short_rows = Tensor::zeros({128, 35}, DType::U8);
    t[up] = short_rows;
  });
  EXPECT_NE(e.find("is stored as U8[128, 35] (4480 bytes)"), std::string::npos) << e;
  EXPECT_NE(e.find("Q4_0[128, 64] needs U8[128, 36] (4608 bytes)"), std::string::npos) << e;

  e = load_damaged(d, "dtype", [&](auto&, json& q) { q["tensors"][up]["dtype"] = "Q5_0"; });
  EXPECT_NE(e.find("dtype \"Q5_0\" is not Q8_0 or Q4_0"), std::string::npos) << e;

  e = load_damaged(d, "json", [&](auto&, json& q) { q = "not an object"; });
  EXPECT_NE(e.find("qwen3vl.quant"), std::string::npos) << e;

  // A norm weight stored as blocks: not a quantizable weight.
  const std::string norm = weight_names::text_layer(0) + "input_layernorm.weight";  // [64]
  e = load_damaged(d, "norm", [&](std::map<std::string, Tensor>& t, json& q) {
    t[norm] = Tensor::zeros({2, 18}, DType::U8);
    q["tensors"][norm] = {{"dtype", "Q4_0"}, {"shape", {2, 32}}};
  });
  EXPECT_NE(e.find("has shape [2, 32], expected [64]"), std::string::npos) << e;
  EXPECT_NE(e.find("not a weight that may be block-quantized"), std::string::npos) << e;

  // Metadata version 1 (plain llama.cpp block order, before the interleaved layout) still loads;
  // an unknown version does not.
  EXPECT_EQ(load_damaged(d, "version1", [](auto&, json& q) { q["version"] = 1; }), "");
  e = load_damaged(d, "version3", [](auto&, json& q) { q["version"] = 3; });
  EXPECT_NE(e.find("unsupported version 3 (this build reads versions 1 and 2)"), std::string::npos) << e;

  // A U8 tensor the metadata does not describe: not a float weight.
  e = load_damaged(d, "undescribed", [&](auto&, json& q) { q["tensors"].erase(up); });
  EXPECT_NE(e.find("'" + up + "' in 'model.safetensors' has dtype U8"), std::string::npos) << e;
}

}  // namespace
}  // namespace qwen3vl

#include "model/presets.h"

#include "core/error.h"

namespace qwen3vl {

namespace {

// Fields common to every Qwen3-VL checkpoint (spec §1.2: Instruct configs).
Qwen3VLConfig base() {
  Qwen3VLConfig c;
  c.architectures = {"Qwen3VLForConditionalGeneration"};
  c.dtype = "bfloat16";
  auto& v = c.vision_config;
  v.hidden_act = "gelu_pytorch_tanh";
  v.in_channels = 3;
  v.patch_size = 16;
  v.spatial_merge_size = 2;
  v.temporal_patch_size = 2;
  v.num_position_embeddings = 2304;
  v.initializer_range = 0.02;
  auto& t = c.text_config;
  t.vocab_size = 151936;
  t.head_dim = 128;
  t.hidden_act = "silu";
  t.max_position_embeddings = 262144;
  t.rms_norm_eps = 1e-6;
  t.attention_bias = false;
  t.rope_theta = 5000000.0;
  t.rope_type = "default";
  t.mrope_section = {24, 20, 20};
  t.mrope_interleaved = true;
  t.bos_token_id = 151643;
  t.eos_token_id = {151645};
  return c;
}

void set_text(Qwen3VLConfig& c, int hidden, int inter, int layers, int heads, int kv, bool tie) {
  auto& t = c.text_config;
  t.hidden_size = hidden;
  t.intermediate_size = inter;
  t.num_hidden_layers = layers;
  t.num_attention_heads = heads;
  t.num_key_value_heads = kv;
  t.tie_word_embeddings = tie;
  c.tie_word_embeddings = tie;
  c.vision_config.out_hidden_size = hidden;
}

void set_vision(Qwen3VLConfig& c, int depth, int hidden, int inter, int heads, std::vector<int> deepstack) {
  auto& v = c.vision_config;
  v.depth = depth;
  v.hidden_size = hidden;
  v.intermediate_size = inter;
  v.num_heads = heads;
  v.deepstack_visual_indexes = std::move(deepstack);
}

}  // namespace

std::vector<std::string> preset_names() { return {"tiny", "tiny-b", "2b", "4b", "8b", "32b"}; }

Qwen3VLConfig preset_config(const std::string& name) {
  Qwen3VLConfig c = base();
  if (name == "2b") {
    set_text(c, 2048, 6144, 28, 16, 8, true);
    set_vision(c, 24, 1024, 4096, 16, {5, 11, 17});
  } else if (name == "4b") {
    set_text(c, 2560, 9728, 36, 32, 8, true);
    set_vision(c, 24, 1024, 4096, 16, {5, 11, 17});
  } else if (name == "8b") {
    set_text(c, 4096, 12288, 36, 32, 8, false);
    set_vision(c, 27, 1152, 4304, 16, {8, 16, 24});
  } else if (name == "32b") {
    set_text(c, 5120, 25600, 64, 64, 8, false);
    set_vision(c, 27, 1152, 4304, 16, {8, 16, 24});
  } else if (name == "tiny") {
    // Vision: 4 blocks, Dv 32, 2 heads (head_dim 16), 8x8 pos-embed table, DeepStack after
    // blocks 0, 1, 2. Text: 4 layers, GQA 4 q / 2 kv heads, head_dim 16, mrope [4,2,2], tied.
    set_text(c, 64, 128, 4, 4, 2, true);
    set_vision(c, 4, 32, 64, 2, {0, 1, 2});
    c.vision_config.num_position_embeddings = 64;
    c.text_config.head_dim = 16;
    c.text_config.mrope_section = {4, 2, 2};
  } else if (name == "tiny-b") {
    // Other sizes everywhere: vision 5 blocks, Dv 48, 3 heads (head_dim 16), 6x6 table,
    // DeepStack after blocks 1, 3, 4 (not in order 0..2). Text: 3 layers, hidden 96, 6 q / 2 kv
    // heads (group 3), head_dim 32 (q width 192 != hidden), mrope [6,5,5], untied lm_head.
    set_text(c, 96, 160, 3, 6, 2, false);
    set_vision(c, 5, 48, 80, 3, {1, 3, 4});
    c.vision_config.num_position_embeddings = 36;
    c.text_config.head_dim = 32;
    c.text_config.mrope_section = {6, 5, 5};
  } else {
    std::string known;
    for (auto& n : preset_names()) known += (known.empty() ? "" : ", ") + n;
    throw Error("unknown preset '" + name + "' (known: " + known + ")");
  }
  c.text_config.tie_word_embeddings = c.tie_word_embeddings;
  return c;
}

}  // namespace qwen3vl

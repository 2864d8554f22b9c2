// Typed mirror of a Qwen3-VL config.json (HF Qwen3VLConfig / Qwen3VLVisionConfig /
// Qwen3VLTextConfig). Field names are the HF JSON keys.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace qwen3vl {

struct Qwen3VLVisionConfig {
  int depth = 27;
  int hidden_size = 1152;
  std::string hidden_act = "gelu_pytorch_tanh";
  int intermediate_size = 4304;
  int num_heads = 16;
  int in_channels = 3;
  int patch_size = 16;
  int spatial_merge_size = 2;
  int temporal_patch_size = 2;
  int out_hidden_size = 3584;
  int num_position_embeddings = 2304;
  std::vector<int> deepstack_visual_indexes = {8, 16, 24};
  double initializer_range = 0.02;

  int head_dim() const { return hidden_size / num_heads; }
  // Width of one merged token before the merger MLP: hidden_size * merge^2.
  int merged_hidden() const { return hidden_size * spatial_merge_size * spatial_merge_size; }
  // Columns of one pixel_values row: in_channels * temporal_patch_size * patch_size^2.
  int patch_dim() const { return in_channels * temporal_patch_size * patch_size * patch_size; }
};

struct Qwen3VLTextConfig {
  int vocab_size = 151936;
  int hidden_size = 4096;
  int intermediate_size = 22016;
  int num_hidden_layers = 32;
  int num_attention_heads = 32;
  int num_key_value_heads = 32;
  int head_dim = 128;
  std::string hidden_act = "silu";
  int max_position_embeddings = 128000;
  double rms_norm_eps = 1e-6;
  bool attention_bias = false;
  bool tie_word_embeddings = false;
  // RoPE, from either `rope_scaling` + `rope_theta` (transformers 4.57) or `rope_parameters` (v5).
  double rope_theta = 5000000.0;
  std::string rope_type = "default";
  std::vector<int> mrope_section = {24, 20, 20};
  bool mrope_interleaved = true;
  int bos_token_id = 151643;
  std::vector<int> eos_token_id = {151645};
};

struct Qwen3VLConfig {
  Qwen3VLVisionConfig vision_config;
  Qwen3VLTextConfig text_config;
  int image_token_id = 151655;
  int video_token_id = 151656;
  int vision_start_token_id = 151652;
  int vision_end_token_id = 151653;
  // Effective flag (always equal to text_config.tie_word_embeddings): transformers 4.57.6 ties
  // lm_head to embed_tokens iff text_config.tie_word_embeddings (class default false).
  bool tie_word_embeddings = false;
  std::string dtype = "bfloat16";    // `torch_dtype` / `dtype`
  std::vector<std::string> architectures = {"Qwen3VLForConditionalGeneration"};

  static Qwen3VLConfig from_json(const nlohmann::json& j);   // throws Error naming the bad field
  static Qwen3VLConfig load(const std::filesystem::path& config_json);
  nlohmann::json to_json() const;  // as HF writes it (rope_scaling + rope_theta form)
  // Every violated invariant, one message each; empty when valid.
  std::vector<std::string> validate() const;
  void validate_or_throw() const;  // one Error listing all violations
};

}  // namespace qwen3vl

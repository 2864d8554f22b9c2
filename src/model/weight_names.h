// The ONE place that spells every HF tensor name of a Qwen3-VL checkpoint, with its expected
// shape derived from the config (spec §2). Used by Checkpoint::load (verification), make-model
// (what to write), inspect (parameter counts) and the model code (names to fetch).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "model/config.h"

namespace qwen3vl {

// Parameter-count groups (as printed by `qwen3vl inspect`).
enum class WeightGroup : uint8_t {
  VisionPatchEmbed,  // model.visual.patch_embed.*
  VisionPosEmbed,    // model.visual.pos_embed.weight
  VisionBlocks,      // model.visual.blocks.*
  VisionMerger,      // model.visual.merger.*
  DeepstackMergers,  // model.visual.deepstack_merger_list.*
  TextEmbedding,     // model.language_model.embed_tokens.weight
  TextLayers,        // model.language_model.layers.*
  TextNorm,          // model.language_model.norm.weight
  LmHead,            // lm_head.weight (untied models only)
};
const char* weight_group_name(WeightGroup g);

// How make-model initialises a tensor.
enum class WeightInit : uint8_t {
  Normal,  // matrices, embeddings: uniform [-a, a], a = init_std * sqrt(3)
  Bias,    // biases: same distribution as Normal
  Norm,    // LayerNorm / RMSNorm weights: 1 + small noise
};

struct WeightSpec {
  std::string name;  // HF name, e.g. "model.visual.blocks.3.attn.qkv.weight"
  Shape shape;       // PyTorch order
  WeightGroup group;
  WeightInit init;
};

namespace weight_names {
// Prefixes / name builders (use these instead of spelling names in model code).
inline const std::string kVisual = "model.visual.";
inline const std::string kText = "model.language_model.";
inline const std::string kLmHead = "lm_head.weight";
inline const std::string kEmbedTokens = "model.language_model.embed_tokens.weight";
inline std::string vision_block(int i) { return kVisual + "blocks." + std::to_string(i) + "."; }
inline std::string deepstack_merger(int j) { return kVisual + "deepstack_merger_list." + std::to_string(j) + "."; }
inline std::string text_layer(int l) { return kText + "layers." + std::to_string(l) + "."; }
}  // namespace weight_names

// Every tensor the checkpoint must contain, in HF module (state_dict) order. lm_head.weight is
// included only for untied configs (tie_word_embeddings false).
std::vector<WeightSpec> expected_weights(const Qwen3VLConfig& cfg);

// Checkpoint tensor names that are accepted and ignored (hook; empty today). lm_head.weight in a
// tied checkpoint is handled by Checkpoint::load, not here.
bool is_ignored_weight(const std::string& name, const Qwen3VLConfig& cfg);

// Parameter counts per group, computed from the config alone (tied embeddings counted once).
struct ParamCounts {
  int64_t vision_patch_embed = 0, vision_pos_embed = 0, vision_blocks = 0, vision_merger = 0;
  int64_t deepstack_mergers = 0;
  int64_t text_embedding = 0, text_layers = 0, text_norm = 0;
  int64_t lm_head = 0;  // 0 when tied
  int64_t vision() const { return vision_patch_embed + vision_pos_embed + vision_blocks + vision_merger; }
  int64_t text() const { return text_embedding + text_layers + text_norm; }
  int64_t total() const { return vision() + deepstack_mergers + text() + lm_head; }
  void add(WeightGroup g, int64_t n);
};
ParamCounts count_parameters(const Qwen3VLConfig& cfg);

}  // namespace qwen3vl

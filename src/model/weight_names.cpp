#include "model/weight_names.h"

namespace qwen3vl {

const char* weight_group_name(WeightGroup g) {
  switch (g) {
    case WeightGroup::VisionPatchEmbed: return "vision.patch_embed";
    case WeightGroup::VisionPosEmbed: return "vision.pos_embed";
    case WeightGroup::VisionBlocks: return "vision.blocks";
    case WeightGroup::VisionMerger: return "vision.merger";
    case WeightGroup::DeepstackMergers: return "vision.deepstack_mergers";
    case WeightGroup::TextEmbedding: return "text.embed_tokens";
    case WeightGroup::TextLayers: return "text.layers";
    case WeightGroup::TextNorm: return "text.norm";
    case WeightGroup::LmHead: return "lm_head";
  }
  return "?";
}

std::vector<WeightSpec> expected_weights(const Qwen3VLConfig& cfg) {
  using namespace weight_names;
  const auto& v = cfg.vision_config;
  const auto& t = cfg.text_config;
  const int64_t Dv = v.hidden_size, Iv = v.intermediate_size, M = v.merged_hidden(), Do = v.out_hidden_size;
  const int64_t D = t.hidden_size, I = t.intermediate_size, hd = t.head_dim;
  const int64_t q = static_cast<int64_t>(t.num_attention_heads) * hd, kv = static_cast<int64_t>(t.num_key_value_heads) * hd;
  std::vector<WeightSpec> w;
  auto add = [&](std::string name, Shape shape, WeightGroup g, WeightInit init) {
    w.push_back(WeightSpec{std::move(name), std::move(shape), g, init});
  };
  using G = WeightGroup;
  using In = WeightInit;
  // --- vision tower (Qwen3VLVisionModel)
  add(kVisual + "patch_embed.proj.weight", {Dv, v.in_channels, v.temporal_patch_size, v.patch_size, v.patch_size},
      G::VisionPatchEmbed, In::Normal);
  add(kVisual + "patch_embed.proj.bias", {Dv}, G::VisionPatchEmbed, In::Bias);
  add(kVisual + "pos_embed.weight", {v.num_position_embeddings, Dv}, G::VisionPosEmbed, In::Normal);
  for (int i = 0; i < v.depth; ++i) {
    const std::string b = vision_block(i);
    add(b + "norm1.weight", {Dv}, G::VisionBlocks, In::Norm);
    add(b + "norm1.bias", {Dv}, G::VisionBlocks, In::Bias);
    add(b + "norm2.weight", {Dv}, G::VisionBlocks, In::Norm);
    add(b + "norm2.bias", {Dv}, G::VisionBlocks, In::Bias);
    add(b + "attn.qkv.weight", {3 * Dv, Dv}, G::VisionBlocks, In::Normal);
    add(b + "attn.qkv.bias", {3 * Dv}, G::VisionBlocks, In::Bias);
    add(b + "attn.proj.weight", {Dv, Dv}, G::VisionBlocks, In::Normal);
    add(b + "attn.proj.bias", {Dv}, G::VisionBlocks, In::Bias);
    add(b + "mlp.linear_fc1.weight", {Iv, Dv}, G::VisionBlocks, In::Normal);
    add(b + "mlp.linear_fc1.bias", {Iv}, G::VisionBlocks, In::Bias);
    add(b + "mlp.linear_fc2.weight", {Dv, Iv}, G::VisionBlocks, In::Normal);
    add(b + "mlp.linear_fc2.bias", {Dv}, G::VisionBlocks, In::Bias);
  }
  // Main merger: LayerNorm over Dv before the 2x2 shuffle.
  add(kVisual + "merger.norm.weight", {Dv}, G::VisionMerger, In::Norm);
  add(kVisual + "merger.norm.bias", {Dv}, G::VisionMerger, In::Bias);
  add(kVisual + "merger.linear_fc1.weight", {M, M}, G::VisionMerger, In::Normal);
  add(kVisual + "merger.linear_fc1.bias", {M}, G::VisionMerger, In::Bias);
  add(kVisual + "merger.linear_fc2.weight", {Do, M}, G::VisionMerger, In::Normal);
  add(kVisual + "merger.linear_fc2.bias", {Do}, G::VisionMerger, In::Bias);
  // DeepStack mergers: LayerNorm over M after the shuffle.
  for (size_t j = 0; j < v.deepstack_visual_indexes.size(); ++j) {
    const std::string b = deepstack_merger(static_cast<int>(j));
    add(b + "norm.weight", {M}, G::DeepstackMergers, In::Norm);
    add(b + "norm.bias", {M}, G::DeepstackMergers, In::Bias);
    add(b + "linear_fc1.weight", {M, M}, G::DeepstackMergers, In::Normal);
    add(b + "linear_fc1.bias", {M}, G::DeepstackMergers, In::Bias);
    add(b + "linear_fc2.weight", {Do, M}, G::DeepstackMergers, In::Normal);
    add(b + "linear_fc2.bias", {Do}, G::DeepstackMergers, In::Bias);
  }
  // --- text decoder (Qwen3VLTextModel)
  add(kEmbedTokens, {t.vocab_size, D}, G::TextEmbedding, In::Normal);
  for (int l = 0; l < t.num_hidden_layers; ++l) {
    const std::string b = text_layer(l);
    add(b + "self_attn.q_proj.weight", {q, D}, G::TextLayers, In::Normal);
    add(b + "self_attn.k_proj.weight", {kv, D}, G::TextLayers, In::Normal);
    add(b + "self_attn.v_proj.weight", {kv, D}, G::TextLayers, In::Normal);
    add(b + "self_attn.o_proj.weight", {D, q}, G::TextLayers, In::Normal);
    add(b + "self_attn.q_norm.weight", {hd}, G::TextLayers, In::Norm);
    add(b + "self_attn.k_norm.weight", {hd}, G::TextLayers, In::Norm);
    add(b + "mlp.gate_proj.weight", {I, D}, G::TextLayers, In::Normal);
    add(b + "mlp.up_proj.weight", {I, D}, G::TextLayers, In::Normal);
    add(b + "mlp.down_proj.weight", {D, I}, G::TextLayers, In::Normal);
    add(b + "input_layernorm.weight", {D}, G::TextLayers, In::Norm);
    add(b + "post_attention_layernorm.weight", {D}, G::TextLayers, In::Norm);
  }
  add(kText + "norm.weight", {D}, G::TextNorm, In::Norm);
  if (!cfg.tie_word_embeddings) add(kLmHead, {t.vocab_size, D}, G::LmHead, In::Normal);
  return w;
}

bool is_ignored_weight(const std::string& name, const Qwen3VLConfig& cfg) {
  (void)name;
  (void)cfg;
  return false;  // hook: names listed here are accepted and never used
}

void ParamCounts::add(WeightGroup g, int64_t n) {
  switch (g) {
    case WeightGroup::VisionPatchEmbed: vision_patch_embed += n; break;
    case WeightGroup::VisionPosEmbed: vision_pos_embed += n; break;
    case WeightGroup::VisionBlocks: vision_blocks += n; break;
    case WeightGroup::VisionMerger: vision_merger += n; break;
    case WeightGroup::DeepstackMergers: deepstack_mergers += n; break;
    case WeightGroup::TextEmbedding: text_embedding += n; break;
    case WeightGroup::TextLayers: text_layers += n; break;
    case WeightGroup::TextNorm: text_norm += n; break;
    case WeightGroup::LmHead: lm_head += n; break;
  }
}

ParamCounts count_parameters(const Qwen3VLConfig& cfg) {
  ParamCounts c;
  for (auto& w : expected_weights(cfg)) c.add(w.group, shape_numel(w.shape));
  return c;
}

}  // namespace qwen3vl

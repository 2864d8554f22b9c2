// qwen3vl inspect DIR: config summary, weight table and parameter counts of a checkpoint folder.
#include <cstdio>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "core/error.h"
#include "model/checkpoint.h"
#include "model/weight_names.h"

namespace qwen3vl::cli {

static std::string commas(int64_t n) {
  std::string s = std::to_string(n < 0 ? -n : n), out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i && (s.size() - i) % 3 == 0) out += ',';
    out += s[i];
  }
  return n < 0 ? "-" + out : out;
}

static std::string list_str(const std::vector<int>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

static int cmd_inspect(Args& a) {
  if (a.flag({"--help", "-h"})) {
    std::printf(
        "usage: qwen3vl inspect DIR [--json] [--no-table] [--quant none|q8|q4] [--quant-vision none|q8|q4]\n"
        "Loads and verifies a checkpoint folder (config.json + safetensors) and prints the config\n"
        "summary, the weight table (name, dtype, shape, bytes, file), bytes per dtype and parameter\n"
        "counts per component. Quantized folders (qwen3vl quantize) show the Q8_0 / Q4_0 tensors with\n"
        "their logical shape. --quant / --quant-vision show what quantizing at load (as run / serve /\n"
        "bench do with the same flags) makes of the checkpoint.\n");
    return 0;
  }
  const bool as_json = a.flag({"--json"});
  const bool no_table = a.flag({"--no-table"});
  LoadOptions lo;
  lo.quant.text = parse_quant_mode(a.get_or({"--quant"}, "none"), "--quant");
  lo.quant.vision = parse_quant_mode(a.get_or({"--quant-vision"}, "none"), "--quant-vision");
  a.reject_unknown();
  QWEN3VL_CHECK(a.positional().size() == 1, "inspect: expected one checkpoint folder (qwen3vl inspect DIR)");
  Checkpoint ck = Checkpoint::load(a.positional()[0], lo);
  const Qwen3VLConfig& c = ck.config();
  const auto& v = c.vision_config;
  const auto& t = c.text_config;

  // Parameter counts from the tensors actually present (verified against the registry).
  std::map<std::string, WeightGroup> group_of;
  for (auto& w : expected_weights(c)) group_of[w.name] = w.group;
  ParamCounts pc;
  for (auto& [name, tensor] : ck.tensors()) {
    auto it = group_of.find(name);
    if (it != group_of.end()) pc.add(it->second, tensor.numel());
  }

  if (as_json) {
    nlohmann::json j;
    j["dir"] = ck.dir().string();
    j["config"] = c.to_json();
    nlohmann::json w = nlohmann::json::array();
    for (auto& [name, tensor] : ck.tensors())
      w.push_back({{"name", name}, {"dtype", dtype_name(tensor.dtype())}, {"shape", tensor.shape()},
                   {"bytes", tensor.nbytes()}, {"file", ck.file_of(name)}});
    j["weights"] = w;
    j["weight_format"] = weight_format_summary(ck);
    nlohmann::json bd = nlohmann::json::object();
    for (auto& [name, tensor] : ck.tensors()) {
      auto& e = bd[dtype_name(tensor.dtype())];
      if (e.is_null()) e = {{"tensors", 0}, {"bytes", 0}};
      e["tensors"] = e["tensors"].get<int64_t>() + 1;
      e["bytes"] = e["bytes"].get<uint64_t>() + tensor.nbytes();
    }
    j["bytes_by_dtype"] = bd;
    j["parameters"] = {{"vision", pc.vision()},
                       {"vision_patch_embed", pc.vision_patch_embed},
                       {"vision_pos_embed", pc.vision_pos_embed},
                       {"vision_blocks", pc.vision_blocks},
                       {"vision_merger", pc.vision_merger},
                       {"deepstack_mergers", pc.deepstack_mergers},
                       {"text", pc.text()},
                       {"text_embedding", pc.text_embedding},
                       {"text_layers", pc.text_layers},
                       {"text_norm", pc.text_norm},
                       {"lm_head", pc.lm_head},
                       {"total", pc.total()}};
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }

  std::printf("checkpoint  %s\n", ck.dir().c_str());
  std::printf("model       %s (qwen3_vl), dtype %s, tie_word_embeddings %s\n",
              c.architectures.empty() ? "?" : c.architectures[0].c_str(), c.dtype.c_str(),
              c.tie_word_embeddings ? "true" : "false");
  int side = 0;
  while ((side + 1) * (side + 1) <= v.num_position_embeddings) ++side;
  std::printf(
      "vision      depth %d, hidden %d, heads %d (head_dim %d), intermediate %d, act %s\n"
      "            patch %d, temporal_patch %d, merge %d, pos_embed %d (%dx%d), out_hidden %d\n"
      "            deepstack_visual_indexes %s\n",
      v.depth, v.hidden_size, v.num_heads, v.num_heads ? v.hidden_size / v.num_heads : 0, v.intermediate_size,
      v.hidden_act.c_str(), v.patch_size, v.temporal_patch_size, v.spatial_merge_size, v.num_position_embeddings, side,
      side, v.out_hidden_size, list_str(v.deepstack_visual_indexes).c_str());
  std::printf(
      "text        layers %d, hidden %d, intermediate %d, heads %d, kv_heads %d (group %d), head_dim %d\n"
      "            vocab %d, max_position %d, rms_norm_eps %g, act %s\n"
      "            rope %s, theta %g, mrope_section %s, interleaved %s\n"
      "tokens      image %d, video %d, vision_start %d, vision_end %d, bos %d, eos %s\n",
      t.num_hidden_layers, t.hidden_size, t.intermediate_size, t.num_attention_heads, t.num_key_value_heads,
      t.num_key_value_heads ? t.num_attention_heads / t.num_key_value_heads : 0, t.head_dim, t.vocab_size,
      t.max_position_embeddings, t.rms_norm_eps, t.hidden_act.c_str(), t.rope_type.c_str(), t.rope_theta,
      list_str(t.mrope_section).c_str(), t.mrope_interleaved ? "true" : "false", c.image_token_id, c.video_token_id,
      c.vision_start_token_id, c.vision_end_token_id, t.bos_token_id, list_str(t.eos_token_id).c_str());

  std::map<std::string, int> files;
  std::map<std::string, std::pair<int64_t, uint64_t>> by_dtype;  // dtype -> (tensors, bytes)
  uint64_t total_bytes = 0;
  for (auto& [name, tensor] : ck.tensors()) {
    files[ck.file_of(name)]++;
    auto& e = by_dtype[dtype_name(tensor.dtype())];
    e.first++;
    e.second += tensor.nbytes();
    total_bytes += tensor.nbytes();
  }
  std::printf("\nweights     %zu tensors in %zu file(s)%s, format %s\n", ck.tensors().size(), files.size(),
              c.tie_word_embeddings ? " (lm_head.weight tied to embed_tokens)" : "", weight_format_summary(ck).c_str());
  if (!no_table) {
    size_t w = 4;
    for (auto& [name, tensor] : ck.tensors()) w = std::max(w, name.size());
    std::printf("  %-*s  %-5s  %-24s  %13s  %s\n", static_cast<int>(w), "name", "dtype", "shape", "bytes", "file");
    // HF module order (registry order), then anything else.
    for (auto& spec : expected_weights(c)) {
      if (!ck.tensors().count(spec.name)) continue;
      const Tensor& tt = ck.get(spec.name);
      std::printf("  %-*s  %-5s  %-24s  %13s  %s\n", static_cast<int>(w), spec.name.c_str(), dtype_name(tt.dtype()),
                  shape_str(tt.shape()).c_str(), commas(static_cast<int64_t>(tt.nbytes())).c_str(),
                  ck.file_of(spec.name).c_str());
    }
    for (auto& [name, tt] : ck.tensors())
      if (!group_of.count(name))
        std::printf("  %-*s  %-5s  %-24s  %13s  %s (ignored)\n", static_cast<int>(w), name.c_str(),
                    dtype_name(tt.dtype()), shape_str(tt.shape()).c_str(),
                    commas(static_cast<int64_t>(tt.nbytes())).c_str(), ck.file_of(name).c_str());
  }
  std::printf("\nbytes by dtype\n");
  for (auto& [d, e] : by_dtype)
    std::printf("  %-5s %6lld tensors %18s bytes\n", d.c_str(), static_cast<long long>(e.first),
                commas(static_cast<int64_t>(e.second)).c_str());
  std::printf("  total %6zu tensors %18s bytes\n", ck.tensors().size(), commas(static_cast<int64_t>(total_bytes)).c_str());

  std::printf("\nparameters\n");
  auto row = [](const char* what, int64_t n) { std::printf("  %-44s %18s\n", what, commas(n).c_str()); };
  row("vision (patch/pos embed, blocks, merger)", pc.vision());
  row("  patch_embed", pc.vision_patch_embed);
  row("  pos_embed", pc.vision_pos_embed);
  row("  blocks", pc.vision_blocks);
  row("  merger", pc.vision_merger);
  row("deepstack mergers", pc.deepstack_mergers);
  row("text (embedding + layers + norm)", pc.text());
  row("  embed_tokens", pc.text_embedding);
  row("  layers", pc.text_layers);
  row("  norm", pc.text_norm);
  row(c.tie_word_embeddings ? "lm_head (tied: 0)" : "lm_head", pc.lm_head);
  row("total", pc.total());
  return 0;
}
QWEN3VL_COMMAND("inspect", "print config, weight table and parameter counts of a checkpoint", cmd_inspect,
                {"--help", "-h", "--json", "--no-table"});

}  // namespace qwen3vl::cli

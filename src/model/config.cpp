// Qwen3VLConfig <-> config.json, and the invariants the engine relies on.
#include "model/config.h"

#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace qwen3vl {

using nlohmann::json;

namespace {

const char* type_name(const json& v) { return v.type_name(); }

[[noreturn]] void bad_field(const std::string& field, const std::string& what) {
  throw Error("config.json: field '" + field + "': " + what);
}

// Typed getters: absent (or null) -> keep default; present with the wrong type -> Error naming
// the field.
void get_int(const json& obj, const std::string& prefix, const char* key, int& out) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return;
  const std::string field = prefix + key;
  if (it->is_number_integer()) {
    auto v = it->get<int64_t>();
    if (v < INT32_MIN || v > INT32_MAX) bad_field(field, "integer out of range: " + it->dump());
    out = static_cast<int>(v);
    return;
  }
  if (it->is_number_float()) {
    double d = it->get<double>();
    if (std::floor(d) == d && std::fabs(d) < 2147483647.0) {
      out = static_cast<int>(d);
      return;
    }
  }
  bad_field(field, std::string("expected an integer, got ") + type_name(*it) + " " + it->dump());
}

void get_double(const json& obj, const std::string& prefix, const char* key, double& out) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return;
  if (!it->is_number()) bad_field(prefix + key, std::string("expected a number, got ") + type_name(*it) + " " + it->dump());
  out = it->get<double>();
}

void get_bool(const json& obj, const std::string& prefix, const char* key, bool& out) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return;
  if (!it->is_boolean()) bad_field(prefix + key, std::string("expected true/false, got ") + type_name(*it) + " " + it->dump());
  out = it->get<bool>();
}

void get_string(const json& obj, const std::string& prefix, const char* key, std::string& out) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return;
  if (!it->is_string()) bad_field(prefix + key, std::string("expected a string, got ") + type_name(*it) + " " + it->dump());
  out = it->get<std::string>();
}

std::vector<int> int_list(const json& v, const std::string& field) {
  if (!v.is_array()) bad_field(field, std::string("expected a list of integers, got ") + type_name(v) + " " + v.dump());
  std::vector<int> out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_number_integer())
      bad_field(field, "element " + std::to_string(i) + ": expected an integer, got " + v[i].dump());
    auto x = v[i].get<int64_t>();
    if (x < INT32_MIN || x > INT32_MAX) bad_field(field, "element " + std::to_string(i) + " out of range");
    out.push_back(static_cast<int>(x));
  }
  return out;
}

void get_int_list(const json& obj, const std::string& prefix, const char* key, std::vector<int>& out) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return;
  out = int_list(*it, prefix + key);
}

// `eos_token_id`: an integer or a list of integers.
void get_int_or_list(const json& obj, const std::string& prefix, const char* key, std::vector<int>& out) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return;
  if (it->is_number_integer()) {
    int v = 0;
    get_int(obj, prefix, key, v);
    out = {v};
    return;
  }
  out = int_list(*it, prefix + key);
}

const json& sub_object(const json& j, const char* key, const json& empty) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return empty;
  if (!it->is_object()) bad_field(key, std::string("expected an object, got ") + type_name(*it));
  return *it;
}

// RoPE dict: {"rope_type"/"type", "mrope_section", "mrope_interleaved", ["rope_theta"]}.
void parse_rope_dict(const json& r, const std::string& prefix, Qwen3VLTextConfig& t) {
  if (!r.is_object()) bad_field(prefix.substr(0, prefix.size() - 1), std::string("expected an object, got ") + type_name(r));
  get_string(r, prefix, "type", t.rope_type);  // legacy spelling
  get_string(r, prefix, "rope_type", t.rope_type);
  get_int_list(r, prefix, "mrope_section", t.mrope_section);
  get_bool(r, prefix, "mrope_interleaved", t.mrope_interleaved);
  get_double(r, prefix, "rope_theta", t.rope_theta);
}

}  // namespace

Qwen3VLConfig Qwen3VLConfig::from_json(const json& j) {
  if (!j.is_object()) throw Error(std::string("config.json: expected a JSON object at top level, got ") + type_name(j));
  Qwen3VLConfig c;
  {
    auto it = j.find("model_type");
    if (it != j.end() && !(it->is_string() && it->get<std::string>() == "qwen3_vl"))
      bad_field("model_type", "expected \"qwen3_vl\", got " + it->dump() +
                                  (it->is_string() && it->get<std::string>() == "qwen3_vl_moe"
                                       ? " (the MoE variant is not supported)"
                                       : ""));
  }
  if (auto it = j.find("architectures"); it != j.end() && !it->is_null()) {
    if (!it->is_array()) bad_field("architectures", "expected a list of strings");
    c.architectures.clear();
    for (auto& a : *it) {
      if (!a.is_string()) bad_field("architectures", "expected a list of strings, got element " + a.dump());
      c.architectures.push_back(a.get<std::string>());
    }
  }
  get_int(j, "", "image_token_id", c.image_token_id);
  get_int(j, "", "video_token_id", c.video_token_id);
  get_int(j, "", "vision_start_token_id", c.vision_start_token_id);
  get_int(j, "", "vision_end_token_id", c.vision_end_token_id);
  get_string(j, "", "torch_dtype", c.dtype);
  get_string(j, "", "dtype", c.dtype);
  get_bool(j, "", "tie_word_embeddings", c.tie_word_embeddings);

  const json empty = json::object();
  // --- vision_config
  const json& v = sub_object(j, "vision_config", empty);
  {
    const std::string p = "vision_config.";
    auto& vc = c.vision_config;
    get_int(v, p, "depth", vc.depth);
    get_int(v, p, "hidden_size", vc.hidden_size);
    get_string(v, p, "hidden_act", vc.hidden_act);
    get_int(v, p, "intermediate_size", vc.intermediate_size);
    get_int(v, p, "num_heads", vc.num_heads);
    get_int(v, p, "in_channels", vc.in_channels);
    get_int(v, p, "patch_size", vc.patch_size);
    get_int(v, p, "spatial_merge_size", vc.spatial_merge_size);
    get_int(v, p, "temporal_patch_size", vc.temporal_patch_size);
    get_int(v, p, "out_hidden_size", vc.out_hidden_size);
    get_int(v, p, "num_position_embeddings", vc.num_position_embeddings);
    get_int_list(v, p, "deepstack_visual_indexes", vc.deepstack_visual_indexes);
    get_double(v, p, "initializer_range", vc.initializer_range);
  }
  // --- text_config
  const json& t = sub_object(j, "text_config", empty);
  {
    const std::string p = "text_config.";
    auto& tc = c.text_config;
    get_int(t, p, "vocab_size", tc.vocab_size);
    get_int(t, p, "hidden_size", tc.hidden_size);
    get_int(t, p, "intermediate_size", tc.intermediate_size);
    get_int(t, p, "num_hidden_layers", tc.num_hidden_layers);
    get_int(t, p, "num_attention_heads", tc.num_attention_heads);
    tc.num_key_value_heads = tc.num_attention_heads;  // HF: None -> = heads
    get_int(t, p, "num_key_value_heads", tc.num_key_value_heads);
    get_int(t, p, "head_dim", tc.head_dim);
    get_string(t, p, "hidden_act", tc.hidden_act);
    get_int(t, p, "max_position_embeddings", tc.max_position_embeddings);
    get_double(t, p, "rms_norm_eps", tc.rms_norm_eps);
    get_bool(t, p, "attention_bias", tc.attention_bias);
    get_int(t, p, "bos_token_id", tc.bos_token_id);
    get_int_or_list(t, p, "eos_token_id", tc.eos_token_id);
    // RoPE: v4.57 `rope_theta` + `rope_scaling`; v5 `rope_parameters` (which wins when both).
    get_double(t, p, "rope_theta", tc.rope_theta);
    if (auto it = t.find("rope_scaling"); it != t.end() && !it->is_null()) parse_rope_dict(*it, p + "rope_scaling.", tc);
    if (auto it = t.find("rope_parameters"); it != t.end() && !it->is_null())
      parse_rope_dict(*it, p + "rope_parameters.", tc);
    // Tied embeddings. transformers 4.57.6 ties iff get_text_config().tie_word_embeddings, i.e.
    // the text_config value decides and its class default is false: a top-level
    // "tie_word_embeddings": true without the text_config entry gives an UNtied model in HF (and
    // then a missing lm_head.weight is an error here rather than random weights as in HF).
    tc.tie_word_embeddings = false;
    get_bool(t, p, "tie_word_embeddings", tc.tie_word_embeddings);
    c.tie_word_embeddings = tc.tie_word_embeddings;
  }
  return c;
}

Qwen3VLConfig Qwen3VLConfig::load(const std::filesystem::path& config_json) {
  std::ifstream f(config_json, std::ios::binary);
  if (!f) throw Error(config_json.string() + ": cannot open config file");
  std::stringstream ss;
  ss << f.rdbuf();
  json j;
  try {
    j = json::parse(ss.str());
  } catch (const json::parse_error& e) {
    throw Error(config_json.string() + ": malformed JSON: " + e.what());
  }
  try {
    return from_json(j);
  } catch (const Error& e) {
    std::string msg = e.what();
    // Replace the generic "config.json" by the actual path.
    if (msg.rfind("config.json: ", 0) == 0) msg = msg.substr(13);
    throw Error(config_json.string() + ": " + msg);
  }
}

json Qwen3VLConfig::to_json() const {
  const auto& v = vision_config;
  const auto& t = text_config;
  json vj = {
      {"deepstack_visual_indexes", v.deepstack_visual_indexes},
      {"depth", v.depth},
      {"hidden_act", v.hidden_act},
      {"hidden_size", v.hidden_size},
      {"in_channels", v.in_channels},
      {"initializer_range", v.initializer_range},
      {"intermediate_size", v.intermediate_size},
      {"model_type", "qwen3_vl"},
      {"num_heads", v.num_heads},
      {"num_position_embeddings", v.num_position_embeddings},
      {"out_hidden_size", v.out_hidden_size},
      {"patch_size", v.patch_size},
      {"spatial_merge_size", v.spatial_merge_size},
      {"temporal_patch_size", v.temporal_patch_size},
  };
  json tj = {
      {"attention_bias", t.attention_bias},
      {"attention_dropout", 0.0},
      {"bos_token_id", t.bos_token_id},
      {"dtype", dtype},
      {"head_dim", t.head_dim},
      {"hidden_act", t.hidden_act},
      {"hidden_size", t.hidden_size},
      {"initializer_range", v.initializer_range},
      {"intermediate_size", t.intermediate_size},
      {"max_position_embeddings", t.max_position_embeddings},
      {"model_type", "qwen3_vl_text"},
      {"num_attention_heads", t.num_attention_heads},
      {"num_hidden_layers", t.num_hidden_layers},
      {"num_key_value_heads", t.num_key_value_heads},
      {"rms_norm_eps", t.rms_norm_eps},
      {"rope_scaling",
       {{"mrope_interleaved", t.mrope_interleaved}, {"mrope_section", t.mrope_section}, {"rope_type", t.rope_type}}},
      {"rope_theta", t.rope_theta},
      {"tie_word_embeddings", tie_word_embeddings},
      {"use_cache", true},
      {"vocab_size", t.vocab_size},
  };
  if (t.eos_token_id.size() == 1)
    tj["eos_token_id"] = t.eos_token_id[0];
  else
    tj["eos_token_id"] = t.eos_token_id;
  json j = {
      {"architectures", architectures},
      {"dtype", dtype},
      {"image_token_id", image_token_id},
      {"model_type", "qwen3_vl"},
      {"text_config", tj},
      {"tie_word_embeddings", tie_word_embeddings},
      {"torch_dtype", dtype},
      {"transformers_version", "4.57.0.dev0"},
      {"video_token_id", video_token_id},
      {"vision_config", vj},
      {"vision_end_token_id", vision_end_token_id},
      {"vision_start_token_id", vision_start_token_id},
  };
  return j;
}

std::vector<std::string> Qwen3VLConfig::validate() const {
  std::vector<std::string> bad;
  auto need = [&](bool ok, const std::string& msg) {
    if (!ok) bad.push_back(msg);
  };
  auto positive = [&](int x, const std::string& field) {
    need(x > 0, field + " must be positive (got " + std::to_string(x) + ")");
  };
  const auto& v = vision_config;
  const auto& t = text_config;
  auto str = [](int x) { return std::to_string(x); };

  // --- vision
  positive(v.depth, "vision_config.depth");
  positive(v.hidden_size, "vision_config.hidden_size");
  positive(v.intermediate_size, "vision_config.intermediate_size");
  positive(v.num_heads, "vision_config.num_heads");
  positive(v.out_hidden_size, "vision_config.out_hidden_size");
  positive(v.num_position_embeddings, "vision_config.num_position_embeddings");
  need(v.in_channels == 3, "vision_config.in_channels must be 3 (RGB), got " + str(v.in_channels));
  need(v.patch_size >= 1 && v.patch_size <= 64, "vision_config.patch_size must be in [1, 64], got " + str(v.patch_size));
  need(v.temporal_patch_size >= 1 && v.temporal_patch_size <= 16,
       "vision_config.temporal_patch_size must be in [1, 16], got " + str(v.temporal_patch_size));
  need(v.spatial_merge_size >= 1 && v.spatial_merge_size <= 8,
       "vision_config.spatial_merge_size must be in [1, 8], got " + str(v.spatial_merge_size));
  if (v.hidden_size > 0 && v.num_heads > 0) {
    need(v.hidden_size % v.num_heads == 0, "vision_config.hidden_size (" + str(v.hidden_size) +
                                               ") must be divisible by vision_config.num_heads (" + str(v.num_heads) + ")");
    if (v.hidden_size % v.num_heads == 0)
      need(v.head_dim() % 4 == 0, "vision head_dim (hidden_size/num_heads = " + str(v.head_dim()) +
                                      ") must be a multiple of 4 (2-D rotary embedding)");
  }
  if (v.num_position_embeddings > 0) {
    int side = static_cast<int>(std::lround(std::sqrt(static_cast<double>(v.num_position_embeddings))));
    need(side * side == v.num_position_embeddings,
         "vision_config.num_position_embeddings (" + str(v.num_position_embeddings) + ") must be a perfect square");
  }
  {
    std::set<int> seen;
    for (size_t i = 0; i < v.deepstack_visual_indexes.size(); ++i) {
      int d = v.deepstack_visual_indexes[i];
      need(d >= 0 && d < v.depth, "vision_config.deepstack_visual_indexes[" + std::to_string(i) + "] = " + str(d) +
                                      " is outside [0, depth=" + str(v.depth) + ")");
      need(seen.insert(d).second, "vision_config.deepstack_visual_indexes: index " + str(d) + " appears twice");
    }
    need(static_cast<int>(v.deepstack_visual_indexes.size()) <= t.num_hidden_layers,
         "vision_config.deepstack_visual_indexes has " + std::to_string(v.deepstack_visual_indexes.size()) +
             " entries but the text model has only " + str(t.num_hidden_layers) + " layers");
  }
  need(v.out_hidden_size == t.hidden_size, "vision_config.out_hidden_size (" + str(v.out_hidden_size) +
                                               ") must equal text_config.hidden_size (" + str(t.hidden_size) + ")");
  need(v.hidden_act == "gelu_pytorch_tanh",
       "vision_config.hidden_act '" + v.hidden_act + "' is not supported (only gelu_pytorch_tanh)");

  // --- text
  positive(t.vocab_size, "text_config.vocab_size");
  positive(t.hidden_size, "text_config.hidden_size");
  positive(t.intermediate_size, "text_config.intermediate_size");
  positive(t.num_hidden_layers, "text_config.num_hidden_layers");
  positive(t.num_attention_heads, "text_config.num_attention_heads");
  positive(t.num_key_value_heads, "text_config.num_key_value_heads");
  positive(t.head_dim, "text_config.head_dim");
  positive(t.max_position_embeddings, "text_config.max_position_embeddings");
  need(t.rms_norm_eps > 0, "text_config.rms_norm_eps must be positive");
  need(t.rope_theta > 0, "text_config rope_theta must be positive");
  if (t.num_attention_heads > 0 && t.num_key_value_heads > 0)
    need(t.num_attention_heads % t.num_key_value_heads == 0,
         "text_config.num_attention_heads (" + str(t.num_attention_heads) +
             ") must be divisible by text_config.num_key_value_heads (" + str(t.num_key_value_heads) + ")");
  need(t.head_dim % 2 == 0, "text_config.head_dim must be even, got " + str(t.head_dim));
  need(t.mrope_section.size() == 3,
       "text_config mrope_section must have 3 entries (t, h, w), got " + std::to_string(t.mrope_section.size()));
  if (t.mrope_section.size() == 3) {
    int sum = 0;
    bool nonneg = true;
    for (int s : t.mrope_section) {
      sum += s;
      nonneg = nonneg && s >= 0;
    }
    need(nonneg, "text_config mrope_section entries must be non-negative");
    need(sum * 2 == t.head_dim, "sum(mrope_section) = " + str(sum) + " must equal head_dim/2 = " +
                                    (t.head_dim % 2 ? std::to_string(t.head_dim / 2.0) : str(t.head_dim / 2)));
    // Interleaved layout: H takes frequencies 1,4,7,..., W 2,5,8,...; both must fit.
    need(3 * t.mrope_section[1] <= t.head_dim / 2 + 1 && 3 * t.mrope_section[2] <= t.head_dim / 2,
         "text_config mrope_section h/w parts (" + str(t.mrope_section[1]) + ", " + str(t.mrope_section[2]) +
             ") do not fit the interleaved layout of head_dim/2 = " + str(t.head_dim / 2) + " frequencies");
  }
  need(t.rope_type == "default", "text_config rope_type '" + t.rope_type + "' is not supported (only default)");
  need(t.hidden_act == "silu", "text_config.hidden_act '" + t.hidden_act + "' is not supported (only silu)");
  need(!t.attention_bias, "text_config.attention_bias = true is not supported (Qwen3-VL has no attention bias)");
  need(t.tie_word_embeddings == tie_word_embeddings,
       "tie_word_embeddings differs between the top level and text_config");

  // --- special ids
  auto id_ok = [&](int id, const std::string& field) {
    need(id >= 0 && id < t.vocab_size, field + " = " + str(id) + " is outside [0, vocab_size=" + str(t.vocab_size) + ")");
  };
  id_ok(image_token_id, "image_token_id");
  id_ok(video_token_id, "video_token_id");
  id_ok(vision_start_token_id, "vision_start_token_id");
  id_ok(vision_end_token_id, "vision_end_token_id");
  id_ok(t.bos_token_id, "text_config.bos_token_id");
  for (size_t i = 0; i < t.eos_token_id.size(); ++i)
    id_ok(t.eos_token_id[i], "text_config.eos_token_id[" + std::to_string(i) + "]");
  need(dtype == "bfloat16" || dtype == "float16" || dtype == "float32",
       "dtype '" + dtype + "' must be bfloat16, float16 or float32");
  return bad;
}

void Qwen3VLConfig::validate_or_throw() const {
  auto bad = validate();
  if (bad.empty()) return;
  std::string msg = "config.json: invalid configuration (" + std::to_string(bad.size()) + " problem" +
                    (bad.size() > 1 ? "s" : "") + "):";
  for (auto& b : bad) msg += "\n  - " + b;
  throw Error(msg);
}

}  // namespace qwen3vl

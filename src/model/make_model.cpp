#include "model/make_model.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/hash.h"
#include "core/safetensors.h"
#include "chat/templates.h"
#include "model/presets.h"
#include "model/weight_names.h"

namespace qwen3vl {

namespace fs = std::filesystem;
using nlohmann::json;
using ojson = nlohmann::ordered_json;

// ---------------------------------------------------------------------------------------------
// Argument parsing
// ---------------------------------------------------------------------------------------------

uint64_t parse_size(const std::string& s) {
  size_t i = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
  QWEN3VL_CHECK(i > 0, "invalid size '" + s + "' (expected e.g. 5GB, 500MB, 64KiB or a byte count)");
  size_t frac_end = i;
  if (frac_end < s.size() && s[frac_end] == '.') {
    ++frac_end;
    while (frac_end < s.size() && std::isdigit(static_cast<unsigned char>(s[frac_end]))) ++frac_end;
  }
  std::string num = s.substr(0, frac_end), unit = s.substr(frac_end);
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  double mult = 0;
  if (unit.empty() || unit == "B") mult = 1;
  else if (unit == "KB") mult = 1e3;
  else if (unit == "MB") mult = 1e6;
  else if (unit == "GB") mult = 1e9;
  else if (unit == "TB") mult = 1e12;
  else if (unit == "KIB") mult = 1024.0;
  else if (unit == "MIB") mult = 1024.0 * 1024;
  else if (unit == "GIB") mult = 1024.0 * 1024 * 1024;
  else throw Error("invalid size '" + s + "': unknown unit '" + s.substr(frac_end) + "' (B, KB, MB, GB, TB, KiB, MiB, GiB)");
  if (num.find('.') == std::string::npos) return std::stoull(num) * static_cast<uint64_t>(mult);
  return static_cast<uint64_t>(std::stod(num) * mult);
}

static DType parse_dtype(const std::string& s) {
  if (s == "bf16" || s == "bfloat16" || s == "BF16") return DType::BF16;
  if (s == "f16" || s == "float16" || s == "fp16" || s == "F16") return DType::F16;
  if (s == "f32" || s == "float32" || s == "fp32" || s == "F32") return DType::F32;
  throw Error("--dtype: unknown dtype '" + s + "' (bf16, f16 or f32)");
}

MakeModelOptions parse_make_model_args(const std::vector<std::string>& args) {
  MakeModelOptions o;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i], val;
    bool has_val = false;
    if (auto eq = a.find('='); a.rfind("--", 0) == 0 && eq != std::string::npos) {
      val = a.substr(eq + 1);
      a = a.substr(0, eq);
      has_val = true;
    }
    auto value = [&]() -> std::string {
      if (has_val) return val;
      QWEN3VL_CHECK(i + 1 < args.size(), "make-model: flag " + a + " needs a value");
      return args[++i];
    };
    if (a == "--preset") {
      o.preset = value();
    } else if (a == "--out" || a == "-o") {
      o.out = value();
    } else if (a == "--dtype") {
      o.dtype = parse_dtype(value());
    } else if (a == "--seed") {
      std::string v = value();
      char* end = nullptr;
      errno = 0;
      unsigned long long x = std::strtoull(v.c_str(), &end, 10);
      QWEN3VL_CHECK(!v.empty() && v[0] != '-' && end && *end == 0 && errno == 0,
                    "make-model: --seed: not a non-negative integer: '" + v + "'");
      o.seed = x;
    } else if (a == "--init-std") {
      std::string v = value();
      char* end = nullptr;
      double x = std::strtod(v.c_str(), &end);
      QWEN3VL_CHECK(!v.empty() && end && *end == 0 && std::isfinite(x) && x >= 0 && x <= 100,
                    "make-model: --init-std: expected a number in [0, 100], got '" + v + "'");
      o.init_std = x;
    } else if (a == "--tokenizer") {
      o.tokenizer_dir = value();
    } else if (a == "--no-tokenizer") {
      QWEN3VL_CHECK(!has_val, "make-model: --no-tokenizer takes no value");
      o.write_tokenizer = false;
    } else if (a == "--shard-size" || a == "--max-shard-size") {
      o.shard_size = parse_size(value());
    } else {
      throw Error("make-model: unknown argument '" + args[i] + "'");
    }
  }
  preset_config(o.preset);  // validate the name early
  return o;
}

MakeModelOptions parse_make_model_args(const std::string& args) {
  std::istringstream ss(args);
  std::vector<std::string> v;
  for (std::string w; ss >> w;) v.push_back(w);
  return parse_make_model_args(v);
}

// ---------------------------------------------------------------------------------------------
// Deterministic values
// ---------------------------------------------------------------------------------------------

namespace {

constexpr uint64_t kGamma = 0x9e3779b97f4a7c15ull;

inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t tensor_key(uint64_t seed, const std::string& name) {
  return fnv1a64(name.data(), name.size(), mix64(seed + kGamma));
}

struct ValueGen {
  uint64_t key;
  bool is_norm;
  float a;  // amplitude
  // u in [-1, 1): exact in float (24-bit integer times a power of two).
  inline float at(uint64_t i) const {
    uint64_t r = mix64(key + (i + 1) * kGamma);
    int32_t k = static_cast<int32_t>(r >> 40) - (1 << 23);
    float u = static_cast<float>(k) * (1.0f / 8388608.0f);
    return is_norm ? 1.0f + u * 0.125f : u * a;
  }
};

float amplitude(double init_std) { return static_cast<float>(init_std * std::sqrt(3.0)); }

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw Error(p.string() + ": cannot open");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  if (!f) throw Error(p.string() + ": cannot create: " + std::strerror(errno));
  f << text;
  f.close();
  if (!f) throw Error(p.string() + ": write failed");
}

// HF writes JSON with indent=2 (+ a trailing newline for config.json / generation_config.json).
void write_json(const fs::path& p, const json& j) { write_text(p, j.dump(2) + "\n"); }
void write_ojson(const fs::path& p, const ojson& j) { write_text(p, j.dump(2) + "\n"); }

const char* torch_dtype_name(DType t) {
  switch (t) {
    case DType::BF16: return "bfloat16";
    case DType::F16: return "float16";
    case DType::F32: return "float32";
    default: throw Error("make-model: dtype must be bf16, f16 or f32");
  }
}

}  // namespace

float make_model_value(uint64_t seed, const std::string& name, bool is_norm, double init_std, uint64_t i) {
  ValueGen g{tensor_key(seed, name), is_norm, amplitude(init_std)};
  return g.at(i);
}

fs::path default_tokenizer_dir() {
  auto ok = [](const fs::path& p) {
    std::error_code ec;
    return fs::is_regular_file(p / "tokenizer.json", ec);
  };
  if (const char* env = std::getenv("QWEN3VL_SHARED_DIR"); env && *env) {
    fs::path p = fs::path(env) / "data" / "qwen3-tokenizer";
    if (ok(p)) return p;
  }
  std::error_code ec;
  fs::path cwd = fs::current_path(ec);
  if (!ec && ok(cwd / ".." / "shared" / "data" / "qwen3-tokenizer"))
    return fs::weakly_canonical(cwd / ".." / "shared" / "data" / "qwen3-tokenizer", ec);
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (fs::path d = exe.parent_path(); !d.empty() && d != d.root_path(); d = d.parent_path()) {
      fs::path p = d.parent_path() / "shared" / "data" / "qwen3-tokenizer";
      if (ok(p)) return p;
    }
  }
  return {};
}

std::string checkpoint_fnv1a64(const fs::path& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (auto& e : fs::directory_iterator(dir, ec)) {
    std::string n = e.path().filename().string();
    if (e.is_regular_file() && n.size() > 12 && n.compare(n.size() - 12, 12, ".safetensors") == 0) names.push_back(n);
  }
  if (ec) throw Error(dir.string() + ": cannot list directory: " + ec.message());
  std::sort(names.begin(), names.end());
  uint64_t h = kFnv1a64Offset;
  for (auto& n : names) h = fnv1a64_file(dir / n, h);
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

// ---------------------------------------------------------------------------------------------
// make_model
// ---------------------------------------------------------------------------------------------

MakeModelResult make_model(const MakeModelOptions& opts) {
  QWEN3VL_CHECK(!opts.out.empty(), "make-model: --out DIR is required");
  QWEN3VL_CHECK(opts.dtype == DType::BF16 || opts.dtype == DType::F16 || opts.dtype == DType::F32,
                "make-model: dtype must be bf16, f16 or f32");
  Qwen3VLConfig cfg = opts.config ? *opts.config : preset_config(opts.preset);
  cfg.dtype = torch_dtype_name(opts.dtype);
  cfg.validate_or_throw();

  const fs::path dir = opts.out;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error(dir.string() + ": cannot create directory: " + ec.message());

  // Remove weight files of an earlier run so shards of different layouts never mix.
  for (auto& e : fs::directory_iterator(dir, ec)) {
    std::string n = e.path().filename().string();
    bool weights = n == "model.safetensors" || n == "model.safetensors.index.json" ||
                   (n.rfind("model-", 0) == 0 && n.size() > 12 && n.compare(n.size() - 12, 12, ".safetensors") == 0);
    if (weights && e.is_regular_file()) fs::remove(e.path());
  }

  // --- shard plan (huggingface_hub split_state_dict_into_shards: greedy in state_dict order)
  const std::vector<WeightSpec> specs = expected_weights(cfg);
  const size_t esize = dtype_size(opts.dtype);
  std::vector<std::vector<size_t>> shards;
  {
    std::vector<size_t> cur;
    uint64_t cur_size = 0;
    for (size_t k = 0; k < specs.size(); ++k) {
      uint64_t sz = static_cast<uint64_t>(shape_numel(specs[k].shape)) * esize;
      if (opts.shard_size > 0 && sz > opts.shard_size) {
        shards.push_back({k});
        continue;
      }
      if (opts.shard_size > 0 && cur_size + sz > opts.shard_size && !cur.empty()) {
        shards.push_back(std::move(cur));
        cur.clear();
        cur_size = 0;
      }
      cur.push_back(k);
      cur_size += sz;
    }
    if (!cur.empty()) shards.push_back(std::move(cur));
  }

  MakeModelResult res;
  res.dir = dir;
  const float amp = amplitude(opts.init_std);
  const size_t n_shards = shards.size();
  json weight_map = json::object();
  constexpr size_t kChunk = size_t{1} << 18;  // elements per chunk
  std::vector<float> fbuf(kChunk);
  std::vector<uint16_t> hbuf(kChunk);

  for (size_t s = 0; s < n_shards; ++s) {
    std::string fname = "model.safetensors";
    if (n_shards > 1) {
      char b[64];
      std::snprintf(b, sizeof b, "model-%05zu-of-%05zu.safetensors", s + 1, n_shards);
      fname = b;
    }
    SafetensorsWriter w;
    w.set_metadata({{"format", "pt"}});
    std::map<std::string, const WeightSpec*> by_name;
    for (size_t k : shards[s]) {
      w.add(specs[k].name, opts.dtype, specs[k].shape);
      by_name[specs[k].name] = &specs[k];
      weight_map[specs[k].name] = fname;
    }
    if (!opts.quiet) std::fprintf(stderr, "make-model: writing %s (%zu tensors)\n", (dir / fname).c_str(), shards[s].size());
    w.write(dir / fname, [&](const TensorInfo& ti, const SafetensorsWriter::Sink& sink) {
      const WeightSpec& spec = *by_name.at(ti.name);
      ValueGen g{tensor_key(opts.seed, spec.name), spec.init == WeightInit::Norm, amp};
      const uint64_t n = static_cast<uint64_t>(shape_numel(spec.shape));
      for (uint64_t base = 0; base < n; base += kChunk) {
        const size_t m = static_cast<size_t>(std::min<uint64_t>(kChunk, n - base));
        for (size_t i = 0; i < m; ++i) fbuf[i] = g.at(base + i);
        if (opts.dtype == DType::F32) {
          sink(fbuf.data(), m * 4);
        } else {
          if (opts.dtype == DType::BF16)
            for (size_t i = 0; i < m; ++i) hbuf[i] = f32_to_bf16(fbuf[i]);
          else
            for (size_t i = 0; i < m; ++i) hbuf[i] = f32_to_f16(fbuf[i]);
          sink(hbuf.data(), m * 2);
        }
      }
    });
    res.weight_files.push_back(fname);
    res.data_bytes += w.data_bytes();
  }
  for (auto& s : specs) res.num_parameters += shape_numel(s.shape);

  if (n_shards > 1) {
    json index = {{"metadata", {{"total_parameters", res.num_parameters}, {"total_size", res.data_bytes}}},
                  {"weight_map", weight_map}};
    write_json(dir / "model.safetensors.index.json", index);
  }

  // --- config.json, generation_config.json
  write_json(dir / "config.json", cfg.to_json());
  {
    json g = {{"bos_token_id", 151643},
              {"do_sample", true},
              {"eos_token_id", {151645, 151643}},
              {"pad_token_id", 151643},
              {"repetition_penalty", 1.0},
              {"temperature", 0.7},
              {"top_k", 20},
              {"top_p", 0.8},
              {"transformers_version", "4.57.0.dev0"}};
    write_json(dir / "generation_config.json", g);
  }
  // --- preprocessor_config.json (spec §6.1), video_preprocessor_config.json (§6.6)
  {
    const auto& v = cfg.vision_config;
    json p = {{"size", {{"longest_edge", 16777216}, {"shortest_edge", 65536}}},
              {"patch_size", v.patch_size},
              {"temporal_patch_size", v.temporal_patch_size},
              {"merge_size", v.spatial_merge_size},
              {"image_mean", {0.5, 0.5, 0.5}},
              {"image_std", {0.5, 0.5, 0.5}},
              {"processor_class", "Qwen3VLProcessor"},
              {"image_processor_type", "Qwen2VLImageProcessorFast"}};
    write_json(dir / "preprocessor_config.json", p);
    json vp = {{"size", {{"longest_edge", 25165824}, {"shortest_edge", 4096}}},
               {"patch_size", v.patch_size},
               {"temporal_patch_size", v.temporal_patch_size},
               {"merge_size", v.spatial_merge_size},
               {"image_mean", {0.5, 0.5, 0.5}},
               {"image_std", {0.5, 0.5, 0.5}},
               {"processor_class", "Qwen3VLProcessor"},
               {"video_processor_type", "Qwen3VLVideoProcessor"}};
    write_json(dir / "video_preprocessor_config.json", vp);
  }
  // --- chat template (also inside tokenizer_config.json below)
  write_json(dir / "chat_template.json", json{{"chat_template", chat::kQwen3VLInstructTemplate}});
  // --- tokenizer
  if (opts.write_tokenizer) {
    fs::path tok = opts.tokenizer_dir.empty() ? default_tokenizer_dir() : opts.tokenizer_dir;
    if (tok.empty()) {
      if (!opts.quiet)
        std::fprintf(stderr,
                     "make-model: warning: no tokenizer found (pass --tokenizer DIR); tokenizer files not written\n");
    } else {
      QWEN3VL_CHECK(fs::is_regular_file(tok / "tokenizer.json"),
                    "make-model: --tokenizer " + tok.string() + ": no tokenizer.json there");
      QWEN3VL_CHECK(fs::is_regular_file(tok / "tokenizer_config.json"),
                    "make-model: --tokenizer " + tok.string() + ": no tokenizer_config.json there");
      fs::copy_file(tok / "tokenizer.json", dir / "tokenizer.json", fs::copy_options::overwrite_existing, ec);
      if (ec) throw Error((dir / "tokenizer.json").string() + ": cannot copy: " + ec.message());
      ojson tc;
      try {
        tc = ojson::parse(read_file(tok / "tokenizer_config.json"));
      } catch (const ojson::parse_error& e) {
        throw Error((tok / "tokenizer_config.json").string() + ": malformed JSON: " + e.what());
      }
      tc["chat_template"] = chat::kQwen3VLInstructTemplate;
      tc["model_max_length"] = 262144;
      write_ojson(dir / "tokenizer_config.json", tc);
      res.wrote_tokenizer = true;
    }
  }
  return res;
}

}  // namespace qwen3vl

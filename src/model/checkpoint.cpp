#include "model/checkpoint.h"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/safetensors.h"
#include "model/weight_names.h"

namespace qwen3vl {

namespace fs = std::filesystem;

namespace {

bool is_float(DType t) { return t == DType::F32 || t == DType::BF16 || t == DType::F16; }

[[noreturn]] void fail(const fs::path& dir, const std::vector<std::string>& problems) {
  std::string msg = "checkpoint '" + dir.string() + "': ";
  if (problems.size() == 1) {
    msg += problems[0];
  } else {
    msg += std::to_string(problems.size()) + " problems:";
    const size_t show = 40;
    for (size_t i = 0; i < problems.size() && i < show; ++i) msg += "\n  - " + problems[i];
    if (problems.size() > show) msg += "\n  ... and " + std::to_string(problems.size() - show) + " more";
  }
  throw Error(msg);
}

}  // namespace

Checkpoint Checkpoint::load(const fs::path& dir, const LoadOptions& opts) {
  Checkpoint ck;
  ck.dir_ = dir;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw Error("checkpoint '" + dir.string() + "': not a directory");
  const fs::path cfg_path = dir / "config.json";
  if (!fs::is_regular_file(cfg_path, ec)) throw Error("checkpoint '" + dir.string() + "': config.json not found");
  ck.config_ = Qwen3VLConfig::load(cfg_path);
  {
    auto bad = ck.config_.validate();
    if (!bad.empty()) {
      std::string msg = cfg_path.string() + ": invalid configuration:";
      for (auto& b : bad) msg += "\n  - " + b;
      throw Error(msg);
    }
  }

  // --- locate the tensors: name -> (file index)
  std::vector<std::string> problems;
  std::map<std::string, size_t> where;  // tensor -> index into files_
  const fs::path index_path = dir / "model.safetensors.index.json";
  const fs::path single_path = dir / "model.safetensors";
  if (fs::exists(index_path, ec)) {
    nlohmann::json index;
    {
      std::ifstream f(index_path, std::ios::binary);
      if (!f) throw Error(index_path.string() + ": cannot open");
      std::stringstream ss;
      ss << f.rdbuf();
      try {
        index = nlohmann::json::parse(ss.str());
      } catch (const nlohmann::json::parse_error& e) {
        throw Error(index_path.string() + ": malformed JSON: " + e.what());
      }
    }
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
      throw Error(index_path.string() + ": expected an object with a \"weight_map\" object");
    std::map<std::string, std::string> wm;  // tensor -> shard file name
    for (auto& [name, file] : index["weight_map"].items()) {
      if (!file.is_string()) throw Error(index_path.string() + ": weight_map[\"" + name + "\"] is not a file name");
      std::string fname = file.get<std::string>();
      if (fname.empty() || fname.find('/') != std::string::npos || fname.find('\\') != std::string::npos ||
          fname == "." || fname == "..")
        throw Error(index_path.string() + ": weight_map[\"" + name + "\"] = \"" + fname +
                    "\" is not a file name in the checkpoint folder");
      wm[name] = fname;
    }
    std::map<std::string, size_t> shard_idx;
    std::vector<std::string> missing_shards;
    for (auto& [name, fname] : wm) {
      if (shard_idx.count(fname)) continue;
      if (std::find(missing_shards.begin(), missing_shards.end(), fname) != missing_shards.end()) continue;
      if (!fs::is_regular_file(dir / fname, ec)) {
        missing_shards.push_back(fname);
        continue;
      }
      shard_idx[fname] = ck.files_.size();
      ck.files_.push_back(SafetensorsFile::open(dir / fname));
    }
    for (auto& s : missing_shards)
      problems.push_back(index_path.filename().string() + " names shard '" + s + "' (e.g. for tensor '" +
                         [&] {
                           for (auto& [n, f] : wm)
                             if (f == s) return n;
                           return std::string();
                         }() +
                         "'), which does not exist in the folder");
    if (!problems.empty()) fail(dir, problems);
    for (auto& [name, fname] : wm) {
      size_t fi = shard_idx.at(fname);
      if (!ck.files_[fi]->has(name))
        problems.push_back(index_path.filename().string() + " says tensor '" + name + "' is in '" + fname +
                           "', but that file has no such tensor");
      else
        where[name] = fi;
    }
    for (size_t fi = 0; fi < ck.files_.size(); ++fi)
      for (auto& info : ck.files_[fi]->infos())
        if (!wm.count(info.name))
          problems.push_back("tensor '" + info.name + "' in '" + ck.files_[fi]->path().filename().string() +
                             "' is not listed in " + index_path.filename().string());
  } else if (fs::exists(single_path, ec)) {
    ck.files_.push_back(SafetensorsFile::open(single_path));
    for (auto& info : ck.files_[0]->infos()) where[info.name] = 0;
  } else {
    throw Error("checkpoint '" + dir.string() + "': neither model.safetensors nor model.safetensors.index.json found");
  }

  auto file_name = [&](size_t fi) { return ck.files_[fi]->path().filename().string(); };
  const bool tied = ck.config_.tie_word_embeddings;

  // --- block-quantized tensors stored by `qwen3vl quantize`: U8 storage described by the
  // "qwen3vl.quant" metadata of their file (model/quantize.h).
  std::map<std::string, StoredQuantInfo> stored;
  std::set<std::string> bad_stored;  // reported already: no further checks
  for (size_t fi = 0; fi < ck.files_.size(); ++fi) {
    const auto& md = ck.files_[fi]->metadata();
    auto m = md.find(kQuantMetadataKey);
    if (m == md.end()) continue;
    const std::string fname = file_name(fi);
    for (auto& [name, q] : parse_quant_metadata(m->second, "checkpoint '" + dir.string() + "', '" + fname + "'")) {
      auto w = where.find(name);
      if (!ck.files_[fi]->has(name) || w == where.end() || w->second != fi) {
        problems.push_back("metadata \"" + kQuantMetadataKey + "\" of '" + fname + "' describes tensor '" + name +
                           "', which is not in that file");
        continue;
      }
      const TensorInfo& info = ck.files_[fi]->info(name);
      const Shape want = quant_storage_shape(q.dtype, q.shape);
      if (info.dtype != DType::U8 || info.shape != want) {
        problems.push_back("tensor '" + name + "' in '" + fname + "' is stored as " + dtype_name(info.dtype) +
                           shape_str(info.shape) + " (" + std::to_string(info.end - info.begin) +
                           " bytes), but its \"" + kQuantMetadataKey + "\" entry " + dtype_name(q.dtype) +
                           shape_str(q.shape) + " needs U8" + shape_str(want) + " (" +
                           std::to_string(dtype_nbytes(q.dtype, shape_numel(q.shape))) + " bytes)");
        bad_stored.insert(name);
        continue;
      }
      stored[name] = q;
    }
  }

  // --- verify against the registry
  if (opts.verify) {
    std::set<std::string> expected_names;
    std::vector<std::string> missing;
    for (const WeightSpec& w : expected_weights(ck.config_)) {
      expected_names.insert(w.name);
      auto it = where.find(w.name);
      if (it == where.end()) {
        missing.push_back(w.name);
        continue;
      }
      if (bad_stored.count(w.name)) continue;
      const TensorInfo& info = ck.files_[it->second]->info(w.name);
      auto sq = stored.find(w.name);
      const Shape& shape = sq != stored.end() ? sq->second.shape : info.shape;  // logical shape
      if (shape != w.shape)
        problems.push_back("tensor '" + w.name + "' in '" + file_name(it->second) + "' has shape " +
                           shape_str(shape) + ", expected " + shape_str(w.shape) + " from config.json");
      if (sq != stored.end()) {
        if (!quantizable_weight(w.name, ck.config_))
          problems.push_back("tensor '" + w.name + "' in '" + file_name(it->second) + "' is stored as " +
                             dtype_name(sq->second.dtype) + ", but it is not a weight that may be block-quantized");
      } else if (!is_float(info.dtype)) {
        problems.push_back("tensor '" + w.name + "' in '" + file_name(it->second) + "' has dtype " +
                           dtype_name(info.dtype) + ", expected a float dtype (F32, BF16 or F16)");
      }
    }
    if (!missing.empty()) {
      std::string m = std::to_string(missing.size()) + " expected tensor" + (missing.size() > 1 ? "s" : "") +
                      " missing from " + (ck.files_.size() > 1 ? "the shards" : "'model.safetensors'") + ": ";
      for (size_t i = 0; i < missing.size() && i < 20; ++i) m += (i ? ", " : "") + ("'" + missing[i] + "'");
      if (missing.size() > 20) m += ", ... (" + std::to_string(missing.size() - 20) + " more)";
      problems.insert(problems.begin(), m);
    }
    for (auto& [name, fi] : where) {
      if (expected_names.count(name)) continue;
      if (name == weight_names::kLmHead && tied) {
        // Accepted in a tied checkpoint (HF ties it to the embedding on load); must still fit.
        const TensorInfo& info = ck.files_[fi]->info(name);
        Shape want{ck.config_.text_config.vocab_size, ck.config_.text_config.hidden_size};
        const Shape& shape = stored.count(name) ? stored.at(name).shape : info.shape;
        if (shape != want)
          problems.push_back("tensor 'lm_head.weight' in '" + file_name(fi) + "' has shape " + shape_str(shape) +
                             ", expected " + shape_str(want));
        continue;
      }
      if (is_ignored_weight(name, ck.config_)) continue;
      problems.push_back("unexpected tensor '" + name + "' in '" + file_name(fi) +
                         "' (not part of a Qwen3-VL model with this config.json)");
    }
  }
  if (!problems.empty()) fail(dir, problems);

  for (auto& [name, fi] : where) {
    if (tied && name == weight_names::kLmHead) continue;  // resolved to the embedding by get()
    auto sq = stored.find(name);
    if (sq != stored.end()) {
      // Zero-copy view of the block bytes with the logical shape and block dtype.
      const Tensor u8 = ck.files_[fi]->get(name);
      Tensor q = Tensor::view(u8.raw(), sq->second.shape, sq->second.dtype, std::shared_ptr<const void>(ck.files_[fi]));
      // Blocks start with an f16 scale: a tensor at an odd address (possible only in files not
      // written by `qwen3vl quantize`) is read as an aligned copy.
      if (reinterpret_cast<uintptr_t>(u8.raw()) % 2 != 0) q = q.clone();
      if (!sq->second.interleaved) q = quant_from_plain_blocks(q);  // metadata version 1
      ck.tensors_.emplace(name, std::move(q));
      ck.source_dtype_[name] = sq->second.source;
    } else {
      ck.tensors_.emplace(name, ck.files_[fi]->get(name));
    }
    ck.file_of_[name] = file_name(fi);
  }

  // --- quantization at load
  if (opts.quant.any()) {
    std::vector<std::string> conflicts;
    for (auto& [name, target] : quant_plan(ck.config_, opts.quant)) {
      auto it = ck.tensors_.find(name);
      if (it == ck.tensors_.end()) continue;  // only without verification
      Tensor& t = it->second;
      if (t.dtype() == target) continue;  // stored that way
      if (dtype_is_quantized(t.dtype())) {
        conflicts.push_back("'" + name + "' is stored as " + dtype_name(t.dtype()) + ", the mode asks for " +
                            dtype_name(target));
        continue;
      }
      if (!is_float(t.dtype()) || t.dim() != 2 || t.size(1) % kQuantBlockSize != 0)
        throw Error("checkpoint '" + dir.string() + "': cannot quantize tensor '" + name + "' " + t.str());
      Tensor q = quantize_weight(t, target, opts.threads);
      ck.source_dtype_[name] = t.dtype();
      ck.release_pages(t);  // the float pages were read once; drop them from the process
      t = std::move(q);
      ck.quantized_at_load_[name] = true;
    }
    if (!conflicts.empty())
      throw Error("checkpoint '" + dir.string() + "' is stored quantized differently from --quant " +
                  quant_mode_name(opts.quant.text) + " / --quant-vision " + quant_mode_name(opts.quant.vision) + ": " +
                  conflicts[0] + (conflicts.size() > 1 ? " (and " + std::to_string(conflicts.size() - 1) + " more)" : "") +
                  ". Quantized weights are not re-quantized (that would round twice): load this folder without "
                  "--quant (weights as stored) or quantize the original float checkpoint");
  }
  return ck;
}

DType Checkpoint::source_dtype(const std::string& name) const {
  const std::string& n =
      (name == weight_names::kLmHead && config_.tie_word_embeddings && !tensors_.count(name)) ? weight_names::kEmbedTokens
                                                                                             : name;
  auto s = source_dtype_.find(n);
  if (s != source_dtype_.end()) return s->second;
  return get(n).dtype();
}

bool Checkpoint::quantized_at_load(const std::string& name) const {
  const std::string& n =
      (name == weight_names::kLmHead && config_.tie_word_embeddings && !tensors_.count(name)) ? weight_names::kEmbedTokens
                                                                                             : name;
  auto it = quantized_at_load_.find(n);
  return it != quantized_at_load_.end() && it->second;
}

void Checkpoint::replace_tensor(const std::string& name, Tensor t) {
  const std::string& n =
      (name == weight_names::kLmHead && config_.tie_word_embeddings && !tensors_.count(name)) ? weight_names::kEmbedTokens
                                                                                             : name;
  auto it = tensors_.find(n);
  if (it == tensors_.end()) throw Error("checkpoint '" + dir_.string() + "': no tensor named '" + name + "' to replace");
  QWEN3VL_CHECK(t.defined() && t.shape() == it->second.shape(),
                "checkpoint: replacement for '" + name + "' is " + (t.defined() ? t.str() : std::string("empty")) +
                    ", expected shape " + shape_str(it->second.shape()));
  if (!dtype_is_quantized(t.dtype())) {
    source_dtype_.erase(n);
    quantized_at_load_.erase(n);
  }
  it->second = std::move(t);
}

void Checkpoint::release_all_pages() const {
  for (auto& f : files_) f->release_all_pages();
}

void Checkpoint::release_pages(const void* p, size_t bytes) const {
  for (auto& f : files_) f->release_pages(p, bytes);
}

const Tensor& Checkpoint::get(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it != tensors_.end()) return it->second;
  if (name == weight_names::kLmHead && config_.tie_word_embeddings) {
    auto e = tensors_.find(weight_names::kEmbedTokens);
    if (e != tensors_.end()) return e->second;
  }
  throw Error("checkpoint '" + dir_.string() + "': no tensor named '" + name + "'");
}

bool Checkpoint::has(const std::string& name) const {
  if (tensors_.count(name)) return true;
  return name == weight_names::kLmHead && config_.tie_word_embeddings && tensors_.count(weight_names::kEmbedTokens);
}

std::string Checkpoint::file_of(const std::string& name) const {
  auto it = file_of_.find(name);
  if (it != file_of_.end()) return it->second;
  if (name == weight_names::kLmHead && config_.tie_word_embeddings) return file_of(weight_names::kEmbedTokens);
  throw Error("checkpoint '" + dir_.string() + "': no tensor named '" + name + "'");
}

std::string weight_format_summary(const Checkpoint& ck) {
  using namespace weight_names;
  auto dt = [&](const std::string& n) { return ck.has(n) ? std::string(dtype_name(ck.get(n).dtype())) : std::string("?"); };
  const std::string text = dt(text_layer(0) + "mlp.up_proj.weight");
  std::vector<std::string> extra;
  const std::string embed = dt(kEmbedTokens);
  const bool tied = ck.config().tie_word_embeddings;
  if (embed != text) extra.push_back((tied ? "embed_tokens/lm_head " : "embed_tokens ") + embed);
  if (!tied && dt(kLmHead) != text) extra.push_back("lm_head " + dt(kLmHead));
  if (ck.config().vision_config.depth > 0) {
    const std::string vis = dt(vision_block(0) + "attn.qkv.weight");
    if (vis != text) extra.push_back("vision " + vis);
  }
  std::string s = text;
  for (size_t i = 0; i < extra.size(); ++i) s += (i ? ", " : " (") + extra[i];
  if (!extra.empty()) s += ")";
  return s;
}

}  // namespace qwen3vl

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
      const TensorInfo& info = ck.files_[it->second]->info(w.name);
      if (info.shape != w.shape)
        problems.push_back("tensor '" + w.name + "' in '" + file_name(it->second) + "' has shape " +
                           shape_str(info.shape) + ", expected " + shape_str(w.shape) + " from config.json");
      if (!is_float(info.dtype))
        problems.push_back("tensor '" + w.name + "' in '" + file_name(it->second) + "' has dtype " +
                           dtype_name(info.dtype) + ", expected a float dtype (F32, BF16 or F16)");
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
        if (info.shape != want)
          problems.push_back("tensor 'lm_head.weight' in '" + file_name(fi) + "' has shape " + shape_str(info.shape) +
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
    ck.tensors_.emplace(name, ck.files_[fi]->get(name));
    ck.file_of_[name] = file_name(fi);
  }
  return ck;
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

}  // namespace qwen3vl

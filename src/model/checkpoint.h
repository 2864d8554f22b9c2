// A loaded HF checkpoint folder: config.json + safetensors shard(s), every tensor checked
// against the expected-name registry (model/weight_names.h) at load time.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "model/config.h"

namespace qwen3vl {

class SafetensorsFile;

struct LoadOptions {
  bool verify = true;  // check names/shapes/dtypes against the registry
};

class Checkpoint {
 public:
  static Checkpoint load(const std::filesystem::path& dir, const LoadOptions& opts = {});

  const std::filesystem::path& dir() const { return dir_; }
  const Qwen3VLConfig& config() const { return config_; }

  // The tensor with this HF name (zero-copy view of the mmap'd file, dtype as stored).
  // For tied checkpoints "lm_head.weight" resolves to the embedding. Throws naming the tensor.
  const Tensor& get(const std::string& name) const;
  bool has(const std::string& name) const;
  const std::map<std::string, Tensor>& tensors() const { return tensors_; }
  // Which shard file holds a tensor (for error messages and inspect).
  std::string file_of(const std::string& name) const;

 private:
  std::filesystem::path dir_;
  Qwen3VLConfig config_;
  std::map<std::string, Tensor> tensors_;
  std::map<std::string, std::string> file_of_;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
};

}  // namespace qwen3vl

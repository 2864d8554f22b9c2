// A loaded HF checkpoint folder: config.json + safetensors shard(s), every tensor checked
// against the expected-name registry (model/weight_names.h) at load time.
//
// Block-quantized weights (model/quantize.h): a folder written by `qwen3vl quantize` stores them
// as U8 tensors described by the "qwen3vl.quant" metadata; they load as zero-copy Q8_0 / Q4_0
// views with their logical shape. LoadOptions::quant quantizes float weights at load (owned
// tensors; the mapped float pages of those tensors are released afterwards).
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "model/config.h"
#include "model/quantize.h"

namespace qwen3vl {

class SafetensorsFile;

struct LoadOptions {
  bool verify = true;  // check names/shapes/dtypes against the registry
  // Quantize float weights at load (see quant_plan). Weights stored quantized stay as they are
  // when their dtype is the one asked for (or when the mode is none); a stored quantized weight
  // that the mode would give another block dtype is an Error (no re-quantization).
  QuantOptions quant;
  int threads = 0;  // quantization threads (<= 0: kernels::num_threads())
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
  // The float dtype a tensor had in the HF checkpoint: its dtype, or for a quantized tensor the
  // dtype it was quantized from (e.g. BF16). Resolves the tied lm_head like get().
  DType source_dtype(const std::string& name) const;
  // True for tensors quantized by this load (owned), false for tensors as stored (mapped).
  bool quantized_at_load(const std::string& name) const;
  // Replaces tensor `name` (same shape; any dtype the model accepts), e.g. weights dequantized
  // or merged by a tool or a test. Throws Error for an unknown name or another shape.
  void replace_tensor(const std::string& name, Tensor t);
  // Releases the mapped pages of a view of this checkpoint's files (see
  // SafetensorsFile::release_pages); no-op for owned memory.
  void release_pages(const void* p, size_t bytes) const;
  void release_pages(const Tensor& view) const { release_pages(view.raw(), view.nbytes()); }
  // Releases every mapped page of the checkpoint's files (the data stays in the page cache; a
  // later read maps it again). Called once a model is built: drops from the process what building
  // it read (small tensors copied to f32, the fault-around/readahead pages next to them), so the
  // resident set holds only weights that are actually used (e.g. no vision pages in a text-only run).
  void release_all_pages() const;

 private:
  std::filesystem::path dir_;
  Qwen3VLConfig config_;
  std::map<std::string, Tensor> tensors_;
  std::map<std::string, std::string> file_of_;
  std::map<std::string, DType> source_dtype_;  // quantized tensors only
  std::map<std::string, bool> quantized_at_load_;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
};

// The weight formats in one line, e.g. "BF16", or "Q4_0 (embed_tokens Q8_0, lm_head tied, vision
// BF16)": text decoder linears first, then what differs from them (bench, inspect).
std::string weight_format_summary(const Checkpoint& ck);

}  // namespace qwen3vl

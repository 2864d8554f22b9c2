// Safetensors reading (memory-mapped, strictly validated) and streaming writing.
//
// Format: 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
// then the data block; offsets are relative to the data block.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace qwen3vl {

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  uint64_t begin = 0;  // byte offsets in the data block
  uint64_t end = 0;
};

class SafetensorsFile : public std::enable_shared_from_this<SafetensorsFile> {
 public:
  // Opens and validates: header length sane, JSON well-formed, known dtypes, offsets inside the
  // file, sizes == numel * dtype size, no overlapping tensors. Throws Error naming the file (and
  // tensor) on any violation.
  static std::shared_ptr<SafetensorsFile> open(const std::filesystem::path& path);
  ~SafetensorsFile();

  const std::filesystem::path& path() const { return path_; }
  const std::vector<TensorInfo>& infos() const { return infos_; }  // in file order
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool has(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;  // throws naming file + tensor
  // Zero-copy read-only view into the mapping (keeps the file mapped while alive).
  Tensor get(const std::string& name) const;
  // Drops the whole pages of [p, p + bytes) that lie inside this file's mapping from the
  // process (madvise MADV_DONTNEED): they stop counting as resident memory and are read again
  // from the file if touched later (the mapping is read-only, so nothing is lost). Used after a
  // tensor was converted (e.g. quantized) and its mapped bytes are no longer needed. Ranges
  // outside the mapping (e.g. an owned copy) are ignored.
  void release_pages(const void* p, size_t bytes) const;
  void release_all_pages() const { release_pages(map_, map_size_); }

 private:
  SafetensorsFile() = default;
  std::filesystem::path path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  const uint8_t* data_ = nullptr;  // start of the data block
  std::vector<TensorInfo> infos_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Convenience: load a whole (small) file into named tensors — fixtures, dumps.
std::map<std::string, Tensor> load_safetensors(const std::filesystem::path& path);

// Streaming writer: declare every tensor (name, dtype, shape) first, then write the data of each
// in declaration order via a callback that may be called with chunks; memory stays bounded by
// the chunk size, so multi-GB checkpoints can be written with little RAM.
// Data is laid out contiguously in declaration order; declare larger element sizes first (e.g.
// F32 before BF16 before U8) so that every tensor stays aligned and readers get zero-copy views
// (a misaligned tensor is still read correctly, as a copy). The file is written to
// "<path>.partial" and renamed at the end; on any error nothing is left under either name.
class SafetensorsWriter {
 public:
  void add(const std::string& name, DType dtype, Shape shape);
  void set_metadata(std::map<std::string, std::string> md) { metadata_ = std::move(md); }
  // produce(name, sink): must call sink(ptr, bytes) with exactly the tensor's bytes, in order.
  using Sink = std::function<void(const void*, size_t)>;
  void write(const std::filesystem::path& path,
             const std::function<void(const TensorInfo&, const Sink&)>& produce) const;
  uint64_t data_bytes() const;
  const std::vector<TensorInfo>& infos() const { return infos_; }

 private:
  std::vector<TensorInfo> infos_;
  std::map<std::string, std::string> metadata_;
};

// Writes already-materialised tensors. Data order is HF's (dtype size descending, then name), so
// the bytes equal Python safetensors' save_file output for the same tensors and (single-key)
// metadata, and every tensor is aligned for zero-copy reading.
void save_safetensors(const std::filesystem::path& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace qwen3vl

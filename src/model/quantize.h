// Block-quantized weights (DType::Q8_0 / Q4_0, llama.cpp layouts in core/quant.h) for a
// Qwen3-VL checkpoint: which tensors a mode quantizes (quant_plan), the conversion
// (quantize_weight), the stored form of a quantized folder, and `qwen3vl quantize`
// (quantize_folder).
//
// What gets quantized (the rules of llama.cpp's llama-quantize for its Q8_0 / Q4_0 file types,
// src/llama-quant.cpp, so that a comparison is at equal bits):
//   text q8: every decoder linear (q/k/v/o_proj, gate/up/down_proj), embed_tokens and an untied
//            lm_head -> Q8_0.
//   text q4: every decoder linear -> Q4_0. The output matrix gets more bits: llama.cpp gives
//            output.weight (or, when tied, the shared token_embd.weight) Q6_K; we have no Q6_K,
//            so it gets Q8_0 (8.5 instead of 6.56 bits per weight). An untied embed_tokens is
//            Q4_0 (as llama.cpp's token_embd.weight).
//   vision q8 / q4 (separate, default none): the vision blocks' attn.qkv / attn.proj /
//            mlp.linear_fc1 / mlp.linear_fc2 and the merger + DeepStack mergers' linear_fc1 /
//            linear_fc2 weights. Never patch_embed / pos_embed (llama.cpp keeps those too).
//   Never: norm weights, biases (1-D). A matrix whose row length is not a multiple of 32 is kept
//   as stored (llama.cpp falls back to F16 there).
//
// Stored form (written by quantize_folder, read by Checkpoint::load): a quantized [n, k] tensor is
// a U8 tensor of shape [n, k / 32 * block_bytes] (the block bytes, rows contiguous, in the
// interleaved row layout of core/quant.h: what the kernels read, so it loads zero-copy), and the
// file's __metadata__ has the key "qwen3vl.quant" whose value is the JSON text
//   {"version": 2, "tensors": {"<name>": {"dtype": "Q4_0", "shape": [n, k], "source_dtype": "BF16"}, ...}}
// (version 1, written before the interleaved layout, holds the rows in plain llama.cpp block order
// and is converted at load.)
// naming each quantized tensor of that file, its block dtype, logical shape and the float dtype
// it was quantized from. config.json gains "quantization_config" {"quant_method": "qwen3vl_blockq", ...}.
// HF transformers cannot load such a folder (it rejects the unknown quant_method).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "model/config.h"

namespace qwen3vl {

enum class QuantMode : uint8_t { None, Q8, Q4 };
// "none", "q8" / "q8_0", "q4" / "q4_0" (case-insensitive). Throws Error naming `what` (e.g. "--quant").
QuantMode parse_quant_mode(const std::string& s, const std::string& what = "quantization mode");
const char* quant_mode_name(QuantMode m);  // "none", "q8", "q4"
DType quant_mode_dtype(QuantMode m);       // Q8_0 / Q4_0; F32 for None

struct QuantOptions {
  QuantMode text = QuantMode::None;    // text decoder linears, embed_tokens, lm_head
  QuantMode vision = QuantMode::None;  // vision blocks' linears and the mergers
  bool any() const { return text != QuantMode::None || vision != QuantMode::None; }
};

// name -> target dtype of every tensor that `opts` quantizes (rules above).
std::map<std::string, DType> quant_plan(const Qwen3VLConfig& cfg, const QuantOptions& opts);
// Whether tensor `name` may hold a block-quantized dtype at all (some mode quantizes it).
bool quantizable_weight(const std::string& name, const Qwen3VLConfig& cfg);

// Quantizes a float matrix w [n, k] (F32, BF16 or F16; k % 32 == 0) to `dtype` (Q8_0 / Q4_0)
// into an owned [n, k] tensor, rows split over `threads` threads (<= 0: kernels::num_threads()).
// Same bytes as llama.cpp's reference quantizer on the same f32 values.
Tensor quantize_weight(const Tensor& w, DType dtype, int threads = 0);
// A Q8_0 / Q4_0 tensor [n, k] whose rows hold plain llama.cpp blocks (GGUF order; metadata
// version 1) -> a new tensor in the interleaved row layout (core/quant.h) the kernels read.
Tensor quant_from_plain_blocks(const Tensor& plain);
// Q8_0 / Q4_0 -> F32 (tests and tools).
Tensor dequantize_weight(const Tensor& q);

// --- stored form
inline const std::string kQuantMetadataKey = "qwen3vl.quant";
inline const std::string kQuantMethod = "qwen3vl_blockq";
// Logical [n, k] of a block dtype -> the U8 storage shape [n, k / 32 * block_bytes].
Shape quant_storage_shape(DType dtype, const Shape& logical);
struct StoredQuantInfo {
  DType dtype = DType::Q8_0;  // Q8_0 / Q4_0
  Shape shape;                // logical [n, k]
  DType source = DType::BF16;  // float dtype it was quantized from
  // Metadata version 2 stores rows in the interleaved layout (core/quant.h), read zero-copy;
  // version 1 (plain llama.cpp block order) is converted to it at load.
  bool interleaved = true;
};
// Parses the "qwen3vl.quant" metadata value; throws Error prefixed with `where` on any problem.
std::map<std::string, StoredQuantInfo> parse_quant_metadata(const std::string& json, const std::string& where);
std::string quant_metadata_json(const std::map<std::string, StoredQuantInfo>& tensors);

// --- qwen3vl quantize: IN folder -> OUT folder (one model.safetensors with the quantized tensors
// and every other tensor as stored, config.json with "quantization_config", every other file of
// IN copied). Streams tensor by tensor in row chunks: memory stays bounded (a few MB plus what
// the page cache holds). OUT must not exist; it is written under a temporary name and renamed.
struct QuantizeFolderOptions {
  std::filesystem::path in, out;
  QuantOptions quant;
  int threads = 0;     // <= 0: kernels::num_threads()
  bool quiet = true;   // progress lines on stderr when false
};
struct QuantizeFolderResult {
  int quantized_tensors = 0;
  uint64_t in_bytes = 0, out_bytes = 0;  // tensor data bytes
  std::map<std::string, int> dtype_counts;  // dtype name -> tensors in OUT
  std::vector<std::string> copied_files;
};
QuantizeFolderResult quantize_folder(const QuantizeFolderOptions& opts);

}  // namespace qwen3vl

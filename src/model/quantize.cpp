#include "model/quantize.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/quant.h"
#include "core/safetensors.h"
#include "kernels/kernels.h"
#include "kernels/quant.h"
#include "model/checkpoint.h"
#include "model/weight_names.h"

namespace qwen3vl {

namespace fs = std::filesystem;

QuantMode parse_quant_mode(const std::string& s, const std::string& what) {
  std::string l;
  for (char c : s) l += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (l == "none" || l == "off" || l.empty()) return QuantMode::None;
  if (l == "q8" || l == "q8_0") return QuantMode::Q8;
  if (l == "q4" || l == "q4_0") return QuantMode::Q4;
  throw Error(what + ": unknown quantization '" + s + "' (expected none, q8 or q4)");
}

const char* quant_mode_name(QuantMode m) {
  switch (m) {
    case QuantMode::None: return "none";
    case QuantMode::Q8: return "q8";
    case QuantMode::Q4: return "q4";
  }
  return "?";
}

DType quant_mode_dtype(QuantMode m) {
  return m == QuantMode::Q8 ? DType::Q8_0 : m == QuantMode::Q4 ? DType::Q4_0 : DType::F32;
}

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_float(DType t) { return t == DType::F32 || t == DType::BF16 || t == DType::F16; }

// Row length of a weight viewed as [size(0), numel / size(0)].
int64_t row_len(const Shape& s) {
  if (s.size() < 2 || s[0] == 0) return 0;
  return shape_numel(s) / s[0];
}

}  // namespace

std::map<std::string, DType> quant_plan(const Qwen3VLConfig& cfg, const QuantOptions& opts) {
  std::map<std::string, DType> plan;
  const DType t = quant_mode_dtype(opts.text), v = quant_mode_dtype(opts.vision);
  for (const WeightSpec& w : expected_weights(cfg)) {
    if (w.shape.size() != 2 || w.shape[1] % kQuantBlockSize != 0) continue;  // 1-D, or no whole blocks
    DType target = DType::F32;  // F32 = not quantized
    switch (w.group) {
      case WeightGroup::TextLayers:
        if (opts.text != QuantMode::None && ends_with(w.name, "_proj.weight")) target = t;
        break;
      case WeightGroup::TextEmbedding:
        // llama.cpp: a tied token_embd is the output matrix (Q6_K at Q4_0 -> Q8_0 here); untied: the type.
        if (opts.text != QuantMode::None) target = cfg.tie_word_embeddings ? DType::Q8_0 : t;
        break;
      case WeightGroup::LmHead:  // untied only (tied: resolved to embed_tokens)
        if (opts.text != QuantMode::None) target = DType::Q8_0;
        break;
      case WeightGroup::VisionBlocks:
        if (opts.vision != QuantMode::None &&
            (ends_with(w.name, "attn.qkv.weight") || ends_with(w.name, "attn.proj.weight") ||
             ends_with(w.name, "mlp.linear_fc1.weight") || ends_with(w.name, "mlp.linear_fc2.weight")))
          target = v;
        break;
      case WeightGroup::VisionMerger:
      case WeightGroup::DeepstackMergers:
        if (opts.vision != QuantMode::None &&
            (ends_with(w.name, "linear_fc1.weight") || ends_with(w.name, "linear_fc2.weight")))
          target = v;
        break;
      default: break;  // patch_embed, pos_embed, norms
    }
    if (target != DType::F32) plan[w.name] = target;
  }
  return plan;
}

bool quantizable_weight(const std::string& name, const Qwen3VLConfig& cfg) {
  QuantOptions all{QuantMode::Q8, QuantMode::Q8};
  return quant_plan(cfg, all).count(name) > 0;
}

Tensor quantize_weight(const Tensor& w, DType dtype, int threads) {
  QWEN3VL_CHECK(dtype_is_quantized(dtype), std::string("quantize_weight: target dtype ") + dtype_name(dtype) +
                                               " is not Q8_0 or Q4_0");
  QWEN3VL_CHECK(w.defined() && is_float(w.dtype()) && w.dim() == 2,
                "quantize_weight: expected a float matrix [n, k] (F32, BF16 or F16), got " +
                    (w.defined() ? w.str() : std::string("an empty tensor")));
  const int64_t n = w.size(0), k = row_len(w.shape());
  QWEN3VL_CHECK(k % kQuantBlockSize == 0, "quantize_weight: rows of " + w.str() + " have " + std::to_string(k) +
                                              " elements, not a multiple of " + std::to_string(kQuantBlockSize));
  Tensor q = Tensor::empty({n, k}, dtype);
  if (n == 0 || k == 0) return q;
  const size_t out_row = dtype_nbytes(dtype, k), in_row = dtype_nbytes(w.dtype(), k);
  auto* out = static_cast<uint8_t*>(q.raw());
  const auto* in = static_cast<const uint8_t*>(w.raw());
  auto work = [&](int64_t r0, int64_t r1) {
    if (w.dtype() == DType::BF16) {
      kernels::quantize_rows_bf16(dtype, reinterpret_cast<const uint16_t*>(in + r0 * in_row), r1 - r0, k,
                                  out + r0 * out_row);
    } else if (w.dtype() == DType::F32) {
      kernels::quantize_rows(dtype, reinterpret_cast<const float*>(in + r0 * in_row), r1 - r0, k, out + r0 * out_row);
    } else {  // F16: widen a row at a time (exact), then quantize
      std::vector<float> row(static_cast<size_t>(k));
      for (int64_t r = r0; r < r1; ++r) {
        const auto* h = reinterpret_cast<const uint16_t*>(in + r * in_row);
        for (int64_t i = 0; i < k; ++i) row[static_cast<size_t>(i)] = f16_to_f32(h[i]);
        kernels::quantize_rows(dtype, row.data(), 1, k, out + r * out_row);
      }
    }
  };
  int nt = threads > 0 ? threads : kernels::num_threads();
  // Below ~1 MB of input a thread costs more than it saves.
  nt = static_cast<int>(std::clamp<int64_t>(static_cast<int64_t>(n * in_row >> 20), 1, std::max(1, nt)));
  nt = static_cast<int>(std::min<int64_t>(nt, n));
  if (nt <= 1) {
    work(0, n);
    return q;
  }
  std::vector<std::thread> pool;
  std::vector<std::exception_ptr> errs(static_cast<size_t>(nt));
  for (int i = 0; i < nt; ++i) {
    const int64_t r0 = n * i / nt, r1 = n * (i + 1) / nt;
    pool.emplace_back([&, i, r0, r1] {
      try {
        work(r0, r1);
      } catch (...) {
        errs[static_cast<size_t>(i)] = std::current_exception();
      }
    });
  }
  for (auto& th : pool) th.join();
  for (auto& e : errs)
    if (e) std::rethrow_exception(e);
  return q;
}

Tensor quant_from_plain_blocks(const Tensor& plain) {
  QWEN3VL_CHECK(plain.defined() && dtype_is_quantized(plain.dtype()) && plain.dim() == 2,
                "quant_from_plain_blocks: expected a Q8_0 / Q4_0 matrix, got " +
                    (plain.defined() ? plain.str() : std::string("none")));
  Tensor out = Tensor::empty(plain.shape(), plain.dtype());
  const int64_t n = plain.size(0), k = plain.size(1);
  const size_t rb = dtype_row_bytes(plain.dtype(), k);
  for (int64_t r = 0; r < n; ++r)
    quant_row_from_blocks(plain.dtype(), static_cast<const uint8_t*>(plain.raw()) + r * rb, k / kQuantBlockSize,
                          static_cast<uint8_t*>(out.raw()) + r * rb);
  return out;
}

Tensor dequantize_weight(const Tensor& q) {
  QWEN3VL_CHECK(q.defined() && dtype_is_quantized(q.dtype()) && q.dim() >= 1,
                "dequantize_weight: expected a Q8_0 / Q4_0 tensor, got " + (q.defined() ? q.str() : std::string("none")));
  const int64_t k = q.size(-1), rows = k ? q.numel() / k : 0;
  Tensor out = Tensor::empty(q.shape(), DType::F32);
  if (rows) kernels::dequantize_rows(q.dtype(), q.raw(), k, 0, rows, out.data<float>());
  return out;
}

// ---------------------------------------------------------------------------------------------
// Stored form
// ---------------------------------------------------------------------------------------------

Shape quant_storage_shape(DType dtype, const Shape& logical) {
  QWEN3VL_CHECK(dtype_is_quantized(dtype) && logical.size() == 2 && logical[1] % kQuantBlockSize == 0,
                std::string("quant_storage_shape: ") + dtype_name(dtype) + shape_str(logical) +
                    " is not a block-quantized [n, k] with k a multiple of 32");
  return {logical[0], static_cast<int64_t>(dtype_nbytes(dtype, logical[1]))};
}

std::map<std::string, StoredQuantInfo> parse_quant_metadata(const std::string& text, const std::string& where) {
  const std::string pre = where + ": __metadata__ \"" + kQuantMetadataKey + "\": ";
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(pre + "malformed JSON: " + e.what());
  }
  if (!j.is_object() || !j.contains("tensors") || !j["tensors"].is_object())
    throw Error(pre + "expected an object with a \"tensors\" object");
  int64_t version = 1;
  if (j.contains("version")) {
    if (!j["version"].is_number_integer() || j["version"].get<int64_t>() < 1 || j["version"].get<int64_t>() > 2)
      throw Error(pre + "unsupported version " + j["version"].dump() + " (this build reads versions 1 and 2)");
    version = j["version"].get<int64_t>();
  }
  std::map<std::string, StoredQuantInfo> out;
  for (auto& [name, v] : j["tensors"].items()) {
    const std::string tp = pre + "tensor '" + name + "': ";
    if (!v.is_object() || !v.contains("dtype") || !v["dtype"].is_string() || !v.contains("shape") ||
        !v["shape"].is_array())
      throw Error(tp + "expected {\"dtype\": \"Q8_0\"|\"Q4_0\", \"shape\": [n, k], \"source_dtype\": ...}");
    StoredQuantInfo info;
    info.interleaved = version >= 2;
    const std::string d = v["dtype"].get<std::string>();
    if (d == "Q8_0") info.dtype = DType::Q8_0;
    else if (d == "Q4_0") info.dtype = DType::Q4_0;
    else throw Error(tp + "dtype \"" + d + "\" is not Q8_0 or Q4_0");
    for (auto& x : v["shape"]) {
      if (!x.is_number_integer() || x.get<int64_t>() < 0) throw Error(tp + "shape " + v["shape"].dump() + " is not a list of sizes");
      info.shape.push_back(x.get<int64_t>());
    }
    if (info.shape.size() != 2 || info.shape[1] % kQuantBlockSize != 0)
      throw Error(tp + "logical shape " + shape_str(info.shape) + " is not [n, k] with k a multiple of 32");
    info.source = DType::BF16;
    if (v.contains("source_dtype")) {
      auto s = v["source_dtype"].is_string() ? dtype_from_name(v["source_dtype"].get<std::string>()) : std::nullopt;
      if (!s || !is_float(*s)) throw Error(tp + "source_dtype " + v["source_dtype"].dump() + " is not F32, BF16 or F16");
      info.source = *s;
    }
    out[name] = info;
  }
  return out;
}

std::string quant_metadata_json(const std::map<std::string, StoredQuantInfo>& tensors) {
  nlohmann::ordered_json t = nlohmann::ordered_json::object();
  for (auto& [name, info] : tensors)
    t[name] = {{"dtype", dtype_name(info.dtype)}, {"shape", info.shape}, {"source_dtype", dtype_name(info.source)}};
  nlohmann::ordered_json j{{"version", 2}, {"tensors", t}};
  return j.dump();
}

// ---------------------------------------------------------------------------------------------
// qwen3vl quantize
// ---------------------------------------------------------------------------------------------

QuantizeFolderResult quantize_folder(const QuantizeFolderOptions& opts) {
  std::error_code ec;
  QWEN3VL_CHECK(!opts.in.empty() && !opts.out.empty(), "quantize: need an input and an output folder");
  QWEN3VL_CHECK(opts.quant.any(), "quantize: nothing to do (text and vision quantization are both none)");
  if (fs::exists(opts.out, ec))
    throw Error("quantize: output '" + opts.out.string() + "' already exists (choose a new folder)");
  if (fs::exists(opts.in, ec) && fs::weakly_canonical(opts.in, ec) == fs::weakly_canonical(opts.out, ec))
    throw Error("quantize: output folder is the input folder");

  Checkpoint ck = Checkpoint::load(opts.in);  // verified, mapped, nothing converted yet
  const Qwen3VLConfig& cfg = ck.config();
  const auto plan = quant_plan(cfg, opts.quant);

  // Every tensor of the checkpoint (the tied lm_head is not stored), its output dtype.
  struct Item {
    std::string name;
    DType out;   // dtype in OUT (block dtype or as stored)
    Shape shape;  // logical
  };
  std::vector<Item> items;
  std::vector<std::string> conflicts;
  for (const auto& [name, t] : ck.tensors()) {
    auto p = plan.find(name);
    DType out = t.dtype();
    if (p != plan.end()) {
      if (dtype_is_quantized(t.dtype()) && t.dtype() != p->second)
        conflicts.push_back(name + " (" + dtype_name(t.dtype()) + ", wanted " + dtype_name(p->second) + ")");
      out = p->second;
    }
    items.push_back({name, out, t.shape()});
  }
  if (!conflicts.empty())
    throw Error("quantize: '" + opts.in.string() + "' is already quantized differently: " + conflicts[0] +
                (conflicts.size() > 1 ? " and " + std::to_string(conflicts.size() - 1) + " more" : "") +
                "; re-quantizing quantized weights would round twice: start from the float checkpoint");
  // Layout: larger element sizes first (F32, then BF16/F16, then U8 blocks) so every tensor is
  // aligned for zero-copy reading; registry (HF module) order within a size.
  std::map<std::string, size_t> order;
  {
    size_t i = 0;
    for (auto& w : expected_weights(cfg)) order[w.name] = i++;
  }
  auto elem = [](DType d) { return dtype_is_quantized(d) ? size_t{1} : dtype_size(d); };
  std::stable_sort(items.begin(), items.end(), [&](const Item& a, const Item& b) {
    if (elem(a.out) != elem(b.out)) return elem(a.out) > elem(b.out);
    auto oa = order.count(a.name) ? order[a.name] : SIZE_MAX, ob = order.count(b.name) ? order[b.name] : SIZE_MAX;
    return oa != ob ? oa < ob : a.name < b.name;
  });

  QuantizeFolderResult res;
  SafetensorsWriter wr;
  std::map<std::string, StoredQuantInfo> qmeta;
  for (const Item& it : items) {
    const Tensor& t = ck.get(it.name);
    res.in_bytes += t.nbytes();
    if (dtype_is_quantized(it.out)) {
      QWEN3VL_CHECK(it.shape.size() == 2, "quantize: " + it.name + " is not a matrix");
      wr.add(it.name, DType::U8, quant_storage_shape(it.out, it.shape));
      qmeta[it.name] = StoredQuantInfo{it.out, it.shape, ck.source_dtype(it.name)};
      if (!dtype_is_quantized(t.dtype())) ++res.quantized_tensors;
    } else {
      wr.add(it.name, it.out, it.shape);
    }
    res.dtype_counts[dtype_name(it.out)]++;
  }
  std::map<std::string, std::string> md{{"format", "pt"}};
  if (!qmeta.empty()) md[kQuantMetadataKey] = quant_metadata_json(qmeta);
  wr.set_metadata(md);
  res.out_bytes = wr.data_bytes();

  // Write into a temporary sibling folder, rename at the end (nothing half-written under OUT).
  const fs::path out = opts.out;
  fs::path parent = out.has_parent_path() ? out.parent_path() : fs::path(".");
  fs::path tmp = parent / (out.filename().string() + ".partial-" + std::to_string(::getpid()));
  fs::remove_all(tmp, ec);
  if (!fs::create_directories(tmp, ec) || ec)
    throw Error("quantize: cannot create '" + tmp.string() + "': " + ec.message());
  try {
    const auto t0 = std::chrono::steady_clock::now();
    size_t done = 0;
    const std::map<std::string, DType> outs = [&] {
      std::map<std::string, DType> m;
      for (auto& i : items) m[i.name] = i.out;
      return m;
    }();
    wr.write(tmp / "model.safetensors", [&](const TensorInfo& info, const SafetensorsWriter::Sink& sink) {
      const Tensor& t = ck.get(info.name);
      const DType target = outs.at(info.name);
      if (dtype_is_quantized(target) && !dtype_is_quantized(t.dtype())) {
        // Row chunks of ~16 MB of output.
        const int64_t n = t.size(0);
        const int64_t k = t.numel() / std::max<int64_t>(1, n);
        const int64_t rows = std::max<int64_t>(1, (int64_t{16} << 20) / std::max<size_t>(1, dtype_nbytes(target, k)));
        for (int64_t r0 = 0; r0 < n; r0 += rows) {
          const int64_t r1 = std::min(n, r0 + rows);
          Tensor src = t.slice_rows(r0, r1);
          Tensor q = quantize_weight(src, target, opts.threads);
          sink(q.raw(), q.nbytes());
          ck.release_pages(src);
        }
      } else {
        // As stored (float, or already in the target block dtype): copy in 64 MB pieces.
        const auto* p = static_cast<const uint8_t*>(t.raw());
        const size_t total = t.nbytes(), step = size_t{64} << 20;
        for (size_t off = 0; off < total; off += step) {
          const size_t len = std::min(step, total - off);
          sink(p + off, len);
          ck.release_pages(p + off, len);
        }
      }
      ++done;
      if (!opts.quiet) {
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::fprintf(stderr, "\r[%zu/%zu] %.1f s %-70s", done, items.size(), s, info.name.c_str());
        if (done == items.size()) std::fprintf(stderr, "\n");
        std::fflush(stderr);
      }
    });

    // config.json + quantization_config (key order kept).
    nlohmann::ordered_json cj;
    {
      std::ifstream f(opts.in / "config.json", std::ios::binary);
      std::stringstream ss;
      ss << f.rdbuf();
      cj = nlohmann::ordered_json::parse(ss.str());
    }
    nlohmann::ordered_json counts = nlohmann::ordered_json::object();
    for (auto& [d, c] : res.dtype_counts) counts[d] = c;
    cj["quantization_config"] = {
        {"quant_method", kQuantMethod},
        {"text", quant_mode_name(opts.quant.text)},
        {"vision", quant_mode_name(opts.quant.vision)},
        {"format", "llama.cpp Q8_0/Q4_0 blocks of 32 stored as U8 [n, k/32*block_bytes], rows interleaved in "
                   "groups of 16 blocks (qwen3vl core/quant.h); per-tensor dtype and logical shape in the "
                   "safetensors __metadata__ \"" + kQuantMetadataKey + "\" (version 2)"},
        {"tensor_dtypes", counts},
        {"note", "written by qwen3vl quantize; loadable by qwen3vl only (not by HF transformers)"}};
    {
      std::ofstream f(tmp / "config.json", std::ios::binary);
      f << cj.dump(2) << "\n";
      if (!f) throw Error("quantize: cannot write " + (tmp / "config.json").string());
    }
    // Every other file (tokenizer, chat template, processor / generation configs, ...).
    for (const auto& e : fs::directory_iterator(opts.in)) {
      if (!e.is_regular_file()) continue;
      const std::string n = e.path().filename().string();
      if (n == "config.json" || n == "model.safetensors.index.json" || ends_with(n, ".safetensors")) continue;
      fs::copy_file(e.path(), tmp / n, ec);
      if (ec) throw Error("quantize: cannot copy " + e.path().string() + ": " + ec.message());
      res.copied_files.push_back(n);
    }
    std::sort(res.copied_files.begin(), res.copied_files.end());
    fs::rename(tmp, out, ec);
    if (ec) throw Error("quantize: cannot rename " + tmp.string() + " to " + out.string() + ": " + ec.message());
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  return res;
}

}  // namespace qwen3vl

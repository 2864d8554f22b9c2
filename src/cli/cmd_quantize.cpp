// qwen3vl quantize: writes a block-quantized copy of a checkpoint folder (model/quantize.h) that
// loads quickly (zero-copy views of the stored blocks, no conversion at load).
#include <chrono>
#include <cstdio>

#include "cli/command.h"
#include "core/error.h"
#include "kernels/kernels.h"
#include "model/quantize.h"

namespace qwen3vl::cli {

static int cmd_quantize(Args& a) {
  if (a.flag({"--help", "-h"})) {
    std::printf(
        "usage: qwen3vl quantize -m IN --quant q8|q4 [--quant-vision none|q8|q4] --out OUT [-t THREADS] [-q]\n\n"
        "Writes OUT: a copy of the checkpoint folder IN whose text decoder (and, with --quant-vision, vision\n"
        "tower) weights are block-quantized, for `qwen3vl run|serve|bench -m OUT` to load without converting.\n"
        "  --quant q8|q4|none         text decoder linears -> Q8_0 (8.5 bits/weight) or Q4_0 (4.5 bits/weight);\n"
        "                             embed_tokens / lm_head as llama-quantize does it (q4: Q8_0 for the tied\n"
        "                             embedding, where llama.cpp uses Q6_K)\n"
        "  --quant-vision none|q8|q4  the vision blocks' and mergers' linears (default none: as stored)\n"
        "  -t, --threads N            quantization threads (default: all cores)\n"
        "  -q, --quiet                no progress line\n\n"
        "Format: llama.cpp-compatible Q8_0 / Q4_0 blocks, each row's blocks interleaved in groups of 16 (the\n"
        "order the kernels read), stored as U8 safetensors tensors described by the __metadata__ key\n"
        "\"qwen3vl.quant\"; config.json gains \"quantization_config\". Tokenizer, chat template\n"
        "and processor files are copied. Only qwen3vl loads such a folder: HF transformers cannot.\n"
        "Streams tensor by tensor: memory stays small whatever the model size.\n");
    return 0;
  }
  QuantizeFolderOptions o;
  o.in = a.get_or({"-m", "--model"}, "");
  o.out = a.get_or({"-o", "--out"}, "");
  o.quant.text = parse_quant_mode(a.get_or({"--quant"}, "none"), "--quant");
  o.quant.vision = parse_quant_mode(a.get_or({"--quant-vision"}, "none"), "--quant-vision");
  o.threads = static_cast<int>(a.get_int({"-t", "--threads"}, 0));
  o.quiet = a.flag({"-q", "--quiet"});
  a.reject_unknown();
  QWEN3VL_CHECK(!o.in.empty(), "missing -m IN (the checkpoint folder to quantize)");
  QWEN3VL_CHECK(!o.out.empty(), "missing --out OUT (the folder to write)");
  QWEN3VL_CHECK(o.quant.any(), "missing --quant q8|q4 (or --quant-vision q8|q4): nothing to quantize");
  if (o.threads > 0) kernels::set_num_threads(o.threads);
  const auto t0 = std::chrono::steady_clock::now();
  QuantizeFolderResult r = quantize_folder(o);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::string counts;
  for (auto& [d, c] : r.dtype_counts) counts += (counts.empty() ? "" : ", ") + std::to_string(c) + " " + d;
  std::printf("wrote %s in %.1f s: %d tensors quantized (text %s, vision %s); tensors: %s; %.1f MB -> %.1f MB; "
              "copied %zu other files\n",
              o.out.c_str(), s, r.quantized_tensors, quant_mode_name(o.quant.text), quant_mode_name(o.quant.vision),
              counts.c_str(), r.in_bytes / 1e6, r.out_bytes / 1e6, r.copied_files.size());
  return 0;
}
QWEN3VL_COMMAND("quantize", "write a Q8_0 / Q4_0 block-quantized copy of a checkpoint folder", cmd_quantize,
                {"--help", "-h", "-q", "--quiet"});

}  // namespace qwen3vl::cli

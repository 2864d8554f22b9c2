// qwen3vl make-model: write a random-weight HF checkpoint folder for a preset.
#include <cstdio>

#include "cli/command.h"
#include "core/error.h"
#include "model/make_model.h"
#include "model/presets.h"

namespace qwen3vl::cli {

static int cmd_make_model(Args& a) {
  if (a.flag({"--help", "-h"})) {
    std::printf(
        "usage: qwen3vl make-model --preset {tiny,tiny-b,2b,4b,8b,32b} --out DIR [--dtype bf16|f16|f32]\n"
        "                          [--seed N] [--init-std X] [--tokenizer DIR | --no-tokenizer]\n"
        "                          [--shard-size 5GB|500MB|0]\n"
        "Writes config.json, safetensors weights (deterministic random values for the seed), tokenizer,\n"
        "chat template, preprocessor/video-preprocessor and generation configs, like HF save_pretrained.\n"
        "Defaults: dtype bf16, seed 0, init-std 0.02, shard size 5GB (0 = one file), tokenizer from\n"
        "../shared/data/qwen3-tokenizer next to the repository.\n");
    return 0;
  }
  // Re-assemble the flags for the shared library parser (one parser for CLI and tests).
  std::vector<std::string> args;
  for (const char* f : {"--preset", "--out", "--dtype", "--seed", "--init-std", "--tokenizer", "--shard-size"}) {
    if (auto v = a.get({f})) {
      args.push_back(f);
      args.push_back(*v);
    }
  }
  if (a.flag({"--no-tokenizer"})) args.push_back("--no-tokenizer");
  a.reject_unknown();
  if (!a.positional().empty()) throw Error("make-model: unexpected argument '" + a.positional()[0] + "'");
  MakeModelOptions o = parse_make_model_args(args);
  o.quiet = false;
  MakeModelResult r = make_model(o);
  std::printf("wrote %s: preset %s, %lld parameters, %llu bytes of weights in %zu file(s)%s\n", r.dir.c_str(),
              o.preset.c_str(), static_cast<long long>(r.num_parameters), static_cast<unsigned long long>(r.data_bytes),
              r.weight_files.size(), r.wrote_tokenizer ? "" : " (no tokenizer)");
  return 0;
}
QWEN3VL_COMMAND("make-model", "write a random-weight Qwen3-VL checkpoint for a preset (tiny, 2b, ...)", cmd_make_model,
                {"--help", "-h", "--no-tokenizer"});

}  // namespace qwen3vl::cli

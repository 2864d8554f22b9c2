// qwen3vl dump: writes the engine's named intermediates (the same names the HF reference harness
// tools/reference/dump_reference.py writes) to a safetensors file, so any stage can be diffed
// against HF.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>

#include "cli/command.h"
#include "core/error.h"
#include "core/safetensors.h"
#include "kernels/kernels.h"
#include "model/checkpoint.h"
#include "pipeline/messages.h"
#include "pipeline/processor.h"
#include "text/generation.h"
#include "text/qwen3vl_model.h"

namespace qwen3vl::cli {

namespace {

Tensor grid_tensor(const std::vector<GridTHW>& g) {
  Tensor t = Tensor::empty({static_cast<int64_t>(g.size()), 3}, DType::I64);
  int64_t* d = t.data<int64_t>();
  for (size_t i = 0; i < g.size(); ++i) {
    d[3 * i] = g[i].t;
    d[3 * i + 1] = g[i].h;
    d[3 * i + 2] = g[i].w;
  }
  return t;
}

}  // namespace

static int cmd_dump(Args& a) {
  if (a.flag({"--help", "-h"})) {
    std::printf(
        "usage: qwen3vl dump -m DIR [--image F]... [--video F | --frames DIR [--fps F]] [-p TEXT | --messages FILE.json] -o OUT.safetensors\n"
        "                    [--only processor|vision|all] [--generate N] [--min-pixels N] [--max-pixels N]\n"
        "Writes named intermediates (input_ids, pixel_values, image_grid_thw, image_embeds, deepstack.K,\n"
        "vision.blocks.N, position_ids, text.layers.N, logits, generate.greedy ...) for diffing against HF.\n");
    return 0;
  }
  const std::string dir = a.get_or({"-m", "--model"}, "");
  const std::string out_path = a.get_or({"-o", "--out"}, "");
  const std::string only = a.get_or({"--only"}, "all");
  const std::string prompt = a.get_or({"-p", "--prompt"}, "");
  const std::string messages_file = a.get_or({"--messages"}, "");
  const auto images = a.get_all({"--image"});
  const auto videos = a.get_all({"--video"});
  const std::string frames_dir = a.get_or({"--frames"}, "");
  const double frames_fps = a.get_double({"--fps"}, 2.0);
  const long long gen = a.get_int({"--generate"}, 0);
  const long long threads = a.get_int({"-t", "--threads"}, 0);
  ProcessorOptions popts;
  if (auto v = a.get({"--min-pixels"})) popts.min_pixels = std::stoll(*v);
  if (auto v = a.get({"--max-pixels"})) popts.max_pixels = std::stoll(*v);
  a.reject_unknown();
  QWEN3VL_CHECK(!dir.empty(), "missing -m DIR");
  QWEN3VL_CHECK(!out_path.empty(), "missing -o OUT.safetensors");
  QWEN3VL_CHECK(only == "processor" || only == "vision" || only == "all", "--only must be processor, vision or all");
  QWEN3VL_CHECK(messages_file.empty() || (prompt.empty() && images.empty() && videos.empty()),
                "--messages excludes -p/--image/--video");
  if (threads > 0) kernels::set_num_threads(static_cast<int>(threads));

  nlohmann::ordered_json messages =
      messages_file.empty() ? make_user_messages(prompt, images, videos) : load_messages_file(messages_file);
  if (!frames_dir.empty()) {
    // A folder of frames (sorted by name) as one video sampled at --fps, placed after the images.
    QWEN3VL_CHECK(messages_file.empty(), "--frames goes with -p/--image, not --messages");
    std::vector<std::string> frames;
    for (const auto& e : std::filesystem::directory_iterator(frames_dir))
      if (e.is_regular_file()) frames.push_back(e.path().string());
    std::sort(frames.begin(), frames.end());
    QWEN3VL_CHECK(!frames.empty(), "--frames " + frames_dir + ": no files");
    auto& content = messages.back()["content"];
    content.insert(content.end() - 1, nlohmann::ordered_json{{"type", "video"}, {"video", frames}, {"fps", frames_fps}});
  }
  Qwen3VLProcessor proc = Qwen3VLProcessor::load(dir);
  ProcessorOutput po = proc(messages, popts);

  std::map<std::string, Tensor> out;
  const MultimodalInputs& in = po.inputs;
  out["input_ids"] = Tensor::from_vector(in.input_ids, {static_cast<int64_t>(in.input_ids.size())});
  if (!in.image_grid_thw.empty()) {
    out["pixel_values"] = in.pixel_values;
    out["image_grid_thw"] = grid_tensor(in.image_grid_thw);
  }
  if (!in.video_grid_thw.empty()) {
    out["pixel_values_videos"] = in.pixel_values_videos;
    out["video_grid_thw"] = grid_tensor(in.video_grid_thw);
  }
  std::map<std::string, std::string> md{{"prompt", po.prompt}, {"only", only}, {"model", dir}};

  if (only != "processor") {
    Checkpoint ckpt = Checkpoint::load(dir);
    Qwen3VLForConditionalGeneration model(ckpt);
    std::string prefix;
    DumpHook hook = [&](const std::string& name, const Tensor& t) { out[prefix + name] = t.clone(); };
    if (only == "vision") {
      if (!in.image_grid_thw.empty()) {
        VisionOutput vo = model.model().visual().forward(in.pixel_values, in.image_grid_thw, &hook);
        out["image_embeds"] = vo.embeds;
        for (size_t j = 0; j < vo.deepstack.size(); ++j) out["deepstack." + std::to_string(j)] = vo.deepstack[j];
      }
      if (!in.video_grid_thw.empty()) {
        prefix = "video.";
        VisionOutput vo = model.model().visual().forward(in.pixel_values_videos, in.video_grid_thw, &hook);
        out["video_embeds"] = vo.embeds;
        for (size_t j = 0; j < vo.deepstack.size(); ++j) out["video.deepstack." + std::to_string(j)] = vo.deepstack[j];
      }
    } else {
      const int64_t seq = static_cast<int64_t>(in.input_ids.size());
      KVCache cache = model.make_cache(seq + std::max<long long>(gen, 0) + 1);
      Tensor logits = model.forward(in, cache, seq, &hook);
      out["logits"] = logits;
      if (gen > 0) {
        KVCache cache2 = model.make_cache(seq + gen + 1);
        GenerationConfig cfg = GenerationConfig::for_model(dir, model.config());
        cfg.do_sample = false;
        cfg.max_new_tokens = gen;
        cfg.eos_token_id.clear();  // fixed length, like generate(max_new_tokens=N, min_new_tokens=N)
        GenerationResult r = generate(model, in, cache2, cfg);
        out["generate.greedy"] = Tensor::from_vector(r.tokens, {static_cast<int64_t>(r.tokens.size())});
        md["generate_min_margin"] = std::to_string(r.min_margin);
      }
    }
  }
  save_safetensors(out_path, out, md);
  std::fprintf(stderr, "wrote %zu tensors to %s\n", out.size(), out_path.c_str());
  for (auto& [k, v] : out) std::fprintf(stderr, "  %-28s %s\n", k.c_str(), v.str().c_str());
  return 0;
}
QWEN3VL_COMMAND("dump", "write named intermediates (processor / vision / all) to safetensors for diffing vs HF",
                cmd_dump, {"--help", "-h"});

}  // namespace qwen3vl::cli

// qwen3vl run: answer a prompt about images / a video, streaming the answer to stdout; -i for an
// interactive multi-turn chat. Flags follow llama.cpp's names where they exist.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>

#include "cli/command.h"
#include "core/error.h"
#include "pipeline/engine.h"
#include "pipeline/messages.h"

namespace qwen3vl::cli {

namespace {

void print_usage() {
  std::printf(
      "usage: qwen3vl run -m DIR [--image F]... [--video F] -p TEXT [options]\n"
      "       qwen3vl run -m DIR -i            interactive chat (/image PATH, /video PATH, /reset, /exit)\n\n"
      "  -m, --model DIR            checkpoint folder (config.json, *.safetensors, tokenizer.json ...)\n"
      "  -p, --prompt TEXT          the question\n"
      "  --image FILE               an image (repeatable; JPEG, PNG, WebP)\n"
      "  --video FILE               a video file (FFmpeg) sampled at --fps\n"
      "  -sys, --system TEXT        system prompt\n"
      "  -n, --max-new-tokens N     answer length limit (default: until end of turn, within --ctx)\n"
      "  -c, --ctx N                context length in tokens (default 8192)\n"
      "  -t, --threads N            threads (default: all cores)\n"
      "  --quant none|q8|q4         quantize the text decoder's weights at load to 8-bit (Q8_0) or 4-bit\n"
      "                             (Q4_0) blocks (default none: weights as stored; a folder written by\n"
      "                             `qwen3vl quantize` loads quantized without this flag)\n"
      "  --quant-vision none|q8|q4  the same for the vision tower's linear layers (default none)\n"
      "  --temp X --top-k N --top-p X --min-p X --repeat-penalty X --presence-penalty X --seed N\n"
      "                             sampling (defaults from generation_config.json); --greedy = argmax\n"
      "  --min-pixels N --max-pixels N   image budget in pixels (an area; tokens = pixels / 1024)\n"
      "  --image-min-tokens N --image-max-tokens N   the same budget in image tokens\n"
      "  --fps X --max-frames N     video sampling\n"
      "  -v, --verbose              stage timings, image sizes, grids and token counts on stderr\n");
}

struct Progress {
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  void operator()(double f, const std::string& what) const {
    const int width = 30;
    int filled = static_cast<int>(f * width + 0.5);
    std::fprintf(stderr, "\rloading [%.*s%*s] %3d%% %-28s", filled, "##############################", width - filled, "",
                 static_cast<int>(f * 100 + 0.5), what.c_str());
    if (f >= 1.0) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  }
};

void print_stats(const ChatResult& r) {
  for (const auto& m : r.media) {
    std::fprintf(stderr, "%s %s: %dx%d -> %dx%d, grid (%lld, %lld, %lld), %lld tokens", m.kind.c_str(),
                 m.source.size() > 60 ? (m.source.substr(0, 57) + "...").c_str() : m.source.c_str(), m.width,
                 m.height, m.resized_width, m.resized_height, static_cast<long long>(m.grid.t),
                 static_cast<long long>(m.grid.h), static_cast<long long>(m.grid.w), static_cast<long long>(m.tokens));
    if (m.kind == "video") std::fprintf(stderr, ", %lld frames", static_cast<long long>(m.frames));
    std::fprintf(stderr, "\n");
  }
  const auto& t = r.timings;
  std::fprintf(stderr,
               "media %.1f ms | vision %.1f ms | prefill %lld tokens %.1f ms (%.1f tok/s) | decode %lld tokens "
               "%.1f ms (%.2f tok/s) | finish: %s\n",
               t.media_ms, t.vision_ms, static_cast<long long>(r.prompt_tokens), t.prefill_ms,
               t.prefill_tok_s(r.prompt_tokens), static_cast<long long>(t.decode_tokens), t.decode_ms,
               t.decode_tok_s(), finish_reason_name(r.finish));
}

}  // namespace

static int cmd_run(Args& a) {
  if (a.flag({"--help", "-h"})) {
    print_usage();
    return 0;
  }
  EngineOptions eo;
  eo.model_dir = a.get_or({"-m", "--model"}, "");
  eo.context_length = a.get_int({"-c", "--ctx", "--ctx-size"}, 8192);
  eo.threads = static_cast<int>(a.get_int({"-t", "--threads"}, 0));
  eo.quant.text = parse_quant_mode(a.get_or({"--quant"}, "none"), "--quant");
  eo.quant.vision = parse_quant_mode(a.get_or({"--quant-vision"}, "none"), "--quant-vision");
  const bool verbose = a.flag({"-v", "--verbose"});
  const bool interactive = a.flag({"-i", "--interactive"});
  std::string prompt = a.get_or({"-p", "--prompt"}, "");
  std::vector<std::string> images = a.get_all({"--image"});
  std::vector<std::string> videos = a.get_all({"--video"});
  const std::string system = a.get_or({"-sys", "--system", "--system-prompt"}, "");
  const long long max_new = a.get_int({"-n", "--max-new-tokens", "--n-predict"}, -1);
  const bool greedy = a.flag({"--greedy"});
  auto temp = a.get({"--temp", "--temperature"});
  auto top_k = a.get({"--top-k"});
  auto top_p = a.get({"--top-p"});
  auto min_p = a.get({"--min-p"});
  auto rep = a.get({"--repeat-penalty", "--repetition-penalty"});
  auto pres = a.get({"--presence-penalty"});
  auto seed = a.get({"--seed", "-s"});
  ProcessorOptions po;
  if (auto v = a.get({"--min-pixels"})) po.min_pixels = std::stoll(*v);
  if (auto v = a.get({"--max-pixels"})) po.max_pixels = std::stoll(*v);
  if (auto v = a.get({"--image-min-tokens"})) po.min_pixels = std::stoll(*v) * 1024;
  if (auto v = a.get({"--image-max-tokens"})) po.max_pixels = std::stoll(*v) * 1024;
  if (auto v = a.get({"--fps"})) po.video_fps = std::stod(*v);
  if (auto v = a.get({"--max-frames"})) po.video_max_frames = std::stoll(*v);
  a.reject_unknown();
  QWEN3VL_CHECK(!eo.model_dir.empty(), "missing -m DIR (a Qwen3-VL checkpoint folder)");
  QWEN3VL_CHECK(interactive || !prompt.empty(), "missing -p TEXT (or -i for an interactive chat)");

  Progress progress;
  eo.on_progress = std::ref(progress);
  auto engine = Engine::load(eo);
  if (verbose)
    std::fprintf(stderr, "loaded %s in %.0f ms (context %lld tokens)\n", engine->model_name().c_str(), engine->load_ms(),
                 static_cast<long long>(engine->context_length()));

  ChatRequest req;
  req.processor = po;
  GenerationConfig& g = req.generation;
  g = engine->default_generation();
  g.max_new_tokens = max_new > 0 ? max_new : eo.context_length;
  if (temp) g.temperature = std::stof(*temp), g.do_sample = g.temperature > 0;
  if (top_k) g.top_k = std::stoi(*top_k);
  if (top_p) g.top_p = std::stof(*top_p);
  if (min_p) g.min_p = std::stof(*min_p);
  if (rep) g.repetition_penalty = std::stof(*rep);
  if (pres) g.presence_penalty = std::stof(*pres);
  if (seed) g.seed = std::stoull(*seed);
  if (greedy) g.do_sample = false;
  g.validate();

  auto stream = [](const std::string& piece, int64_t) {
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    return true;
  };

  if (!interactive) {
    req.messages = make_user_messages(prompt, images, videos, system);
    ChatResult r = engine->chat(req, stream);
    std::printf("\n");
    std::fflush(stdout);
    if (verbose) print_stats(r);
    return 0;
  }

  nlohmann::ordered_json history = nlohmann::ordered_json::array();
  if (!system.empty()) history.push_back({{"role", "system"}, {"content", system}});
  std::fprintf(stderr, "interactive chat: /image PATH, /video PATH attach to the next message; /reset; /exit\n");
  std::string line;
  for (;;) {
    std::fprintf(stderr, "> ");
    if (!std::getline(std::cin, line)) break;
    if (line == "/exit" || line == "/quit") break;
    if (line == "/reset") {
      history.erase(history.begin() + (system.empty() ? 0 : 1), history.end());
      continue;
    }
    if (line.rfind("/image ", 0) == 0) { images.push_back(line.substr(7)); continue; }
    if (line.rfind("/video ", 0) == 0) { videos.push_back(line.substr(7)); continue; }
    if (line.empty()) continue;
    auto turn = make_user_messages(line, images, videos);
    images.clear();
    videos.clear();
    history.push_back(turn[0]);
    req.messages = history;
    try {
      ChatResult r = engine->chat(req, stream);
      std::printf("\n");
      std::fflush(stdout);
      if (verbose) print_stats(r);
      history.push_back({{"role", "assistant"}, {"content", r.text}});
    } catch (const Error& e) {
      history.erase(history.end() - 1);
      std::fprintf(stderr, "error: %s\n", e.what());
    }
  }
  return 0;
}
QWEN3VL_COMMAND("run", "answer a prompt about images / a video (streams); -i for interactive chat", cmd_run,
                {"--help", "-h", "-v", "--verbose", "-i", "--interactive", "--greedy"});

}  // namespace qwen3vl::cli

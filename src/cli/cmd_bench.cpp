// qwen3vl bench: llama-bench-style throughput table for a checkpoint — prefill (pp), decode (tg,
// also at a deep context), vision encode per image size, time to first token for an image
// request, peak RSS. Each figure: one warm-up run, then --reps runs; median and min..max.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "core/error.h"
#include "kernels/kernels.h"
#include "kernels/membw.h"
#include "model/checkpoint.h"
#include "text/qwen3vl_model.h"

namespace qwen3vl::cli {

namespace {

using Clock = std::chrono::steady_clock;

std::vector<int64_t> parse_list(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(std::stoll(item));
  return out;
}

struct Stat {
  double median = 0, min = 0, max = 0;
};

// Median as Python's statistics.median (what bench/compare_report.py applies to llama.cpp's
// samples): of an even count, the mean of the middle two.
double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0.0 : n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

template <typename F>
Stat measure(int reps, F&& f) {  // f() returns seconds
  f();  // warm-up
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) t.push_back(f());
  std::sort(t.begin(), t.end());
  return {median_of(t), t.front(), t.back()};
}

double seconds(Clock::time_point a) { return std::chrono::duration<double>(Clock::now() - a).count(); }

// Deterministic pseudo-random ordinary-text token ids.
std::vector<int64_t> tokens(int64_t n, uint64_t seed) {
  std::vector<int64_t> ids(static_cast<size_t>(n));
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& id : ids) {
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    id = static_cast<int64_t>(1000 + x % 100000);
  }
  return ids;
}

Tensor random_pixels(int64_t rows, int64_t cols) {
  Tensor t = Tensor::empty({rows, cols}, DType::F32);
  float* d = t.data<float>();
  uint32_t x = 12345;
  for (int64_t i = 0; i < rows * cols; ++i) {
    x = x * 1664525u + 1013904223u;
    d[i] = static_cast<float>(x >> 8) / 8388608.0f - 1.0f;
  }
  return t;
}

double peak_rss_mb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;
}

}  // namespace

static int cmd_bench(Args& a) {
  if (a.flag({"--help", "-h"})) {
    std::printf(
        "usage: qwen3vl bench -m DIR [-p 128,512] [-n 128] [--depth 4096] [--vision 448,1024,2048] [--ttft 1024]\n"
        "                     [-r REPS] [-t THREADS] [--quant none|q8|q4] [--quant-vision none|q8|q4] [--json]\n"
        "  -p   prefill lengths (tokens)            -n   decode tokens (tg)\n"
        "  --depth  also measure tg after this many context tokens (0: skip)\n"
        "  --vision image sizes (square, pixels) for the vision encoder (empty: skip)\n"
        "  --ttft   image size for time to first token of one image + a short question (0: skip)\n"
        "  --mem-bw 1|0  (default 1) stream-read the decoder weights a decode step reads (same pages, same\n"
        "           threads) right before and after each decode repetition, and state each repetition as a\n"
        "           fraction of the limit that sets (read bandwidth / weight bytes per token); median, min..max\n"
        "  --quant, --quant-vision  quantize the text decoder / vision tower at load (Q8_0 / Q4_0 blocks;\n"
        "           default none: weights as stored). The table header and JSON name the weight format.\n");
    return 0;
  }
  const std::string dir = a.get_or({"-m", "--model"}, "");
  const auto pp = parse_list(a.get_or({"-p", "--n-prompt"}, "128,512"));
  const int64_t tg = a.get_int({"-n", "--n-gen"}, 128);
  const int64_t depth = a.get_int({"--depth"}, 4096);
  const auto vis = parse_list(a.get_or({"--vision"}, "448,1024,2048"));
  const int64_t ttft = a.get_int({"--ttft"}, 1024);
  const int reps = static_cast<int>(a.get_int({"-r", "--reps"}, 3));
  const int threads = static_cast<int>(a.get_int({"-t", "--threads"}, 0));
  const bool as_json = a.flag({"--json"});
  const bool mem_bw = a.get_int({"--mem-bw"}, 1) != 0;
  LoadOptions lo;
  lo.quant.text = parse_quant_mode(a.get_or({"--quant"}, "none"), "--quant");
  lo.quant.vision = parse_quant_mode(a.get_or({"--quant-vision"}, "none"), "--quant-vision");
  a.reject_unknown();
  QWEN3VL_CHECK(!dir.empty(), "missing -m DIR");
  QWEN3VL_CHECK(reps >= 1, "--reps must be >= 1");
  if (threads > 0) kernels::set_num_threads(threads);

  auto t_load = Clock::now();
  Checkpoint ckpt = Checkpoint::load(dir, lo);
  Qwen3VLForConditionalGeneration model(ckpt);
  const double load_s = seconds(t_load);
  const auto& cfg = model.config();
  const std::string wfmt = dtype_name(ckpt.get("model.language_model.layers.0.mlp.up_proj.weight").dtype());
  const std::string wsummary = weight_format_summary(ckpt);
  // Bytes one decode step must read: every decoder weight except the embedding table (one row),
  // plus the lm_head (the embedding itself when tied).
  // The same tensors are what the bandwidth probe reads (kernels::measure_spans_read_gbs).
  double decode_bytes = 0;
  std::vector<kernels::ReadSpan> decode_spans;
  auto add_span = [&](const Tensor& t) {
    decode_bytes += static_cast<double>(t.nbytes());
    decode_spans.push_back({t.raw(), t.nbytes()});
  };
  for (const auto& [name, t] : ckpt.tensors())
    if (name.rfind("model.language_model.", 0) == 0 && name != "model.language_model.embed_tokens.weight") add_span(t);
  add_span(ckpt.get("lm_head.weight"));
  // Bandwidth of reading those bytes now: best of 2 passes (~0.25 s for a 2B bf16 decoder).
  auto probe_gbs = [&] { return kernels::measure_spans_read_gbs(decode_spans, kernels::num_threads(), 2); };
  struct BwRow {
    std::string test;
    double tok_s;
    std::vector<double> rate, gbs, fraction;  // per timed repetition: tok/s, probe GB/s, tok/s / limit
  };
  std::vector<BwRow> bw_rows;

  nlohmann::ordered_json rows = nlohmann::ordered_json::array();
  auto row = [&](const std::string& test, const Stat& s, double per) {
    // per: work units per run (tokens, or 0 for a plain time)
    nlohmann::ordered_json r{{"test", test}, {"median_s", s.median}, {"min_s", s.min}, {"max_s", s.max}};
    if (per > 0) {
      r["tok_s"] = per / s.median;
      r["tok_s_min"] = per / s.max;
      r["tok_s_max"] = per / s.min;
    }
    rows.push_back(r);
    if (!as_json) {
      if (per > 0)
        std::printf("| %-30s | %10.2f tok/s | %8.2f .. %8.2f | %9.3f s |\n", test.c_str(), per / s.median,
                    per / s.max, per / s.min, s.median);
      else
        std::printf("| %-30s | %12.1f ms | %8.1f .. %8.1f | %9.3f s |\n", test.c_str(), 1000 * s.median,
                    1000 * s.min, 1000 * s.max, s.median);
      std::fflush(stdout);
    }
  };
  if (!as_json) {
    std::printf("model %s | weights %s | threads %d | isa %s | load %.2f s\n\n", dir.c_str(), wsummary.c_str(),
                kernels::num_threads(), kernels::isa_name(kernels::active_isa()), load_s);
    std::printf("| %-30s | %16s | %20s | %11s |\n", "test", "result", "spread (min..max)", "median");
    std::printf("|--------------------------------|------------------|----------------------|-------------|\n");
  }

  for (int64_t n : pp) {
    auto ids = tokens(n, 1);
    Stat s = measure(reps, [&] {
      KVCache cache = model.make_cache(n + 1);
      auto t = Clock::now();
      model.forward_tokens(ids, cache, 1);
      return seconds(t);
    });
    row("pp" + std::to_string(n), s, static_cast<double>(n));
  }
  auto decode = [&](int64_t ctx_tokens) {
    KVCache cache = model.make_cache(ctx_tokens + tg + 2);
    auto prompt = tokens(std::max<int64_t>(ctx_tokens, 1), 2);
    BwRow bwr;
    Stat s = measure(reps, [&] {
      cache.truncate(0);
      model.forward_tokens(prompt, cache, 1);
      auto next = tokens(tg, 3);
      const double bw0 = mem_bw ? probe_gbs() : 0.0;
      auto t = Clock::now();
      for (int64_t i = 0; i < tg; ++i) model.forward_tokens({next[static_cast<size_t>(i)]}, cache, 1);
      const double dt = seconds(t);
      if (mem_bw) {  // the limit at the moment of this repetition: mean of the probes around it
        const double bw = 0.5 * (bw0 + probe_gbs());
        bwr.rate.push_back(static_cast<double>(tg) / dt);
        bwr.gbs.push_back(bw);
        bwr.fraction.push_back((static_cast<double>(tg) / dt) / (bw * 1e9 / decode_bytes));
      }
      return dt;
    });
    const std::string name = "tg" + std::to_string(tg) + (ctx_tokens > 1 ? " @ d" + std::to_string(ctx_tokens) : "");
    row(name, s, static_cast<double>(tg));
    if (mem_bw) {
      bwr.test = name;
      bwr.tok_s = static_cast<double>(tg) / s.median;
      bwr.rate.erase(bwr.rate.begin());  // the warm-up's
      bwr.gbs.erase(bwr.gbs.begin());
      bwr.fraction.erase(bwr.fraction.begin());
      bw_rows.push_back(std::move(bwr));
    }
  };
  if (tg > 0) decode(1);
  if (tg > 0 && depth > 0) decode(depth);

  const int64_t patch = cfg.vision_config.patch_size, cols = cfg.vision_config.patch_dim();
  for (int64_t px : vis) {
    const int64_t g = px / patch / 2 * 2;
    Tensor pv = random_pixels(g * g, cols);
    Stat s = measure(reps, [&] {
      auto t = Clock::now();
      model.model().visual().forward(pv, {GridTHW{1, g, g}});
      return seconds(t);
    });
    row("vision " + std::to_string(px) + "x" + std::to_string(px) + " (" + std::to_string(g * g) + " patches)", s, 0);
  }
  if (ttft > 0) {
    const int64_t g = ttft / patch / 2 * 2;
    MultimodalInputs in;
    // <|im_start|>user\n<|vision_start|> pads <|vision_end|> question <|im_end|>\n<|im_start|>assistant\n
    in.input_ids = {151644, 872, 198, cfg.vision_start_token_id};
    for (int64_t i = 0; i < g * g / 4; ++i) in.input_ids.push_back(cfg.image_token_id);
    in.input_ids.push_back(cfg.vision_end_token_id);
    for (int64_t t : tokens(12, 4)) in.input_ids.push_back(t);
    for (int64_t t : {151645, 198, 151644, 77091, 198}) in.input_ids.push_back(t);
    in.pixel_values = random_pixels(g * g, cols);
    in.image_grid_thw = {GridTHW{1, g, g}};
    const int64_t n = static_cast<int64_t>(in.input_ids.size());
    Stat s = measure(reps, [&] {
      KVCache cache = model.make_cache(n + 1);
      auto t = Clock::now();
      model.forward(in, cache, 1);
      return seconds(t);
    });
    row("ttft image " + std::to_string(ttft) + " (" + std::to_string(n) + " tok)", s, 0);
  }
  const double rss = peak_rss_mb();
  std::vector<double> all_gbs;
  nlohmann::ordered_json bw_json = nlohmann::ordered_json::array();
  for (const auto& r : bw_rows) {
    all_gbs.insert(all_gbs.end(), r.gbs.begin(), r.gbs.end());
    const double gbs = median_of(r.gbs);
    bw_json.push_back({{"test", r.test}, {"tok_s", r.tok_s}, {"mem_bw_gbs", gbs},
                       {"limit_tok_s", gbs * 1e9 / decode_bytes}, {"fraction_of_limit", median_of(r.fraction)},
                       {"fraction_min", *std::min_element(r.fraction.begin(), r.fraction.end())},
                       {"fraction_max", *std::max_element(r.fraction.begin(), r.fraction.end())},
                       {"per_rep_tok_s", r.rate}, {"per_rep_mem_bw_gbs", r.gbs}, {"per_rep_fraction", r.fraction}});
  }
  const double bw = median_of(all_gbs);
  if (as_json) {
    nlohmann::ordered_json j{{"model", dir},       {"weights", wfmt},
                             {"weights_detail", wsummary},
                             {"quant", quant_mode_name(lo.quant.text)},
                             {"quant_vision", quant_mode_name(lo.quant.vision)},
                             {"threads", kernels::num_threads()}, {"isa", kernels::isa_name(kernels::active_isa())},
                             {"load_s", load_s},  {"reps", reps},
                             {"peak_rss_mb", rss}, {"decode_weight_bytes", decode_bytes},
                             {"mem_bw_gbs", bw}, {"mem_bw_probe", "decoder weights, best of 2 passes, before + after each rep"},
                             {"bandwidth", bw_json}, {"results", rows}};
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("\npeak RSS %.0f MB\n", rss);
    if (!bw_rows.empty()) {
      std::printf("decode reads %.0f MB of weights per token; the bandwidth probe streams the same bytes (%d threads)\n"
                  "right before and after each timed repetition (limit = probe bandwidth / bytes per token):\n",
                  decode_bytes / 1e6, kernels::num_threads());
      for (const auto& r : bw_rows) {
        std::printf("%s: median %.0f%% of the limit; per repetition:", r.test.c_str(), 100 * median_of(r.fraction));
        for (size_t i = 0; i < r.rate.size(); ++i)
          std::printf("%s %.2f tok/s / %.2f (%.1f GB/s) = %.0f%%", i ? "," : "", r.rate[i], r.gbs[i] * 1e9 / decode_bytes,
                      r.gbs[i], 100 * r.fraction[i]);
        std::printf("\n");
      }
    }
  }
  return 0;
}
QWEN3VL_COMMAND("bench", "throughput table: prefill, decode, vision encode, time to first token, peak RSS",
                cmd_bench, {"--help", "-h", "--json"});

}  // namespace qwen3vl::cli

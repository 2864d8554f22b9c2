// vision-bench (developer command): time one vision-tower forward on random pixel values and
// report the peak resident memory. Meant for sizing, e.g. a 2048x2048 image with the 2B preset:
//   qwen3vl make-model --preset 2b --dtype bf16 --out /tmp/q2b
//   /usr/bin/time -v qwen3vl vision-bench --model /tmp/q2b --grid 128x128 [--frames T] [--threads N] [-v]
//       [--profile | --profile-cpu] [--no-fold] [--repeat R] [--mlp-chunk ROWS]
// With --frames 1 (a still image) every row repeats its frame over the temporal patch, as the
// image processor does (so the patch-embed temporal fold applies unless --no-fold); with more
// frames the pixels are random per frame (a video). --profile prints the per-stage times of the
// last forward (Qwen3VLVisionModel::set_profile), --profile-cpu in process CPU seconds (all threads;
// less sensitive to a loaded machine than wall time).
#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>

#include "cli/command.h"
#include "core/error.h"
#include "kernels/kernels.h"
#include "model/checkpoint.h"
#include "vision/qwen3vl_vision.h"

namespace qwen3vl::cli {

namespace {

double peak_rss_mib() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

static int cmd_vision_bench(Args& a) {
  if (a.flag({"--help", "-h"})) {
    std::printf(
        "usage: qwen3vl vision-bench --model DIR [--grid HxW] [--frames T] [--threads N] [--seed S] [-v]\n"
        "                            [--profile | --profile-cpu] [--no-fold] [--repeat R] [--mlp-chunk ROWS]\n"
        "  --grid         patches (HxW, multiples of the merge size; 64x64 = a 1024x1024 image), default 128x128\n"
        "  --frames       temporal patches; 1 = a still image (frame repeated: the temporal fold applies)\n"
        "  --profile      per-stage wall seconds of the last forward; --profile-cpu: process CPU seconds\n"
        "  --no-fold      disable the patch-embed temporal fold\n"
        "  --repeat       forwards to run (the best is reported)\n"
        "  --mlp-chunk    rows per MLP chunk in the blocks (default 4096)\n");
    return 0;
  }
  const auto model_dir = a.get({"--model", "-m"});
  const std::string grid_s = a.get_or({"--grid"}, "128x128");
  const long long t = a.get_int({"--frames", "-t"}, 1);
  const long long threads = a.get_int({"--threads"}, 0);
  const long long seed = a.get_int({"--seed"}, 0);
  const bool verbose = a.flag({"--verbose", "-v"});
  const bool profile_cpu = a.flag({"--profile-cpu"});
  const bool profile = a.flag({"--profile"}) || profile_cpu;
  const bool no_fold = a.flag({"--no-fold"});
  const long long repeat = a.get_int({"--repeat"}, 1);
  const long long mlp_chunk = a.get_int({"--mlp-chunk"}, 0);
  QWEN3VL_CHECK(repeat >= 1, "vision-bench: --repeat must be >= 1");
  a.reject_unknown();
  QWEN3VL_CHECK(model_dir.has_value(), "vision-bench: --model DIR is required (a checkpoint folder, e.g. from "
                                       "`qwen3vl make-model --preset 2b --out DIR`)");
  GridTHW g;
  g.t = t;
  const auto x = grid_s.find('x');
  QWEN3VL_CHECK(x != std::string::npos, "vision-bench: --grid must be HxW in patches, e.g. 128x128, got " + grid_s);
  try {
    g.h = std::stoll(grid_s.substr(0, x));
    g.w = std::stoll(grid_s.substr(x + 1));
  } catch (const std::exception&) {
    throw Error("vision-bench: --grid must be HxW in patches, e.g. 128x128, got " + grid_s);
  }
  if (threads > 0) kernels::set_num_threads(static_cast<int>(threads));

  auto t0 = std::chrono::steady_clock::now();
  const Checkpoint ckpt = Checkpoint::load(*model_dir);
  Qwen3VLVisionModel model(ckpt);
  if (no_fold) model.set_temporal_fold(false);
  if (mlp_chunk != 0) model.set_mlp_chunk_rows(mlp_chunk);
  const double load_s = seconds_since(t0);
  const auto& vc = model.config();
  check_grid_thw({g}, vc.spatial_merge_size);

  const int64_t n = g.t * g.h * g.w;
  Tensor pixel_values = Tensor::empty({n, vc.patch_dim()});  // [n, C*T*P*P]
  std::mt19937_64 rng(static_cast<uint64_t>(seed));
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  float* p = pixel_values.data<float>();
  for (int64_t i = 0; i < pixel_values.numel(); ++i) p[i] = u(rng);
  if (g.t == 1) {
    // A still image: the processor repeats the frame over the temporal patch, row = (c, t, y, x).
    const int64_t T = vc.temporal_patch_size, slice = vc.patch_size * vc.patch_size;
    for (int64_t r = 0; r < n; ++r)
      for (int64_t c = 0; c < vc.in_channels; ++c) {
        float* s0 = p + r * vc.patch_dim() + c * T * slice;
        for (int64_t t = 1; t < T; ++t)
          for (int64_t e = 0; e < slice; ++e) s0[t * slice + e] = s0[e];
      }
  }
  const double rss_before = peak_rss_mib();

  t0 = std::chrono::steady_clock::now();
  // Progress on stderr after every block (time since the forward started, peak RSS so far).
  DumpHook progress;
  if (verbose)
    progress = [&](const std::string& name, const Tensor&) {
      if (name.rfind("vision.blocks.", 0) == 0 || name == "image_embeds")
        std::fprintf(stderr, "vision-bench: %-18s %8.1f s  peak RSS %.0f MiB\n", name.c_str(), seconds_since(t0),
                     peak_rss_mib());
    };
  VisionProfile prof;
  VisionOutput out;
  double fwd_s = 0;
  for (long long rep = 0; rep < repeat; ++rep) {
    prof = VisionProfile();
    prof.cpu_clock = profile_cpu;
    if (profile) model.set_profile(&prof);
    t0 = std::chrono::steady_clock::now();
    out = model.forward(pixel_values, {g}, verbose ? &progress : nullptr);
    const double s = seconds_since(t0);
    fwd_s = rep == 0 || s < fwd_s ? s : fwd_s;  // best of the repeats
    if (repeat > 1) std::printf("vision-bench: forward %lld: %.2f s\n", rep + 1, s);
  }

  double checksum = 0;
  for (int64_t i = 0; i < out.embeds.numel(); ++i) checksum += std::fabs(out.embeds.data<float>()[i]);
  std::printf("vision-bench: grid t=%lld h=%lld w=%lld (%lld patches -> %lld tokens), depth %d, hidden %d, "
              "weights %s, isa %s, %d threads\n",
              static_cast<long long>(g.t), static_cast<long long>(g.h), static_cast<long long>(g.w),
              static_cast<long long>(n), static_cast<long long>(out.embeds.size(0)), vc.depth, vc.hidden_size,
              dtype_name(model.dtype()), kernels::isa_name(kernels::active_isa()), kernels::num_threads());
  std::printf("vision-bench: load %.2f s, forward %.2f s, peak RSS before forward %.0f MiB, after %.0f MiB, "
              "sum|embeds| %.6g\n",
              load_s, fwd_s, rss_before, peak_rss_mib(), checksum);
  if (profile) {
    const std::pair<const char*, double> rows[] = {
        {prof.patch_embed_folded ? "patch_embed (folded)" : "patch_embed", prof.patch_embed},
        {"pos_embed interp", prof.pos_embed},
        {"rotary + cu_seqlens", prof.rotary},
        {"block norms", prof.norms},
        {"attn qkv", prof.qkv},
        {"attn rope", prof.rope},
        {"attn core", prof.attention},
        {"attn proj", prof.attn_proj},
        {"mlp fc1", prof.mlp_fc1},
        {"mlp gelu", prof.mlp_act},
        {"mlp fc2", prof.mlp_fc2},
        {"residual adds", prof.residual},
        {"merger", prof.merger},
        {"deepstack mergers", prof.deepstack},
    };
    const double tot = prof.total();
    std::printf("vision-bench: stage times of the last forward (%s s, %% of the timed %.2f s; matmul %s):\n",
                profile_cpu ? "process CPU" : "wall", tot,
                kernels::matmul_precision() == kernels::MatmulPrecision::BF16 ? "bf16" : "f32");
    for (const auto& [name, sec] : rows)
      std::printf("  %-22s %8.3f s  %5.1f%%\n", name, sec, tot > 0 ? 100.0 * sec / tot : 0.0);
  }
  return 0;
}
QWEN3VL_COMMAND("vision-bench", "(developer) time one vision-tower forward on random pixels, print peak RSS",
                cmd_vision_bench, {"--verbose", "-v", "--profile", "--profile-cpu", "--no-fold", "--help", "-h"});

}  // namespace qwen3vl::cli

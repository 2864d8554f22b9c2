// vision-bench (developer command): time one vision-tower forward on random pixel values and
// report the peak resident memory. Meant for sizing, e.g. a 2048x2048 image with the 2B preset:
//   qwen3vl make-model --preset 2b --dtype bf16 --out /tmp/q2b
//   /usr/bin/time -v qwen3vl vision-bench --model /tmp/q2b --grid 128x128 [--frames T] [--threads N] [-v]
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
  const auto model_dir = a.get({"--model", "-m"});
  const std::string grid_s = a.get_or({"--grid"}, "128x128");
  const long long t = a.get_int({"--frames", "-t"}, 1);
  const long long threads = a.get_int({"--threads"}, 0);
  const long long seed = a.get_int({"--seed"}, 0);
  const bool verbose = a.flag({"--verbose", "-v"});
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
  const double load_s = seconds_since(t0);
  const auto& vc = model.config();
  check_grid_thw({g}, vc.spatial_merge_size);

  const int64_t n = g.t * g.h * g.w;
  Tensor pixel_values = Tensor::empty({n, vc.patch_dim()});  // [n, C*T*P*P]
  std::mt19937_64 rng(static_cast<uint64_t>(seed));
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  float* p = pixel_values.data<float>();
  for (int64_t i = 0; i < pixel_values.numel(); ++i) p[i] = u(rng);
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
  VisionOutput out = model.forward(pixel_values, {g}, verbose ? &progress : nullptr);
  const double fwd_s = seconds_since(t0);

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
  return 0;
}
QWEN3VL_COMMAND("vision-bench", "(developer) time one vision-tower forward on random pixels, print peak RSS",
                cmd_vision_bench, {"--verbose", "-v"});

}  // namespace qwen3vl::cli

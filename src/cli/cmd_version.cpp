#include <cstdio>

#include "cli/command.h"
#include "kernels/kernels.h"

namespace qwen3vl::cli {

static int cmd_version(Args& a) {
  a.reject_unknown();
  std::printf("qwen3vl 0.1.0 (isa %s, %d threads)\n", kernels::isa_name(kernels::active_isa()), kernels::num_threads());
  return 0;
}
QWEN3VL_COMMAND("version", "print the version and the SIMD level in use", cmd_version);

}  // namespace qwen3vl::cli

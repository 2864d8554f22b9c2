// Memory read bandwidth of this machine, measured the way a weight-streaming decode reads memory:
// `threads` threads each sum their share of a buffer far larger than the caches. Used by
// `qwen3vl bench` to state decode speed as a fraction of the bandwidth limit.
#pragma once

#include <cstddef>

namespace qwen3vl::kernels {

// Best of `reps` passes over a `bytes` buffer (touched once before timing), in GB/s (1e9 B/s).
double measure_read_bandwidth_gbs(int threads, size_t bytes = size_t{1} << 30, int reps = 5);

}  // namespace qwen3vl::kernels

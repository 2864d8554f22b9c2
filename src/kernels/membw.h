// Memory read bandwidth of this machine, measured the way a weight-streaming decode reads memory.
// Used by `qwen3vl bench` to state decode speed as a fraction of the bandwidth limit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace qwen3vl::kernels {

// The same reading (measure_spans_read_gbs) of a fresh `bytes` buffer, written once before timing:
// best of `reps` passes in GB/s (1e9 B/s).
double measure_read_bandwidth_gbs(int threads, size_t bytes = size_t{1} << 30, int reps = 5);

// A memory range some caller already holds (e.g. one weight tensor).
struct ReadSpan {
  const void* p;
  size_t bytes;
};

// Reads every byte of `spans` once per pass with `threads` threads (the concatenated spans cut
// into equal contiguous shares, in order) and returns the best of `reps` passes in GB/s (on
// AVX-512 every second pass also prefetches 4 KiB ahead, as the decode GEMVs do). Reading
// the decoder's own weights measures the limit for exactly the pages a decode step streams (same
// placement, same page sizes) without allocating anything. byte_sum (optional): the sum of all
// bytes read in one pass (what tests check: every byte read once).
double measure_spans_read_gbs(const std::vector<ReadSpan>& spans, int threads, int reps, uint64_t* byte_sum = nullptr);

}  // namespace qwen3vl::kernels

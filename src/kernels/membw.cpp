#include "kernels/membw.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "kernels/kernels.h"

namespace qwen3vl::kernels {

namespace detail {
uint64_t byte_sum_avx512(const uint8_t* p, size_t n, bool prefetch);  // membw_avx512.cpp
}

namespace {
uint64_t byte_sum_scalar(const uint8_t* p, size_t n) {
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += p[i];
    s1 += p[i + 1];
    s2 += p[i + 2];
    s3 += p[i + 3];
  }
  for (; i < n; ++i) s0 += p[i];
  return s0 + s1 + s2 + s3;
}
}  // namespace

double measure_read_bandwidth_gbs(int threads, size_t bytes, int reps) {
  QWEN3VL_CHECK(threads >= 1 && reps >= 1 && bytes >= 4096, "measure_read_bandwidth_gbs: bad arguments");
  const size_t n = bytes / sizeof(uint64_t);
  auto* buf = static_cast<uint64_t*>(std::aligned_alloc(64, n * sizeof(uint64_t)));
  QWEN3VL_CHECK(buf != nullptr, "measure_read_bandwidth_gbs: cannot allocate " + std::to_string(bytes) + " bytes");
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t i = 0; i < static_cast<int64_t>(n); ++i) buf[i] = static_cast<uint64_t>(i) * 0x9e3779b97f4a7c15ull;
  const double best = measure_spans_read_gbs({{buf, n * sizeof(uint64_t)}}, threads, reps);
  std::free(buf);
  return best;
}

double measure_spans_read_gbs(const std::vector<ReadSpan>& spans, int threads, int reps, uint64_t* byte_sum) {
  QWEN3VL_CHECK(threads >= 1 && reps >= 1, "measure_spans_read_gbs: bad arguments");
  std::vector<size_t> start(spans.size() + 1, 0);  // offsets of the spans in their concatenation
  for (size_t i = 0; i < spans.size(); ++i) start[i + 1] = start[i] + spans[i].bytes;
  const size_t total = start.back();
  if (total == 0) {
    if (byte_sum) *byte_sum = 0;
    return 0.0;
  }
  const bool simd = active_isa() == Isa::AVX512;
  double best = 0;
  uint64_t sum = 0;
  for (int r = 0; r < reps; ++r) {
    // AVX-512: odd passes add a software prefetch 4 KiB ahead (as the decode GEMVs do); the best
    // pass of either kind is the limit, so a kernel's own prefetching cannot beat the probe.
    const bool pf = r % 2 == 1;
    uint64_t pass = 0;
    const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : pass)
    {
      const size_t nt = static_cast<size_t>(omp_get_num_threads()), me = static_cast<size_t>(omp_get_thread_num());
      const size_t b = total / nt * me + std::min(me, total % nt);
      const size_t e = b + total / nt + (me < total % nt ? 1 : 0);
      for (size_t i = 0; i < spans.size(); ++i) {
        const size_t lo = std::max(b, start[i]), hi = std::min(e, start[i + 1]);
        if (lo >= hi) continue;
        const uint8_t* p = static_cast<const uint8_t*>(spans[i].p) + (lo - start[i]);
        pass += simd ? detail::byte_sum_avx512(p, hi - lo, pf) : byte_sum_scalar(p, hi - lo);
      }
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    sum = pass;
    const double gbs = static_cast<double>(total) / s / 1e9;
    if (gbs > best) best = gbs;
  }
  if (byte_sum) *byte_sum = sum;
  return best;
}

}  // namespace qwen3vl::kernels

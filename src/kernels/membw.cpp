#include "kernels/membw.h"

#include <omp.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "kernels/kernels.h"

namespace qwen3vl::kernels {

namespace detail {
uint64_t read_sum_avx512(const uint64_t* p, size_t n);  // membw_avx512.cpp
}

namespace {
uint64_t read_sum_scalar(const uint64_t* p, size_t n) {
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += p[i];
    s1 += p[i + 1];
    s2 += p[i + 2];
    s3 += p[i + 3];
  }
  for (; i < n; ++i) s0 += p[i];
  return s0 ^ s1 ^ s2 ^ s3;
}
}  // namespace

double measure_read_bandwidth_gbs(int threads, size_t bytes, int reps) {
  QWEN3VL_CHECK(threads >= 1 && reps >= 1 && bytes >= 4096, "measure_read_bandwidth_gbs: bad arguments");
  const size_t n = bytes / sizeof(uint64_t);
  auto* buf = static_cast<uint64_t*>(std::aligned_alloc(64, n * sizeof(uint64_t)));
  QWEN3VL_CHECK(buf != nullptr, "measure_read_bandwidth_gbs: cannot allocate " + std::to_string(bytes) + " bytes");
  const bool simd = active_isa() == Isa::AVX512;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t i = 0; i < static_cast<int64_t>(n); ++i) buf[i] = static_cast<uint64_t>(i) * 0x9e3779b97f4a7c15ull;
  double best = 0;
  volatile uint64_t sink = 0;
  for (int r = 0; r < reps; ++r) {
    uint64_t total = 0;
    const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads) reduction(^ : total)
    {
      const int nt = omp_get_num_threads(), me = omp_get_thread_num();
      const size_t chunk = (n / nt) & ~size_t{7};
      const size_t b = chunk * me, e = me == nt - 1 ? n : b + chunk;
      total ^= simd ? detail::read_sum_avx512(buf + b, e - b) : read_sum_scalar(buf + b, e - b);
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    sink = sink ^ total;
    const double gbs = static_cast<double>(n * sizeof(uint64_t)) / s / 1e9;
    if (gbs > best) best = gbs;
  }
  std::free(buf);
  return best;
}

}  // namespace qwen3vl::kernels

// AVX-512 read loop for the bandwidth probes (membw.cpp): 4 independent 512-bit accumulators,
// so the loop is bound by memory, not by the add latency.
// GCC 12's AVX-512 intrinsics headers self-initialise "undefined" vectors, which -Wuninitialized
// reports at every inlined use; the warning location is the header, so silence it there.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include <cstddef>
#include <cstdint>

namespace qwen3vl::kernels::detail {

// Sum of the bytes [p, p + n) (any alignment): vpsadbw against zero folds each 8 bytes into a
// 64-bit lane, one extra uop per 64 bytes read. prefetch: also a software prefetch 4 KiB ahead
// (may touch up to 4 KiB past the end: a prefetch never faults).
uint64_t byte_sum_avx512(const uint8_t* p, size_t n, bool prefetch) {
  // The decode GEMVs prefetch 4 KiB ahead of their reads (quant_avx512.cpp); the probe can too.
  constexpr size_t kPrefetchAhead = 4096;
  uint64_t s = 0;
  while (n > 0 && (reinterpret_cast<uintptr_t>(p) & 63) != 0) {
    s += *p++;
    --n;
  }
  const __m512i z = _mm512_setzero_si512();
  __m512i a0 = z, a1 = z, a2 = z, a3 = z;
  size_t i = 0;
  for (; i + 256 <= n; i += 256) {
    if (prefetch) {
#pragma GCC unroll 4
      for (int l = 0; l < 4; ++l) _mm_prefetch(reinterpret_cast<const char*>(p + i + kPrefetchAhead + 64 * l), _MM_HINT_T0);
    }
    a0 = _mm512_add_epi64(a0, _mm512_sad_epu8(_mm512_load_si512(p + i), z));
    a1 = _mm512_add_epi64(a1, _mm512_sad_epu8(_mm512_load_si512(p + i + 64), z));
    a2 = _mm512_add_epi64(a2, _mm512_sad_epu8(_mm512_load_si512(p + i + 128), z));
    a3 = _mm512_add_epi64(a3, _mm512_sad_epu8(_mm512_load_si512(p + i + 192), z));
  }
  s += static_cast<uint64_t>(_mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3))));
  for (; i < n; ++i) s += p[i];
  return s;
}

}  // namespace qwen3vl::kernels::detail

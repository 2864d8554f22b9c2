// linear() with bf16 weights at MatmulPrecision::BF16 (AVX512-BF16: vdpbf16ps GEMV for m <= 2,
// bf16-rounded x + f32 FMA kernels above; see gemm_bf16_avx512.cpp) vs MatmulPrecision::F32
// (f32 FMA path), same weights, same binary run:
//
//   build-gemm/bin/bench_kernels --benchmark_filter='LinearPrec|StreamRead|Memcpy|Peak' --benchmark_counters_tabular=true
//
// args: m, k, n, prec (0 = F32, 1 = BF16), thr. Counters: GFLOP/s (2 m n k), GB/s (weight bytes
// + f32 activations in/out once per call; compare the GEMV with BM_StreamRead's read bandwidth).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <vector>

#include <immintrin.h>

#include "core/dtype.h"
#include "kernels/kernels.h"

namespace {

using namespace qwen3vl;
using namespace qwen3vl::kernels;

// Deterministic values in [-1, 1) without <random> (the lm_head weight has 311 M elements).
inline float hash_val(uint64_t i, uint64_t seed) {
  uint64_t z = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<float>(z >> 40) * (2.0f / 16777216.0f) - 1.0f;
}

void BM_LinearPrec(benchmark::State& st) {
  const int64_t m = st.range(0), k = st.range(1), n = st.range(2);
  const MatmulPrecision prec = st.range(3) ? MatmulPrecision::BF16 : MatmulPrecision::F32;
  const MatmulPrecision prev = matmul_precision();
  set_matmul_precision(prec);
  set_num_threads(static_cast<int>(st.range(4)));
  std::vector<uint16_t> w(static_cast<size_t>(n * k));
  for (size_t i = 0; i < w.size(); ++i) w[i] = f32_to_bf16(hash_val(i, 7) * 0.05f);
  std::vector<float> x(static_cast<size_t>(m * k)), bias(static_cast<size_t>(n)), y(static_cast<size_t>(m * n));
  for (size_t i = 0; i < x.size(); ++i) x[i] = hash_val(i, 1);
  for (size_t i = 0; i < bias.size(); ++i) bias[i] = hash_val(i, 2);
  WeightRef wr;
  wr.dtype = DType::BF16;
  wr.data = w.data();
  wr.n = n;
  wr.k = k;
  for (auto _ : st) {
    linear(x.data(), m, wr, bias.data(), y.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_matmul_precision(prev);
  const double flops = 2.0 * m * n * k;
  const double bytes = 2.0 * n * k + 4.0 * (m * k + m * n);
  st.counters["GFLOP/s"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::kIs1000);
  st.counters["GB/s"] = benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate,
                                           benchmark::Counter::kIs1000);
  st.SetLabel(std::string(isa_name(active_isa())) + (prec == MatmulPrecision::BF16 ? " bf16" : " f32") +
              (cpu_has_avx512_bf16() ? " (cpu: avx512_bf16)" : ""));
}

void LinearPrecArgs(benchmark::internal::Benchmark* b) {
  b->ArgNames({"m", "k", "n", "prec", "thr"});
  for (int t : {1, 2})
    for (int p : {1, 0}) {
      // Text 2B prefill, 512 tokens: hidden 2048, intermediate 6144.
      b->Args({512, 2048, 2048, p, t});
      b->Args({512, 2048, 6144, p, t});
      // Text prefill down_proj 6144 -> 2048.
      b->Args({512, 6144, 2048, p, t});
      // Vision 2B (1024 x 1024 image: 4096 patches): fc1 1024 -> 4096, fc2 4096 -> 1024,
      // qkv 1024 -> 3072, proj 1024 -> 1024.
      b->Args({4096, 1024, 4096, p, t});
      b->Args({4096, 4096, 1024, p, t});
      b->Args({4096, 1024, 3072, p, t});
      b->Args({4096, 1024, 1024, p, t});
      // Decode: gate/up GEMV and the lm_head (vocab 151936).
      b->Args({1, 2048, 6144, p, t});
      b->Args({1, 2048, 151936, p, t});
    }
  // The GEMV / GEMM crossover (single thread).
  for (int m : {2, 4, 8, 12, 15, 16, 24, 32, 64})
    for (int p : {1, 0}) b->Args({m, 2048, 2048, p, 1});
}
BENCHMARK(BM_LinearPrec)->Apply(LinearPrecArgs)->UseRealTime()->Unit(benchmark::kMillisecond);


// Peak vdpbf16ps throughput of one core (24 independent zmm chains; 64 flops per instruction),
// to compare with BM_FmaPeak (bench_kernels.cpp): it decides whether a bf16 dot-product GEMM
// can beat the f32 FMA GEMM on this CPU. Skipped without AVX512-BF16.
__attribute__((target("avx512f,avx512bf16"), noinline)) float dpbf16_peak_loop(int64_t iters) {
  __m512 acc[24];
  for (int i = 0; i < 24; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
  __m512bh a = (__m512bh)_mm512_set1_epi32(0x3f803f80), b = (__m512bh)_mm512_set1_epi32(0x33d633d6);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 24
    for (int i = 0; i < 24; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
    asm volatile("" : "+v"(a));
  }
  __m512 s = acc[0];
  for (int i = 1; i < 24; ++i) s = _mm512_add_ps(s, acc[i]);
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, s);
  float t = 0.0f;
  for (float v : lanes) t += v;
  return t;
}

void BM_Dpbf16Peak(benchmark::State& st) {
  if (!cpu_has_avx512_bf16()) {
    st.SkipWithError("no AVX512-BF16");
    return;
  }
  int64_t iters = 1 << 20;
  for (auto _ : st) {
    benchmark::DoNotOptimize(iters);
    float r = dpbf16_peak_loop(iters);
    benchmark::DoNotOptimize(r);
  }
  st.counters["GFLOP/s"] = benchmark::Counter(2.0 * 32 * 24 * iters, benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::kIs1000);
}
BENCHMARK(BM_Dpbf16Peak)->Unit(benchmark::kMillisecond);

}  // namespace

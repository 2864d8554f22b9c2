// Google Benchmark micro-benchmarks of the kernels at Qwen3-VL-2B shapes.
//
//   build-kernels/bin/bench_kernels --benchmark_counters_tabular=true
//
// Every benchmark takes the thread count as its last argument; counters: GFLOP/s (2 m n k
// per linear), GB/s (bytes of weights + activations touched once per call). StreamRead
// measures the memory read bandwidth the GEMV should approach (a sum over a 256 MiB buffer,
// far larger than the L3). The ISA is the best the CPU has, or QWEN3VL_ISA.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include <immintrin.h>
#include <omp.h>

#include "core/dtype.h"
#include "kernels/kernels.h"

namespace {

using namespace qwen3vl;
using namespace qwen3vl::kernels;

std::vector<float> rand_f32(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

struct Weight {
  std::vector<uint16_t> h;
  std::vector<float> f;
  WeightRef ref;
};

Weight make_weight(DType dt, int64_t n, int64_t k) {
  Weight w;
  auto v = rand_f32(static_cast<size_t>(n * k), 7);
  if (dt == DType::F32) {
    w.f = std::move(v);
    w.ref.data = w.f.data();
  } else {
    w.h.resize(v.size());
    for (size_t i = 0; i < v.size(); ++i) w.h[i] = dt == DType::BF16 ? f32_to_bf16(v[i]) : f32_to_f16(v[i]);
    w.ref.data = w.h.data();
  }
  w.ref.dtype = dt;
  w.ref.n = n;
  w.ref.k = k;
  return w;
}

// args: m, k, n, dtype (0 f32, 1 bf16, 2 f16), threads
void BM_Linear(benchmark::State& st) {
  const int64_t m = st.range(0), k = st.range(1), n = st.range(2);
  const DType dt = st.range(3) == 0 ? DType::F32 : st.range(3) == 1 ? DType::BF16 : DType::F16;
  set_num_threads(static_cast<int>(st.range(4)));
  Weight w = make_weight(dt, n, k);
  auto x = rand_f32(static_cast<size_t>(m * k), 1);
  auto bias = rand_f32(static_cast<size_t>(n), 2);
  std::vector<float> y(static_cast<size_t>(m * n));
  for (auto _ : st) {
    linear(x.data(), m, w.ref, bias.data(), y.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  const double flops = 2.0 * m * n * k;
  const double bytes = static_cast<double>(n * k * dtype_size(dt)) + 4.0 * (m * k + m * n);
  st.counters["GFLOP/s"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::kIs1000);
  st.counters["GB/s"] = benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate,
                                           benchmark::Counter::kIs1000);
  st.SetLabel(std::string(isa_name(active_isa())) + " " + dtype_name(dt));
}

void LinearArgs(benchmark::internal::Benchmark* b) {
  b->ArgNames({"m", "k", "n", "dt", "thr"});
  for (int t : {1, 2}) {
    // Text 2B decode: fused-size GEMV (gate/up: K 2048 -> N 6144), bf16 and f32 weights.
    b->Args({1, 2048, 6144, 1, t});
    b->Args({1, 2048, 6144, 0, t});
    b->Args({1, 6144, 2048, 1, t});   // down_proj
    b->Args({4, 2048, 6144, 1, t});   // small batch
    // Text 2B prefill of 512 tokens (q/o proj).
    b->Args({512, 2048, 2048, 1, t});
    b->Args({512, 2048, 6144, 1, t});
    // Vision 2B (Dv 1024, Iv 4096): patch embed 1536 -> 1024, qkv, fc1 over 1024 patches.
    b->Args({1024, 1536, 1024, 1, t});
    b->Args({1024, 1024, 3072, 1, t});
    b->Args({1024, 1024, 4096, 1, t});
    b->Args({1024, 1024, 4096, 0, t});
  }
  b->Args({512, 2000, 2048, 1, 1});  // k not a power of two (cache-set aliasing check)
  // Short prompts: the GEMV / GEMM switch region.
  for (int m : {8, 16, 32, 64, 128}) b->Args({m, 2048, 2048, 1, 1});
}
BENCHMARK(BM_Linear)->Apply(LinearArgs)->UseRealTime()->Unit(benchmark::kMillisecond);

// Memory read bandwidth: sum of a 256 MiB buffer as 64-bit integers (an associative integer
// reduction the compiler vectorises, so the loop is load-bound, not add-latency-bound).
void BM_StreamRead(benchmark::State& st) {
  const int nt = static_cast<int>(st.range(0));
  const size_t n = (256u << 20) / sizeof(uint64_t);
  std::vector<uint64_t> buf(n, 1);
  uint64_t total = 0;
  for (auto _ : st) {
    uint64_t s = 0;
#pragma omp parallel for num_threads(nt) reduction(+ : s) schedule(static)
    for (int64_t i = 0; i < static_cast<int64_t>(n); ++i) s += buf[i];
    total += s;
    benchmark::DoNotOptimize(total);
  }
  st.counters["GB/s"] = benchmark::Counter(static_cast<double>(n * sizeof(uint64_t)),
                                           benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}
BENCHMARK(BM_StreamRead)->ArgName("thr")->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

// memcpy bandwidth (read + write), 128 MiB, single thread.
void BM_Memcpy(benchmark::State& st) {
  const size_t n = 128u << 20;
  std::vector<char> a(n, 1), b(n, 0);
  for (auto _ : st) {
    std::memcpy(b.data(), a.data(), n);
    benchmark::DoNotOptimize(b.data());
    benchmark::ClobberMemory();
  }
  st.counters["GB/s"] = benchmark::Counter(2.0 * n, benchmark::Counter::kIsIterationInvariantRate,
                                           benchmark::Counter::kIs1000);
}
BENCHMARK(BM_Memcpy)->UseRealTime()->Unit(benchmark::kMillisecond);

// Peak f32 FMA throughput of one core (AVX-512: 16 independent zmm FMA chains), to put the
// GEMM GFLOP/s in proportion. Skipped when the CPU lacks AVX-512.
__attribute__((target("avx512f"), noinline)) float fma_peak_loop(int64_t iters) {
  __m512 acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  }
  __m512 s = acc[0];
  for (int i = 1; i < 16; ++i) s = _mm512_add_ps(s, acc[i]);
  return _mm512_reduce_add_ps(s);
}

void BM_FmaPeak(benchmark::State& st) {
  if (!__builtin_cpu_supports("avx512f")) {
    st.SkipWithError("no AVX-512");
    return;
  }
  int64_t iters = 1 << 20;
  for (auto _ : st) {
    benchmark::DoNotOptimize(iters);
    float r = fma_peak_loop(iters);
    benchmark::DoNotOptimize(r);
  }
  st.counters["GFLOP/s"] = benchmark::Counter(2.0 * 16 * 16 * iters, benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::kIs1000);
}
BENCHMARK(BM_FmaPeak)->Unit(benchmark::kMillisecond);

// Attention: vision full attention (16 heads, d 64, 1024 tokens) and text decode (16/8 heads,
// d 128, 1 query over a 2048-token cache).
void BM_Attention(benchmark::State& st) {
  const int64_t sq = st.range(0), sk = st.range(1), hq = st.range(2), hk = st.range(3), d = st.range(4);
  set_num_threads(static_cast<int>(st.range(5)));
  auto q = rand_f32(static_cast<size_t>(sq * hq * d), 1);
  auto k = rand_f32(static_cast<size_t>(sk * hk * d), 2);
  auto v = rand_f32(static_cast<size_t>(sk * hk * d), 3);
  std::vector<float> out(static_cast<size_t>(sq * hq * d));
  AttentionArgs a;
  a.q = q.data(); a.q_stride = hq * d;
  a.k = k.data(); a.k_stride = hk * d;
  a.v = v.data(); a.v_stride = hk * d;
  a.out = out.data(); a.out_stride = hq * d;
  a.sq = sq; a.sk = sk; a.hq = hq; a.hk = hk; a.d = d;
  a.scale = 0.125f;
  a.causal = sq > 1 && hq != 16;
  for (auto _ : st) {
    attention(a);
    benchmark::DoNotOptimize(out.data());
  }
  st.counters["GFLOP/s"] = benchmark::Counter(4.0 * sq * sk * hq * d, benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::kIs1000);
  st.SetLabel(isa_name(active_isa()));
}
BENCHMARK(BM_Attention)
    ->ArgNames({"sq", "sk", "hq", "hk", "d", "thr"})
    ->Args({1024, 1024, 16, 16, 64, 1})
    ->Args({1024, 1024, 16, 16, 64, 2})
    ->Args({1, 2048, 16, 8, 128, 1})
    ->Args({1, 2048, 16, 8, 128, 2})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();

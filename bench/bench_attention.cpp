// Fused attention at the Qwen3-VL-2B shapes, f32 vs bf16 precision (AttentionArgs::bf16):
//   vision   sq = sk = 4096 (1024^2 image) and 784, 16 heads, d 64, non-causal
//   prefill  512 causal, hq 16 / hk 8, d 128
//   decode   sq 1, sk 4096, hq 16 / hk 8, d 128
// and, for bf16, keys/values given as f32 or as bf16 (kvb16 = 1: AttentionArgs::k_bf16 / v_bf16,
// a bf16 KV cache).
//   build-attn/bin/bench_kernels --benchmark_filter=BM_Attn --benchmark_counters_tabular=true
// GFLOP/s counts 4 sq sk hq d (2 for Q K^T, 2 for P V; causal: the visible pairs only); with
// one thread it is per CPU second, with two per wall second.
// The ISA is the best the CPU has (or QWEN3VL_ISA); bf16 falls back to the scalar twin without
// AVX512-BF16.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/kernels.h"

namespace {

using namespace qwen3vl::kernels;

std::vector<float> attn_rand(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// args: sq, sk, hq, hk, d, causal, bf16, threads, bf16 K/V
void BM_Attn(benchmark::State& st) {
  const int64_t sq = st.range(0), sk = st.range(1), hq = st.range(2), hk = st.range(3), d = st.range(4);
  const bool causal = st.range(5) != 0, bf16 = st.range(6) != 0, kvb16 = st.range(8) != 0;
  set_num_threads(static_cast<int>(st.range(7)));
  if (bf16 && !cpu_has_avx512_bf16()) {
    st.SkipWithError("no AVX512-BF16");
    return;
  }
  // q/k/v in one [s, 3, h, d]-like buffer per tensor with the vision / text strides.
  auto q = attn_rand(static_cast<size_t>(sq * hq * d), 1);
  auto k = attn_rand(static_cast<size_t>(sk * hk * d), 2);
  auto v = attn_rand(static_cast<size_t>(sk * hk * d), 3);
  for (auto& x : q) x *= 3.0f;  // scores of a few units
  std::vector<float> out(static_cast<size_t>(sq * hq * d));
  // bf16 K/V: the bf16 values of k / v (truncated; any bf16 values do).
  std::vector<uint16_t> kb(kvb16 ? k.size() : 0), vb(kvb16 ? v.size() : 0);
  for (size_t e = 0; e < kb.size(); ++e) {
    uint32_t u;
    std::memcpy(&u, &k[e], 4);
    kb[e] = static_cast<uint16_t>(u >> 16);
    std::memcpy(&u, &v[e], 4);
    vb[e] = static_cast<uint16_t>(u >> 16);
  }
  AttentionArgs a;
  a.q = q.data(); a.q_stride = hq * d;
  a.k = k.data(); a.k_stride = hk * d;
  a.v = v.data(); a.v_stride = hk * d;
  a.out = out.data(); a.out_stride = hq * d;
  a.sq = sq; a.sk = sk; a.hq = hq; a.hk = hk; a.d = d;
  a.scale = 1.0f / 8.0f;
  a.causal = causal;
  a.q_pos0 = sk - sq;
  a.bf16 = bf16;
  if (kvb16) {
    a.k = a.v = nullptr;
    a.k_bf16 = kb.data();
    a.v_bf16 = vb.data();
  }
  for (auto _ : st) {
    attention(a);
    benchmark::DoNotOptimize(out.data());
  }
  double pairs = static_cast<double>(sq) * sk;
  if (causal) pairs = static_cast<double>(sq) * (sk - sq) + static_cast<double>(sq) * (sq + 1) / 2;
  st.counters["GFLOP/s"] = benchmark::Counter(4.0 * pairs * hq * d, benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::kIs1000);
  st.SetLabel(std::string(isa_name(active_isa())) + (bf16 ? " bf16" : " f32") + (kvb16 ? " kv-bf16" : ""));
}

template <int Threads>
void AttnArgs(benchmark::internal::Benchmark* b) {
  b->ArgNames({"sq", "sk", "hq", "hk", "d", "causal", "bf16", "thr", "kvb16"});
  for (int bf : {0, 1}) {
    b->Args({4096, 4096, 16, 16, 64, 0, bf, Threads, 0});
    b->Args({784, 784, 16, 16, 64, 0, bf, Threads, 0});
    b->Args({512, 512, 16, 8, 128, 1, bf, Threads, 0});
    b->Args({1, 4096, 16, 8, 128, 1, bf, Threads, 0});
  }
  // bf16 KV cache (text decoder): prefill, a few queries, decode.
  b->Args({512, 512, 16, 8, 128, 1, 1, Threads, 1});
  b->Args({4, 4096, 16, 8, 128, 1, 1, Threads, 1});
  b->Args({1, 4096, 16, 8, 128, 1, 1, Threads, 1});
}
// One thread: GFLOP/s per CPU second (robust on a shared machine); two threads: per wall second.
BENCHMARK(BM_Attn)->Apply(AttnArgs<1>)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Attn)->Apply(AttnArgs<2>)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

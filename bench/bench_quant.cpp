// Quantized-weight linear (Q8_0 / Q4_0) vs BF16 weights at Qwen3-VL-2B shapes.
//
//   build-quant/bin/bench_kernels --benchmark_filter='QuantLinear|StreamRead' --benchmark_counters_tabular=true
//
// args: m, k, n, wt (0 bf16 at MatmulPrecision::BF16, 1 Q8_0, 2 Q4_0), thr. Counters: GB/s =
// weight bytes per call / time (compare with BM_StreamRead in the same run), GFLOP/s = 2 m n k.
// Weights are random levels / scales (the kernels' speed does not depend on the values).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/quant.h"
#include "kernels/kernels.h"
#include "kernels/membw.h"

namespace {

using namespace qwen3vl;
using namespace qwen3vl::kernels;

struct BenchWeight {
  std::vector<uint8_t> bytes;
  WeightRef ref;
};

BenchWeight make_bench_weight(int wt, int64_t n, int64_t k) {
  BenchWeight w;
  const DType dt = wt == 0 ? DType::BF16 : wt == 1 ? DType::Q8_0 : DType::Q4_0;
  w.bytes.resize(dtype_nbytes(dt, n * k));
  std::mt19937 rng(42);
  uint32_t* p = reinterpret_cast<uint32_t*>(w.bytes.data());
  const size_t words = w.bytes.size() / 4;
  if (dt == DType::BF16) {
    std::uniform_real_distribution<float> d(-1.0f, 1.0f);
    auto* h = reinterpret_cast<uint16_t*>(w.bytes.data());
    for (size_t i = 0; i < w.bytes.size() / 2; ++i) h[i] = f32_to_bf16(d(rng));
  } else {
    for (size_t i = 0; i < words; ++i) p[i] = rng();
    const size_t bb = quant_block_bytes(dt);
    const uint16_t scale = f32_to_f16(0.01f);
    for (size_t b = 0; b < w.bytes.size() / bb; ++b) std::memcpy(w.bytes.data() + b * bb, &scale, 2);
  }
  w.ref = WeightRef{dt, w.bytes.data(), n, k};
  return w;
}

void BM_QuantLinear(benchmark::State& st) {
  const int64_t m = st.range(0), k = st.range(1), n = st.range(2);
  const int wt = static_cast<int>(st.range(3));
  set_num_threads(static_cast<int>(st.range(4)));
  set_matmul_precision(MatmulPrecision::BF16);
  BenchWeight w = make_bench_weight(wt, n, k);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(m * k)), y(static_cast<size_t>(m * n));
  for (auto& v : x) v = d(rng);
  for (auto _ : st) {
    linear(x.data(), m, w.ref, nullptr, y.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  st.counters["GB/s"] = benchmark::Counter(static_cast<double>(w.bytes.size()),
                                           benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
  st.counters["GFLOP/s"] = benchmark::Counter(2.0 * m * n * k, benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::kIs1000);
  st.SetLabel(std::string(isa_name(active_isa())) + " " + dtype_name(w.ref.dtype));
}

void QuantArgs(benchmark::internal::Benchmark* b) {
  b->ArgNames({"m", "k", "n", "wt", "thr"});
  for (int t : {1, 2})
    for (int wt : {0, 1, 2}) {
      b->Args({1, 2048, 6144, wt, t});    // gate / up
      b->Args({1, 6144, 2048, wt, t});    // down
      b->Args({1, 2048, 151936, wt, t});  // lm_head
      b->Args({512, 2048, 6144, wt, t});  // prefill pp512
    }
  // Weights resident in L2 (Q8_0 557 KB): the kernels' compute rate, not the memory's.
  for (int wt : {0, 1, 2}) b->Args({1, 2048, 256, wt, 1});
  // GEMV / GEMM crossover (1 thread).
  for (int wt : {1, 2})
    for (int m : {2, 4, 8, 16, 32, 64}) b->Args({m, 2048, 2048, wt, 1});
}
BENCHMARK(BM_QuantLinear)->Apply(QuantArgs)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

namespace {

// Decode GEMV (m = 1) at the 2B decode shapes, streaming W from DRAM like the real model: enough
// distinct copies of W (each call uses the next) that the set is far larger than the caches
// (>= 192 MiB in all). args: k, n, wt (1 Q8_0, 2 Q4_0), thr, l2 (1: one small copy, n rows
// that stay in L2: the compute rate). GB/s = weight bytes read per call / time; compare with
// BM_StreamRead (same thread count) in the same run.
//
//   build-quant/bin/bench_kernels --benchmark_filter='QuantDecode|StreamRead' --benchmark_counters_tabular=true
void BM_QuantDecode(benchmark::State& st) {
  const int64_t k = st.range(0), n = st.range(1);
  const int wt = static_cast<int>(st.range(2));
  set_num_threads(static_cast<int>(st.range(3)));
  const bool l2 = st.range(4) != 0;
  BenchWeight w0 = make_bench_weight(wt, n, k);
  const size_t bytes = w0.bytes.size();
  const size_t copies = l2 ? 1 : std::max<size_t>(2, (size_t{192} << 20) / bytes + 1);
  std::vector<std::vector<uint8_t>> ws(copies, w0.bytes);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(k)), y(static_cast<size_t>(n));
  for (auto& v : x) v = d(rng);
  size_t c = 0;
  double best = 1e30;  // fastest single call (s): robust to other processes on a shared machine
  for (auto _ : st) {
    WeightRef ref = w0.ref;
    ref.data = ws[c].data();
    c = c + 1 == copies ? 0 : c + 1;
    const auto t0 = std::chrono::steady_clock::now();
    linear(x.data(), 1, ref, nullptr, y.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  st.counters["GB/s"] = benchmark::Counter(static_cast<double>(bytes), benchmark::Counter::kIsIterationInvariantRate,
                                           benchmark::Counter::kIs1000);
  st.counters["best_GB/s"] = static_cast<double>(bytes) / best / 1e9;
  st.SetLabel(std::string(isa_name(active_isa())) + " " + dtype_name(w0.ref.dtype) + (l2 ? " L2" : " DRAM"));
}

void DecodeArgs(benchmark::internal::Benchmark* b) {
  b->ArgNames({"k", "n", "wt", "thr", "l2"});
  for (int t : {1, 2})
    for (int wt : {1, 2}) {
      b->Args({2048, 2048, wt, t, 0});    // q / o
      b->Args({2048, 1024, wt, t, 0});    // k / v
      b->Args({2048, 6144, wt, t, 0});    // gate / up
      b->Args({6144, 2048, wt, t, 0});    // down
    }
  for (int t : {1, 2}) b->Args({2048, 151936, 1, t, 0});  // lm_head (Q8_0 in both formats)
  // L2-resident (one core): compute rate. k = 32 and a small n: the per-call fixed costs.
  for (int wt : {1, 2}) {
    b->Args({2048, 256, wt, 1, 1});
    b->Args({6144, 64, wt, 1, 1});
    b->Args({2048, 8, wt, 1, 1});
  }
}
BENCHMARK(BM_QuantDecode)->Apply(DecodeArgs)->UseRealTime();

}  // namespace

namespace {
// The read-bandwidth probe `qwen3vl bench` reports as mem_bw_gbs (256 MiB, best of 3).
void BM_QuantReadBW(benchmark::State& st) {
  double gbs = 0;
  for (auto _ : st) gbs = qwen3vl::kernels::measure_read_bandwidth_gbs(static_cast<int>(st.range(0)), size_t{256} << 20, 3);
  st.counters["GB/s"] = gbs;
}
BENCHMARK(BM_QuantReadBW)->ArgName("thr")->Arg(1)->Arg(2)->Iterations(1)->Unit(benchmark::kMillisecond);
}  // namespace

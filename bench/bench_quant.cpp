// Quantized-weight linear (Q8_0 / Q4_0) vs BF16 weights at Qwen3-VL-2B shapes.
//
//   build-quant/bin/bench_kernels --benchmark_filter='QuantLinear|StreamRead' --benchmark_counters_tabular=true
//
// args: m, k, n, wt (0 bf16 at MatmulPrecision::BF16, 1 Q8_0, 2 Q4_0), thr. Counters: GB/s =
// weight bytes per call / time (compare with BM_StreamRead in the same run), GFLOP/s = 2 m n k.
// Weights are random levels / scales (the kernels' speed does not depend on the values).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/quant.h"
#include "kernels/kernels.h"

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

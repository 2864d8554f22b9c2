// linear() for Q8_0 / Q4_0 weights (avx512). PLACEHOLDER.
#include "core/error.h"
#include "kernels/kernels_impl.h"


namespace qwen3vl::kernels::detail {

void linear_quant_avx512(const float*, int64_t, const WeightRef&, const float*, float*) {
  throw Error("linear: quantized weights are not implemented yet");
}

}  // namespace qwen3vl::kernels::detail

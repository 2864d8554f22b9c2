// linear() for Q8_0 / Q4_0 weights (scalar). PLACEHOLDER.
#include "core/error.h"
#include "kernels/kernels_impl.h"
#include "kernels/quant.h"

namespace qwen3vl::kernels {

void quantize_rows(DType, const float*, int64_t, int64_t, void*) { throw Error("quantize_rows: not implemented"); }
void quantize_rows_bf16(DType, const uint16_t*, int64_t, int64_t, void*) {
  throw Error("quantize_rows_bf16: not implemented");
}
void dequantize_rows(DType, const void*, int64_t, int64_t, int64_t, float*) {
  throw Error("dequantize_rows: not implemented");
}

namespace detail {
void linear_quant_scalar(const float*, int64_t, const WeightRef&, const float*, float*) {
  throw Error("linear: quantized weights are not implemented yet");
}
}  // namespace detail
}  // namespace qwen3vl::kernels

// Run-time ISA selection, thread count, argument checks and the public op entry points.
#include <omp.h>

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/kernels_impl.h"

namespace qwen3vl::kernels {

namespace {

bool cpu_has(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return true;
    case Isa::AVX2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::AVX512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }
  return false;
}

const detail::OpTable& table_for(Isa isa) {
  switch (isa) {
    case Isa::AVX2: return detail::avx2_table();
    case Isa::AVX512: return detail::avx512_table();
    default: return detail::scalar_table();
  }
}

struct State {
  std::atomic<int> isa{-1};       // -1: not chosen yet
  std::atomic<int> precision{-1};  // -1: not chosen yet (QWEN3VL_MATMUL, default BF16)
  std::atomic<int> threads{0};    // 0: not chosen yet
  std::mutex init_mu;
};
State& state() {
  static State s;
  return s;
}

Isa isa_from_env() {
  const char* env = std::getenv("QWEN3VL_ISA");
  if (!env || !*env) return best_isa();
  std::string v(env);
  Isa isa;
  if (v == "scalar") isa = Isa::Scalar;
  else if (v == "avx2") isa = Isa::AVX2;
  else if (v == "avx512") isa = Isa::AVX512;
  else throw Error("QWEN3VL_ISA='" + v + "' is not one of scalar, avx2, avx512");
  if (!cpu_has(isa)) throw Error(std::string("QWEN3VL_ISA=") + v + ": this CPU does not support " + isa_name(isa));
  return isa;
}

int default_threads() {
  int n = omp_get_num_procs();
  if (n < 1) n = 1;
  const char* env = std::getenv("QWEN3VL_THREADS");
  if (env && *env) {
    char* end = nullptr;
    long v = std::strtol(env, &end, 10);
    if (end == env || *end != '\0' || v < 0 || v > 4096)
      throw Error(std::string("QWEN3VL_THREADS='") + env + "' is not a thread count (0 = all cores)");
    if (v > 0) n = static_cast<int>(v);
  }
  return n;
}

const detail::OpTable& table() {
  State& s = state();
  int i = s.isa.load(std::memory_order_acquire);
  if (i < 0) {
    std::lock_guard<std::mutex> lock(s.init_mu);
    i = s.isa.load();
    if (i < 0) {
      i = static_cast<int>(isa_from_env());
      s.isa.store(i, std::memory_order_release);
    }
  }
  return table_for(static_cast<Isa>(i));
}

void check_ptr(const void* p, int64_t count, const char* op, const char* what) {
  QWEN3VL_CHECK(count == 0 || p != nullptr, std::string(op) + ": " + what + " is null");
}

}  // namespace

static MatmulPrecision precision_from_env() {
  const char* env = std::getenv("QWEN3VL_MATMUL");
  if (!env || !*env) return MatmulPrecision::BF16;
  std::string v(env);
  if (v == "f32") return MatmulPrecision::F32;
  if (v == "bf16") return MatmulPrecision::BF16;
  throw Error("QWEN3VL_MATMUL='" + v + "' is not one of f32, bf16");
}

void set_matmul_precision(MatmulPrecision p) {
  QWEN3VL_CHECK(p == MatmulPrecision::F32 || p == MatmulPrecision::BF16, "set_matmul_precision: unknown value");
  state().precision.store(static_cast<int>(p), std::memory_order_release);
}

MatmulPrecision matmul_precision() {
  int p = state().precision.load(std::memory_order_acquire);
  if (p < 0) {
    p = static_cast<int>(precision_from_env());
    state().precision.store(p, std::memory_order_release);
  }
  return static_cast<MatmulPrecision>(p);
}

bool cpu_has_avx512_bf16() {
  static const bool has = cpu_has(Isa::AVX512) && __builtin_cpu_supports("avx512bf16");
  return has;
}
bool cpu_has_avx512_vnni() {
  static const bool has = cpu_has(Isa::AVX512) && __builtin_cpu_supports("avx512vnni");
  return has;
}

namespace detail {
int threads() {
  State& s = state();
  int n = s.threads.load(std::memory_order_relaxed);
  if (n <= 0) {
    n = default_threads();
    s.threads.store(n, std::memory_order_relaxed);
  }
  return n;
}
}  // namespace detail

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::AVX2: return "avx2";
    case Isa::AVX512: return "avx512";
  }
  return "unknown";
}

Isa best_isa() {
  if (cpu_has(Isa::AVX512)) return Isa::AVX512;
  if (cpu_has(Isa::AVX2)) return Isa::AVX2;
  return Isa::Scalar;
}

Isa active_isa() {
  table();
  return static_cast<Isa>(state().isa.load());
}

void set_isa(Isa isa) {
  QWEN3VL_CHECK(isa == Isa::Scalar || isa == Isa::AVX2 || isa == Isa::AVX512,
                "set_isa: unknown ISA value " + std::to_string(static_cast<int>(isa)));
  QWEN3VL_CHECK(cpu_has(isa), std::string("set_isa: this CPU does not support ") + isa_name(isa));
  state().isa.store(static_cast<int>(isa), std::memory_order_release);
}

void set_num_threads(int n) {
  if (n <= 0) {
    n = omp_get_num_procs();
    if (n < 1) n = 1;
  }
  state().threads.store(n, std::memory_order_relaxed);
}

int num_threads() { return detail::threads(); }

WeightRef weight_ref(const Tensor& w) {
  QWEN3VL_CHECK(w.defined(), "weight_ref: undefined tensor");
  QWEN3VL_CHECK(w.dtype() == DType::F32 || w.dtype() == DType::BF16 || w.dtype() == DType::F16 ||
                    dtype_is_quantized(w.dtype()),
                "weight_ref: weight " + w.str() + " must be F32, BF16, F16, Q8_0 or Q4_0");
  QWEN3VL_CHECK(w.dim() >= 1, "weight_ref: weight " + w.str() + " must have at least one dimension");
  if (dtype_is_quantized(w.dtype()))
    QWEN3VL_CHECK(w.dim() == 2 && w.size(1) % kQuantBlockSize == 0,
                  "weight_ref: quantized weight " + w.str() + " must be 2-D [n, k] with k a multiple of 32");
  WeightRef r;
  r.dtype = w.dtype();
  r.data = w.raw();
  r.n = w.size(0);
  r.k = r.n ? w.numel() / r.n : 0;
  if (w.dim() == 1) r.k = 1;  // a [n] vector is an [n, 1] matrix
  if (r.n == 0 && w.dim() >= 2) {
    r.k = 1;
    for (int64_t i = 1; i < w.dim(); ++i) r.k *= w.size(i);
  }
  return r;
}

namespace {
void check_linear(const float* x, int64_t m, const WeightRef& w, const float* y) {
  QWEN3VL_CHECK(m >= 0 && w.n >= 0 && w.k >= 0,
                "linear: negative size (m " + std::to_string(m) + ", n " + std::to_string(w.n) + ", k " +
                    std::to_string(w.k) + ")");
  QWEN3VL_CHECK(w.dtype == DType::F32 || w.dtype == DType::BF16 || w.dtype == DType::F16 ||
                    dtype_is_quantized(w.dtype),
                std::string("linear: weight dtype ") + dtype_name(w.dtype) + " is not F32, BF16, F16, Q8_0 or Q4_0");
  QWEN3VL_CHECK(!dtype_is_quantized(w.dtype) || w.k % kQuantBlockSize == 0,
                std::string("linear: ") + dtype_name(w.dtype) + " weight with k = " + std::to_string(w.k) +
                    " (must be a multiple of 32)");
  check_ptr(x, m * w.k, "linear", "x");
  check_ptr(w.data, w.n * w.k, "linear", "weight");
  check_ptr(y, m * w.n, "linear", "y");
}
}  // namespace

void linear(const float* x, int64_t m, const WeightRef& w, const float* bias, float* y) {
  check_linear(x, m, w, y);
  if (m == 0 || w.n == 0) return;
  const detail::OpTable& t = table();
  if (dtype_is_quantized(w.dtype)) return t.linear_quant(x, m, w, bias, y);
  if (w.dtype != DType::F32 && matmul_precision() == MatmulPrecision::BF16) return t.linear_bf16(x, m, w, bias, y);
  t.linear(x, m, w, bias, y);
}

void linear_multi(const float* x, int64_t m, const WeightRef* w, float* const* y, int count) {
  QWEN3VL_CHECK(count >= 0 && (count == 0 || (w != nullptr && y != nullptr)), "linear_multi: bad weight list");
  bool fused = count > 1 && m > 0 && table().linear_quant_multi != nullptr;
  for (int i = 0; i < count; ++i) {
    check_linear(x, m, w[i], y[i]);
    fused = fused && dtype_is_quantized(w[i].dtype) && w[i].dtype == w[0].dtype && w[i].k == w[0].k && w[i].n > 0;
  }
  if (fused) return table().linear_quant_multi(x, m, w, y, count);
  if (count > 1 && m > 0 && matmul_precision() == MatmulPrecision::BF16 && table().linear_bf16_multi &&
      table().linear_bf16_multi(x, m, w, y, count))
    return;
  for (int i = 0; i < count; ++i) linear(x, m, w[i], nullptr, y[i]);
}

void layer_norm(const float* x, int64_t rows, int64_t d, const float* w, const float* b, float eps, float* y) {
  QWEN3VL_CHECK(rows >= 0 && d >= 0, "layer_norm: negative size");
  check_ptr(x, rows * d, "layer_norm", "x");
  check_ptr(y, rows * d, "layer_norm", "y");
  if (rows == 0 || d == 0) return;
  table().layer_norm(x, rows, d, w, b, eps, y);
}

void rms_norm(const float* x, int64_t rows, int64_t d, const float* w, float eps, float* y) {
  QWEN3VL_CHECK(rows >= 0 && d >= 0, "rms_norm: negative size");
  check_ptr(x, rows * d, "rms_norm", "x");
  check_ptr(y, rows * d, "rms_norm", "y");
  if (rows == 0 || d == 0) return;
  table().rms_norm(x, rows, d, w, eps, y);
}

void gelu_tanh(float* x, int64_t n) {
  QWEN3VL_CHECK(n >= 0, "gelu_tanh: negative size");
  check_ptr(x, n, "gelu_tanh", "x");
  if (n) table().gelu_tanh(x, n);
}

void gelu_erf(float* x, int64_t n) {
  QWEN3VL_CHECK(n >= 0, "gelu_erf: negative size");
  check_ptr(x, n, "gelu_erf", "x");
  if (n) table().gelu_erf(x, n);
}

void silu_mul(const float* gate, const float* up, float* out, int64_t n) {
  QWEN3VL_CHECK(n >= 0, "silu_mul: negative size");
  check_ptr(gate, n, "silu_mul", "gate");
  check_ptr(up, n, "silu_mul", "up");
  check_ptr(out, n, "silu_mul", "out");
  if (n) table().silu_mul(gate, up, out, n);
}

void add_inplace(float* y, const float* x, int64_t n) {
  QWEN3VL_CHECK(n >= 0, "add_inplace: negative size");
  check_ptr(y, n, "add_inplace", "y");
  check_ptr(x, n, "add_inplace", "x");
  if (n) table().add_inplace(y, x, n);
}

void softmax_inplace(float* x, int64_t rows, int64_t n) {
  QWEN3VL_CHECK(rows >= 0 && n >= 0, "softmax_inplace: negative size");
  check_ptr(x, rows * n, "softmax_inplace", "x");
  if (rows && n) table().softmax_inplace(x, rows, n);
}

void rope_rotate_half(float* x, int64_t tokens, int64_t x_token_stride, int64_t heads, int64_t head_dim,
                      const float* cos, const float* sin) {
  QWEN3VL_CHECK(tokens >= 0 && heads >= 0 && head_dim >= 0, "rope_rotate_half: negative size");
  QWEN3VL_CHECK(head_dim % 2 == 0, "rope_rotate_half: head_dim " + std::to_string(head_dim) + " must be even");
  QWEN3VL_CHECK(tokens <= 1 || x_token_stride >= heads * head_dim,
                "rope_rotate_half: token stride " + std::to_string(x_token_stride) + " < heads * head_dim " +
                    std::to_string(heads * head_dim));
  if (tokens == 0 || heads == 0 || head_dim == 0) return;
  check_ptr(x, 1, "rope_rotate_half", "x");
  check_ptr(cos, 1, "rope_rotate_half", "cos");
  check_ptr(sin, 1, "rope_rotate_half", "sin");
  table().rope_rotate_half(x, tokens, x_token_stride, heads, head_dim, cos, sin);
}

bool attention_honours_bf16() {
  const auto f = table().attention_bf16;
  return f == detail::attention_bf16_scalar || f == detail::attention_bf16_avx512;
}

void attention(const AttentionArgs& a) {
  QWEN3VL_CHECK(a.sq >= 0 && a.sk >= 0 && a.hq >= 0 && a.hk >= 0 && a.d >= 0, "attention: negative size");
  QWEN3VL_CHECK(a.hk > 0 || a.hq == 0, "attention: hk must be > 0");
  QWEN3VL_CHECK(a.hq == 0 || a.hq % a.hk == 0,
                "attention: query heads " + std::to_string(a.hq) + " not a multiple of kv heads " + std::to_string(a.hk));
  QWEN3VL_CHECK(a.q_pos0 >= 0, "attention: q_pos0 must be >= 0");
  if (a.sq == 0 || a.hq == 0 || a.d == 0) return;
  QWEN3VL_CHECK(a.sq == 1 || (a.q_stride >= a.hq * a.d && a.out_stride >= a.hq * a.d),
                "attention: q/out row stride smaller than hq * d");
  QWEN3VL_CHECK(a.sk <= 1 || (a.k_stride >= a.hk * a.d && a.v_stride >= a.hk * a.d),
                "attention: k/v row stride smaller than hk * d");
  check_ptr(a.q, 1, "attention", "q");
  check_ptr(a.out, 1, "attention", "out");
  QWEN3VL_CHECK((a.k_bf16 == nullptr) == (a.v_bf16 == nullptr), "attention: k_bf16 and v_bf16 must be set together");
  if (a.sk > 0) {
    check_ptr(a.k_bf16 ? static_cast<const void*>(a.k_bf16) : a.k, 1, "attention", "k");
    check_ptr(a.v_bf16 ? static_cast<const void*>(a.v_bf16) : a.v, 1, "attention", "v");
  }
  if (a.k_bf16 && !(a.bf16 && table().attention_bf16_kv)) {
    // The ISA's kernel reads f32 K/V only: widen the visible keys/values (rows [0, sk), heads
    // packed to hk * d per row).
    const int64_t row = a.hk * a.d;
    std::vector<float> kf(static_cast<size_t>(a.sk * row)), vf(static_cast<size_t>(a.sk * row));
    for (int64_t j = 0; j < a.sk; ++j)
      for (int64_t e = 0; e < row; ++e) {
        kf[static_cast<size_t>(j * row + e)] = bf16_to_f32(a.k_bf16[j * a.k_stride + e]);
        vf[static_cast<size_t>(j * row + e)] = bf16_to_f32(a.v_bf16[j * a.v_stride + e]);
      }
    AttentionArgs w = a;
    w.k = kf.data(); w.k_stride = row; w.k_bf16 = nullptr;
    w.v = vf.data(); w.v_stride = row; w.v_bf16 = nullptr;
    if (w.bf16) table().attention_bf16(w);
    else table().attention(w);
    return;
  }
  if (a.bf16) table().attention_bf16(a);
  else table().attention(a);
}

}  // namespace qwen3vl::kernels

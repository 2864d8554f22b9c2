#include "text/qwen3vl_text.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "kernels/quant.h"

namespace qwen3vl {

namespace {

std::vector<float> to_f32_vector(const Tensor& t) {
  Tensor f = t.dtype() == DType::F32 ? t : t.to(DType::F32);
  const float* p = f.data<float>();
  return std::vector<float>(p, p + f.numel());
}

// Emulating HF's bf16 op order (linear_emulated) needs the float weights.
void check_not_quantized_when_emulating(const std::string& name, DType dtype, DType emulate) {
  QWEN3VL_CHECK(emulate == DType::F32 || !dtype_is_quantized(dtype),
                "tensor " + name + " is " + dtype_name(dtype) +
                    ": emulating HF's bf16 numerics (TextNumerics::emulate_activation_dtype) needs unquantized "
                    "weights");
}

// Binds a 2-D weight and checks its shape, naming the tensor on mismatch. F32 / BF16 / F16 as
// stored, or Q8_0 / Q4_0 (quantized at load or stored quantized; k % 32 == 0).
kernels::WeightRef bind_linear(const Checkpoint& ckpt, const std::string& name, int64_t n, int64_t k,
                               DType emulate = DType::F32) {
  const Tensor& w = ckpt.get(name);
  QWEN3VL_CHECK(w.dim() == 2 && w.size(0) == n && w.size(1) == k,
                "tensor " + name + " has shape " + shape_str(w.shape()) + ", expected " + shape_str({n, k}) +
                    " from config.json");
  QWEN3VL_CHECK(w.dtype() == DType::F32 || w.dtype() == DType::BF16 || w.dtype() == DType::F16 ||
                    dtype_is_quantized(w.dtype()),
                "tensor " + name + " has dtype " + dtype_name(w.dtype()) + "; expected F32, BF16, F16, Q8_0 or Q4_0");
  check_not_quantized_when_emulating(name, w.dtype(), emulate);
  kernels::WeightRef r;
  r.dtype = w.dtype();
  r.data = w.raw();
  r.n = n;
  r.k = k;
  return r;
}

Qwen3VLTextRMSNorm bind_norm(const Checkpoint& ckpt, const std::string& name, int64_t dim, double eps,
                             DType emulate = DType::F32) {
  const Tensor& w = ckpt.get(name);
  QWEN3VL_CHECK(w.dim() == 1 && w.size(0) == dim,
                "tensor " + name + " has shape " + shape_str(w.shape()) + ", expected [" + std::to_string(dim) + "]");
  return Qwen3VLTextRMSNorm(w, eps, emulate);
}

// Rotate-half RoPE with the three roundings of HF's bf16 ops: q*cos, rotate_half(q)*sin, sum.
void rope_emulated(float* x, int64_t S, int64_t stride, int64_t heads, int64_t hd, const float* cos,
                   const float* sin, DType dt) {
  const int64_t half = hd / 2;
  std::vector<float> tmp(static_cast<size_t>(hd));
  for (int64_t s = 0; s < S; ++s)
    for (int64_t h = 0; h < heads; ++h) {
      float* v = x + s * stride + h * hd;
      const float* c = cos + s * hd;
      const float* sn = sin + s * hd;
      for (int64_t d = 0; d < hd; ++d) {
        const float rot = d < half ? -v[d + half] : v[d - half];
        float a = v[d] * c[d], b = rot * sn[d];
        round_to_dtype(&a, 1, dt);
        round_to_dtype(&b, 1, dt);
        float r = a + b;
        round_to_dtype(&r, 1, dt);
        tmp[static_cast<size_t>(d)] = r;
      }
      std::memcpy(v, tmp.data(), static_cast<size_t>(hd) * 4);
    }
}

// eager_attention_forward op by op in dtype dt: scores = q k^T (rounded), * scaling (rounded),
// causal mask, softmax in f32 then rounded, probs @ v (f32 accumulation, rounded).
void attention_emulated(const kernels::AttentionArgs& a, DType dt) {
  const int64_t group = a.hq / a.hk;
  std::vector<float> p(static_cast<size_t>(a.sk));
  std::vector<float> acc(static_cast<size_t>(a.d));
  for (int64_t h = 0; h < a.hq; ++h) {
    const int64_t kh = h / group;
    for (int64_t i = 0; i < a.sq; ++i) {
      const float* q = a.q + i * a.q_stride + h * a.d;
      const int64_t n = a.causal ? std::min(a.sk, a.q_pos0 + i + 1) : a.sk;
      float mx = -INFINITY;
      for (int64_t j = 0; j < n; ++j) {
        const float* k = a.k + j * a.k_stride + kh * a.d;
        float dot = 0;
        for (int64_t d = 0; d < a.d; ++d) dot += q[d] * k[d];
        round_to_dtype(&dot, 1, dt);
        float sc = dot * a.scale;
        round_to_dtype(&sc, 1, dt);
        p[static_cast<size_t>(j)] = sc;
        mx = std::max(mx, sc);
      }
      float sum = 0;
      for (int64_t j = 0; j < n; ++j) sum += (p[static_cast<size_t>(j)] = std::exp(p[static_cast<size_t>(j)] - mx));
      for (int64_t j = 0; j < n; ++j) p[static_cast<size_t>(j)] /= sum;
      round_to_dtype(p.data(), n, dt);
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t j = 0; j < n; ++j) {
        const float* v = a.v + j * a.v_stride + kh * a.d;
        for (int64_t d = 0; d < a.d; ++d) acc[static_cast<size_t>(d)] += p[static_cast<size_t>(j)] * v[d];
      }
      round_to_dtype(acc.data(), a.d, dt);
      std::memcpy(a.out + i * a.out_stride + h * a.d, acc.data(), static_cast<size_t>(a.d) * 4);
    }
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Qwen3VLTextRMSNorm
// ---------------------------------------------------------------------------------------------
Qwen3VLTextRMSNorm::Qwen3VLTextRMSNorm(const Tensor& weight, double eps, DType emulate)
    : weight_(to_f32_vector(weight)), eps_(static_cast<float>(eps)), emulate_(emulate) {
  if (emulate_ != DType::F32) ones_.assign(weight_.size(), 1.0f);
}

void Qwen3VLTextRMSNorm::forward(const float* x, int64_t rows, float* y) const {
  if (emulate_ == DType::F32) {
    // weight * (hidden_states * torch.rsqrt(variance + eps))
    kernels::rms_norm(x, rows, dim(), weight_.data(), eps_, y);
    return;
  }
  // weight * hidden_states.to(input_dtype): two roundings.
  const int64_t d = dim();
  kernels::rms_norm(x, rows, d, ones_.data(), eps_, y);
  round_to_dtype(y, rows * d, emulate_);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < d; ++i) y[r * d + i] *= weight_[static_cast<size_t>(i)];
  round_to_dtype(y, rows * d, emulate_);
}

// ---------------------------------------------------------------------------------------------
// Qwen3VLTextRotaryEmbedding
// ---------------------------------------------------------------------------------------------
void round_to_dtype(float* x, int64_t n, DType dtype) {
  if (dtype == DType::BF16) {
    for (int64_t i = 0; i < n; ++i) x[i] = round_bf16(x[i]);
  } else if (dtype == DType::F16) {
    for (int64_t i = 0; i < n; ++i) x[i] = f16_to_f32(f32_to_f16(x[i]));
  }
}

// GCC 12.2 at -O2 mis-vectorises the in-order pairwise reduction below (wrong sums: checked with
// a scalar twin), so vectorisation is off for this function; the order is the point anyway.
#if defined(__GNUC__) && !defined(__clang__)
#define QWEN3VL_NO_VECTORIZE __attribute__((optimize("no-tree-vectorize")))
#else
#define QWEN3VL_NO_VECTORIZE
#endif

QWEN3VL_NO_VECTORIZE
void linear_emulated(const float* x, int64_t m, const kernels::WeightRef& w, float* y, DType dt) {
  const int64_t K = w.k, N = w.n;
  constexpr int64_t B = 8;  // outputs per block: independent accumulation chains (ILP)
  std::vector<float> wblk(static_cast<size_t>(B * K));
  for (int64_t n0 = 0; n0 < N; n0 += B) {
    const int64_t nb = std::min(B, N - n0);
    for (int64_t j = 0; j < nb; ++j)
      for (int64_t k = 0; k < K; ++k) {
        const int64_t i = (n0 + j) * K + k;
        float v;
        if (w.dtype == DType::F32) v = static_cast<const float*>(w.data)[i];
        else if (w.dtype == DType::BF16) v = bf16_to_f32(static_cast<const uint16_t*>(w.data)[i]);
        else v = f16_to_f32(static_cast<const uint16_t*>(w.data)[i]);
        wblk[static_cast<size_t>(k * B + j)] = v;  // [K, B]
      }
    for (int64_t r = 0; r < m; ++r) {
      const float* xr = x + r * K;
      float acc[B] = {0, 0, 0, 0, 0, 0, 0, 0};
      int64_t k = 0;
      for (; k + 1 < K; k += 2) {
        const float* w1 = wblk.data() + (k + 1) * B;
        const float* w0 = wblk.data() + k * B;
        for (int64_t j = 0; j < B; ++j) {
          acc[j] += xr[k + 1] * w1[j];
          acc[j] += xr[k] * w0[j];
        }
      }
      if (k < K)
        for (int64_t j = 0; j < B; ++j) acc[j] += xr[k] * wblk[static_cast<size_t>(k * B + j)];
      for (int64_t j = 0; j < nb; ++j) y[r * N + n0 + j] = acc[j];
    }
  }
  round_to_dtype(y, m * N, dt);
}

namespace {
// kernels::linear, or the HF-order emulation when emulating a half dtype.
void linear_as(const float* x, int64_t m, const kernels::WeightRef& w, float* y, DType em) {
  if (em == DType::F32) kernels::linear(x, m, w, nullptr, y);
  else linear_emulated(x, m, w, y, em);
}
}  // namespace

Qwen3VLTextRotaryEmbedding::Qwen3VLTextRotaryEmbedding(const Qwen3VLTextConfig& cfg, DType round_to)
    : head_dim_(cfg.head_dim), round_to_(round_to) {
  QWEN3VL_CHECK(cfg.head_dim > 0 && cfg.head_dim % 2 == 0,
                "text_config.head_dim must be positive and even (got " + std::to_string(cfg.head_dim) + ")");
  QWEN3VL_CHECK(cfg.rope_type == "default" || cfg.rope_type == "mrope",
                "text_config.rope_scaling.rope_type \"" + cfg.rope_type +
                    "\" is not supported (only \"default\" M-RoPE)");
  QWEN3VL_CHECK(cfg.mrope_section.size() == 3, "text_config.rope_scaling.mrope_section must have 3 entries");
  QWEN3VL_CHECK(cfg.rope_theta > 0, "text_config.rope_theta must be positive");
  const int64_t half = head_dim_ / 2;
  // inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim)), all f32.
  // The f32 power is evaluated in double and rounded (torch may differ by 1 ulp in a few slots,
  // far below the test tolerances).
  const float base = static_cast<float>(cfg.rope_theta);
  inv_freq_.resize(static_cast<size_t>(half));
  for (int64_t j = 0; j < half; ++j) {
    const float e = static_cast<float>(2 * j) / static_cast<float>(head_dim_);
    const float p = static_cast<float>(std::pow(static_cast<double>(base), static_cast<double>(e)));
    inv_freq_[static_cast<size_t>(j)] = 1.0f / p;
  }
  // apply_interleaved_mrope: freqs_t[..., offset:length:3] = freqs[dim] for dim 1 (H), 2 (W).
  slot_axis_.assign(static_cast<size_t>(half), 0);
  for (int dim = 1; dim <= 2; ++dim) {
    const int64_t length = static_cast<int64_t>(cfg.mrope_section[static_cast<size_t>(dim)]) * 3;
    for (int64_t j = dim; j < std::min(length, half); j += 3) slot_axis_[static_cast<size_t>(j)] = dim;
  }
}

void Qwen3VLTextRotaryEmbedding::forward(const Tensor& position_ids, float* cos, float* sin) const {
  QWEN3VL_CHECK(position_ids.dim() == 2 && position_ids.size(0) == 3 && position_ids.dtype() == DType::I64,
                "position_ids must be I64 [3, seq], got " + position_ids.str());
  const int64_t S = position_ids.size(1), half = head_dim_ / 2;
  const int64_t* pos = position_ids.data<int64_t>();
  for (int64_t s = 0; s < S; ++s) {
    float* c = cos + s * head_dim_;
    float* sn = sin + s * head_dim_;
    for (int64_t j = 0; j < half; ++j) {
      const int axis = slot_axis_[static_cast<size_t>(j)];
      // freqs = inv_freq @ position_ids.float(): one f32 multiply per slot.
      const float angle = static_cast<float>(pos[axis * S + s]) * inv_freq_[static_cast<size_t>(j)];
      const float cv = static_cast<float>(std::cos(static_cast<double>(angle))) * attention_scaling_;
      const float sv = static_cast<float>(std::sin(static_cast<double>(angle))) * attention_scaling_;
      c[j] = c[j + half] = cv;  // emb = cat((freqs, freqs), -1)
      sn[j] = sn[j + half] = sv;
    }
  }
  round_to_dtype(cos, S * head_dim_, round_to_);  // cos.to(dtype=x.dtype)
  round_to_dtype(sin, S * head_dim_, round_to_);
}

// ---------------------------------------------------------------------------------------------
// Qwen3VLTextAttention
// ---------------------------------------------------------------------------------------------
Qwen3VLTextAttention::Qwen3VLTextAttention(const Checkpoint& ckpt, const std::string& prefix,
                                           const Qwen3VLTextConfig& cfg, int layer_idx, DType emulate)
    : layer_idx_(layer_idx),
      hidden_(cfg.hidden_size),
      heads_(cfg.num_attention_heads),
      kv_heads_(cfg.num_key_value_heads),
      head_dim_(cfg.head_dim),
      emulate_(emulate) {
  QWEN3VL_CHECK(heads_ > 0 && kv_heads_ > 0 && heads_ % kv_heads_ == 0,
                "text_config: num_attention_heads (" + std::to_string(heads_) +
                    ") must be a positive multiple of num_key_value_heads (" + std::to_string(kv_heads_) + ")");
  QWEN3VL_CHECK(!cfg.attention_bias, "text_config.attention_bias = true is not supported (Qwen3-VL has no biases)");
  scaling_ = static_cast<float>(std::pow(static_cast<double>(head_dim_), -0.5));  // head_dim**-0.5
  q_proj_ = bind_linear(ckpt, prefix + "q_proj.weight", heads_ * head_dim_, hidden_, emulate);
  k_proj_ = bind_linear(ckpt, prefix + "k_proj.weight", kv_heads_ * head_dim_, hidden_, emulate);
  v_proj_ = bind_linear(ckpt, prefix + "v_proj.weight", kv_heads_ * head_dim_, hidden_, emulate);
  o_proj_ = bind_linear(ckpt, prefix + "o_proj.weight", hidden_, heads_ * head_dim_, emulate);
  // A bf16/f16 checkpoint (also when its weights were quantized) attends in bf16 at BF16 precision.
  bf16_source_ = ckpt.source_dtype(prefix + "q_proj.weight") != DType::F32;
  q_norm_ = bind_norm(ckpt, prefix + "q_norm.weight", head_dim_, cfg.rms_norm_eps, emulate);
  k_norm_ = bind_norm(ckpt, prefix + "k_norm.weight", head_dim_, cfg.rms_norm_eps, emulate);
}

void Qwen3VLTextAttention::forward(const float* x, int64_t S, const float* cos, const float* sin, KVCache& cache,
                                   float* out) const {
  const int64_t p0 = cache.length();
  const int64_t qdim = heads_ * head_dim_, kvdim = kv_heads_ * head_dim_;
  Tensor proj = Tensor::empty({S, qdim + kvdim});   // q_proj(x), then k_proj(x) at S * qdim
  Tensor q = Tensor::empty({S, heads_, head_dim_});
  // New keys/values go straight into the cache rows [p0, p0 + S) of an F32 cache, or through
  // f32 scratch rows that are then rounded into a BF16 cache.
  const bool kv_bf16 = cache.dtype() == DType::BF16;
  QWEN3VL_CHECK(!kv_bf16 || emulate_ == DType::F32, "a BF16 KV cache cannot be used when emulating HF's op-by-op dtype");
  Tensor kv_scratch = kv_bf16 ? Tensor::empty({2, S, kvdim}) : Tensor();
  float* k_cache = kv_bf16 ? kv_scratch.data<float>() : cache.k(layer_idx_) + p0 * kvdim;
  float* v_cache = kv_bf16 ? kv_scratch.data<float>() + S * kvdim : cache.v(layer_idx_) + p0 * kvdim;

  // query_states = q_norm(q_proj(x).view(S, H, hd))
  // key_states = k_norm(k_proj(x).view(S, K, hd)) -> straight into the cache
  // value_states = v_proj(x).view(S, K, hd) -> cache
  const DType em = emulate_;
  float* const qp = proj.data<float>();
  float* const kp = qp + S * qdim;
  if (em == DType::F32) {  // the three projections of x in one call (one pass for quantized decode)
    const kernels::WeightRef w[3] = {q_proj_, k_proj_, v_proj_};
    float* const y[3] = {qp, kp, v_cache};
    kernels::linear_multi(x, S, w, y, 3);
  } else {
    linear_as(x, S, q_proj_, qp, em);
    linear_as(x, S, k_proj_, kp, em);
    linear_as(x, S, v_proj_, v_cache, em);
  }
  q_norm_.forward(qp, S * heads_, q.data<float>());
  k_norm_.forward(kp, S * kv_heads_, k_cache);
  // apply_rotary_pos_emb(q, k, cos, sin)
  if (em == DType::F32) {
    kernels::rope_rotate_half(q.data<float>(), S, qdim, heads_, head_dim_, cos, sin);
    kernels::rope_rotate_half(k_cache, S, kvdim, kv_heads_, head_dim_, cos, sin);
  } else {
    rope_emulated(q.data<float>(), S, qdim, heads_, head_dim_, cos, sin, em);
    rope_emulated(k_cache, S, kvdim, kv_heads_, head_dim_, cos, sin, em);
  }

  if (kv_bf16) {
    uint16_t* kc = cache.k_bf16(layer_idx_) + p0 * kvdim;
    uint16_t* vc = cache.v_bf16(layer_idx_) + p0 * kvdim;
    for (int64_t e = 0; e < S * kvdim; ++e) {
      kc[e] = f32_to_bf16(k_cache[e]);
      vc[e] = f32_to_bf16(v_cache[e]);
    }
  }

  // eager_attention_forward: softmax(q k^T * scaling + causal_mask) v, GQA via repeat_kv.
  Tensor attn = Tensor::empty({S, qdim});
  kernels::AttentionArgs a;
  a.q = q.data<float>();
  a.q_stride = qdim;
  if (kv_bf16) {
    a.k_bf16 = cache.k_bf16(layer_idx_);
    a.v_bf16 = cache.v_bf16(layer_idx_);
  } else {
    a.k = cache.k(layer_idx_);
    a.v = cache.v(layer_idx_);
  }
  a.k_stride = kvdim;
  a.v_stride = kvdim;
  a.out = attn.data<float>();
  a.out_stride = qdim;
  a.sq = S;
  a.sk = p0 + S;
  a.hq = heads_;
  a.hk = kv_heads_;
  a.d = head_dim_;
  a.scale = scaling_;
  a.causal = true;
  a.q_pos0 = p0;
  // A bf16 model at BF16 matmul precision attends in bf16, like the reference does.
  a.bf16 = bf16_source_ && kernels::matmul_precision() == kernels::MatmulPrecision::BF16;
  if (em == DType::F32) kernels::attention(a);
  else attention_emulated(a, em);
  // o_proj(attn_output.reshape(S, H*hd))
  linear_as(attn.data<float>(), S, o_proj_, out, em);
}

// ---------------------------------------------------------------------------------------------
// Qwen3VLTextMLP
// ---------------------------------------------------------------------------------------------
Qwen3VLTextMLP::Qwen3VLTextMLP(const Checkpoint& ckpt, const std::string& prefix, const Qwen3VLTextConfig& cfg,
                               DType emulate)
    : hidden_(cfg.hidden_size), intermediate_(cfg.intermediate_size), emulate_(emulate) {
  QWEN3VL_CHECK(cfg.hidden_act == "silu", "text_config.hidden_act \"" + cfg.hidden_act + "\" is not supported (silu)");
  gate_proj_ = bind_linear(ckpt, prefix + "gate_proj.weight", intermediate_, hidden_, emulate);
  up_proj_ = bind_linear(ckpt, prefix + "up_proj.weight", intermediate_, hidden_, emulate);
  down_proj_ = bind_linear(ckpt, prefix + "down_proj.weight", hidden_, intermediate_, emulate);
}

void Qwen3VLTextMLP::forward(const float* x, int64_t S, float* out) const {
  // Rows are independent: process the prefill in chunks so the [rows, I] intermediates stay
  // bounded (~32 MiB each) for long prompts. Results do not depend on the chunking.
  const int64_t chunk = std::max<int64_t>(16, (int64_t{8} << 20) / std::max<int64_t>(1, intermediate_));
  const int64_t rows = std::min(S, chunk);
  Tensor gate = Tensor::empty({rows, intermediate_});
  Tensor up = Tensor::empty({rows, intermediate_});
  for (int64_t r0 = 0; r0 < S; r0 += chunk) {
    const int64_t m = std::min(chunk, S - r0);
    if (emulate_ == DType::F32) {  // gate_proj(x), up_proj(x) in one call
      const kernels::WeightRef w[2] = {gate_proj_, up_proj_};
      float* const y[2] = {gate.data<float>(), up.data<float>()};
      kernels::linear_multi(x + r0 * hidden_, m, w, y, 2);
    } else {
      linear_as(x + r0 * hidden_, m, gate_proj_, gate.data<float>(), emulate_);
      linear_as(x + r0 * hidden_, m, up_proj_, up.data<float>(), emulate_);
    }
    // act_fn(gate_proj(x)) * up_proj(x)
    const int64_t n = m * intermediate_;
    if (emulate_ == DType::F32) {
      kernels::silu_mul(gate.data<float>(), up.data<float>(), gate.data<float>(), n);
    } else {
      float* g = gate.data<float>();
      float* u = up.data<float>();
      for (int64_t i = 0; i < n; ++i) g[i] = g[i] / (1.0f + std::exp(-g[i]));
      round_to_dtype(g, n, emulate_);
      for (int64_t i = 0; i < n; ++i) g[i] *= u[i];
      round_to_dtype(g, n, emulate_);
    }
    linear_as(gate.data<float>(), m, down_proj_, out + r0 * hidden_, emulate_);
  }
}

// ---------------------------------------------------------------------------------------------
// Qwen3VLTextDecoderLayer
// ---------------------------------------------------------------------------------------------
Qwen3VLTextDecoderLayer::Qwen3VLTextDecoderLayer(const Checkpoint& ckpt, const std::string& prefix,
                                                 const Qwen3VLTextConfig& cfg, int layer_idx, DType emulate)
    : hidden_(cfg.hidden_size),
      emulate_(emulate),
      self_attn_(ckpt, prefix + "self_attn.", cfg, layer_idx, emulate),
      mlp_(ckpt, prefix + "mlp.", cfg, emulate),
      input_layernorm_(
          bind_norm(ckpt, prefix + "input_layernorm.weight", cfg.hidden_size, cfg.rms_norm_eps, emulate)),
      post_attention_layernorm_(bind_norm(ckpt, prefix + "post_attention_layernorm.weight", cfg.hidden_size,
                                          cfg.rms_norm_eps, emulate)) {}

void Qwen3VLTextDecoderLayer::forward(float* hidden, int64_t S, const float* cos, const float* sin,
                                      KVCache& cache) const {
  const int64_t n = S * hidden_;
  Tensor normed = Tensor::empty({S, hidden_});
  Tensor delta = Tensor::empty({S, hidden_});
  // residual = x; x = residual + self_attn(input_layernorm(x))
  input_layernorm_.forward(hidden, S, normed.data<float>());
  self_attn_.forward(normed.data<float>(), S, cos, sin, cache, delta.data<float>());
  kernels::add_inplace(hidden, delta.data<float>(), n);
  round_to_dtype(hidden, n, emulate_);
  // residual = x; x = residual + mlp(post_attention_layernorm(x))
  post_attention_layernorm_.forward(hidden, S, normed.data<float>());
  mlp_.forward(normed.data<float>(), S, delta.data<float>());
  kernels::add_inplace(hidden, delta.data<float>(), n);
  round_to_dtype(hidden, n, emulate_);
}

// ---------------------------------------------------------------------------------------------
// Qwen3VLTextModel
// ---------------------------------------------------------------------------------------------
Qwen3VLTextModel::Qwen3VLTextModel(const Checkpoint& ckpt, const std::string& prefix, const TextNumerics& numerics)
    : cfg_(ckpt.config().text_config),
      embed_tokens_(ckpt.get(prefix + "embed_tokens.weight")),
      act_dtype_(ckpt.source_dtype(prefix + "embed_tokens.weight")),
      emulate_(numerics.emulate_activation_dtype ? act_dtype_ : DType::F32),
      rotary_emb_(ckpt.config().text_config, act_dtype_) {
  QWEN3VL_CHECK(cfg_.num_hidden_layers >= 1, "text_config.num_hidden_layers must be at least 1");
  const std::string ename = prefix + "embed_tokens.weight";
  check_not_quantized_when_emulating(ename, embed_tokens_.dtype(), emulate_);
  if (ckpt.has("lm_head.weight"))
    check_not_quantized_when_emulating("lm_head.weight", ckpt.get("lm_head.weight").dtype(), emulate_);
  QWEN3VL_CHECK(embed_tokens_.dim() == 2 && embed_tokens_.size(0) == cfg_.vocab_size &&
                    embed_tokens_.size(1) == cfg_.hidden_size,
                "tensor " + ename + " has shape " + shape_str(embed_tokens_.shape()) + ", expected [" +
                    std::to_string(cfg_.vocab_size) + ", " + std::to_string(cfg_.hidden_size) + "]");
  layers_.reserve(static_cast<size_t>(cfg_.num_hidden_layers));
  for (int l = 0; l < cfg_.num_hidden_layers; ++l)
    layers_.emplace_back(ckpt, prefix + "layers." + std::to_string(l) + ".", cfg_, l, emulate_);
  norm_ = bind_norm(ckpt, prefix + "norm.weight", cfg_.hidden_size, cfg_.rms_norm_eps, emulate_);
}

Tensor Qwen3VLTextModel::embed(const std::vector<int64_t>& input_ids) const {
  const int64_t S = static_cast<int64_t>(input_ids.size()), D = cfg_.hidden_size;
  Tensor out = Tensor::empty({S, D});
  float* o = out.data<float>();
  const DType et = embed_tokens_.dtype();
  const auto* base = static_cast<const uint8_t*>(embed_tokens_.raw());
  for (int64_t s = 0; s < S; ++s) {
    const int64_t id = input_ids[static_cast<size_t>(s)];
    QWEN3VL_CHECK(id >= 0 && id < cfg_.vocab_size, "token id " + std::to_string(id) + " at position " +
                                                       std::to_string(s) + " is outside the vocabulary [0, " +
                                                       std::to_string(cfg_.vocab_size) + ")");
    if (dtype_is_quantized(et)) {  // Q8_0 / Q4_0: dequantize the one row
      kernels::dequantize_rows(et, base, D, id, 1, o + s * D);
      continue;
    }
    const Tensor row = Tensor::view(base + dtype_nbytes(et, id * D), {D}, et, nullptr);
    if (row.dtype() == DType::F32) {
      std::memcpy(o + s * D, row.raw(), static_cast<size_t>(D) * 4);
    } else {
      const Tensor f = row.to(DType::F32);
      std::memcpy(o + s * D, f.raw(), static_cast<size_t>(D) * 4);
    }
  }
  return out;
}

DType Qwen3VLTextModel::kv_cache_dtype() const {
  // Every layer must attend in bf16 (the attention's a.bf16): then a BF16 cache holds exactly the
  // values the kernel would round K and V to.
  if (emulate_ != DType::F32 || kernels::matmul_precision() != kernels::MatmulPrecision::BF16) return DType::F32;
  for (const auto& layer : layers_)
    if (!layer.self_attn().bf16_source()) return DType::F32;
  return layers_.empty() ? DType::F32 : DType::BF16;
}

Tensor Qwen3VLTextModel::forward(const Tensor& inputs_embeds, const Tensor& position_ids, KVCache& cache,
                                 const DeepstackInput* deepstack, const DumpHook* dump) const {
  const int64_t D = cfg_.hidden_size;
  QWEN3VL_CHECK(inputs_embeds.dim() == 2 && inputs_embeds.size(1) == D && inputs_embeds.dtype() == DType::F32,
                "Qwen3VLTextModel: inputs_embeds must be F32 [seq, " + std::to_string(D) + "], got " +
                    inputs_embeds.str());
  const int64_t S = inputs_embeds.size(0);
  QWEN3VL_CHECK(position_ids.dim() == 2 && position_ids.size(0) == 3 && position_ids.size(1) == S,
                "Qwen3VLTextModel: position_ids must be [3, " + std::to_string(S) + "], got " + position_ids.str());
  QWEN3VL_CHECK(cache.num_layers() == cfg_.num_hidden_layers && cache.row_floats() == static_cast<int64_t>(
                    cfg_.num_key_value_heads) * cfg_.head_dim,
                "KV cache was made for another model configuration");
  cache.check_fits(S, "prompt");
  if (deepstack) {
    for (const Tensor& e : deepstack->embeds)
      QWEN3VL_CHECK(e.dim() == 2 && e.size(0) == static_cast<int64_t>(deepstack->rows.size()) && e.size(1) == D &&
                        e.dtype() == DType::F32,
                    "DeepStack features " + e.str() + " do not match " + std::to_string(deepstack->rows.size()) +
                        " visual rows of width " + std::to_string(D));
    for (int64_t r : deepstack->rows) QWEN3VL_CHECK(r >= 0 && r < S, "DeepStack row outside the input");
  }
  if (S == 0) return Tensor::empty({0, D});

  // position_embeddings = rotary_emb(hidden_states, position_ids)
  Tensor cos = Tensor::empty({S, cfg_.head_dim}), sin = Tensor::empty({S, cfg_.head_dim});
  rotary_emb_.forward(position_ids, cos.data<float>(), sin.data<float>());

  // Own copy: the caller's tensor may be a read-only view (e.g. of a mapped file).
  Tensor h = inputs_embeds.clone();
  float* hp = h.data<float>();
  for (size_t l = 0; l < layers_.size(); ++l) {
    layers_[l].forward(hp, S, cos.data<float>(), sin.data<float>(), cache);
    // _deepstack_process: hidden_states[visual_pos_masks] += deepstack_visual_embeds[l]
    if (deepstack && l < deepstack->embeds.size()) {
      const float* e = deepstack->embeds[l].data<float>();
      for (size_t i = 0; i < deepstack->rows.size(); ++i) {
        kernels::add_inplace(hp + deepstack->rows[i] * D, e + static_cast<int64_t>(i) * D, D);
        round_to_dtype(hp + deepstack->rows[i] * D, D, emulate_);
      }
    }
    dump_copy(dump, "text.layers." + std::to_string(l), h);
  }
  cache.advance(S);
  Tensor out = Tensor::empty({S, D});
  norm_.forward(hp, S, out.data<float>());
  dump_copy(dump, "text.norm", out);
  return out;
}

}  // namespace qwen3vl

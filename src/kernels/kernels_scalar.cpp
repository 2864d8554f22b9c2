// Scalar reference implementations of every op in kernels.h.
//
// These are the numerical reference the SIMD versions are tested against, so they follow the
// PyTorch math literally: f32 everywhere, sequential f32 accumulation, no fast-math. They are
// still multi-threaded (over independent outputs only, so results do not depend on the thread
// count).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include <omp.h>

#include "kernels/kernels_impl.h"

namespace qwen3vl::kernels::detail {
namespace {

// Minimum amount of work (multiply-adds) before an op goes parallel.
constexpr int64_t kParallelWork = 1 << 15;

inline int threads_for(int64_t work) { return work >= kParallelWork ? threads() : 1; }

inline float weight_at(const WeightRef& w, int64_t idx) {
  switch (w.dtype) {
    case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(w.data)[idx]);
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(w.data)[idx]);
    default: return static_cast<const float*>(w.data)[idx];
  }
}

// y[m, n] = x[m, k] @ W[n, k]^T (+ bias): each output is one sequential f32 sum over k, then + bias.
void linear(const float* x, int64_t m, const WeightRef& w, const float* bias, float* y) {
  const int64_t n = w.n, k = w.k;
  if (m == 0 || n == 0) return;
  const int nt = threads_for(m * n * k);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t j = 0; j < n; ++j) {
    // Convert one weight row once, reuse for all m rows.
    std::vector<float> wrow(static_cast<size_t>(k));
    for (int64_t kk = 0; kk < k; ++kk) wrow[kk] = weight_at(w, j * k + kk);
    for (int64_t i = 0; i < m; ++i) {
      const float* xi = x + i * k;
      float acc = 0.0f;
      for (int64_t kk = 0; kk < k; ++kk) acc += xi[kk] * wrow[kk];
      if (bias) acc += bias[j];
      y[i * n + j] = acc;
    }
  }
}

// torch.nn.functional.layer_norm: mean, then biased variance of (x - mean), both in f32
// (two passes); y = (x - mean) * rstd * w + b.
void layer_norm(const float* x, int64_t rows, int64_t d, const float* w, const float* b, float eps, float* y) {
  const int nt = threads_for(rows * d);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * d;
    float* yr = y + r * d;
    float sum = 0.0f;
    for (int64_t i = 0; i < d; ++i) sum += xr[i];
    const float mean = sum / static_cast<float>(d);
    float sq = 0.0f;
    for (int64_t i = 0; i < d; ++i) {
      float t = xr[i] - mean;
      sq += t * t;
    }
    const float var = sq / static_cast<float>(d);
    const float rstd = 1.0f / std::sqrt(var + eps);
    for (int64_t i = 0; i < d; ++i) {
      float t = (xr[i] - mean) * rstd;
      if (w) t = t * w[i];
      if (b) t = t + b[i];
      yr[i] = t;
    }
  }
}

// Qwen3 RMSNorm: y = w * (x * rsqrt(mean(x^2) + eps)), all f32.
void rms_norm(const float* x, int64_t rows, int64_t d, const float* w, float eps, float* y) {
  const int nt = threads_for(rows * d);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * d;
    float* yr = y + r * d;
    float sq = 0.0f;
    for (int64_t i = 0; i < d; ++i) sq += xr[i] * xr[i];
    const float rstd = 1.0f / std::sqrt(sq / static_cast<float>(d) + eps);
    for (int64_t i = 0; i < d; ++i) {
      float t = xr[i] * rstd;
      yr[i] = w ? w[i] * t : t;
    }
  }
}

void gelu_tanh(float* x, int64_t n) {
  const float kBeta = 0.7978845608028654f;  // sqrt(2 / pi)
  const float kKappa = 0.044715f;
  const int nt = threads_for(n * 16);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    const float cube = v * v * v;
    const float inner = kBeta * (v + kKappa * cube);
    x[i] = 0.5f * v * (1.0f + std::tanh(inner));
  }
}

void gelu_erf(float* x, int64_t n) {
  const float kAlpha = 0.7071067811865476f;  // 1 / sqrt(2)
  const int nt = threads_for(n * 16);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    x[i] = 0.5f * v * (1.0f + std::erf(v * kAlpha));
  }
}

void silu_mul(const float* gate, const float* up, float* out, int64_t n) {
  const int nt = threads_for(n * 8);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void add_inplace(float* y, const float* x, int64_t n) {
  const int nt = threads_for(n);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void softmax_inplace(float* x, int64_t rows, int64_t n) {
  const int nt = threads_for(rows * n * 8);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    float* xr = x + r * n;
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < n; ++i) mx = xr[i] > mx ? xr[i] : mx;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; ++i) {
      xr[i] = std::exp(xr[i] - mx);
      sum += xr[i];
    }
    for (int64_t i = 0; i < n; ++i) xr[i] = xr[i] / sum;
  }
}

void rope_rotate_half(float* x, int64_t tokens, int64_t x_token_stride, int64_t heads, int64_t head_dim,
                      const float* cos, const float* sin) {
  const int64_t h = head_dim / 2;
  const int nt = threads_for(tokens * heads * head_dim * 2);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t t = 0; t < tokens; ++t) {
    const float* c = cos + t * head_dim;
    const float* s = sin + t * head_dim;
    for (int64_t hh = 0; hh < heads; ++hh) {
      float* v = x + t * x_token_stride + hh * head_dim;
      for (int64_t j = 0; j < h; ++j) {
        const float a = v[j], b = v[j + h];
        v[j] = a * c[j] - b * s[j];          // x * cos + (-x[h:]) * sin
        v[j + h] = b * c[j + h] + a * s[j + h];  // x * cos + x[:h] * sin
      }
    }
  }
}

// Online-softmax attention, one (query, head) at a time, keys in blocks of kKeyBlock:
//   s_j = scale * <q, k_j> (sequential f32 dot), m' = max(m, max_j s_j),
//   acc = acc * exp(m - m') + sum_j exp(s_j - m') v_j, l likewise; out = acc / l.
// Memory per query: O(d + kKeyBlock). A query that sees no key (sk == 0) gets zeros.
constexpr int64_t kKeyBlock = 64;

void attention(const AttentionArgs& a) {
  const int64_t sq = a.sq, hq = a.hq, d = a.d;
  const int64_t group = hq / a.hk;
  const int nt = threads_for(sq * hq * a.sk * d * 2);
#pragma omp parallel num_threads(nt)
  {
    std::vector<float> acc(static_cast<size_t>(d));
    float s[kKeyBlock];
#pragma omp for schedule(dynamic, 1) collapse(2)
    for (int64_t h = 0; h < hq; ++h) {
      for (int64_t i = 0; i < sq; ++i) {
        const int64_t kvh = h / group;
        const float* q = a.q + i * a.q_stride + h * d;
        float* out = a.out + i * a.out_stride + h * d;
        int64_t visible = a.sk;
        if (a.causal) {
          const int64_t last = a.q_pos0 + i;  // keys 0..last are visible
          visible = last + 1 < a.sk ? last + 1 : a.sk;
          if (visible < 0) visible = 0;
        }
        float m = -std::numeric_limits<float>::infinity();
        float l = 0.0f;
        std::fill(acc.begin(), acc.end(), 0.0f);
        for (int64_t j0 = 0; j0 < visible; j0 += kKeyBlock) {
          const int64_t jn = visible - j0 < kKeyBlock ? visible - j0 : kKeyBlock;
          float bmax = -std::numeric_limits<float>::infinity();
          for (int64_t jj = 0; jj < jn; ++jj) {
            const float* kr = a.k + (j0 + jj) * a.k_stride + kvh * d;
            float dot = 0.0f;
            for (int64_t t = 0; t < d; ++t) dot += q[t] * kr[t];
            s[jj] = dot * a.scale;
            bmax = s[jj] > bmax ? s[jj] : bmax;
          }
          const float mnew = bmax > m ? bmax : m;
          const float alpha = std::exp(m - mnew);  // exp(-inf) = 0 on the first block
          l *= alpha;
          for (int64_t t = 0; t < d; ++t) acc[t] *= alpha;
          for (int64_t jj = 0; jj < jn; ++jj) {
            const float p = std::exp(s[jj] - mnew);
            l += p;
            const float* vr = a.v + (j0 + jj) * a.v_stride + kvh * d;
            for (int64_t t = 0; t < d; ++t) acc[t] += p * vr[t];
          }
          m = mnew;
        }
        for (int64_t t = 0; t < d; ++t) out[t] = l > 0.0f ? acc[t] / l : 0.0f;
      }
    }
  }
}

}  // namespace

const OpTable& scalar_table() {
  static const OpTable t{linear, linear_bf16_scalar, linear_quant_scalar, layer_norm, rms_norm, gelu_tanh,
                         gelu_erf, silu_mul, add_inplace, softmax_inplace, rope_rotate_half, attention, attention_bf16_scalar,
                         /*attention_bf16_kv=*/true};
  return t;
}

void linear_f32_scalar(const float* x, int64_t m, const WeightRef& w, const float* bias, float* y) {
  scalar_table().linear(x, m, w, bias, y);
}
void attention_scalar(const AttentionArgs& a) { scalar_table().attention(a); }

}  // namespace qwen3vl::kernels::detail

// attention() with a.bf16 (scalar): the twin that defines the BF16-precision numerics, which are
// those of PyTorch's fused CPU attention for a bf16 model (q, k, v stored in bf16; f32 softmax;
// the probabilities cast to bf16 before the P V product):
//   qb, kb, vb = bf16(q), bf16(k), bf16(v)
//   keys in blocks of kKeyBlock = 64 (the AVX-512 kernel uses the same blocks, so both round
//   the probabilities relative to the same running maxima):
//     s_j  = scale * sum_t qb_t kb_jt              (exact products, f32 accumulation)
//     m'   = max(m, max_j s_j), alpha = exp(m - m')
//     p_j  = exp(s_j - m')                         (f32)
//     l    = l alpha + sum_j p_j                   (the row sum uses the unrounded p, f32)
//     acc  = acc alpha + sum_j bf16(p_j) vb_j      (p ROUNDED to bf16 here: exact products, f32 sum)
//   out = acc / l  (zeros if the query sees no key).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/dtype.h"
#include "kernels/kernels_impl.h"

namespace qwen3vl::kernels::detail {

namespace {
constexpr int64_t kKeyBlock = 64;  // must match attention_bf16_avx512.cpp
}

void attention_bf16_scalar(const AttentionArgs& a) {
  const int64_t sq = a.sq, hq = a.hq, d = a.d;
  const int64_t group = hq / a.hk;
  const int64_t work = sq * hq * a.sk * d * 2;
  const int nt = work >= (1 << 16) ? threads() : 1;
#pragma omp parallel num_threads(nt)
  {
    std::vector<float> acc(static_cast<size_t>(d)), qb(static_cast<size_t>(d));
    float s[kKeyBlock];
#pragma omp for schedule(dynamic, 1) collapse(2)
    for (int64_t h = 0; h < hq; ++h) {
      for (int64_t i = 0; i < sq; ++i) {
        const int64_t kvh = h / group;
        const float* q = a.q + i * a.q_stride + h * d;
        float* out = a.out + i * a.out_stride + h * d;
        for (int64_t t = 0; t < d; ++t) qb[t] = round_bf16(q[t]);
        int64_t visible = a.sk;
        if (a.causal) {
          const int64_t last = a.q_pos0 + i;
          visible = last + 1 < a.sk ? last + 1 : a.sk;
        }
        float m = -std::numeric_limits<float>::infinity();
        float l = 0.0f;
        std::fill(acc.begin(), acc.end(), 0.0f);
        for (int64_t j0 = 0; j0 < visible; j0 += kKeyBlock) {
          const int64_t jn = visible - j0 < kKeyBlock ? visible - j0 : kKeyBlock;
          float bmax = -std::numeric_limits<float>::infinity();
          for (int64_t jj = 0; jj < jn; ++jj) {
            float dot = 0.0f;
            const int64_t ko = (j0 + jj) * a.k_stride + kvh * d;
            if (a.k_bf16) {
              for (int64_t t = 0; t < d; ++t) dot += qb[t] * bf16_to_f32(a.k_bf16[ko + t]);
            } else {
              for (int64_t t = 0; t < d; ++t) dot += qb[t] * round_bf16(a.k[ko + t]);
            }
            s[jj] = dot * a.scale;
            bmax = s[jj] > bmax ? s[jj] : bmax;
          }
          const float mnew = bmax > m ? bmax : m;
          const float alpha = std::exp(m - mnew);  // 0 on the first block (m = -inf)
          l *= alpha;
          for (int64_t t = 0; t < d; ++t) acc[t] *= alpha;
          for (int64_t jj = 0; jj < jn; ++jj) {
            const float p = std::exp(s[jj] - mnew);
            l += p;
            const float pb = round_bf16(p);
            const int64_t vo = (j0 + jj) * a.v_stride + kvh * d;
            if (a.v_bf16) {
              for (int64_t t = 0; t < d; ++t) acc[t] += pb * bf16_to_f32(a.v_bf16[vo + t]);
            } else {
              for (int64_t t = 0; t < d; ++t) acc[t] += pb * round_bf16(a.v[vo + t]);
            }
          }
          m = mnew;
        }
        for (int64_t t = 0; t < d; ++t) out[t] = l > 0.0f ? acc[t] / l : 0.0f;
      }
    }
  }
}

}  // namespace qwen3vl::kernels::detail

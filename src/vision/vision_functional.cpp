#include "vision/vision_functional.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "kernels/kernels.h"

namespace qwen3vl {

namespace {

std::string item_str(size_t i, const GridTHW& g) {
  return "grid_thw[" + std::to_string(i) + "] = (" + std::to_string(g.t) + ", " + std::to_string(g.h) + ", " +
         std::to_string(g.w) + ")";
}

// Element `i` of a float tensor stored as F32 / BF16 / F16, as f32 (exact).
inline float load_as_f32(const void* data, DType dtype, int64_t i) {
  switch (dtype) {
    case DType::F32: return static_cast<const float*>(data)[i];
    case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(data)[i]);
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(data)[i]);
    default: return 0.0f;
  }
}

// torch.linspace(start, end, steps) for float32 on the CPU (aten RangeFactoriesKernel.cpp):
// step = (end - start) / (steps - 1) in float32; the first half counts up from start, the second
// half down from end, each value one fused multiply-add (the compiled kernel contracts
// `start + step * i` / `end - step * (steps - 1 - i)` into an FMA; checked equal to torch for
// steps 1..299 over [0, 47]). steps == 1 gives [start].
std::vector<float> torch_linspace_f32(float start, float end, int64_t steps) {
  std::vector<float> out(static_cast<size_t>(steps));
  if (steps == 1) {
    out[0] = start;
    return out;
  }
  const float step = (end - start) / static_cast<float>(steps - 1);
  const int64_t halfway = steps / 2;
  for (int64_t i = 0; i < steps; ++i) {
    out[static_cast<size_t>(i)] = i < halfway ? std::fma(step, static_cast<float>(i), start)
                                              : std::fma(-step, static_cast<float>(steps - 1 - i), end);
  }
  return out;
}

}  // namespace

int64_t grid_total_patches(const std::vector<GridTHW>& grid_thw) {
  int64_t n = 0;
  for (const GridTHW& g : grid_thw) n += g.t * g.h * g.w;
  return n;
}

void check_grid_thw(const std::vector<GridTHW>& grid_thw, int64_t spatial_merge_size) {
  QWEN3VL_CHECK(!grid_thw.empty(), "vision: grid_thw is empty (no image or video to encode)");
  for (size_t i = 0; i < grid_thw.size(); ++i) {
    const GridTHW& g = grid_thw[i];
    QWEN3VL_CHECK(g.t >= 1 && g.h >= 1 && g.w >= 1, "vision: " + item_str(i, g) + ": every size must be >= 1");
    QWEN3VL_CHECK(g.h % spatial_merge_size == 0 && g.w % spatial_merge_size == 0,
                  "vision: " + item_str(i, g) + ": h and w must be multiples of spatial_merge_size " +
                      std::to_string(spatial_merge_size));
    QWEN3VL_CHECK(g.h <= (int64_t{1} << 20) && g.w <= (int64_t{1} << 20) && g.t <= (int64_t{1} << 20),
                  "vision: " + item_str(i, g) + ": implausibly large grid");
  }
}

float round_to_dtype(float x, DType dtype) {
  switch (dtype) {
    case DType::BF16: return round_bf16(x);
    case DType::F16: return f16_to_f32(f32_to_f16(x));
    default: return x;
  }
}

void round_to_dtype_inplace(float* x, int64_t n, DType dtype) {
  if (dtype == DType::BF16) {
    for (int64_t i = 0; i < n; ++i) x[i] = round_bf16(x[i]);
  } else if (dtype == DType::F16) {
    for (int64_t i = 0; i < n; ++i) x[i] = f16_to_f32(f32_to_f16(x[i]));
  }
}

Tensor rotate_half(const Tensor& x) {
  QWEN3VL_CHECK(x.dtype() == DType::F32 && x.dim() >= 1 && x.size(-1) % 2 == 0,
                "rotate_half: expected an F32 tensor with an even last dimension, got " + x.str());
  const int64_t d = x.size(-1), half = d / 2, rows = x.numel() / std::max<int64_t>(d, 1);
  Tensor out = Tensor::empty(x.shape());
  const float* src = x.data<float>();
  float* dst = out.data<float>();
  for (int64_t r = 0; r < rows; ++r) {
    // x1 = x[..., : d // 2]; x2 = x[..., d // 2 :]; return torch.cat((-x2, x1), dim=-1)
    for (int64_t j = 0; j < half; ++j) {
      dst[r * d + j] = -src[r * d + half + j];
      dst[r * d + half + j] = src[r * d + j];
    }
  }
  return out;
}

void apply_rotary_pos_emb_vision(float* q, float* k, int64_t tokens, int64_t token_stride, int64_t heads,
                                 int64_t head_dim, const Tensor& cos, const Tensor& sin) {
  QWEN3VL_CHECK(cos.dtype() == DType::F32 && sin.dtype() == DType::F32 && cos.shape() == Shape({tokens, head_dim}) &&
                    sin.shape() == cos.shape(),
                "apply_rotary_pos_emb_vision: cos/sin must be F32 [" + std::to_string(tokens) + ", " +
                    std::to_string(head_dim) + "], got " + cos.str() + " / " + sin.str());
  // q_embed = (q * cos) + (rotate_half(q) * sin); k_embed = (k * cos) + (rotate_half(k) * sin)
  // (cos/sin unsqueezed over heads; kernels::rope_rotate_half is exactly this, fused)
  // (k right after q in each token, as in the fused qkv buffer: one pass over 2 * heads heads)
  if (k == q + heads * head_dim) {
    kernels::rope_rotate_half(q, tokens, token_stride, 2 * heads, head_dim, cos.data<float>(), sin.data<float>());
    return;
  }
  kernels::rope_rotate_half(q, tokens, token_stride, heads, head_dim, cos.data<float>(), sin.data<float>());
  kernels::rope_rotate_half(k, tokens, token_stride, heads, head_dim, cos.data<float>(), sin.data<float>());
}

Tensor qwen3_vision_rotary_embedding(int64_t seqlen, int64_t dim, double theta) {
  QWEN3VL_CHECK(dim >= 2 && dim % 2 == 0 && seqlen >= 0, "qwen3_vision_rotary_embedding: bad dim " +
                                                              std::to_string(dim) + " / seqlen " + std::to_string(seqlen));
  const int64_t half = dim / 2;
  // inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))   (all fp32)
  std::vector<float> inv_freq(static_cast<size_t>(half));
  const float theta_f = static_cast<float>(theta);
  for (int64_t i = 0; i < half; ++i) {
    const float expo = static_cast<float>(2 * i) / static_cast<float>(dim);
    inv_freq[static_cast<size_t>(i)] = 1.0f / std::pow(theta_f, expo);
  }
  // seq = torch.arange(seqlen); freqs = torch.outer(seq, self.inv_freq)   [seqlen, dim // 2]
  Tensor freqs = Tensor::empty({seqlen, half});
  float* f = freqs.data<float>();
  for (int64_t s = 0; s < seqlen; ++s)
    for (int64_t i = 0; i < half; ++i) f[s * half + i] = static_cast<float>(s) * inv_freq[static_cast<size_t>(i)];
  return freqs;
}

Tensor qwen3_vl_rot_pos_emb(const std::vector<GridTHW>& grid_thw, int64_t spatial_merge_size, int64_t head_dim) {
  check_grid_thw(grid_thw, spatial_merge_size);
  QWEN3VL_CHECK(head_dim % 4 == 0, "qwen3_vl_rot_pos_emb: head_dim " + std::to_string(head_dim) +
                                       " must be a multiple of 4");
  const int64_t m = spatial_merge_size;
  // max_hw = int(grid_thw[:, 1:].max().item()); freq_table = self.rotary_pos_emb(max_hw)
  int64_t max_hw = 0;
  for (const GridTHW& g : grid_thw) max_hw = std::max({max_hw, g.h, g.w});
  const int64_t half = head_dim / 2;  // rotary module dim
  const int64_t nf = half / 2;        // frequencies per axis
  Tensor freq_table = qwen3_vision_rotary_embedding(max_hw, half);  // [max_hw, head_dim // 4]
  const float* ft = freq_table.data<float>();

  const int64_t total = grid_total_patches(grid_thw);
  Tensor emb = Tensor::empty({total, half});  // [total_tokens, head_dim // 2]
  float* out = emb.data<float>();
  int64_t row_out = 0;
  for (const GridTHW& g : grid_thw) {
    // row_idx = block_rows * merge_size + intra_row; col_idx = block_cols * merge_size + intra_col
    // expanded to (merged_h, merged_w, merge_size, merge_size); coords.repeat(num_frames, 1)
    for (int64_t tt = 0; tt < g.t; ++tt)
      for (int64_t br = 0; br < g.h / m; ++br)
        for (int64_t bc = 0; bc < g.w / m; ++bc)
          for (int64_t ir = 0; ir < m; ++ir)
            for (int64_t ic = 0; ic < m; ++ic) {
              const int64_t row = br * m + ir, col = bc * m + ic;
              // embeddings = freq_table[pos_ids].flatten(1)  -> [row freqs, col freqs]
              float* dst = out + row_out * half;
              std::memcpy(dst, ft + row * nf, static_cast<size_t>(nf) * sizeof(float));
              std::memcpy(dst + nf, ft + col * nf, static_cast<size_t>(nf) * sizeof(float));
              ++row_out;
            }
  }
  return emb;
}

Tensor qwen3_vl_fast_pos_embed_interpolation(const std::vector<GridTHW>& grid_thw, int64_t num_grid_per_side,
                                             const Tensor& pos_embed, int64_t spatial_merge_size) {
  check_grid_thw(grid_thw, spatial_merge_size);
  const int64_t G = num_grid_per_side;
  const DType dt = pos_embed.dtype();
  QWEN3VL_CHECK(dt == DType::F32 || dt == DType::BF16 || dt == DType::F16,
                "fast_pos_embed_interpolate: pos_embed.weight must be F32/BF16/F16, got " + pos_embed.str());
  QWEN3VL_CHECK(G >= 1 && pos_embed.dim() == 2 && pos_embed.size(0) >= G * G,
                "fast_pos_embed_interpolate: pos_embed.weight " + pos_embed.str() + " does not hold a " +
                    std::to_string(G) + "x" + std::to_string(G) + " grid");
  const int64_t D = pos_embed.size(1), m = spatial_merge_size;
  const void* E = pos_embed.raw();

  Tensor out = Tensor::empty({grid_total_patches(grid_thw), D});  // [sum(t*h*w), Dv]
  float* o = out.data<float>();
  int64_t offset = 0;
  for (const GridTHW& g : grid_thw) {
    const int64_t h = g.h, w = g.w;
    // h_idxs = torch.linspace(0, self.num_grid_per_side - 1, h)   (same for w)
    const std::vector<float> h_idxs = torch_linspace_f32(0.0f, static_cast<float>(G - 1), h);
    const std::vector<float> w_idxs = torch_linspace_f32(0.0f, static_cast<float>(G - 1), w);
    for (int64_t i = 0; i < h; ++i) {
      // h_idxs_floor = h_idxs.int(); h_idxs_ceil = (h_idxs.int() + 1).clip(max=G - 1)
      const int64_t h0 = static_cast<int64_t>(h_idxs[static_cast<size_t>(i)]);
      const int64_t h1 = std::min(h0 + 1, G - 1);
      const float dh = h_idxs[static_cast<size_t>(i)] - static_cast<float>(h0);  // dh = h_idxs - h_idxs_floor
      for (int64_t j = 0; j < w; ++j) {
        const int64_t w0 = static_cast<int64_t>(w_idxs[static_cast<size_t>(j)]);
        const int64_t w1 = std::min(w0 + 1, G - 1);
        const float dw = w_idxs[static_cast<size_t>(j)] - static_cast<float>(w0);
        // indices = [h0*G + w0, h0*G + w1, h1*G + w0, h1*G + w1]
        const int64_t idx[4] = {h0 * G + w0, h0 * G + w1, h1 * G + w0, h1 * G + w1};
        // weights = [(1-dh)*(1-dw), (1-dh)*dw, dh*(1-dw), dh*dw] in fp32, then
        // weight_tensor = torch.tensor(weight_list, dtype=self.pos_embed.weight.dtype)
        const float wt[4] = {round_to_dtype((1.0f - dh) * (1.0f - dw), dt), round_to_dtype((1.0f - dh) * dw, dt),
                             round_to_dtype(dh * (1.0f - dw), dt), round_to_dtype(dh * dw, dt)};
        // Merge-window destination of raster position (i, j) in frame 0:
        // view(t, h/m, m, w/m, m, -1).permute(0, 1, 3, 2, 4, 5).flatten(0, 4)
        const int64_t dst_row = offset + ((i / m) * (w / m) + (j / m)) * m * m + (i % m) * m + (j % m);
        float* dst = o + dst_row * D;
        for (int64_t c = 0; c < D; ++c) {
          // pos_embeds = self.pos_embed(idx_tensor) * weight_tensor[:, :, None]   (in the table dtype)
          float p[4];
          for (int k = 0; k < 4; ++k) p[k] = round_to_dtype(load_as_f32(E, dt, idx[k] * D + c) * wt[k], dt);
          // patch_pos_embeds = pos_embeds[0] + pos_embeds[1] + pos_embeds[2] + pos_embeds[3]
          float s = round_to_dtype(p[0] + p[1], dt);
          s = round_to_dtype(s + p[2], dt);
          dst[c] = round_to_dtype(s + p[3], dt);
        }
      }
    }
    // pos_embed = pos_embed.repeat(t, 1): every temporal patch gets the frame-0 table
    const int64_t frame = h * w;
    for (int64_t tt = 1; tt < g.t; ++tt)
      std::memcpy(o + (offset + tt * frame) * D, o + offset * D, static_cast<size_t>(frame * D) * sizeof(float));
    offset += g.t * frame;
  }
  return out;
}

VisionPreprocess qwen3_vision_transformer_preprocess(int64_t seq_len, const std::vector<GridTHW>& grid_thw,
                                                     int64_t head_dim, int64_t spatial_merge_size) {
  check_grid_thw(grid_thw, spatial_merge_size);
  QWEN3VL_CHECK(grid_total_patches(grid_thw) == seq_len,
                "vision: grid_thw describes " + std::to_string(grid_total_patches(grid_thw)) +
                    " patches but the input has " + std::to_string(seq_len) + " rows");
  VisionPreprocess pre;
  // rotary_pos_emb = self.rot_pos_emb(grid_thw)   [seq_len, head_dim // 2]
  Tensor rotary_pos_emb = qwen3_vl_rot_pos_emb(grid_thw, spatial_merge_size, head_dim);
  const int64_t half = head_dim / 2;
  // emb = torch.cat((rotary_pos_emb, rotary_pos_emb), dim=-1); position_embeddings = (emb.cos(), emb.sin())
  pre.cos = Tensor::empty({seq_len, head_dim});
  pre.sin = Tensor::empty({seq_len, head_dim});
  const float* r = rotary_pos_emb.data<float>();
  float* c = pre.cos.data<float>();
  float* s = pre.sin.data<float>();
  for (int64_t t = 0; t < seq_len; ++t)
    for (int64_t j = 0; j < head_dim; ++j) {
      const float a = r[t * half + (j % half)];
      c[t * head_dim + j] = std::cos(a);
      s[t * head_dim + j] = std::sin(a);
    }
  // cu_seqlens = torch.repeat_interleave(grid_thw[:, 1] * grid_thw[:, 2], grid_thw[:, 0]).cumsum(0)
  // cu_seqlens = F.pad(cu_seqlens, (1, 0), value=0)
  std::vector<int64_t> cu{0};
  for (const GridTHW& g : grid_thw)
    for (int64_t tt = 0; tt < g.t; ++tt) cu.push_back(cu.back() + g.h * g.w);
  pre.cu_seqlens = Tensor::from_vector(cu, {static_cast<int64_t>(cu.size())});
  return pre;
}

}  // namespace qwen3vl

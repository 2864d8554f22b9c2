// Stateless functional pieces of the Qwen3-VL vision tower (HF modeling_qwen3_vl.py,
// transformers 4.57.6). Every function takes its weights and sizes explicitly; the module types
// in qwen3vl_vision.h call these (one implementation of each), and tests/vision checks each one
// against the HF fixtures.
#pragma once

#include <cstdint>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"

namespace qwen3vl {

// One row of HF `grid_thw`: temporal, height, width of an image / video in patches.
struct GridTHW {
  int64_t t = 1, h = 0, w = 0;  // in patches (h, w even)
};

// sum(t * h * w) over the items (the number of pixel_values rows).
int64_t grid_total_patches(const std::vector<GridTHW>& grid_thw);
// Throws Error (naming the item) unless every item has t >= 1 and h, w positive multiples of
// spatial_merge_size.
void check_grid_thw(const std::vector<GridTHW>& grid_thw, int64_t spatial_merge_size);

// Rounds f32 values to `dtype` (BF16 / F16 round-to-nearest-even, F32 unchanged) and back: what
// storing an activation in a tensor of that dtype does in PyTorch.
float round_to_dtype(float x, DType dtype);
void round_to_dtype_inplace(float* x, int64_t n, DType dtype);

// HF `rotate_half`: x [..., d] -> cat(-x[..., d/2:], x[..., :d/2]). F32 in, F32 out.
Tensor rotate_half(const Tensor& x);

// HF `apply_rotary_pos_emb_vision`, in place on q and k, both [tokens, heads, head_dim] with
// `token_stride` floats between tokens (they live inside the fused qkv buffer):
//   q_embed = (q * cos) + (rotate_half(q) * sin), same for k; cos/sin [tokens, head_dim] f32.
// The math is fp32 as in HF (`q.float()`); the cast back to the activation dtype is the caller's.
void apply_rotary_pos_emb_vision(float* q, float* k, int64_t tokens, int64_t token_stride, int64_t heads,
                                 int64_t head_dim, const Tensor& cos, const Tensor& sin);

// HF `Qwen3VLVisionRotaryEmbedding(dim, theta).forward(seqlen)`:
//   inv_freq = 1 / theta ** (arange(0, dim, 2) / dim)   (fp32)
//   freqs = outer(arange(seqlen), inv_freq)              -> [seqlen, dim / 2] f32
Tensor qwen3_vision_rotary_embedding(int64_t seqlen, int64_t dim, double theta = 10000.0);

// HF `Qwen3VLVisionModel.rot_pos_emb(grid_thw)`: per token (merge-window order, repeated t times
// for videos) the (row, col) position looked up in the rotary table built with dim = head_dim/2
// and flattened: [sum(t*h*w), head_dim / 2] f32 = [row * inv_freq, col * inv_freq].
Tensor qwen3_vl_rot_pos_emb(const std::vector<GridTHW>& grid_thw, int64_t spatial_merge_size, int64_t head_dim);

// HF `Qwen3VLVisionModel.fast_pos_embed_interpolate(grid_thw)`: bilinear interpolation
// (align-corners linspace over [0, G-1], G = num_grid_per_side) of the learned table
// pos_embed [G*G, Dv] (dtype as stored) for every item, repeated t times and permuted into
// merge-window order: [sum(t*h*w), Dv] f32.
// Numerics follow transformers 4.57.6: the four bilinear weights are computed in fp32 and then
// materialised in the table's dtype, each product E[idx] * w and the left-to-right 4-term sum
// are rounded to that dtype (bf16 for bf16 checkpoints; no rounding for f32).
Tensor qwen3_vl_fast_pos_embed_interpolation(const std::vector<GridTHW>& grid_thw, int64_t num_grid_per_side,
                                             const Tensor& pos_embed, int64_t spatial_merge_size);

// The per-forward preprocessing HF `Qwen3VLVisionModel.forward` does before the blocks.
struct VisionPreprocess {
  Tensor cu_seqlens;  // [segments + 1] I64: 0, then cumsum of h*w repeated t times per item
  Tensor cos;         // [seq_len, head_dim] f32: cos(cat(rotary_pos_emb, rotary_pos_emb))
  Tensor sin;         // [seq_len, head_dim] f32
};
VisionPreprocess qwen3_vision_transformer_preprocess(int64_t seq_len, const std::vector<GridTHW>& grid_thw,
                                                     int64_t head_dim, int64_t spatial_merge_size);

}  // namespace qwen3vl

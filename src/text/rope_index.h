// 3-D M-RoPE position ids of a prompt: HF Qwen3VLModel.get_rope_index (single unpadded sequence).
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "model/config.h"
#include "vision/qwen3vl_vision.h"

namespace qwen3vl {

struct RopeIndex {
  Tensor position_ids;     // [3, seq] I64, rows (t, h, w)
  int64_t rope_delta = 0;  // max(position) + 1 - seq; decode position = cache index + rope_delta
};

// Text runs get (p, p, p) with p counting on; each visual block (the pad-token run right after a
// <|vision_start|>) with grid (1, h, w) gets (p0, p0 + r, p0 + c) over its merged h/m x w/m cells,
// and the next run resumes at p0 + max(h/m, w/m). Images and videos may come in any order; grids
// are consumed in order per kind, and a video grid (t, h, w) covers t consecutive blocks (one per
// temporal group, each with its own timestamp text already in input_ids).
// No grids: positions = arange(seq), delta 0. Throws Error when a block's pad-token run does
// not match its grid or the grids run out.
RopeIndex get_rope_index(const std::vector<int64_t>& input_ids, const std::vector<GridTHW>& image_grid_thw,
                         const std::vector<GridTHW>& video_grid_thw, const Qwen3VLConfig& config);

// Positions of `n` tokens appended at cache index `start` of a sequence with `rope_delta`:
// (start + i + rope_delta) on all three axes.
Tensor decode_position_ids(int64_t start, int64_t n, int64_t rope_delta);

}  // namespace qwen3vl

#include "text/rope_index.h"

#include <algorithm>
#include <string>

#include "core/error.h"

namespace qwen3vl {

RopeIndex get_rope_index(const std::vector<int64_t>& input_ids, const std::vector<GridTHW>& image_grid_thw,
                         const std::vector<GridTHW>& video_grid_thw, const Qwen3VLConfig& config) {
  const int64_t S = static_cast<int64_t>(input_ids.size());
  RopeIndex out;
  out.position_ids = Tensor::empty({3, S}, DType::I64);
  int64_t* pt = out.position_ids.data<int64_t>();
  int64_t* ph = pt + S;
  int64_t* pw = pt + 2 * S;

  if (image_grid_thw.empty() && video_grid_thw.empty()) {
    for (int64_t i = 0; i < S; ++i) pt[i] = ph[i] = pw[i] = i;
    out.rope_delta = 0;
    return out;
  }

  // video_grid_thw = repeat_interleave(video_grid_thw, t); t = 1: one block per temporal group.
  std::vector<GridTHW> videos;
  for (const GridTHW& g : video_grid_thw) {
    QWEN3VL_CHECK(g.t >= 1, "video_grid_thw: temporal size must be at least 1");
    for (int64_t i = 0; i < g.t; ++i) videos.push_back({1, g.h, g.w});
  }
  const int64_t m = config.vision_config.spatial_merge_size;
  const int64_t image_id = config.image_token_id, video_id = config.video_token_id;
  const int64_t start_id = config.vision_start_token_id;

  // Blocks: vision_start immediately followed by an image or video pad token.
  int64_t image_nums = 0, video_nums = 0;
  for (int64_t i = 0; i + 1 < S; ++i) {
    if (input_ids[static_cast<size_t>(i)] != start_id) continue;
    const int64_t next = input_ids[static_cast<size_t>(i + 1)];
    image_nums += next == image_id;
    video_nums += next == video_id;
  }
  auto find_from = [&](int64_t id, int64_t st) -> int64_t {
    auto it = std::find(input_ids.begin() + st, input_ids.end(), id);
    return it == input_ids.end() ? S + 1 : static_cast<int64_t>(it - input_ids.begin());
  };

  int64_t st = 0;     // next unprocessed token
  int64_t next = 0;   // st_idx: max position so far + 1
  size_t image_index = 0, video_index = 0;
  int64_t remain_images = image_nums, remain_videos = video_nums;
  for (int64_t b = 0; b < image_nums + video_nums; ++b) {
    const int64_t ed_image = remain_images > 0 ? find_from(image_id, st) : S + 1;
    const int64_t ed_video = remain_videos > 0 ? find_from(video_id, st) : S + 1;
    GridTHW g;
    int64_t ed, pad;
    const char* kind;
    if (ed_image < ed_video) {
      QWEN3VL_CHECK(image_index < image_grid_thw.size(),
                    "the prompt has more image blocks than images (" + std::to_string(image_grid_thw.size()) + ")");
      g = image_grid_thw[image_index++];
      --remain_images;
      ed = ed_image;
      pad = image_id;
      kind = "image";
    } else {
      QWEN3VL_CHECK(ed_video <= S, "internal: no video pad token found for a video block");
      QWEN3VL_CHECK(video_index < videos.size(),
                    "the prompt has more video blocks (one per temporal group) than video_grid_thw provides (" +
                        std::to_string(videos.size()) + ")");
      g = videos[video_index++];
      --remain_videos;
      ed = ed_video;
      pad = video_id;
      kind = "video";
    }
    QWEN3VL_CHECK(g.h > 0 && g.w > 0 && g.h % m == 0 && g.w % m == 0,
                  std::string(kind) + " grid (" + std::to_string(g.t) + ", " + std::to_string(g.h) + ", " +
                      std::to_string(g.w) + ") is not a positive multiple of spatial_merge_size");
    const int64_t gh = g.h / m, gw = g.w / m, n = gh * gw;
    // The pad-token run must be exactly one grid's worth (HF assumes it silently).
    QWEN3VL_CHECK(ed + n <= S && std::all_of(input_ids.begin() + ed, input_ids.begin() + ed + n,
                                             [&](int64_t t) { return t == pad; }) &&
                      (ed + n == S || input_ids[static_cast<size_t>(ed + n)] != pad),
                  std::string(kind) + " block at token " + std::to_string(ed) + " does not have the " +
                      std::to_string(n) + " placeholder tokens its grid (" + std::to_string(g.t) + ", " +
                      std::to_string(g.h) + ", " + std::to_string(g.w) + ") needs");
    // Text run [st, ed): (next + i) on all axes.
    for (int64_t i = st; i < ed; ++i) pt[i] = ph[i] = pw[i] = next + (i - st);
    const int64_t p0 = next + (ed - st);
    // Visual block: (p0, p0 + r, p0 + c), c fastest (t_index is always 0).
    for (int64_t r = 0; r < gh; ++r)
      for (int64_t c = 0; c < gw; ++c) {
        const int64_t i = ed + r * gw + c;
        pt[i] = p0;
        ph[i] = p0 + r;
        pw[i] = p0 + c;
      }
    next = p0 + std::max(gh, gw);  // llm_pos_ids_list[-1].max() + 1
    st = ed + n;
  }
  for (int64_t i = st; i < S; ++i) pt[i] = ph[i] = pw[i] = next + (i - st);
  int64_t maxpos = -1;
  for (int64_t i = 0; i < 3 * S; ++i) maxpos = std::max(maxpos, pt[i]);
  out.rope_delta = maxpos + 1 - S;
  return out;
}

Tensor decode_position_ids(int64_t start, int64_t n, int64_t rope_delta) {
  Tensor p = Tensor::empty({3, n}, DType::I64);
  int64_t* d = p.data<int64_t>();
  for (int64_t a = 0; a < 3; ++a)
    for (int64_t i = 0; i < n; ++i) d[a * n + i] = start + i + rope_delta;
  return p;
}

}  // namespace qwen3vl

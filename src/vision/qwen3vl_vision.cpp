// Qwen3-VL vision tower, following modeling_qwen3_vl.py (transformers 4.57.6) line by line.
#include "vision/qwen3vl_vision.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <string>

#include "kernels/kernels.h"

namespace qwen3vl {

namespace {

// The tensor `name` with the expected shape, as stored (zero-copy view of the checkpoint).
// `quantized_ok`: linear weights may also be block-quantized (Q8_0 / Q4_0, model/quantize.h).
Tensor get_checked(const Checkpoint& ckpt, const std::string& name, const Shape& shape, bool quantized_ok = false) {
  const Tensor& t = ckpt.get(name);
  QWEN3VL_CHECK(t.shape() == shape, "vision: tensor " + name + " in " + ckpt.file_of(name) + " has shape " +
                                        shape_str(t.shape()) + ", expected " + shape_str(shape) +
                                        " from config.json vision_config");
  QWEN3VL_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::BF16 || t.dtype() == DType::F16 ||
                    (quantized_ok && dtype_is_quantized(t.dtype())),
                "vision: tensor " + name + " in " + ckpt.file_of(name) + " has dtype " + dtype_name(t.dtype()) +
                    (quantized_ok ? ", expected F32, BF16, F16, Q8_0 or Q4_0" : ", expected F32, BF16 or F16"));
  return t;
}

// kernels::weight_ref for float weights; block-quantized [n, k] weights are viewed directly.
kernels::WeightRef linear_weight_ref(const Tensor& w) {
  if (!dtype_is_quantized(w.dtype())) return kernels::weight_ref(w);
  kernels::WeightRef r;
  r.dtype = w.dtype();
  r.data = w.raw();
  r.n = w.size(0);
  r.k = w.size(1);
  return r;
}

// Adds the wall (or process CPU) time of its scope to *slot (no-op for nullptr).
class StageTimer {
 public:
  StageTimer(double* slot, bool cpu) : slot_(slot), cpu_(cpu) {
    if (slot_) t0_ = now();
  }
  ~StageTimer() {
    if (slot_) *slot_ += now() - t0_;
  }
  StageTimer(const StageTimer&) = delete;
  StageTimer& operator=(const StageTimer&) = delete;

 private:
  double now() const {
    if (cpu_) {
      timespec ts{};
      clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
      return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
    }
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }
  double* slot_;
  bool cpu_;
  double t0_ = 0;
};
#define QWEN3VL_STAGE(prof, field) \
  StageTimer stage_timer_##field((prof) ? &(prof)->field : nullptr, (prof) && (prof)->cpu_clock)

// Small weights (norms, biases) are converted to f32 once at load.
Tensor get_f32(const Checkpoint& ckpt, const std::string& name, const Shape& shape) {
  return get_checked(ckpt, name, shape).to(DType::F32);
}

Tensor as_f32(const Tensor& x, const char* what) {
  QWEN3VL_CHECK(x.defined(), std::string("vision: ") + what + " is empty");
  if (x.dtype() == DType::F32) return x;
  QWEN3VL_CHECK(x.dtype() == DType::BF16 || x.dtype() == DType::F16 || x.dtype() == DType::F64,
                std::string("vision: ") + what + " must be a float tensor, got " + x.str());
  return x.to(DType::F32);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// nn.Linear / nn.LayerNorm
// ---------------------------------------------------------------------------------------------

VisionLinear::VisionLinear(const Checkpoint& ckpt, const std::string& prefix, int64_t in, int64_t out)
    : weight(get_checked(ckpt, prefix + "weight", {out, in}, /*quantized_ok=*/true)),
      bias(get_f32(ckpt, prefix + "bias", {out})),
      in_features(in),
      out_features(out) {}

Tensor VisionLinear::forward(const Tensor& x) const {
  QWEN3VL_CHECK(x.dtype() == DType::F32 && x.dim() >= 1 && x.size(-1) == in_features,
                "vision linear: input " + x.str() + " does not end in " + std::to_string(in_features));
  Shape out_shape = x.shape();
  out_shape.back() = out_features;
  Tensor y = Tensor::empty(out_shape);
  // y = x @ W.T + b
  kernels::linear(x.data<float>(), x.numel() / in_features, linear_weight_ref(weight), bias.data<float>(),
                  y.data<float>());
  return y;
}

VisionLayerNorm::VisionLayerNorm(const Checkpoint& ckpt, const std::string& prefix, int64_t d_, float eps_)
    : weight(get_f32(ckpt, prefix + "weight", {d_})), bias(get_f32(ckpt, prefix + "bias", {d_})), d(d_), eps(eps_) {}

Tensor VisionLayerNorm::forward(const Tensor& x) const {
  QWEN3VL_CHECK(x.dtype() == DType::F32 && x.numel() % d == 0,
                "vision layer_norm: input " + x.str() + " is not a multiple of " + std::to_string(d));
  Tensor y = Tensor::empty(x.shape());
  kernels::layer_norm(x.data<float>(), x.numel() / d, d, weight.data<float>(), bias.data<float>(), eps,
                      y.data<float>());
  return y;
}

// ---------------------------------------------------------------------------------------------
// Qwen3VLVisionPatchEmbed
// ---------------------------------------------------------------------------------------------

Qwen3VLVisionPatchEmbed::Qwen3VLVisionPatchEmbed(const Checkpoint& ckpt, const std::string& prefix,
                                                 const Qwen3VLVisionConfig& config)
    : patch_dim_(config.patch_dim()),
      embed_dim_(config.hidden_size),
      temporal_(config.temporal_patch_size),
      slice_(config.patch_size * config.patch_size) {
  // self.proj = nn.Conv3d(in_channels, embed_dim, kernel_size=[T, P, P], stride=[T, P, P], bias=True)
  proj_weight_ = get_checked(ckpt, prefix + "proj.weight",
                             {config.hidden_size, config.in_channels, config.temporal_patch_size, config.patch_size,
                              config.patch_size});
  proj_bias_ = get_f32(ckpt, prefix + "proj.bias", {config.hidden_size});
  if (temporal_ > 1) {
    // Wf[o, c, y, x] = sum_t W[o, c, t, y, x], in f32 (t ascending).
    const int64_t C = config.in_channels;
    const Tensor w = proj_weight_.to(DType::F32);
    folded_weight_ = Tensor::empty({embed_dim_, C, config.patch_size, config.patch_size});
    const float* src = w.data<float>();
    float* dst = folded_weight_.data<float>();
    for (int64_t o = 0; o < embed_dim_; ++o)
      for (int64_t c = 0; c < C; ++c) {
        const float* ws = src + (o * C + c) * temporal_ * slice_;
        float* wd = dst + (o * C + c) * slice_;
        for (int64_t e = 0; e < slice_; ++e) {
          float acc = ws[e];
          for (int64_t t = 1; t < temporal_; ++t) acc += ws[t * slice_ + e];
          wd[e] = acc;
        }
      }
  }
}

Tensor Qwen3VLVisionPatchEmbed::forward(const Tensor& hidden_states_in, bool* folded) const {
  Tensor hidden_states = as_f32(hidden_states_in, "pixel_values");
  QWEN3VL_CHECK(hidden_states.dim() == 2 && hidden_states.size(1) == patch_dim_,
                "vision: pixel_values must be [n_patches, " + std::to_string(patch_dim_) + "] (C*T*P*P), got " +
                    hidden_states.str());
  const DType target_dtype = dtype();
  const int64_t n = hidden_states.size(0);
  // hidden_states.view(-1, C, T, P, P).to(dtype=target_dtype): the rounding is reproduced; the
  // view is a no-op because each row already is (c, t, y, x) in memory order.
  if (target_dtype != DType::F32) {
    hidden_states = hidden_states.clone();
    round_to_dtype_inplace(hidden_states.data<float>(), hidden_states.numel(), target_dtype);
  }
  // self.proj(...).view(-1, embed_dim): kernel == stride, so one dot product per output channel
  // with the weight [Dv, C, T, P, P] viewed as [Dv, C*T*P*P].
  Tensor out = Tensor::empty({n, embed_dim_});  // [N, Dv]
  const float* x = hidden_states.data<float>();
  // Temporal fold (see the header): rows whose T slices are all equal.
  std::vector<int64_t> fold_rows, full_rows;
  if (fold_enabled_ && folded_weight_.defined()) {
    const int64_t C = patch_dim_ / (temporal_ * slice_);
    for (int64_t r = 0; r < n; ++r) {
      const float* row = x + r * patch_dim_;
      bool same = true;
      for (int64_t c = 0; c < C && same; ++c) {
        const float* s0 = row + c * temporal_ * slice_;
        for (int64_t t = 1; t < temporal_ && same; ++t)
          same = std::memcmp(s0, s0 + t * slice_, static_cast<size_t>(slice_) * sizeof(float)) == 0;
      }
      (same ? fold_rows : full_rows).push_back(r);
    }
  }
  if (fold_rows.empty()) {
    kernels::linear(x, n, kernels::weight_ref(proj_weight_), proj_bias_.data<float>(), out.data<float>());
  } else {
    // Folded rows: x[c, 0, y, x] gathered into [rows, C*P*P], times Wf.
    const int64_t C = patch_dim_ / (temporal_ * slice_), kf = C * slice_;
    const int64_t nf = static_cast<int64_t>(fold_rows.size());
    const bool all = nf == n;
    Tensor xf = Tensor::empty({nf, kf});
    float* xd = xf.data<float>();
    for (int64_t i = 0; i < nf; ++i)
      for (int64_t c = 0; c < C; ++c)
        std::memcpy(xd + i * kf + c * slice_, x + fold_rows[i] * patch_dim_ + c * temporal_ * slice_,
                    static_cast<size_t>(slice_) * sizeof(float));
    Tensor yf = all ? out : Tensor::empty({nf, embed_dim_});
    kernels::linear(xd, nf, kernels::weight_ref(folded_weight_), proj_bias_.data<float>(), yf.data<float>());
    if (!all) {
      float* od = out.data<float>();
      for (int64_t i = 0; i < nf; ++i)
        std::memcpy(od + fold_rows[i] * embed_dim_, yf.data<float>() + i * embed_dim_,
                    static_cast<size_t>(embed_dim_) * sizeof(float));
      const int64_t nu = static_cast<int64_t>(full_rows.size());
      Tensor xu = Tensor::empty({nu, patch_dim_}), yu = Tensor::empty({nu, embed_dim_});
      for (int64_t i = 0; i < nu; ++i)
        std::memcpy(xu.data<float>() + i * patch_dim_, x + full_rows[i] * patch_dim_,
                    static_cast<size_t>(patch_dim_) * sizeof(float));
      kernels::linear(xu.data<float>(), nu, kernels::weight_ref(proj_weight_), proj_bias_.data<float>(),
                      yu.data<float>());
      for (int64_t i = 0; i < nu; ++i)
        std::memcpy(od + full_rows[i] * embed_dim_, yu.data<float>() + i * embed_dim_,
                    static_cast<size_t>(embed_dim_) * sizeof(float));
    }
  }
  if (folded) *folded = !fold_rows.empty();
  round_to_dtype_inplace(out.data<float>(), out.numel(), target_dtype);  // Conv3d output tensor dtype
  return out;
}

// ---------------------------------------------------------------------------------------------
// Qwen3VLVisionPatchMerger
// ---------------------------------------------------------------------------------------------

Qwen3VLVisionPatchMerger::Qwen3VLVisionPatchMerger(const Checkpoint& ckpt, const std::string& prefix,
                                                   const Qwen3VLVisionConfig& config, bool use_postshuffle_norm)
    : hidden_size_(config.merged_hidden()), use_postshuffle_norm_(use_postshuffle_norm) {
  // self.norm = nn.LayerNorm(self.hidden_size if use_postshuffle_norm else config.hidden_size, eps=1e-6)
  norm_ = VisionLayerNorm(ckpt, prefix + "norm.", use_postshuffle_norm ? hidden_size_ : config.hidden_size, 1e-6f);
  linear_fc1_ = VisionLinear(ckpt, prefix + "linear_fc1.", hidden_size_, hidden_size_);
  linear_fc2_ = VisionLinear(ckpt, prefix + "linear_fc2.", hidden_size_, config.out_hidden_size);
}

Tensor Qwen3VLVisionPatchMerger::forward(const Tensor& x) const {
  QWEN3VL_CHECK(x.numel() % hidden_size_ == 0, "vision merger: input " + x.str() +
                                                   " does not group into rows of " + std::to_string(hidden_size_));
  const int64_t rows = x.numel() / hidden_size_;
  // x = self.norm(x.view(-1, self.hidden_size) if self.use_postshuffle_norm else x).view(-1, self.hidden_size)
  // (the 2x2 window is `merge^2` consecutive rows; viewing them as one row concatenates them)
  Tensor h = use_postshuffle_norm_ ? norm_.forward(x.reshape({rows, hidden_size_})) : norm_.forward(x);
  h = h.reshape({rows, hidden_size_});  // [N / 4, 4 * Dv]
  // x = self.linear_fc2(self.act_fn(self.linear_fc1(x)))   (act_fn = nn.GELU(): exact erf)
  Tensor y = linear_fc1_.forward(h);
  h = Tensor();
  kernels::gelu_erf(y.data<float>(), y.numel());
  return linear_fc2_.forward(y);  // [N / 4, out_hidden_size]
}

// ---------------------------------------------------------------------------------------------
// Qwen3VLVisionAttention
// ---------------------------------------------------------------------------------------------

Qwen3VLVisionAttention::Qwen3VLVisionAttention(const Checkpoint& ckpt, const std::string& prefix,
                                               const Qwen3VLVisionConfig& config)
    : dim_(config.hidden_size), num_heads_(config.num_heads), head_dim_(config.head_dim()) {
  // self.scaling = self.head_dim**-0.5
  scaling_ = static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim_)));
  qkv_ = VisionLinear(ckpt, prefix + "qkv.", dim_, 3 * dim_);
  proj_ = VisionLinear(ckpt, prefix + "proj.", dim_, dim_);
}

Tensor Qwen3VLVisionAttention::forward(const Tensor& hidden_states, const Tensor& cu_seqlens, const Tensor& cos,
                                       const Tensor& sin, VisionProfile* prof) const {
  const int64_t seq_length = hidden_states.size(0);
  // query_states, key_states, value_states = self.qkv(hidden_states).reshape(seq_length, 3, self.num_heads, -1)
  //     .permute(1, 0, 2, 3).unbind(0)        -- kept in place: [S, 3, heads, hd], token stride 3 * Dv
  Tensor qkv;
  {
    QWEN3VL_STAGE(prof, qkv);
    qkv = qkv_.forward(hidden_states);  // [S, 3 * Dv]
  }
  const int64_t stride = 3 * dim_;
  float* q = qkv.data<float>();
  float* k = q + dim_;
  const float* v = q + 2 * dim_;
  // query_states, key_states = apply_rotary_pos_emb_vision(query_states, key_states, cos, sin)
  {
    QWEN3VL_STAGE(prof, rope);
    apply_rotary_pos_emb_vision(q, k, seq_length, stride, num_heads_, head_dim_, cos, sin);
  }
  // A bf16 model runs the attention in bf16 (HF: q, k, v, probabilities in the module dtype).
  const bool bf16 =
      qkv_.weight.dtype() != DType::F32 && kernels::matmul_precision() == kernels::MatmulPrecision::BF16;

  // Eager path: lengths = cu_seqlens[1:] - cu_seqlens[:-1]; split q/k/v by lengths; attention per
  // chunk (non-causal); torch.cat(attn_outputs, dim=1). Online softmax: no [S, S] matrix.
  Tensor attn_output = Tensor::empty({seq_length, dim_});  // [S, heads * hd]
  {
    QWEN3VL_STAGE(prof, attention);
    const int64_t* cu = cu_seqlens.data<int64_t>();
    const int64_t segments = cu_seqlens.numel() - 1;
    QWEN3VL_CHECK(segments >= 1 && cu[0] == 0 && cu[segments] == seq_length,
                  "vision attention: cu_seqlens does not cover the " + std::to_string(seq_length) + " tokens");
    for (int64_t i = 0; i < segments; ++i) {
      const int64_t s0 = cu[i], len = cu[i + 1] - cu[i];
      QWEN3VL_CHECK(len >= 0, "vision attention: cu_seqlens is not non-decreasing");
      if (len == 0) continue;
      kernels::AttentionArgs a;
      a.q = q + s0 * stride;
      a.q_stride = stride;
      a.k = k + s0 * stride;
      a.k_stride = stride;
      a.v = v + s0 * stride;
      a.v_stride = stride;
      a.out = attn_output.data<float>() + s0 * dim_;
      a.out_stride = dim_;
      a.sq = a.sk = len;
      a.hq = a.hk = num_heads_;
      a.d = head_dim_;
      a.scale = scaling_;
      a.causal = false;
      a.bf16 = bf16;
      kernels::attention(a);
    }
  }
  qkv = Tensor();
  // attn_output = self.proj(attn_output.reshape(seq_length, -1))
  QWEN3VL_STAGE(prof, attn_proj);
  return proj_.forward(attn_output);
}

// ---------------------------------------------------------------------------------------------
// Qwen3VLVisionMLP / Qwen3VLVisionBlock
// ---------------------------------------------------------------------------------------------

Qwen3VLVisionMLP::Qwen3VLVisionMLP(const Checkpoint& ckpt, const std::string& prefix,
                                   const Qwen3VLVisionConfig& config) {
  // self.act_fn = ACT2FN[config.hidden_act]
  if (config.hidden_act == "gelu_pytorch_tanh") {
    tanh_approx_ = true;
  } else if (config.hidden_act == "gelu") {
    tanh_approx_ = false;
  } else {
    throw Error("vision: vision_config.hidden_act \"" + config.hidden_act +
                "\" is not supported (expected gelu_pytorch_tanh or gelu)");
  }
  linear_fc1_ = VisionLinear(ckpt, prefix + "linear_fc1.", config.hidden_size, config.intermediate_size);
  linear_fc2_ = VisionLinear(ckpt, prefix + "linear_fc2.", config.intermediate_size, config.hidden_size);
}

Tensor Qwen3VLVisionMLP::forward(const Tensor& hidden_state, VisionProfile* prof) const {
  // return self.linear_fc2(self.act_fn(self.linear_fc1(hidden_state)))
  Tensor h;
  {
    QWEN3VL_STAGE(prof, mlp_fc1);
    h = linear_fc1_.forward(hidden_state);  // [S, Iv]
  }
  {
    QWEN3VL_STAGE(prof, mlp_act);
    if (tanh_approx_)
      kernels::gelu_tanh(h.data<float>(), h.numel());
    else
      kernels::gelu_erf(h.data<float>(), h.numel());
  }
  QWEN3VL_STAGE(prof, mlp_fc2);
  return linear_fc2_.forward(h);  // [S, Dv]
}

Qwen3VLVisionBlock::Qwen3VLVisionBlock(const Checkpoint& ckpt, const std::string& prefix,
                                       const Qwen3VLVisionConfig& config)
    : norm1_(ckpt, prefix + "norm1.", config.hidden_size, 1e-6f),
      norm2_(ckpt, prefix + "norm2.", config.hidden_size, 1e-6f),
      attn_(ckpt, prefix + "attn.", config),
      mlp_(ckpt, prefix + "mlp.", config) {}

void Qwen3VLVisionBlock::forward(Tensor& hidden_states, const Tensor& cu_seqlens, const Tensor& cos,
                                 const Tensor& sin, int64_t mlp_chunk_rows, VisionProfile* prof) const {
  float* x = hidden_states.data<float>();
  const int64_t n = hidden_states.numel();
  // hidden_states = hidden_states + self.attn(self.norm1(hidden_states), cu_seqlens=..., position_embeddings=...)
  {
    Tensor h;
    {
      QWEN3VL_STAGE(prof, norms);
      h = norm1_.forward(hidden_states);
    }
    Tensor a = attn_.forward(h, cu_seqlens, cos, sin, prof);
    h = Tensor();
    QWEN3VL_STAGE(prof, residual);
    kernels::add_inplace(x, a.data<float>(), n);
  }
  // hidden_states = hidden_states + self.mlp(self.norm2(hidden_states))
  // Row-wise ops, so done in row chunks: the [rows, Iv] intermediate stays bounded (peak memory
  // for large images) and the result is identical.
  const int64_t S = hidden_states.size(0), D = hidden_states.size(1);
  const int64_t chunk = mlp_chunk_rows > 0 ? mlp_chunk_rows : S;
  for (int64_t r0 = 0; r0 < S; r0 += chunk) {
    const int64_t r1 = std::min(S, r0 + chunk);
    Tensor h;
    {
      QWEN3VL_STAGE(prof, norms);
      h = norm2_.forward(hidden_states.slice_rows(r0, r1));
    }
    Tensor m = mlp_.forward(h, prof);
    h = Tensor();
    QWEN3VL_STAGE(prof, residual);
    kernels::add_inplace(x + r0 * D, m.data<float>(), (r1 - r0) * D);
  }
}

// ---------------------------------------------------------------------------------------------
// Qwen3VLVisionModel
// ---------------------------------------------------------------------------------------------

Qwen3VLVisionModel::Qwen3VLVisionModel(const Checkpoint& ckpt, const std::string& prefix)
    : config_(ckpt.config().vision_config) {
  const Qwen3VLVisionConfig& c = config_;
  QWEN3VL_CHECK(c.hidden_size > 0 && c.num_heads > 0 && c.hidden_size % c.num_heads == 0 && c.head_dim() % 4 == 0,
                "vision: config.json vision_config hidden_size " + std::to_string(c.hidden_size) +
                    " / num_heads " + std::to_string(c.num_heads) + " must give a head_dim that is a multiple of 4");
  QWEN3VL_CHECK(c.spatial_merge_size >= 1 && c.depth >= 1 && c.num_position_embeddings >= 1,
                "vision: config.json vision_config has a non-positive depth / spatial_merge_size / "
                "num_position_embeddings");
  spatial_merge_size_ = c.spatial_merge_size;
  // self.patch_embed = Qwen3VLVisionPatchEmbed(config=config)
  patch_embed_ = Qwen3VLVisionPatchEmbed(ckpt, prefix + "patch_embed.", c);
  // self.pos_embed = nn.Embedding(config.num_position_embeddings, config.hidden_size)
  pos_embed_ = get_checked(ckpt, prefix + "pos_embed.weight", {c.num_position_embeddings, c.hidden_size});
  // self.num_grid_per_side = int(config.num_position_embeddings**0.5)
  num_grid_per_side_ = static_cast<int64_t>(std::sqrt(static_cast<double>(c.num_position_embeddings)));
  while ((num_grid_per_side_ + 1) * (num_grid_per_side_ + 1) <= c.num_position_embeddings) ++num_grid_per_side_;
  while (num_grid_per_side_ * num_grid_per_side_ > c.num_position_embeddings) --num_grid_per_side_;
  // head_dim = config.hidden_size // config.num_heads; self.rotary_pos_emb = Qwen3VLVisionRotaryEmbedding(head_dim // 2)
  rotary_pos_emb_ = Qwen3VLVisionRotaryEmbedding(c.head_dim() / 2);
  // self.blocks = nn.ModuleList([Qwen3VLVisionBlock(config) for _ in range(config.depth)])
  blocks_.reserve(static_cast<size_t>(c.depth));
  for (int i = 0; i < c.depth; ++i)
    blocks_.emplace_back(ckpt, prefix + "blocks." + std::to_string(i) + ".", c);
  // self.merger = Qwen3VLVisionPatchMerger(config=config, use_postshuffle_norm=False)
  merger_ = Qwen3VLVisionPatchMerger(ckpt, prefix + "merger.", c, false);
  // self.deepstack_merger_list = [Qwen3VLVisionPatchMerger(config, use_postshuffle_norm=True) for each index]
  deepstack_visual_indexes_ = c.deepstack_visual_indexes;
  for (size_t j = 0; j < deepstack_visual_indexes_.size(); ++j) {
    const int idx = deepstack_visual_indexes_[j];
    QWEN3VL_CHECK(idx >= 0 && idx < c.depth, "vision: config.json vision_config.deepstack_visual_indexes[" +
                                                 std::to_string(j) + "] = " + std::to_string(idx) +
                                                 " is not a block index (depth " + std::to_string(c.depth) + ")");
    deepstack_merger_list_.emplace_back(ckpt, prefix + "deepstack_merger_list." + std::to_string(j) + ".", c, true);
  }
}

Tensor Qwen3VLVisionModel::fast_pos_embed_interpolate(const std::vector<GridTHW>& grid_thw) const {
  return qwen3_vl_fast_pos_embed_interpolation(grid_thw, num_grid_per_side_, pos_embed_, spatial_merge_size_);
}

Tensor Qwen3VLVisionModel::rot_pos_emb(const std::vector<GridTHW>& grid_thw) const {
  return qwen3_vl_rot_pos_emb(grid_thw, spatial_merge_size_, config_.head_dim());
}

VisionOutput Qwen3VLVisionModel::forward(const Tensor& pixel_values, const std::vector<GridTHW>& grid_thw,
                                         const DumpHook* dump_hook) const {
  check_grid_thw(grid_thw, spatial_merge_size_);
  QWEN3VL_CHECK(pixel_values.dim() == 2 && pixel_values.size(0) == grid_total_patches(grid_thw),
                "vision: pixel_values " + pixel_values.str() + " does not match grid_thw (" +
                    std::to_string(grid_total_patches(grid_thw)) + " patches)");
  VisionProfile* prof = profile_;
  // hidden_states = self.patch_embed(hidden_states)      [N, Dv]
  Tensor hidden_states;
  {
    QWEN3VL_STAGE(prof, patch_embed);
    bool folded = false;
    hidden_states = patch_embed_.forward(pixel_values, &folded);
    if (prof) prof->patch_embed_folded = folded;
  }
  dump(dump_hook, "vision.patch_embed", hidden_states);
  const int64_t seq_len = hidden_states.size(0);

  // pos_embeds = self.fast_pos_embed_interpolate(grid_thw); hidden_states = hidden_states + pos_embeds
  {
    QWEN3VL_STAGE(prof, pos_embed);
    Tensor pos_embeds = fast_pos_embed_interpolate(grid_thw);  // [N, Dv]
    dump(dump_hook, "vision.pos_embeds", pos_embeds);
    kernels::add_inplace(hidden_states.data<float>(), pos_embeds.data<float>(), hidden_states.numel());
    round_to_dtype_inplace(hidden_states.data<float>(), hidden_states.numel(), dtype());
  }

  // rotary_pos_emb = self.rot_pos_emb(grid_thw); emb = cat((rotary_pos_emb, rotary_pos_emb), -1)
  // position_embeddings = (emb.cos(), emb.sin()); cu_seqlens = pad(repeat_interleave(h*w, t).cumsum(0), (1, 0))
  VisionPreprocess pre;
  {
    QWEN3VL_STAGE(prof, rotary);
    pre = qwen3_vision_transformer_preprocess(seq_len, grid_thw, config_.head_dim(), spatial_merge_size_);
  }
  dump(dump_hook, "vision.rotary.cos", pre.cos);
  dump(dump_hook, "vision.rotary.sin", pre.sin);
  dump(dump_hook, "vision.cu_seqlens", pre.cu_seqlens);

  VisionOutput out;
  for (size_t layer_num = 0; layer_num < blocks_.size(); ++layer_num) {
    // hidden_states = blk(hidden_states, cu_seqlens=cu_seqlens, position_embeddings=position_embeddings)
    blocks_[layer_num].forward(hidden_states, pre.cu_seqlens, pre.cos, pre.sin, mlp_chunk_rows_, prof);
    dump(dump_hook, "vision.blocks." + std::to_string(layer_num), hidden_states);
    // if layer_num in self.deepstack_visual_indexes:
    //     deepstack_feature = self.deepstack_merger_list[self.deepstack_visual_indexes.index(layer_num)](hidden_states)
    auto it = std::find(deepstack_visual_indexes_.begin(), deepstack_visual_indexes_.end(),
                        static_cast<int>(layer_num));
    if (it != deepstack_visual_indexes_.end()) {
      const size_t j = static_cast<size_t>(it - deepstack_visual_indexes_.begin());
      QWEN3VL_STAGE(prof, deepstack);
      out.deepstack.push_back(deepstack_merger_list_[j].forward(hidden_states));
      dump(dump_hook, "deepstack." + std::to_string(out.deepstack.size() - 1), out.deepstack.back());
    }
  }
  // hidden_states = self.merger(hidden_states)      [N / 4, out_hidden_size]
  {
    QWEN3VL_STAGE(prof, merger);
    out.embeds = merger_.forward(hidden_states);
  }
  dump(dump_hook, "image_embeds", out.embeds);
  return out;
}

}  // namespace qwen3vl

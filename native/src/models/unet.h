// diffusers' UNet2DConditionModel as Stable Diffusion 1.x, 2.x and SDXL configure
// it: sinusoidal time embedding (plus, for SDXL, the "text_time" added embedding
// of pooled text and 6 size/crop ids), down blocks (DownBlock2D /
// CrossAttnDownBlock2D), the UNetMidBlock2DCrossAttn, up blocks with skip
// connections, and the output head. named_parameters() are exactly the diffusers
// state-dict keys.
#pragma once

#include "models/attention.h" // Transformer2DModel
#include "models/configs.h"   // UNetConfig
#include "models/layers.h"    // Linear, Conv2d, GroupNorm
#include "models/resnet.h"    // ResnetBlock2D, Downsample2D, Upsample2D
#include "models/trace.h"     // TraceFn

#include <torch/torch.h> // torch::nn::Module

#include <cstdint> // int64_t
#include <vector>

namespace sdxl::models {

// ----------------------------------------------------------------------------
// Embeddings

// Sinusoidal features of (float) timesteps, as diffusers' get_timestep_embedding.
// t [N] -> [N, dim]; flip_sin_to_cos puts cos first.
torch::Tensor timestep_features(const torch::Tensor& t, int64_t dim, bool flip_sin_to_cos,
                                double freq_shift);

// TimestepEmbedding: linear_1 -> silu -> linear_2
class TimestepEmbeddingImpl : public torch::nn::Module {
 public:
  TimestepEmbeddingImpl(int64_t in_dim, int64_t out_dim, torch::TensorOptions options);
  torch::Tensor forward(const torch::Tensor& x); // [B, in] -> [B, out]

  Linear linear_1{nullptr};
  Linear linear_2{nullptr};
};
TORCH_MODULE(TimestepEmbedding);

// ----------------------------------------------------------------------------
// Blocks. One class per role; the cross-attention variants are the same class
// with transformers present ("attentions.N").

// DownBlock2D / CrossAttnDownBlock2D
class UNetDownBlockImpl : public torch::nn::Module {
 public:
  UNetDownBlockImpl(const UNetConfig& config, int64_t level, torch::TensorOptions options);
  // Appends every output (after each layer and the downsampler) to `skips`.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& temb,
                        const torch::Tensor& context, std::vector<torch::Tensor>& skips);

  std::vector<ResnetBlock2D> resnets;
  std::vector<Transformer2DModel> attentions; // empty for DownBlock2D
  Downsample2D downsampler{nullptr};          // "downsamplers.0", absent on the last level
};
TORCH_MODULE(UNetDownBlock);

// UNetMidBlock2DCrossAttn: resnet, then (transformer, resnet) pairs
class UNetMidBlockImpl : public torch::nn::Module {
 public:
  UNetMidBlockImpl(const UNetConfig& config, torch::TensorOptions options);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& temb,
                        const torch::Tensor& context);

  std::vector<ResnetBlock2D> resnets;
  std::vector<Transformer2DModel> attentions;
};
TORCH_MODULE(UNetMidBlock);

// UpBlock2D / CrossAttnUpBlock2D: layers_per_block + 1 resnets, each fed the
// previous output concatenated with one skip (taken from the back of `skips`).
class UNetUpBlockImpl : public torch::nn::Module {
 public:
  UNetUpBlockImpl(const UNetConfig& config, int64_t up_index, torch::TensorOptions options);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& temb,
                        const torch::Tensor& context, std::vector<torch::Tensor>& skips);

  std::vector<ResnetBlock2D> resnets;
  std::vector<Transformer2DModel> attentions; // empty for UpBlock2D
  Upsample2D upsampler{nullptr};              // "upsamplers.0", absent on the last level
};
TORCH_MODULE(UNetUpBlock);

// ----------------------------------------------------------------------------
// UNet2DConditionModel

// What conditions the UNet besides the noisy latents and the timestep; a model
// family's text side makes it (sample/conditioning.h).
struct UNetConditioning {
  torch::Tensor context;     // [B, 77, cross_attention_dim]: encoder_hidden_states
  torch::Tensor text_embeds; // [B, P]: SDXL's pooled text; undefined for SD 1.x/2.x
  torch::Tensor time_ids;    // [B, 6]: SDXL's size ids; undefined for SD 1.x/2.x

  // Each defined tensor converted (the batch dimension kept).
  UNetConditioning to(const torch::Device& device, torch::Dtype dtype) const;
  // [this; other] along the batch (classifier-free guidance's [unconditional, conditional]).
  UNetConditioning cat(const UNetConditioning& other) const;
  // The batch repeated `times` over (one prompt for several images).
  UNetConditioning repeat(int64_t times) const;
};

class UNet2DConditionModelImpl : public torch::nn::Module {
 public:
  UNet2DConditionModelImpl(const UNetConfig& config, torch::TensorOptions options);

  // sample [B, in, h, w]; timestep [B] or [1] (float); encoder_hidden_states [B, 77, cross];
  // text_embeds [B, pooled] and time_ids [B, 6] with the added embedding (SDXL), undefined
  // without (SD 1.x/2.x) -> prediction [B, out, h, w] (noise or v, as the model was trained).
  // trace receives "unet.dbg.*"-named intermediates with `trace_prefix` = "unet.dbg.".
  torch::Tensor forward(const torch::Tensor& sample, const torch::Tensor& timestep,
                        const torch::Tensor& encoder_hidden_states, const torch::Tensor& text_embeds,
                        const torch::Tensor& time_ids, const TraceFn* trace = nullptr);
  torch::Tensor forward(const torch::Tensor& sample, const torch::Tensor& timestep,
                        const UNetConditioning& conditioning, const TraceFn* trace = nullptr) {
    return forward(sample, timestep, conditioning.context, conditioning.text_embeds, conditioning.time_ids, trace);
  }

  const UNetConfig& config() const { return config_; }

  Conv2d conv_in{nullptr};
  TimestepEmbedding time_embedding{nullptr};
  TimestepEmbedding add_embedding{nullptr}; // SDXL only
  std::vector<UNetDownBlock> down_blocks;
  UNetMidBlock mid_block{nullptr};
  std::vector<UNetUpBlock> up_blocks;
  GroupNorm conv_norm_out{nullptr};
  Conv2d conv_out{nullptr};

 private:
  UNetConfig config_;
};
TORCH_MODULE(UNet2DConditionModel);

} // namespace sdxl::models

// diffusers' AutoencoderKL as SDXL configures it: Encoder (down blocks, mid
// block with one attention, conv_out -> 2 * latent moments), quant_conv,
// post_quant_conv and Decoder. named_parameters() are the diffusers keys.
#pragma once

#include "models/configs.h"   // VaeConfig
#include "models/layers.h"    // Conv2d, GroupNorm
#include "models/resnet.h"    // ResnetBlock2D, Downsample2D, Upsample2D
#include "models/trace.h"     // TraceFn

#include <torch/torch.h> // torch::nn::Module

#include <cstdint> // int64_t
#include <string>
#include <vector>

namespace sdxl::models {

// The encoder's diagonal Gaussian over latents.
struct LatentDistribution {
  torch::Tensor moments; // [B, 2L, h, w] = cat(mean, logvar) before clamping
  torch::Tensor mean;    // [B, L, h, w]
  torch::Tensor logvar;  // [B, L, h, w], clamped to [-30, 20]
  torch::Tensor std() const { return torch::exp(0.5 * logvar); }
  torch::Tensor sample(const torch::Tensor& noise) const { return mean + std() * noise; }
};

// ----------------------------------------------------------------------------
// Blocks

// The VAE's mid-block attention: group norm, one head over all pixels, residual.
// (diffusers' Attention with group_norm; its keys sit directly under the module.)
class VaeAttentionImpl : public torch::nn::Module {
 public:
  VaeAttentionImpl(int64_t channels, int64_t groups, double eps, torch::TensorOptions options);
  torch::Tensor forward(const torch::Tensor& x); // [B, C, H, W] -> same

  GroupNorm group_norm{nullptr};
  Linear to_q{nullptr};
  Linear to_k{nullptr};
  Linear to_v{nullptr};
  Linear to_out{nullptr}; // "to_out.0"
};
TORCH_MODULE(VaeAttention);

// UNetMidBlock2D: resnet, attention, resnet (no time embedding)
class VaeMidBlockImpl : public torch::nn::Module {
 public:
  VaeMidBlockImpl(int64_t channels, int64_t groups, bool add_attention, torch::TensorOptions options);
  torch::Tensor forward(const torch::Tensor& x);

  std::vector<ResnetBlock2D> resnets;
  std::vector<VaeAttention> attentions;
};
TORCH_MODULE(VaeMidBlock);

// DownEncoderBlock2D / UpDecoderBlock2D: resnets, then an optional resampler
class VaeBlockImpl : public torch::nn::Module {
 public:
  VaeBlockImpl(int64_t in_channels, int64_t out_channels, int64_t num_resnets, int64_t groups,
               bool downsample, bool upsample, torch::TensorOptions options);
  torch::Tensor forward(const torch::Tensor& x);

  std::vector<ResnetBlock2D> resnets;
  Downsample2D downsampler{nullptr}; // "downsamplers.0"
  Upsample2D upsampler{nullptr};     // "upsamplers.0"
};
TORCH_MODULE(VaeBlock);

class VaeEncoderImpl : public torch::nn::Module {
 public:
  VaeEncoderImpl(const VaeConfig& config, torch::TensorOptions options);
  torch::Tensor forward(const torch::Tensor& image, const TraceFn* trace); // -> [B, 2L, h, w]

  Conv2d conv_in{nullptr};
  std::vector<VaeBlock> down_blocks;
  VaeMidBlock mid_block{nullptr};
  GroupNorm conv_norm_out{nullptr};
  Conv2d conv_out{nullptr};
};
TORCH_MODULE(VaeEncoder);

class VaeDecoderImpl : public torch::nn::Module {
 public:
  VaeDecoderImpl(const VaeConfig& config, torch::TensorOptions options);
  torch::Tensor forward(const torch::Tensor& latents, const TraceFn* trace); // -> [B, 3, H, W]

  Conv2d conv_in{nullptr};
  VaeMidBlock mid_block{nullptr};
  std::vector<VaeBlock> up_blocks;
  GroupNorm conv_norm_out{nullptr};
  Conv2d conv_out{nullptr};
};
TORCH_MODULE(VaeDecoder);

// ----------------------------------------------------------------------------
// AutoencoderKL

class AutoencoderKLImpl : public torch::nn::Module {
 public:
  AutoencoderKLImpl(const VaeConfig& config, torch::TensorOptions options);

  // image [B, 3, H, W] in [-1, 1] -> the latent distribution (unscaled latents).
  // trace names: "vae.dbg.encoder.*", "vae.dbg.quant_conv".
  LatentDistribution encode(const torch::Tensor& image, const TraceFn* trace = nullptr);
  // latents [B, L, h, w] (unscaled: divide by scaling_factor first) -> image [B, 3, 8h, 8w].
  // trace names: "vae.dbg.post_quant_conv", "vae.dbg.decoder.*".
  torch::Tensor decode(const torch::Tensor& latents, const TraceFn* trace = nullptr);

  const VaeConfig& config() const { return config_; }

  VaeEncoder encoder{nullptr};
  VaeDecoder decoder{nullptr};
  Conv2d quant_conv{nullptr};      // 1x1 on moments; absent when use_quant_conv is false
  Conv2d post_quant_conv{nullptr}; // 1x1 on latents; absent when use_post_quant_conv is false

 private:
  VaeConfig config_;
};
TORCH_MODULE(AutoencoderKL);

} // namespace sdxl::models

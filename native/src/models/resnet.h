// diffusers' ResnetBlock2D, Downsample2D and Upsample2D, shared by the UNet
// (with a time embedding) and the VAE (without).
#pragma once

#include "models/layers.h" // Conv2d, GroupNorm, Linear

#include <torch/torch.h> // torch::nn::Module

#include <cstdint> // int64_t
#include <vector>  // std::vector<int64_t> target size

namespace sdxl::models {

// ----------------------------------------------------------------------------
// ResnetBlock2D: norm1 -> silu -> conv1 (+ time_emb_proj(silu(temb))) -> norm2 -> silu -> conv2, + shortcut

class ResnetBlock2DImpl : public torch::nn::Module {
 public:
  // temb_channels <= 0: no time embedding (VAE).
  ResnetBlock2DImpl(int64_t in_channels, int64_t out_channels, int64_t temb_channels, int64_t groups,
                    double eps, torch::TensorOptions options);
  // x [B, in, H, W], temb [B, temb_channels] or undefined -> [B, out, H, W]; through
  // checkpoint() when gradient_checkpointing is set, the block is training and grad mode is on.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& temb = {});
  // The block's computation itself (what forward runs or checkpoints).
  torch::Tensor forward_plain(const torch::Tensor& x, const torch::Tensor& temb);

  bool gradient_checkpointing = false; // see set_gradient_checkpointing (grad_checkpoint.h)
  GroupNorm norm1{nullptr};
  Conv2d conv1{nullptr};
  Linear time_emb_proj{nullptr};
  GroupNorm norm2{nullptr};
  Conv2d conv2{nullptr};
  Conv2d conv_shortcut{nullptr}; // 1x1, only when in != out
};
TORCH_MODULE(ResnetBlock2D);

// ----------------------------------------------------------------------------
// Downsample2D: 3x3 conv with stride 2. padding 0 means diffusers' asymmetric
// (0, 1, 0, 1) zero pad first (the VAE); otherwise the conv pads symmetrically.

class Downsample2DImpl : public torch::nn::Module {
 public:
  Downsample2DImpl(int64_t channels, int64_t padding, torch::TensorOptions options);
  torch::Tensor forward(const torch::Tensor& x); // [B, C, H, W] -> [B, C, H/2, W/2]

  int64_t padding;
  Conv2d conv{nullptr};
};
TORCH_MODULE(Downsample2D);

// ----------------------------------------------------------------------------
// Upsample2D: nearest 2x, then 3x3 conv

class Upsample2DImpl : public torch::nn::Module {
 public:
  Upsample2DImpl(int64_t channels, torch::TensorOptions options);
  // [B, C, H, W] -> [B, C, 2H, 2W], or [B, C, size[0], size[1]] when `size` is given
  // (the UNet passes its skip's size, so odd latent sizes line up as in diffusers).
  torch::Tensor forward(const torch::Tensor& x, std::vector<int64_t> size = {});

  Conv2d conv{nullptr};
};
TORCH_MODULE(Upsample2D);

} // namespace sdxl::models

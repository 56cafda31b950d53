// ResnetBlock2D, Downsample2D, Upsample2D (diffusers/models/resnet.py, downsampling.py, upsampling.py).
#include "models/resnet.h"

#include "models/grad_checkpoint.h" // checkpoint_active, checkpoint_block

namespace sdxl::models {

namespace {
constexpr int64_t kConvKernel = 3;
constexpr int64_t kSamePadding = 1;
constexpr int64_t kDownsampleStride = 2;
constexpr double kUpsampleScale = 2.0;
} // namespace

// ----------------------------------------------------------------------------
// ResnetBlock2D

ResnetBlock2DImpl::ResnetBlock2DImpl(int64_t in_channels, int64_t out_channels, int64_t temb_channels,
                                     int64_t groups, double eps, torch::TensorOptions options) {
  norm1 = register_module("norm1", GroupNorm(groups, in_channels, eps, options));
  conv1 = register_module("conv1", Conv2d(in_channels, out_channels, kConvKernel, 1, kSamePadding, options));
  if (temb_channels > 0) {
    time_emb_proj = register_module("time_emb_proj", Linear(temb_channels, out_channels, true, options));
  }
  norm2 = register_module("norm2", GroupNorm(groups, out_channels, eps, options));
  conv2 = register_module("conv2", Conv2d(out_channels, out_channels, kConvKernel, 1, kSamePadding, options));
  if (in_channels != out_channels) {
    conv_shortcut = register_module("conv_shortcut", Conv2d(in_channels, out_channels, 1, 1, 0, options));
  }
}

torch::Tensor ResnetBlock2DImpl::forward(const torch::Tensor& x, const torch::Tensor& temb) {
  if (!checkpoint_active(*this, gradient_checkpointing)) return forward_plain(x, temb);
  const CheckpointFn run = [this](const std::vector<torch::Tensor>& in) {
    return std::vector<torch::Tensor>{forward_plain(in[0], in[1])};
  };
  return checkpoint_block(*this, run, {x, temb})[0]; // [B, out, H, W]
}

torch::Tensor ResnetBlock2DImpl::forward_plain(const torch::Tensor& x, const torch::Tensor& temb) {
  torch::Tensor h = conv1(torch::silu(norm1(x))); // [B, out, H, W]
  if (time_emb_proj && temb.defined()) {
    h = h + time_emb_proj(torch::silu(temb)).unsqueeze(-1).unsqueeze(-1); // + [B, out, 1, 1]
  }
  h = conv2(torch::silu(norm2(h)));                          // [B, out, H, W]
  torch::Tensor shortcut = conv_shortcut ? conv_shortcut(x) : x; // [B, out, H, W]
  return shortcut + h;
}

// ----------------------------------------------------------------------------
// Downsample2D / Upsample2D

Downsample2DImpl::Downsample2DImpl(int64_t channels, int64_t padding_, torch::TensorOptions options)
    : padding(padding_) {
  conv = register_module("conv", Conv2d(channels, channels, kConvKernel, kDownsampleStride, padding, options));
}

torch::Tensor Downsample2DImpl::forward(const torch::Tensor& x) {
  if (padding == 0) {
    // diffusers pads right and bottom only, so odd sizes keep the top-left alignment.
    return conv(torch::constant_pad_nd(x, {0, 1, 0, 1}, 0)); // [B, C, H/2, W/2]
  }
  return conv(x); // [B, C, H/2, W/2]
}

Upsample2DImpl::Upsample2DImpl(int64_t channels, torch::TensorOptions options) {
  conv = register_module("conv", Conv2d(channels, channels, kConvKernel, 1, kSamePadding, options));
}

torch::Tensor Upsample2DImpl::forward(const torch::Tensor& x, std::vector<int64_t> size) {
  namespace F = torch::nn::functional;
  auto resize = F::InterpolateFuncOptions().mode(torch::kNearest);
  if (size.empty()) {
    resize.scale_factor(std::vector<double>{kUpsampleScale, kUpsampleScale});
  } else {
    resize.size(size);
  }
  return conv(F::interpolate(x, resize)); // [B, C, 2H, 2W]
}

} // namespace sdxl::models

// AutoencoderKL (diffusers/models/autoencoders/autoencoder_kl.py, vae.py; UNetMidBlock2D,
// DownEncoderBlock2D, UpDecoderBlock2D from unet_2d_blocks.py).
#include "models/vae.h"

namespace sdxl::models {

namespace {
constexpr double kVaeNormEps = 1e-6;    // every VAE resnet, attention and output norm
constexpr int64_t kConvKernel = 3;
constexpr int64_t kSamePadding = 1;
constexpr int64_t kVaeDownsamplePadding = 0; // asymmetric (0, 1, 0, 1) pad before the strided conv
constexpr double kLogvarMin = -30.0;
constexpr double kLogvarMax = 20.0;
} // namespace

// ----------------------------------------------------------------------------
// Attention and blocks

VaeAttentionImpl::VaeAttentionImpl(int64_t channels, int64_t groups, double eps, torch::TensorOptions options) {
  group_norm = register_module("group_norm", GroupNorm(groups, channels, eps, options));
  to_q = register_module("to_q", Linear(channels, channels, true, options));
  to_k = register_module("to_k", Linear(channels, channels, true, options));
  to_v = register_module("to_v", Linear(channels, channels, true, options));
  to_out = Linear(channels, channels, true, options);
  register_single(*this, "to_out", to_out);
}

torch::Tensor VaeAttentionImpl::forward(const torch::Tensor& x) {
  const int64_t batch = x.size(0), channels = x.size(1), height = x.size(2), width = x.size(3);
  torch::Tensor h = group_norm(x).view({batch, channels, height * width}).transpose(1, 2); // [B, HW, C]
  torch::Tensor q = to_q(h).unsqueeze(1); // [B, 1, HW, C]
  torch::Tensor k = to_k(h).unsqueeze(1); // [B, 1, HW, C]
  torch::Tensor v = to_v(h).unsqueeze(1); // [B, 1, HW, C]
  h = to_out(attend(q, k, v).squeeze(1));                                                 // [B, HW, C]
  return h.transpose(1, 2).reshape({batch, channels, height, width}) + x;                 // [B, C, H, W]
}

VaeMidBlockImpl::VaeMidBlockImpl(int64_t channels, int64_t groups, bool add_attention,
                                 torch::TensorOptions options) {
  resnets.push_back(ResnetBlock2D(channels, channels, 0, groups, kVaeNormEps, options));
  if (add_attention) attentions.push_back(VaeAttention(channels, groups, kVaeNormEps, options));
  resnets.push_back(ResnetBlock2D(channels, channels, 0, groups, kVaeNormEps, options));
  register_list(*this, "attentions", attentions);
  register_list(*this, "resnets", resnets);
}

torch::Tensor VaeMidBlockImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = resnets[0](x);
  if (!attentions.empty()) h = attentions[0](h);
  return resnets[1](h); // [B, C, H, W]
}

VaeBlockImpl::VaeBlockImpl(int64_t in_channels, int64_t out_channels, int64_t num_resnets, int64_t groups,
                           bool downsample, bool upsample, torch::TensorOptions options) {
  for (int64_t j = 0; j < num_resnets; ++j) {
    resnets.push_back(ResnetBlock2D(j == 0 ? in_channels : out_channels, out_channels, 0, groups,
                                    kVaeNormEps, options));
  }
  register_list(*this, "resnets", resnets);
  if (downsample) {
    downsampler = Downsample2D(out_channels, kVaeDownsamplePadding, options);
    register_single(*this, "downsamplers", downsampler);
  }
  if (upsample) {
    upsampler = Upsample2D(out_channels, options);
    register_single(*this, "upsamplers", upsampler);
  }
}

torch::Tensor VaeBlockImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = x;
  for (auto& resnet : resnets) h = resnet(h); // [B, out, H, W]
  if (downsampler) h = downsampler(h);        // [B, out, H/2, W/2]
  if (upsampler) h = upsampler(h);            // [B, out, 2H, 2W]
  return h;
}

// ----------------------------------------------------------------------------
// Encoder / Decoder

VaeEncoderImpl::VaeEncoderImpl(const VaeConfig& c, torch::TensorOptions options) {
  const auto& channels = c.block_out_channels;
  const size_t levels = channels.size();
  conv_in = register_module("conv_in", Conv2d(c.in_channels, channels[0], kConvKernel, 1, kSamePadding, options));
  for (size_t i = 0; i < levels; ++i) {
    const int64_t in = i == 0 ? channels[0] : channels[i - 1];
    down_blocks.push_back(VaeBlock(in, channels[i], c.layers_per_block, c.norm_num_groups,
                                   /*downsample=*/i + 1 < levels, /*upsample=*/false, options));
  }
  register_list(*this, "down_blocks", down_blocks);
  mid_block = register_module("mid_block", VaeMidBlock(channels.back(), c.norm_num_groups,
                                                       c.mid_block_add_attention, options));
  conv_norm_out = register_module("conv_norm_out", GroupNorm(c.norm_num_groups, channels.back(), kVaeNormEps, options));
  conv_out = register_module("conv_out", Conv2d(channels.back(), 2 * c.latent_channels, kConvKernel, 1,
                                                kSamePadding, options));
}

torch::Tensor VaeEncoderImpl::forward(const torch::Tensor& image, const TraceFn* trace) {
  torch::Tensor h = conv_in(image); // [B, C0, H, W]
  emit_trace(trace, "vae.dbg.encoder.conv_in", h);
  for (size_t i = 0; i < down_blocks.size(); ++i) {
    h = down_blocks[i](h);
    emit_trace(trace, "vae.dbg.encoder.down_blocks." + std::to_string(i), h);
  }
  h = mid_block(h); // [B, C_last, h, w]
  emit_trace(trace, "vae.dbg.encoder.mid_block", h);
  h = conv_norm_out(h);
  emit_trace(trace, "vae.dbg.encoder.conv_norm_out", h);
  h = conv_out(torch::silu(h)); // [B, 2L, h, w]
  emit_trace(trace, "vae.dbg.encoder.conv_out", h);
  return h;
}

VaeDecoderImpl::VaeDecoderImpl(const VaeConfig& c, torch::TensorOptions options) {
  const auto& channels = c.block_out_channels;
  const size_t levels = channels.size();
  conv_in = register_module("conv_in", Conv2d(c.latent_channels, channels.back(), kConvKernel, 1,
                                              kSamePadding, options));
  mid_block = register_module("mid_block", VaeMidBlock(channels.back(), c.norm_num_groups,
                                                       c.mid_block_add_attention, options));
  for (size_t i = 0; i < levels; ++i) {
    const int64_t in = channels[levels - (i == 0 ? 1 : i)];
    const int64_t out = channels[levels - 1 - i];
    up_blocks.push_back(VaeBlock(in, out, c.layers_per_block + 1, c.norm_num_groups,
                                 /*downsample=*/false, /*upsample=*/i + 1 < levels, options));
  }
  register_list(*this, "up_blocks", up_blocks);
  conv_norm_out = register_module("conv_norm_out", GroupNorm(c.norm_num_groups, channels[0], kVaeNormEps, options));
  conv_out = register_module("conv_out", Conv2d(channels[0], c.out_channels, kConvKernel, 1, kSamePadding, options));
}

torch::Tensor VaeDecoderImpl::forward(const torch::Tensor& latents, const TraceFn* trace) {
  torch::Tensor h = conv_in(latents); // [B, C_last, h, w]
  emit_trace(trace, "vae.dbg.decoder.conv_in", h);
  h = mid_block(h);
  emit_trace(trace, "vae.dbg.decoder.mid_block", h);
  for (size_t i = 0; i < up_blocks.size(); ++i) {
    h = up_blocks[i](h);
    emit_trace(trace, "vae.dbg.decoder.up_blocks." + std::to_string(i), h);
  }
  h = conv_norm_out(h); // [B, C0, H, W]
  emit_trace(trace, "vae.dbg.decoder.conv_norm_out", h);
  return conv_out(torch::silu(h)); // [B, 3, H, W]
}

// ----------------------------------------------------------------------------
// AutoencoderKL

AutoencoderKLImpl::AutoencoderKLImpl(const VaeConfig& c, torch::TensorOptions options) : config_(c) {
  encoder = register_module("encoder", VaeEncoder(c, options));
  decoder = register_module("decoder", VaeDecoder(c, options));
  if (c.use_quant_conv) {
    quant_conv = register_module("quant_conv", Conv2d(2 * c.latent_channels, 2 * c.latent_channels, 1, 1, 0, options));
  }
  if (c.use_post_quant_conv) {
    post_quant_conv = register_module("post_quant_conv", Conv2d(c.latent_channels, c.latent_channels, 1, 1, 0, options));
  }
}

LatentDistribution AutoencoderKLImpl::encode(const torch::Tensor& image, const TraceFn* trace) {
  torch::Tensor moments = encoder(image, trace); // [B, 2L, h, w]
  if (quant_conv) {
    moments = quant_conv(moments);
    emit_trace(trace, "vae.dbg.quant_conv", moments);
  }
  LatentDistribution posterior;
  posterior.moments = moments;
  std::vector<torch::Tensor> halves = moments.chunk(2, 1);
  posterior.mean = halves[0];                                   // [B, L, h, w]
  posterior.logvar = halves[1].clamp(kLogvarMin, kLogvarMax);   // [B, L, h, w]
  return posterior;
}

torch::Tensor AutoencoderKLImpl::decode(const torch::Tensor& latents, const TraceFn* trace) {
  torch::Tensor z = latents; // [B, L, h, w]
  if (post_quant_conv) {
    z = post_quant_conv(z);
    emit_trace(trace, "vae.dbg.post_quant_conv", z);
  }
  return decoder(z, trace); // [B, 3, 8h, 8w]
}

} // namespace sdxl::models

// UNet2DConditionModel (diffusers/models/unets/unet_2d_condition.py, unet_2d_blocks.py, embeddings.py).
#include "models/unet.h"

#include <cmath>     // std::log
#include <stdexcept> // std::invalid_argument

namespace sdxl::models {

namespace {
constexpr double kMaxPeriod = 10000.0;       // sinusoidal timestep features
constexpr int64_t kTimeIdsPerSample = 6;     // original size, crop top-left, target size
const std::string kTracePrefix = "unet.dbg.";

} // namespace

// ----------------------------------------------------------------------------
// Embeddings

torch::Tensor timestep_features(const torch::Tensor& t, int64_t dim, bool flip_sin_to_cos,
                                double freq_shift) {
  const int64_t half = dim / 2;
  auto float_options = torch::TensorOptions().dtype(torch::kFloat).device(t.device());
  torch::Tensor exponent = torch::arange(0, half, float_options) * (-std::log(kMaxPeriod)); // [half]
  exponent = exponent / (static_cast<double>(half) - freq_shift);
  torch::Tensor angles = t.to(torch::kFloat).unsqueeze(1) * torch::exp(exponent).unsqueeze(0); // [N, half]
  torch::Tensor sin = torch::sin(angles), cos = torch::cos(angles);
  torch::Tensor features = flip_sin_to_cos ? torch::cat({cos, sin}, -1) : torch::cat({sin, cos}, -1);
  if (dim % 2 == 1) features = torch::constant_pad_nd(features, {0, 1}, 0); // [N, dim]
  return features;
}

TimestepEmbeddingImpl::TimestepEmbeddingImpl(int64_t in_dim, int64_t out_dim, torch::TensorOptions options) {
  linear_1 = register_module("linear_1", Linear(in_dim, out_dim, true, options));
  linear_2 = register_module("linear_2", Linear(out_dim, out_dim, true, options));
}

torch::Tensor TimestepEmbeddingImpl::forward(const torch::Tensor& x) {
  return linear_2(torch::silu(linear_1(x))); // [B, out]
}

// ----------------------------------------------------------------------------
// Down block

UNetDownBlockImpl::UNetDownBlockImpl(const UNetConfig& c, int64_t level, torch::TensorOptions options) {
  const int64_t in_channels = level == 0 ? c.block_out_channels[0] : c.block_out_channels[level - 1];
  const int64_t out_channels = c.block_out_channels[level];
  const bool cross_attention = c.down_block_types[level] == "CrossAttnDownBlock2D";
  const bool is_last = level + 1 == static_cast<int64_t>(c.block_out_channels.size());
  for (int64_t j = 0; j < c.layers_per_block[level]; ++j) {
    resnets.push_back(ResnetBlock2D(j == 0 ? in_channels : out_channels, out_channels, c.time_embed_dim(),
                                    c.norm_num_groups, c.norm_eps, options));
    if (cross_attention) {
      attentions.push_back(Transformer2DModel(out_channels, c.num_attention_heads[level],
                                              c.transformer_layers_per_block[level], c.cross_attention_dim,
                                              c.norm_num_groups, c.upcast_attention,
                                              c.use_linear_projection, options));
    }
  }
  register_list(*this, "resnets", resnets);
  register_list(*this, "attentions", attentions);
  if (!is_last) {
    downsampler = Downsample2D(out_channels, c.downsample_padding, options);
    register_single(*this, "downsamplers", downsampler);
  }
}

torch::Tensor UNetDownBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& temb,
                                         const torch::Tensor& context, std::vector<torch::Tensor>& skips) {
  torch::Tensor h = x;
  for (size_t j = 0; j < resnets.size(); ++j) {
    h = resnets[j](h, temb);                                 // [B, out, H, W]
    if (!attentions.empty()) h = attentions[j](h, context);  // [B, out, H, W]
    skips.push_back(h);
  }
  if (downsampler) {
    h = downsampler(h); // [B, out, H/2, W/2]
    skips.push_back(h);
  }
  return h;
}

// ----------------------------------------------------------------------------
// Mid block

UNetMidBlockImpl::UNetMidBlockImpl(const UNetConfig& c, torch::TensorOptions options) {
  const int64_t channels = c.block_out_channels.back();
  const int64_t mid_layers = 1; // UNetMidBlock2DCrossAttn: one (transformer, resnet) pair after the first resnet
  resnets.push_back(ResnetBlock2D(channels, channels, c.time_embed_dim(), c.norm_num_groups, c.norm_eps, options));
  for (int64_t i = 0; i < mid_layers; ++i) {
    attentions.push_back(Transformer2DModel(channels, c.num_attention_heads.back(),
                                            c.transformer_layers_per_block.back(), c.cross_attention_dim,
                                            c.norm_num_groups, c.upcast_attention,
                                              c.use_linear_projection, options));
    resnets.push_back(ResnetBlock2D(channels, channels, c.time_embed_dim(), c.norm_num_groups, c.norm_eps, options));
  }
  register_list(*this, "attentions", attentions);
  register_list(*this, "resnets", resnets);
}

torch::Tensor UNetMidBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& temb,
                                        const torch::Tensor& context) {
  torch::Tensor h = resnets[0](x, temb); // [B, C, H, W]
  for (size_t i = 0; i < attentions.size(); ++i) {
    h = attentions[i](h, context);
    h = resnets[i + 1](h, temb);
  }
  return h;
}

// ----------------------------------------------------------------------------
// Up block

UNetUpBlockImpl::UNetUpBlockImpl(const UNetConfig& c, int64_t up_index, torch::TensorOptions options) {
  const int64_t levels = static_cast<int64_t>(c.block_out_channels.size());
  const int64_t level = levels - 1 - up_index; // the down level this block mirrors
  const int64_t out_channels = c.block_out_channels[level];
  const int64_t prev_output_channels = c.block_out_channels[std::min(level + 1, levels - 1)];
  const int64_t skip_in_channels = c.block_out_channels[std::max<int64_t>(level - 1, 0)];
  const bool cross_attention = c.up_block_types[up_index] == "CrossAttnUpBlock2D";
  const bool is_last = up_index + 1 == levels;
  const int64_t num_layers = c.layers_per_block[level] + 1;
  for (int64_t j = 0; j < num_layers; ++j) {
    const int64_t skip_channels = j == num_layers - 1 ? skip_in_channels : out_channels;
    const int64_t resnet_in = j == 0 ? prev_output_channels : out_channels;
    resnets.push_back(ResnetBlock2D(resnet_in + skip_channels, out_channels, c.time_embed_dim(),
                                    c.norm_num_groups, c.norm_eps, options));
    if (cross_attention) {
      attentions.push_back(Transformer2DModel(out_channels, c.num_attention_heads[level],
                                              c.transformer_layers_per_block[level], c.cross_attention_dim,
                                              c.norm_num_groups, c.upcast_attention,
                                              c.use_linear_projection, options));
    }
  }
  register_list(*this, "attentions", attentions);
  register_list(*this, "resnets", resnets);
  if (!is_last) {
    upsampler = Upsample2D(out_channels, options);
    register_single(*this, "upsamplers", upsampler);
  }
}

torch::Tensor UNetUpBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& temb,
                                       const torch::Tensor& context, std::vector<torch::Tensor>& skips) {
  torch::Tensor h = x;
  for (size_t j = 0; j < resnets.size(); ++j) {
    torch::Tensor skip = skips.back();
    skips.pop_back();
    h = resnets[j](torch::cat({h, skip}, 1), temb);         // [B, out, H, W]
    if (!attentions.empty()) h = attentions[j](h, context); // [B, out, H, W]
  }
  if (upsampler) {
    std::vector<int64_t> target; // the next skip's size, which is 2x unless a down level rounded up
    if (!skips.empty()) target = {skips.back().size(2), skips.back().size(3)};
    h = upsampler(h, target); // [B, out, 2H, 2W]
  }
  return h;
}

// ----------------------------------------------------------------------------
// UNet2DConditionModel

UNetConditioning UNetConditioning::to(const torch::Device& device, torch::Dtype dtype) const {
  const auto convert = [&](const torch::Tensor& tensor) { return tensor.defined() ? tensor.to(device, dtype) : tensor; };
  return {convert(context), convert(text_embeds), convert(time_ids)};
}

UNetConditioning UNetConditioning::cat(const UNetConditioning& other) const {
  const auto join = [](const torch::Tensor& a, const torch::Tensor& b) {
    return a.defined() ? torch::cat({a, b}, 0) : a;
  };
  return {join(context, other.context), join(text_embeds, other.text_embeds), join(time_ids, other.time_ids)};
}

UNetConditioning UNetConditioning::repeat(int64_t times) const {
  const auto repeated = [&](const torch::Tensor& tensor) {
    if (!tensor.defined()) return tensor;
    std::vector<int64_t> counts(tensor.dim(), 1);
    counts[0] = times;
    return tensor.repeat(counts);
  };
  return {repeated(context), repeated(text_embeds), repeated(time_ids)};
}

UNet2DConditionModelImpl::UNet2DConditionModelImpl(const UNetConfig& c, torch::TensorOptions options)
    : config_(c) {
  const int64_t levels = static_cast<int64_t>(c.block_out_channels.size());
  const int64_t first = c.block_out_channels.front();
  conv_in = register_module("conv_in", Conv2d(c.in_channels, first, c.conv_in_kernel,
                                              1, (c.conv_in_kernel - 1) / 2, options));
  time_embedding = register_module("time_embedding", TimestepEmbedding(first, c.time_embed_dim(), options));
  if (c.has_added_embedding()) {
    add_embedding = register_module(
        "add_embedding", TimestepEmbedding(c.projection_class_embeddings_input_dim, c.time_embed_dim(), options));
  }
  for (int64_t level = 0; level < levels; ++level) down_blocks.push_back(UNetDownBlock(c, level, options));
  register_list(*this, "down_blocks", down_blocks);
  mid_block = register_module("mid_block", UNetMidBlock(c, options));
  for (int64_t i = 0; i < levels; ++i) up_blocks.push_back(UNetUpBlock(c, i, options));
  register_list(*this, "up_blocks", up_blocks);
  conv_norm_out = register_module("conv_norm_out", GroupNorm(c.norm_num_groups, first, c.norm_eps, options));
  conv_out = register_module("conv_out", Conv2d(first, c.out_channels, c.conv_out_kernel,
                                                1, (c.conv_out_kernel - 1) / 2, options));
}

torch::Tensor UNet2DConditionModelImpl::forward(const torch::Tensor& sample, const torch::Tensor& timestep,
                                                const torch::Tensor& encoder_hidden_states,
                                                const torch::Tensor& text_embeds, const torch::Tensor& time_ids,
                                                const TraceFn* trace) {
  const int64_t batch = sample.size(0);
  const auto dtype = sample.scalar_type();
  if (add_embedding) {
    if (!text_embeds.defined() || !time_ids.defined())
      throw std::invalid_argument("UNet: an SDXL UNet needs text_embeds and time_ids");
    if (time_ids.size(-1) != kTimeIdsPerSample) throw std::invalid_argument("UNet: time_ids must hold 6 values per sample");
  } else if (text_embeds.defined() || time_ids.defined()) {
    throw std::invalid_argument("UNet: this UNet has no added embedding (SD 1.x/2.x); text_embeds and time_ids must be undefined");
  }
  auto emit = [&](const std::string& name, const torch::Tensor& value) {
    emit_trace(trace, kTracePrefix + name, value);
  };

  // time embedding (+ SDXL's text_time added embedding)
  torch::Tensor t = timestep.reshape({-1}).expand({batch});                  // [B]
  torch::Tensor t_features = timestep_features(t, config_.block_out_channels.front(),
                                               config_.flip_sin_to_cos, config_.freq_shift); // [B, C0]
  emit("time_proj", t_features);
  torch::Tensor emb = time_embedding(t_features.to(dtype));                   // [B, 4*C0]
  emit("time_embedding", emb);
  if (add_embedding) {
    torch::Tensor id_features = timestep_features(time_ids.reshape({-1}), config_.addition_time_embed_dim,
                                                  config_.flip_sin_to_cos, config_.freq_shift); // [B*6, D]
    emit("add_time_proj", id_features);
    torch::Tensor add_input =
        torch::cat({text_embeds, id_features.reshape({batch, -1}).to(text_embeds.scalar_type())}, -1)
            .to(emb.scalar_type());                                             // [B, pooled + 6*D]
    torch::Tensor aug_emb = add_embedding(add_input);                           // [B, 4*C0]
    emit("add_embedding", aug_emb);
    emb = emb + aug_emb;
  }

  // down, mid, up
  torch::Tensor h = conv_in(sample); // [B, C0, h, w]
  emit("conv_in", h);
  std::vector<torch::Tensor> skips{h};
  for (size_t i = 0; i < down_blocks.size(); ++i) {
    h = down_blocks[i](h, emb, encoder_hidden_states, skips);
    emit("down_blocks." + std::to_string(i), h);
  }
  h = mid_block(h, emb, encoder_hidden_states);
  emit("mid_block", h);
  for (size_t i = 0; i < up_blocks.size(); ++i) {
    h = up_blocks[i](h, emb, encoder_hidden_states, skips);
    emit("up_blocks." + std::to_string(i), h);
  }

  // output head
  h = conv_norm_out(h); // [B, C0, h, w]
  emit("conv_norm_out", h);
  h = conv_out(torch::silu(h)); // [B, out, h, w]
  emit("conv_out", h);
  return h;
}

} // namespace sdxl::models

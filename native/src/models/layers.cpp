// Thin layers: parameters created with the caller's TensorOptions, math from torch's functional ops.
#include "models/layers.h"

#include "torch_compat.h" // SDXL_TORCH_HAS_SDPA

#include <cmath>  // std::sqrt
#include <limits> // std::numeric_limits<float>::infinity

namespace sdxl::models {

namespace {
// Frozen base weights: gradients flow only into LoRA slots or explicitly trained tensors.
constexpr bool kBaseWeightsRequireGrad = false;

torch::Tensor new_parameter(torch::IntArrayRef shape, const torch::TensorOptions& options) {
  return torch::empty(shape, options.requires_grad(false));
}
} // namespace

// ----------------------------------------------------------------------------
// Linear

LinearImpl::LinearImpl(int64_t in_features_, int64_t out_features_, bool with_bias,
                       torch::TensorOptions options, bool pointwise_conv_)
    : in_features(in_features_), out_features(out_features_), pointwise_conv(pointwise_conv_) {
  const std::vector<int64_t> shape = pointwise_conv ? std::vector<int64_t>{out_features, in_features, 1, 1}
                                                    : std::vector<int64_t>{out_features, in_features};
  weight = register_parameter("weight", new_parameter(shape, options), kBaseWeightsRequireGrad);
  if (with_bias) {
    bias = register_parameter("bias", new_parameter({out_features}, options), kBaseWeightsRequireGrad);
  }
}

namespace {
// Inverted dropout as torch's: zero each element with probability p, scale the rest by 1 / (1 - p).
// The mask comes from the slot's generator so that gradient checkpointing can replay it.
torch::Tensor lora_dropout(const torch::Tensor& x, const LoraSlot& lora) {
  TORCH_CHECK(lora.dropout > 0.0 && lora.dropout < 1.0, "LoRA dropout must be in [0, 1), got ", lora.dropout);
  const c10::optional<at::Generator> generator =
      lora.generator.defined() ? c10::optional<at::Generator>(lora.generator) : c10::nullopt;
  torch::Tensor keep = torch::empty_like(x).bernoulli_(1.0 - lora.dropout, generator); // [..., in], 0 or 1
  return x * keep.div_(1.0 - lora.dropout);
}
} // namespace

namespace {
thread_local const std::vector<ActiveAdapter>* active_adapters = nullptr;
} // namespace

ActiveAdaptersScope::ActiveAdaptersScope(const std::vector<ActiveAdapter>* adapters) : previous_(active_adapters) {
  active_adapters = adapters;
}

ActiveAdaptersScope::~ActiveAdaptersScope() { active_adapters = previous_; }

torch::Tensor LinearImpl::forward(const torch::Tensor& x) {
  torch::Tensor y = torch::linear(x, pointwise_conv ? weight.flatten(1) : weight, bias); // [..., out]
  const auto add = [&](const LoraSlot& lora, double scale) {
    torch::Tensor lora_in = x.to(lora.down.scalar_type()); // [..., in]
    if (lora.dropout != 0.0 && is_training()) lora_in = lora_dropout(lora_in, lora);
    torch::Tensor low = torch::linear(lora_in, lora.down); // [..., r]
    torch::Tensor delta = torch::linear(low, lora.up);     // [..., out]
    y = y + (delta * scale).to(y.scalar_type());
  };
  for (const LoraSlot& lora : loras) add(lora, lora.scale);
  if (active_adapters != nullptr) {
    for (const ActiveAdapter& adapter : *active_adapters) {
      const auto found = adapter.set->slots.find(this);
      if (found == adapter.set->slots.end()) continue;
      for (const LoraSlot& lora : found->second) add(lora, lora.scale * adapter.scale);
    }
  }
  return y;
}

// ----------------------------------------------------------------------------
// Conv2d

Conv2dImpl::Conv2dImpl(int64_t in_channels, int64_t out_channels, int64_t kernel_size,
                       int64_t stride_, int64_t padding_, torch::TensorOptions options)
    : stride(stride_), padding(padding_) {
  weight = register_parameter(
      "weight", new_parameter({out_channels, in_channels, kernel_size, kernel_size}, options),
      kBaseWeightsRequireGrad);
  bias = register_parameter("bias", new_parameter({out_channels}, options), kBaseWeightsRequireGrad);
}

torch::Tensor Conv2dImpl::forward(const torch::Tensor& x) {
  return torch::conv2d(x, weight, bias, {stride, stride}, {padding, padding});
}

// ----------------------------------------------------------------------------
// GroupNorm, LayerNorm

GroupNormImpl::GroupNormImpl(int64_t num_groups_, int64_t num_channels, double eps_,
                             torch::TensorOptions options)
    : num_groups(num_groups_), eps(eps_) {
  TORCH_CHECK(num_channels % num_groups == 0, "GroupNorm: ", num_channels,
              " channels are not divisible into ", num_groups, " groups");
  weight = register_parameter("weight", new_parameter({num_channels}, options), kBaseWeightsRequireGrad);
  bias = register_parameter("bias", new_parameter({num_channels}, options), kBaseWeightsRequireGrad);
}

torch::Tensor GroupNormImpl::forward(const torch::Tensor& x) {
  return torch::group_norm(x, num_groups, weight, bias, eps);
}

LayerNormImpl::LayerNormImpl(int64_t dim_, double eps_, torch::TensorOptions options)
    : dim(dim_), eps(eps_) {
  weight = register_parameter("weight", new_parameter({dim}, options), kBaseWeightsRequireGrad);
  bias = register_parameter("bias", new_parameter({dim}, options), kBaseWeightsRequireGrad);
}

torch::Tensor LayerNormImpl::forward(const torch::Tensor& x) {
  return torch::layer_norm(x, {dim}, weight, bias, eps);
}

// ----------------------------------------------------------------------------
// Embedding

EmbeddingImpl::EmbeddingImpl(int64_t num_embeddings, int64_t dim, torch::TensorOptions options) {
  weight = register_parameter("weight", new_parameter({num_embeddings, dim}, options),
                              kBaseWeightsRequireGrad);
}

torch::Tensor EmbeddingImpl::forward(const torch::Tensor& ids) {
  return torch::embedding(weight, ids);
}

// ----------------------------------------------------------------------------
// Attention math

torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, bool causal, bool upcast) {
  const bool compute_in_float = upcast && q.scalar_type() != torch::kFloat;
#if SDXL_TORCH_HAS_SDPA
  if (!compute_in_float) {
    return at::scaled_dot_product_attention(q, k, v, {}, 0.0, causal); // [B, heads, N, d]
  }
#endif
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  torch::Tensor qs = compute_in_float ? q.to(torch::kFloat) : q;
  torch::Tensor ks = compute_in_float ? k.to(torch::kFloat) : k;
  torch::Tensor scores = torch::matmul(qs * scale, ks.transpose(-1, -2)); // [B, heads, N, M]
  if (causal) {
    const int64_t n = scores.size(-2), m = scores.size(-1);
    torch::Tensor future =
        torch::ones({n, m}, torch::TensorOptions().dtype(torch::kBool).device(q.device())).triu(1);
    scores = scores.masked_fill(future, -std::numeric_limits<float>::infinity());
  }
  torch::Tensor probs = torch::softmax(scores, -1).to(v.scalar_type()); // [B, heads, N, M]
  return torch::matmul(probs, v);                                        // [B, heads, N, d]
}

} // namespace sdxl::models

// diffusers' attention stack as the Stable Diffusion UNets use it: Attention, the
// GEGLU FeedForward, BasicTransformerBlock and Transformer2DModel (linear or 1x1-conv
// projections). Module names are the diffusers state-dict keys
// (attn1.to_q, attn2.to_out.0, ff.net.0.proj, ff.net.2, ...).
#pragma once

#include "models/layers.h" // Linear, LayerNorm, GroupNorm

#include <torch/torch.h> // torch::nn::Module, torch::nn::ModuleList

#include <cstdint> // int64_t

namespace sdxl::models {

// ----------------------------------------------------------------------------
// Attention: to_q / to_k / to_v (+ to_out.0), multi-head scaled dot product

class AttentionImpl : public torch::nn::Module {
 public:
  // context_dim <= 0: self-attention. qkv_bias: the VAE's attention has biases, the UNet's not.
  AttentionImpl(int64_t query_dim, int64_t context_dim, int64_t heads, int64_t head_dim,
                bool qkv_bias, bool upcast, torch::TensorOptions options);
  // x [B, N, query_dim], context [B, M, context_dim] or undefined -> [B, N, query_dim]
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context = {});

  int64_t heads;
  int64_t head_dim;
  bool upcast;
  Linear to_q{nullptr};
  Linear to_k{nullptr};
  Linear to_v{nullptr};
  Linear to_out{nullptr}; // registered as "to_out.0"
};
TORCH_MODULE(Attention);

// ----------------------------------------------------------------------------
// FeedForward with GEGLU: net.0.proj (dim -> 2 * inner), gelu gate, net.2 (inner -> dim)

class FeedForwardImpl : public torch::nn::Module {
 public:
  FeedForwardImpl(int64_t dim, int64_t inner_dim, torch::TensorOptions options);
  torch::Tensor forward(const torch::Tensor& x); // [B, N, dim] -> [B, N, dim]

  Linear proj{nullptr};    // "net.0.proj"
  Linear out{nullptr};     // "net.2"
};
TORCH_MODULE(FeedForward);

// ----------------------------------------------------------------------------
// BasicTransformerBlock: self-attention, cross-attention, feed-forward, each pre-norm + residual

class BasicTransformerBlockImpl : public torch::nn::Module {
 public:
  BasicTransformerBlockImpl(int64_t dim, int64_t heads, int64_t head_dim, int64_t context_dim,
                            bool upcast_attention, torch::TensorOptions options);
  // x [B, N, dim], context [B, M, context_dim] -> [B, N, dim]; through checkpoint() when
  // gradient_checkpointing is set, the block is training and grad mode is on.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context);
  // The block's computation itself (what forward runs or checkpoints).
  torch::Tensor forward_plain(const torch::Tensor& x, const torch::Tensor& context);

  bool gradient_checkpointing = false; // see set_gradient_checkpointing (grad_checkpoint.h)
  LayerNorm norm1{nullptr};
  Attention attn1{nullptr};
  LayerNorm norm2{nullptr};
  Attention attn2{nullptr};
  LayerNorm norm3{nullptr};
  FeedForward ff{nullptr};
};
TORCH_MODULE(BasicTransformerBlock);

// ----------------------------------------------------------------------------
// Transformer2DModel: GroupNorm -> proj_in -> blocks -> proj_out, + residual

class Transformer2DModelImpl : public torch::nn::Module {
 public:
  // linear_projection false: proj_in / proj_out are 1x1 convolutions (SD 1.x), applied as
  // the same linear map on channels-last activations.
  Transformer2DModelImpl(int64_t channels, int64_t heads, int64_t num_layers, int64_t context_dim,
                         int64_t groups, bool upcast_attention, bool linear_projection,
                         torch::TensorOptions options);
  // x [B, C, H, W], context [B, M, context_dim] -> [B, C, H, W]
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context);

  GroupNorm norm{nullptr};
  Linear proj_in{nullptr};
  std::vector<BasicTransformerBlock> blocks; // registered as "transformer_blocks.N"
  Linear proj_out{nullptr};
};
TORCH_MODULE(Transformer2DModel);

} // namespace sdxl::models

// Attention, FeedForward (GEGLU), BasicTransformerBlock, Transformer2DModel
// (diffusers/models/attention_processor.py, attention.py, transformers/transformer_2d.py).
#include "models/attention.h"

#include "models/grad_checkpoint.h" // checkpoint_active, checkpoint_block

namespace sdxl::models {

namespace {
constexpr double kTransformerNormEps = 1e-6; // Transformer2DModel's GroupNorm
constexpr double kBlockNormEps = 1e-5;       // BasicTransformerBlock's LayerNorms
constexpr int64_t kFeedForwardMult = 4;      // inner = 4 * dim

// [B, N, heads * d] -> [B, heads, N, d]
torch::Tensor split_heads(const torch::Tensor& x, int64_t heads) {
  return x.view({x.size(0), x.size(1), heads, -1}).transpose(1, 2);
}

// [B, heads, N, d] -> [B, N, heads * d]
torch::Tensor merge_heads(const torch::Tensor& x) {
  return x.transpose(1, 2).reshape({x.size(0), x.size(2), -1});
}
} // namespace

// ----------------------------------------------------------------------------
// Attention

AttentionImpl::AttentionImpl(int64_t query_dim, int64_t context_dim, int64_t heads_, int64_t head_dim_,
                             bool qkv_bias, bool upcast_, torch::TensorOptions options)
    : heads(heads_), head_dim(head_dim_), upcast(upcast_) {
  const int64_t inner = heads * head_dim;
  const int64_t kv_dim = context_dim > 0 ? context_dim : query_dim;
  to_q = register_module("to_q", Linear(query_dim, inner, qkv_bias, options));
  to_k = register_module("to_k", Linear(kv_dim, inner, qkv_bias, options));
  to_v = register_module("to_v", Linear(kv_dim, inner, qkv_bias, options));
  auto out_list = register_module("to_out", torch::nn::ModuleList());
  to_out = Linear(inner, query_dim, true, options);
  out_list->push_back(to_out); // "to_out.0"; diffusers' to_out.1 is a parameter-free Dropout
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& context) {
  const torch::Tensor& kv = context.defined() ? context : x;
  torch::Tensor q = split_heads(to_q(x), heads);  // [B, heads, N, d]
  torch::Tensor k = split_heads(to_k(kv), heads); // [B, heads, M, d]
  torch::Tensor v = split_heads(to_v(kv), heads); // [B, heads, M, d]
  torch::Tensor attended = attend(q, k, v, false, upcast); // [B, heads, N, d]
  return to_out(merge_heads(attended));                    // [B, N, query_dim]
}

// ----------------------------------------------------------------------------
// FeedForward

FeedForwardImpl::FeedForwardImpl(int64_t dim, int64_t inner_dim, torch::TensorOptions options) {
  auto net = register_module("net", torch::nn::ModuleList());
  auto geglu = std::make_shared<torch::nn::Module>(); // "net.0" (GEGLU) holds "proj"
  proj = Linear(dim, 2 * inner_dim, true, options);
  geglu->register_module("proj", proj);
  net->push_back(geglu);
  net->push_back(Placeholder());                      // "net.1": Dropout in diffusers
  out = Linear(inner_dim, dim, true, options);
  net->push_back(out);                                // "net.2"
}

torch::Tensor FeedForwardImpl::forward(const torch::Tensor& x) {
  std::vector<torch::Tensor> value_gate = proj(x).chunk(2, -1); // 2 x [B, N, inner]
  return out(value_gate[0] * torch::gelu(value_gate[1]));        // [B, N, dim]
}

// ----------------------------------------------------------------------------
// BasicTransformerBlock

BasicTransformerBlockImpl::BasicTransformerBlockImpl(int64_t dim, int64_t heads, int64_t head_dim,
                                                     int64_t context_dim, bool upcast_attention,
                                                     torch::TensorOptions options) {
  norm1 = register_module("norm1", LayerNorm(dim, kBlockNormEps, options));
  attn1 = register_module("attn1", Attention(dim, 0, heads, head_dim, false, upcast_attention, options));
  norm2 = register_module("norm2", LayerNorm(dim, kBlockNormEps, options));
  attn2 = register_module("attn2",
                          Attention(dim, context_dim, heads, head_dim, false, upcast_attention, options));
  norm3 = register_module("norm3", LayerNorm(dim, kBlockNormEps, options));
  ff = register_module("ff", FeedForward(dim, kFeedForwardMult * dim, options));
}

torch::Tensor BasicTransformerBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& context) {
  if (!checkpoint_active(*this, gradient_checkpointing)) return forward_plain(x, context);
  const CheckpointFn run = [this](const std::vector<torch::Tensor>& in) {
    return std::vector<torch::Tensor>{forward_plain(in[0], in[1])};
  };
  return checkpoint_block(*this, run, {x, context})[0]; // [B, N, dim]
}

torch::Tensor BasicTransformerBlockImpl::forward_plain(const torch::Tensor& x, const torch::Tensor& context) {
  torch::Tensor h = x + attn1(norm1(x));  // [B, N, dim]
  h = h + attn2(norm2(h), context);       // [B, N, dim]
  return h + ff(norm3(h));                // [B, N, dim]
}

// ----------------------------------------------------------------------------
// Transformer2DModel

Transformer2DModelImpl::Transformer2DModelImpl(int64_t channels, int64_t heads, int64_t num_layers,
                                               int64_t context_dim, int64_t groups, bool upcast_attention,
                                               bool linear_projection, torch::TensorOptions options) {
  const int64_t head_dim = channels / heads;
  const bool pointwise_conv = !linear_projection;
  norm = register_module("norm", GroupNorm(groups, channels, kTransformerNormEps, options));
  proj_in = register_module("proj_in", Linear(channels, channels, true, options, pointwise_conv));
  auto list = register_module("transformer_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < num_layers; ++i) {
    blocks.push_back(BasicTransformerBlock(channels, heads, head_dim, context_dim, upcast_attention, options));
    list->push_back(blocks.back());
  }
  proj_out = register_module("proj_out", Linear(channels, channels, true, options, pointwise_conv));
}

torch::Tensor Transformer2DModelImpl::forward(const torch::Tensor& x, const torch::Tensor& context) {
  const int64_t batch = x.size(0), channels = x.size(1), height = x.size(2), width = x.size(3);
  // A 1x1 convolution before the reshape (SD 1.x) is this linear map after it.
  torch::Tensor h = norm(x).permute({0, 2, 3, 1}).reshape({batch, height * width, channels}); // [B, HW, C]
  h = proj_in(h);
  for (auto& block : blocks) h = block(h, context);                                           // [B, HW, C]
  h = proj_out(h);
  h = h.reshape({batch, height, width, channels}).permute({0, 3, 1, 2}).contiguous();         // [B, C, H, W]
  return h + x;
}

} // namespace sdxl::models

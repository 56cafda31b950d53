// CLIP text model (transformers/models/clip/modeling_clip.py: CLIPTextTransformer,
// CLIPTextModel, CLIPTextModelWithProjection).
#include "models/clip.h"

#include "models/grad_checkpoint.h" // checkpoint_active, checkpoint_block

#include <stdexcept> // std::invalid_argument

namespace sdxl::models {

namespace {
constexpr double kQuickGeluSlope = 1.702;  // x * sigmoid(1.702 x)
constexpr int64_t kLegacyEosTokenId = 2;   // configs predating the real eos id: pool at argmax(ids)
} // namespace

// ----------------------------------------------------------------------------
// Attention and MLP

ClipAttentionImpl::ClipAttentionImpl(int64_t hidden, int64_t heads_, bool causal_, torch::TensorOptions options)
    : heads(heads_), causal(causal_) {
  k_proj = register_module("k_proj", Linear(hidden, hidden, true, options));
  v_proj = register_module("v_proj", Linear(hidden, hidden, true, options));
  q_proj = register_module("q_proj", Linear(hidden, hidden, true, options));
  out_proj = register_module("out_proj", Linear(hidden, hidden, true, options));
}

torch::Tensor ClipAttentionImpl::forward(const torch::Tensor& x) {
  const int64_t batch = x.size(0), tokens = x.size(1);
  auto split = [&](const torch::Tensor& t) { return t.view({batch, tokens, heads, -1}).transpose(1, 2); };
  torch::Tensor q = split(q_proj(x)); // [B, heads, N, d]
  torch::Tensor k = split(k_proj(x)); // [B, heads, N, d]
  torch::Tensor v = split(v_proj(x)); // [B, heads, N, d]
  torch::Tensor attended = attend(q, k, v, causal);            // [B, heads, N, d]
  return out_proj(attended.transpose(1, 2).reshape({batch, tokens, -1})); // [B, N, hidden]
}

ClipMlpImpl::ClipMlpImpl(int64_t hidden, int64_t intermediate, std::string act_, torch::TensorOptions options)
    : act(std::move(act_)) {
  fc1 = register_module("fc1", Linear(hidden, intermediate, true, options));
  fc2 = register_module("fc2", Linear(intermediate, hidden, true, options));
}

torch::Tensor ClipMlpImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = fc1(x); // [B, N, intermediate]
  h = act == "quick_gelu" ? h * torch::sigmoid(kQuickGeluSlope * h) : torch::gelu(h);
  return fc2(h);            // [B, N, hidden]
}

ClipEncoderLayerImpl::ClipEncoderLayerImpl(const ClipEncoderConfig& c, torch::TensorOptions options, bool causal) {
  self_attn = register_module("self_attn", ClipAttention(c.hidden_size, c.num_attention_heads, causal, options));
  layer_norm1 = register_module("layer_norm1", LayerNorm(c.hidden_size, c.layer_norm_eps, options));
  mlp = register_module("mlp", ClipMlp(c.hidden_size, c.intermediate_size, c.hidden_act, options));
  layer_norm2 = register_module("layer_norm2", LayerNorm(c.hidden_size, c.layer_norm_eps, options));
}

torch::Tensor ClipEncoderLayerImpl::forward(const torch::Tensor& x) {
  if (!checkpoint_active(*this, gradient_checkpointing)) return forward_plain(x);
  const CheckpointFn run = [this](const std::vector<torch::Tensor>& in) {
    return std::vector<torch::Tensor>{forward_plain(in[0])};
  };
  return checkpoint_block(*this, run, {x})[0]; // [B, N, hidden]
}

torch::Tensor ClipEncoderLayerImpl::forward_plain(const torch::Tensor& x) {
  torch::Tensor h = x + self_attn(layer_norm1(x)); // [B, N, hidden]
  return h + mlp(layer_norm2(h));                   // [B, N, hidden]
}

// ----------------------------------------------------------------------------
// Text model

ClipTextModelImpl::ClipTextModelImpl(const ClipTextConfig& c, torch::TensorOptions options) : config_(c) {
  // "text_model" holds embeddings / encoder / final_layer_norm, as transformers 4 names them.
  auto text_model = register_module("text_model", std::make_shared<torch::nn::Module>());
  auto embeddings = text_model->register_module("embeddings", std::make_shared<torch::nn::Module>());
  token_embedding = embeddings->register_module("token_embedding", Embedding(c.vocab_size, c.hidden_size, options));
  position_embedding = embeddings->register_module(
      "position_embedding", Embedding(c.max_position_embeddings, c.hidden_size, options));
  auto encoder = text_model->register_module("encoder", std::make_shared<torch::nn::Module>());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers.push_back(ClipEncoderLayer(c, options));
  register_list(*encoder, "layers", layers);
  final_layer_norm =
      text_model->register_module("final_layer_norm", LayerNorm(c.hidden_size, c.layer_norm_eps, options));
  if (c.with_projection) {
    text_projection = register_module("text_projection", Linear(c.hidden_size, c.projection_dim, false, options));
  }
}

torch::Tensor ClipTextModelImpl::pooled_positions(const torch::Tensor& input_ids) const {
  if (config_.eos_token_id == kLegacyEosTokenId) return input_ids.argmax(-1); // [B]
  return (input_ids == config_.eos_token_id).to(torch::kInt).argmax(-1);      // [B]
}

ClipTextOutput ClipTextModelImpl::forward(const torch::Tensor& input_ids) {
  const int64_t batch = input_ids.size(0), tokens = input_ids.size(1);
  if (tokens > config_.max_position_embeddings) {
    throw std::invalid_argument("CLIP text model: " + std::to_string(tokens) + " tokens exceed " +
                                std::to_string(config_.max_position_embeddings) + " positions");
  }
  torch::Tensor ids = input_ids.to(token_embedding->weight.device(), torch::kLong);
  torch::Tensor positions = torch::arange(tokens, ids.options()); // [N]

  ClipTextOutput out;
  torch::Tensor h = token_embedding(ids) + position_embedding(positions).unsqueeze(0); // [B, N, hidden]
  out.hidden_states.push_back(h);
  for (auto& layer : layers) {
    h = layer(h); // [B, N, hidden]
    out.hidden_states.push_back(h);
  }
  out.last_hidden_state = final_layer_norm(h); // [B, N, hidden]
  torch::Tensor rows = torch::arange(batch, ids.options());
  out.pooled_output = out.last_hidden_state.index({rows, pooled_positions(ids)}); // [B, hidden]
  if (text_projection) out.text_embeds = text_projection(out.pooled_output);     // [B, projection]
  return out;
}

} // namespace sdxl::models

// transformers' CLIPTextModel and CLIPTextModelWithProjection (one class; the
// projection is present when the config says so). Parameter names are the
// transformers 4 keys ("text_model.encoder.layers.0.self_attn.q_proj.weight",
// "text_projection.weight"); load_state_dict also accepts files without the
// "text_model." prefix (transformers 5 CLIPTextModel).
#pragma once

#include "models/configs.h" // ClipTextConfig
#include "models/layers.h"  // Linear, LayerNorm, Embedding

#include <torch/torch.h> // torch::nn::Module

#include <cstdint> // int64_t
#include <vector>

namespace sdxl::models {

struct ClipTextOutput {
  torch::Tensor last_hidden_state;          // [B, 77, hidden], after final_layer_norm
  std::vector<torch::Tensor> hidden_states; // embeddings, then each layer's output (layers + 1)
  torch::Tensor pooled_output;              // [B, hidden], last_hidden_state at the eos token
  torch::Tensor text_embeds;                // [B, projection_dim]; undefined without projection
};

// ----------------------------------------------------------------------------
// Encoder layer: pre-norm self-attention (causal in the text tower) and MLP

class ClipAttentionImpl : public torch::nn::Module {
 public:
  ClipAttentionImpl(int64_t hidden, int64_t heads, bool causal, torch::TensorOptions options);
  torch::Tensor forward(const torch::Tensor& x); // [B, N, hidden] -> same

  int64_t heads;
  bool causal; // each token sees only those before it (the text tower)
  Linear q_proj{nullptr};
  Linear k_proj{nullptr};
  Linear v_proj{nullptr};
  Linear out_proj{nullptr};
};
TORCH_MODULE(ClipAttention);

class ClipMlpImpl : public torch::nn::Module {
 public:
  ClipMlpImpl(int64_t hidden, int64_t intermediate, std::string act, torch::TensorOptions options);
  torch::Tensor forward(const torch::Tensor& x); // [B, N, hidden] -> same

  std::string act; // "quick_gelu" or "gelu"
  Linear fc1{nullptr};
  Linear fc2{nullptr};
};
TORCH_MODULE(ClipMlp);

class ClipEncoderLayerImpl : public torch::nn::Module {
 public:
  ClipEncoderLayerImpl(const ClipEncoderConfig& config, torch::TensorOptions options, bool causal = true);
  // [B, N, hidden] -> same; through checkpoint() when gradient_checkpointing is set,
  // the layer is training and grad mode is on.
  torch::Tensor forward(const torch::Tensor& x);
  // The layer's computation itself (what forward runs or checkpoints).
  torch::Tensor forward_plain(const torch::Tensor& x);

  bool gradient_checkpointing = false; // see set_gradient_checkpointing (grad_checkpoint.h)
  LayerNorm layer_norm1{nullptr};
  ClipAttention self_attn{nullptr};
  LayerNorm layer_norm2{nullptr};
  ClipMlp mlp{nullptr};
};
TORCH_MODULE(ClipEncoderLayer);

// ----------------------------------------------------------------------------
// The text model

class ClipTextModelImpl : public torch::nn::Module {
 public:
  ClipTextModelImpl(const ClipTextConfig& config, torch::TensorOptions options);
  ClipTextOutput forward(const torch::Tensor& input_ids); // [B, N] int64

  // Row index of the pooled token per sequence: argmax(ids) when eos_token_id is
  // the legacy 2 (transformers' rule), else the first eos_token_id. [B, N] -> [B]
  torch::Tensor pooled_positions(const torch::Tensor& input_ids) const;

  const ClipTextConfig& config() const { return config_; }

  Embedding token_embedding{nullptr};    // text_model.embeddings.token_embedding
  Embedding position_embedding{nullptr}; // text_model.embeddings.position_embedding
  std::vector<ClipEncoderLayer> layers;  // text_model.encoder.layers.N
  LayerNorm final_layer_norm{nullptr};   // text_model.final_layer_norm
  Linear text_projection{nullptr};       // text_projection (bias-free), with_projection only

 private:
  ClipTextConfig config_;
};
TORCH_MODULE(ClipTextModel);

} // namespace sdxl::models

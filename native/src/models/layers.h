// Thin parameter-holding layers for the SDXL models (Linear, Conv2d, GroupNorm,
// LayerNorm, Embedding). Unlike torch::nn's, they take a TensorOptions for
// their parameters, so a whole model can be built on the meta device (no
// allocation) or directly in the dtype/device it will run in. Parameters are
// left uninitialised: every model here is filled by load_state_dict.
// Parameter names are the PyTorch ones ("weight", "bias"), so module paths are
// the diffusers / transformers state-dict keys.
#pragma once

#include <torch/torch.h> // torch::nn::Module, torch::Tensor, TORCH_MODULE

#include <cstdint>       // int64_t
#include <memory>        // std::shared_ptr<const AdapterSet>
#include <string>        // module names
#include <unordered_map> // AdapterSet
#include <vector>        // std::vector<LoraSlot>

namespace sdxl::models {

// ----------------------------------------------------------------------------
// Linear with unmerged LoRA slots

// One low-rank adapter on a Linear: y += scale * (dropout(x) down^T) up^T (peft's order).
struct LoraSlot {
  torch::Tensor down;        // [r, in]
  torch::Tensor up;          // [out, r]
  double scale = 1.0;        // alpha / rank * user scale
  double dropout = 0.0;      // peft lora_dropout on the adapter's input; only while the Linear is training
  at::Generator generator{}; // draws the dropout mask; undefined: the default generator of x's device
};

class LinearImpl;

// A LoRA file's slots by the Linear they adapt, at user scale 1 (slot scale = alpha / rank).
struct AdapterSet {
  std::unordered_map<const LinearImpl*, std::vector<LoraSlot>> slots;
  int64_t bytes = 0; // of the converted down/up tensors
};

// The adapters of the inference call running on this thread, each set with its user scale.
// Linear::forward adds them to its own slots, so one shared model serves calls with
// different LoRAs at the same time, none seeing another's: the modules are never changed.
// The overlay is for inference only: a forward runs on the thread that calls it, but
// autograd's backward (and so gradient checkpointing's replay) may run on other threads.
struct ActiveAdapter {
  std::shared_ptr<const AdapterSet> set;
  double scale = 1.0;
};

// Makes `adapters` the overlay of this thread until destroyed (restoring the previous one).
class ActiveAdaptersScope {
 public:
  explicit ActiveAdaptersScope(const std::vector<ActiveAdapter>* adapters);
  ~ActiveAdaptersScope();
  ActiveAdaptersScope(const ActiveAdaptersScope&) = delete;
  ActiveAdaptersScope& operator=(const ActiveAdaptersScope&) = delete;

 private:
  const std::vector<ActiveAdapter>* previous_;
};

class LinearImpl : public torch::nn::Module {
 public:
  // pointwise_conv: the weight is stored as a 1x1 Conv2d's, [out, in, 1, 1] (SD 1.x's
  // proj_in / proj_out), and applied to channels-last input as the same linear map.
  LinearImpl(int64_t in_features, int64_t out_features, bool with_bias, torch::TensorOptions options,
             bool pointwise_conv = false);

  // y = x W^T + b + sum_i scale_i * (dropout_i(x) down_i^T) up_i^T over its own slots and
  // this thread's overlay (ActiveAdaptersScope); the base weight is never modified.
  torch::Tensor forward(const torch::Tensor& x);

  int64_t in_features;
  int64_t out_features;
  bool pointwise_conv;  // weight is [out, in, 1, 1]; LoRA files hold its down / up as 1x1 convs too
  torch::Tensor weight; // [out, in] (or [out, in, 1, 1])
  torch::Tensor bias;   // [out] or undefined
  std::vector<LoraSlot> loras;
};
TORCH_MODULE(Linear);

// ----------------------------------------------------------------------------
// Convolution and normalisation

class Conv2dImpl : public torch::nn::Module {
 public:
  Conv2dImpl(int64_t in_channels, int64_t out_channels, int64_t kernel_size, int64_t stride,
             int64_t padding, torch::TensorOptions options);
  torch::Tensor forward(const torch::Tensor& x); // [B, in, H, W] -> [B, out, H', W']

  int64_t stride;
  int64_t padding;
  torch::Tensor weight; // [out, in, k, k]
  torch::Tensor bias;   // [out]
};
TORCH_MODULE(Conv2d);

class GroupNormImpl : public torch::nn::Module {
 public:
  GroupNormImpl(int64_t num_groups, int64_t num_channels, double eps, torch::TensorOptions options);
  torch::Tensor forward(const torch::Tensor& x); // [B, C, ...] -> same

  int64_t num_groups;
  double eps;
  torch::Tensor weight; // [C]
  torch::Tensor bias;   // [C]
};
TORCH_MODULE(GroupNorm);

class LayerNormImpl : public torch::nn::Module {
 public:
  LayerNormImpl(int64_t dim, double eps, torch::TensorOptions options);
  torch::Tensor forward(const torch::Tensor& x); // [..., dim] -> same

  int64_t dim;
  double eps;
  torch::Tensor weight; // [dim]
  torch::Tensor bias;   // [dim]
};
TORCH_MODULE(LayerNorm);

class EmbeddingImpl : public torch::nn::Module {
 public:
  EmbeddingImpl(int64_t num_embeddings, int64_t dim, torch::TensorOptions options);
  torch::Tensor forward(const torch::Tensor& ids); // [...] int64 -> [..., dim]

  torch::Tensor weight; // [num_embeddings, dim]
};
TORCH_MODULE(Embedding);

// ----------------------------------------------------------------------------
// Shared helpers

// Multi-head attention on [B, heads, N, head_dim] tensors; softmax(q k^T / sqrt(d)) v.
// `causal` masks future positions (CLIP). `upcast` computes scores in float32.
// (Not named scaled_dot_product_attention: a call with three tensors would be ambiguous,
// through argument-dependent lookup, with at::scaled_dot_product_attention of libtorch 2.x.)
torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, bool causal = false,
                     bool upcast = false);

// A placeholder child without parameters, so ModuleList indices match diffusers
// (e.g. "ff.net.1" is a Dropout there; "ff.net.2" must stay index 2).
class PlaceholderImpl : public torch::nn::Module {};
TORCH_MODULE(Placeholder);

// Registers `modules` under `name` as a ModuleList so their keys read "name.N",
// as diffusers names them; an empty list registers nothing.
template <typename Holder>
void register_list(torch::nn::Module& parent, const std::string& name, const std::vector<Holder>& modules) {
  if (modules.empty()) return;
  auto list = parent.register_module(name, torch::nn::ModuleList());
  for (const auto& m : modules) list->push_back(m);
}

// Registers one module as "name.0" (diffusers keeps resamplers in one-element lists).
template <typename Holder>
void register_single(torch::nn::Module& parent, const std::string& name, const Holder& module) {
  auto list = parent.register_module(name, torch::nn::ModuleList());
  list->push_back(module);
}

} // namespace sdxl::models

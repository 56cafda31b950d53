// Gradient checkpointing: the CheckpointBackward autograd node, generator
// replay, and the switch over the models' checkpointable blocks.
#include "models/grad_checkpoint.h"

#include "models/attention.h" // BasicTransformerBlockImpl
#include "models/clip.h"      // ClipEncoderLayerImpl
#include "models/layers.h"    // LinearImpl, LoraSlot
#include "models/resnet.h"    // ResnetBlock2DImpl
#include "torch_compat.h"      // make_autograd_node

#include <torch/csrc/autograd/autograd.h>         // torch::autograd::backward
#include <torch/csrc/autograd/function.h>         // Node, collect_next_edges
#include <torch/csrc/autograd/functions/utils.h>  // set_history
#include <torch/csrc/autograd/saved_variable.h>   // SavedVariable

#include <mutex> // std::lock_guard
#include <string>
#include <utility> // std::move

namespace sdxl::models {

namespace {

using torch::autograd::variable_list;

// ----------------------------------------------------------------------------
// Generator replay

struct GeneratorSnapshot {
  at::Generator generator;
  torch::Tensor state; // what get_state() returned
};

std::vector<GeneratorSnapshot> snapshot(const std::vector<at::Generator>& generators) {
  std::vector<GeneratorSnapshot> snapshots;
  snapshots.reserve(generators.size());
  for (const at::Generator& generator : generators) {
    at::Generator handle = generator; // shares the generator; mutex() is non-const
    std::lock_guard<std::mutex> lock(handle.mutex());
    snapshots.push_back({handle, handle.get_state()});
  }
  return snapshots;
}

void restore(std::vector<GeneratorSnapshot>& snapshots) {
  for (GeneratorSnapshot& taken : snapshots) {
    std::lock_guard<std::mutex> lock(taken.generator.mutex());
    taken.generator.set_state(taken.state);
  }
}

// Puts generators at their pre-forward states for a recompute, and back where
// they were (draws made since the forward included) when it ends.
class GeneratorReplay {
 public:
  explicit GeneratorReplay(std::vector<GeneratorSnapshot> pre_forward) {
    std::vector<at::Generator> generators;
    for (const GeneratorSnapshot& taken : pre_forward) generators.push_back(taken.generator);
    current_ = snapshot(generators);
    restore(pre_forward);
  }
  ~GeneratorReplay() { restore(current_); }
  GeneratorReplay(const GeneratorReplay&) = delete;
  GeneratorReplay& operator=(const GeneratorReplay&) = delete;

 private:
  std::vector<GeneratorSnapshot> current_;
};

// ----------------------------------------------------------------------------
// The backward node

// Holds fn, its inputs and the generator snapshots; its next edges are the
// inputs'. Backward recomputes fn and backpropagates through the recomputed
// graph, which accumulates into the leaves used inside fn.
class CheckpointBackward : public torch::autograd::Node {
 public:
  CheckpointBackward(CheckpointFn fn, const std::vector<torch::Tensor>& inputs,
                     std::vector<GeneratorSnapshot> generators)
      : fn_(fn), generators_(std::move(generators)) {
    for (const torch::Tensor& input : inputs) {
      inputs_.emplace_back(input, /*is_output=*/false);
      input_requires_grad_.push_back(input.defined() && input.requires_grad());
    }
  }

  std::string name() const override { return "CheckpointBackward"; }

  variable_list apply(variable_list&& grad_outputs) override {
    std::lock_guard<std::mutex> lock(mutex_); // see Note [Thread Safety on Autograd Node]
    TORCH_CHECK(fn_, "checkpoint: backward through a checkpointed block a second time (its inputs are freed; "
                     "use retain_graph=true)");
    std::vector<torch::Tensor> inputs; // detached: the recomputed graph ends at them
    for (size_t i = 0; i < inputs_.size(); ++i) {
      torch::Tensor saved = inputs_[i].unpack(); // checks the input was not modified in place since
      inputs.push_back(saved.defined() ? saved.detach().requires_grad_(input_requires_grad_[i]) : saved);
    }
    std::vector<torch::Tensor> outputs;
    {
      GeneratorReplay replay(generators_);
      torch::AutoGradMode grad_enabled(true); // the engine runs nodes with grad mode off
      outputs = fn_(inputs);
    }
    TORCH_CHECK(outputs.size() == grad_outputs.size(), "checkpoint: the recompute returned ", outputs.size(),
                " tensors, the forward ", grad_outputs.size());
    variable_list roots, root_grads;
    for (size_t i = 0; i < outputs.size(); ++i) {
      if (!outputs[i].requires_grad() || !grad_outputs[i].defined()) continue;
      roots.push_back(outputs[i]);
      root_grads.push_back(grad_outputs[i]);
    }
    if (!roots.empty()) torch::autograd::backward(roots, root_grads);

    variable_list input_grads(inputs.size());
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (input_requires_grad_[i]) input_grads[i] = inputs[i].grad();
    }
    return input_grads;
  }

  void release_variables() override {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& input : inputs_) input.reset_data();
    fn_ = nullptr; // drops what fn captured
  }

 private:
  CheckpointFn fn_;
  std::vector<torch::autograd::SavedVariable> inputs_;
  std::vector<bool> input_requires_grad_;
  std::vector<GeneratorSnapshot> generators_; // states before the forward
};

bool is_alias_of_any(const torch::Tensor& output, const std::vector<torch::Tensor>& inputs) {
  for (const torch::Tensor& input : inputs) {
    if (input.defined() && output.is_alias_of(input)) return true;
  }
  return false;
}

// Adds `generator` unless the same generator is already listed.
void add_unique(std::vector<at::Generator>& generators, const at::Generator& generator) {
  for (const at::Generator& known : generators) {
    if (known == generator) return;
  }
  generators.push_back(generator);
}

} // namespace

// ----------------------------------------------------------------------------
// Checkpoint

std::vector<torch::Tensor> checkpoint(const CheckpointFn& fn, const std::vector<torch::Tensor>& inputs,
                                      const std::vector<at::Generator>& generators) {
  if (!torch::GradMode::is_enabled()) return fn(inputs);
  std::vector<GeneratorSnapshot> pre_forward = snapshot(generators);
  std::vector<torch::Tensor> outputs;
  {
    torch::NoGradGuard no_grad; // nothing inside is kept for backward
    outputs = fn(inputs);
  }

  // The outputs hang from the node whether or not an input requires grad: the
  // first block after frozen layers still has to send gradients to its LoRA
  // slots. (torch::autograd::Function would leave such outputs without a
  // grad_fn, and its backward would never run.)
  auto node = torch_compat::make_autograd_node<CheckpointBackward>(fn, inputs, std::move(pre_forward));
  node->set_next_edges(torch::autograd::collect_next_edges(inputs));
  for (torch::Tensor& output : outputs) {
    TORCH_CHECK(output.defined() && output.is_floating_point(),
                "checkpoint: a block must return defined floating-point tensors");
    if (is_alias_of_any(output, inputs)) output = output.clone(); // its history must not be the input's
    torch::autograd::set_history(output, node);
  }
  return outputs;
}

bool checkpoint_active(const torch::nn::Module& block, bool enabled) {
  return enabled && block.is_training() && torch::GradMode::is_enabled();
}

std::vector<torch::Tensor> checkpoint_block(const torch::nn::Module& block, const CheckpointFn& fn,
                                            const std::vector<torch::Tensor>& inputs) {
  bool needs_grad = false;
  for (const torch::Tensor& input : inputs) needs_grad = needs_grad || (input.defined() && input.requires_grad());
  std::vector<at::Generator> generators;
  block.apply(torch::nn::Module::ConstModuleApplyFunction([&](const torch::nn::Module& module) {
    for (const torch::Tensor& parameter : module.parameters(/*recurse=*/false)) {
      needs_grad = needs_grad || parameter.requires_grad();
    }
    const auto* linear = module.as<LinearImpl>();
    if (linear == nullptr) return;
    for (const LoraSlot& lora : linear->loras) {
      needs_grad = needs_grad || lora.down.requires_grad() || lora.up.requires_grad();
      if (lora.dropout == 0.0 || !linear->is_training()) continue;
      // The Linear draws its mask from the slot's generator, else the default one of its device.
      add_unique(generators, lora.generator.defined()
                                 ? lora.generator
                                 : at::globalContext().defaultGenerator(linear->weight.device()));
    }
  }));
  if (!needs_grad) return fn(inputs);
  return checkpoint(fn, inputs, generators);
}

// ----------------------------------------------------------------------------
// Switch

void set_gradient_checkpointing(torch::nn::Module& root, bool enabled) {
  root.apply(torch::nn::Module::ModuleApplyFunction([enabled](torch::nn::Module& module) {
    if (auto* block = module.as<BasicTransformerBlockImpl>()) block->gradient_checkpointing = enabled;
    if (auto* block = module.as<ResnetBlock2DImpl>()) block->gradient_checkpointing = enabled;
    if (auto* layer = module.as<ClipEncoderLayerImpl>()) layer->gradient_checkpointing = enabled;
  }));
}

} // namespace sdxl::models

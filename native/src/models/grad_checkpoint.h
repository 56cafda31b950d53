// Gradient checkpointing (activation recomputation) for training: a block's
// forward runs without keeping its activations, and backward runs it again with
// grad enabled to get them. libtorch's C++ API has no torch.utils.checkpoint,
// so this is the reentrant variant of it written as an autograd node.
//
// Random draws inside a block (LoRA dropout) are replayed: the generators it
// uses are snapshotted before the forward and put back to that state around
// the recompute, so both passes see the same masks. The snapshot lives in the
// graph node, not in thread-local state, since backward may run on autograd
// worker threads (CUDA).
//
// Limits, as torch's reentrant checkpoint: gradients of tensors used inside a
// block reach them through their .grad (loss.backward()), not through
// torch::autograd::grad(..., inputs); no double backward; autocast state is
// not replayed (the models do not use autocast).
#pragma once

#include <torch/torch.h> // torch::Tensor, torch::nn::Module, at::Generator

#include <functional> // std::function
#include <vector>

namespace sdxl::models {

// A block's computation as checkpoint() runs it: tensors in (undefined allowed), tensors out.
using CheckpointFn = std::function<std::vector<torch::Tensor>(const std::vector<torch::Tensor>&)>;

// Runs fn(inputs) keeping only `inputs` for backward; backward re-runs fn with
// grad enabled and backpropagates through the recomputed outputs, so gradients
// reach both the inputs and every leaf tensor used inside fn (LoRA slots), even
// when no input requires grad. The states of `generators` are replayed for the
// recompute. Without grad mode this is just fn(inputs).
// fn must be deterministic given its inputs and the generators' states, and
// must stay callable until backward (it usually captures the block).
std::vector<torch::Tensor> checkpoint(const CheckpointFn& fn, const std::vector<torch::Tensor>& inputs,
                                      const std::vector<at::Generator>& generators = {});

// Whether a block with its checkpointing flag `enabled` takes the checkpointed
// path now: only while it is training and grad mode is on.
bool checkpoint_active(const torch::nn::Module& block, bool enabled);

// checkpoint() for a model block: replays the generators of the LoRA dropout
// inside `block`, and runs fn directly when neither an input nor any tensor
// inside `block` requires grad (there is no backward to save memory for).
std::vector<torch::Tensor> checkpoint_block(const torch::nn::Module& block, const CheckpointFn& fn,
                                            const std::vector<torch::Tensor>& inputs);

// Sets the checkpointing flag of every BasicTransformerBlock, ResnetBlock2D and
// ClipEncoderLayer under (and including) `root`.
void set_gradient_checkpointing(torch::nn::Module& root, bool enabled);

} // namespace sdxl::models

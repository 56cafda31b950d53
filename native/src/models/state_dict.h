// Filling a model's parameters from a state dict (a safetensors file's
// tensors), strictly: every file key must be used and every parameter filled
// with the right shape, and all mismatches are reported in one error.
#pragma once

#include <torch/torch.h> // torch::nn::Module, torch::Tensor

#include <cstdint> // int64_t
#include <map>
#include <string>

namespace sdxl::models {

// Same type as sdxl::io::TensorMap (name -> tensor).
using StateDict = std::map<std::string, torch::Tensor>;

// Copies `tensors` into `module`'s parameters, converting each to the
// parameter's dtype and device. Key normalisation done here, once for all
// callers:
//   - keys of non-weight buffers ("*position_ids", "logit_scale") are ignored;
//   - when every parameter starts with a prefix (e.g. "text_model.") that no
//     file key has, file keys are read as if they had it (transformers 5 files).
// Throws std::runtime_error("<component_name>: ...") listing every missing,
// unexpected and wrongly shaped key.
void load_state_dict(torch::nn::Module& module, const StateDict& tensors,
                     const std::string& component_name);

// The normalisation step alone: `tensors` renamed to the module's parameter
// names where a prefix was missing, ignored buffers dropped.
StateDict normalize_state_dict_keys(const torch::nn::Module& module, const StateDict& tensors);

// Registers `value` as a frozen parameter under a dotted name ("net.slice1.0.weight"),
// making plain modules on its way: for networks written with raw tensors whose state
// dict keys must still match (metrics/lpips.cpp, metrics/open_clip.cpp). Returns it.
torch::Tensor add_parameter(torch::nn::Module& root, const std::string& dotted, const torch::Tensor& value);

// Total number of parameter elements (works on meta-device modules).
int64_t count_parameters(const torch::nn::Module& module);

} // namespace sdxl::models

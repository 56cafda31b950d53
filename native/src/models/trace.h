// Optional callback through which the model forwards report named
// intermediates (the names of the golden fixture's "*.dbg.*" tensors), so a
// mismatch against a reference can be located block by block.
#pragma once

#include <torch/torch.h> // torch::Tensor

#include <functional> // std::function
#include <string>

namespace sdxl::models {

using TraceFn = std::function<void(const std::string& name, const torch::Tensor& value)>;

// Calls `trace` when it is set; free when it is not.
inline void emit_trace(const TraceFn* trace, const std::string& name, const torch::Tensor& value) {
  if (trace != nullptr && *trace) (*trace)(name, value);
}

} // namespace sdxl::models

// Internal helpers shared by the engine's parts: turning the RuntimeOptions
// strings of engine.h into torch values. Public checks live in engine.h.
#pragma once

#include <torch/torch.h> // torch::Device, torch::Dtype

#include <string>

namespace sdxl {

// "cpu", "cuda" or "cuda:N" (N a non-negative integer); std::invalid_argument otherwise.
// Only parses: check_runtime() also checks that the device exists.
torch::Device parse_device(const std::string& device);

// "float32", "bfloat16" or "float16"; std::invalid_argument otherwise.
torch::Dtype parse_dtype(const std::string& dtype);

} // namespace sdxl

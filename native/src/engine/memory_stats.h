// Memory in use and its peak, for progress reports and benchmarks: the CUDA
// caching allocator's figures on a CUDA device, the process's resident set
// (VmRSS / VmHWM) on the CPU.
#pragma once

#include <cstdint> // int64_t

#include <torch/torch.h> // torch::Device

namespace sdxl {

struct MemoryStats {
  int64_t in_use_bytes = 0;
  int64_t peak_bytes = 0;
};

MemoryStats memory_stats(const torch::Device& device);

// Starts a new peak window (CUDA only; the CPU high-water mark cannot be reset).
void reset_peak_memory(const torch::Device& device);

} // namespace sdxl

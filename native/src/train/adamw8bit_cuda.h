// The CUDA launcher of the fused 8-bit AdamW update (kernels/adamw8bit.cu),
// the device twin of train::adamw8bit_update_cpu (block_quantization.h): the
// same per-element float32 operations in the same order, each rounded on its
// own (no fused multiply-add), the same nearest-code rule and block layout.
// Free of torch headers: it is compiled by nvcc without libtorch.
// Declared only in CUDA builds (SDXL_WITH_CUDA_KERNELS) and for nvcc itself.
#pragma once

#if defined(SDXL_WITH_CUDA_KERNELS) || defined(__CUDACC__)

#include <cstdint> // int64_t, uint8_t

#include <cuda_runtime_api.h> // cudaStream_t

namespace sdxl::train {

// Raw device pointers of one parameter tensor and its quantized moments, plus
// the float32 constants of this step (train::AdamWStepConstants, computed on
// the host from the hyper-parameters, learning rate and step number).
struct Adamw8bitKernelArgs {
  float* param;              // [n] updated in place
  const float* grad;         // [n]
  uint8_t* exp_avg_codes;    // [n] signed-map codes
  uint8_t* exp_avg_sq_codes; // [n] unsigned-map codes
  float* exp_avg_absmax;     // [ceil(n / block)]
  float* exp_avg_sq_absmax;  // [ceil(n / block)]
  const float* signed_map;   // [256] device memory
  const float* unsigned_map; // [256] device memory
  int64_t numel;             // n
  int block;                 // elements per absmax: a multiple of 32, at most 1024
  float beta1, one_minus_beta1, beta2, one_minus_beta2;
  float eps, decay, step_size, bias_correction2_sqrt;
};

// Enqueues the update on `stream` (the caller has made the tensors' device
// current). Throws std::invalid_argument for a bad block size and
// std::runtime_error (with file and line) when the launch fails.
void launch_adamw8bit_update(const Adamw8bitKernelArgs& args, cudaStream_t stream);

} // namespace sdxl::train

#endif // SDXL_WITH_CUDA_KERNELS || __CUDACC__

// Fused 8-bit AdamW update on CUDA: one pass dequantizes both moments of a
// block, updates moments and parameters in float32 and requantizes with the
// block's new absmax. CPU twin: train::adamw8bit_update_cpu
// (src/train/block_quantization.cpp); every float operation below is an
// explicitly rounded intrinsic in the twin's order, so nvcc cannot fuse a
// multiply-add and both agree bit for bit. The code of a value is the number
// of map midpoints strictly below it in both: found here by binary search over
// the midpoints in shared memory, there by a table lookup.
//
// Layout: one thread per element, one CUDA block per quantization block
// (blockDim == block), grid-stride over quantization blocks so the maps and
// their midpoints are staged into shared memory once per CUDA block.
#include "../src/train/adamw8bit_cuda.h" // relative: nvcc also compiles this file alone

#include <cuda_runtime.h> // kernel launch, intrinsics

#include <algorithm> // std::min
#include <stdexcept> // std::invalid_argument, std::runtime_error
#include <string>

namespace sdxl::train {

namespace {

// ----------------------------------------------------------------------------
// Constants and error checks

constexpr int kMapSize = 256;             // codes per dynamic map
constexpr int kWarpSize = 32;
constexpr int kMaxThreads = 1024;         // CUDA's per-block limit
constexpr int kMaxWarps = kMaxThreads / kWarpSize;
constexpr int kCudaBlocksPerSm = 8;       // enough resident blocks to hide memory latency
constexpr unsigned kFullWarp = 0xffffffffu;

#define SDXL_CUDA_CHECK(call)                                                                          \
  do {                                                                                                 \
    const cudaError_t sdxl_cuda_error_ = (call);                                                       \
    if (sdxl_cuda_error_ != cudaSuccess)                                                               \
      throw std::runtime_error(std::string(__FILE__) + ":" + std::to_string(__LINE__) + ": " #call     \
                               " failed: " + cudaGetErrorString(sdxl_cuda_error_));                    \
  } while (0)

// ----------------------------------------------------------------------------
// Device helpers

// The number of the 255 ascending midpoints strictly below y (as nearest_code on the CPU).
__device__ __forceinline__ int nearest_code(const float* midpoints, float y) {
  int index = 0;
  for (int step = kMapSize / 2; step > 0; step >>= 1) {
    if (midpoints[index + step - 1] < y) index += step;
  }
  return index;
}

// Maximum of `value` over the CUDA block, returned to every thread. blockDim.x
// is a multiple of 32; scratch holds one partial per warp and is free again on return.
__device__ __forceinline__ float block_max(float value, float* scratch) {
  for (int offset = kWarpSize / 2; offset > 0; offset >>= 1)
    value = fmaxf(value, __shfl_xor_sync(kFullWarp, value, offset));
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  value = lane < static_cast<int>(blockDim.x / kWarpSize) ? scratch[lane] : 0.0f;
  for (int offset = kWarpSize / 2; offset > 0; offset >>= 1)
    value = fmaxf(value, __shfl_xor_sync(kFullWarp, value, offset));
  __syncthreads(); // everyone has read scratch before it is reused
  return value;
}

// ----------------------------------------------------------------------------
// Kernel

__global__ void adamw8bit_update_kernel(Adamw8bitKernelArgs a) {
  __shared__ float m_map[kMapSize], v_map[kMapSize];
  __shared__ float m_midpoints[kMapSize - 1], v_midpoints[kMapSize - 1];
  __shared__ float scratch[kMaxWarps];

  for (int i = threadIdx.x; i < kMapSize; i += blockDim.x) {
    m_map[i] = a.signed_map[i];
    v_map[i] = a.unsigned_map[i];
  }
  __syncthreads();
  for (int i = threadIdx.x; i < kMapSize - 1; i += blockDim.x) {
    m_midpoints[i] = __fmul_rn(__fadd_rn(m_map[i], m_map[i + 1]), 0.5f);
    v_midpoints[i] = __fmul_rn(__fadd_rn(v_map[i], v_map[i + 1]), 0.5f);
  }
  __syncthreads();

  const int64_t blocks = (a.numel + a.block - 1) / a.block;
  for (int64_t b = blockIdx.x; b < blocks; b += gridDim.x) {
    const int64_t i = b * a.block + threadIdx.x;
    const bool active = i < a.numel;
    float m = 0.0f, v = 0.0f; // inactive threads of a short last block count as zeros in the max
    if (active) {
      const float g = a.grad[i];
      const float m_old = __fmul_rn(m_map[a.exp_avg_codes[i]], a.exp_avg_absmax[b]);
      const float v_old = __fmul_rn(v_map[a.exp_avg_sq_codes[i]], a.exp_avg_sq_absmax[b]);
      m = __fadd_rn(__fmul_rn(a.beta1, m_old), __fmul_rn(a.one_minus_beta1, g));
      v = __fadd_rn(__fmul_rn(a.beta2, v_old), __fmul_rn(a.one_minus_beta2, __fmul_rn(g, g)));
      const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), a.bias_correction2_sqrt), a.eps);
      const float decayed = __fmul_rn(a.param[i], a.decay);
      a.param[i] = __fadd_rn(decayed, -__fmul_rn(a.step_size, __fdiv_rn(m, denom))); // decayed - step
    }
    // block_max synchronizes, so every thread has read the old absmax before thread 0 replaces it.
    const float m_max = block_max(fabsf(m), scratch);
    const float v_max = block_max(fabsf(v), scratch);
    if (active) {
      const float m_divisor = m_max > 0.0f ? m_max : 1.0f;
      const float v_divisor = v_max > 0.0f ? v_max : 1.0f;
      a.exp_avg_codes[i] = static_cast<uint8_t>(nearest_code(m_midpoints, __fdiv_rn(m, m_divisor)));
      a.exp_avg_sq_codes[i] = static_cast<uint8_t>(nearest_code(v_midpoints, __fdiv_rn(v, v_divisor)));
    }
    if (threadIdx.x == 0) {
      a.exp_avg_absmax[b] = m_max;
      a.exp_avg_sq_absmax[b] = v_max;
    }
  }
}

} // namespace

// ----------------------------------------------------------------------------
// Launcher

void launch_adamw8bit_update(const Adamw8bitKernelArgs& args, cudaStream_t stream) {
  if (args.block < kWarpSize || args.block > kMaxThreads || args.block % kWarpSize != 0)
    throw std::invalid_argument("launch_adamw8bit_update: block must be a multiple of 32 in [32, 1024], got " +
                                std::to_string(args.block));
  if (args.numel <= 0) return;
  int device = 0, sms = 0;
  SDXL_CUDA_CHECK(cudaGetDevice(&device));
  SDXL_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const int64_t blocks = (args.numel + args.block - 1) / args.block;
  const int grid = static_cast<int>(std::min<int64_t>(blocks, static_cast<int64_t>(sms) * kCudaBlocksPerSm));
  adamw8bit_update_kernel<<<grid, args.block, 0, stream>>>(args);
  SDXL_CUDA_CHECK(cudaGetLastError());
}

} // namespace sdxl::train

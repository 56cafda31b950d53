// Block-wise 8-bit dynamic quantization of optimizer states and the 8-bit
// AdamW update built on it (Dettmers et al. 2021, "8-bit Optimizers via
// Block-wise Quantization"; construction of the maps as bitsandbytes'
// functional.create_dynamic_map, block size as its blockwise optimizers).
//
// Dynamic maps: 256 ascending float32 code values in [-1, 1] (signed, first
// moment) or [0, 1] (unsigned, second moment). Each decade 10^(k-6), k = 0..6,
// holds the midpoints of an even split of [0.1, 1] * 10^(k-6): 2^k of them per
// sign (signed) or 2^(k+1) (unsigned), so small magnitudes keep relative
// precision; then 0 and 1.0 are added. Signed: 127 negatives, 0, 128
// positives up to 1.0 (so -1 itself is not a code: the most negative is
// -0.99297). Unsigned: 0, 254 positives, 1.0.
//
// Block-wise: a flat tensor is cut into blocks of kQuantizationBlock elements
// (the last one may be short); each block stores absmax = max |x| as float32
// and each element the uint8 index of the code nearest to x / absmax (a block
// of zeros divides by 1 instead, giving the code of 0). Nearest means: the
// index is the number of code midpoints (map[i] + map[i+1]) / 2, computed in
// float32, lying strictly below x / absmax; a tie goes to the lower code. The
// element dequantizes to map[index] * absmax.
//
// Error bound: |x - dequantized| <= absmax * (widest map gap) / 2, i.e.
// absmax * 0.9/64/2 = 0.00703 absmax (signed) and 0.9/128/2 = 0.00352 absmax
// (unsigned), the gaps of the top decade. Zeros stay exactly zero.
#pragma once

#include <cstdint> // int64_t, uint8_t

#include <torch/torch.h> // torch::Tensor

namespace sdxl::train {

// ---------------------------------------------------------------------------
// Constants

constexpr int64_t kDynamicMapSize = 256;     // one code per uint8 value
constexpr int64_t kQuantizationBlock = 256;  // elements per absmax (bitsandbytes' 8-bit blockwise optimizers)
constexpr int64_t kSignedMapZeroCode = 127;  // index of 0.0 in the signed map (127 negatives precede it)
constexpr int64_t kUnsignedMapZeroCode = 0;  // index of 0.0 in the unsigned map

// ---------------------------------------------------------------------------
// Dynamic maps (built once, deterministic; CPU float32 [256], ascending)

const torch::Tensor& signed_dynamic_map();   // [256] first moment
const torch::Tensor& unsigned_dynamic_map(); // [256] second moment

// ---------------------------------------------------------------------------
// Block-wise quantization (any device; map is moved to x's device when needed)

struct BlockwiseCodes {
  torch::Tensor codes;  // [n] uint8, index into the map
  torch::Tensor absmax; // [ceil(n / block)] float32, max |x| per block
};

int64_t block_count(int64_t numel, int64_t block); // ceil(numel / block)

// x of any shape, float32; codes are flat in x's element order.
BlockwiseCodes quantize_blockwise(const torch::Tensor& x, const torch::Tensor& map,
                                  int64_t block = kQuantizationBlock);
// Flat float32 [n] on the codes' device.
torch::Tensor dequantize_blockwise(const BlockwiseCodes& quantized, const torch::Tensor& map,
                                   int64_t block = kQuantizationBlock);

// The codes the CPU update loop picks (through a lookup table, not a search)
// for values y = x / absmax in [-1, 1] with the signed or unsigned built-in
// map: the rule quantize_blockwise follows. y: float32 CPU, any shape.
torch::Tensor nearest_codes_cpu(const torch::Tensor& y, bool is_signed_map); // [n] uint8

// ---------------------------------------------------------------------------
// The 8-bit AdamW update of one tensor

// The float32 constants of one AdamW update at step t (1-based) with learning
// rate lr, computed in double once and rounded, so the CPU loop, the torch-op
// path and the CUDA kernel all use the same numbers.
struct AdamWStepConstants {
  float beta1;                 // b1
  float one_minus_beta1;       // 1 - b1
  float beta2;                 // b2
  float one_minus_beta2;       // 1 - b2
  float eps;                   // added to the bias-corrected sqrt(v)
  float decay;                 // 1 - lr * weight_decay (decoupled weight decay)
  float step_size;             // lr / (1 - b1^t)
  float bias_correction2_sqrt; // sqrt(1 - b2^t)
};

AdamWStepConstants adamw_step_constants(double lr, double beta1, double beta2, double eps,
                                        double weight_decay, int64_t step);

// The moments of one parameter tensor, block-wise quantized.
struct Blockwise8bitState {
  torch::Tensor exp_avg_codes;     // [n] uint8, signed map
  torch::Tensor exp_avg_absmax;    // [blocks] float32
  torch::Tensor exp_avg_sq_codes;  // [n] uint8, unsigned map
  torch::Tensor exp_avg_sq_absmax; // [blocks] float32
};

// Moments of zero (codes of 0.0, absmax 0) for a tensor of numel elements.
Blockwise8bitState zero_8bit_state(int64_t numel, torch::Device device, int64_t block = kQuantizationBlock);

// Per element, in float32 and in this order (the CUDA kernel repeats it):
//   m = map_s[m_code] * absmax_m;  v = map_u[v_code] * absmax_v
//   m = b1 m + (1 - b1) g;         v = b2 v + (1 - b2) (g g)
//   p = p * decay;                 p = p - step_size * (m / (sqrt(v) / sqrt(1 - b2^t) + eps))
// then each block is requantized with its new absmax. param and grad are
// contiguous float32 CPU tensors of the same numel; blocks run in parallel.
void adamw8bit_update_cpu(torch::Tensor& param, const torch::Tensor& grad, Blockwise8bitState& state,
                          const AdamWStepConstants& constants, int64_t block = kQuantizationBlock);

// The same update as whole-tensor torch ops, for a device without our kernel
// (CUDA without SDXL_WITH_CUDA_KERNELS). Maps must be on param's device.
// Agrees with the loop up to float rounding (ATen may fuse a multiply-add).
void adamw8bit_update_torch_ops(torch::Tensor& param, const torch::Tensor& grad, Blockwise8bitState& state,
                                const AdamWStepConstants& constants, const torch::Tensor& signed_map,
                                const torch::Tensor& unsigned_map, int64_t block = kQuantizationBlock);

} // namespace sdxl::train

// AdamW for LoRA training, with 32-bit or block-wise 8-bit moments.
//
// Update of one float32 parameter p with gradient g at its step t (1-based),
// as torch.optim.AdamW (decoupled weight decay):
//   p = p * (1 - lr * weight_decay)
//   m = b1 m + (1 - b1) g
//   v = b2 v + (1 - b2) g^2
//   p = p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
// computed as p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
//
// AdamW8bit keeps m and v of every tensor with at least kMin8bitStateElements
// elements block-wise quantized (block_quantization.h: signed dynamic map for
// m, unsigned for v, one float32 absmax per 256 elements, about 2.03 bytes per
// parameter instead of 8); each step dequantizes a block, updates in float32
// and requantizes with the block's new absmax. Smaller tensors keep float32
// moments, as bitsandbytes' min_8bit_size does. On CPU the update is a fused
// loop; on CUDA it is kernels/adamw8bit.cu when built (SDXL_WITH_CUDA_KERNELS),
// else the same math as torch ops on the device.
//
// Parameters are float32 tensors (CPU or CUDA, contiguous when their moments
// are 8-bit), or bfloat16 / float16 ones updated through float32 working copies
// (optimizer.h). A parameter without a gradient is skipped by that step and its
// own step count t does not advance (as torch's per-parameter state step).
// 8-bit moments are allocated once, at their final size, and each update works
// block by block: no step makes a full-size float32 copy of them.
#pragma once

#include <cstdint> // int64_t
#include <map>
#include <string>
#include <utility> // std::pair
#include <vector>

#include <torch/torch.h> // torch::Tensor

#include "train/block_quantization.h" // Blockwise8bitState
#include "train/optimizer.h"          // Optimizer, OptimizerHyper

namespace sdxl::train {

enum class OptimizerKind { AdamW, AdamW8bit };

// "adamw" or "adamw8bit"; std::invalid_argument otherwise.
OptimizerKind parse_optimizer_kind(const std::string& name);
const char* optimizer_kind_name(OptimizerKind kind); // the inverse

// Tensors smaller than this keep float32 moments under AdamW8bit (bitsandbytes' min_8bit_size).
constexpr int64_t kMin8bitStateElements = 4096;

using AdamWHyper = OptimizerHyper;

class AdamW : public Optimizer {
 public:
  // Moments are allocated (as zeros) here, on each parameter's device.
  AdamW(OptimizerKind kind, std::vector<std::vector<torch::Tensor>> param_groups, AdamWHyper hyper,
        PrecisionOptions precision = {}, const Ownership& owned = {});

  OptimizerKind kind() const;
  bool is_quantized(int64_t group, int64_t index) const; // whether that parameter's moments are 8-bit

 protected:
  // Moments: 32-bit exp_avg, exp_avg_sq; 8-bit exp_avg_codes, exp_avg_absmax,
  // exp_avg_sq_codes, exp_avg_sq_absmax (checkpoint names).
  void update(int64_t group, int64_t index, torch::Tensor& weights, const torch::Tensor& grad, double lr,
              int64_t step) override;
  std::vector<std::pair<std::string, torch::Tensor>> named_state(int64_t group, int64_t index) const override;

 private:
  struct Moments {
    bool quantized = false;
    torch::Tensor exp_avg;      // 32-bit: param's shape
    torch::Tensor exp_avg_sq;   // 32-bit: param's shape
    Blockwise8bitState moments; // 8-bit
    torch::Tensor signed_map;   // 8-bit: [256] on param's device (torch-op and CUDA paths)
    torch::Tensor unsigned_map; // 8-bit: [256] on param's device
  };

  OptimizerKind kind_;
  AdamWHyper hyper_;
  std::vector<std::vector<Moments>> moments_;
};

} // namespace sdxl::train

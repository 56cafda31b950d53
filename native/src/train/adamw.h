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
// Parameters are float32 master tensors (CPU or CUDA, contiguous when their
// moments are 8-bit) with float32 gradients on the same device. A parameter
// without a gradient is skipped by that step and its own step count t does not
// advance (as torch's per-parameter state step).
#pragma once

#include <cstdint> // int64_t
#include <map>
#include <string>
#include <utility> // std::pair
#include <vector>

#include <torch/torch.h> // torch::Tensor

#include "train/block_quantization.h" // Blockwise8bitState

namespace sdxl::train {

enum class OptimizerKind { AdamW, AdamW8bit };

// "adamw" or "adamw8bit"; std::invalid_argument otherwise.
OptimizerKind parse_optimizer_kind(const std::string& name);
const char* optimizer_kind_name(OptimizerKind kind); // the inverse

// Tensors smaller than this keep float32 moments under AdamW8bit (bitsandbytes' min_8bit_size).
constexpr int64_t kMin8bitStateElements = 4096;

struct AdamWHyper {
  double beta1 = 0.9;         // first-moment decay
  double beta2 = 0.999;       // second-moment decay
  double eps = 1e-8;          // added to sqrt of the bias-corrected second moment
  double weight_decay = 1e-2; // decoupled: p *= 1 - lr * weight_decay each step
};

class AdamW {
 public:
  // Moments are allocated (as zeros) here, on each parameter's device.
  AdamW(OptimizerKind kind, std::vector<std::vector<torch::Tensor>> param_groups, AdamWHyper hyper);

  // One update of every parameter that has a gradient, with group_lrs[i] for
  // group i; increments steps(). Checks every gradient before changing anything.
  void step(const std::vector<double>& group_lrs);
  void zero_grad(); // resets gradients to undefined

  int64_t steps() const;
  int64_t state_bytes() const;     // bytes of moments and absmax
  int64_t parameter_count() const; // elements of all parameters
  OptimizerKind kind() const;
  bool is_quantized(int64_t group, int64_t index) const; // whether that parameter's moments are 8-bit

  // Checkpoints. Keys: "<prefix>.<group>.<index>.<name>" for each state tensor
  // (32-bit: exp_avg, exp_avg_sq; 8-bit: exp_avg_codes, exp_avg_absmax,
  // exp_avg_sq_codes, exp_avg_sq_absmax; both: step, 0-dim int64), as CPU
  // contiguous copies, and "<prefix>.steps" (0-dim int64). load_state checks
  // every key first (std::invalid_argument naming a missing or mis-shaped
  // key, changing nothing), then restores the state bit for bit.
  void save_state(std::map<std::string, torch::Tensor>& out, const std::string& prefix) const;
  void load_state(const std::map<std::string, torch::Tensor>& in, const std::string& prefix);

 private:
  struct ParamState {
    torch::Tensor param;
    int64_t step = 0;           // updates this parameter has had (t of the last one)
    bool quantized = false;
    torch::Tensor exp_avg;      // 32-bit: param's shape
    torch::Tensor exp_avg_sq;   // 32-bit: param's shape
    Blockwise8bitState moments; // 8-bit
    torch::Tensor signed_map;   // 8-bit: [256] on param's device (torch-op and CUDA paths)
    torch::Tensor unsigned_map; // 8-bit: [256] on param's device
  };

  // The moment tensors saved under "<prefix>.<group>.<index>.<name>" (handles sharing their storage).
  static std::vector<std::pair<std::string, torch::Tensor>> named_moments(const ParamState& state);

  void update(ParamState& state, const torch::Tensor& grad, double lr);

  OptimizerKind kind_;
  AdamWHyper hyper_;
  std::vector<std::vector<ParamState>> groups_;
  int64_t steps_ = 0;
};

} // namespace sdxl::train

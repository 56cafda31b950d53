// An exponential moving average of trained weights, as diffusers' EMAModel.step
// with use_ema_warmup=False: after optimizer step t, with n = t - update_after_step - 1,
// each float32 shadow s moves toward its weight w by
//   decay = 0 while n <= 0 (the shadow is the weight), else min(decay, (1 + n) / (10 + n))
//   s -= (1 - decay) (s - w)
// so early updates follow the weights closely. Shadows live on the weights' device
// or in host memory (on_cpu). The decay depends on t alone, so a resumed run needs
// only the shadows.
#pragma once

#include <cstdint> // int64_t
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h> // torch::Tensor

namespace sdxl::train {

class ExponentialMovingAverage {
 public:
  // `weights` are the trained tensors (any float dtype); `names` their checkpoint names.
  ExponentialMovingAverage(std::vector<torch::Tensor> weights, std::vector<std::string> names, double decay,
                           int64_t update_after_step, bool on_cpu);

  // Called after optimizer step `steps_done` (1-based).
  void update(int64_t steps_done);

  int64_t state_bytes() const;

  // The shadows in the weights' dtype and device, by name (model files).
  std::map<std::string, torch::Tensor> shadows_like_weights() const;
  // Copies the shadows into the weights (validation with the EMA); the caller keeps what it overwrites.
  void copy_to_weights() const;

  // Checkpoints: "<prefix>.<name>" float32 shadows (CPU copies).
  void save_state(std::map<std::string, torch::Tensor>& out, const std::string& prefix) const;
  // Checks every key and shape first (std::invalid_argument naming it), then restores exactly.
  void load_state(const std::map<std::string, torch::Tensor>& in, const std::string& prefix);

 private:
  std::vector<torch::Tensor> weights_;
  std::vector<std::string> names_;
  std::vector<torch::Tensor> shadows_; // float32
  double decay_;
  int64_t update_after_step_;
};

} // namespace sdxl::train

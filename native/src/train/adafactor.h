// Adafactor (Shazeer & Stern 2018) as transformers' Adafactor(lr, relative_step=False,
// scale_parameter=False, warmup_init=False, beta1=None): the settings kohya's
// sd-scripts and SimpleTuner recommend for full fine-tuning with a fixed learning rate.
// The second moment of a weight of two or more dimensions is factored into its means
// over each of its two largest dimensions a (largest) and b (next), there is no first
// moment. At step t, with rho_t = 1 - t^-0.8 and g the gradient:
//   u    = g^2 + 1e-30
//   R    = rho_t R + (1 - rho_t) mean_a(u),  C = rho_t C + (1 - rho_t) mean_b(u)
//   V    = R / mean_b(R) * C                (broadcast back over a and b)
//        (1-D weights: V = rho_t V + (1 - rho_t) u)
//   step = g / sqrt(V), divided by max(1, rms(step))      (update clipping, threshold 1)
//   p    = p - lr * weight_decay * p - lr * step
// For a matrix this is transformers' update exactly (the factorisation is symmetric).
// transformers factors the last two dimensions of every tensor instead, which keeps
// 2/3 of a 3x3 convolution's size and twice a 1x1 convolution's (SD 1.x's proj_in and
// proj_out) as state; the two largest dimensions (as optax's adafactor chooses them)
// keep the state near 0.02 bytes per weight for the SDXL and SD 1.5 UNets alike.
#pragma once

#include <cstdint> // int64_t
#include <string>
#include <utility> // std::pair
#include <vector>

#include <torch/torch.h> // torch::Tensor

#include "train/optimizer.h" // Optimizer, PrecisionOptions

namespace sdxl::train {

class Adafactor : public Optimizer {
 public:
  // States are allocated (as zeros) here, in float32 on each parameter's device.
  Adafactor(std::vector<std::vector<torch::Tensor>> param_groups, double weight_decay, PrecisionOptions precision = {},
            const Ownership& owned = {});

 protected:
  // States: factored exp_avg_sq_row, exp_avg_sq_col; unfactored exp_avg_sq (checkpoint names).
  void update(int64_t group, int64_t index, torch::Tensor& weights, const torch::Tensor& grad, double lr,
              int64_t step) override;
  std::vector<std::pair<std::string, torch::Tensor>> named_state(int64_t group, int64_t index) const override;

 private:
  struct SecondMoment {
    int64_t a = -1, b = -1; // factored: the largest dimension and the next
    torch::Tensor row; // factored: the mean over a (the shape without a)
    torch::Tensor col; // factored: the mean over b (the shape without b)
    torch::Tensor full; // unfactored (1-D and 0-D weights): the weight's shape
  };
  double weight_decay_;
  std::vector<std::vector<SecondMoment>> moments_;
};

} // namespace sdxl::train

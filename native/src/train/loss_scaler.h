// Dynamic loss scaling for float16 training, as torch.cuda.amp.GradScaler
// (torch/cuda/amp/grad_scaler.py, aten _amp_update_scale_): the loss is
// multiplied by scale() before backward, gradients are multiplied by
// inverse_scale() as the optimizer widens each to float32 (optimizer.h: a float16
// gradient is never unscaled in float16), and a step whose gradients hold inf/NaN is
// skipped while the scale backs off; after growth_interval clean steps in a
// row the scale grows. bfloat16 and float32 use a disabled scaler: scale 1,
// gradients untouched, no step ever skipped.
#pragma once

#include <torch/torch.h> // torch::Tensor

#include <cstdint> // int64_t
#include <map>     // tensor state for checkpoints
#include <string>
#include <vector>

namespace sdxl::train {

struct LossScalerOptions {
  double init_scale = 65536.0; // 2^16, GradScaler's default
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
};

class DynamicLossScaler {
 public:
  // An enabled scaler; throws std::invalid_argument for a non-positive or
  // non-finite init_scale, growth_factor <= 1, backoff outside (0, 1) or a
  // growth_interval < 1.
  explicit DynamicLossScaler(const LossScalerOptions& options = {});
  // Scale 1, never skips (bfloat16 / float32).
  static DynamicLossScaler disabled();

  bool enabled() const { return enabled_; }
  double scale() const { return scale_; }

  // GradScaler's float32 reciprocal of scale() (exact: scales are powers of two); 1 when disabled.
  double inverse_scale() const;

  // Whether any defined gradient holds an inf or NaN (the step must then be
  // skipped). A disabled scaler never looks and returns false.
  bool found_non_finite(const std::vector<torch::Tensor>& parameters) const;

  // After each optimizer step (taken or skipped): found_inf halves the scale
  // (backoff) and counts a skipped step; otherwise every growth_interval-th
  // clean step in a row doubles it (kept only while finite in float32).
  void update(bool found_inf);

  int64_t skipped_steps() const { return skipped_steps_; }
  int64_t growth_tracker() const { return growth_tracker_; } // clean steps since the last change

  // Checkpoint state: "<prefix>scale" (float64), "<prefix>growth_tracker",
  // "<prefix>skipped_steps", "<prefix>enabled" (int64), each 0-dim on the CPU.
  std::map<std::string, torch::Tensor> to_tensors(const std::string& prefix) const;
  // Restores what to_tensors wrote, exactly. Throws std::invalid_argument naming
  // a missing key, or when the saved scaler was enabled and this one is not
  // (or the other way round).
  void from_tensors(const std::map<std::string, torch::Tensor>& tensors, const std::string& prefix);

 private:
  DynamicLossScaler(const LossScalerOptions& options, bool enabled);

  LossScalerOptions options_;
  bool enabled_ = true;
  double scale_ = 1.0;
  int64_t growth_tracker_ = 0;
  int64_t skipped_steps_ = 0;
};

} // namespace sdxl::train

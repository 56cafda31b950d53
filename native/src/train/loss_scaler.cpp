// Dynamic loss scaling (see loss_scaler.h). Facts: torch GradScaler
// (_unscale_grads_ multiplies by 1/scale and records non-finite values;
// update() calls _amp_update_scale_, which backs off on inf and grows after
// growth_interval successes, keeping a grown scale only when finite).
#include "train/loss_scaler.h"

#include <cmath>     // std::isfinite
#include <limits>    // std::numeric_limits<float>::max
#include <sstream>   // std::ostringstream error messages
#include <stdexcept> // std::invalid_argument

namespace sdxl::train {
namespace {

constexpr const char* kScaleKey = "scale";
constexpr const char* kGrowthTrackerKey = "growth_tracker";
constexpr const char* kSkippedStepsKey = "skipped_steps";
constexpr const char* kEnabledKey = "enabled";

const torch::Tensor& find_tensor(const std::map<std::string, torch::Tensor>& tensors, const std::string& key) {
  const auto found = tensors.find(key);
  if (found == tensors.end() || !found->second.defined() || found->second.numel() != 1)
    throw std::invalid_argument("loss scaler state lacks " + key);
  return found->second;
}

} // namespace

DynamicLossScaler::DynamicLossScaler(const LossScalerOptions& options) : DynamicLossScaler(options, true) {
  std::ostringstream problem;
  if (!(options.init_scale > 0) || !std::isfinite(options.init_scale))
    problem << "init_scale must be positive and finite, got " << options.init_scale;
  else if (!(options.growth_factor > 1))
    problem << "growth_factor must be above 1, got " << options.growth_factor;
  else if (!(options.backoff_factor > 0 && options.backoff_factor < 1))
    problem << "backoff_factor must be in (0, 1), got " << options.backoff_factor;
  else if (options.growth_interval < 1)
    problem << "growth_interval must be at least 1, got " << options.growth_interval;
  if (!problem.str().empty()) throw std::invalid_argument("loss scaler: " + problem.str());
}

DynamicLossScaler::DynamicLossScaler(const LossScalerOptions& options, bool enabled)
    : options_(options), enabled_(enabled), scale_(enabled ? options.init_scale : 1.0) {}

DynamicLossScaler DynamicLossScaler::disabled() { return DynamicLossScaler(LossScalerOptions{}, false); }

double DynamicLossScaler::inverse_scale() const {
  return enabled_ ? static_cast<double>(1.0f / static_cast<float>(scale_)) : 1.0;
}

bool DynamicLossScaler::found_non_finite(const std::vector<torch::Tensor>& parameters) const {
  if (!enabled_) return false;
  torch::NoGradGuard no_grad;
  torch::Tensor any_non_finite; // [] bool on the gradients' device; one host sync at the end
  for (const auto& parameter : parameters) {
    const torch::Tensor grad = parameter.grad();
    if (!grad.defined()) continue;
    torch::Tensor bad = torch::isfinite(grad).logical_not().any();
    if (!any_non_finite.defined())
      any_non_finite = bad;
    else
      any_non_finite = any_non_finite.to(bad.device()).logical_or(bad);
  }
  return any_non_finite.defined() && any_non_finite.item<bool>();
}

void DynamicLossScaler::update(bool found_inf) {
  if (!enabled_) return;
  if (found_inf) {
    scale_ *= options_.backoff_factor;
    growth_tracker_ = 0;
    ++skipped_steps_;
    return;
  }
  if (++growth_tracker_ == options_.growth_interval) {
    // GradScaler keeps its scale in a float32 tensor: growth stops below float's range.
    const double grown = scale_ * options_.growth_factor;
    if (grown <= std::numeric_limits<float>::max()) scale_ = grown;
    growth_tracker_ = 0;
  }
}

std::map<std::string, torch::Tensor> DynamicLossScaler::to_tensors(const std::string& prefix) const {
  const auto as_double = torch::TensorOptions().dtype(torch::kFloat64);
  const auto as_int = torch::TensorOptions().dtype(torch::kInt64);
  return {
      {prefix + kScaleKey, torch::tensor(scale_, as_double)},
      {prefix + kGrowthTrackerKey, torch::tensor(growth_tracker_, as_int)},
      {prefix + kSkippedStepsKey, torch::tensor(skipped_steps_, as_int)},
      {prefix + kEnabledKey, torch::tensor(static_cast<int64_t>(enabled_ ? 1 : 0), as_int)},
  };
}

void DynamicLossScaler::from_tensors(const std::map<std::string, torch::Tensor>& tensors, const std::string& prefix) {
  const double scale = find_tensor(tensors, prefix + kScaleKey).to(torch::kFloat64).item<double>();
  const int64_t growth_tracker = find_tensor(tensors, prefix + kGrowthTrackerKey).to(torch::kInt64).item<int64_t>();
  const int64_t skipped_steps = find_tensor(tensors, prefix + kSkippedStepsKey).to(torch::kInt64).item<int64_t>();
  const bool enabled = find_tensor(tensors, prefix + kEnabledKey).to(torch::kInt64).item<int64_t>() != 0;
  if (enabled != enabled_)
    throw std::invalid_argument(std::string("loss scaler state was saved by a ") + (enabled ? "enabled" : "disabled") +
                                " scaler (float16 loss scaling " + (enabled ? "on" : "off") +
                                "), but this run's is " + (enabled_ ? "enabled" : "disabled"));
  if (!(scale > 0) || !std::isfinite(scale) || growth_tracker < 0 || skipped_steps < 0)
    throw std::invalid_argument("loss scaler state holds invalid values");
  scale_ = scale;
  growth_tracker_ = growth_tracker;
  skipped_steps_ = skipped_steps;
}

} // namespace sdxl::train

// The EMA of trained weights; see ema.h.
#include "train/ema.h"

#include <algorithm> // std::min
#include <stdexcept> // std::invalid_argument

namespace sdxl::train {

ExponentialMovingAverage::ExponentialMovingAverage(std::vector<torch::Tensor> weights, std::vector<std::string> names,
                                                   double decay, int64_t update_after_step, bool on_cpu)
    : weights_(std::move(weights)), names_(std::move(names)), decay_(decay), update_after_step_(update_after_step) {
  if (weights_.size() != names_.size()) throw std::invalid_argument("EMA: one name per weight is required");
  if (!(decay > 0 && decay < 1)) throw std::invalid_argument("ema_decay: must be in (0, 1)");
  if (update_after_step < 0) throw std::invalid_argument("ema_start_step: must be >= 0");
  torch::NoGradGuard no_grad;
  for (const torch::Tensor& weight : weights_) {
    torch::Tensor shadow = weight.detach().to(torch::kFloat32, /*non_blocking=*/false, /*copy=*/true);
    shadows_.push_back(on_cpu ? shadow.to(torch::kCPU) : shadow);
  }
}

void ExponentialMovingAverage::update(int64_t steps_done) {
  const double n = static_cast<double>(steps_done - update_after_step_ - 1);
  const double decay = n <= 0 ? 0.0 : std::min(decay_, (1.0 + n) / (10.0 + n));
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < weights_.size(); ++i) {
    const torch::Tensor weight = weights_[i].detach().to(shadows_[i].device(), torch::kFloat32);
    shadows_[i].sub_((shadows_[i] - weight).mul_(1.0 - decay));
  }
}

int64_t ExponentialMovingAverage::state_bytes() const {
  int64_t bytes = 0;
  for (const auto& shadow : shadows_) bytes += shadow.numel() * shadow.element_size();
  return bytes;
}

std::map<std::string, torch::Tensor> ExponentialMovingAverage::shadows_like_weights() const {
  std::map<std::string, torch::Tensor> out;
  for (size_t i = 0; i < weights_.size(); ++i) out[names_[i]] = shadows_[i].to(weights_[i].device(), weights_[i].scalar_type());
  return out;
}

void ExponentialMovingAverage::copy_to_weights() const {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < weights_.size(); ++i) weights_[i].detach().copy_(shadows_[i]);
}

void ExponentialMovingAverage::save_state(std::map<std::string, torch::Tensor>& out, const std::string& prefix) const {
  for (size_t i = 0; i < shadows_.size(); ++i) out[prefix + "." + names_[i]] = shadows_[i].to(torch::kCPU, false, true);
}

void ExponentialMovingAverage::load_state(const std::map<std::string, torch::Tensor>& in, const std::string& prefix) {
  for (size_t i = 0; i < shadows_.size(); ++i) {
    const auto found = in.find(prefix + "." + names_[i]);
    if (found == in.end() || found->second.sizes() != shadows_[i].sizes() || found->second.scalar_type() != torch::kFloat32)
      throw std::invalid_argument("resume_from: the checkpoint's EMA lacks \"" + prefix + "." + names_[i] +
                                  "\" or holds it in another shape");
  }
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < shadows_.size(); ++i) shadows_[i].copy_(in.at(prefix + "." + names_[i]));
}

} // namespace sdxl::train

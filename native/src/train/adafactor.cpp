// Adafactor's state and update; see adafactor.h for the formulas.
#include "train/adafactor.h"

#include <algorithm> // std::stable_sort
#include <cmath>     // std::pow, std::sqrt
#include <stdexcept> // std::invalid_argument

namespace sdxl::train {

namespace {
constexpr double kDecayRate = -0.8;  // rho_t = 1 - t^decay_rate
constexpr double kEps1 = 1e-30;      // added to the squared gradient
constexpr double kClipThreshold = 1.0;

// Root mean square of a tensor, as a 0-dim tensor on its device.
torch::Tensor rms(const torch::Tensor& tensor) {
  return tensor.norm() / std::sqrt(static_cast<double>(tensor.numel()));
}
} // namespace

Adafactor::Adafactor(std::vector<std::vector<torch::Tensor>> param_groups, double weight_decay, PrecisionOptions precision,
                     const Ownership& owned)
    : Optimizer("Adafactor", param_groups, std::move(precision), owned), weight_decay_(weight_decay) {
  if (!(weight_decay >= 0)) throw std::invalid_argument("Adafactor: weight_decay must be non-negative");
  for (size_t g = 0; g < param_groups.size(); ++g) {
    std::vector<SecondMoment> group;
    for (size_t i = 0; i < param_groups[g].size(); ++i) {
      const torch::Tensor& param = param_groups[g][i];
      const auto options = param.options().dtype(torch::kFloat32);
      SecondMoment moment;
      if (!slots_[g][i].owned) { // another rank's: no moments here
        group.push_back(std::move(moment));
        continue;
      }
      if (param.dim() >= 2) {
        // The two largest dimensions; of equal ones the later counts as larger (numpy's stable argsort).
        std::vector<int64_t> order(static_cast<size_t>(param.dim()));
        for (int64_t d = 0; d < param.dim(); ++d) order[static_cast<size_t>(d)] = d;
        std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return param.size(x) < param.size(y); });
        moment.a = order.back();
        moment.b = order[order.size() - 2];
        std::vector<int64_t> row = param.sizes().vec(), col = param.sizes().vec();
        row.erase(row.begin() + moment.a);
        col.erase(col.begin() + moment.b);
        moment.row = torch::zeros(row, options);
        moment.col = torch::zeros(col, options);
      } else {
        moment.full = torch::zeros(param.sizes(), options);
      }
      group.push_back(std::move(moment));
    }
    moments_.push_back(std::move(group));
  }
}

void Adafactor::update(int64_t group, int64_t index, torch::Tensor& weights, const torch::Tensor& grad, double lr,
                       int64_t step) {
  SecondMoment& moment = moments_[group][index];
  const double rho = 1.0 - std::pow(static_cast<double>(step), kDecayRate);
  const torch::Tensor squared = grad.square().add_(kEps1);
  torch::Tensor update;
  if (moment.row.defined()) {
    moment.row.mul_(rho).add_(squared.mean(moment.a), 1.0 - rho);
    moment.col.mul_(rho).add_(squared.mean(moment.b), 1.0 - rho);
    const int64_t b_in_row = moment.b < moment.a ? moment.b : moment.b - 1; // b's index once a is gone
    const torch::Tensor row_factor =
        (moment.row / moment.row.mean(b_in_row, /*keepdim=*/true)).rsqrt_().unsqueeze(moment.a);
    const torch::Tensor col_factor = moment.col.rsqrt().unsqueeze(moment.b);
    update = row_factor.mul(col_factor).mul_(grad);
  } else {
    moment.full.mul_(rho).add_(squared, 1.0 - rho);
    update = moment.full.rsqrt().mul_(grad);
  }
  update.div_((rms(update) / kClipThreshold).clamp_min_(1.0));
  if (weight_decay_ != 0) weights.add_(weights, -weight_decay_ * lr);
  weights.add_(update, -lr);
}

std::vector<std::pair<std::string, torch::Tensor>> Adafactor::named_state(int64_t group, int64_t index) const {
  const SecondMoment& moment = moments_[group][index];
  if (moment.row.defined()) return {{"exp_avg_sq_row", moment.row}, {"exp_avg_sq_col", moment.col}};
  return {{"exp_avg_sq", moment.full}};
}

} // namespace sdxl::train

// DPM-Solver++(2M) Karras tables and step, matching diffusers' DPMSolverMultistepScheduler.
#include "sample/dpm_solver.h"

#include <algorithm> // std::min, std::clamp
#include <utility>   // std::pair
#include <cmath>     // std::pow, std::log, std::nearbyint
#include <stdexcept> // std::invalid_argument, std::logic_error
#include <string>
#include <vector>

namespace sdxl::sample {

namespace {

constexpr double kKarrasRho = 7.0;

// diffusers' _sigma_to_t: the fractional training timestep whose log-sigma a sigma
// interpolates, from a float32 log-sigma table (ascending), computed in float64.
double sigma_to_t(double sigma, const std::vector<float>& log_sigmas) {
  const double log_sigma = std::log(std::max(sigma, 1e-10));
  const int64_t size = static_cast<int64_t>(log_sigmas.size());
  // The last index whose log-sigma is at most this one (0 when none), kept below the end.
  int64_t low = 0;
  for (int64_t i = 0; i < size; ++i)
    if (log_sigma - static_cast<double>(log_sigmas[i]) >= 0) low = i;
  low = std::min(low, size - 2);
  const double low_value = log_sigmas[low], high_value = log_sigmas[low + 1];
  const double weight = std::clamp((low_value - log_sigma) / (low_value - high_value), 0.0, 1.0);
  return (1 - weight) * static_cast<double>(low) + weight * static_cast<double>(low + 1);
}

// alpha_t = 1 / sqrt(sigma^2 + 1), sigma_t = sigma * alpha_t (0-dim float32 tensors).
std::pair<torch::Tensor, torch::Tensor> alpha_sigma(const torch::Tensor& sigma) {
  const torch::Tensor alpha = 1 / (sigma.pow(2) + 1).pow(0.5);
  return {alpha, sigma * alpha};
}

torch::Tensor lambda_of(const torch::Tensor& alpha, const torch::Tensor& sigma) {
  return torch::log(alpha) - torch::log(sigma);
}

} // namespace

DpmSolverMultistepScheduler::DpmSolverMultistepScheduler(const SchedulerConfig& config, int64_t num_inference_steps)
    : config_(config), num_inference_steps_(num_inference_steps) {
  config_.validate();
  check_inference_steps(config_, num_inference_steps);
  // ---- training sigmas in float32, and their logs, as numpy holds them
  const torch::Tensor alphas_cumprod = sampler_alphas_cumprod(config_);                  // [T]
  const torch::Tensor train_sigmas = ((1 - alphas_cumprod) / alphas_cumprod).pow(0.5); // [T], ascending
  const torch::Tensor log_table = train_sigmas.log().contiguous();                     // [T]
  const std::vector<float> log_sigmas(log_table.data_ptr<float>(), log_table.data_ptr<float>() + log_table.numel());
  const double sigma_min = train_sigmas[0].item<float>();
  const double sigma_max = train_sigmas[-1].item<float>();

  // ---- Karras sigmas (float64), the timesteps they fall on (rounded half to even, as np.round)
  const double min_inv_rho = std::pow(sigma_min, 1 / kKarrasRho), max_inv_rho = std::pow(sigma_max, 1 / kKarrasRho);
  std::vector<double> sigmas, timesteps;
  for (int64_t i = 0; i < num_inference_steps; ++i) {
    const double ramp = num_inference_steps == 1 ? 0.0 : static_cast<double>(i) / static_cast<double>(num_inference_steps - 1);
    const double sigma = std::pow(max_inv_rho + ramp * (min_inv_rho - max_inv_rho), kKarrasRho);
    sigmas.push_back(sigma);
    timesteps.push_back(std::nearbyint(sigma_to_t(sigma, log_sigmas)));
  }
  sigmas.push_back(config_.final_sigmas_type == "sigma_min" ? sigmas.back() : 0.0);
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  sigmas_ = torch::tensor(sigmas, f64).to(torch::kFloat32);       // [n + 1]
  timesteps_ = torch::tensor(timesteps, f64).to(torch::kFloat32); // [n]
}

torch::Tensor DpmSolverMultistepScheduler::step(const torch::Tensor& model_output, int64_t step_index,
                                                const torch::Tensor& sample) {
  if (step_index != next_step_)
    throw std::logic_error("DPM-Solver++ steps must be taken in order: expected step " + std::to_string(next_step_) +
                           ", got " + std::to_string(step_index));
  const torch::Tensor x = sample.to(torch::kFloat32);   // [B, C, h, w]
  const torch::Tensor eps = model_output.to(torch::kFloat32);
  const torch::Device device = x.device();
  const torch::Tensor sigma_s0 = sigmas_[step_index].to(device);
  const torch::Tensor sigma_next = sigmas_[step_index + 1].to(device);

  // The model's output as a data (x0) prediction.
  const auto [alpha_s0, sigma_t_s0] = alpha_sigma(sigma_s0);
  const torch::Tensor x0 = config_.prediction_type == "v_prediction" ? alpha_s0 * x - sigma_t_s0 * eps
                                                                     : (x - sigma_t_s0 * eps) / alpha_s0;

  const auto [alpha_t, sigma_t] = alpha_sigma(sigma_next);
  const torch::Tensor lambda_t = lambda_of(alpha_t, sigma_t);
  const torch::Tensor lambda_s0 = lambda_of(alpha_s0, sigma_t_s0);
  const torch::Tensor h = lambda_t - lambda_s0;
  const torch::Tensor first_order_weight = alpha_t * (torch::exp(-h) - 1.0);
  // Second order when a previous prediction exists, except on a last step that lands on
  // sigma 0 or ends a short schedule (diffusers' lower_order_final).
  constexpr int64_t kLowerOrderFinalBelowSteps = 15;
  const bool last = step_index == num_inference_steps_ - 1 &&
                    (config_.final_sigmas_type == "zero" || num_inference_steps_ < kLowerOrderFinalBelowSteps);
  torch::Tensor next;
  if (!previous_x0_.defined() || last) {
    next = (sigma_t / sigma_t_s0) * x - first_order_weight * x0;
  } else {
    const auto [alpha_s1, sigma_t_s1] = alpha_sigma(sigmas_[step_index - 1].to(device));
    const torch::Tensor h_0 = lambda_s0 - lambda_of(alpha_s1, sigma_t_s1);
    const torch::Tensor r0 = h_0 / h;
    const torch::Tensor d1 = (1.0 / r0) * (x0 - previous_x0_);
    next = (sigma_t / sigma_t_s0) * x - first_order_weight * x0 - 0.5 * first_order_weight * d1;
  }
  previous_x0_ = x0;
  ++next_step_;
  return next.to(model_output.dtype());
}

} // namespace sdxl::sample

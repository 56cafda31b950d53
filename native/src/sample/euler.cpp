// Euler sampler tables and step, matching diffusers' EulerDiscreteScheduler.
#include "sample/euler.h"

#include <cmath>     // std::nearbyint, std::floor
#include <stdexcept> // std::invalid_argument
#include <string>
#include <vector>

namespace sdxl::sample {

namespace {

// Inference timesteps in float64, highest first, as numpy builds them.
std::vector<double> inference_timesteps(const SchedulerConfig& config, int64_t steps) {
  const int64_t train_steps = config.num_train_timesteps;
  std::vector<double> timesteps;
  timesteps.reserve(steps);
  if (config.timestep_spacing == "leading") {
    // arange(0, n) * (T // n), rounded, reversed, then shifted by steps_offset
    const int64_t step_ratio = train_steps / steps;
    for (int64_t i = steps - 1; i >= 0; --i)
      timesteps.push_back(static_cast<double>(i * step_ratio + config.steps_offset));
  } else if (config.timestep_spacing == "trailing") {
    // arange(T, 0, -T / n), rounded, minus 1
    const double step_ratio = static_cast<double>(train_steps) / static_cast<double>(steps);
    for (double t = static_cast<double>(train_steps); t > 0 && static_cast<int64_t>(timesteps.size()) < steps;
         t -= step_ratio)
      timesteps.push_back(std::nearbyint(t) - 1.0);
  } else { // linspace: np.linspace(0, T - 1, n, dtype=float32), computed in float64 and rounded, reversed
    const double last = static_cast<double>(train_steps - 1);
    for (int64_t i = steps - 1; i >= 0; --i) {
      const double value = steps == 1 ? 0.0 : last * static_cast<double>(i) / static_cast<double>(steps - 1);
      timesteps.push_back(static_cast<double>(static_cast<float>(value)));
    }
  }
  return timesteps;
}

// np.interp(x, arange(T), table) in float64 on a float32 table, clamped at both ends.
double interpolate(const torch::TensorAccessor<float, 1>& table, int64_t size, double x) {
  if (x <= 0) return table[0];
  if (x >= static_cast<double>(size - 1)) return table[size - 1];
  const int64_t lower = static_cast<int64_t>(std::floor(x));
  const double fraction = x - static_cast<double>(lower);
  if (fraction == 0) return table[lower];
  const double low = table[lower], high = table[lower + 1];
  return low + (high - low) * fraction;
}

} // namespace

EulerDiscreteScheduler::EulerDiscreteScheduler(const SchedulerConfig& config, int64_t num_inference_steps)
    : config_(config), num_inference_steps_(num_inference_steps) {
  config_.validate();
  check_inference_steps(config_, num_inference_steps);
  // ---- training sigmas, float32 like diffusers: sqrt((1 - a) / a)
  const torch::Tensor alphas_cumprod = sampler_alphas_cumprod(config_);                 // [T]
  const torch::Tensor train_sigmas = ((1 - alphas_cumprod) / alphas_cumprod).pow(0.5); // [T]
  const int64_t train_steps = train_sigmas.size(0);
  const auto table = train_sigmas.accessor<float, 1>();

  // ---- inference timesteps and their interpolated sigmas (float64, then float32)
  const std::vector<double> timesteps = inference_timesteps(config_, num_inference_steps);
  std::vector<double> sigmas;
  sigmas.reserve(timesteps.size() + 1);
  for (double t : timesteps) sigmas.push_back(interpolate(table, train_steps, t));
  sigmas.push_back(config_.final_sigmas_type == "sigma_min" ? static_cast<double>(table[0]) : 0.0);

  timesteps_ = torch::tensor(timesteps, torch::TensorOptions().dtype(torch::kFloat64)).to(torch::kFloat32); // [n]
  sigmas_ = torch::tensor(sigmas, torch::TensorOptions().dtype(torch::kFloat64)).to(torch::kFloat32);       // [n+1]

  // ---- starting noise level: max sigma, or sqrt(max^2 + 1) for "leading"/other spacings
  const torch::Tensor max_sigma = sigmas_.max(); // []
  init_noise_sigma_ = (config_.timestep_spacing == "linspace" || config_.timestep_spacing == "trailing")
                          ? max_sigma
                          : (max_sigma.pow(2) + 1).pow(0.5);
}

torch::Tensor EulerDiscreteScheduler::scale_model_input(const torch::Tensor& sample, int64_t step_index) const {
  const torch::Tensor sigma = sigmas_[step_index].to(sample.device()); // []
  return sample / (sigma.pow(2) + 1).pow(0.5).to(sample.dtype());
}

torch::Tensor EulerDiscreteScheduler::step(const torch::Tensor& model_output, int64_t step_index,
                                           const torch::Tensor& sample) const {
  if (step_index < 0 || step_index >= num_inference_steps_)
    throw std::out_of_range("Euler step index " + std::to_string(step_index) + " outside [0, " +
                            std::to_string(num_inference_steps_) + ")");
  // diffusers upcasts the sample to float32 for the update and casts back afterwards.
  const torch::Tensor x = sample.to(torch::kFloat32);                                        // [B, C, h, w]
  const torch::Tensor eps = model_output.to(torch::kFloat32);                                // [B, C, h, w]
  const torch::Tensor sigma = sigmas_[step_index].to(x.device());                            // []
  const torch::Tensor sigma_next = sigmas_[step_index + 1].to(x.device());                   // []
  torch::Tensor denoised;                                                                    // [B, C, h, w]
  if (config_.prediction_type == "v_prediction") {
    denoised = eps * (-sigma / (sigma.pow(2) + 1).pow(0.5)) + x / (sigma.pow(2) + 1);
  } else {
    denoised = x - sigma * eps;
  }
  const torch::Tensor derivative = (x - denoised) / sigma; // [B, C, h, w]
  const torch::Tensor dt = sigma_next - sigma;             // []
  return (x + derivative * dt).to(model_output.dtype());   // [B, C, h, w]
}

} // namespace sdxl::sample

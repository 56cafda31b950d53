// The training noise schedule shared by the Euler sampler and the DDPM loss:
// betas, alphas_cumprod and the scheduler_config.json fields that decide them.
// Tables are computed in float32 torch ops, the dtype diffusers uses, so they
// agree with diffusers bit for bit rather than only to rounding.
// Reference: diffusers schedulers/scheduling_euler_discrete.py and scheduling_ddpm.py.
#pragma once

#include <cstdint> // int64_t
#include <string>

#include <nlohmann/json.hpp> // scheduler_config.json
#include <torch/torch.h>     // torch::Tensor

namespace sdxl::sample {

// scheduler/scheduler_config.json; defaults are SDXL-base's.
struct SchedulerConfig {
  int64_t num_train_timesteps = 1000;
  double beta_start = 0.00085;
  double beta_end = 0.012;
  std::string beta_schedule = "scaled_linear"; // "scaled_linear" or "linear"
  std::string prediction_type = "epsilon";     // "epsilon" or "v_prediction"
  std::string timestep_spacing = "leading";    // "leading", "linspace" or "trailing"
  int64_t steps_offset = 1;                    // added to "leading" timesteps
  std::string interpolation_type = "linear";   // sigma interpolation between train steps
  std::string final_sigmas_type = "zero";      // the sigma appended after the last step
  bool use_karras_sigmas = false;              // unsupported: rejected by validate()

  // Reads the known fields; throws std::invalid_argument naming any unsupported setting.
  static SchedulerConfig from_json(const nlohmann::json& json);
  static SchedulerConfig from_file(const std::string& path);
  static SchedulerConfig sdxl_base() { return SchedulerConfig{}; }

  void validate() const;
};

// Throws std::invalid_argument unless 1 <= steps <= num_train_timesteps (every sampler's table needs it).
void check_inference_steps(const SchedulerConfig& config, int64_t steps);

// betas of the training schedule, float32 [num_train_timesteps].
torch::Tensor train_betas(const SchedulerConfig& config);

// cumprod(1 - betas), float32 [num_train_timesteps]: DDPMScheduler.alphas_cumprod.
torch::Tensor train_alphas_cumprod(const SchedulerConfig& config);

} // namespace sdxl::sample

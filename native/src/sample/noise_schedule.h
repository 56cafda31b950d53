// The training noise schedule shared by the samplers and the DDPM loss: betas,
// alphas_cumprod and the scheduler_config.json fields that decide them.
// Tables are computed in float32 torch ops, the dtype diffusers uses, so they
// agree with diffusers bit for bit rather than only to rounding.
// Reference: diffusers schedulers/scheduling_euler_discrete.py and scheduling_ddpm.py.
#pragma once

#include <cstdint> // int64_t
#include <string>

#include <nlohmann/json.hpp> // scheduler_config.json
#include <torch/torch.h>     // torch::Tensor

namespace sdxl::sample {

// scheduler/scheduler_config.json as the samplers read it. Defaults are those of
// diffusers' EulerDiscreteScheduler: `EulerDiscreteScheduler.from_config(c)` keeps only
// the keys the file really has (a PNDM or DDIM file of SD 1.x/2.x included) and takes
// its own defaults for the rest, so a file without timestep_spacing means "linspace".
struct SchedulerConfig {
  int64_t num_train_timesteps = 1000;
  double beta_start = 0.0001;
  double beta_end = 0.02;
  std::string beta_schedule = "linear";      // "scaled_linear" or "linear"
  std::string prediction_type = "epsilon";   // "epsilon" or "v_prediction"
  std::string timestep_spacing = "linspace"; // "leading", "linspace" or "trailing"
  int64_t steps_offset = 0;                  // added to "leading" timesteps
  std::string interpolation_type = "linear"; // sigma interpolation between train steps
  std::string final_sigmas_type = "zero";    // the sigma appended after the last step
  bool use_karras_sigmas = false;            // unsupported: rejected by validate()
  // Zero terminal SNR (Lin et al. 2023): betas rescaled so the last timestep is pure
  // noise; the samplers use alphas_cumprod[-1] = 2^-24 so its sigma stays finite.
  bool rescale_betas_zero_snr = false;

  // Reads the known fields; throws std::invalid_argument naming any unsupported setting.
  static SchedulerConfig from_json(const nlohmann::json& json);
  static SchedulerConfig from_file(const std::string& path);
  // The published configs, for single files that carry none: stable-diffusion-xl-base-1.0's
  // Euler config, and stable-diffusion-v1-5's PNDM config as Euler reads it.
  static SchedulerConfig sdxl_base();
  static SchedulerConfig sd15_base();

  void validate() const;
};

// Throws std::invalid_argument unless 1 <= steps <= num_train_timesteps (every sampler's table needs it).
void check_inference_steps(const SchedulerConfig& config, int64_t steps);

// betas of the training schedule, float32 [num_train_timesteps].
torch::Tensor train_betas(const SchedulerConfig& config);

// cumprod(1 - betas), float32 [num_train_timesteps]: DDPMScheduler.alphas_cumprod (with
// rescale_betas_zero_snr its last entry is 0: the training target at t = T-1 is pure noise).
torch::Tensor train_alphas_cumprod(const SchedulerConfig& config);

// The samplers' table: train_alphas_cumprod with a zero last entry raised to 2^-24, as
// diffusers' Euler and DPM-Solver schedulers do, so every sigma is finite.
torch::Tensor sampler_alphas_cumprod(const SchedulerConfig& config);

} // namespace sdxl::sample

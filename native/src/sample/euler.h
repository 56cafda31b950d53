// Euler sampler (k-diffusion's Algorithm 2 without churn), table for table
// the one diffusers' EulerDiscreteScheduler builds from a model's scheduler config:
// inference timesteps, sigmas with a final 0, init_noise_sigma, input scaling and
// step, for epsilon and v-prediction models.
// Reference: diffusers schedulers/scheduling_euler_discrete.py.
#pragma once

#include <cstdint> // int64_t

#include <torch/torch.h> // torch::Tensor

#include "sample/noise_schedule.h" // SchedulerConfig, train_alphas_cumprod

namespace sdxl::sample {

class EulerDiscreteScheduler {
 public:
  EulerDiscreteScheduler(const SchedulerConfig& config, int64_t num_inference_steps);

  int64_t num_inference_steps() const { return num_inference_steps_; }
  // Float32 on the CPU, highest noise first.
  const torch::Tensor& timesteps() const { return timesteps_; } // [n]
  const torch::Tensor& sigmas() const { return sigmas_; }       // [n + 1], last = final sigma
  // The standard deviation of the starting latents, a 0-dim float32 tensor.
  const torch::Tensor& init_noise_sigma() const { return init_noise_sigma_; }

  // The UNet sees x / sqrt(sigma^2 + 1) at step `step_index`.
  torch::Tensor scale_model_input(const torch::Tensor& sample, int64_t step_index) const;
  // One Euler step from sigmas[i] to sigmas[i + 1] given the model output at step i.
  torch::Tensor step(const torch::Tensor& model_output, int64_t step_index, const torch::Tensor& sample) const;

 private:
  SchedulerConfig config_;
  int64_t num_inference_steps_;
  torch::Tensor timesteps_;
  torch::Tensor sigmas_;
  torch::Tensor init_noise_sigma_;
};

} // namespace sdxl::sample

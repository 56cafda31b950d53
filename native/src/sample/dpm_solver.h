// DPM-Solver++(2M) with Karras sigmas: diffusers' DPMSolverMultistepScheduler with
// algorithm_type "dpmsolver++", solver_order 2, solver_type "midpoint",
// use_karras_sigmas, lower_order_final and final_sigmas_type "zero", built from a
// model's (Euler) scheduler config, as AUTOMATIC1111's "DPM++ 2M Karras" is.
// It works in the variance-preserving parametrisation (x_t = alpha_t x0 + sigma_t eps),
// so its starting noise is N(0, 1) unscaled and the UNet input is the sample as is.
// The first step is first order (no history yet), and so is the last (it lands on
// sigma 0). Reference: diffusers schedulers/scheduling_dpmsolver_multistep.py.
#pragma once

#include <cstdint> // int64_t

#include <torch/torch.h> // torch::Tensor

#include "sample/noise_schedule.h" // SchedulerConfig

namespace sdxl::sample {

class DpmSolverMultistepScheduler {
 public:
  DpmSolverMultistepScheduler(const SchedulerConfig& config, int64_t num_inference_steps);

  int64_t num_inference_steps() const { return num_inference_steps_; }
  // Float32 on the CPU, highest noise first; timesteps are whole numbers (int64 in diffusers).
  const torch::Tensor& timesteps() const { return timesteps_; } // [n]
  const torch::Tensor& sigmas() const { return sigmas_; }       // [n + 1], Karras (rho 7), then 0

  // One step from sigmas[i] to sigmas[i + 1]; steps must be taken in order, from 0
  // (the solver keeps the previous step's data prediction).
  torch::Tensor step(const torch::Tensor& model_output, int64_t step_index, const torch::Tensor& sample);

 private:
  SchedulerConfig config_;
  int64_t num_inference_steps_;
  torch::Tensor timesteps_;
  torch::Tensor sigmas_;
  torch::Tensor previous_x0_; // data prediction of the previous step; undefined before the first
  int64_t next_step_ = 0;
};

} // namespace sdxl::sample

// The samplers text-to-image offers, behind one interface the denoising loop drives:
//   "euler"           Euler (diffusers' EulerDiscreteScheduler, SDXL's default);
//   "euler_a"         Euler ancestral (EulerAncestralDiscreteScheduler): the same sigma
//                     table, each step goes down past the next sigma and adds fresh noise;
//   "dpmpp_2m_karras" DPM-Solver++(2M) with Karras sigmas (dpm_solver.h).
#pragma once

#include <cstdint> // int64_t
#include <memory>  // std::unique_ptr
#include <string>
#include <vector>

#include <torch/torch.h> // torch::Tensor

#include "sample/noise_schedule.h" // SchedulerConfig

namespace sdxl::sample {

inline const std::vector<std::string>& sampler_names() {
  static const std::vector<std::string> names{"euler", "euler_a", "dpmpp_2m_karras"};
  return names;
}

class Sampler {
 public:
  virtual ~Sampler() = default;

  virtual int64_t num_inference_steps() const = 0;
  // Float32 on the CPU, highest noise first.
  virtual const torch::Tensor& timesteps() const = 0; // [n]
  virtual const torch::Tensor& sigmas() const = 0;    // [n + 1]
  // The standard deviation of the starting latents (0-dim float32).
  virtual torch::Tensor init_noise_sigma() const = 0;
  // What the UNet sees at step i.
  virtual torch::Tensor scale_model_input(const torch::Tensor& sample, int64_t step_index) const = 0;
  // Whether step() needs fresh noise shaped like the sample (ancestral samplers).
  virtual bool needs_noise() const { return false; }
  // One step from sigmas[i] to sigmas[i + 1]; `noise` ~ N(0, 1) when needs_noise(), else undefined.
  virtual torch::Tensor step(const torch::Tensor& model_output, int64_t step_index, const torch::Tensor& sample,
                             const torch::Tensor& noise) = 0;
};

// Throws std::invalid_argument naming the sampler for an unknown name.
std::unique_ptr<Sampler> make_sampler(const std::string& name, const SchedulerConfig& config, int64_t steps);

// Euler ancestral's step (float32): denoise to x0, step down to sigma_down with the Euler
// derivative, then add noise * sigma_up, where sigma_up^2 + sigma_down^2 = sigma_next^2.
struct AncestralSigmas {
  double up = 0;
  double down = 0;
};
AncestralSigmas ancestral_sigmas(double sigma, double sigma_next);
torch::Tensor euler_ancestral_step(const torch::Tensor& model_output, const torch::Tensor& sample,
                                   const torch::Tensor& sigma, const torch::Tensor& sigma_next,
                                   const torch::Tensor& noise, const std::string& prediction_type);

} // namespace sdxl::sample

// Euler, Euler ancestral and DPM++ 2M Karras behind the Sampler interface.
#include "sample/sampler.h"

#include <cmath>     // std::sqrt
#include <stdexcept> // std::invalid_argument

#include "sample/dpm_solver.h" // DpmSolverMultistepScheduler
#include "sample/euler.h"      // EulerDiscreteScheduler

namespace sdxl::sample {

namespace {

// Euler and Euler ancestral share the table, the starting noise and the input scaling.
class EulerSampler : public Sampler {
 public:
  EulerSampler(const SchedulerConfig& config, int64_t steps, bool ancestral)
      : scheduler_(config, steps), prediction_type_(config.prediction_type), ancestral_(ancestral) {}

  int64_t num_inference_steps() const override { return scheduler_.num_inference_steps(); }
  const torch::Tensor& timesteps() const override { return scheduler_.timesteps(); }
  const torch::Tensor& sigmas() const override { return scheduler_.sigmas(); }
  torch::Tensor init_noise_sigma() const override { return scheduler_.init_noise_sigma(); }
  torch::Tensor scale_model_input(const torch::Tensor& sample, int64_t i) const override {
    return scheduler_.scale_model_input(sample, i);
  }
  bool needs_noise() const override { return ancestral_; }
  torch::Tensor step(const torch::Tensor& model_output, int64_t i, const torch::Tensor& sample,
                     const torch::Tensor& noise) override {
    if (!ancestral_) return scheduler_.step(model_output, i, sample);
    const torch::Device device = sample.device();
    return euler_ancestral_step(model_output, sample, scheduler_.sigmas()[i].to(device),
                                scheduler_.sigmas()[i + 1].to(device), noise, prediction_type_);
  }

 private:
  EulerDiscreteScheduler scheduler_;
  std::string prediction_type_;
  bool ancestral_;
};

class DpmSampler : public Sampler {
 public:
  DpmSampler(const SchedulerConfig& config, int64_t steps) : scheduler_(config, steps) {}

  int64_t num_inference_steps() const override { return scheduler_.num_inference_steps(); }
  const torch::Tensor& timesteps() const override { return scheduler_.timesteps(); }
  const torch::Tensor& sigmas() const override { return scheduler_.sigmas(); }
  torch::Tensor init_noise_sigma() const override { return torch::ones({}, torch::kFloat32); }
  torch::Tensor scale_model_input(const torch::Tensor& sample, int64_t) const override { return sample; }
  torch::Tensor step(const torch::Tensor& model_output, int64_t i, const torch::Tensor& sample,
                     const torch::Tensor&) override {
    return scheduler_.step(model_output, i, sample);
  }

 private:
  DpmSolverMultistepScheduler scheduler_;
};

} // namespace

std::unique_ptr<Sampler> make_sampler(const std::string& name, const SchedulerConfig& config, int64_t steps) {
  if (name == "euler") return std::make_unique<EulerSampler>(config, steps, false);
  if (name == "euler_a") return std::make_unique<EulerSampler>(config, steps, true);
  if (name == "dpmpp_2m_karras") return std::make_unique<DpmSampler>(config, steps);
  throw std::invalid_argument("Expected sampler euler, euler_a or dpmpp_2m_karras but received \"" + name + "\"");
}

AncestralSigmas ancestral_sigmas(double sigma, double sigma_next) {
  AncestralSigmas result;
  result.up = std::sqrt(sigma_next * sigma_next * (sigma * sigma - sigma_next * sigma_next) / (sigma * sigma));
  result.down = std::sqrt(sigma_next * sigma_next - result.up * result.up);
  return result;
}

torch::Tensor euler_ancestral_step(const torch::Tensor& model_output, const torch::Tensor& sample,
                                   const torch::Tensor& sigma, const torch::Tensor& sigma_next,
                                   const torch::Tensor& noise, const std::string& prediction_type) {
  // As diffusers: float32 tensor arithmetic on 0-dim sigmas, the sample upcast for the update.
  const torch::Tensor x = sample.to(torch::kFloat32);        // [B, C, h, w]
  const torch::Tensor eps = model_output.to(torch::kFloat32); // [B, C, h, w]
  const torch::Tensor denoised = prediction_type == "v_prediction"
                                     ? eps * (-sigma / (sigma.pow(2) + 1).pow(0.5)) + x / (sigma.pow(2) + 1)
                                     : x - sigma * eps;
  const torch::Tensor sigma_up = (sigma_next.pow(2) * (sigma.pow(2) - sigma_next.pow(2)) / sigma.pow(2)).pow(0.5);
  const torch::Tensor sigma_down = (sigma_next.pow(2) - sigma_up.pow(2)).pow(0.5);
  const torch::Tensor derivative = (x - denoised) / sigma;
  const torch::Tensor next = x + derivative * (sigma_down - sigma) + noise.to(x.device(), torch::kFloat32) * sigma_up;
  return next.to(model_output.dtype());
}

} // namespace sdxl::sample

// DDPM noise-prediction loss and the LoRA tensors it trains.
#include "train/ddpm_loss.h"

#include <cmath>     // std::sqrt
#include <stdexcept> // std::invalid_argument

#include "models/layers.h" // models::LinearImpl, LoraSlot

namespace sdxl::train {

// ---------------------------------------------------------------------------
// Objective

torch::Tensor add_noise(const torch::Tensor& alphas_cumprod, const torch::Tensor& latents,
                        const torch::Tensor& noise, const torch::Tensor& timesteps) {
  // diffusers casts the table to the latents' dtype and device before indexing.
  const torch::Tensor table = alphas_cumprod.to(latents.device(), latents.scalar_type()); // [T]
  const torch::Tensor alpha = table.index_select(0, timesteps.to(latents.device()).to(torch::kInt64)); // [B]
  std::vector<int64_t> broadcast(latents.dim(), 1);
  broadcast[0] = latents.size(0);
  const torch::Tensor sqrt_alpha = alpha.pow(0.5).reshape(broadcast);               // [B, 1, 1, 1]
  const torch::Tensor sqrt_one_minus_alpha = (1 - alpha).pow(0.5).reshape(broadcast); // [B, 1, 1, 1]
  return sqrt_alpha * latents + sqrt_one_minus_alpha * noise;                       // [B, 4, h, w]
}

namespace {
// a_t per sample, broadcast over [B, C, h, w].
torch::Tensor alpha_at(const torch::Tensor& alphas_cumprod, const torch::Tensor& like, const torch::Tensor& timesteps) {
  const torch::Tensor table = alphas_cumprod.to(like.device(), like.scalar_type()); // [T]
  std::vector<int64_t> broadcast(like.dim(), 1);
  broadcast[0] = like.size(0);
  return table.index_select(0, timesteps.to(like.device()).to(torch::kInt64)).reshape(broadcast); // [B, 1, 1, 1]
}
} // namespace

torch::Tensor training_target(const torch::Tensor& alphas_cumprod, const torch::Tensor& latents,
                              const torch::Tensor& noise, const torch::Tensor& timesteps,
                              const std::string& prediction_type) {
  if (prediction_type == "epsilon") return noise;
  if (prediction_type != "v_prediction")
    throw std::invalid_argument("training target: unknown prediction_type \"" + prediction_type + "\"");
  // DDPMScheduler.get_velocity, in the latents' dtype as diffusers computes it.
  const torch::Tensor alpha = alpha_at(alphas_cumprod, latents, timesteps);
  return alpha.pow(0.5) * noise - (1 - alpha).pow(0.5) * latents; // [B, 4, h, w]
}

torch::Tensor min_snr_weights(const torch::Tensor& alphas_cumprod, const torch::Tensor& timesteps, double gamma,
                              const std::string& prediction_type) {
  const torch::Tensor alpha = alphas_cumprod.to(torch::kFloat32).index_select(0, timesteps.to(alphas_cumprod.device()));
  const torch::Tensor snr = alpha / (1 - alpha); // [B]
  const torch::Tensor clipped = torch::clamp_max(snr, gamma);
  return prediction_type == "v_prediction" ? clipped / (snr + 1) : clipped / snr;
}

DdpmLossOutput ddpm_loss(models::UNet2DConditionModel& unet, const torch::Tensor& alphas_cumprod,
                         const DdpmLossInputs& inputs) {
  if (inputs.timesteps.dim() != 1 || inputs.timesteps.size(0) != inputs.latents.size(0))
    throw std::invalid_argument("ddpm_loss: timesteps must be [B] with one entry per latent");
  DdpmLossOutput output;
  output.noisy_latents = add_noise(alphas_cumprod, inputs.latents, inputs.noise, inputs.timesteps); // [B, 4, h, w]
  output.target = training_target(alphas_cumprod, inputs.latents, inputs.noise, inputs.timesteps, inputs.prediction_type);
  output.prediction = unet->forward(output.noisy_latents, inputs.timesteps.to(torch::kFloat32),
                                    inputs.conditioning); // [B, 4, h, w]
  // The loss is taken in float32 whatever the model's dtype, as the diffusers scripts do.
  output.loss = torch::mse_loss(output.prediction.to(torch::kFloat32), output.target.to(torch::kFloat32)); // []
  return output;
}

// ---------------------------------------------------------------------------
// LoRA tensors

LoraParameters lora_parameters(torch::nn::Module& module) {
  LoraParameters parameters;
  for (const auto& child : module.modules(/*include_self=*/true)) {
    auto* linear = child->as<models::LinearImpl>();
    if (linear == nullptr) continue;
    for (auto& slot : linear->loras) {
      parameters.down.push_back(slot.down);
      parameters.up.push_back(slot.up);
    }
  }
  return parameters;
}

LoraParameters enable_lora_training(torch::nn::Module& module) {
  LoraParameters parameters = lora_parameters(module);
  for (auto* group : {&parameters.down, &parameters.up}) {
    for (auto& tensor : *group) {
      tensor.requires_grad_(true);
      if (tensor.grad().defined()) tensor.mutable_grad() = torch::Tensor();
    }
  }
  return parameters;
}

double global_grad_norm(const std::vector<torch::Tensor>& tensors) {
  double sum_of_squares = 0;
  for (const auto& tensor : tensors) {
    const torch::Tensor grad = tensor.grad();
    if (!grad.defined()) continue;
    sum_of_squares += grad.to(torch::kFloat64).pow(2).sum().item<double>();
  }
  return std::sqrt(sum_of_squares);
}

} // namespace sdxl::train

// The DDPM training objective LoRA training minimises: noise the clean latents to
// timestep t (x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps), predict the target with the
// UNet and take the mean squared error. The target is the noise for epsilon models
// and the velocity v = sqrt(a_t) eps - sqrt(1 - a_t) x0 for v-prediction models
// (SD 2.x 768, v-prediction fine-tunes). LoRA slots are the only trainable tensors;
// the base weights stay frozen.
// Reference: diffusers examples/text_to_image/train_text_to_image_lora.py and
// schedulers/scheduling_ddpm.py (add_noise, get_velocity).
#pragma once

#include <cstdint> // int64_t
#include <string>  // prediction types
#include <vector>

#include <torch/torch.h> // torch::Tensor

#include "models/unet.h" // models::UNet2DConditionModel

namespace sdxl::train {

struct DdpmLossInputs {
  torch::Tensor latents;               // [B, 4, h, w] clean latents (already * scaling_factor)
  torch::Tensor noise;                 // [B, 4, h, w] ~ N(0, 1)
  torch::Tensor timesteps;             // [B] int64 in [0, num_train_timesteps)
  models::UNetConditioning conditioning; // context [B, 77, cross]; SDXL's text_embeds [B, P], time_ids [B, 6]
  std::string prediction_type = "epsilon"; // the scheduler config's: "epsilon" or "v_prediction"
};

struct DdpmLossOutput {
  torch::Tensor noisy_latents; // [B, 4, h, w]
  torch::Tensor target;        // [B, 4, h, w] the noise or the velocity
  torch::Tensor prediction;    // [B, 4, h, w] the UNet's output
  torch::Tensor loss;          // [] mean squared error, float32, part of the autograd graph
};

// x_t = sqrt(a_t) * x0 + sqrt(1 - a_t) * noise, with a = alphas_cumprod [T] (float32).
torch::Tensor add_noise(const torch::Tensor& alphas_cumprod, const torch::Tensor& latents,
                        const torch::Tensor& noise, const torch::Tensor& timesteps); // [B, 4, h, w]

// What the UNet learns to predict at timesteps t: the noise, or (v_prediction)
// v = sqrt(a_t) * noise - sqrt(1 - a_t) * latents. [B, 4, h, w], in the latents' dtype.
torch::Tensor training_target(const torch::Tensor& alphas_cumprod, const torch::Tensor& latents,
                              const torch::Tensor& noise, const torch::Tensor& timesteps,
                              const std::string& prediction_type);

// Min-SNR-gamma loss weights per sample (Hang et al. 2023), with SNR = a_t / (1 - a_t):
// min(SNR, gamma) / SNR for epsilon prediction, min(SNR, gamma) / (SNR + 1) for v, as
// diffusers' and kohya's scripts weight them. [B] float32.
torch::Tensor min_snr_weights(const torch::Tensor& alphas_cumprod, const torch::Tensor& timesteps, double gamma,
                              const std::string& prediction_type);

// Forward pass of the objective; call loss.backward() to get LoRA gradients.
DdpmLossOutput ddpm_loss(models::UNet2DConditionModel& unet, const torch::Tensor& alphas_cumprod,
                         const DdpmLossInputs& inputs);

// ---------------------------------------------------------------------------
// The trainable LoRA tensors of a model

struct LoraParameters {
  std::vector<torch::Tensor> down; // A [r, in] per slot
  std::vector<torch::Tensor> up;   // B [out, r] per slot
};

// Every LoRA slot tensor of every Linear under `module`, in module order.
LoraParameters lora_parameters(torch::nn::Module& module);

// Marks every LoRA slot tensor as trainable (requires_grad) and clears old gradients.
LoraParameters enable_lora_training(torch::nn::Module& module);

// sqrt(sum over tensors of sum(grad^2)); tensors without a gradient count as zero.
double global_grad_norm(const std::vector<torch::Tensor>& tensors);

} // namespace sdxl::train

// The DDPM training objective SDXL LoRA training minimises: noise the clean
// latents to timestep t (x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps), predict eps
// with the UNet and take the mean squared error. LoRA slots are the only
// trainable tensors; the base weights stay frozen.
// Reference: diffusers examples/text_to_image/train_text_to_image_lora_sdxl.py
// and schedulers/scheduling_ddpm.py (add_noise).
#pragma once

#include <cstdint> // int64_t
#include <vector>

#include <torch/torch.h> // torch::Tensor

#include "models/unet.h" // models::UNet2DConditionModel

namespace sdxl::train {

struct DdpmLossInputs {
  torch::Tensor latents;               // [B, 4, h, w] clean latents (already * scaling_factor)
  torch::Tensor noise;                 // [B, 4, h, w] ~ N(0, 1)
  torch::Tensor timesteps;             // [B] int64 in [0, num_train_timesteps)
  torch::Tensor encoder_hidden_states; // [B, 77, cross_attention_dim]
  torch::Tensor text_embeds;           // [B, projection_dim]
  torch::Tensor time_ids;              // [B, 6]
};

struct DdpmLossOutput {
  torch::Tensor noisy_latents; // [B, 4, h, w]
  torch::Tensor prediction;    // [B, 4, h, w] predicted noise
  torch::Tensor loss;          // [] mean squared error, float32, part of the autograd graph
};

// x_t = sqrt(a_t) * x0 + sqrt(1 - a_t) * noise, with a = alphas_cumprod [T] (float32).
torch::Tensor add_noise(const torch::Tensor& alphas_cumprod, const torch::Tensor& latents,
                        const torch::Tensor& noise, const torch::Tensor& timesteps); // [B, 4, h, w]

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

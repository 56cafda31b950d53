// Text-to-image with classifier-free guidance, the loop of diffusers'
// StableDiffusionPipeline / StableDiffusionXLPipeline.__call__ for already encoded
// prompts (a family's conditioning, sample/conditioning.h): scale the starting
// latents by the sampler's init_noise_sigma, run the UNet on the [unconditional,
// conditional] batch each step, guide, step (sampler.h), then decode
// latents / scaling_factor with the VAE. The samplers read the model's prediction
// type (epsilon or v) from the scheduler config.
#pragma once

#include <cstdint>    // int64_t, uint8_t
#include <functional> // std::function step callback
#include <string>     // sampler name
#include <vector>     // RGB bytes

#include <torch/torch.h> // torch::Tensor

#include "models/unet.h"          // models::UNet2DConditionModel
#include "models/vae.h"           // models::AutoencoderKL
#include "sample/noise_schedule.h" // SchedulerConfig
#include "sample/sampler.h"        // Sampler, make_sampler

namespace sdxl::sample {

struct Text2ImageInputs {
  models::UNetConditioning positive; // batch B; SDXL's time_ids are the same in both branches
  models::UNetConditioning negative; // batch B, classifier-free guidance's unconditional branch
                                     // (time_ids left undefined: the positive branch's)
  torch::Tensor latents;             // [B, 4, H/8, W/8] ~ N(0, 1), before init_noise_sigma
  int64_t steps = 30;
  double guidance_scale = 5.0; // <= 1 disables classifier-free guidance, as in diffusers
  std::string sampler = "euler"; // sampler.h's names
  // Ancestral samplers' step noise: image b draws from generators[b] (CPU generators, as
  // diffusers' generator list), so an image does not depend on the others of its batch.
  std::vector<at::Generator> generators;
};

struct Text2ImageResult {
  torch::Tensor latents; // [B, 4, H/8, W/8] after the last step
  torch::Tensor image;   // [B, 3, H, W] in about [-1, 1], float32, not post-processed
};

// Called before each step (step, total) and once more before decoding (total, total);
// throw from it (e.g. Cancelled) to stop the loop.
using StepCallback = std::function<void(int64_t step, int64_t total)>;
// Called after each step with the latents it produced (verify compares them).
using LatentsCallback = std::function<void(int64_t step, const torch::Tensor& latents)>;

// Runs the denoising loop and the VAE decode without autograd.
Text2ImageResult text_to_image(models::UNet2DConditionModel& unet, models::AutoencoderKL& vae,
                               const SchedulerConfig& scheduler_config, const Text2ImageInputs& inputs,
                               const StepCallback& on_step = nullptr, const LatentsCallback& on_latents = nullptr);

// The denoising loop alone, driving a fresh `sampler`. -> final latents [B, 4, h, w]
torch::Tensor denoise(models::UNet2DConditionModel& unet, Sampler& sampler, const Text2ImageInputs& inputs,
                      const StepCallback& on_step = nullptr, const LatentsCallback& on_latents = nullptr);

// latents [B, 4, h, w] -> image [B, 3, 8h, 8w] (float32), dividing by the VAE's scaling factor.
torch::Tensor decode_latents(models::AutoencoderKL& vae, const torch::Tensor& latents);

// image [1, 3, H, W] in [-1, 1] -> row-major RGB bytes, H * W * 3, as diffusers'
// image processor does: (x / 2 + 0.5).clamp(0, 1) * 255, rounded.
std::vector<uint8_t> image_to_rgb8(const torch::Tensor& image);

} // namespace sdxl::sample

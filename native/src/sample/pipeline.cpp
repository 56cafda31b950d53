// The text-to-image loop with classifier-free guidance, and VAE decoding.
#include "sample/pipeline.h"

#include <memory>    // std::unique_ptr sampler
#include <stdexcept> // std::invalid_argument
#include <vector>    // per-image noise

namespace sdxl::sample {

namespace {

// The UNet, VAE and latents may not share a dtype (the VAE is upcast to
// float32 for float16 runs); read each module's dtype off its first parameter.
torch::Dtype module_dtype(const torch::nn::Module& module) {
  const auto parameters = module.parameters();
  return parameters.empty() ? torch::kFloat32 : parameters.front().scalar_type();
}

constexpr double kRgbMax = 255.0;

} // namespace

// ---------------------------------------------------------------------------
// Denoising

torch::Tensor denoise(models::UNet2DConditionModel& unet, Sampler& scheduler, const Text2ImageInputs& inputs,
                      const StepCallback& on_step, const LatentsCallback& on_latents) {
  torch::NoGradGuard no_grad;
  const bool guided = inputs.guidance_scale > 1.0;
  const torch::Dtype dtype = module_dtype(*unet);
  const torch::Device device = inputs.latents.device();

  // Conditioning, unconditional half first as diffusers concatenates it.
  models::UNetConditioning negative = inputs.negative;
  if (!negative.time_ids.defined()) negative.time_ids = inputs.positive.time_ids; // SDXL: the same size ids
  const models::UNetConditioning conditioning =
      (guided ? negative.cat(inputs.positive) : inputs.positive).to(device, dtype); // batch [2B] or [B]

  const int64_t total = scheduler.num_inference_steps();
  const int64_t batch = inputs.latents.size(0);
  if (scheduler.needs_noise() && static_cast<int64_t>(inputs.generators.size()) != batch)
    throw std::invalid_argument("an ancestral sampler needs one generator per image");
  torch::Tensor latents = inputs.latents * scheduler.init_noise_sigma().to(device); // [B, 4, h, w]
  for (int64_t i = 0; i < total; ++i) {
    if (on_step) on_step(i, total);
    torch::Tensor model_input = guided ? torch::cat({latents, latents}, 0) : latents; // [2B, 4, h, w]
    model_input = scheduler.scale_model_input(model_input, i).to(dtype);
    const torch::Tensor timestep = scheduler.timesteps()[i].reshape({1}).to(device); // [1]
    torch::Tensor noise_pred = unet->forward(model_input, timestep, conditioning); // [2B, 4, h, w]
    if (guided) {
      const auto halves = noise_pred.chunk(2, 0);
      noise_pred = halves[0] + inputs.guidance_scale * (halves[1] - halves[0]); // [B, 4, h, w]
    }
    torch::Tensor noise; // [B, 4, h, w], ancestral samplers only
    if (scheduler.needs_noise()) {
      std::vector<torch::Tensor> parts;
      for (int64_t b = 0; b < batch; ++b)
        parts.push_back(torch::randn({1, latents.size(1), latents.size(2), latents.size(3)}, inputs.generators[b],
                                     torch::TensorOptions().dtype(torch::kFloat32)));
      noise = torch::cat(parts, 0).to(device);
    }
    latents = scheduler.step(noise_pred, i, latents, noise); // [B, 4, h, w]
    if (on_latents) on_latents(i, latents);
  }
  return latents;
}

// ---------------------------------------------------------------------------
// Decoding

torch::Tensor decode_latents(models::AutoencoderKL& vae, const torch::Tensor& latents) {
  torch::NoGradGuard no_grad;
  // The pipelines divide by scaling_factor only (these VAEs have no shift or latents mean/std).
  const torch::Tensor scaled = latents / vae->config().scaling_factor;     // [B, 4, h, w]
  return vae->decode(scaled.to(module_dtype(*vae))).to(torch::kFloat32); // [B, 3, 8h, 8w]
}

Text2ImageResult text_to_image(models::UNet2DConditionModel& unet, models::AutoencoderKL& vae,
                               const SchedulerConfig& scheduler_config, const Text2ImageInputs& inputs,
                               const StepCallback& on_step, const LatentsCallback& on_latents) {
  const std::unique_ptr<Sampler> scheduler = make_sampler(inputs.sampler, scheduler_config, inputs.steps);
  Text2ImageResult result;
  result.latents = denoise(unet, *scheduler, inputs, on_step, on_latents);
  if (on_step) on_step(scheduler->num_inference_steps(), scheduler->num_inference_steps());
  result.image = decode_latents(vae, result.latents);
  return result;
}

std::vector<uint8_t> image_to_rgb8(const torch::Tensor& image) {
  if (image.dim() != 4 || image.size(0) != 1 || image.size(1) != 3)
    throw std::invalid_argument("image_to_rgb8 expects one [1, 3, H, W] image");
  const torch::Tensor pixels = ((image.to(torch::kFloat32) / 2 + 0.5).clamp(0, 1) * kRgbMax)
                                   .round()
                                   .to(torch::kUInt8)
                                   .squeeze(0)
                                   .permute({1, 2, 0})
                                   .contiguous()
                                   .cpu(); // [H, W, 3]
  const uint8_t* data = pixels.data_ptr<uint8_t>();
  return std::vector<uint8_t>(data, data + pixels.numel());
}

} // namespace sdxl::sample

// engine.h's model-level API: load, describe, tokenize, encode, generate.
// (runtime.cpp holds the runtime helpers; verify.cpp the fixture check.)
#include "sdxl/engine.h"

#include <cmath>        // std::isfinite
#include <mutex>        // std::unique_lock
#include <shared_mutex> // std::shared_lock
#include <stdexcept>    // std::invalid_argument
#include <utility>      // std::pair

#include <ATen/CPUGeneratorImpl.h> // at::detail::createCPUGenerator

#include "engine/model.h"          // Model, load_model_from
#include "lora/apply.h"            // lora::apply_lora, clear_loras, lora_targets
#include "lora/lora_file.h"        // lora::load_lora_file
#include "models/state_dict.h"     // models::count_parameters
#include "sample/pipeline.h"       // sample::text_to_image, image_to_rgb8
#include "sample/prompt_encoding.h" // sample::encode_prompts, add_time_ids

namespace sdxl {

namespace {

HostTensor to_host(const torch::Tensor& tensor) {
  const torch::Tensor values = tensor.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  HostTensor host;
  host.shape.assign(values.sizes().begin(), values.sizes().end());
  const float* data = values.data_ptr<float>();
  host.data.assign(data, data + values.numel());
  return host;
}

// Removes the LoRA slots a generate() call attached, however it ends.
class AttachedLoras {
 public:
  explicit AttachedLoras(Model& model) : model_(model) {}
  ~AttachedLoras() {
    lora::clear_loras(model_.unet.get(), model_.text_encoder.get(), model_.text_encoder_2.get());
  }
  AttachedLoras(const AttachedLoras&) = delete;
  AttachedLoras& operator=(const AttachedLoras&) = delete;

 private:
  Model& model_;
};

void validate(const Model& model, const GenerateOptions& options) {
  const int64_t factor = vae_scale_factor(model);
  for (const auto& [name, value] : {std::pair<const char*, int64_t>{"width", options.width}, {"height", options.height}}) {
    if (value <= 0 || value % factor != 0)
      throw std::invalid_argument(std::string("Expected a positive multiple of ") + std::to_string(factor) + " for " +
                                  name + " but received " + std::to_string(value));
  }
  if (options.steps < 1 || options.steps > model.scheduler.num_train_timesteps)
    throw std::invalid_argument("Expected steps between 1 and " + std::to_string(model.scheduler.num_train_timesteps) +
                                " but received " + std::to_string(options.steps));
  if (!std::isfinite(options.guidance_scale))
    throw std::invalid_argument("Expected a finite guidance_scale");
  for (const auto& spec : options.loras) {
    if (!std::isfinite(spec.scale)) throw std::invalid_argument("Expected a finite scale for LoRA " + spec.path);
  }
}

// Prompt encoding and the denoising loop; the caller holds the LoRA lock.
Image generate_locked(Model& model, const GenerateOptions& options, const ProgressFn& progress,
                      const CancelFlag& cancel) {
  torch::NoGradGuard no_grad;
  const sample::PromptEncoding positive = sample::encode_prompts(
      model.tokenizer, model.tokenizer_2, model.text_encoder, model.text_encoder_2, {options.prompt});
  const sample::NegativeEmbeddings negative =
      sample::encode_negative_prompts(model.tokenizer, model.tokenizer_2, model.text_encoder, model.text_encoder_2,
                                      {options.negative_prompt}, positive, model.force_zeros_for_empty_prompt);
  throw_if_cancelled(cancel);

  const int64_t factor = vae_scale_factor(model);
  const int64_t latent_channels = model.unet->config().in_channels;
  // Starting noise from a CPU generator, as diffusers draws it with a CPU torch.Generator.
  auto generator = at::detail::createCPUGenerator(options.seed);
  const torch::Tensor noise = torch::randn({1, latent_channels, options.height / factor, options.width / factor},
                                           generator, torch::TensorOptions().dtype(torch::kFloat32)); // [1, 4, h, w]

  sample::Text2ImageInputs inputs;
  inputs.prompt_embeds = positive.prompt_embeds;
  inputs.pooled_prompt_embeds = positive.pooled_prompt_embeds;
  inputs.negative_prompt_embeds = negative.prompt_embeds;
  inputs.negative_pooled_prompt_embeds = negative.pooled_prompt_embeds;
  inputs.time_ids = sample::add_time_ids(sample::SizeConditioning::for_output(options.height, options.width), 1,
                                         model.dtype, model.device); // [1, 6]
  inputs.latents = noise.to(model.device, model.dtype);
  inputs.steps = options.steps;
  inputs.guidance_scale = options.guidance_scale;

  const auto on_step = [&](int64_t step, int64_t total) {
    throw_if_cancelled(cancel);
    if (!progress) return;
    if (step < total) progress(Progress{"denoising", step, total, ""});
    else progress(Progress{"decoding", 0, 1, ""});
  };
  const sample::Text2ImageResult result =
      sample::text_to_image(model.unet, model.vae, model.scheduler, inputs, on_step);
  if (progress) progress(Progress{"decoding", 1, 1, ""});

  Image image;
  image.width = options.width;
  image.height = options.height;
  image.rgb = sample::image_to_rgb8(result.image);
  return image;
}

} // namespace

// ---------------------------------------------------------------------------
// Models

std::shared_ptr<Model> load_model(const LoadOptions& options, const CancelFlag& cancel) {
  return load_model_from(options, cancel);
}

ModelInfo describe(const Model& model) {
  ModelInfo info;
  info.source_layout = model.source_layout;
  info.unet_parameters = models::count_parameters(*model.unet);
  info.vae_parameters = models::count_parameters(*model.vae);
  info.text_encoder_parameters = models::count_parameters(*model.text_encoder);
  info.text_encoder_2_parameters = models::count_parameters(*model.text_encoder_2);
  info.runtime = model.runtime;
  return info;
}

// ---------------------------------------------------------------------------
// Prompts

TokenIds tokenize(const Model& model, const std::string& prompt) {
  return TokenIds{model.tokenizer.frame_sdxl(prompt), model.tokenizer_2.frame_sdxl(prompt)};
}

PromptEmbeddings encode_prompt(const Model& model, const std::string& prompt) {
  std::shared_lock<std::shared_mutex> lock(model.lora_mutex);
  torch::NoGradGuard no_grad;
  // Forward passes do not change the modules; the holders are copied only to call them.
  models::ClipTextModel text_encoder = model.text_encoder;
  models::ClipTextModel text_encoder_2 = model.text_encoder_2;
  const sample::PromptEncoding encoding =
      sample::encode_prompts(model.tokenizer, model.tokenizer_2, text_encoder, text_encoder_2, {prompt});
  return PromptEmbeddings{to_host(encoding.prompt_embeds), to_host(encoding.pooled_prompt_embeds)};
}

// ---------------------------------------------------------------------------
// Generation

Image generate(Model& model, const GenerateOptions& options, const ProgressFn& progress, const CancelFlag& cancel) {
  validate(model, options);
  throw_if_cancelled(cancel);
  if (options.loras.empty()) {
    std::shared_lock<std::shared_mutex> lock(model.lora_mutex);
    return generate_locked(model, options, progress, cancel);
  }
  // Read and match the files before taking the lock, so a bad file fails fast.
  const lora::LoraTargets targets =
      lora::lora_targets(model.unet.get(), model.text_encoder.get(), model.text_encoder_2.get());
  std::vector<lora::LoraFile> files;
  for (const auto& spec : options.loras) files.push_back(lora::load_lora_file(spec.path, targets));
  throw_if_cancelled(cancel);

  std::unique_lock<std::shared_mutex> lock(model.lora_mutex);
  AttachedLoras attached(model);
  for (size_t i = 0; i < files.size(); ++i)
    lora::apply_lora(model.unet.get(), model.text_encoder.get(), model.text_encoder_2.get(), files[i],
                     options.loras[i].scale);
  return generate_locked(model, options, progress, cancel);
}

} // namespace sdxl

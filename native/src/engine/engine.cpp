// engine.h's model-level API: load, describe, tokenize, encode, generate.
// (runtime.cpp holds the runtime helpers; verify.cpp the fixture check.)
#include "sdxl/engine.h"

#include <algorithm>  // std::find
#include <cmath>      // std::isfinite
#include <filesystem> // std::filesystem::file_size, last_write_time
#include <set>        // LoraCheck's distinct values
#include <stdexcept>  // std::invalid_argument
#include <utility>    // std::pair, std::move

#include <ATen/CPUGeneratorImpl.h> // at::detail::createCPUGenerator

#include "engine/model.h"          // Model, load_model_from
#include "lora/apply.h"            // lora::prepare_adapters, fit_problems, lora_targets
#include "lora/lora_file.h"        // lora::load_lora_file
#include "models/state_dict.h"     // models::count_parameters
#include "sample/pipeline.h"       // sample::text_to_image, image_to_rgb8
#include "sample/conditioning.h"   // sample::TextConditioner, SizeConditioning
#include "sample/sampler.h"         // sample::sampler_names

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

constexpr int64_t kMaxImagesPerCall = 4;

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
  if (options.num_images < 1 || options.num_images > kMaxImagesPerCall)
    throw std::invalid_argument("Expected num_images between 1 and " + std::to_string(kMaxImagesPerCall) +
                                " but received " + std::to_string(options.num_images));
  const auto& names = sample::sampler_names();
  if (std::find(names.begin(), names.end(), options.sampler) == names.end())
    throw std::invalid_argument("Expected sampler euler, euler_a or dpmpp_2m_karras but received \"" + options.sampler + "\"");
  for (const auto& [name, value] : {std::pair<const char*, int64_t>{"original_width", options.original_width},
                                    {"original_height", options.original_height}, {"crop_top", options.crop_top},
                                    {"crop_left", options.crop_left}, {"target_width", options.target_width},
                                    {"target_height", options.target_height}}) {
    if (value < 0) throw std::invalid_argument(std::string("Expected ") + name + " >= 0 but received " + std::to_string(value));
  }
  for (const auto& spec : options.loras) {
    if (!std::isfinite(spec.scale)) throw std::invalid_argument("Expected a finite scale for LoRA " + spec.path);
  }
  sample::check_clip_skip(model.family, options.clip_skip, model.text_encoder->config().num_hidden_layers);
  const bool size_conditioned = options.original_width || options.original_height || options.crop_top ||
                                options.crop_left || options.target_width || options.target_height;
  if (size_conditioned && model.family != models::ModelFamily::Sdxl)
    throw std::invalid_argument("size conditioning (original, crop and target sizes) is SDXL's; an " +
                                std::string(models::family_name(model.family)) + " model has none");
}

// The size conditioning diffusers builds from the options (0 = its default).
sample::SizeConditioning size_conditioning(const GenerateOptions& options) {
  sample::SizeConditioning size = sample::SizeConditioning::for_output(options.height, options.width);
  if (options.original_height > 0) size.original_height = options.original_height;
  if (options.original_width > 0) size.original_width = options.original_width;
  if (options.target_height > 0) size.target_height = options.target_height;
  if (options.target_width > 0) size.target_width = options.target_width;
  size.crop_top = options.crop_top;
  size.crop_left = options.crop_left;
  return size;
}

// The cache key of a LoRA file: its hash when the caller gave one, else what identifies the file on disk.
std::string lora_cache_key(const LoraSpec& spec) {
  if (!spec.sha256.empty()) return "sha256:" + spec.sha256;
  std::error_code error;
  const auto size = std::filesystem::file_size(spec.path, error);
  const auto modified = std::filesystem::last_write_time(spec.path, error);
  return "file:" + spec.path + ":" + std::to_string(size) + ":" +
         std::to_string(modified.time_since_epoch().count());
}

// The LoRAs of one call, parsed (or found in the model's cache) and ready to overlay.
std::vector<models::ActiveAdapter> prepare_call_loras(Model& model, const std::vector<LoraSpec>& specs) {
  std::vector<models::ActiveAdapter> adapters;
  for (const LoraSpec& spec : specs) {
    const auto set = model.lora_cache->get(lora_cache_key(spec), [&] {
      const lora::LoraTargets targets =
          lora::lora_targets(model.unet.get(), module_or_null(model.text_encoder), module_or_null(model.text_encoder_2));
      const lora::LoraFile file = lora::load_lora_file(spec.path, targets);
      return lora::prepare_adapters(model.unet.get(), module_or_null(model.text_encoder), module_or_null(model.text_encoder_2), file);
    });
    adapters.push_back({set, spec.scale});
  }
  return adapters;
}

// Prompt encoding, the denoising loop and decoding, with this thread's LoRA overlay in place.
std::vector<Image> generate_images(Model& model, const GenerateOptions& options, const ProgressFn& progress,
                                   const CancelFlag& cancel) {
  torch::NoGradGuard no_grad;
  const int64_t batch = options.num_images;
  // Encoded once and repeated: every image of the call has the same conditioning.
  const std::unique_ptr<sample::TextConditioner> conditioner = text_conditioner(model, options.clip_skip);
  const models::UNetConditioning positive = conditioner->encode({options.prompt});
  const models::UNetConditioning negative = conditioner->unconditional({options.negative_prompt}, positive);
  throw_if_cancelled(cancel);

  const int64_t factor = vae_scale_factor(model);
  const int64_t latent_channels = model.unet->config().in_channels;
  // Each image from its own CPU generator seeded seed + i, as diffusers draws a generator
  // list: its starting noise, then (euler_a) its step noise. Image i of a call is
  // therefore the one image of a call with seed + i.
  std::vector<at::Generator> generators;
  std::vector<torch::Tensor> noise;
  for (int64_t i = 0; i < batch; ++i) {
    generators.push_back(at::detail::createCPUGenerator(options.seed + static_cast<uint64_t>(i)));
    noise.push_back(torch::randn({1, latent_channels, options.height / factor, options.width / factor},
                                 generators.back(), torch::TensorOptions().dtype(torch::kFloat32))); // [1, 4, h, w]
  }

  sample::Text2ImageInputs inputs;
  inputs.positive = positive.repeat(batch); // batch B
  inputs.positive.time_ids = conditioner->size_ids(size_conditioning(options), batch, model.dtype, model.device); // [B, 6] (SDXL)
  inputs.negative = negative.repeat(batch);
  inputs.latents = torch::cat(noise, 0).to(model.device, model.dtype); // [B, 4, h, w]
  inputs.steps = options.steps;
  inputs.guidance_scale = options.guidance_scale;
  inputs.sampler = options.sampler;
  inputs.generators = generators;

  const auto on_step = [&](int64_t step, int64_t total) {
    throw_if_cancelled(cancel);
    if (!progress) return;
    if (step < total) progress(Progress{"denoising", step, total, ""});
    else progress(Progress{"decoding", 0, 1, ""});
  };
  const sample::Text2ImageResult result =
      sample::text_to_image(model.unet, model.vae, model.scheduler, inputs, on_step);
  if (progress) progress(Progress{"decoding", 1, 1, ""});

  std::vector<Image> images;
  for (int64_t i = 0; i < batch; ++i) {
    Image image;
    image.width = options.width;
    image.height = options.height;
    image.rgb = sample::image_to_rgb8(result.image.slice(0, i, i + 1));
    images.push_back(std::move(image));
  }
  return images;
}

} // namespace

// ---------------------------------------------------------------------------
// Models

std::shared_ptr<Model> load_model(const LoadOptions& options, const CancelFlag& cancel) {
  return load_model_from(options, cancel);
}

ModelInfo describe(const Model& model) {
  ModelInfo info;
  info.family = models::family_name(model.family);
  info.prediction_type = model.scheduler.prediction_type;
  info.source_layout = model.source_layout;
  info.default_resolution = default_resolution(model.unet->config(), model.vae->config());
  info.text_encoder_layers = model.text_encoder->config().num_hidden_layers;
  info.unet_parameters = models::count_parameters(*model.unet);
  info.vae_parameters = models::count_parameters(*model.vae);
  info.text_encoder_parameters = models::count_parameters(*model.text_encoder);
  if (!model.text_encoder_2.is_empty()) info.text_encoder_2_parameters = models::count_parameters(*model.text_encoder_2);
  info.runtime = model.runtime;
  return info;
}

// ---------------------------------------------------------------------------
// Prompts

TokenIds tokenize(const Model& model, const std::string& prompt) {
  return TokenIds{model.tokenizer.frame(prompt), model.tokenizer_2 ? model.tokenizer_2->frame(prompt) : std::vector<int64_t>{}};
}

PromptEmbeddings encode_prompt(const Model& model, const std::string& prompt, int64_t clip_skip) {
  torch::NoGradGuard no_grad;
  // Forward passes do not change the modules.
  const models::UNetConditioning encoded = text_conditioner(model, clip_skip)->encode({prompt});
  return PromptEmbeddings{to_host(encoded.context),
                          encoded.text_embeds.defined() ? to_host(encoded.text_embeds) : HostTensor{{0}, {}}};
}

// ---------------------------------------------------------------------------
// Generation

std::vector<Image> generate(Model& model, const GenerateOptions& options, const ProgressFn& progress,
                            const CancelFlag& cancel) {
  validate(model, options);
  throw_if_cancelled(cancel);
  // Read and match the files first, so a bad file fails before any denoising.
  const std::vector<models::ActiveAdapter> adapters = prepare_call_loras(model, options.loras);
  throw_if_cancelled(cancel);
  const models::ActiveAdaptersScope scope(adapters.empty() ? nullptr : &adapters);
  return generate_images(model, options, progress, cancel);
}

LoraCacheInfo lora_cache_info(const Model& model) {
  const LoraCacheStats stats = model.lora_cache->stats();
  return LoraCacheInfo{stats.entries, stats.bytes, stats.hits, stats.misses};
}

// ---------------------------------------------------------------------------
// LoRA check

LoraCheck check_lora(const Model& model, const std::string& path) {
  const lora::LoraTargets targets =
      lora::lora_targets(model.unet.get(), module_or_null(model.text_encoder), module_or_null(model.text_encoder_2));
  std::vector<std::string> problems; // keys naming no module, modules missing half a pair
  const lora::LoraFile file = lora::load_lora_file(path, targets, &problems);
  LoraCheck check;
  check.layout = lora::to_string(file.layout);
  check.modules = static_cast<int64_t>(file.modules.size());
  std::set<std::string> components;
  std::set<int64_t> ranks;
  std::set<double> alphas;
  for (const auto& module : file.modules) {
    components.insert(module.component);
    ranks.insert(module.rank);
    alphas.insert(module.alpha);
  }
  check.components.assign(components.begin(), components.end());
  check.ranks.assign(ranks.begin(), ranks.end());
  check.alphas.assign(alphas.begin(), alphas.end());
  check.problems = std::move(problems);
  for (auto& problem : lora::fit_problems(model.unet.get(), module_or_null(model.text_encoder), module_or_null(model.text_encoder_2), file))
    check.problems.push_back(std::move(problem));
  if (check.modules == 0 && check.problems.empty())
    throw std::invalid_argument("LoRA file " + path + " holds no LoRA modules");
  return check;
}

} // namespace sdxl

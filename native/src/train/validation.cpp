// Validation loss and sample images; see validation.h.
#include "train/validation.h"

#include <algorithm>  // std::max
#include <cstdio>     // std::snprintf
#include <filesystem> // create_directories

#include "sample/pipeline.h"  // text_to_image, image_to_rgb8
#include "train/ddpm_loss.h"  // ddpm_loss
#include "train/png_writer.h"       // write_png

namespace sdxl::train {

namespace {
// Seeds the validation triples apart from the training stream (any fixed odd constant).
constexpr uint64_t kValidationSeedSalt = 0x9E3779B97F4A7C15ull;

// Puts every module in eval mode (LoRA dropout off) for the guard's lifetime.
class EvalModeGuard {
 public:
  explicit EvalModeGuard(Model& model) : model_(model), was_training_(model.unet->is_training()) {
    set(false);
  }
  ~EvalModeGuard() { set(was_training_); }

 private:
  void set(bool training) {
    model_.unet->train(training);
    if (!model_.text_encoder.is_empty()) model_.text_encoder->train(training);
    if (!model_.text_encoder_2.is_empty()) model_.text_encoder_2->train(training);
  }
  Model& model_;
  bool was_training_;
};
} // namespace

const std::vector<CachedImage>& validation_images(const TrainingSet& set) {
  return set.held_out.empty() ? set.images : set.held_out;
}

ValidationSet make_validation_set(Model& model, const TrainOptions& options, const TrainingSet& set,
                                  const sample::TextConditioner* frozen_conditioner) {
  torch::NoGradGuard no_grad;
  ValidationSet validation;
  const std::vector<CachedImage>& images = validation_images(set);
  // With held-out images, each is measured once (and some again when they are fewer than
  // validation_loss_samples); 0 samples turns the loss off either way.
  const int64_t count = options.validation_loss_samples == 0 || set.held_out.empty()
                            ? options.validation_loss_samples
                            : std::max<int64_t>(options.validation_loss_samples, static_cast<int64_t>(images.size()));
  const int64_t timesteps = model.scheduler.num_train_timesteps;
  for (int64_t k = 0; k < count; ++k) {
    ValidationTriple triple;
    triple.image = k % static_cast<int64_t>(images.size());
    // Midpoints of `count` equal slices of [0, T): every noise level is represented.
    triple.timestep = torch::tensor({(2 * k + 1) * timesteps / (2 * count)}, torch::kInt64);
    triple.noise_seed = (options.seed ^ kValidationSeedSalt) + static_cast<uint64_t>(k);
    validation.triples.push_back(std::move(triple));
  }
  validation.prompts = options.validation_prompts;
  if (frozen_conditioner != nullptr) {
    for (const std::string& prompt : validation.prompts) validation.positive.push_back(frozen_conditioner->encode({prompt}));
    if (!validation.positive.empty())
      validation.negative = frozen_conditioner->unconditional({""}, validation.positive.front());
  }
  return validation;
}

double validation_loss(Model& model, const TrainingSet& set, const ValidationSet& validation,
                       const torch::Tensor& alphas_cumprod, const sample::TextConditioner* conditioner) {
  if (validation.triples.empty()) return 0;
  torch::NoGradGuard no_grad;
  EvalModeGuard eval(model);
  double sum = 0;
  for (const ValidationTriple& triple : validation.triples) {
    const CachedImage& image = validation_images(set)[triple.image];
    DdpmLossInputs inputs;
    const CachedLatents cached = read_latents(image, false);
    auto generator = at::detail::createCPUGenerator(triple.noise_seed);
    const torch::Tensor noise = torch::randn(cached.latents.unsqueeze(0).sizes(), generator, torch::kFloat32);
    inputs.latents = cached.latents.unsqueeze(0).to(model.device, model.dtype);
    inputs.noise = noise.to(model.device, model.dtype);
    inputs.timesteps = triple.timestep.to(model.device);
    inputs.conditioning = condition_batch(conditioner, set.prompts, {image.caption}).to(model.device, model.dtype);
    if (model.unet->config().has_added_embedding()) // SDXL: the image's own size ids
      inputs.conditioning.time_ids = cached.time_ids.unsqueeze(0).to(model.device, model.dtype);
    inputs.prediction_type = model.scheduler.prediction_type;
    sum += ddpm_loss(model.unet, alphas_cumprod, inputs).loss.item<double>();
  }
  return sum / static_cast<double>(validation.triples.size());
}

ValidationImages write_validation_images(Model& model, const TrainOptions& options, const ValidationSet& validation,
                                         const sample::TextConditioner* conditioner, const std::string& name,
                                         int64_t per_prompt, const CancelFlag& cancel) {
  ValidationImages written;
  if (validation.prompts.empty()) return written;
  torch::NoGradGuard no_grad;
  EvalModeGuard eval(model);
  const auto directory = std::filesystem::path(options.output_dir) / "samples";
  std::filesystem::create_directories(directory);
  const int64_t factor = vae_scale_factor(model);
  const int64_t size = options.resolution;
  const auto prompts = static_cast<int64_t>(validation.prompts.size());
  for (int64_t i = 0; i < prompts; ++i) { // prompt by prompt, as the names sort
    for (int64_t k = 0; k < per_prompt; ++k) {
      throw_if_cancelled(cancel);
      sample::Text2ImageInputs inputs;
      if (conditioner != nullptr) { // trained encoders: encode with their current LoRAs
        inputs.positive = conditioner->encode({validation.prompts[i]});
        inputs.negative = conditioner->unconditional({""}, inputs.positive);
      } else {
        inputs.positive = validation.positive[i];
        inputs.negative = validation.negative;
      }
      if (model.unet->config().has_added_embedding())
        inputs.positive.time_ids =
            sample::add_time_ids(sample::SizeConditioning::for_output(size, size), 1, model.dtype, model.device); // [1, 6]
      // One seed per prompt (and image), fixed across the run, so samples at different steps compare.
      auto generator = at::detail::createCPUGenerator(options.validation_seed + static_cast<uint64_t>(i + k * prompts));
      inputs.latents = torch::randn({1, model.unet->config().in_channels, size / factor, size / factor}, generator,
                                    torch::kFloat32)
                           .to(model.device, model.dtype);
      inputs.steps = options.validation_steps;
      inputs.guidance_scale = options.validation_guidance_scale;
      const auto result = sample::text_to_image(model.unet, model.vae, model.scheduler, inputs,
                                                [&](int64_t, int64_t) { throw_if_cancelled(cancel); });
      char suffix[32];
      if (per_prompt == 1) std::snprintf(suffix, sizeof suffix, "-%02lld.png", static_cast<long long>(i));
      else std::snprintf(suffix, sizeof suffix, "-%02lld-%02lld.png", static_cast<long long>(i), static_cast<long long>(k));
      const std::string path = (directory / (name + suffix)).string();
      std::vector<uint8_t> rgb = sample::image_to_rgb8(result.image);
      write_png(path, size, size, rgb);
      written.paths.push_back(path);
      const torch::Tensor pixels = torch::from_blob(rgb.data(), {size, size, 3}, torch::kUInt8).permute({2, 0, 1}).clone();
      written.images.push_back(metrics::ScoredImage{pixels, validation.prompts[i]}); // [3, size, size]
    }
  }
  return written;
}

std::map<std::string, double> quality_metrics(metrics::Evaluator& evaluator,
                                              const std::vector<metrics::ScoredImage>& images,
                                              const std::vector<std::string>& wanted, std::string& message) {
  std::map<std::string, double> results;
  if (wanted.empty()) return results;
  const metrics::Scores scores = evaluator.score(images, wanted);
  for (const auto& [key, value] : scores.values) results["metric_" + key] = value;
  for (const auto& [metric, why] : scores.unavailable) {
    results["unavailable_" + metric] = 1;
    message += (message.empty() ? "" : "; ") + metric + " unavailable: " + why;
  }
  return results;
}

} // namespace sdxl::train

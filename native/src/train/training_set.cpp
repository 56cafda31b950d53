// Caching of latents and prompt embeddings; see training_set.h.
#include "train/training_set.h"

#include <map> // caption -> index

#include <ATen/CPUGeneratorImpl.h> // at::detail::createCPUGenerator

#include "train/image_prep.h" // prepare_image

namespace sdxl::train {

namespace {

// Seeds the held-out images' latent draws apart from the training stream (any fixed odd constant).
constexpr uint64_t kHeldOutSeedSalt = 0xD1B54A32D192ED03ull;

// Distinct captions in first-seen order, then "" for caption dropout.
PromptSet collect_prompts(const TrainOptions& options, std::vector<int64_t>& caption_of_image) {
  PromptSet prompts;
  std::map<std::string, int64_t> index_of;
  for (const auto* list : {&options.images, &options.class_images, &options.validation_images}) {
    for (const TrainImage& image : *list) {
      auto [it, inserted] = index_of.emplace(image.caption, static_cast<int64_t>(prompts.texts.size()));
      if (inserted) prompts.texts.push_back(image.caption);
      caption_of_image.push_back(it->second);
    }
  }
  auto [it, inserted] = index_of.emplace("", static_cast<int64_t>(prompts.texts.size()));
  if (inserted) prompts.texts.push_back("");
  prompts.empty_index = it->second;
  return prompts;
}

torch::Tensor time_ids_of(const PreparedImage& prepared) {
  return torch::tensor({static_cast<float>(prepared.original_height), static_cast<float>(prepared.original_width),
                        static_cast<float>(prepared.crop_top), static_cast<float>(prepared.crop_left),
                        static_cast<float>(prepared.bucket.height), static_cast<float>(prepared.bucket.width)},
                       torch::kFloat32); // [6]
}

} // namespace

TrainingSet build_training_set(Model& model, const sample::TextConditioner& conditioner, const TrainOptions& options,
                               bool encode_prompts, at::Generator& generator,
                               const std::function<void(int64_t, int64_t)>& on_image, const CancelFlag& cancel) {
  torch::NoGradGuard no_grad;
  TrainingSet set;
  set.buckets = make_buckets(options.resolution, options.bucket_step, options.min_bucket_side, options.max_bucket_side);

  std::vector<int64_t> caption_of_image;
  set.prompts = collect_prompts(options, caption_of_image);
  for (const std::string& text : set.prompts.texts) {
    throw_if_cancelled(cancel);
    if (encode_prompts) {
      set.prompts.encoded.push_back(conditioner.encode({text})); // context [1, 77, C] (+ text_embeds [1, P])
    } else {
      set.prompts.ids.push_back(conditioner.token_ids({text})); // [1, 77] per tokenizer
    }
  }

  const double scaling_factor = model.vae->config().scaling_factor;
  const auto vae_dtype = model.vae->parameters().front().scalar_type();
  // Instance images first, then class images (without them the draws are as before), then
  // the held-out ones, whose latents come from a stream of their own: holding images out
  // leaves every draw of the training (these latents' and the loop's) as it was.
  auto held_out_generator = at::detail::createCPUGenerator(options.seed ^ kHeldOutSeedSalt);
  struct Part {
    const std::vector<TrainImage>& images;
    std::vector<CachedImage>& cached;
    bool flips; // held-out images are only ever seen as they are: no mirrored copy
    at::Generator& generator;
  };
  const Part parts[] = {{options.images, set.images, options.random_flip, generator},
                        {options.class_images, set.class_images, options.random_flip, generator},
                        {options.validation_images, set.held_out, false, held_out_generator}};
  int64_t total = 0;
  for (const Part& part : parts) total += static_cast<int64_t>(part.images.size());
  int64_t done = 0;
  for (const Part& part : parts) {
    for (const TrainImage& image : part.images) {
      throw_if_cancelled(cancel);
      CachedImage cached;
      cached.bucket = assign_bucket(set.buckets, image.width, image.height);
      cached.caption = caption_of_image[static_cast<size_t>(done)];
      for (int flip = 0; flip < (part.flips ? 2 : 1); ++flip) {
        const PreparedImage prepared =
            prepare_image(image.rgb.data(), image.width, image.height, set.buckets[cached.bucket], flip == 1);
        const torch::Tensor pixels = prepared.pixels.unsqueeze(0).to(model.device, vae_dtype); // [1, 3, H, W]
        const models::LatentDistribution dist = model.vae->encode(pixels);
        // Drawn on the CPU from the run's generator, so the cache is the same on every device.
        const torch::Tensor noise = torch::randn(dist.mean.sizes(), part.generator, torch::kFloat32);
        const torch::Tensor latents = dist.sample(noise.to(model.device, dist.mean.scalar_type())) * scaling_factor;
        cached.latents[flip] = latents[0].to(torch::kFloat32); // [4, h, w]
        cached.time_ids[flip] = time_ids_of(prepared);
      }
      part.cached.push_back(std::move(cached));
      ++done;
      if (on_image) on_image(done, total);
    }
  }
  return set;
}

models::UNetConditioning condition_batch(const sample::TextConditioner* conditioner, const PromptSet& prompts,
                                         const std::vector<int64_t>& prompt_indices) {
  if (conditioner == nullptr) {
    models::UNetConditioning batch = prompts.encoded.at(prompt_indices.at(0));
    for (size_t i = 1; i < prompt_indices.size(); ++i) batch = batch.cat(prompts.encoded.at(prompt_indices[i]));
    return batch; // context [B, 77, C] (+ text_embeds [B, P])
  }
  std::vector<torch::Tensor> ids;
  const size_t tokenizers = prompts.ids.at(prompt_indices.at(0)).size();
  for (size_t k = 0; k < tokenizers; ++k) {
    std::vector<torch::Tensor> rows;
    for (int64_t index : prompt_indices) rows.push_back(prompts.ids.at(index).at(k));
    ids.push_back(torch::cat(rows, 0)); // [B, 77]
  }
  return conditioner->encode_ids(ids);
}

} // namespace sdxl::train

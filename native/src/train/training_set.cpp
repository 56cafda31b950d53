// Caching of latents and prompt embeddings; see training_set.h.
#include "train/training_set.h"

#include <map> // caption -> index

#include "sample/prompt_encoding.h" // encode_prompts, encode_token_ids
#include "train/image_prep.h"       // prepare_image

namespace sdxl::train {

namespace {

// Distinct captions in first-seen order, then "" for caption dropout.
PromptSet collect_prompts(const TrainOptions& options, std::vector<int64_t>& caption_of_image) {
  PromptSet prompts;
  std::map<std::string, int64_t> index_of;
  for (const auto* list : {&options.images, &options.class_images}) {
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

TrainingSet build_training_set(Model& model, const TrainOptions& options, bool encode_prompts,
                               at::Generator& generator, const std::function<void(int64_t, int64_t)>& on_image,
                               const CancelFlag& cancel) {
  torch::NoGradGuard no_grad;
  TrainingSet set;
  set.buckets = make_buckets(options.resolution, options.bucket_step, options.min_bucket_side, options.max_bucket_side);

  std::vector<int64_t> caption_of_image;
  set.prompts = collect_prompts(options, caption_of_image);
  for (const std::string& text : set.prompts.texts) {
    throw_if_cancelled(cancel);
    if (encode_prompts) {
      const sample::PromptEncoding encoded = sample::encode_prompts(model.tokenizer, model.tokenizer_2, model.text_encoder,
                                                                    model.text_encoder_2, {text});
      set.prompts.prompt_embeds.push_back(encoded.prompt_embeds[0]); // [77, C]
      set.prompts.pooled.push_back(encoded.pooled_prompt_embeds[0]); // [P]
    } else {
      set.prompts.ids.push_back(torch::tensor(model.tokenizer.frame_sdxl(text), torch::kInt64));
      set.prompts.ids_2.push_back(torch::tensor(model.tokenizer_2.frame_sdxl(text), torch::kInt64));
    }
  }

  const double scaling_factor = model.vae->config().scaling_factor;
  const auto vae_dtype = model.vae->parameters().front().scalar_type();
  // Instance images first, then class images: without class images the draws are as before.
  const int64_t total = static_cast<int64_t>(options.images.size() + options.class_images.size());
  for (int64_t i = 0; i < total; ++i) {
    throw_if_cancelled(cancel);
    const bool is_class = i >= static_cast<int64_t>(options.images.size());
    const TrainImage& image = is_class ? options.class_images[i - options.images.size()] : options.images[i];
    CachedImage cached;
    cached.bucket = assign_bucket(set.buckets, image.width, image.height);
    cached.caption = caption_of_image[i];
    for (int flip = 0; flip < (options.random_flip ? 2 : 1); ++flip) {
      const PreparedImage prepared =
          prepare_image(image.rgb.data(), image.width, image.height, set.buckets[cached.bucket], flip == 1);
      const torch::Tensor pixels = prepared.pixels.unsqueeze(0).to(model.device, vae_dtype); // [1, 3, H, W]
      const models::LatentDistribution dist = model.vae->encode(pixels);
      // Drawn on the CPU from the run's generator, so the cache is the same on every device.
      const torch::Tensor noise = torch::randn(dist.mean.sizes(), generator, torch::kFloat32);
      const torch::Tensor latents = dist.sample(noise.to(model.device, dist.mean.scalar_type())) * scaling_factor;
      cached.latents[flip] = latents[0].to(torch::kFloat32); // [4, h, w]
      cached.time_ids[flip] = time_ids_of(prepared);
    }
    (is_class ? set.class_images : set.images).push_back(std::move(cached));
    if (on_image) on_image(i + 1, total);
  }
  return set;
}

BatchConditioning condition_batch(Model& model, const PromptSet& prompts, const std::vector<int64_t>& prompt_indices,
                                  bool encoders_trained) {
  BatchConditioning conditioning;
  if (!encoders_trained) {
    std::vector<torch::Tensor> embeds, pooled;
    for (int64_t index : prompt_indices) {
      embeds.push_back(prompts.prompt_embeds[index]);
      pooled.push_back(prompts.pooled[index]);
    }
    conditioning.prompt_embeds = torch::stack(embeds); // [B, 77, C]
    conditioning.pooled = torch::stack(pooled);        // [B, P]
    return conditioning;
  }
  std::vector<torch::Tensor> ids, ids_2;
  for (int64_t index : prompt_indices) {
    ids.push_back(prompts.ids[index]);
    ids_2.push_back(prompts.ids_2[index]);
  }
  const sample::PromptEncoding encoded = sample::encode_token_ids(
      model.text_encoder, model.text_encoder_2, torch::stack(ids).to(model.device), torch::stack(ids_2).to(model.device));
  conditioning.prompt_embeds = encoded.prompt_embeds;
  conditioning.pooled = encoded.pooled_prompt_embeds;
  return conditioning;
}

} // namespace sdxl::train

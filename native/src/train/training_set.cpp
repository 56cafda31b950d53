// Caching of latents and prompt embeddings on disk; see training_set.h.
#include "train/training_set.h"

#include <map> // caption -> index

#include <ATen/CPUGeneratorImpl.h> // at::detail::createCPUGenerator

#include "train/image_prep.h"    // prepare_image
#include "train/lora_metadata.h" // Sha256

namespace sdxl::train {

namespace {

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

// The caller's key, else the pixels' own hash.
std::string key_of(const TrainImage& image) {
  if (!image.key.empty()) return image.key;
  Sha256 hash;
  const int64_t size[2] = {image.width, image.height};
  hash.update(size, sizeof size);
  hash.update(image.rgb.data(), image.rgb.size());
  return "rgb-" + hash.hex_digest();
}

const TrainImage& image_at(const TrainOptions& options, size_t index) {
  for (const auto* list : {&options.images, &options.class_images, &options.validation_images}) {
    if (index < list->size()) return (*list)[index];
    index -= list->size();
  }
  throw std::out_of_range("image index beyond the training, class and held-out images");
}

// "images[3]", "class_images[0]", "validation_images[1]": how options_check names them.
std::string field_of(const TrainOptions& options, size_t index) {
  const std::pair<const std::vector<TrainImage>*, const char*> lists[] = {
      {&options.images, "images"}, {&options.class_images, "class_images"}, {&options.validation_images, "validation_images"}};
  for (const auto& [list, name] : lists) {
    if (index < list->size()) return std::string(name) + "[" + std::to_string(index) + "]";
    index -= list->size();
  }
  return "images";
}

} // namespace

Pixels pixels_of(const TrainOptions& options, size_t index) {
  const TrainImage& image = image_at(options, index);
  if (!image.rgb.empty()) return Pixels{image.width, image.height, image.rgb};
  const std::string field = field_of(options, index) + " (\"" + image.name + "\")";
  if (!options.load_pixels) throw std::invalid_argument(field + ": no rgb and no load_pixels to read it with");
  Pixels pixels = options.load_pixels(index);
  if (pixels.width <= 0 || pixels.height <= 0 ||
      pixels.rgb.size() != static_cast<size_t>(pixels.width * pixels.height * 3))
    throw std::invalid_argument(field + ": load_pixels gave " + std::to_string(pixels.rgb.size()) + " bytes for " +
                                std::to_string(pixels.width) + " x " + std::to_string(pixels.height) + " x 3");
  return pixels;
}

TrainingSet build_training_set(Model& model, const sample::TextConditioner& conditioner, const TrainOptions& options,
                               const TrainingCache& cache, bool encode_prompts,
                               const std::function<void(int64_t, int64_t, const CacheCounts&)>& on_encoded,
                               const CancelFlag& cancel) {
  torch::NoGradGuard no_grad;
  TrainingSet set;
  const BucketPlan plan(options.resolution, options.min_resolution, options.bucket_step, options.min_bucket_side,
                        options.max_bucket_side);
  set.buckets = plan.buckets();

  std::vector<int64_t> caption_of_image;
  set.prompts = collect_prompts(options, caption_of_image);

  // Each image's entries, and which of them the cache lacks (held-out images are only
  // ever seen as they are: no mirrored copy).
  struct Part {
    const std::vector<TrainImage>& images;
    std::vector<CachedImage>& cached;
    bool flips;
  };
  const Part parts[] = {{options.images, set.images, options.random_flip},
                        {options.class_images, set.class_images, options.random_flip},
                        {options.validation_images, set.held_out, false}};
  struct Missing {
    size_t index; // one numbering over the three lists
    const CachedImage* cached; // stable: each list's storage was reserved
    std::string key;
  };
  std::vector<Missing> missing_images;
  size_t index = 0;
  for (const Part& part : parts) {
    part.cached.reserve(part.images.size());
    for (const TrainImage& image : part.images) {
      const int64_t bucket = plan.assign(image.width, image.height);
      if (bucket < 0) { // below min_resolution
        set.skipped.push_back(image.name);
        ++index;
        continue;
      }
      CachedImage cached;
      cached.bucket = static_cast<size_t>(bucket);
      cached.caption = caption_of_image[index];
      const std::string key = key_of(image);
      bool missing = false;
      for (int flip = 0; flip < (part.flips ? 2 : 1); ++flip) {
        cached.latents[flip] = cache.latents_path(key, set.buckets[cached.bucket], flip == 1);
        if (TrainingCache::has(cached.latents[flip])) {
          ++set.counts.latents_reused;
        } else {
          missing = true;
        }
      }
      part.cached.push_back(std::move(cached));
      if (missing) missing_images.push_back(Missing{index, &part.cached.back(), key});
      ++index;
    }
  }
  if (set.images.empty())
    throw std::invalid_argument("images: every one of the " + std::to_string(options.images.size()) +
                                " images is below min_resolution (" + std::to_string(options.min_resolution) + ")");
  std::vector<int64_t> missing_prompts;
  for (size_t p = 0; p < set.prompts.texts.size(); ++p) {
    if (!encode_prompts) continue;
    set.prompts.encoded.push_back(cache.prompt_path(set.prompts.texts[p]));
    if (TrainingCache::has(set.prompts.encoded.back())) {
      ++set.counts.prompts_reused;
    } else {
      missing_prompts.push_back(static_cast<int64_t>(p));
    }
  }

  const int64_t total = static_cast<int64_t>(missing_images.size() + missing_prompts.size());
  int64_t done = 0;
  if (on_encoded) on_encoded(done, total, set.counts);
  const double scaling_factor = model.vae->config().scaling_factor;
  const auto vae_dtype = model.vae->parameters().front().scalar_type();
  for (const Missing& entry : missing_images) {
    throw_if_cancelled(cancel);
    const CachedImage& cached = *entry.cached;
    const Pixels pixels = pixels_of(options, entry.index);
    const Bucket& bucket = set.buckets[cached.bucket];
    for (int flip = 0; flip < 2 && !cached.latents[flip].empty(); ++flip) {
      if (TrainingCache::has(cached.latents[flip])) continue;
      const PreparedImage prepared = prepare_image(pixels.rgb.data(), pixels.width, pixels.height, bucket, flip == 1);
      const torch::Tensor input = prepared.pixels.unsqueeze(0).to(model.device, vae_dtype); // [1, 3, H, W]
      const models::LatentDistribution dist = model.vae->encode(input);
      // Drawn on the CPU from the entry's own seed: the same sample on every device and in every run.
      auto generator = at::detail::createCPUGenerator(TrainingCache::latent_seed(entry.key, bucket, flip == 1));
      const torch::Tensor noise = torch::randn(dist.mean.sizes(), generator, torch::kFloat32);
      const torch::Tensor latents = dist.sample(noise.to(model.device, dist.mean.scalar_type())) * scaling_factor;
      TrainingCache::write_latents(cached.latents[flip],
                                   CachedLatents{latents[0].to(torch::kCPU, torch::kFloat32), time_ids_of(prepared)});
      ++set.counts.latents_encoded;
    }
    if (on_encoded) on_encoded(++done, total, set.counts);
  }
  for (size_t p = 0; p < set.prompts.texts.size(); ++p) {
    throw_if_cancelled(cancel);
    if (!encode_prompts) set.prompts.ids.push_back(conditioner.token_ids({set.prompts.texts[p]})); // [1, 77] per tokenizer
  }
  for (const int64_t p : missing_prompts) {
    throw_if_cancelled(cancel);
    const models::UNetConditioning encoded = conditioner.encode({set.prompts.texts[static_cast<size_t>(p)]});
    TrainingCache::write_prompt(set.prompts.encoded[static_cast<size_t>(p)], encoded.to(torch::kCPU, encoded.context.scalar_type()));
    ++set.counts.prompts_encoded;
    if (on_encoded) on_encoded(++done, total, set.counts);
  }
  return set;
}

CachedLatents read_latents(const CachedImage& image, bool flip) {
  return TrainingCache::read_latents(image.latents[flip ? 1 : 0]);
}

models::UNetConditioning condition_batch(const sample::TextConditioner* conditioner, const PromptSet& prompts,
                                         const std::vector<int64_t>& prompt_indices) {
  if (conditioner == nullptr) {
    models::UNetConditioning batch = TrainingCache::read_prompt(prompts.encoded.at(prompt_indices.at(0)));
    for (size_t i = 1; i < prompt_indices.size(); ++i)
      batch = batch.cat(TrainingCache::read_prompt(prompts.encoded.at(prompt_indices[i])));
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

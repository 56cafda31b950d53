// The training set as the loop consumes it: every image resized and cropped
// to its aspect-ratio bucket and encoded once by the VAE (and once more mirrored
// when random flips are on), every distinct caption encoded once by the family's
// text conditioning (plus the empty prompt for caption dropout), all of it on disk
// in the TrainingCache and read back a batch at a time. What the cache already
// holds is not encoded again, and an image's pixels are asked for (load_pixels)
// only when it must be encoded, so host memory stays a few batches whatever the
// dataset's size. With the text encoders frozen, the loop never runs the VAE or
// the encoders again.
// Reference: kohya sd-scripts (cache_latents_to_disk, cache_text_encoder_outputs_to_disk)
// and diffusers train_dreambooth_lora_sdxl.py (compute_time_ids).
#pragma once

#include <cstdint> // int64_t
#include <string>
#include <vector>

#include <torch/torch.h> // torch::Tensor

#include "engine/model.h"          // Model
#include "models/unet.h"           // models::UNetConditioning
#include "sample/conditioning.h"   // sample::TextConditioner
#include "sdxl/engine.h"           // TrainOptions, Pixels, CancelFlag
#include "train/buckets.h"         // Bucket
#include "train/training_cache.h"  // TrainingCache, CachedLatents

namespace sdxl::train {

// One image: its bucket, caption and cache entries, both orientations when flips are on.
struct CachedImage {
  size_t bucket = 0;      // index into TrainingSet::buckets
  std::string latents[2]; // TrainingCache files: [0] as is, [1] mirrored (empty when flips are off)
  int64_t caption = 0;    // index into the prompt lists
};

// Encoded prompts (frozen text encoders) or their token ids (trained text encoders).
struct PromptSet {
  std::vector<std::string> texts; // distinct captions; texts[empty_index] == ""
  int64_t empty_index = 0;
  // Frozen encoders: each prompt's TrainingCache file (context [1, 77, C], SDXL's text_embeds [1, P]).
  std::vector<std::string> encoded;
  // Trained encoders: each prompt's framed ids, [1, 77] int64 per tokenizer.
  std::vector<std::vector<torch::Tensor>> ids;
};

// What building the set found in the cache and what it had to encode.
struct CacheCounts {
  int64_t latents_encoded = 0; // entries (an image and its mirrored copy are two)
  int64_t latents_reused = 0;
  int64_t prompts_encoded = 0;
  int64_t prompts_reused = 0;
};

struct TrainingSet {
  std::vector<Bucket> buckets;
  std::vector<CachedImage> images;
  std::vector<CachedImage> class_images; // prior preservation; empty when off
  std::vector<CachedImage> held_out;     // options.validation_images (never flipped); empty without a split
  PromptSet prompts;
  CacheCounts counts;
  std::vector<std::string> skipped; // names of the images below min_resolution, in none of the lists above
};

// Buckets every image (training, then class, then held-out ones; BucketPlan: those below
// min_resolution are skipped, and a run with no training image left is refused), then VAE-encodes
// into `cache` each entry it lacks, the image's pixels taken from its rgb or from
// options.load_pixels, and encodes each prompt it lacks (`encode_prompts`: frozen
// encoders) or tokenizes them all. `on_encoded(done, total, reused)` once the cache is
// looked up (done 0: total images and prompts to encode) and after each one encoded. A latent is one draw from the encoder's distribution (as kohya
// caches them), seeded by TrainingCache::latent_seed.
TrainingSet build_training_set(Model& model, const sample::TextConditioner& conditioner, const TrainOptions& options,
                               const TrainingCache& cache, bool encode_prompts,
                               const std::function<void(int64_t, int64_t, const CacheCounts&)>& on_encoded,
                               const CancelFlag& cancel);

// One image's cached latents and size ids (CPU, float32): as is, or mirrored when `flip`.
CachedLatents read_latents(const CachedImage& image, bool flip);

// The pixels of image `index` (one numbering: images, class_images, validation_images),
// from its rgb or options.load_pixels. Throws std::invalid_argument naming the image
// when there are none or the loader gives a wrong size.
Pixels pixels_of(const TrainOptions& options, size_t index);

// The batch's text conditioning (context [B, 77, C], SDXL's text_embeds [B, P]), read
// from the cache (CPU, the model's dtype) or (trained encoders, `conditioner` given)
// made by running the encoders with autograd.
// SDXL's size ids are the caller's: they belong to the images, not the prompts.
models::UNetConditioning condition_batch(const sample::TextConditioner* conditioner, const PromptSet& prompts,
                                         const std::vector<int64_t>& prompt_indices);

} // namespace sdxl::train

// The training set as the loop consumes it: every image resized and cropped
// to its aspect-ratio bucket, encoded once by the VAE (and once more mirrored
// when random flips are on), and every distinct caption encoded once by the
// family's text conditioning (plus the empty prompt for caption dropout and, for
// SD 1.x/2.x, the validation images' negative prompt). With the text encoders
// frozen, the loop never runs the VAE or the encoders again.
// Reference: kohya sd-scripts (cache_latents, cache_text_encoder_outputs) and
// diffusers train_dreambooth_lora_sdxl.py (compute_time_ids).
#pragma once

#include <cstdint> // int64_t
#include <string>
#include <vector>

#include <torch/torch.h> // torch::Tensor, at::Generator

#include "engine/model.h"         // Model
#include "models/unet.h"          // models::UNetConditioning
#include "sample/conditioning.h"  // sample::TextConditioner
#include "sdxl/engine.h"          // TrainOptions, CancelFlag
#include "train/buckets.h"        // Bucket

namespace sdxl::train {

// One image, both orientations when flips are on.
struct CachedImage {
  size_t bucket = 0;       // index into TrainingSet::buckets
  torch::Tensor latents[2]; // [4, h, w] float32 on the device, already * scaling_factor; [1] mirrored (or undefined)
  torch::Tensor time_ids[2]; // [6] float32: original size, crop, target size (SDXL micro-conditioning; unused otherwise)
  int64_t caption = 0;      // index into the prompt lists
};

// Encoded prompts (frozen text encoders) or their token ids (trained text encoders).
struct PromptSet {
  std::vector<std::string> texts; // distinct captions; texts[empty_index] == ""
  int64_t empty_index = 0;
  // Frozen encoders: each prompt's conditioning, batch 1 (context [1, 77, C], SDXL's text_embeds [1, P]),
  // model dtype, on the device.
  std::vector<models::UNetConditioning> encoded;
  // Trained encoders: each prompt's framed ids, [1, 77] int64 per tokenizer.
  std::vector<std::vector<torch::Tensor>> ids;
};

struct TrainingSet {
  std::vector<Bucket> buckets;
  std::vector<CachedImage> images;
  std::vector<CachedImage> class_images; // prior preservation; empty when off
  std::vector<CachedImage> held_out;     // options.validation_images (never flipped); empty without a split
  PromptSet prompts;
};

// Buckets, resizes and VAE-encodes every image, then every class image, then every
// held-out image; `on_image(done, total)` after each.
// Latents are sampled from the encoder's distribution with `generator` (as kohya caches them).
// Prompts are encoded with `conditioner` when `encode_prompts`, else only tokenized.
TrainingSet build_training_set(Model& model, const sample::TextConditioner& conditioner, const TrainOptions& options,
                               bool encode_prompts, at::Generator& generator,
                               const std::function<void(int64_t, int64_t)>& on_image, const CancelFlag& cancel);

// The batch's text conditioning (context [B, 77, C], SDXL's text_embeds [B, P]), from the
// cache or (trained encoders, `conditioner` given) by running the encoders with autograd.
// SDXL's size ids are the caller's: they belong to the images, not the prompts.
models::UNetConditioning condition_batch(const sample::TextConditioner* conditioner, const PromptSet& prompts,
                                         const std::vector<int64_t>& prompt_indices);

} // namespace sdxl::train

// Where the training set's encodings live on disk: one small safetensors file per
// (image key, bucket, flip) holding the latents and SDXL's size ids, and one per
// caption holding its text conditioning. Keyed by what decides their values, not by
// the run, so a later run on the same images (and model, dtypes and clip skip) reuses
// them: kohya's cache_latents_to_disk / cache_text_encoder_outputs_to_disk, which the
// FSDP and diffusers trainers also do for large datasets.
//
// Layout under the root (one root per model; the caller chooses it):
//   latents/vae-<dtype>/<W>x<H>/<key>.safetensors       latents [4, h, w], time_ids [6]
//   latents/vae-<dtype>/<W>x<H>/<key>-flip.safetensors  the mirrored image's
//   prompts/<dtype>-skip<N>/<sha256(caption)>.safetensors context [1, 77, C] (+ text_embeds [1, P])
// A file is written whole (a temporary file renamed), so a killed run leaves either
// the entry or nothing; it is not synced to the disk (derived data, tens of thousands of
// files): has() checks an entry's header and size, and removes one a power cut tore.
// An entry's values depend on its key alone, so two writers of one entry write the same thing.
#pragma once

#include <cstdint> // uint64_t
#include <string>

#include <torch/torch.h> // torch::Tensor

#include "models/unet.h"   // models::UNetConditioning
#include "train/buckets.h" // Bucket

namespace sdxl::train {

struct CachedLatents {
  torch::Tensor latents;  // [4, h, w] float32, CPU, already * scaling_factor
  torch::Tensor time_ids; // [6] float32: original size, crop, target size
};

class TrainingCache {
 public:
  // vae_dtype: the VAE's ("float32", "bfloat16"); text_settings: what else decides the text
  // conditioning (the encoders' dtype and clip skip).
  TrainingCache(std::string root, const std::string& vae_dtype, const std::string& text_settings);

  const std::string& root() const { return root_; }

  // `key` is the image's TrainImage::key; one not fit for a file name is hashed.
  std::string latents_path(const std::string& key, const Bucket& bucket, bool flip) const;
  std::string prompt_path(const std::string& caption) const;

  // Whether a whole entry is there (one that is not is removed).
  static bool has(const std::string& path);
  static void write_latents(const std::string& path, const CachedLatents& entry);
  static CachedLatents read_latents(const std::string& path);
  static void write_prompt(const std::string& path, const models::UNetConditioning& conditioning);
  static models::UNetConditioning read_prompt(const std::string& path); // CPU, the dtype it was written in

  // The seed of an entry's latent draw from the VAE's distribution: a function of its key,
  // bucket and flip alone, so the cached sample is the same in every run and on every device.
  static uint64_t latent_seed(const std::string& key, const Bucket& bucket, bool flip);

 private:
  std::string root_;
  std::string latents_dir_;
  std::string prompts_dir_;
};

} // namespace sdxl::train

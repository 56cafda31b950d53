// Validation during training: a loss on a fixed set of (image, timestep,
// noise) triples, drawn once from their own seed so the training stream is
// untouched, and sample images from fixed prompts and seeds (Euler sampler)
// saved as PNG. Both run without autograd, with LoRA dropout off; the
// conditioning is the model family's (sample/conditioning.h).
#pragma once

#include <cstdint> // int64_t
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h> // torch::Tensor

#include "engine/model.h"         // Model
#include "metrics/evaluator.h"    // ScoredImage
#include "sdxl/engine.h"          // TrainOptions
#include "train/training_set.h"   // TrainingSet

namespace sdxl::train {

struct ValidationTriple {
  int64_t image = 0; // into validation_images(set): the held-out images, else the training ones
  torch::Tensor timestep; // [1] int64
  uint64_t noise_seed = 0; // its noise, [1, 4, h, w] float32, drawn on the CPU when used (none held in memory)
};

struct ValidationSet {
  std::vector<ValidationTriple> triples;
  std::vector<std::string> prompts;
  // When the encoders are frozen, each prompt's conditioning and the unconditional one
  // (zeros for SDXL-base, the encoded "" otherwise), batch 1.
  std::vector<models::UNetConditioning> positive;
  models::UNetConditioning negative;
};

// The images the validation loss is computed over: the held-out ones when the run has
// them, else the training images.
const std::vector<CachedImage>& validation_images(const TrainingSet& set);

// The loss triples (images taken in turn, timesteps spread over the schedule: with
// held-out images at least one per image) and,
// when the encoders stay frozen (`conditioner` given), the encoded prompts (before
// the encoders are freed).
ValidationSet make_validation_set(Model& model, const TrainOptions& options, const TrainingSet& set,
                                  const sample::TextConditioner* frozen_conditioner);

// Mean MSE of the model's prediction (noise or v) over the triples, without min-SNR
// weighting. `conditioner`: the trained encoders' (null when they are frozen).
double validation_loss(Model& model, const TrainingSet& set, const ValidationSet& validation,
                       const torch::Tensor& alphas_cumprod, const sample::TextConditioner* conditioner);

struct ValidationImages {
  std::vector<std::string> paths;
  std::vector<metrics::ScoredImage> images; // the same images with their prompts, for the quality metrics
};

// `per_prompt` PNGs per prompt under <output_dir>/samples/: <name>-00.png per prompt when
// one (name "step-000050"), else <name>-PP-KK.png. Prompt p's k-th image is seeded with
// validation_seed + p + k * prompts, so the first of each prompt is the one every
// validation step samples.
ValidationImages write_validation_images(Model& model, const TrainOptions& options, const ValidationSet& validation,
                                         const sample::TextConditioner* conditioner, const std::string& name,
                                         int64_t per_prompt, const CancelFlag& cancel);

// The quality metrics of validation images as progress metrics: metric_<key> for each
// value the evaluator gives (metric_clip_t, metric_kid_std, metric_images, ...) and
// unavailable_<metric> = 1 for each it could not compute, with the reasons in `message`.
std::map<std::string, double> quality_metrics(metrics::Evaluator& evaluator,
                                              const std::vector<metrics::ScoredImage>& images,
                                              const std::vector<std::string>& wanted, std::string& message);

} // namespace sdxl::train

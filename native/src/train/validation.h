// Validation during training: a loss on a fixed set of (image, timestep,
// noise) triples, drawn once from their own seed so the training stream is
// untouched, and sample images from fixed prompts and seeds (Euler sampler)
// saved as PNG. Both run without autograd, with LoRA dropout off; the
// conditioning is the model family's (sample/conditioning.h).
#pragma once

#include <cstdint> // int64_t
#include <string>
#include <vector>

#include <torch/torch.h> // torch::Tensor

#include "engine/model.h"         // Model
#include "sdxl/engine.h"          // TrainOptions
#include "train/training_set.h"   // TrainingSet

namespace sdxl::train {

struct ValidationTriple {
  int64_t image = 0;
  torch::Tensor timestep; // [1] int64
  torch::Tensor noise;    // [1, 4, h, w] float32
};

struct ValidationSet {
  std::vector<ValidationTriple> triples;
  std::vector<std::string> prompts;
  // When the encoders are frozen, each prompt's conditioning and the unconditional one
  // (zeros for SDXL-base, the encoded "" otherwise), batch 1.
  std::vector<models::UNetConditioning> positive;
  models::UNetConditioning negative;
};

// The loss triples (images taken in turn, timesteps spread over the schedule) and,
// when the encoders stay frozen (`conditioner` given), the encoded prompts (before
// the encoders are freed).
ValidationSet make_validation_set(Model& model, const TrainOptions& options, const TrainingSet& set,
                                  const sample::TextConditioner* frozen_conditioner);

// Mean MSE of the model's prediction (noise or v) over the triples, without min-SNR
// weighting. `conditioner`: the trained encoders' (null when they are frozen).
double validation_loss(Model& model, const TrainingSet& set, const ValidationSet& validation,
                       const torch::Tensor& alphas_cumprod, const sample::TextConditioner* conditioner);

// One PNG per prompt: <output_dir>/samples/step-000050-00.png. Returns the paths.
std::vector<std::string> write_validation_images(Model& model, const TrainOptions& options,
                                                 const ValidationSet& validation,
                                                 const sample::TextConditioner* conditioner, int64_t step,
                                                 const CancelFlag& cancel);

} // namespace sdxl::train

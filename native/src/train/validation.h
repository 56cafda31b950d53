// Validation during training: a loss on a fixed set of (image, timestep,
// noise) triples, drawn once from their own seed so the training stream is
// untouched, and sample images from fixed prompts and seeds (Euler sampler)
// saved as PNG. Both run without autograd, with LoRA dropout off.
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
  std::vector<torch::Tensor> prompt_embeds; // [1, 77, C] per prompt, when the encoders are frozen
  std::vector<torch::Tensor> pooled;        // [1, P]
};

// The loss triples (images taken in turn, timesteps spread over the schedule)
// and, when the encoders stay frozen, the encoded prompts (before they are freed).
ValidationSet make_validation_set(Model& model, const TrainOptions& options, const TrainingSet& set,
                                  bool encoders_trained);

// Mean epsilon-prediction MSE over the triples, without min-SNR weighting.
double validation_loss(Model& model, const TrainingSet& set, const ValidationSet& validation,
                       const torch::Tensor& alphas_cumprod, bool encoders_trained);

// One PNG per prompt: <output_dir>/samples/step-000050-00.png. Returns the paths.
std::vector<std::string> write_validation_images(Model& model, const TrainOptions& options,
                                                 const ValidationSet& validation, bool encoders_trained,
                                                 int64_t step, const CancelFlag& cancel);

} // namespace sdxl::train

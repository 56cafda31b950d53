// What a training run trains, given to the one training loop (trainer.cpp) behind
// this interface, as the model family gives it its text conditioning:
//   "lora"  a LoRA network on the frozen model (lora_network.h); adapter files out;
//   "full"  the model's own weights: every UNet weight, and every text-encoder
//           weight when those are trained; a fine-tuned model out (model_files.h).
// The loop owns the data, noise, loss, optimizer and checkpoints; a method owns what
// the optimizer updates, what a checkpoint must hold of it, and the files it leaves.
#pragma once

#include <cstdint> // int64_t
#include <map>
#include <memory>  // std::unique_ptr
#include <string>
#include <vector>

#include <torch/torch.h> // torch::Tensor, at::Generator

#include "engine/model.h"         // Model
#include "sdxl/engine.h"          // TrainOptions, TrainResult
#include "train/lora_metadata.h"  // BaseModelTraits

namespace sdxl::train {

// What the finished run's files record.
struct RunRecord {
  std::string dataset_hash;
  int64_t steps = 0;
  BaseModelTraits base;
};

class TrainingMethod {
 public:
  virtual ~TrainingMethod() = default;

  // The optimizer's groups: the UNet's tensors, then the text encoders' (none when
  // frozen; one group, or one per encoder when split_text_encoders).
  virtual std::vector<std::vector<torch::Tensor>> parameter_groups(bool split_text_encoders) const = 0;
  virtual int64_t trainable_parameter_count() const = 0;

  // After each optimizer step (1-based count).
  virtual void after_step(int64_t steps_done) {}

  // Validation samples with the EMA weights when asked: swapped in, then back.
  virtual void begin_validation() {}
  virtual void end_validation() {}

  // The trained tensors in a checkpoint (the optimizer's state is the loop's).
  virtual void save_state(std::map<std::string, torch::Tensor>& out) const = 0;
  // Restores exactly what save_state wrote; std::invalid_argument naming what is missing.
  virtual void load_state(const std::map<std::string, torch::Tensor>& in) = 0;

  // Writes the run's result files, sets their paths in `result` and returns them.
  virtual std::vector<std::string> save_outputs(const RunRecord& record, TrainResult& result) const = 0;

  // Figures for the run's metrics (e.g. ema_state_bytes).
  virtual std::map<std::string, double> metrics() const { return {}; }
};

// The LoRA network attached to `model` (A drawn from `init_generator`, dropout masks from
// `dropout_generator`, a generator on the model's device).
std::unique_ptr<TrainingMethod> make_lora_method(const TrainOptions& options, Model& model, at::Generator& init_generator,
                                                 const at::Generator& dropout_generator);

// The model's own weights made trainable (the text encoders' only with train_text_encoder).
std::unique_ptr<TrainingMethod> make_full_method(const TrainOptions& options, Model& model);

} // namespace sdxl::train

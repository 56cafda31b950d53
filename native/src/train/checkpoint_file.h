// Training checkpoints: everything a run needs to continue exactly where it
// stopped (LoRA weights, optimizer and loss-scaler state, the RNG state, the
// step and the data order) in one .safetensors file, written to a temporary
// file, flushed and renamed, so a checkpoint on disk is always whole.
// The options that decide the trajectory are stored too; resuming with
// different ones is refused, naming each option that differs.
#pragma once

#include <cstdint> // int64_t
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h> // torch::Tensor

namespace sdxl::train {

struct TrainingState {
  int64_t step = 0; // optimizer steps done
  int64_t sampler_epoch = 0;
  int64_t sampler_position = 0;
  std::map<std::string, torch::Tensor> tensors;  // "lora/…", "optim/…", "scaler/…", "rng/cpu", "loss/…"
  std::map<std::string, std::string> options;    // the trajectory-deciding options, as text
};

// <output_dir>/checkpoints/step-000050.safetensors
std::string checkpoint_path(const std::string& output_dir, int64_t step);

void write_checkpoint(const std::string& path, const TrainingState& state);

// Deletes all but the newest `keep` checkpoints under <output_dir>/checkpoints/
// (kohya's --save_last_n_steps_state); returns the paths deleted, oldest first.
std::vector<std::string> prune_checkpoints(const std::string& output_dir, int64_t keep);

// Throws std::invalid_argument when the file is not a checkpoint of ours.
TrainingState read_checkpoint(const std::string& path);

// Throws std::invalid_argument listing every option whose value differs.
void check_same_options(const std::map<std::string, std::string>& saved,
                        const std::map<std::string, std::string>& current, const std::string& path);

} // namespace sdxl::train

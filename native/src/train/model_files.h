// The files of a fully fine-tuned model: a diffusers folder and one single file.
//   folder: the base folder's layout; trained components (unet/, text_encoder*/) hold
//     their config files and new weights, the untouched ones (vae/, tokenizers,
//     scheduler/, frozen encoders, ...) are symbolic links to the base model's own
//     folders, so a run stores only what it changed. Written beside and renamed into
//     place, so a folder at `path` is always whole.
//   single file: every component in the layout of the family's official checkpoint
//     (SGM for SDXL, LDM for SD 1.x: what AUTOMATIC1111 and ComfyUI load), the
//     untouched components read back from the base model.
#pragma once

#include <map>
#include <string>

#include <torch/torch.h> // torch::Dtype

#include "io/safetensors.h" // io::TensorMap
#include "sdxl/engine.h"    // LoadOptions

namespace sdxl::train {

// The trained components' weights under diffusers names; an empty map is untouched.
struct TrainedComponents {
  io::TensorMap unet, text_encoder, text_encoder_2;
};

// Writes the folder at `path` for a base model that is a diffusers folder.
void write_model_folder(const std::string& path, const std::string& base_folder, const TrainedComponents& trained,
                        torch::Dtype dtype);

// Whether the family's official single-file layout exists (SD 2.x: no LDM layout is loaded).
bool has_single_file_layout(const LoadOptions& base);

// Writes the single file at `path` in `dtype`, the header carrying `metadata`.
void write_model_single_file(const std::string& path, const LoadOptions& base, const TrainedComponents& trained,
                             torch::Dtype dtype, const std::map<std::string, std::string>& metadata);

} // namespace sdxl::train

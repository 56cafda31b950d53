// Unmerged LoRA application: pushes one models::LoraSlot per adapted Linear
// (scale = user scale * alpha / rank), so the frozen weights are never touched
// and one loaded model serves many adapter combinations in turn.
#pragma once

#include <cstdint> // int64_t
#include <string>
#include <vector>

#include "lora/lora_file.h" // LoraFile, LoraTargets
#include "models/layers.h"  // models::ActiveAdapters, AdapterSet

namespace sdxl::lora {

// The Linear module paths of each model, for load_lora_file. A model may be null.
LoraTargets lora_targets(const torch::nn::Module* unet, const torch::nn::Module* text_encoder,
                         const torch::nn::Module* text_encoder_2);

// Adds the file's slots to the matching models::LinearImpl modules, with down/up
// converted to each module's weight dtype and device. Several files may be
// applied; each adds its own slots. Throws (changing nothing) when a module is
// missing or its shape disagrees. A model may be null when the file has no
// module for it.
void apply_lora(torch::nn::Module* unet, torch::nn::Module* text_encoder,
                torch::nn::Module* text_encoder_2, const LoraFile& file, double scale);

// Every module of the file that names no Linear of the models, or whose shapes do not
// fit its Linear; empty when the file applies cleanly.
std::vector<std::string> fit_problems(const torch::nn::Module* unet, const torch::nn::Module* text_encoder,
                                      const torch::nn::Module* text_encoder_2, const LoraFile& file);

// The file's slots at scale 1 for a per-call overlay (models::ActiveAdapters), converted to
// each Linear's device and dtype; the models are not changed. Throws as apply_lora does.
using models::AdapterSet;
AdapterSet prepare_adapters(torch::nn::Module* unet, torch::nn::Module* text_encoder,
                            torch::nn::Module* text_encoder_2, const LoraFile& file);

// Removes every LoRA slot from every Linear of the models (null ones skipped).
void clear_loras(torch::nn::Module* unet, torch::nn::Module* text_encoder,
                 torch::nn::Module* text_encoder_2);

} // namespace sdxl::lora

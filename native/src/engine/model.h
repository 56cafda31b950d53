// The engine's loaded pipeline (engine.h's opaque Model): tokenizer(s), text
// encoder(s), UNet, VAE and the scheduler config, on one device and dtype,
// loaded from a diffusers folder or a single-file checkpoint (SGM for SDXL, LDM
// for SD 1.x). Its family says what conditions the UNet (models::ModelFamily).
#pragma once

#include <filesystem>   // std::filesystem::path
#include <memory>       // std::shared_ptr, std::unique_ptr
#include <optional>     // the second tokenizer (SDXL)
#include <string>

#include <torch/torch.h> // torch::Device, torch::Dtype

#include "engine/lora_cache.h"     // LoraCache
#include "io/key_conversion.h"     // io::SplitCheckpoint
#include "io/tokenizer.h"          // io::ClipTokenizer
#include "models/clip.h"           // models::ClipTextModel
#include "models/configs.h"        // models::ModelFamily, UNetConfig, VaeConfig, ClipTextConfig
#include "models/unet.h"           // models::UNet2DConditionModel
#include "models/vae.h"            // models::AutoencoderKL
#include "sample/conditioning.h"   // sample::TextConditioner, TextComponents
#include "sample/noise_schedule.h" // sample::SchedulerConfig
#include "sdxl/engine.h"           // LoadOptions, RuntimeOptions, CancelFlag, ProgressFn

namespace sdxl {

class Model {
 public:
  Model(models::ModelFamily family_, io::ClipTokenizer tokenizer_, std::optional<io::ClipTokenizer> tokenizer_2_)
      : family(family_), tokenizer(std::move(tokenizer_)), tokenizer_2(std::move(tokenizer_2_)) {}

  models::ModelFamily family;
  std::string source_layout; // "diffusers", "sgm-single-file" or "ldm-single-file"
  RuntimeOptions runtime;
  torch::Device device = torch::kCPU;
  torch::Dtype dtype = torch::kFloat32;     // text encoders and UNet
  torch::Dtype vae_dtype = torch::kFloat32; // float32 when the VAE asks to be upcast from float16

  io::ClipTokenizer tokenizer;
  std::optional<io::ClipTokenizer> tokenizer_2;  // SDXL only
  models::ClipTextModel text_encoder{nullptr};
  models::ClipTextModel text_encoder_2{nullptr}; // SDXL only
  models::UNet2DConditionModel unet{nullptr};
  models::AutoencoderKL vae{nullptr};
  sample::SchedulerConfig scheduler;
  bool force_zeros_for_empty_prompt = false; // model_index.json; SDXL-base sets it, SD 1.x/2.x never zero

  // Parsed LoRAs for generate()'s per-call overlays (set by load_model_from).
  std::unique_ptr<LoraCache> lora_cache;
};

// Every component config of a pipeline, and its family.
struct ComponentConfigs {
  models::ModelFamily family = models::ModelFamily::Sdxl;
  models::ClipTextConfig text_encoder;
  models::ClipTextConfig text_encoder_2; // SDXL only
  models::UNetConfig unet;
  models::VaeConfig vae;
  sample::SchedulerConfig scheduler;
  bool force_zeros_for_empty_prompt = false;

  bool has_text_encoder_2() const { return family == models::ModelFamily::Sdxl; }
  // The published configs, for single files that carry none.
  static ComponentConfigs sdxl_base();
  static ComponentConfigs sd15_base();
};

// The configs of a diffusers folder (model_index.json and the component folders) and the
// family they make. Throws std::invalid_argument naming a missing component folder, a
// pipeline class this engine does not load, or configs that do not fit together.
ComponentConfigs read_folder_configs(const std::filesystem::path& dir);

// A module holder's module, or null when it holds none (SD 1.x/2.x's text_encoder_2, or
// an encoder a training run has freed), for the LoRA functions that take optional models.
template <typename Holder>
auto* module_or_null(Holder& holder) {
  return holder.is_empty() ? nullptr : holder.get();
}

// The model's text side, and its family's conditioner on it (see sample/conditioning.h).
// The conditioner holds the encoders: drop it before freeing them.
sample::TextComponents text_components(const Model& model);
std::unique_ptr<sample::TextConditioner> text_conditioner(const Model& model, int64_t clip_skip = 0);

// Pixels per latent along each side: 2^(VAE levels - 1), 8 for every family.
int64_t vae_scale_factor(const models::VaeConfig& vae);
int64_t vae_scale_factor(const Model& model);

// The side of the images a model was made for: the UNet's sample_size in pixels (512, 768, 1024).
int64_t default_resolution(const models::UNetConfig& unet, const models::VaeConfig& vae);

// The stored weights of a model's components as diffusers names them, read from its
// folder or split from its single file, with the configs they go with (a full
// fine-tune writes its model from these and its trained components).
struct StoredComponents {
  ComponentConfigs configs;
  io::SplitCheckpoint weights;
};
StoredComponents read_stored_components(const LoadOptions& options);

// Loads a diffusers folder (model_index.json) or a single file; see engine.h.
std::shared_ptr<Model> load_model_from(const LoadOptions& options, const CancelFlag& cancel,
                                       const ProgressFn& progress = nullptr);

} // namespace sdxl

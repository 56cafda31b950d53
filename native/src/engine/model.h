// The engine's loaded SDXL pipeline (engine.h's opaque Model): tokenizers,
// both text encoders, UNet, VAE and the scheduler config, on one device and
// dtype, loaded from a diffusers folder or an SGM single-file checkpoint.
#pragma once

#include <filesystem>   // std::filesystem::path
#include <memory>       // std::shared_ptr, std::unique_ptr
#include <string>

#include <torch/torch.h> // torch::Device, torch::Dtype

#include "engine/lora_cache.h"     // LoraCache
#include "io/tokenizer.h"          // io::ClipTokenizer
#include "models/clip.h"           // models::ClipTextModel
#include "models/configs.h"        // models::UNetConfig, VaeConfig, ClipTextConfig
#include "models/unet.h"           // models::UNet2DConditionModel
#include "models/vae.h"            // models::AutoencoderKL
#include "sample/noise_schedule.h" // sample::SchedulerConfig
#include "sdxl/engine.h"           // LoadOptions, RuntimeOptions, CancelFlag, ProgressFn

namespace sdxl {

class Model {
 public:
  Model(io::ClipTokenizer tokenizer, io::ClipTokenizer tokenizer_2) :
      tokenizer(std::move(tokenizer)), tokenizer_2(std::move(tokenizer_2)) {}

  std::string source_layout; // "diffusers" or "sgm-single-file"
  RuntimeOptions runtime;
  torch::Device device = torch::kCPU;
  torch::Dtype dtype = torch::kFloat32;     // text encoders and UNet
  torch::Dtype vae_dtype = torch::kFloat32; // float32 when the VAE asks to be upcast from float16

  io::ClipTokenizer tokenizer;
  io::ClipTokenizer tokenizer_2;
  models::ClipTextModel text_encoder{nullptr};
  models::ClipTextModel text_encoder_2{nullptr};
  models::UNet2DConditionModel unet{nullptr};
  models::AutoencoderKL vae{nullptr};
  sample::SchedulerConfig scheduler;
  bool force_zeros_for_empty_prompt = true; // model_index.json; SDXL-base sets it

  // Parsed LoRAs for generate()'s per-call overlays (set by load_model_from).
  std::unique_ptr<LoraCache> lora_cache;
};

// Every component config of a pipeline; SDXL-base's where a file gives none.
struct ComponentConfigs {
  models::ClipTextConfig text_encoder = models::ClipTextConfig::sdxl_base_text_encoder();
  models::ClipTextConfig text_encoder_2 = models::ClipTextConfig::sdxl_base_text_encoder_2();
  models::UNetConfig unet = models::UNetConfig::sdxl_base();
  models::VaeConfig vae = models::VaeConfig::sdxl_base();
  sample::SchedulerConfig scheduler = sample::SchedulerConfig::sdxl_base();
  bool force_zeros_for_empty_prompt = true;
};

// The configs of a diffusers folder (model_index.json and the component folders).
ComponentConfigs read_folder_configs(const std::filesystem::path& dir);

// Pixels per latent along each side: 2^(VAE levels - 1), 8 for SDXL.
int64_t vae_scale_factor(const Model& model);

// Loads a diffusers folder (model_index.json) or an SGM single file; see engine.h.
std::shared_ptr<Model> load_model_from(const LoadOptions& options, const CancelFlag& cancel,
                                       const ProgressFn& progress = nullptr);

} // namespace sdxl

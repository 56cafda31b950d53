// Loading an SDXL pipeline from a diffusers folder or an SGM single file.
#include "engine/model.h"

#include <filesystem> // std::filesystem::path, exists
#include <fstream>    // std::ifstream
#include <map>
#include <stdexcept> // std::invalid_argument, std::runtime_error
#include <vector>

#include <nlohmann/json.hpp> // model_index.json, *.safetensors.index.json

#include "engine/runtime.h"     // parse_device, parse_dtype
#include "io/key_conversion.h"  // io::split_sgm_checkpoint, is_sgm_checkpoint
#include "io/safetensors.h"     // io::SafetensorsFile, load_safetensors
#include "models/configs.h"     // models::UNetConfig, VaeConfig, ClipTextConfig
#include "models/state_dict.h"  // models::load_state_dict

namespace sdxl {

namespace fs = std::filesystem;

namespace {

constexpr int64_t kLoadPhases = 4; // text_encoder, text_encoder_2, unet, vae

nlohmann::json read_json(const fs::path& path) {
  std::ifstream file(path);
  if (!file) throw std::runtime_error("cannot open " + path.string());
  try {
    return nlohmann::json::parse(file);
  } catch (const nlohmann::json::exception& error) {
    throw std::runtime_error(path.string() + " is not valid JSON: " + error.what());
  }
}

// The sampler always runs Euler; from another scheduler's config only the
// training schedule and the prediction type carry over.
sample::SchedulerConfig read_scheduler_config(const fs::path& path) {
  const nlohmann::json json = read_json(path);
  if (json.value("_class_name", std::string("EulerDiscreteScheduler")) == "EulerDiscreteScheduler")
    return sample::SchedulerConfig::from_json(json);
  sample::SchedulerConfig config;
  config.num_train_timesteps = json.value("num_train_timesteps", config.num_train_timesteps);
  config.beta_start = json.value("beta_start", config.beta_start);
  config.beta_end = json.value("beta_end", config.beta_end);
  config.beta_schedule = json.value("beta_schedule", config.beta_schedule);
  config.prediction_type = json.value("prediction_type", config.prediction_type);
  config.validate();
  return config;
}

} // namespace

ComponentConfigs read_folder_configs(const fs::path& dir) {
  ComponentConfigs configs;
  configs.text_encoder = models::ClipTextConfig::from_file((dir / "text_encoder" / "config.json").string());
  configs.text_encoder_2 = models::ClipTextConfig::from_file((dir / "text_encoder_2" / "config.json").string());
  configs.unet = models::UNetConfig::from_file((dir / "unet" / "config.json").string());
  configs.vae = models::VaeConfig::from_file((dir / "vae" / "config.json").string());
  const fs::path scheduler = dir / "scheduler" / "scheduler_config.json";
  if (fs::exists(scheduler)) configs.scheduler = read_scheduler_config(scheduler);
  const fs::path index = dir / "model_index.json";
  if (fs::exists(index))
    configs.force_zeros_for_empty_prompt = read_json(index).value("force_zeros_for_empty_prompt", true);
  if (!configs.text_encoder_2.with_projection)
    throw std::invalid_argument(dir.string() + "/text_encoder_2 is not a CLIPTextModelWithProjection; SDXL needs its "
                                "projected text_embeds");
  return configs;
}

namespace {

// A component folder's weights: the full-precision file, else the fp16 variant,
// else a sharded set named by an index file.
io::TensorMap read_component_weights(const fs::path& dir, const std::string& stem) {
  for (const std::string& name : {stem + ".safetensors", stem + ".fp16.safetensors"}) {
    if (fs::exists(dir / name)) return io::load_safetensors((dir / name).string());
  }
  for (const std::string& name : {stem + ".safetensors.index.json", stem + ".safetensors.index.fp16.json"}) {
    if (!fs::exists(dir / name)) continue;
    const nlohmann::json index = read_json(dir / name);
    std::map<std::string, bool> shards;
    for (const auto& entry : index.at("weight_map").items()) shards[entry.value().get<std::string>()] = true;
    io::TensorMap merged;
    for (const auto& shard : shards) {
      io::TensorMap part = io::load_safetensors((dir / shard.first).string());
      merged.insert(part.begin(), part.end());
    }
    return merged;
  }
  throw std::runtime_error("no " + stem + ".safetensors in " + dir.string() +
                           " (only .safetensors weights are read; convert .bin files first)");
}

void report(const ProgressFn& progress, int64_t step, const std::string& message) {
  if (progress) progress(Progress{"loading", step, kLoadPhases, message});
}

// Builds every module on the target device and dtype, then fills it strictly.
void build_and_load(Model& model, const ComponentConfigs& configs, io::TensorMap text_encoder,
                    io::TensorMap text_encoder_2, io::TensorMap unet, io::TensorMap vae, const CancelFlag& cancel,
                    const ProgressFn& progress) {
  const auto options = torch::TensorOptions().device(model.device).dtype(model.dtype);
  const auto vae_options = torch::TensorOptions().device(model.device).dtype(model.vae_dtype);

  report(progress, 0, "text_encoder");
  model.text_encoder = models::ClipTextModel(configs.text_encoder, options);
  models::load_state_dict(*model.text_encoder, text_encoder, "text_encoder");
  text_encoder.clear();
  throw_if_cancelled(cancel);

  report(progress, 1, "text_encoder_2");
  model.text_encoder_2 = models::ClipTextModel(configs.text_encoder_2, options);
  models::load_state_dict(*model.text_encoder_2, text_encoder_2, "text_encoder_2");
  text_encoder_2.clear();
  throw_if_cancelled(cancel);

  report(progress, 2, "unet");
  model.unet = models::UNet2DConditionModel(configs.unet, options);
  models::load_state_dict(*model.unet, unet, "unet");
  unet.clear();
  throw_if_cancelled(cancel);

  report(progress, 3, "vae");
  model.vae = models::AutoencoderKL(configs.vae, vae_options);
  models::load_state_dict(*model.vae, vae, "vae");
  report(progress, kLoadPhases, "done");
}

std::shared_ptr<Model> new_model(const LoadOptions& options, const ComponentConfigs& configs,
                                 const fs::path& tokenizer_dir, const fs::path& tokenizer_2_dir,
                                 const std::string& layout) {
  auto model = std::make_shared<Model>(io::ClipTokenizer::from_dir(tokenizer_dir.string()),
                                       io::ClipTokenizer::from_dir(tokenizer_2_dir.string()));
  model->source_layout = layout;
  model->runtime = options.runtime;
  model->device = parse_device(options.runtime.device);
  model->dtype = parse_dtype(options.runtime.dtype);
  // diffusers upcasts a force_upcast VAE out of float16, where SDXL's VAE overflows.
  model->vae_dtype = (model->dtype == torch::kFloat16 && configs.vae.force_upcast) ? torch::kFloat32 : model->dtype;
  model->scheduler = configs.scheduler;
  model->force_zeros_for_empty_prompt = configs.force_zeros_for_empty_prompt;
  return model;
}

// ---------------------------------------------------------------------------
// The two layouts

std::shared_ptr<Model> load_diffusers_folder(const LoadOptions& options, const CancelFlag& cancel,
                                             const ProgressFn& progress) {
  const fs::path dir = options.model_path;
  const ComponentConfigs configs = read_folder_configs(dir);
  auto model = new_model(options, configs, dir / "tokenizer", dir / "tokenizer_2", "diffusers");
  build_and_load(*model, configs, read_component_weights(dir / "text_encoder", "model"),
                 read_component_weights(dir / "text_encoder_2", "model"),
                 read_component_weights(dir / "unet", "diffusion_pytorch_model"),
                 read_component_weights(dir / "vae", "diffusion_pytorch_model"), cancel, progress);
  return model;
}

// A single file carries weights only: configs come from config_dir (or
// SDXL-base's), tokenizers from config_dir or from tokenizer/ and tokenizer_2/
// folders beside the file.
std::shared_ptr<Model> load_sgm_single_file(const LoadOptions& options, const CancelFlag& cancel,
                                            const ProgressFn& progress) {
  const fs::path file = options.model_path;
  ComponentConfigs configs;
  fs::path tokenizer_root;
  if (!options.config_dir.empty()) {
    configs = read_folder_configs(options.config_dir);
    tokenizer_root = options.config_dir;
  } else {
    tokenizer_root = file.parent_path();
  }
  for (const char* name : {"tokenizer", "tokenizer_2"}) {
    if (!fs::exists(tokenizer_root / name))
      throw std::invalid_argument(
          "a single-file checkpoint holds no tokenizer: pass a config folder (the diffusers layout of the "
          "same model, e.g. stabilityai/stable-diffusion-xl-base-1.0 without its weights) that has tokenizer/ and "
          "tokenizer_2/, or place those two folders beside " + file.string() + " (not found: " +
          (tokenizer_root / name).string() + ")");
  }
  auto model = new_model(options, configs, tokenizer_root / "tokenizer", tokenizer_root / "tokenizer_2",
                         "sgm-single-file");

  const io::SafetensorsFile checkpoint = io::SafetensorsFile::open(file.string());
  if (!io::is_sgm_checkpoint(checkpoint.keys()))
    throw std::invalid_argument(file.string() + " is not an SGM single-file SDXL checkpoint (no model.diffusion_model.* "
                                "keys); pass a diffusers folder or an sd_xl_base-style file");
  io::SplitCheckpoint split = io::split_sgm_checkpoint(
      checkpoint.tensors(),
      io::SgmExpectations::from_configs(configs.unet, configs.vae, configs.text_encoder, configs.text_encoder_2));
  throw_if_cancelled(cancel);
  build_and_load(*model, configs, std::move(split.text_encoder), std::move(split.text_encoder_2),
                 std::move(split.unet), std::move(split.vae), cancel, progress);
  return model;
}

} // namespace

// The VAE downsamples by 2 per level after the first.
int64_t vae_scale_factor(const Model& model) {
  return int64_t{1} << (static_cast<int64_t>(model.vae->config().block_out_channels.size()) - 1);
}

std::shared_ptr<Model> load_model_from(const LoadOptions& options, const CancelFlag& cancel,
                                       const ProgressFn& progress) {
  check_runtime(options.runtime);
  const fs::path path = options.model_path;
  if (path.empty()) throw std::invalid_argument("model_path is empty");
  if (options.lora_cache_bytes < 0) throw std::invalid_argument("lora_cache_bytes must not be negative");
  std::shared_ptr<Model> model;
  if (fs::is_directory(path)) {
    if (!fs::exists(path / "model_index.json") && !fs::exists(path / "unet"))
      throw std::invalid_argument(path.string() + " is not a diffusers SDXL folder (no model_index.json)");
    model = load_diffusers_folder(options, cancel, progress);
  } else if (fs::is_regular_file(path)) {
    model = load_sgm_single_file(options, cancel, progress);
  } else {
    throw std::invalid_argument("model path " + path.string() + " does not exist");
  }
  model->lora_cache = std::make_unique<LoraCache>(options.lora_cache_bytes);
  return model;
}

} // namespace sdxl

// Loading a pipeline of any family from a diffusers folder or a single file, and
// reading what a model is from its configs and weight headers alone (inspect_model).
#include "engine/model.h"

#include <filesystem> // std::filesystem::path, exists
#include <fstream>    // std::ifstream
#include <map>
#include <set>
#include <stdexcept> // std::invalid_argument, std::runtime_error
#include <vector>

#include <nlohmann/json.hpp> // model_index.json, *.safetensors.index.json

#include "engine/runtime.h"     // parse_device, parse_dtype
#include "io/key_conversion.h"  // io::single_file_kind, split_single_file
#include "io/safetensors.h"     // io::SafetensorsFile, load_safetensors
#include "models/configs.h"     // models::UNetConfig, VaeConfig, ClipTextConfig
#include "models/state_dict.h"  // models::load_state_dict

namespace sdxl {

namespace fs = std::filesystem;

namespace {

using models::ModelFamily;

nlohmann::json read_json(const fs::path& path) {
  std::ifstream file(path);
  if (!file) throw std::runtime_error("cannot open " + path.string());
  try {
    return nlohmann::json::parse(file);
  } catch (const nlohmann::json::exception& error) {
    throw std::runtime_error(path.string() + " is not valid JSON: " + error.what());
  }
}

// The pipelines model_index.json may name, and the family each loads as.
constexpr const char* kSdxlPipeline = "StableDiffusionXLPipeline";
constexpr const char* kSdPipeline = "StableDiffusionPipeline";

// The components a family's folder must have, each a folder with a config (or, for
// tokenizers, vocabulary files).
std::vector<std::string> required_components(ModelFamily family) {
  if (family == ModelFamily::Sdxl) return {"unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"};
  return {"unet", "vae", "text_encoder", "tokenizer"};
}

// SD 1.x and 2.x share the pipeline class; 2.x's UNet has linear projections (and
// OpenCLIP-H's 1024-wide context), 1.x's 1x1 convolutions.
ModelFamily sd_family(const models::UNetConfig& unet) {
  return unet.use_linear_projection ? ModelFamily::Sd2 : ModelFamily::Sd1;
}

// The text encoders' widths must add up to the UNet's context width.
void check_context_width(const ComponentConfigs& configs, const std::string& where) {
  const int64_t width = configs.text_encoder.hidden_size +
                        (configs.has_text_encoder_2() ? configs.text_encoder_2.hidden_size : 0);
  if (width != configs.unet.cross_attention_dim)
    throw std::invalid_argument(where + ": the UNet's cross_attention_dim is " +
                                std::to_string(configs.unet.cross_attention_dim) + " but the text encoder" +
                                (configs.has_text_encoder_2() ? "s give " : " gives ") + std::to_string(width));
  if (configs.has_text_encoder_2() && !configs.text_encoder_2.with_projection)
    throw std::invalid_argument(where + "/text_encoder_2 is not a CLIPTextModelWithProjection; SDXL needs its "
                                "projected text_embeds");
  if (configs.has_text_encoder_2() != configs.unet.has_added_embedding())
    throw std::invalid_argument(where + ": the UNet's addition_embed_type \"" + configs.unet.addition_embed_type +
                                "\" does not fit a " + models::family_name(configs.family) + " pipeline");
}

} // namespace

ComponentConfigs ComponentConfigs::sdxl_base() {
  ComponentConfigs configs;
  configs.family = ModelFamily::Sdxl;
  configs.text_encoder = models::ClipTextConfig::sdxl_base_text_encoder();
  configs.text_encoder_2 = models::ClipTextConfig::sdxl_base_text_encoder_2();
  configs.unet = models::UNetConfig::sdxl_base();
  configs.vae = models::VaeConfig::sdxl_base();
  configs.scheduler = sample::SchedulerConfig::sdxl_base();
  configs.force_zeros_for_empty_prompt = true;
  return configs;
}

ComponentConfigs ComponentConfigs::sd15_base() {
  ComponentConfigs configs;
  configs.family = ModelFamily::Sd1;
  configs.text_encoder = models::ClipTextConfig::sd15_base_text_encoder();
  configs.unet = models::UNetConfig::sd15_base();
  configs.vae = models::VaeConfig::sd15_base();
  configs.scheduler = sample::SchedulerConfig::sd15_base();
  return configs;
}

ComponentConfigs read_folder_configs(const fs::path& dir) {
  // The family: model_index.json's pipeline class, else whether there is a second text encoder.
  const fs::path index = dir / "model_index.json";
  nlohmann::json model_index = nlohmann::json::object();
  bool sdxl = fs::exists(dir / "text_encoder_2");
  if (fs::exists(index)) {
    model_index = read_json(index);
    const std::string pipeline = model_index.value("_class_name", std::string());
    if (pipeline != kSdxlPipeline && pipeline != kSdPipeline)
      throw std::invalid_argument(dir.string() + "/model_index.json names the pipeline \"" + pipeline +
                                  "\"; this engine loads " + kSdPipeline + " (SD 1.x, 2.x) and " + kSdxlPipeline +
                                  " (SDXL) folders");
    sdxl = pipeline == kSdxlPipeline;
  }
  std::vector<std::string> missing;
  for (const std::string& component : required_components(sdxl ? ModelFamily::Sdxl : ModelFamily::Sd1))
    if (!fs::is_directory(dir / component)) missing.push_back(component + "/");
  if (!missing.empty()) {
    std::string list;
    for (const auto& name : missing) list += (list.empty() ? "" : ", ") + name;
    throw std::invalid_argument(dir.string() + " is missing " + list + ": a " +
                                (sdxl ? kSdxlPipeline : kSdPipeline) + " folder needs " +
                                (sdxl ? "unet/, vae/, text_encoder/, text_encoder_2/, tokenizer/ and tokenizer_2/"
                                      : "unet/, vae/, text_encoder/ and tokenizer/"));
  }

  ComponentConfigs configs;
  configs.text_encoder = models::ClipTextConfig::from_file((dir / "text_encoder" / "config.json").string());
  if (sdxl) configs.text_encoder_2 = models::ClipTextConfig::from_file((dir / "text_encoder_2" / "config.json").string());
  configs.unet = models::UNetConfig::from_file((dir / "unet" / "config.json").string());
  configs.vae = models::VaeConfig::from_file((dir / "vae" / "config.json").string());
  configs.family = sdxl ? ModelFamily::Sdxl : sd_family(configs.unet);
  const fs::path scheduler = dir / "scheduler" / "scheduler_config.json";
  if (fs::exists(scheduler)) {
    configs.scheduler = sample::SchedulerConfig::from_file(scheduler.string());
  } else {
    configs.scheduler = sdxl ? sample::SchedulerConfig::sdxl_base() : sample::SchedulerConfig::sd15_base();
  }
  // StableDiffusionPipeline always encodes the negative prompt; SDXL's pipeline zeros an empty one by default.
  configs.force_zeros_for_empty_prompt = sdxl && model_index.value("force_zeros_for_empty_prompt", true);
  check_context_width(configs, dir.string());
  return configs;
}

namespace {

// A component folder's weight files: the full-precision file, else the fp16 variant,
// else the shards an index file names.
std::vector<fs::path> component_weight_files(const fs::path& dir, const std::string& stem) {
  for (const std::string& name : {stem + ".safetensors", stem + ".fp16.safetensors"}) {
    if (fs::exists(dir / name)) return {dir / name};
  }
  for (const std::string& name : {stem + ".safetensors.index.json", stem + ".safetensors.index.fp16.json"}) {
    if (!fs::exists(dir / name)) continue;
    const nlohmann::json index = read_json(dir / name);
    std::set<std::string> shards;
    for (const auto& entry : index.at("weight_map").items()) shards.insert(entry.value().get<std::string>());
    std::vector<fs::path> files;
    for (const auto& shard : shards) files.push_back(dir / shard);
    return files;
  }
  throw std::invalid_argument("no " + stem + ".safetensors in " + dir.string() +
                              " (only .safetensors weights are read; convert .bin files first)");
}

io::TensorMap read_component_weights(const fs::path& dir, const std::string& stem) {
  io::TensorMap merged;
  for (const fs::path& file : component_weight_files(dir, stem)) {
    io::TensorMap part = io::load_safetensors(file.string());
    merged.insert(part.begin(), part.end());
  }
  return merged;
}

// Elements of the tensors named in a file's header (no data read), of keys starting with `prefix`.
int64_t header_parameters(const io::SafetensorsFile& file, const std::string& prefix = "") {
  int64_t count = 0;
  for (const std::string& key : file.keys()) {
    if (key.rfind(prefix, 0) != 0 || key.find("position_ids") != std::string::npos) continue; // buffers, no weights
    int64_t elements = 1;
    for (const int64_t size : file.info(key).shape) elements *= size;
    count += elements;
  }
  return count;
}

void report(const ProgressFn& progress, int64_t step, int64_t total, const std::string& message) {
  if (progress) progress(Progress{"loading", step, total, message});
}

// Builds every module on the target device and dtype, then fills it strictly.
void build_and_load(Model& model, const ComponentConfigs& configs, io::TensorMap text_encoder,
                    io::TensorMap text_encoder_2, io::TensorMap unet, io::TensorMap vae, const CancelFlag& cancel,
                    const ProgressFn& progress) {
  const auto options = torch::TensorOptions().device(model.device).dtype(model.dtype);
  const auto vae_options = torch::TensorOptions().device(model.device).dtype(model.vae_dtype);
  const int64_t total = configs.has_text_encoder_2() ? 4 : 3;
  int64_t step = 0;

  report(progress, step++, total, "text_encoder");
  model.text_encoder = models::ClipTextModel(configs.text_encoder, options);
  models::load_state_dict(*model.text_encoder, text_encoder, "text_encoder");
  text_encoder.clear();
  throw_if_cancelled(cancel);

  if (configs.has_text_encoder_2()) {
    report(progress, step++, total, "text_encoder_2");
    model.text_encoder_2 = models::ClipTextModel(configs.text_encoder_2, options);
    models::load_state_dict(*model.text_encoder_2, text_encoder_2, "text_encoder_2");
    text_encoder_2.clear();
    throw_if_cancelled(cancel);
  }

  report(progress, step++, total, "unet");
  model.unet = models::UNet2DConditionModel(configs.unet, options);
  models::load_state_dict(*model.unet, unet, "unet");
  unet.clear();
  throw_if_cancelled(cancel);

  report(progress, step++, total, "vae");
  model.vae = models::AutoencoderKL(configs.vae, vae_options);
  models::load_state_dict(*model.vae, vae, "vae");
  report(progress, total, total, "done");
}

std::shared_ptr<Model> new_model(const LoadOptions& options, const ComponentConfigs& configs,
                                 const fs::path& tokenizer_root, const std::string& layout) {
  std::optional<io::ClipTokenizer> tokenizer_2;
  if (configs.has_text_encoder_2()) tokenizer_2 = io::ClipTokenizer::from_dir((tokenizer_root / "tokenizer_2").string());
  auto model = std::make_shared<Model>(configs.family, io::ClipTokenizer::from_dir((tokenizer_root / "tokenizer").string()),
                                       std::move(tokenizer_2));
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
// Single files: the file's family from its keys, configs from config_dir or built in

struct SingleFilePlan {
  io::SingleFileKind kind;
  ComponentConfigs configs;
  fs::path tokenizer_root; // holds tokenizer/ (and tokenizer_2/)
};

SingleFilePlan plan_single_file(const LoadOptions& options, const io::SafetensorsFile& checkpoint) {
  const fs::path file = options.model_path;
  SingleFilePlan plan;
  plan.kind = io::single_file_kind(checkpoint.keys(), file.string());
  const bool sdxl = plan.kind.family == ModelFamily::Sdxl;
  if (!options.config_dir.empty()) {
    plan.configs = read_folder_configs(options.config_dir);
    plan.tokenizer_root = options.config_dir;
    // An SD 2.x config would fit an SD 1.x file's layout, but not its weights.
    const bool fits = sdxl ? plan.configs.family == ModelFamily::Sdxl : plan.configs.family == ModelFamily::Sd1;
    if (!fits)
      throw std::invalid_argument(file.string() + " is an " + (sdxl ? "SDXL (SGM)" : "SD 1.x (LDM)") +
                                  " checkpoint but the config folder " + options.config_dir + " is a " +
                                  models::family_name(plan.configs.family) + " pipeline");
  } else {
    plan.configs = sdxl ? ComponentConfigs::sdxl_base() : ComponentConfigs::sd15_base();
    plan.tokenizer_root = file.parent_path();
  }
  // SDXL v-prediction fine-tunes mark themselves with empty tensors, as ComfyUI reads them.
  if (plan.kind.v_prediction_marker) plan.configs.scheduler.prediction_type = "v_prediction";
  if (plan.kind.zero_terminal_snr_marker) plan.configs.scheduler.rescale_betas_zero_snr = true;
  for (const char* name : {"tokenizer", "tokenizer_2"}) {
    if (std::string(name) == "tokenizer_2" && !sdxl) continue;
    if (!fs::exists(plan.tokenizer_root / name))
      throw std::invalid_argument(
          "a single-file checkpoint holds no tokenizer: pass a config folder (the diffusers layout of the same model, "
          "e.g. " + std::string(sdxl ? "stabilityai/stable-diffusion-xl-base-1.0" : "stable-diffusion-v1-5") +
          " without its weights) that has tokenizer/" + (sdxl ? " and tokenizer_2/" : "") +
          ", or place " + (sdxl ? "those two folders" : "that folder") + " beside " + file.string() +
          " (not found: " + (plan.tokenizer_root / name).string() + ")");
  }
  return plan;
}

// ---------------------------------------------------------------------------
// The two layouts

std::shared_ptr<Model> load_diffusers_folder(const LoadOptions& options, const CancelFlag& cancel,
                                             const ProgressFn& progress) {
  const fs::path dir = options.model_path;
  const ComponentConfigs configs = read_folder_configs(dir);
  auto model = new_model(options, configs, dir, "diffusers");
  build_and_load(*model, configs, read_component_weights(dir / "text_encoder", "model"),
                 configs.has_text_encoder_2() ? read_component_weights(dir / "text_encoder_2", "model") : io::TensorMap{},
                 read_component_weights(dir / "unet", "diffusion_pytorch_model"),
                 read_component_weights(dir / "vae", "diffusion_pytorch_model"), cancel, progress);
  return model;
}

// A single file carries weights only: configs come from config_dir (or the family's
// published ones), tokenizers from config_dir or from folders beside the file.
std::shared_ptr<Model> load_single_file(const LoadOptions& options, const CancelFlag& cancel,
                                        const ProgressFn& progress) {
  const io::SafetensorsFile checkpoint = io::SafetensorsFile::open(options.model_path);
  const SingleFilePlan plan = plan_single_file(options, checkpoint);
  auto model = new_model(options, plan.configs, plan.tokenizer_root, plan.kind.layout);
  const ComponentConfigs& configs = plan.configs;
  io::SplitCheckpoint split = io::split_single_file(
      checkpoint.tensors(), io::SingleFileExpectations::from_configs(configs.family, configs.unet, configs.vae,
                                                                     configs.text_encoder, configs.text_encoder_2));
  throw_if_cancelled(cancel);
  build_and_load(*model, configs, std::move(split.text_encoder), std::move(split.text_encoder_2),
                 std::move(split.unet), std::move(split.vae), cancel, progress);
  return model;
}

void check_load_options(const LoadOptions& options) {
  const fs::path path = options.model_path;
  if (path.empty()) throw std::invalid_argument("model_path is empty");
  if (!fs::exists(path)) throw std::invalid_argument("model path " + path.string() + " does not exist");
  if (fs::is_directory(path) && !fs::exists(path / "model_index.json") && !fs::exists(path / "unet"))
    throw std::invalid_argument(path.string() + " is not a diffusers pipeline folder (no model_index.json)");
}

} // namespace

sample::TextComponents text_components(const Model& model) {
  sample::TextComponents text;
  text.family = model.family;
  text.tokenizer = &model.tokenizer;
  text.text_encoder = model.text_encoder;
  text.tokenizer_2 = model.tokenizer_2 ? &*model.tokenizer_2 : nullptr;
  text.text_encoder_2 = model.text_encoder_2;
  text.force_zeros_for_empty_prompt = model.force_zeros_for_empty_prompt;
  return text;
}

std::unique_ptr<sample::TextConditioner> text_conditioner(const Model& model, int64_t clip_skip) {
  return sample::make_text_conditioner(text_components(model), clip_skip);
}

// The VAE downsamples by 2 per level after the first.
int64_t vae_scale_factor(const models::VaeConfig& vae) {
  return int64_t{1} << (static_cast<int64_t>(vae.block_out_channels.size()) - 1);
}

int64_t vae_scale_factor(const Model& model) { return vae_scale_factor(model.vae->config()); }

int64_t default_resolution(const models::UNetConfig& unet, const models::VaeConfig& vae) {
  return unet.sample_size * vae_scale_factor(vae);
}

std::shared_ptr<Model> load_model_from(const LoadOptions& options, const CancelFlag& cancel,
                                       const ProgressFn& progress) {
  check_runtime(options.runtime);
  check_load_options(options);
  if (options.lora_cache_bytes < 0) throw std::invalid_argument("lora_cache_bytes must not be negative");
  std::shared_ptr<Model> model = fs::is_directory(options.model_path)
                                     ? load_diffusers_folder(options, cancel, progress)
                                     : load_single_file(options, cancel, progress);
  model->lora_cache = std::make_unique<LoraCache>(options.lora_cache_bytes);
  return model;
}

StoredComponents read_stored_components(const LoadOptions& options) {
  check_load_options(options);
  const fs::path path = options.model_path;
  StoredComponents stored;
  if (fs::is_directory(path)) {
    stored.configs = read_folder_configs(path);
    stored.weights.text_encoder = read_component_weights(path / "text_encoder", "model");
    if (stored.configs.has_text_encoder_2())
      stored.weights.text_encoder_2 = read_component_weights(path / "text_encoder_2", "model");
    stored.weights.unet = read_component_weights(path / "unet", "diffusion_pytorch_model");
    stored.weights.vae = read_component_weights(path / "vae", "diffusion_pytorch_model");
    return stored;
  }
  const io::SafetensorsFile checkpoint = io::SafetensorsFile::open(path.string());
  const SingleFilePlan plan = plan_single_file(options, checkpoint);
  stored.configs = plan.configs;
  const ComponentConfigs& configs = plan.configs;
  stored.weights = io::split_single_file(checkpoint.tensors(),
                                         io::SingleFileExpectations::from_configs(configs.family, configs.unet, configs.vae,
                                                                                  configs.text_encoder, configs.text_encoder_2));
  return stored;
}

ModelInfo inspect_model(const LoadOptions& options) {
  check_load_options(options);
  const fs::path path = options.model_path;
  ModelInfo info;
  ComponentConfigs configs;
  if (fs::is_directory(path)) {
    configs = read_folder_configs(path);
    info.source_layout = "diffusers";
    const auto count = [&](const char* component, const std::string& stem) {
      int64_t total = 0;
      for (const fs::path& file : component_weight_files(path / component, stem))
        total += header_parameters(io::SafetensorsFile::open(file.string()));
      return total;
    };
    info.unet_parameters = count("unet", "diffusion_pytorch_model");
    info.vae_parameters = count("vae", "diffusion_pytorch_model");
    info.text_encoder_parameters = count("text_encoder", "model");
    if (configs.has_text_encoder_2()) info.text_encoder_2_parameters = count("text_encoder_2", "model");
  } else {
    const io::SafetensorsFile checkpoint = io::SafetensorsFile::open(path.string());
    const SingleFilePlan plan = plan_single_file(options, checkpoint);
    configs = plan.configs;
    info.source_layout = plan.kind.layout;
    const bool sdxl = configs.family == ModelFamily::Sdxl;
    info.unet_parameters = header_parameters(checkpoint, io::kSgmUNetPrefix);
    info.vae_parameters = header_parameters(checkpoint, io::kSgmVaePrefix);
    info.text_encoder_parameters =
        header_parameters(checkpoint, sdxl ? io::kSgmTextEncoderPrefix : io::kLdmTextEncoderPrefix);
    if (sdxl) info.text_encoder_2_parameters = header_parameters(checkpoint, io::kSgmTextEncoder2Prefix);
  }
  info.family = models::family_name(configs.family);
  info.prediction_type = configs.scheduler.prediction_type;
  info.default_resolution = default_resolution(configs.unet, configs.vae);
  info.text_encoder_layers = configs.text_encoder.num_hidden_layers;
  return info;
}

} // namespace sdxl

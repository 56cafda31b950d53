// A fine-tuned model's folder and single file (model_files.h).
#include "train/model_files.h"

#include <filesystem>
#include <stdexcept> // std::invalid_argument

#include "engine/model.h"      // read_stored_components, inspect_model
#include "io/key_conversion.h" // io::join_single_file, io::SingleFileExpectations

namespace sdxl::train {

namespace fs = std::filesystem;

namespace {

// The weight file each trained component folder holds, as diffusers names it.
const std::map<std::string, std::string>& weight_file_names() {
  static const std::map<std::string, std::string> names = {
      {"unet", "diffusion_pytorch_model.safetensors"},
      {"text_encoder", "model.safetensors"},
      {"text_encoder_2", "model.safetensors"}};
  return names;
}

io::TensorMap in_dtype(const io::TensorMap& tensors, torch::Dtype dtype) {
  io::TensorMap out;
  for (const auto& [name, tensor] : tensors) out[name] = tensor.detach().to(torch::kCPU, dtype).contiguous();
  return out;
}

bool is_weight_file(const fs::path& file) {
  const std::string name = file.filename().string();
  return name.find(".safetensors") != std::string::npos || name.find(".bin") != std::string::npos ||
         name.find(".ckpt") != std::string::npos;
}

} // namespace

void write_model_folder(const std::string& path, const std::string& base_folder, const TrainedComponents& trained,
                        torch::Dtype dtype) {
  const fs::path base = fs::absolute(base_folder);
  if (!fs::exists(base / "model_index.json"))
    throw std::invalid_argument("write_model_folder: " + base.string() + " is not a diffusers folder");
  const std::map<std::string, const io::TensorMap*> components = {
      {"unet", &trained.unet}, {"text_encoder", &trained.text_encoder}, {"text_encoder_2", &trained.text_encoder_2}};
  const fs::path target = path;
  const fs::path staging = target.string() + ".tmp";
  fs::remove_all(staging);
  fs::create_directories(staging);
  for (const auto& entry : fs::directory_iterator(base)) {
    const std::string name = entry.path().filename().string();
    const auto component = components.find(name);
    if (component == components.end() || component->second->empty()) {
      if (entry.is_directory())
        fs::create_directory_symlink(fs::canonical(entry.path()), staging / name); // shared with the base
      else
        fs::copy_file(entry.path(), staging / name); // model_index.json and other small files
      continue;
    }
    fs::create_directories(staging / name);
    for (const auto& file : fs::directory_iterator(entry.path())) {
      if (!file.is_directory() && !is_weight_file(file.path())) fs::copy_file(file.path(), staging / name / file.path().filename());
    }
    io::save_safetensors((staging / name / weight_file_names().at(name)).string(), in_dtype(*component->second, dtype));
  }
  fs::remove_all(target);
  fs::rename(staging, target);
}

bool has_single_file_layout(const LoadOptions& base) {
  const ModelInfo info = inspect_model(base);
  return info.family == "sdxl" || info.family == "sd1";
}

void write_model_single_file(const std::string& path, const LoadOptions& base, const TrainedComponents& trained,
                             torch::Dtype dtype, const std::map<std::string, std::string>& metadata) {
  StoredComponents stored = read_stored_components(base);
  const ComponentConfigs& configs = stored.configs;
  if (!trained.unet.empty()) stored.weights.unet = trained.unet;
  if (!trained.text_encoder.empty()) stored.weights.text_encoder = trained.text_encoder;
  if (!trained.text_encoder_2.empty()) stored.weights.text_encoder_2 = trained.text_encoder_2;
  io::SplitCheckpoint converted;
  converted.unet = in_dtype(stored.weights.unet, dtype);
  converted.vae = in_dtype(stored.weights.vae, dtype);
  converted.text_encoder = in_dtype(stored.weights.text_encoder, dtype);
  converted.text_encoder_2 = in_dtype(stored.weights.text_encoder_2, dtype);
  const io::TensorMap joined = io::join_single_file(
      converted, io::SingleFileExpectations::from_configs(configs.family, configs.unet, configs.vae, configs.text_encoder,
                                                          configs.text_encoder_2));
  io::save_safetensors(path, joined, metadata);
}

} // namespace sdxl::train

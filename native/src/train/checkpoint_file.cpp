// Checkpoint files; see checkpoint_file.h.
#include "train/checkpoint_file.h"

#include <algorithm>  // std::sort
#include <cstdio>     // std::snprintf
#include <filesystem> // create_directories
#include <stdexcept>  // std::invalid_argument

#include "io/safetensors.h" // save_safetensors, SafetensorsFile

namespace sdxl::train {

namespace {
constexpr const char* kFormatKey = "sdxl_lora_service.checkpoint";
constexpr const char* kFormatVersion = "1";
constexpr const char* kOptionPrefix = "option.";

int64_t read_int(const std::map<std::string, std::string>& metadata, const std::string& key, const std::string& path) {
  const auto it = metadata.find(key);
  if (it == metadata.end()) throw std::invalid_argument(path + ": checkpoint lacks '" + key + "'");
  try {
    return std::stoll(it->second);
  } catch (const std::exception&) {
    throw std::invalid_argument(path + ": checkpoint field '" + key + "' is not an integer");
  }
}
} // namespace

std::string checkpoint_path(const std::string& output_dir, int64_t step) {
  char name[64];
  std::snprintf(name, sizeof name, "step-%06lld.safetensors", static_cast<long long>(step));
  return (std::filesystem::path(output_dir) / "checkpoints" / name).string();
}

std::vector<std::string> prune_checkpoints(const std::string& output_dir, int64_t keep) {
  const std::filesystem::path dir = std::filesystem::path(output_dir) / "checkpoints";
  std::vector<std::string> paths; // step-NNNNNN.safetensors sorts by step
  if (!std::filesystem::is_directory(dir)) return {};
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("step-", 0) == 0 && entry.path().extension() == ".safetensors") paths.push_back(entry.path().string());
  }
  std::sort(paths.begin(), paths.end());
  std::vector<std::string> deleted;
  for (size_t i = 0; keep >= 0 && i + static_cast<size_t>(keep) < paths.size(); ++i) {
    std::filesystem::remove(paths[i]);
    deleted.push_back(paths[i]);
  }
  return deleted;
}

void write_checkpoint(const std::string& path, const TrainingState& state) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::map<std::string, std::string> metadata{
      {kFormatKey, kFormatVersion},
      {"step", std::to_string(state.step)},
      {"sampler_epoch", std::to_string(state.sampler_epoch)},
      {"sampler_position", std::to_string(state.sampler_position)},
  };
  for (const auto& [key, value] : state.options) metadata[kOptionPrefix + key] = value;
  io::save_safetensors(path, state.tensors, metadata);
}

TrainingState read_checkpoint(const std::string& path) {
  if (!std::filesystem::is_regular_file(path))
    throw std::invalid_argument("resume_from: no checkpoint file at " + path);
  const io::SafetensorsFile file = io::SafetensorsFile::open(path);
  const auto& metadata = file.metadata();
  const auto format = metadata.find(kFormatKey);
  if (format == metadata.end()) throw std::invalid_argument("resume_from: " + path + " is not a training checkpoint");
  if (format->second != kFormatVersion)
    throw std::invalid_argument("resume_from: " + path + " has checkpoint format " + format->second +
                                "; this engine reads format " + kFormatVersion);
  TrainingState state;
  state.step = read_int(metadata, "step", path);
  state.sampler_epoch = read_int(metadata, "sampler_epoch", path);
  state.sampler_position = read_int(metadata, "sampler_position", path);
  const std::string prefix = kOptionPrefix;
  for (const auto& [key, value] : metadata) {
    if (key.rfind(prefix, 0) == 0) state.options[key.substr(prefix.size())] = value;
  }
  state.tensors = file.tensors();
  return state;
}

void check_same_options(const std::map<std::string, std::string>& saved,
                        const std::map<std::string, std::string>& current, const std::string& path) {
  std::string differences;
  for (const auto& [key, value] : current) {
    const auto it = saved.find(key);
    const std::string was = it == saved.end() ? "(absent)" : it->second;
    if (was != value) differences += (differences.empty() ? "" : "; ") + key + " was " + was + ", now " + value;
  }
  if (!differences.empty())
    throw std::invalid_argument("resume_from: " + path + " was written with other options (" + differences + ")");
}

} // namespace sdxl::train

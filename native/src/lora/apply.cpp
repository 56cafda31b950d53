// Unmerged LoRA application onto models::LinearImpl slots (see apply.h).
#include "lora/apply.h"

#include "models/layers.h" // models::LinearImpl, models::LoraSlot

#include <map>       // std::map path -> Linear
#include <sstream>   // std::ostringstream error messages
#include <stdexcept> // std::invalid_argument

namespace sdxl::lora {
namespace {

// At most this many problems are named in one error message.
constexpr size_t kMaxProblemsInError = 40;

using LinearIndex = std::map<std::string, models::LinearImpl*>; // module path -> Linear

LinearIndex linear_modules(const torch::nn::Module* model) {
  LinearIndex index;
  if (model == nullptr) return index;
  for (const auto& item : model->named_modules("", /*include_self=*/false))
    if (auto* linear = item.value()->as<models::LinearImpl>()) index[item.key()] = linear;
  return index;
}

std::vector<std::string> paths_of(const LinearIndex& index) {
  std::vector<std::string> paths;
  paths.reserve(index.size());
  for (const auto& [path, linear] : index) paths.push_back(path);
  return paths;
}

} // namespace

LoraTargets lora_targets(const torch::nn::Module* unet, const torch::nn::Module* text_encoder,
                         const torch::nn::Module* text_encoder_2) {
  LoraTargets targets;
  targets.unet = paths_of(linear_modules(unet));
  targets.text_encoder = paths_of(linear_modules(text_encoder));
  targets.text_encoder_2 = paths_of(linear_modules(text_encoder_2));
  return targets;
}

void apply_lora(torch::nn::Module* unet, torch::nn::Module* text_encoder, torch::nn::Module* text_encoder_2,
                const LoraFile& file, double scale) {
  const std::map<std::string, LinearIndex> models = {
      {"unet", linear_modules(unet)},
      {"text_encoder", linear_modules(text_encoder)},
      {"text_encoder_2", linear_modules(text_encoder_2)},
  };
  // Check everything first, so a bad file leaves the models untouched.
  std::vector<models::LinearImpl*> linears;
  std::vector<std::string> problems;
  for (const auto& module : file.modules) {
    const auto component = models.find(module.component);
    models::LinearImpl* linear = nullptr;
    if (component != models.end()) {
      const auto found = component->second.find(module.module_path);
      if (found != component->second.end()) linear = found->second;
    }
    if (linear == nullptr) {
      problems.push_back(module.component + " has no Linear " + module.module_path);
    } else if (module.down.size(1) != linear->in_features || module.up.size(0) != linear->out_features) {
      std::ostringstream problem;
      problem << module.component << "." << module.module_path << ": LoRA down " << module.down.sizes() << " / up "
              << module.up.sizes() << " do not fit Linear(" << linear->in_features << " -> " << linear->out_features
              << ")";
      problems.push_back(problem.str());
    }
    linears.push_back(linear);
  }
  if (!problems.empty()) {
    std::ostringstream message;
    message << "LoRA file " << file.path << " does not fit the model: ";
    for (size_t i = 0; i < problems.size() && i < kMaxProblemsInError; ++i) message << (i ? "; " : "") << problems[i];
    if (problems.size() > kMaxProblemsInError) message << " ... (" << problems.size() << " in all)";
    throw std::invalid_argument(message.str());
  }
  for (size_t i = 0; i < file.modules.size(); ++i) {
    const LoraModule& module = file.modules[i];
    models::LinearImpl* linear = linears[i];
    const auto device = linear->weight.device();
    const auto dtype = linear->weight.scalar_type();
    models::LoraSlot slot;
    slot.down = module.down.to(device, dtype); // [r, in]
    slot.up = module.up.to(device, dtype);     // [out, r]
    slot.scale = scale * module.alpha / static_cast<double>(module.rank);
    linear->loras.push_back(slot);
  }
}

void clear_loras(torch::nn::Module* unet, torch::nn::Module* text_encoder, torch::nn::Module* text_encoder_2) {
  for (const torch::nn::Module* model : {unet, text_encoder, text_encoder_2})
    for (const auto& [path, linear] : linear_modules(model)) linear->loras.clear();
}

} // namespace sdxl::lora

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

namespace {

struct Matched {
  std::vector<models::LinearImpl*> linears; // one per file module; null when missing
  std::vector<std::string> problems;
};

// Finds each module's Linear and checks that its down/up fit it.
Matched match_modules(const torch::nn::Module* unet, const torch::nn::Module* text_encoder,
                      const torch::nn::Module* text_encoder_2, const LoraFile& file) {
  const std::map<std::string, LinearIndex> models = {
      {"unet", linear_modules(unet)},
      {"text_encoder", linear_modules(text_encoder)},
      {"text_encoder_2", linear_modules(text_encoder_2)},
  };
  Matched matched;
  for (const auto& module : file.modules) {
    const auto component = models.find(module.component);
    models::LinearImpl* linear = nullptr;
    if (component != models.end()) {
      const auto found = component->second.find(module.module_path);
      if (found != component->second.end()) linear = found->second;
    }
    // Named by the file's keys when it has them, else by the module.
    const std::string name = module.down_key.empty() ? module.component + "." + module.module_path : module.down_key;
    if (linear == nullptr) {
      matched.problems.push_back(name + ": " + module.component + " has no Linear " + module.module_path);
    } else if (module.down.size(1) != linear->in_features || module.up.size(0) != linear->out_features) {
      std::ostringstream problem;
      if (module.down_key.empty()) {
        problem << name << ": LoRA down " << module.down.sizes() << " / up " << module.up.sizes();
      } else {
        problem << module.down_key << " " << module.down.sizes() << " / " << module.up_key << " " << module.up.sizes();
      }
      problem << " do not fit Linear(" << linear->in_features << " -> " << linear->out_features << ") "
              << module.component << "." << module.module_path << " (expected [r, " << linear->in_features << "] / ["
              << linear->out_features << ", r])";
      matched.problems.push_back(problem.str());
    }
    matched.linears.push_back(linear);
  }
  return matched;
}

models::LoraSlot slot_for(const LoraModule& module, const models::LinearImpl& linear, double scale) {
  models::LoraSlot slot;
  slot.down = module.down.to(linear.weight.device(), linear.weight.scalar_type()); // [r, in]
  slot.up = module.up.to(linear.weight.device(), linear.weight.scalar_type());     // [out, r]
  slot.scale = scale * module.alpha / static_cast<double>(module.rank);
  return slot;
}

void throw_problems(const LoraFile& file, const std::vector<std::string>& problems) {
  std::ostringstream message;
  message << "LoRA file " << file.path << " does not fit the model: ";
  for (size_t i = 0; i < problems.size() && i < kMaxProblemsInError; ++i) message << (i ? "; " : "") << problems[i];
  if (problems.size() > kMaxProblemsInError) message << " ... (" << problems.size() << " in all)";
  throw std::invalid_argument(message.str());
}

} // namespace

std::vector<std::string> fit_problems(const torch::nn::Module* unet, const torch::nn::Module* text_encoder,
                                      const torch::nn::Module* text_encoder_2, const LoraFile& file) {
  return match_modules(unet, text_encoder, text_encoder_2, file).problems;
}

void apply_lora(torch::nn::Module* unet, torch::nn::Module* text_encoder, torch::nn::Module* text_encoder_2,
                const LoraFile& file, double scale) {
  // Check everything first, so a bad file leaves the models untouched.
  const Matched matched = match_modules(unet, text_encoder, text_encoder_2, file);
  if (!matched.problems.empty()) throw_problems(file, matched.problems);
  for (size_t i = 0; i < file.modules.size(); ++i)
    matched.linears[i]->loras.push_back(slot_for(file.modules[i], *matched.linears[i], scale));
}

AdapterSet prepare_adapters(torch::nn::Module* unet, torch::nn::Module* text_encoder,
                            torch::nn::Module* text_encoder_2, const LoraFile& file) {
  const Matched matched = match_modules(unet, text_encoder, text_encoder_2, file);
  if (!matched.problems.empty()) throw_problems(file, matched.problems);
  AdapterSet set;
  for (size_t i = 0; i < file.modules.size(); ++i) {
    set.slots[matched.linears[i]].push_back(slot_for(file.modules[i], *matched.linears[i], 1.0));
    set.bytes += static_cast<int64_t>(set.slots[matched.linears[i]].back().down.nbytes() +
                                      set.slots[matched.linears[i]].back().up.nbytes());
  }
  return set;
}

void clear_loras(torch::nn::Module* unet, torch::nn::Module* text_encoder, torch::nn::Module* text_encoder_2) {
  for (const torch::nn::Module* model : {unet, text_encoder, text_encoder_2})
    for (const auto& [path, linear] : linear_modules(model)) linear->loras.clear();
}

} // namespace sdxl::lora

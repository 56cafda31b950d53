// The trainable LoRA network (see lora_network.h). Init facts: peft
// tuners/lora/layer.py LoraLayer.reset_lora_parameters (kaiming_uniform_ with
// a = sqrt(5) on lora_A, zeros on lora_B) and torch.nn.init.kaiming_uniform_
// (gain = sqrt(2 / (1 + a^2)), bound = sqrt(3) * gain / sqrt(fan_in), fan_in =
// in_features for a [r, in] weight).
#include "train/lora_network.h"

#include <algorithm> // std::remove_if
#include <cmath>     // std::sqrt
#include <set>       // std::set of known state keys
#include <sstream>   // std::ostringstream error messages
#include <stdexcept> // std::invalid_argument, std::logic_error
#include <utility>   // std::pair

namespace sdxl::train {
namespace {

constexpr const char* kComponentUNet = "unet";
constexpr const char* kComponentTextEncoder = "text_encoder";
constexpr const char* kComponentTextEncoder2 = "text_encoder_2";
// kaiming_uniform_'s negative slope as peft passes it.
const double kKaimingA = std::sqrt(5.0);

constexpr const char* kDownSuffix = ".down";
constexpr const char* kUpSuffix = ".up";

bool ends_with_target(const std::string& path, const std::string& target) {
  if (path == target) return true;
  return path.size() > target.size() && path.compare(path.size() - target.size(), target.size(), target) == 0 &&
         path[path.size() - target.size() - 1] == '.';
}

using NamedLinear = std::pair<std::string, std::shared_ptr<models::LinearImpl>>;

// The Linears of `model` whose path ends with one of `targets`, in named_modules()
// order; throws naming the first target that matches nothing.
std::vector<NamedLinear> targeted_linears(torch::nn::Module& model, const std::string& component,
                                          const std::vector<std::string>& targets) {
  std::vector<NamedLinear> found;
  std::vector<bool> target_used(targets.size(), false);
  for (const auto& item : model.named_modules("", /*include_self=*/false)) {
    auto linear = std::dynamic_pointer_cast<models::LinearImpl>(item.value());
    if (!linear) continue;
    bool matched = false;
    for (size_t t = 0; t < targets.size(); ++t)
      if (ends_with_target(item.key(), targets[t])) {
        target_used[t] = true;
        matched = true;
      }
    if (matched) found.emplace_back(item.key(), linear);
  }
  for (size_t t = 0; t < targets.size(); ++t)
    if (!target_used[t])
      throw std::invalid_argument("LoRA target \"" + targets[t] + "\" matches no Linear module of the " + component +
                                  " (targets are module-path suffixes such as to_q, to_out.0, ff.net.2, proj_in)");
  return found;
}

std::string state_key(const std::string& component, const std::string& module_path, const char* suffix) {
  return component + ":" + module_path + suffix;
}

} // namespace

void LoraNetwork::attach(torch::nn::Module& unet, torch::nn::Module* text_encoder,
                         torch::nn::Module* text_encoder_2, const LoraNetworkOptions& options,
                         at::Generator& generator) {
  if (attached()) throw std::logic_error("LoraNetwork::attach: already attached; detach() first");
  if (options.rank <= 0)
    throw std::invalid_argument("LoRA rank must be a positive integer, got " + std::to_string(options.rank));
  if (!(options.alpha > 0)) {
    std::ostringstream message;
    message << "LoRA alpha must be positive, got " << options.alpha;
    throw std::invalid_argument(message.str());
  }
  if (!(options.dropout >= 0 && options.dropout < 1)) {
    std::ostringstream message;
    message << "LoRA dropout must be in [0, 1), got " << options.dropout;
    throw std::invalid_argument(message.str());
  }
  if (options.text_encoders && text_encoder == nullptr)
    throw std::invalid_argument("LoRA on the text encoders needs the model's text encoder");
  if (!generator.device().is_cpu())
    throw std::invalid_argument("LoraNetwork::attach: the init generator must be a CPU generator");

  // Find every module first, so a bad target changes nothing.
  std::vector<std::pair<std::string, NamedLinear>> planned; // (component, (path, linear))
  for (auto& linear : targeted_linears(unet, kComponentUNet, options.unet_targets))
    planned.emplace_back(kComponentUNet, std::move(linear));
  if (options.text_encoders) {
    for (auto& linear : targeted_linears(*text_encoder, kComponentTextEncoder, options.text_encoder_targets))
      planned.emplace_back(kComponentTextEncoder, std::move(linear));
    if (text_encoder_2 != nullptr) // SDXL's second encoder; SD 1.x/2.x have one
      for (auto& linear : targeted_linears(*text_encoder_2, kComponentTextEncoder2, options.text_encoder_targets))
        planned.emplace_back(kComponentTextEncoder2, std::move(linear));
  }
  if (planned.empty()) throw std::invalid_argument("LoRA network has no target modules");

  const double gain = std::sqrt(2.0 / (1.0 + kKaimingA * kKaimingA));
  const double scale = options.alpha / static_cast<double>(options.rank);
  const auto cpu_float = torch::TensorOptions().dtype(torch::kFloat32).device(torch::kCPU);
  std::vector<Entry> entries;
  entries.reserve(planned.size());
  {
    torch::NoGradGuard no_grad;
    for (auto& [component, named] : planned) {
      auto& [path, linear] = named;
      const int64_t in = linear->in_features, out = linear->out_features;
      const double bound = std::sqrt(3.0) * gain / std::sqrt(static_cast<double>(in));
      torch::Tensor down = torch::empty({options.rank, in}, cpu_float);      // [r, in]
      down.uniform_(-bound, bound, generator);
      const auto device = linear->weight.device();
      Entry entry;
      entry.component = component;
      entry.module_path = path;
      entry.linear = linear;
      entry.pointwise_conv = linear->pointwise_conv;
      entry.down = down.to(device);                                           // [r, in]
      entry.up = torch::zeros({out, options.rank}, cpu_float.device(device)); // [out, r]
      entries.push_back(std::move(entry));
    }
  }
  for (auto& entry : entries) {
    entry.down.requires_grad_(true);
    entry.up.requires_grad_(true);
    models::LoraSlot slot;
    slot.down = entry.down; // the same tensors: training updates them in place
    slot.up = entry.up;
    slot.scale = scale;
    slot.dropout = options.dropout;
    entry.linear->loras.push_back(slot);
  }
  entries_ = std::move(entries);
  options_ = options;
  attached_ = true;
}

void LoraNetwork::detach() {
  for (auto& entry : entries_) {
    if (!entry.linear) continue;
    auto& slots = entry.linear->loras;
    slots.erase(std::remove_if(slots.begin(), slots.end(),
                               [&](const models::LoraSlot& slot) { return slot.down.is_same(entry.down); }),
                slots.end());
    entry.linear.reset();
  }
  attached_ = false;
}

void LoraNetwork::set_dropout_generator(const at::Generator& generator) {
  for (auto& entry : entries_) {
    if (!entry.linear) continue;
    for (auto& slot : entry.linear->loras)
      if (slot.down.is_same(entry.down)) slot.generator = generator;
  }
}

std::vector<torch::Tensor> LoraNetwork::parameters_of(const std::string& component) const {
  std::vector<torch::Tensor> parameters;
  for (const auto& entry : entries_)
    if (entry.component == component) {
      parameters.push_back(entry.down);
      parameters.push_back(entry.up);
    }
  return parameters;
}

std::vector<torch::Tensor> LoraNetwork::unet_parameters() const { return parameters_of(kComponentUNet); }

std::vector<torch::Tensor> LoraNetwork::text_encoder_parameters() const {
  std::vector<torch::Tensor> parameters = parameters_of(kComponentTextEncoder);
  for (auto& tensor : parameters_of(kComponentTextEncoder2)) parameters.push_back(std::move(tensor));
  return parameters;
}

int64_t LoraNetwork::trainable_parameter_count() const {
  int64_t count = 0;
  for (const auto& entry : entries_) count += entry.down.numel() + entry.up.numel();
  return count;
}

std::vector<lora::LoraModule> LoraNetwork::modules(torch::Dtype save_dtype) const {
  std::vector<lora::LoraModule> modules;
  modules.reserve(entries_.size());
  for (const auto& entry : entries_) {
    lora::LoraModule module;
    module.component = entry.component;
    module.module_path = entry.module_path;
    // copy = true: a CPU float32 network must not hand out its own storage.
    module.down = entry.down.detach().to(torch::kCPU, save_dtype, /*non_blocking=*/false, /*copy=*/true).contiguous();
    module.up = entry.up.detach().to(torch::kCPU, save_dtype, /*non_blocking=*/false, /*copy=*/true).contiguous();
    module.alpha = options_.alpha;
    module.rank = options_.rank;
    module.pointwise_conv = entry.pointwise_conv;
    modules.push_back(std::move(module));
  }
  return modules;
}

std::map<std::string, torch::Tensor> LoraNetwork::state() const {
  std::map<std::string, torch::Tensor> state;
  for (const auto& entry : entries_) {
    state[state_key(entry.component, entry.module_path, kDownSuffix)] =
        entry.down.detach().to(torch::kCPU, torch::kFloat32, false, /*copy=*/true);
    state[state_key(entry.component, entry.module_path, kUpSuffix)] =
        entry.up.detach().to(torch::kCPU, torch::kFloat32, false, /*copy=*/true);
  }
  return state;
}

void LoraNetwork::load_state(const std::map<std::string, torch::Tensor>& state) {
  // Check everything first, so a bad state leaves the network as it was.
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies; // (destination, source)
  std::set<std::string> known;
  for (const auto& entry : entries_) {
    for (const auto& [suffix, tensor] : {std::make_pair(kDownSuffix, entry.down), std::make_pair(kUpSuffix, entry.up)}) {
      const std::string key = state_key(entry.component, entry.module_path, suffix);
      known.insert(key);
      const auto found = state.find(key);
      if (found == state.end()) throw std::invalid_argument("LoRA network state lacks " + key);
      if (!found->second.defined() || found->second.sizes() != tensor.sizes()) {
        std::ostringstream message;
        message << "LoRA network state: " << key << " has shape "
                << (found->second.defined() ? found->second.sizes() : torch::IntArrayRef{}) << ", expected "
                << tensor.sizes();
        throw std::invalid_argument(message.str());
      }
      copies.emplace_back(tensor, found->second);
    }
  }
  for (const auto& [key, value] : state)
    if (!known.count(key)) throw std::invalid_argument("LoRA network state has an unexpected key " + key);
  torch::NoGradGuard no_grad;
  for (auto& [destination, source] : copies) destination.copy_(source);
}

void save_trained_lora(const std::string& path, const LoraNetwork& network, lora::LoraLayout layout,
                       const io::UNetLayout& unet_layout, torch::Dtype save_dtype,
                       const std::map<std::string, std::string>& metadata, bool single_text_encoder) {
  if (network.module_count() == 0) throw std::logic_error("save_trained_lora: the LoRA network has no modules");
  // save_lora_file -> io::save_safetensors writes a temporary file and renames it.
  lora::save_lora_file(path, network.modules(save_dtype), layout, unet_layout, metadata, single_text_encoder);
}

} // namespace sdxl::train

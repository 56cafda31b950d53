// Strict state-dict loading with key normalisation and one combined error.
#include "models/state_dict.h"

#include <set>       // std::set of prefixes
#include <sstream>   // std::ostringstream error text
#include <stdexcept> // std::runtime_error
#include <vector>

namespace sdxl::models {

namespace {

// File entries that are buffers, not weights any model here needs.
bool is_ignored_buffer(const std::string& key) {
  auto ends_with = [&](const std::string& suffix) {
    return key.size() >= suffix.size() && key.compare(key.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  return ends_with("position_ids") || key == "logit_scale";
}

std::string shape_text(torch::IntArrayRef sizes) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < sizes.size(); ++i) out << (i ? ", " : "") << sizes[i];
  out << "]";
  return out.str();
}

} // namespace

StateDict normalize_state_dict_keys(const torch::nn::Module& module, const StateDict& tensors) {
  const auto parameters = module.named_parameters(/*recurse=*/true);
  std::set<std::string> parameter_prefixes; // first path component of every parameter, with its dot
  for (const auto& item : parameters) {
    const auto dot = item.key().find('.');
    if (dot != std::string::npos) parameter_prefixes.insert(item.key().substr(0, dot + 1));
  }
  // A prefix the file lacks entirely (transformers 5 saves CLIPTextModel without "text_model.").
  std::vector<std::string> missing_prefixes;
  for (const auto& prefix : parameter_prefixes) {
    bool file_has_prefix = false;
    for (const auto& [key, value] : tensors) {
      if (key.compare(0, prefix.size(), prefix) == 0) {
        file_has_prefix = true;
        break;
      }
    }
    if (!file_has_prefix) missing_prefixes.push_back(prefix);
  }

  StateDict normalized;
  for (const auto& [key, value] : tensors) {
    if (is_ignored_buffer(key)) continue;
    std::string name = key;
    if (!parameters.contains(key)) {
      for (const auto& prefix : missing_prefixes) {
        if (parameters.contains(prefix + key)) {
          name = prefix + key;
          break;
        }
      }
    }
    normalized[name] = value;
  }
  return normalized;
}

void load_state_dict(torch::nn::Module& module, const StateDict& tensors, const std::string& component_name) {
  const StateDict normalized = normalize_state_dict_keys(module, tensors);
  auto parameters = module.named_parameters(/*recurse=*/true);

  std::vector<std::string> missing, unexpected, wrong_shape;
  for (const auto& item : parameters) {
    auto found = normalized.find(item.key());
    if (found == normalized.end()) {
      missing.push_back(item.key());
    } else if (found->second.sizes() != item.value().sizes()) {
      wrong_shape.push_back(item.key() + " (file " + shape_text(found->second.sizes()) + ", model " +
                            shape_text(item.value().sizes()) + ")");
    }
  }
  for (const auto& [key, value] : normalized) {
    if (!parameters.contains(key)) unexpected.push_back(key);
  }

  if (!missing.empty() || !unexpected.empty() || !wrong_shape.empty()) {
    std::ostringstream error;
    error << component_name << ": state dict does not match the model (" << missing.size() << " missing, "
          << unexpected.size() << " unexpected, " << wrong_shape.size() << " wrong shape)";
    auto list = [&](const char* what, const std::vector<std::string>& keys) {
      for (const auto& key : keys) error << "\n  " << what << ": " << key;
    };
    list("missing", missing);
    list("unexpected", unexpected);
    list("wrong shape", wrong_shape);
    throw std::runtime_error(error.str());
  }

  torch::NoGradGuard no_grad;
  for (auto& item : parameters) {
    torch::Tensor& parameter = item.value();
    parameter.copy_(normalized.at(item.key()).to(parameter.device(), parameter.scalar_type()));
  }
}

torch::Tensor add_parameter(torch::nn::Module& root, const std::string& dotted, const torch::Tensor& value) {
  torch::nn::Module* module = &root;
  std::string rest = dotted;
  for (size_t dot = rest.find('.'); dot != std::string::npos; dot = rest.find('.')) {
    const std::string name = rest.substr(0, dot);
    rest = rest.substr(dot + 1);
    const auto children = module->named_children();
    module = children.contains(name) ? children[name].get()
                                     : module->register_module(name, std::make_shared<torch::nn::Module>()).get();
  }
  return module->register_parameter(rest, value, /*requires_grad=*/false);
}

int64_t count_parameters(const torch::nn::Module& module) {
  int64_t total = 0;
  for (const auto& parameter : module.parameters(/*recurse=*/true)) total += parameter.numel();
  return total;
}

} // namespace sdxl::models

// Reading LoRA files in the kohya (SGM or diffusers names) and peft layouts
// (see lora_file.h). Facts: kohya-ss/sd-scripts networks/lora.py (names
// "lora_unet_" / "lora_te1_" / "lora_te2_" + module path with '.' -> '_',
// lora_down / lora_up / alpha), diffusers' loaders/lora_conversion_utils.py and
// peft's LoraConfig (lora_alpha, r, alpha_pattern, rank_pattern; scale = alpha / r).
#include "lora/lora_file.h"

#include "io/safetensors.h" // SafetensorsFile

#include <nlohmann/json.hpp> // lora_adapter_metadata

#include <algorithm> // std::sort, std::replace
#include <map>       // std::map name tables
#include <set>       // std::set of unmatched keys
#include <sstream>   // std::ostringstream error messages
#include <stdexcept> // std::invalid_argument, std::runtime_error
#include <utility>   // std::move

namespace sdxl::lora {
namespace {

// At most this many offending keys are named in one error message.
constexpr size_t kMaxKeysInError = 40;

constexpr const char* kComponentUNet = "unet";
constexpr const char* kComponentTextEncoder = "text_encoder";
constexpr const char* kComponentTextEncoder2 = "text_encoder_2";
// transformers' CLIP text models nest everything but the projection under this.
constexpr const char* kTextModelPrefix = "text_model.";

// Kohya key parts.
constexpr const char* kKohyaDown = ".lora_down.weight";
constexpr const char* kKohyaUp = ".lora_up.weight";
constexpr const char* kKohyaAlpha = ".alpha";
// Peft key parts.
constexpr const char* kPeftDown = ".lora_A.weight";
constexpr const char* kPeftUp = ".lora_B.weight";
constexpr const char* kPeftMetadataKey = "lora_adapter_metadata";

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}
bool starts_with(const std::string& text, const std::string& prefix) {
  return text.compare(0, prefix.size(), prefix) == 0;
}

bool parse_digits(const std::string& text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::string flatten(std::string path) {
  std::replace(path.begin(), path.end(), '.', '_');
  return path;
}

std::string list_keys(const std::vector<std::string>& keys) {
  std::ostringstream out;
  for (size_t i = 0; i < keys.size() && i < kMaxKeysInError; ++i) out << (i ? ", " : "") << keys[i];
  if (keys.size() > kMaxKeysInError) out << " ... (" << keys.size() << " in all)";
  return out.str();
}

// One error listing every key of a LoRA file that names no module of the model, or,
// when the caller collects problems, one line per key added to its list.
void throw_if_unmatched(const std::string& path, const std::vector<std::string>& unmatched,
                        std::vector<std::string>* problems) {
  if (unmatched.empty()) return;
  if (problems != nullptr) {
    for (const auto& key : unmatched) problems->push_back(key + ": names no module of the model");
    return;
  }
  throw std::invalid_argument("LoRA file " + path + ": " + std::to_string(unmatched.size()) +
                              " keys name no module of the model: " + list_keys(unmatched));
}

const std::vector<std::string>& targets_of(const LoraTargets& targets, const std::string& component) {
  if (component == kComponentUNet) return targets.unet;
  if (component == kComponentTextEncoder) return targets.text_encoder;
  return targets.text_encoder_2;
}

// The spellings under which a target path may appear in a file: itself and,
// for text encoders, with "text_model." added or removed (transformers 4 vs 5).
std::vector<std::string> spellings(const std::string& component, const std::string& path) {
  std::vector<std::string> names = {path};
  if (component != kComponentUNet) {
    if (starts_with(path, kTextModelPrefix))
      names.push_back(path.substr(std::string(kTextModelPrefix).size()));
    else
      names.push_back(kTextModelPrefix + path);
  }
  return names;
}

// One LoRA module while its parts are being collected.
struct Pending {
  torch::Tensor down, up;
  std::string down_key, up_key, alpha_key; // as named in the file
  bool has_alpha = false;
  double alpha = 0;
};

// A 1x1 convolution's weight [o, i, 1, 1] as the matrix [o, i] it applies (SD 1.x's
// proj_in / proj_out adapters); other tensors unchanged.
torch::Tensor as_matrix(const torch::Tensor& tensor) {
  if (tensor.defined() && tensor.dim() == 4 && tensor.size(2) == 1 && tensor.size(3) == 1)
    return tensor.reshape({tensor.size(0), tensor.size(1)});
  return tensor;
}

// What is wrong with a module's parts on their own (empty: nothing), naming a key of it.
std::string malformed(const std::string& component, const std::string& module_path, const Pending& parts) {
  if (!parts.down.defined() || !parts.up.defined()) {
    const std::string& key = parts.down.defined() ? parts.down_key : parts.up.defined() ? parts.up_key : parts.alpha_key;
    return key + ": " + component + " module " + module_path + " lacks its " + (parts.down.defined() ? "up" : "down") +
           " matrix";
  }
  const torch::Tensor down = as_matrix(parts.down), up = as_matrix(parts.up);
  if (down.dim() != 2 || up.dim() != 2 || down.size(0) != up.size(1)) {
    std::ostringstream problem;
    problem << parts.down_key << " " << parts.down.sizes() << " / " << parts.up_key << " " << parts.up.sizes() << ": "
            << component << " module " << module_path << " needs down [r, in] and up [out, r] (or their 1x1 convolutions)";
    return problem.str();
  }
  return {};
}

// Adds the finished module to `modules`, or reports what is wrong with it: thrown, or
// added to `problems` when the caller collects them.
void finish_module(const std::string& component, const std::string& module_path, const Pending& parts,
                   const std::string& file_path, std::vector<LoraModule>& modules, std::vector<std::string>* problems) {
  const std::string problem = malformed(component, module_path, parts);
  if (!problem.empty()) {
    if (problems == nullptr) throw std::invalid_argument("LoRA file " + file_path + ": " + problem);
    problems->push_back(problem);
    return;
  }
  LoraModule module;
  module.component = component;
  module.module_path = module_path;
  module.down = as_matrix(parts.down);
  module.up = as_matrix(parts.up);
  module.pointwise_conv = parts.down.dim() == 4;
  module.rank = module.down.size(0);
  module.alpha = parts.has_alpha ? parts.alpha : static_cast<double>(module.rank); // no alpha: scale 1
  module.down_key = parts.down_key;
  module.up_key = parts.up_key;
  modules.push_back(std::move(module));
}

// ----------------------------------------------------------------------------
// Kohya

// Flattened name -> (target path, named in SGM style) for one component.
struct KohyaNames {
  std::map<std::string, std::pair<std::string, bool>> by_flat_name;
};

KohyaNames kohya_names(const std::string& component, const std::vector<std::string>& paths) {
  KohyaNames names;
  for (const auto& path : paths)
    for (const auto& spelling : spellings(component, path)) names.by_flat_name.emplace(flatten(spelling), std::make_pair(path, false));
  if (component == kComponentUNet && !paths.empty()) {
    const io::UNetLayout layout = io::UNetLayout::from_diffusers_keys(paths);
    for (const auto& path : paths) {
      std::string sgm;
      try {
        sgm = io::unet_diffusers_to_sgm(path, layout);
      } catch (const std::invalid_argument&) {
        continue; // a module without an SGM name cannot be named by an SGM-style file
      }
      names.by_flat_name.emplace(flatten(sgm), std::make_pair(path, true));
    }
  }
  return names;
}

LoraFile load_kohya(const io::SafetensorsFile& file, const LoraTargets& targets, std::vector<std::string>* problems) {
  static const std::vector<std::pair<std::string, std::string>> prefixes = {
      {"lora_unet_", kComponentUNet},
      {"lora_te1_", kComponentTextEncoder},
      {"lora_te2_", kComponentTextEncoder2},
      {"lora_te_", kComponentTextEncoder}, // single-text-encoder files (SD 1.x style)
  };
  std::map<std::string, KohyaNames> tables;
  std::map<std::pair<std::string, std::string>, Pending> pending; // (component, path) -> parts
  std::vector<std::string> unmatched;
  int sgm_named = 0, diffusers_named = 0;

  for (const auto& key : file.keys()) {
    std::string base, part;
    for (const char* suffix : {kKohyaDown, kKohyaUp, kKohyaAlpha})
      if (ends_with(key, suffix)) {
        base = key.substr(0, key.size() - std::string(suffix).size());
        part = suffix;
        break;
      }
    std::string component, flat;
    for (const auto& [prefix, name] : prefixes)
      if (!base.empty() && starts_with(base, prefix)) {
        component = name;
        flat = base.substr(prefix.size());
        break;
      }
    if (component.empty()) {
      unmatched.push_back(key);
      continue;
    }
    if (!tables.count(component)) tables[component] = kohya_names(component, targets_of(targets, component));
    const auto& table = tables[component].by_flat_name;
    const auto found = table.find(flat);
    if (found == table.end()) {
      unmatched.push_back(key);
      continue;
    }
    const auto& [path, sgm_style] = found->second;
    (sgm_style ? sgm_named : diffusers_named) += part == kKohyaDown ? 1 : 0;
    Pending& parts = pending[{component, path}];
    if (part == kKohyaDown) {
      parts.down = file.tensor(key);
      parts.down_key = key;
    } else if (part == kKohyaUp) {
      parts.up = file.tensor(key);
      parts.up_key = key;
    } else {
      parts.alpha_key = key;
      parts.has_alpha = true;
      parts.alpha = file.tensor(key).to(torch::kDouble).item<double>();
    }
  }
  throw_if_unmatched(file.path(), unmatched, problems);
  LoraFile result;
  result.path = file.path();
  result.layout = sgm_named > 0 ? LoraLayout::KohyaSgm : LoraLayout::KohyaDiffusers;
  for (const auto& [where, parts] : pending)
    finish_module(where.first, where.second, parts, file.path(), result.modules, problems);
  return result;
}

// ----------------------------------------------------------------------------
// Peft

// Alpha and rank settings of one component from lora_adapter_metadata.
struct PeftSettings {
  bool has_alpha = false;
  double alpha = 0;
  std::map<std::string, double> alpha_pattern; // module-name pattern -> alpha
};

// peft matches pattern keys against the end of a module name at a '.' boundary.
bool pattern_matches(const std::string& module_path, const std::string& pattern) {
  return module_path == pattern || ends_with(module_path, "." + pattern);
}

std::map<std::string, PeftSettings> peft_settings(const io::SafetensorsFile& file) {
  std::map<std::string, PeftSettings> settings;
  const auto& metadata = file.metadata();
  const auto found = metadata.find(kPeftMetadataKey);
  if (found == metadata.end()) return settings;
  nlohmann::json config;
  try {
    config = nlohmann::json::parse(found->second);
  } catch (const std::exception& e) {
    throw std::invalid_argument("LoRA file " + file.path() + ": __metadata__." + kPeftMetadataKey +
                                " is not JSON: " + e.what());
  }
  for (const char* component : {kComponentUNet, kComponentTextEncoder, kComponentTextEncoder2}) {
    PeftSettings& entry = settings[component];
    const std::string prefix = std::string(component) + ".";
    if (config.contains(prefix + "lora_alpha") && config.at(prefix + "lora_alpha").is_number()) {
      entry.has_alpha = true;
      entry.alpha = config.at(prefix + "lora_alpha").get<double>();
    }
    if (config.contains(prefix + "alpha_pattern") && config.at(prefix + "alpha_pattern").is_object()) {
      const auto& patterns = config.at(prefix + "alpha_pattern");
      for (auto pattern = patterns.begin(); pattern != patterns.end(); ++pattern)
        entry.alpha_pattern[pattern.key()] = pattern->get<double>();
    }
  }
  return settings;
}

LoraFile load_peft(const io::SafetensorsFile& file, const LoraTargets& targets, std::vector<std::string>* problems) {
  // Longest component prefix first: "text_encoder_2." also starts with "text_encoder".
  static const std::vector<std::string> components = {kComponentTextEncoder2, kComponentTextEncoder, kComponentUNet};
  const std::map<std::string, PeftSettings> settings = peft_settings(file);
  std::map<std::string, std::map<std::string, std::string>> tables; // component -> spelling -> target path
  std::map<std::pair<std::string, std::string>, Pending> pending;
  std::vector<std::string> unmatched;

  for (const auto& key : file.keys()) {
    std::string component;
    for (const auto& name : components)
      if (starts_with(key, name + ".")) {
        component = name;
        break;
      }
    std::string part;
    for (const char* suffix : {kPeftDown, kPeftUp, kKohyaAlpha})
      if (ends_with(key, suffix)) part = suffix;
    if (component.empty() || part.empty()) {
      unmatched.push_back(key);
      continue;
    }
    const std::string module = key.substr(component.size() + 1, key.size() - component.size() - 1 - part.size());
    if (!tables.count(component)) {
      auto& table = tables[component];
      for (const auto& path : targets_of(targets, component))
        for (const auto& spelling : spellings(component, path)) table.emplace(spelling, path);
    }
    const auto found = tables[component].find(module);
    if (found == tables[component].end()) {
      unmatched.push_back(key);
      continue;
    }
    Pending& parts = pending[{component, found->second}];
    if (part == kPeftDown) {
      parts.down = file.tensor(key);
      parts.down_key = key;
    } else if (part == kPeftUp) {
      parts.up = file.tensor(key);
      parts.up_key = key;
    } else { // a per-module alpha tensor overrides the metadata
      parts.alpha_key = key;
      parts.has_alpha = true;
      parts.alpha = file.tensor(key).to(torch::kDouble).item<double>();
    }
  }
  throw_if_unmatched(file.path(), unmatched, problems);
  LoraFile result;
  result.path = file.path();
  result.layout = LoraLayout::Peft;
  for (auto& [where, parts] : pending) {
    const auto& [component, path] = where;
    const auto setting = settings.find(component);
    if (!parts.has_alpha && setting != settings.end()) {
      // Most specific first: alpha_pattern, then lora_alpha; neither: alpha = rank.
      for (const auto& [pattern, alpha] : setting->second.alpha_pattern)
        if (pattern_matches(path, pattern)) {
          parts.has_alpha = true;
          parts.alpha = alpha;
        }
      if (!parts.has_alpha && setting->second.has_alpha) {
        parts.has_alpha = true;
        parts.alpha = setting->second.alpha;
      }
    }
    finish_module(component, path, parts, file.path(), result.modules, problems);
  }
  return result;
}

// ----------------------------------------------------------------------------
// Writing

// A text-encoder path as kohya and diffusers spell it (with "text_model."), except
// the projection, which sits beside the text model.
std::string with_text_model_prefix(const std::string& path) {
  if (starts_with(path, kTextModelPrefix) || starts_with(path, "text_projection")) return path;
  return kTextModelPrefix + path;
}

std::string kohya_name(const LoraModule& module, LoraLayout layout, const io::UNetLayout& unet_layout,
                       bool single_text_encoder) {
  if (module.component == kComponentUNet)
    return "lora_unet_" + flatten(layout == LoraLayout::KohyaSgm ? io::unet_diffusers_to_sgm(module.module_path, unet_layout)
                                                                 : module.module_path);
  // sd-scripts names an SD 1.x/2.x text encoder lora_te_, SDXL's two lora_te1_ and lora_te2_.
  const char* prefix = single_text_encoder ? "lora_te_" : module.component == kComponentTextEncoder ? "lora_te1_" : "lora_te2_";
  return prefix + flatten(with_text_model_prefix(module.module_path));
}

// A module's tensors as files hold them: 1x1-convolution shapes for a pointwise-conv target.
torch::Tensor stored_down(const LoraModule& module) {
  return module.pointwise_conv ? module.down.reshape({module.down.size(0), module.down.size(1), 1, 1}) : module.down;
}
torch::Tensor stored_up(const LoraModule& module) {
  return module.pointwise_conv ? module.up.reshape({module.up.size(0), module.up.size(1), 1, 1}) : module.up;
}

// A single value when every module of the set has it, for the summary metadata.
template <typename Value, typename Get>
bool uniform(const std::vector<const LoraModule*>& modules, Get get, Value& value) {
  if (modules.empty()) return false;
  value = get(*modules.front());
  for (const auto* module : modules)
    if (get(*module) != value) return false;
  return true;
}

std::string leaf_name(const std::string& path) {
  // "to_out.0" keeps its index, as peft's target_modules do.
  const size_t dot = path.rfind('.');
  if (dot != std::string::npos && dot > 0 && parse_digits(path.substr(dot + 1))) {
    const size_t previous = path.rfind('.', dot - 1);
    return path.substr(previous == std::string::npos ? 0 : previous + 1);
  }
  return dot == std::string::npos ? path : path.substr(dot + 1);
}

} // namespace

const char* to_string(LoraLayout layout) {
  switch (layout) {
    case LoraLayout::KohyaSgm: return "kohya-sgm";
    case LoraLayout::KohyaDiffusers: return "kohya-diffusers";
    case LoraLayout::Peft: return "peft";
  }
  return "unknown";
}

namespace {

// The file opened, its failures as bad arguments: a LoRA file is always the caller's.
io::SafetensorsFile open_lora_file(const std::string& path) {
  try {
    return io::SafetensorsFile::open(path);
  } catch (const std::runtime_error& e) {
    throw std::invalid_argument(std::string("Not a readable safetensors LoRA file: ") + e.what());
  }
}

} // namespace

LoraFile load_lora_file(const std::string& path, const LoraTargets& targets, std::vector<std::string>* problems) {
  const io::SafetensorsFile file = open_lora_file(path);
  const std::vector<std::string> keys = file.keys();
  const bool kohya = std::any_of(keys.begin(), keys.end(), [](const std::string& key) { return ends_with(key, kKohyaDown); });
  const bool peft = std::any_of(keys.begin(), keys.end(), [](const std::string& key) { return ends_with(key, kPeftDown); });
  if (kohya == peft)
    throw std::invalid_argument("LoRA file " + path + (kohya ? ": mixes kohya (lora_down) and peft (lora_A) keys"
                                                             : ": no lora_down.weight or lora_A.weight keys; not a LoRA file"));
  LoraFile result = kohya ? load_kohya(file, targets, problems) : load_peft(file, targets, problems);
  std::sort(result.modules.begin(), result.modules.end(), [](const LoraModule& a, const LoraModule& b) {
    return a.component != b.component ? a.component < b.component : a.module_path < b.module_path;
  });
  return result;
}

} // namespace sdxl::lora

namespace sdxl::lora {

void save_lora_file(const std::string& path, const std::vector<LoraModule>& modules, LoraLayout layout,
                    const io::UNetLayout& unet_layout, const std::map<std::string, std::string>& metadata,
                    bool single_text_encoder) {
  io::TensorMap tensors;
  std::map<std::string, std::string> header;
  std::map<std::string, std::vector<const LoraModule*>> by_component;
  for (const auto& module : modules) by_component[module.component].push_back(&module);
  if (layout == LoraLayout::Peft) {
    nlohmann::json config = nlohmann::json::object();
    for (const auto& [component, members] : by_component) {
      for (const auto* module : members) {
        const std::string path_in_file =
            component == kComponentUNet ? module->module_path : with_text_model_prefix(module->module_path);
        tensors[component + "." + path_in_file + kPeftDown] = stored_down(*module);
        tensors[component + "." + path_in_file + kPeftUp] = stored_up(*module);
      }
      int64_t rank = 0;
      double alpha = 0;
      if (uniform(members, [](const LoraModule& m) { return m.rank; }, rank)) config[component + ".r"] = rank;
      if (uniform(members, [](const LoraModule& m) { return m.alpha; }, alpha)) {
        config[component + ".lora_alpha"] = alpha;
      } else {
        // Per-module alphas by full path (a pattern matching exactly one module).
        nlohmann::json pattern = nlohmann::json::object();
        for (const auto* module : members) pattern[module->module_path] = module->alpha;
        config[component + ".alpha_pattern"] = pattern;
        config[component + ".lora_alpha"] = members.front()->alpha;
      }
      std::set<std::string> leaves;
      for (const auto* module : members) leaves.insert(leaf_name(module->module_path));
      config[component + ".target_modules"] = std::vector<std::string>(leaves.begin(), leaves.end());
    }
    header[kPeftMetadataKey] = config.dump(2);
  } else {
    std::vector<const LoraModule*> all;
    for (const auto& module : modules) {
      const std::string name = kohya_name(module, layout, unet_layout, single_text_encoder);
      tensors[name + kKohyaDown] = stored_down(module);
      tensors[name + kKohyaUp] = stored_up(module);
      // 0-dim, in the weights' dtype as sd-scripts saves it (alphas such as 16 or 8 are exact in float16)
      tensors[name + kKohyaAlpha] = torch::tensor(static_cast<float>(module.alpha)).to(module.down.scalar_type());
      all.push_back(&module);
    }
    int64_t rank = 0;
    double alpha = 0;
    if (uniform(all, [](const LoraModule& m) { return m.rank; }, rank)) header["ss_network_dim"] = std::to_string(rank);
    if (uniform(all, [](const LoraModule& m) { return m.alpha; }, alpha)) {
      std::ostringstream text;
      text << alpha;
      header["ss_network_alpha"] = text.str();
    }
  }
  for (const auto& [key, value] : metadata) header[key] = value;
  io::save_safetensors(path, tensors, header);
}

} // namespace sdxl::lora

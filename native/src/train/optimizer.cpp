// The optimizers' shared step: checks, the float32 working copy of each parameter,
// gradients widened and freed one parameter at a time, checkpoints.
#include "train/optimizer.h"

#include <cmath>     // std::isfinite
#include <sstream>   // std::ostringstream error messages
#include <stdexcept> // std::invalid_argument

#include "train/adafactor.h" // Adafactor
#include "train/adamw.h"     // AdamW, parse_optimizer_kind

namespace sdxl::train {

namespace {

const char* const kStepsKey = "steps";   // "<prefix>.steps"
const char* const kStepKey = "step";     // "<prefix>.<group>.<index>.step"
const char* const kMasterKey = "master"; // "<prefix>.<group>.<index>.master"

std::string shape_string(const torch::Tensor& tensor) {
  std::ostringstream out;
  out << tensor.sizes() << " " << tensor.scalar_type();
  return out.str();
}

torch::Tensor cpu_copy(const torch::Tensor& tensor) {
  return tensor.detach().to(torch::kCPU, /*non_blocking=*/false, /*copy=*/true).contiguous();
}

torch::Tensor step_tensor(int64_t step) { return torch::scalar_tensor(step, torch::kInt64); }

// The checkpoint tensor under `key`, which must have `like`'s shape and dtype.
const torch::Tensor& checked_entry(const std::map<std::string, torch::Tensor>& in, const std::string& key,
                                   const torch::Tensor& like, const std::string& who) {
  const auto found = in.find(key);
  if (found == in.end()) throw std::invalid_argument(who + "::load_state: missing key \"" + key + "\"");
  const torch::Tensor& tensor = found->second;
  if (!tensor.defined() || tensor.sizes() != like.sizes() || tensor.scalar_type() != like.scalar_type())
    throw std::invalid_argument(who + "::load_state: key \"" + key + "\" is " +
                                (tensor.defined() ? shape_string(tensor) : std::string("undefined")) + ", expected " +
                                shape_string(like));
  return tensor;
}

// A seed for each (parameter, update): splitmix64 over the run's seed and the three counts.
uint64_t rounding_seed(uint64_t seed, size_t group, size_t index, int64_t step) {
  uint64_t x = seed;
  for (const uint64_t part : {static_cast<uint64_t>(group), static_cast<uint64_t>(index), static_cast<uint64_t>(step)}) {
    x += 0x9E3779B97F4A7C15ULL + part;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    x ^= x >> 31;
  }
  return x;
}

bool is_low_precision(const torch::Tensor& tensor) {
  return tensor.scalar_type() == torch::kBFloat16 || tensor.scalar_type() == torch::kFloat16;
}

} // namespace

torch::Tensor stochastic_round_to_bfloat16(const torch::Tensor& value, at::Generator& generator) {
  // A float32's top 16 bits are its bfloat16. Adding 16 random low bits to the bit
  // pattern carries into the kept half with probability (low bits) / 2^16; clearing
  // the low half then truncates. The pattern is sign and magnitude, so this rounds
  // the magnitude, which is what stochastic rounding asks for either sign.
  const torch::Tensor bits = value.contiguous().view(torch::kInt32);
  const torch::Tensor noise =
      torch::randint(0, 1 << 16, value.sizes(), generator, torch::TensorOptions().dtype(torch::kInt32).device(value.device()));
  const torch::Tensor rounded = bits.add(noise).bitwise_and(static_cast<int64_t>(-65536)); // 0xFFFF0000
  return rounded.view(torch::kFloat32).to(torch::kBFloat16); // exact: the low half is zero
}

Optimizer::Optimizer(std::string name, std::vector<std::vector<torch::Tensor>> param_groups, PrecisionOptions precision,
                     const Ownership& owned)
    : name_(std::move(name)), precision_(std::move(precision)) {
  if (!owned.empty() && owned.size() != param_groups.size())
    throw std::invalid_argument(name_ + ": ownership of " + std::to_string(owned.size()) + " groups for " +
                                std::to_string(param_groups.size()));
  for (size_t g = 0; g < param_groups.size(); ++g) {
    if (!owned.empty() && owned[g].size() != param_groups[g].size())
      throw std::invalid_argument(name_ + ": ownership of group " + std::to_string(g) + " does not match its parameters");
    std::vector<Slot> group;
    for (size_t i = 0; i < param_groups[g].size(); ++i) {
      const torch::Tensor& param = param_groups[g][i];
      const std::string where = name_ + ": parameter " + std::to_string(g) + "." + std::to_string(i);
      if (!param.defined() || !(param.scalar_type() == torch::kFloat32 || is_low_precision(param)))
        throw std::invalid_argument(where + " must be a defined float32, bfloat16 or float16 tensor");
      Slot slot;
      slot.param = param;
      slot.owned = owned.empty() || owned[g][i];
      if (is_low_precision(param) && slot.owned) {
        if (precision_.master_weights) {
          torch::NoGradGuard no_grad;
          slot.master = param.detach().to(torch::kFloat32).contiguous();
        } else if (param.scalar_type() != torch::kBFloat16) {
          throw std::invalid_argument(where + " is float16: stochastic rounding is for bfloat16 weights");
        } else if (!precision_.rounding.defined()) {
          throw std::invalid_argument(where + " is bfloat16 without master weights: a rounding generator is required");
        }
      }
      group.push_back(std::move(slot));
    }
    slots_.push_back(std::move(group));
  }
}

void Optimizer::step(const std::vector<double>& group_lrs, double grad_factor) {
  if (group_lrs.size() != slots_.size())
    throw std::invalid_argument(name_ + "::step: " + std::to_string(group_lrs.size()) + " learning rates for " +
                                std::to_string(slots_.size()) + " parameter groups");
  if (!std::isfinite(grad_factor)) throw std::invalid_argument(name_ + "::step: grad_factor must be finite");
  for (size_t g = 0; g < slots_.size(); ++g) {
    if (!std::isfinite(group_lrs[g]) || group_lrs[g] < 0)
      throw std::invalid_argument(name_ + "::step: learning rate of group " + std::to_string(g) +
                                  " must be finite and non-negative");
    for (size_t i = 0; i < slots_[g].size(); ++i) {
      const Slot& slot = slots_[g][i];
      const torch::Tensor grad = slot.param.grad();
      if (!grad.defined()) continue;
      if (grad.device() != slot.param.device() || grad.sizes() != slot.param.sizes() ||
          !(grad.scalar_type() == torch::kFloat32 || grad.scalar_type() == slot.param.scalar_type()))
        throw std::invalid_argument(name_ + "::step: gradient of parameter " + std::to_string(g) + "." +
                                    std::to_string(i) + " must have the parameter's shape and device, in float32 or its dtype");
    }
  }
  torch::NoGradGuard no_grad;
  for (size_t g = 0; g < slots_.size(); ++g) {
    for (size_t i = 0; i < slots_[g].size(); ++i) {
      Slot& slot = slots_[g][i];
      torch::Tensor grad = slot.param.grad();
      if (!grad.defined()) continue;
      if (!slot.owned) { // another rank updates it and sends the weights
        slot.param.mutable_grad() = torch::Tensor();
        continue;
      }
      grad = grad.to(torch::kFloat32); // the same tensor when it is float32 already
      if (grad_factor != 1.0) grad = grad * grad_factor;
      ++slot.step;
      if (slot.param.scalar_type() == torch::kFloat32) {
        torch::Tensor weights = slot.param.detach();
        update(static_cast<int64_t>(g), static_cast<int64_t>(i), weights, grad, group_lrs[g], slot.step);
      } else if (slot.master.defined()) {
        update(static_cast<int64_t>(g), static_cast<int64_t>(i), slot.master, grad, group_lrs[g], slot.step);
        slot.param.detach().copy_(slot.master); // round to nearest
      } else {
        torch::Tensor weights = slot.param.detach().to(torch::kFloat32).contiguous();
        update(static_cast<int64_t>(g), static_cast<int64_t>(i), weights, grad, group_lrs[g], slot.step);
        precision_.rounding.set_current_seed(rounding_seed(precision_.rounding_seed, g, i, slot.step));
        slot.param.detach().copy_(stochastic_round_to_bfloat16(weights, precision_.rounding));
      }
      slot.param.mutable_grad() = torch::Tensor(); // this parameter's gradient is spent
    }
  }
  ++steps_;
}

void Optimizer::zero_grad() {
  for (auto& group : slots_) {
    for (auto& slot : group) {
      if (slot.param.grad().defined()) slot.param.mutable_grad() = torch::Tensor();
    }
  }
}

int64_t Optimizer::state_bytes() const {
  int64_t bytes = 0;
  for (size_t g = 0; g < slots_.size(); ++g) {
    for (size_t i = 0; i < slots_[g].size(); ++i) {
      for (const auto& [name, tensor] : all_state(static_cast<int64_t>(g), static_cast<int64_t>(i)))
        bytes += tensor.numel() * tensor.element_size();
    }
  }
  return bytes;
}

int64_t Optimizer::parameter_count() const {
  int64_t count = 0;
  for (const auto& group : slots_) {
    for (const auto& slot : group) count += slot.param.numel();
  }
  return count;
}

std::vector<std::pair<std::string, torch::Tensor>> Optimizer::all_state(int64_t group, int64_t index) const {
  const Slot& slot = slots_[group][index];
  if (!slot.owned) return {};
  std::vector<std::pair<std::string, torch::Tensor>> state = named_state(group, index);
  if (slot.master.defined()) state.emplace_back(kMasterKey, slot.master);
  return state;
}

void Optimizer::save_state(std::map<std::string, torch::Tensor>& out, const std::string& prefix) const {
  for (size_t g = 0; g < slots_.size(); ++g) {
    for (size_t i = 0; i < slots_[g].size(); ++i) {
      const std::string key = prefix + "." + std::to_string(g) + "." + std::to_string(i) + ".";
      if (!slots_[g][i].owned) continue;
      for (const auto& [name, tensor] : all_state(static_cast<int64_t>(g), static_cast<int64_t>(i)))
        out[key + name] = cpu_copy(tensor);
      out[key + kStepKey] = step_tensor(slots_[g][i].step);
    }
  }
  out[prefix + "." + kStepsKey] = step_tensor(steps_);
}

void Optimizer::load_state(const std::map<std::string, torch::Tensor>& in, const std::string& prefix) {
  // Check everything first, so a bad checkpoint changes nothing.
  const torch::Tensor step_like = step_tensor(0);
  checked_entry(in, prefix + "." + kStepsKey, step_like, name_);
  for (size_t g = 0; g < slots_.size(); ++g) {
    for (size_t i = 0; i < slots_[g].size(); ++i) {
      const std::string key = prefix + "." + std::to_string(g) + "." + std::to_string(i) + ".";
      if (!slots_[g][i].owned) continue;
      for (const auto& [name, tensor] : all_state(static_cast<int64_t>(g), static_cast<int64_t>(i)))
        checked_entry(in, key + name, tensor, name_);
      checked_entry(in, key + kStepKey, step_like, name_);
    }
  }
  torch::NoGradGuard no_grad;
  for (size_t g = 0; g < slots_.size(); ++g) {
    for (size_t i = 0; i < slots_[g].size(); ++i) {
      const std::string key = prefix + "." + std::to_string(g) + "." + std::to_string(i) + ".";
      if (!slots_[g][i].owned) continue;
      for (auto& [name, tensor] : all_state(static_cast<int64_t>(g), static_cast<int64_t>(i)))
        tensor.copy_(in.at(key + name));
      slots_[g][i].step = in.at(key + kStepKey).item<int64_t>();
    }
  }
  steps_ = in.at(prefix + "." + kStepsKey).item<int64_t>();
}

std::unique_ptr<Optimizer> make_optimizer(const std::string& name, std::vector<std::vector<torch::Tensor>> param_groups,
                                          const OptimizerHyper& hyper, PrecisionOptions precision, const Ownership& owned) {
  if (name == "adafactor")
    return std::make_unique<Adafactor>(std::move(param_groups), hyper.weight_decay, std::move(precision), owned);
  if (name != "adamw" && name != "adamw8bit")
    throw std::invalid_argument("unknown optimizer \"" + name + "\" (expected adamw, adamw8bit or adafactor)");
  return std::make_unique<AdamW>(parse_optimizer_kind(name), std::move(param_groups), hyper, std::move(precision), owned);
}

} // namespace sdxl::train

// AdamW with 32-bit or block-wise 8-bit moments: state allocation, the update
// dispatch (torch ops, CPU loop, CUDA kernel) and checkpoints.
#include "train/adamw.h"

#include <cmath>     // std::isfinite
#include <sstream>   // std::ostringstream error messages
#include <stdexcept> // std::invalid_argument

#if defined(SDXL_WITH_CUDA_KERNELS)
#include <c10/cuda/CUDAGuard.h>  // c10::cuda::CUDAGuard
#include <c10/cuda/CUDAStream.h> // c10::cuda::getCurrentCUDAStream

#include "train/adamw8bit_cuda.h" // launch_adamw8bit_update
#endif

namespace sdxl::train {

namespace {

const char* const kStepsKey = "steps"; // "<prefix>.steps"
const char* const kStepKey = "step";   // "<prefix>.<group>.<index>.step"

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
                                   const torch::Tensor& like) {
  const auto found = in.find(key);
  if (found == in.end()) throw std::invalid_argument("AdamW::load_state: missing key \"" + key + "\"");
  const torch::Tensor& tensor = found->second;
  if (!tensor.defined() || tensor.sizes() != like.sizes() || tensor.scalar_type() != like.scalar_type())
    throw std::invalid_argument("AdamW::load_state: key \"" + key + "\" is " +
                                (tensor.defined() ? shape_string(tensor) : std::string("undefined")) +
                                ", expected " + shape_string(like));
  return tensor;
}

#if defined(SDXL_WITH_CUDA_KERNELS)
void update_8bit_cuda(torch::Tensor& param, const torch::Tensor& grad, Blockwise8bitState& moments,
                      const torch::Tensor& signed_map, const torch::Tensor& unsigned_map,
                      const AdamWStepConstants& c) {
  const c10::cuda::CUDAGuard device_guard(param.device());
  const torch::Tensor grad_flat = grad.contiguous();
  Adamw8bitKernelArgs args{};
  args.param = param.data_ptr<float>();
  args.grad = grad_flat.data_ptr<float>();
  args.exp_avg_codes = moments.exp_avg_codes.data_ptr<uint8_t>();
  args.exp_avg_sq_codes = moments.exp_avg_sq_codes.data_ptr<uint8_t>();
  args.exp_avg_absmax = moments.exp_avg_absmax.data_ptr<float>();
  args.exp_avg_sq_absmax = moments.exp_avg_sq_absmax.data_ptr<float>();
  args.signed_map = signed_map.data_ptr<float>();
  args.unsigned_map = unsigned_map.data_ptr<float>();
  args.numel = param.numel();
  args.block = static_cast<int>(kQuantizationBlock);
  args.beta1 = c.beta1;
  args.one_minus_beta1 = c.one_minus_beta1;
  args.beta2 = c.beta2;
  args.one_minus_beta2 = c.one_minus_beta2;
  args.eps = c.eps;
  args.decay = c.decay;
  args.step_size = c.step_size;
  args.bias_correction2_sqrt = c.bias_correction2_sqrt;
  launch_adamw8bit_update(args, c10::cuda::getCurrentCUDAStream(param.device().index()).stream());
}
#endif

} // namespace

// ---------------------------------------------------------------------------
// Kinds

OptimizerKind parse_optimizer_kind(const std::string& name) {
  if (name == "adamw") return OptimizerKind::AdamW;
  if (name == "adamw8bit") return OptimizerKind::AdamW8bit;
  throw std::invalid_argument("unknown optimizer \"" + name + "\" (expected adamw or adamw8bit)");
}

const char* optimizer_kind_name(OptimizerKind kind) {
  return kind == OptimizerKind::AdamW8bit ? "adamw8bit" : "adamw";
}

// ---------------------------------------------------------------------------
// Construction

AdamW::AdamW(OptimizerKind kind, std::vector<std::vector<torch::Tensor>> param_groups, AdamWHyper hyper)
    : kind_(kind), hyper_(hyper) {
  if (!(hyper.beta1 >= 0 && hyper.beta1 < 1) || !(hyper.beta2 >= 0 && hyper.beta2 < 1))
    throw std::invalid_argument("AdamW: betas must lie in [0, 1)");
  if (!(hyper.eps >= 0) || !(hyper.weight_decay >= 0))
    throw std::invalid_argument("AdamW: eps and weight_decay must be non-negative");
  std::map<std::string, std::pair<torch::Tensor, torch::Tensor>> maps_by_device; // one copy per device
  for (size_t g = 0; g < param_groups.size(); ++g) {
    std::vector<ParamState> group;
    for (size_t i = 0; i < param_groups[g].size(); ++i) {
      const torch::Tensor& param = param_groups[g][i];
      const std::string where = "AdamW: parameter " + std::to_string(g) + "." + std::to_string(i);
      if (!param.defined() || param.scalar_type() != torch::kFloat32)
        throw std::invalid_argument(where + " must be a defined float32 tensor");
      ParamState state;
      state.param = param;
      state.quantized = kind == OptimizerKind::AdamW8bit && param.numel() >= kMin8bitStateElements;
      if (state.quantized) {
        if (!param.is_contiguous()) throw std::invalid_argument(where + " must be contiguous for 8-bit moments");
        state.moments = zero_8bit_state(param.numel(), param.device());
        auto& maps = maps_by_device[param.device().str()];
        if (!maps.first.defined())
          maps = {signed_dynamic_map().to(param.device()), unsigned_dynamic_map().to(param.device())};
        state.signed_map = maps.first;
        state.unsigned_map = maps.second;
      } else {
        const torch::Tensor zeros = torch::zeros(param.sizes(), param.options());
        state.exp_avg = zeros;
        state.exp_avg_sq = zeros.clone();
      }
      group.push_back(std::move(state));
    }
    groups_.push_back(std::move(group));
  }
}

// ---------------------------------------------------------------------------
// Update

void AdamW::step(const std::vector<double>& group_lrs) {
  if (group_lrs.size() != groups_.size())
    throw std::invalid_argument("AdamW::step: " + std::to_string(group_lrs.size()) + " learning rates for " +
                                std::to_string(groups_.size()) + " parameter groups");
  for (size_t g = 0; g < groups_.size(); ++g) {
    if (!std::isfinite(group_lrs[g]) || group_lrs[g] < 0)
      throw std::invalid_argument("AdamW::step: learning rate of group " + std::to_string(g) +
                                  " must be finite and non-negative");
    for (size_t i = 0; i < groups_[g].size(); ++i) {
      const ParamState& state = groups_[g][i];
      const torch::Tensor grad = state.param.grad();
      if (!grad.defined()) continue;
      if (grad.scalar_type() != torch::kFloat32 || grad.device() != state.param.device() ||
          grad.sizes() != state.param.sizes())
        throw std::invalid_argument("AdamW::step: gradient of parameter " + std::to_string(g) + "." +
                                    std::to_string(i) + " must be float32 with the parameter's shape and device");
    }
  }
  torch::NoGradGuard no_grad;
  for (size_t g = 0; g < groups_.size(); ++g) {
    for (auto& state : groups_[g]) {
      const torch::Tensor grad = state.param.grad();
      if (grad.defined()) update(state, grad, group_lrs[g]);
    }
  }
  ++steps_;
}

void AdamW::update(ParamState& state, const torch::Tensor& grad, double lr) {
  ++state.step;
  const AdamWStepConstants c =
      adamw_step_constants(lr, hyper_.beta1, hyper_.beta2, hyper_.eps, hyper_.weight_decay, state.step);
  torch::Tensor& param = state.param;
  if (!state.quantized) {
    // torch.optim.AdamW's single-tensor update.
    param.mul_(c.decay);
    state.exp_avg.mul_(c.beta1).add_(grad, c.one_minus_beta1);
    state.exp_avg_sq.mul_(c.beta2).addcmul_(grad, grad, c.one_minus_beta2);
    const torch::Tensor denom = state.exp_avg_sq.sqrt().div_(c.bias_correction2_sqrt).add_(c.eps);
    param.addcdiv_(state.exp_avg, denom, -c.step_size);
    return;
  }
  if (param.device().is_cpu()) {
    adamw8bit_update_cpu(param, grad, state.moments, c);
    return;
  }
#if defined(SDXL_WITH_CUDA_KERNELS)
  if (param.device().is_cuda()) {
    update_8bit_cuda(param, grad, state.moments, state.signed_map, state.unsigned_map, c);
    return;
  }
#endif
  adamw8bit_update_torch_ops(param, grad, state.moments, c, state.signed_map, state.unsigned_map);
}

void AdamW::zero_grad() {
  for (auto& group : groups_) {
    for (auto& state : group) {
      if (state.param.grad().defined()) state.param.mutable_grad() = torch::Tensor();
    }
  }
}

// ---------------------------------------------------------------------------
// Figures

int64_t AdamW::steps() const { return steps_; }

OptimizerKind AdamW::kind() const { return kind_; }

bool AdamW::is_quantized(int64_t group, int64_t index) const { return groups_.at(group).at(index).quantized; }

int64_t AdamW::state_bytes() const {
  int64_t bytes = 0;
  for (const auto& group : groups_) {
    for (const auto& state : group) {
      for (const auto& [name, tensor] : named_moments(state)) bytes += tensor.numel() * tensor.element_size();
    }
  }
  return bytes;
}

int64_t AdamW::parameter_count() const {
  int64_t count = 0;
  for (const auto& group : groups_) {
    for (const auto& state : group) count += state.param.numel();
  }
  return count;
}

// ---------------------------------------------------------------------------
// Checkpoints

std::vector<std::pair<std::string, torch::Tensor>> AdamW::named_moments(const ParamState& state) {
  if (!state.quantized) return {{"exp_avg", state.exp_avg}, {"exp_avg_sq", state.exp_avg_sq}};
  return {{"exp_avg_codes", state.moments.exp_avg_codes},
          {"exp_avg_absmax", state.moments.exp_avg_absmax},
          {"exp_avg_sq_codes", state.moments.exp_avg_sq_codes},
          {"exp_avg_sq_absmax", state.moments.exp_avg_sq_absmax}};
}

void AdamW::save_state(std::map<std::string, torch::Tensor>& out, const std::string& prefix) const {
  for (size_t g = 0; g < groups_.size(); ++g) {
    for (size_t i = 0; i < groups_[g].size(); ++i) {
      const ParamState& state = groups_[g][i];
      const std::string key = prefix + "." + std::to_string(g) + "." + std::to_string(i) + ".";
      for (const auto& [name, tensor] : named_moments(state)) out[key + name] = cpu_copy(tensor);
      out[key + kStepKey] = step_tensor(state.step);
    }
  }
  out[prefix + "." + kStepsKey] = step_tensor(steps_);
}

void AdamW::load_state(const std::map<std::string, torch::Tensor>& in, const std::string& prefix) {
  // Check everything first, so a bad checkpoint changes nothing.
  const torch::Tensor step_like = step_tensor(0);
  checked_entry(in, prefix + "." + kStepsKey, step_like);
  for (size_t g = 0; g < groups_.size(); ++g) {
    for (size_t i = 0; i < groups_[g].size(); ++i) {
      const std::string key = prefix + "." + std::to_string(g) + "." + std::to_string(i) + ".";
      for (const auto& [name, tensor] : named_moments(groups_[g][i])) checked_entry(in, key + name, tensor);
      checked_entry(in, key + kStepKey, step_like);
    }
  }
  torch::NoGradGuard no_grad;
  for (size_t g = 0; g < groups_.size(); ++g) {
    for (size_t i = 0; i < groups_[g].size(); ++i) {
      ParamState& state = groups_[g][i];
      const std::string key = prefix + "." + std::to_string(g) + "." + std::to_string(i) + ".";
      for (auto& [name, tensor] : named_moments(state)) tensor.copy_(in.at(key + name));
      state.step = in.at(key + kStepKey).item<int64_t>();
    }
  }
  steps_ = in.at(prefix + "." + kStepsKey).item<int64_t>();
}

} // namespace sdxl::train

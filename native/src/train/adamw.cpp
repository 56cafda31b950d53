// AdamW with 32-bit or block-wise 8-bit moments: state allocation, the update
// dispatch (torch ops, CPU loop, CUDA kernel) and checkpoints.
#include "train/adamw.h"

#include <stdexcept> // std::invalid_argument

#if defined(SDXL_WITH_CUDA_KERNELS)
#include <c10/cuda/CUDAGuard.h>  // c10::cuda::CUDAGuard
#include <c10/cuda/CUDAStream.h> // c10::cuda::getCurrentCUDAStream

#include "train/adamw8bit_cuda.h" // launch_adamw8bit_update
#endif

namespace sdxl::train {

namespace {

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

AdamW::AdamW(OptimizerKind kind, std::vector<std::vector<torch::Tensor>> param_groups, AdamWHyper hyper,
             PrecisionOptions precision, const Ownership& owned)
    : Optimizer(kind == OptimizerKind::AdamW8bit ? "AdamW8bit" : "AdamW", param_groups,
                std::move(precision), owned),
      kind_(kind),
      hyper_(hyper) {
  if (!(hyper.beta1 >= 0 && hyper.beta1 < 1) || !(hyper.beta2 >= 0 && hyper.beta2 < 1))
    throw std::invalid_argument("AdamW: betas must lie in [0, 1)");
  if (!(hyper.eps >= 0) || !(hyper.weight_decay >= 0))
    throw std::invalid_argument("AdamW: eps and weight_decay must be non-negative");
  std::map<std::string, std::pair<torch::Tensor, torch::Tensor>> maps_by_device; // one copy per device
  for (size_t g = 0; g < param_groups.size(); ++g) {
    std::vector<Moments> group;
    for (size_t i = 0; i < param_groups[g].size(); ++i) {
      const torch::Tensor& param = param_groups[g][i];
      const auto options = param.options().dtype(torch::kFloat32);
      Moments state;
      if (!slots_[g][i].owned) { // another rank's: no moments here (a parameter's 8-bit blocks stay whole on its owner)
        group.push_back(std::move(state));
        continue;
      }
      state.quantized = kind == OptimizerKind::AdamW8bit && param.numel() >= kMin8bitStateElements;
      if (state.quantized) {
        if (!param.is_contiguous())
          throw std::invalid_argument("AdamW: parameter " + std::to_string(g) + "." + std::to_string(i) +
                                      " must be contiguous for 8-bit moments");
        state.moments = zero_8bit_state(param.numel(), param.device());
        auto& maps = maps_by_device[param.device().str()];
        if (!maps.first.defined())
          maps = {signed_dynamic_map().to(param.device()), unsigned_dynamic_map().to(param.device())};
        state.signed_map = maps.first;
        state.unsigned_map = maps.second;
      } else {
        state.exp_avg = torch::zeros(param.sizes(), options);
        state.exp_avg_sq = torch::zeros(param.sizes(), options);
      }
      group.push_back(std::move(state));
    }
    moments_.push_back(std::move(group));
  }
}

// ---------------------------------------------------------------------------
// Update

void AdamW::update(int64_t group, int64_t index, torch::Tensor& param, const torch::Tensor& grad, double lr,
                   int64_t step) {
  Moments& state = moments_[group][index];
  const AdamWStepConstants c = adamw_step_constants(lr, hyper_.beta1, hyper_.beta2, hyper_.eps, hyper_.weight_decay, step);
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

// ---------------------------------------------------------------------------
// Figures and checkpoints

OptimizerKind AdamW::kind() const { return kind_; }

bool AdamW::is_quantized(int64_t group, int64_t index) const { return moments_.at(group).at(index).quantized; }

std::vector<std::pair<std::string, torch::Tensor>> AdamW::named_state(int64_t group, int64_t index) const {
  const Moments& state = moments_[group][index];
  if (!state.quantized) return {{"exp_avg", state.exp_avg}, {"exp_avg_sq", state.exp_avg_sq}};
  return {{"exp_avg_codes", state.moments.exp_avg_codes},
          {"exp_avg_absmax", state.moments.exp_avg_absmax},
          {"exp_avg_sq_codes", state.moments.exp_avg_sq_codes},
          {"exp_avg_sq_absmax", state.moments.exp_avg_sq_absmax}};
}

} // namespace sdxl::train

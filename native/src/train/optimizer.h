// What every optimizer of a training run shares (AdamW, AdamW8bit, Adafactor):
// parameter groups with a learning rate each, updated one parameter at a time, so
// no step ever holds more than one parameter's float32 temporaries.
//
// Parameters are float32 (LoRA networks, float32 models) or, in full fine-tuning,
// the model's own bfloat16 / float16 weights. Those are updated through a float32
// working copy, one of:
//   - a float32 master copy kept by the optimizer (allocated once, checkpointed),
//     rounded to the weight's dtype after each update (mixed precision as usual);
//   - none (kohya's --full_bf16): the bfloat16 weight is widened, updated and
//     rounded back stochastically (rounding up with probability equal to the
//     fraction cut off), so updates far below bfloat16's resolution still move
//     the weights on average instead of vanishing.
// Each gradient (of the parameter's dtype) is widened to float32 and multiplied by
// the step's grad_factor (loss-scale and clipping factors) only when its parameter
// is updated, then freed: a step holds the model's gradients at most.
#pragma once

#include <cstdint> // int64_t
#include <map>
#include <memory>  // std::unique_ptr
#include <string>
#include <utility> // std::pair
#include <vector>

#include <torch/torch.h> // torch::Tensor, at::Generator

namespace sdxl::train {

// Which parameters this optimizer updates (ZeRO-1/2, parallelism.h): owned[g][i] for
// parameter i of group g; empty: all. An unowned parameter gets no state, master copy
// or update here (its gradient is dropped): another rank updates it and sends the weights.
using Ownership = std::vector<std::vector<bool>>;

struct PrecisionOptions {
  // Non-float32 parameters keep a float32 master copy; false: stochastic rounding.
  bool master_weights = true;
  // Stochastic rounding's generator, on the parameters' device. It is seeded afresh for
  // each parameter and update from rounding_seed, the parameter's place and its step, so
  // the bits a weight is rounded with do not depend on what else a rank updates (ZeRO),
  // and a resumed run draws what an uninterrupted one draws with no generator state.
  at::Generator rounding;
  uint64_t rounding_seed = 0;
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every owned parameter that has a gradient, group i at group_lrs[i];
  // increments steps(). Checks every gradient and rate before changing anything.
  void step(const std::vector<double>& group_lrs, double grad_factor = 1.0);
  void zero_grad(); // resets gradients to undefined

  int64_t steps() const { return steps_; }
  int64_t state_bytes() const;     // optimizer states and master copies (of the owned parameters)
  int64_t parameter_count() const; // elements of all parameters
  const std::string& name() const { return name_; }

  // Checkpoints: "<prefix>.<group>.<index>.<state>" for each state tensor (CPU
  // contiguous copies, 8-bit ones as stored), ".master" for master copies,
  // ".step" (0-dim int64), and "<prefix>.steps". load_state checks every key
  // first (std::invalid_argument naming a missing or mis-shaped key, changing
  // nothing), then restores the state bit for bit. Both cover the owned parameters
  // only: the keys do not depend on ownership, so the shards of a sharded run merged
  // are an unsharded run's state, and any sharding resumes from it.
  void save_state(std::map<std::string, torch::Tensor>& out, const std::string& prefix) const;
  void load_state(const std::map<std::string, torch::Tensor>& in, const std::string& prefix);

 protected:
  struct Slot {
    torch::Tensor param;  // the trained tensor (float32, bfloat16 or float16)
    torch::Tensor master; // its float32 master copy, when kept
    int64_t step = 0;     // updates this parameter has had (t of the last one)
    bool owned = true;    // updated here (see Ownership)
  };

  // Takes the groups; subclasses then allocate their state for each owned slot.
  Optimizer(std::string name, std::vector<std::vector<torch::Tensor>> param_groups, PrecisionOptions precision,
            const Ownership& owned);

  // Updates `weights` (float32, contiguous, the parameter's shape and device) in
  // place from `grad` (float32, same shape) at the slot's step (already incremented).
  virtual void update(int64_t group, int64_t index, torch::Tensor& weights, const torch::Tensor& grad, double lr,
                      int64_t step) = 0;
  // The slot's state tensors by checkpoint name (handles sharing their storage).
  virtual std::vector<std::pair<std::string, torch::Tensor>> named_state(int64_t group, int64_t index) const = 0;

  std::vector<std::vector<Slot>> slots_;

 private:
  std::vector<std::pair<std::string, torch::Tensor>> all_state(int64_t group, int64_t index) const;

  std::string name_;
  PrecisionOptions precision_;
  int64_t steps_ = 0;
};

struct OptimizerHyper {
  double beta1 = 0.9;         // AdamW: first-moment decay
  double beta2 = 0.999;       // AdamW: second-moment decay
  double eps = 1e-8;          // AdamW: added to sqrt of the bias-corrected second moment
  double weight_decay = 1e-2; // decoupled: p *= 1 - lr * weight_decay each step
};

// "adamw", "adamw8bit" or "adafactor"; std::invalid_argument naming the choices otherwise.
std::unique_ptr<Optimizer> make_optimizer(const std::string& name, std::vector<std::vector<torch::Tensor>> param_groups,
                                          const OptimizerHyper& hyper, PrecisionOptions precision = {},
                                          const Ownership& owned = {});

// `value` (float32) rounded to bfloat16 stochastically: each float's 16 low bits
// decide the probability of rounding its magnitude up (random bits from `generator`).
torch::Tensor stochastic_round_to_bfloat16(const torch::Tensor& value, at::Generator& generator);

} // namespace sdxl::train

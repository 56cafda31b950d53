// diffusers' learning-rate lambdas (see lr_schedule.h).
#include "train/lr_schedule.h"

#include <algorithm> // std::max
#include <cmath>     // std::cos
#include <stdexcept> // std::invalid_argument

namespace sdxl::train {
namespace {

constexpr double kPi = 3.14159265358979323846;
// get_cosine_schedule_with_warmup's default: half a cosine, from 1 down to 0.
constexpr double kCosineCycles = 0.5;

enum class Schedule { Constant, ConstantWithWarmup, Linear, Cosine };

Schedule parse(const std::string& name) {
  if (name == "constant") return Schedule::Constant;
  if (name == "constant_with_warmup") return Schedule::ConstantWithWarmup;
  if (name == "linear") return Schedule::Linear;
  if (name == "cosine") return Schedule::Cosine;
  throw std::invalid_argument("unknown lr_scheduler \"" + name + "\"; expected one of " + kLrSchedulerNames);
}

} // namespace

void check_lr_scheduler(const std::string& name) { (void)parse(name); }

double lr_multiplier(const std::string& name, int64_t step, int64_t warmup_steps, int64_t total_steps) {
  const Schedule schedule = parse(name);
  if (step < 0 || warmup_steps < 0 || total_steps < 0)
    throw std::invalid_argument("lr_multiplier: step " + std::to_string(step) + ", warmup " +
                                std::to_string(warmup_steps) + " and total " + std::to_string(total_steps) +
                                " must not be negative");
  if (schedule == Schedule::Constant) return 1.0;
  const double s = static_cast<double>(step);
  if (step < warmup_steps) return s / static_cast<double>(std::max<int64_t>(1, warmup_steps));
  if (schedule == Schedule::ConstantWithWarmup) return 1.0;
  const double decay_steps = static_cast<double>(std::max<int64_t>(1, total_steps - warmup_steps));
  if (schedule == Schedule::Linear)
    return std::max(0.0, static_cast<double>(total_steps - step) / decay_steps);
  const double progress = static_cast<double>(step - warmup_steps) / decay_steps;
  return std::max(0.0, 0.5 * (1.0 + std::cos(kPi * kCosineCycles * 2.0 * progress)));
}

} // namespace sdxl::train

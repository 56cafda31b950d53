// Learning-rate schedules as diffusers' get_scheduler builds them
// (diffusers/optimization.py: get_constant_schedule,
// get_constant_schedule_with_warmup, get_linear_schedule_with_warmup,
// get_cosine_schedule_with_warmup with num_cycles = 0.5). Each is a LambdaLR:
// the lr of optimizer step k (0-based) is base_lr * multiplier(k).
#pragma once

#include <cstdint> // int64_t
#include <string>

namespace sdxl::train {

// The names check_lr_scheduler accepts, comma-separated, for messages.
inline constexpr const char* kLrSchedulerNames = "constant, constant_with_warmup, linear, cosine";

// Throws std::invalid_argument listing the valid names when `name` is not one.
void check_lr_scheduler(const std::string& name);

// The multiplier of base_lr at 0-based optimizer step `step`:
//   warmup (all but constant): step / warmup_steps while step < warmup_steps;
//   constant, constant_with_warmup: 1;
//   linear: (total - step) / (total - warmup), never below 0;
//   cosine: 0.5 * (1 + cos(pi * (step - warmup) / (total - warmup))), never below 0.
// Denominators are at least 1, as diffusers' max(1, ...). Throws
// std::invalid_argument for an unknown name or negative steps.
double lr_multiplier(const std::string& name, int64_t step, int64_t warmup_steps, int64_t total_steps);

} // namespace sdxl::train

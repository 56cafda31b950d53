// Training progress as users read it: loss and its running mean, learning
// rate, it/s and images/s over the recent steps, ETA and device memory, sent
// at most four times a second (and always for the last step).
#pragma once

#include <chrono>  // steady_clock
#include <cstdint> // int64_t
#include <deque>
#include <map>
#include <string>

#include <torch/torch.h> // torch::Device

#include "sdxl/engine.h" // Progress, ProgressFn

namespace sdxl::train {

class ProgressMeter {
 public:
  ProgressMeter(const ProgressFn& progress, torch::Device device, int64_t total_steps, int64_t images_per_step);

  // Records one optimizer step's loss and learning rate; reports when due.
  void on_step(int64_t step, double loss, double lr, const std::map<std::string, double>& extra = {});

  double loss_mean() const; // running mean over the window
  // Sends a report now (phase changes, validation results).
  void report(const std::string& phase, int64_t step, int64_t total, const std::string& message,
              std::map<std::string, double> metrics = {}, std::vector<std::string> files = {});

  static constexpr size_t kLossWindow = 50;

 private:
  using Clock = std::chrono::steady_clock;
  ProgressFn progress_;
  torch::Device device_;
  int64_t total_steps_;
  int64_t images_per_step_;
  std::deque<double> losses_;
  std::deque<std::pair<Clock::time_point, int64_t>> step_times_; // recent (time, step) for the rate
  Clock::time_point last_report_{};
};

} // namespace sdxl::train

// Progress reporting for training; see progress_meter.h.
#include "train/progress_meter.h"

#include <numeric> // std::accumulate

#include "engine/memory_stats.h" // memory_stats

namespace sdxl::train {

namespace {
constexpr auto kReportInterval = std::chrono::milliseconds(250);
constexpr size_t kRateWindow = 20; // steps the it/s figure averages over
} // namespace

ProgressMeter::ProgressMeter(const ProgressFn& progress, torch::Device device, int64_t total_steps,
                             int64_t images_per_step)
    : progress_(progress), device_(device), total_steps_(total_steps), images_per_step_(images_per_step) {}

double ProgressMeter::loss_mean() const {
  if (losses_.empty()) return 0;
  return std::accumulate(losses_.begin(), losses_.end(), 0.0) / static_cast<double>(losses_.size());
}

void ProgressMeter::on_step(int64_t step, double loss, double lr, const std::map<std::string, double>& extra) {
  const auto now = Clock::now();
  losses_.push_back(loss);
  if (losses_.size() > kLossWindow) losses_.pop_front();
  step_times_.emplace_back(now, step);
  if (step_times_.size() > kRateWindow) step_times_.pop_front();
  if (!progress_) return;
  if (now - last_report_ < kReportInterval && step != total_steps_) return;

  std::map<std::string, double> metrics = extra;
  metrics["loss"] = loss;
  metrics["loss_avg"] = loss_mean();
  metrics["lr"] = lr;
  if (step_times_.size() >= 2) {
    const double seconds = std::chrono::duration<double>(step_times_.back().first - step_times_.front().first).count();
    const double steps = static_cast<double>(step_times_.back().second - step_times_.front().second);
    if (seconds > 0 && steps > 0) {
      const double rate = steps / seconds;
      metrics["it_per_s"] = rate;
      metrics["images_per_s"] = rate * static_cast<double>(images_per_step_);
      metrics["eta_s"] = static_cast<double>(total_steps_ - step) / rate;
    }
  }
  report("training", step, total_steps_, "", std::move(metrics));
}

void ProgressMeter::report(const std::string& phase, int64_t step, int64_t total, const std::string& message,
                           std::map<std::string, double> metrics, std::vector<std::string> files) {
  if (!progress_) return;
  const MemoryStats memory = memory_stats(device_);
  metrics["memory_bytes"] = static_cast<double>(memory.in_use_bytes);
  metrics["peak_memory_bytes"] = static_cast<double>(memory.peak_bytes);
  last_report_ = Clock::now();
  Progress p;
  p.phase = phase;
  p.step = step;
  p.total = total;
  p.message = message;
  p.metrics = std::move(metrics);
  p.files = std::move(files);
  progress_(p);
}

} // namespace sdxl::train

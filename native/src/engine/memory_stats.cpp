// Device memory figures; see memory_stats.h.
#include "engine/memory_stats.h"

#include <fstream> // /proc/self/status
#include <string>

#if defined(SDXL_WITH_CUDA)
#include <c10/cuda/CUDACachingAllocator.h> // getDeviceStats, resetPeakStats
#endif

namespace sdxl {

namespace {
constexpr int64_t kBytesPerKiB = 1024;

// A "Name:   1234 kB" line of /proc/self/status, in bytes; 0 when absent.
int64_t proc_status_kib(const std::string& name) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(name + ":", 0) == 0) return std::stoll(line.substr(name.size() + 1)) * kBytesPerKiB;
  }
  return 0;
}
} // namespace

MemoryStats memory_stats(const torch::Device& device) {
  MemoryStats stats;
#if defined(SDXL_WITH_CUDA)
  if (device.is_cuda()) {
    const auto index = device.has_index() ? device.index() : 0;
    const auto cuda = c10::cuda::CUDACachingAllocator::getDeviceStats(index);
    constexpr size_t kAggregate = 0; // StatType::AGGREGATE
    stats.in_use_bytes = cuda.allocated_bytes[kAggregate].current;
    stats.peak_bytes = cuda.allocated_bytes[kAggregate].peak;
    return stats;
  }
#endif
  (void)device;
  stats.in_use_bytes = proc_status_kib("VmRSS");
  stats.peak_bytes = proc_status_kib("VmHWM");
  return stats;
}

void reset_peak_memory(const torch::Device& device) {
#if defined(SDXL_WITH_CUDA)
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(device.has_index() ? device.index() : 0);
#endif
  (void)device;
}

} // namespace sdxl

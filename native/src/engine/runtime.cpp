// Runtime checks of engine.h: cancellation, device/dtype validation, build info.
#include "engine/runtime.h"

#include "sdxl/engine.h" // throw_if_cancelled, check_runtime, build_info

#include <torch/version.h> // TORCH_VERSION

#include <cctype>    // std::isdigit
#include <stdexcept> // std::invalid_argument

namespace sdxl {
namespace {

constexpr const char* kCudaPrefix = "cuda:";
constexpr size_t kMaxDeviceIndexDigits = 4; // far above any machine's GPU count

std::string quoted(const std::string& value) { return "'" + value + "'"; }

} // namespace

// ----------------------------------------------------------------------------
// Parsing

torch::Device parse_device(const std::string& device) {
  if (device == "cpu") return torch::Device(torch::kCPU);
  if (device == "cuda") return torch::Device(torch::kCUDA);
  const std::string prefix = kCudaPrefix;
  if (device.compare(0, prefix.size(), prefix) == 0) {
    const std::string index = device.substr(prefix.size());
    bool digits = !index.empty() && index.size() <= kMaxDeviceIndexDigits;
    for (const char c : index) digits = digits && std::isdigit(static_cast<unsigned char>(c));
    if (digits) return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(std::stoi(index)));
  }
  throw std::invalid_argument("invalid device " + quoted(device) + ": expected \"cpu\", \"cuda\" or \"cuda:N\"");
}

torch::Dtype parse_dtype(const std::string& dtype) {
  if (dtype == "float32") return torch::kFloat32;
  if (dtype == "bfloat16") return torch::kBFloat16;
  if (dtype == "float16") return torch::kFloat16;
  throw std::invalid_argument("invalid dtype " + quoted(dtype) + ": expected \"float32\", \"bfloat16\" or \"float16\"");
}

// ----------------------------------------------------------------------------
// engine.h

void throw_if_cancelled(const CancelFlag& cancel) {
  if (cancel.is_set()) throw Cancelled();
}

void check_runtime(const RuntimeOptions& runtime) {
  const torch::Device device = parse_device(runtime.device);
  parse_dtype(runtime.dtype);
  if (!device.is_cuda()) return;
  if (!torch::cuda::is_available())
    throw std::invalid_argument("device " + quoted(runtime.device) + " requested but CUDA is not available (libtorch " +
                                TORCH_VERSION + " was built without CUDA or sees no GPU); use device \"cpu\"");
  const auto count = static_cast<int64_t>(torch::cuda::device_count());
  if (device.has_index() && device.index() >= count)
    throw std::invalid_argument("device " + quoted(runtime.device) + " does not exist: " + std::to_string(count) +
                                " CUDA device(s) visible");
}

BuildInfo build_info() {
  BuildInfo info;
  info.torch_version = TORCH_VERSION;
  info.cuda_available = torch::cuda::is_available();
  info.cuda_device_count = static_cast<int>(torch::cuda::device_count());
  return info;
}

} // namespace sdxl

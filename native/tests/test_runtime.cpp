// Tests of engine.h's runtime checks and runtime.h's parsers.
#include "check.h"
#include "engine/runtime.h"
#include "sdxl/engine.h"

#include <torch/version.h> // TORCH_VERSION

#include <stdexcept> // std::invalid_argument

TEST_CASE(parses_devices) {
  CHECK(sdxl::parse_device("cpu") == torch::Device(torch::kCPU));
  CHECK(sdxl::parse_device("cuda") == torch::Device(torch::kCUDA));
  CHECK(sdxl::parse_device("cuda:3") == torch::Device(torch::kCUDA, 3));
  for (const char* bad : {"tpu", "", "CPU", "cuda:", "cuda:-1", "cuda:1x", "cuda:99999", " cpu"})
    CHECK_THROWS_WITH(sdxl::parse_device(bad), std::string("invalid device '") + bad + "'");
}

TEST_CASE(parses_dtypes) {
  CHECK(sdxl::parse_dtype("float32") == torch::kFloat32);
  CHECK(sdxl::parse_dtype("bfloat16") == torch::kBFloat16);
  CHECK(sdxl::parse_dtype("float16") == torch::kFloat16);
  CHECK_THROWS_WITH(sdxl::parse_dtype("int8"), "invalid dtype 'int8'");
  CHECK_THROWS_WITH(sdxl::parse_dtype("fp16"), "invalid dtype 'fp16'");
}

TEST_CASE(check_runtime_rejects_bad_values_with_invalid_argument) {
  sdxl::check_runtime({"cpu", "float32"});
  sdxl::check_runtime({"cpu", "bfloat16"});
  bool invalid_argument = false;
  try {
    sdxl::check_runtime({"tpu", "float32"});
  } catch (const std::invalid_argument&) {
    invalid_argument = true;
  }
  CHECK(invalid_argument);
  CHECK_THROWS_WITH(sdxl::check_runtime({"cpu", "int8"}), "'int8'");
  if (!torch::cuda::is_available()) {
    CHECK_THROWS_WITH(sdxl::check_runtime({"cuda", "float32"}), "CUDA is not available");
    CHECK_THROWS_WITH(sdxl::check_runtime({"cuda:1", "float16"}), "'cuda:1'");
  } else {
    const auto count = static_cast<int>(torch::cuda::device_count());
    sdxl::check_runtime({"cuda:0", "float16"});
    CHECK_THROWS_WITH(sdxl::check_runtime({"cuda:" + std::to_string(count), "float32"}), "does not exist");
  }
}

TEST_CASE(cancel_flag_throws_cancelled_once_set) {
  sdxl::CancelFlag cancel;
  sdxl::throw_if_cancelled(cancel);
  cancel.request();
  CHECK_THROWS_WITH(sdxl::throw_if_cancelled(cancel), "cancelled");
  bool cancelled = false;
  try {
    sdxl::throw_if_cancelled(cancel);
  } catch (const sdxl::Cancelled&) {
    cancelled = true;
  }
  CHECK(cancelled);
}

TEST_CASE(build_info_reports_this_libtorch) {
  const auto info = sdxl::build_info();
  CHECK(info.torch_version == TORCH_VERSION);
  CHECK(info.cuda_available == torch::cuda::is_available());
  CHECK(info.cuda_device_count == static_cast<int>(torch::cuda::device_count()));
}

SDXL_TEST_MAIN()

// Times one SDXL UNet forward (no grad) with random weights: the full-size
// SDXL-base architecture by default, or any diffusers UNet config.json.
// No checkpoint is read; parameters are created and filled on the target
// device, so a full-size model never passes through host memory on CUDA.
//
//   bench_unet [--device cpu|cuda[:N]] [--dtype float32|bfloat16|float16]
//              [--latent 128] [--batch 2] [--warmup 3] [--iters 10]
//              [--tf32 on|off] [--config unet/config.json]
//
// Prints the parameter count, ms per call (mean, min, p50), peak memory
// (CUDA: caching-allocator peak; CPU: process peak RSS) and, as the last
// line, the same figures as one JSON object.
#include "bench_common.h"        // parse_arguments_or_help, parse_bench_device, run_main, summarize
#include "engine/memory_stats.h" // reset_peak_memory
#include "engine/runtime.h"      // parse_dtype
#include "models/configs.h"      // UNetConfig
#include "models/state_dict.h"   // count_parameters
#include "models/unet.h"         // UNet2DConditionModel

#include <nlohmann/json.hpp> // the summary line
#include <torch/torch.h>     // tensors, NoGradGuard
#include <torch/version.h>   // TORCH_VERSION

#include <chrono>    // steady_clock
#include <cstdint>   // int64_t
#include <cstdio>    // std::printf
#include <iostream>  // std::cout
#include <stdexcept> // std::invalid_argument
#include <string>
#include <vector>

using namespace sdxl;
using namespace sdxl::models;

namespace {

// ----------------------------------------------------------------------------
// Constants

constexpr int64_t kTextTokens = 77;          // CLIP context length
constexpr int64_t kTimeIds = 6;              // original size, crop top-left, target size
constexpr int64_t kVaeScale = 8;             // pixels per latent
constexpr double kTrainTimesteps = 1000.0;   // timesteps are drawn from [0, 1000)

// ----------------------------------------------------------------------------
// Command line

struct BenchOptions {
  std::string device = "cpu";
  std::string dtype = "float32";
  int64_t latent = 128; // latent side: 128 = 1024 px
  int64_t batch = 2;    // 2 = one classifier-free-guidance step
  int64_t warmup = 3;
  int64_t iters = 10;
  bool tf32 = false;
  std::string config; // empty: UNetConfig::sdxl_base()
};

const char* const kUsage =
    "usage: bench_unet [--device cpu|cuda[:N]] [--dtype float32|bfloat16|float16]\n"
    "                  [--latent 128] [--batch 2] [--warmup 3] [--iters 10]\n"
    "                  [--tf32 on|off] [--config <unet config.json>]\n";

BenchOptions parse_options(int argc, char** argv) {
  BenchOptions options;
  for (const auto& [name, value] : bench::parse_arguments_or_help(argc, argv, {}, kUsage)) {
    if (name == "device") options.device = value;
    else if (name == "dtype") options.dtype = value;
    else if (name == "latent") options.latent = bench::parse_count(name, value, 8);
    else if (name == "batch") options.batch = bench::parse_count(name, value, 1);
    else if (name == "warmup") options.warmup = bench::parse_count(name, value, 0);
    else if (name == "iters") options.iters = bench::parse_count(name, value, 1);
    else if (name == "tf32") options.tf32 = bench::parse_switch(name, value);
    else if (name == "config") options.config = value;
    else throw std::invalid_argument("unknown option --" + name);
  }
  return options;
}

// ----------------------------------------------------------------------------
// Inputs

struct UNetInputs {
  torch::Tensor sample;                // [B, in, L, L]
  torch::Tensor timestep;              // [B]
  torch::Tensor encoder_hidden_states; // [B, 77, cross]
  torch::Tensor text_embeds;           // [B, pooled]
  torch::Tensor time_ids;              // [B, 6]
};

UNetInputs random_inputs(const UNetConfig& config, const BenchOptions& options, const torch::TensorOptions& tensor) {
  const int64_t batch = options.batch;
  const int64_t pooled_dim = config.projection_class_embeddings_input_dim - kTimeIds * config.addition_time_embed_dim;
  const double pixels = static_cast<double>(options.latent * kVaeScale);
  UNetInputs inputs;
  inputs.sample = torch::randn({batch, config.in_channels, options.latent, options.latent}, tensor); // [B, in, L, L]
  inputs.timestep = torch::rand({batch}, tensor.dtype(torch::kFloat)) * kTrainTimesteps;            // [B]
  inputs.encoder_hidden_states = torch::randn({batch, kTextTokens, config.cross_attention_dim}, tensor); // [B, 77, cross]
  if (!config.has_added_embedding()) return inputs; // SD 1.x/2.x: the context alone
  inputs.text_embeds = torch::randn({batch, pooled_dim}, tensor);                                   // [B, pooled]
  // (H, W) original, (0, 0) crop, (H, W) target: what a plain generation passes.
  const std::vector<double> time_ids = {pixels, pixels, 0.0, 0.0, pixels, pixels};
  inputs.time_ids = torch::tensor(time_ids, torch::dtype(torch::kFloat)).to(tensor).unsqueeze(0).repeat({batch, 1}); // [B, 6]
  return inputs;
}

// ----------------------------------------------------------------------------
// Timing

int run(const BenchOptions& options) {
  const torch::Device device = bench::parse_bench_device(options.device);
  const torch::Dtype dtype = parse_dtype(options.dtype);
  if (!device.is_cuda() && options.tf32) throw std::invalid_argument("--tf32 on applies to CUDA only");
  if (device.is_cuda()) {
    at::globalContext().setAllowTF32CuBLAS(options.tf32);
    at::globalContext().setAllowTF32CuDNN(options.tf32);
  }
  const UNetConfig config = options.config.empty() ? UNetConfig::sdxl_base() : UNetConfig::from_file(options.config);
  const torch::TensorOptions tensor = torch::TensorOptions().device(device).dtype(dtype);

  torch::NoGradGuard no_grad;
  const auto build_start = std::chrono::steady_clock::now();
  UNet2DConditionModel unet(config, tensor);
  unet->eval();
  bench::fill_random_weights(*unet);
  bench::synchronize(device);
  const double build_ms = bench::elapsed_ms(build_start);
  const int64_t parameters = count_parameters(*unet);

  const UNetInputs inputs = random_inputs(config, options, tensor);
  std::printf("bench_unet: %s, %lld parameters, device %s, dtype %s, tf32 %s, latent %lldx%lld, batch %lld\n",
              options.config.empty() ? "SDXL-base UNet" : options.config.c_str(), static_cast<long long>(parameters),
              device.str().c_str(), options.dtype.c_str(), device.is_cuda() ? (options.tf32 ? "on" : "off") : "n/a",
              static_cast<long long>(options.latent), static_cast<long long>(options.latent),
              static_cast<long long>(options.batch));
  std::printf("  built with random weights in %.0f ms\n", build_ms);
  std::fflush(stdout); // a full-size CPU run takes minutes: show progress before the forwards

  auto forward = [&] {
    return unet->forward(inputs.sample, inputs.timestep, inputs.encoder_hidden_states, inputs.text_embeds,
                         inputs.time_ids); // [B, out, L, L]
  };
  for (int64_t i = 0; i < options.warmup; ++i) forward();
  bench::synchronize(device);
  reset_peak_memory(device);

  std::vector<double> ms;
  torch::Tensor output;
  for (int64_t i = 0; i < options.iters; ++i) {
    bench::synchronize(device);
    const auto start = std::chrono::steady_clock::now();
    output = forward();
    bench::synchronize(device);
    ms.push_back(bench::elapsed_ms(start));
  }
  const bench::Timings timings = bench::summarize(ms);
  const double peak_mib = bench::peak_memory_mib(device);
  const bool finite = output.isfinite().all().item<bool>();

  std::printf("  forward: mean %.1f ms, min %.1f ms, p50 %.1f ms over %lld calls (%lld warmup)\n", timings.mean_ms,
              timings.min_ms, timings.p50_ms, static_cast<long long>(options.iters),
              static_cast<long long>(options.warmup));
  std::printf("  peak memory (%s): %.0f MiB; output finite: %s\n", bench::peak_memory_kind(device).c_str(), peak_mib,
              finite ? "yes" : "no");

  const nlohmann::json summary = {
      {"bench", "unet_forward"},
      {"model", options.config.empty() ? "sdxl-base" : options.config},
      {"parameters", parameters},
      {"device", device.str()},
      {"dtype", options.dtype},
      {"tf32", device.is_cuda() ? nlohmann::json(options.tf32) : nlohmann::json(nullptr)},
      {"latent", options.latent},
      {"batch", options.batch},
      {"warmup", options.warmup},
      {"iters", options.iters},
      {"mean_ms", timings.mean_ms},
      {"min_ms", timings.min_ms},
      {"p50_ms", timings.p50_ms},
      {"peak_memory_mib", peak_mib},
      {"peak_memory_kind", bench::peak_memory_kind(device)},
      {"output_finite", finite},
      {"libtorch", TORCH_VERSION},
  };
  std::cout << summary.dump() << std::endl;
  return finite ? 0 : 1;
}

} // namespace

int main(int argc, char** argv) {
  return bench::run_main("bench_unet", kUsage, [&] { return run(parse_options(argc, argv)); });
}

// Times one optimizer step (AdamW and AdamW8bit) over LoRA-shaped float32
// tensors with random gradients: rank-r down [r, width] and up [width, r]
// pairs until --params elements (23M ~ an SDXL UNet LoRA of rank 32 on the
// attention projections).
//
//   bench_optim [--device cpu|cuda[:N]] [--params 23000000] [--rank 32]
//               [--width 1280] [--warmup 2] [--iters 5]
//
// Prints, per optimizer, ms per step (mean, min) and bytes of state per
// parameter, then the same figures as one JSON line.
#include "bench_common.h"   // parse_arguments_or_help, parse_count, run_main, summarize
#include "engine/runtime.h" // parse_device
#include "train/adamw.h"    // AdamW, OptimizerKind

#include <nlohmann/json.hpp> // the summary line
#include <torch/torch.h>     // tensors

#include <chrono>    // steady_clock
#include <cstdint>   // int64_t
#include <cstdio>    // std::printf
#include <iostream>  // std::cout
#include <stdexcept> // std::invalid_argument
#include <string>
#include <vector>

using namespace sdxl;

namespace {

constexpr double kLearningRate = 1e-4;

const char* const kUsage =
    "usage: bench_optim [--device cpu|cuda[:N]] [--params 23000000] [--rank 32]\n"
    "                   [--width 1280] [--warmup 2] [--iters 5]\n";

struct BenchOptions {
  std::string device = "cpu";
  int64_t params = 23000000; // total trainable elements
  int64_t rank = 32;         // LoRA rank
  int64_t width = 1280;      // in/out features of each adapted Linear
  int64_t warmup = 2;
  int64_t iters = 5;
};

BenchOptions parse_options(int argc, char** argv) {
  BenchOptions options;
  for (const auto& [name, value] : bench::parse_arguments_or_help(argc, argv, {}, kUsage)) {
    if (name == "device") options.device = value;
    else if (name == "params") options.params = bench::parse_count(name, value, 1);
    else if (name == "rank") options.rank = bench::parse_count(name, value, 1);
    else if (name == "width") options.width = bench::parse_count(name, value, 1);
    else if (name == "warmup") options.warmup = bench::parse_count(name, value, 0);
    else if (name == "iters") options.iters = bench::parse_count(name, value, 1);
    else throw std::invalid_argument("unknown option --" + name);
  }
  return options;
}

// Down/up pairs of LoRA tensors with random gradients, `total` elements or a little more.
std::vector<torch::Tensor> lora_tensors(const BenchOptions& options, torch::Device device) {
  std::vector<torch::Tensor> tensors;
  int64_t count = 0;
  const auto floats = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  while (count < options.params) {
    for (const auto& shape : {std::vector<int64_t>{options.rank, options.width},
                              std::vector<int64_t>{options.width, options.rank}}) {
      torch::Tensor tensor = (0.01 * torch::randn(shape, floats)).requires_grad_(true);
      tensor.mutable_grad() = torch::randn(shape, floats);
      count += tensor.numel();
      tensors.push_back(tensor);
    }
  }
  return tensors;
}

nlohmann::json bench_kind(train::OptimizerKind kind, const BenchOptions& options, torch::Device device) {
  std::vector<torch::Tensor> tensors = lora_tensors(options, device);
  train::AdamW optimizer(kind, {tensors}, train::AdamWHyper{});
  std::vector<double> ms;
  for (int64_t i = 0; i < options.warmup + options.iters; ++i) {
    bench::synchronize(device);
    const auto start = std::chrono::steady_clock::now();
    optimizer.step({kLearningRate});
    bench::synchronize(device);
    if (i >= options.warmup) ms.push_back(bench::elapsed_ms(start));
  }
  const bench::Timings timings = bench::summarize(ms);
  const double mean = timings.mean_ms, best = timings.min_ms;
  const double bytes_per_param = static_cast<double>(optimizer.state_bytes()) / optimizer.parameter_count();
  std::printf("%-10s %lld params in %zu tensors: %.1f ms/step (min %.1f), state %.4f bytes/param\n",
              train::optimizer_kind_name(kind), static_cast<long long>(optimizer.parameter_count()), tensors.size(),
              mean, best, bytes_per_param);
  return {{"optimizer", train::optimizer_kind_name(kind)}, {"params", optimizer.parameter_count()},
          {"mean_ms", mean}, {"min_ms", best}, {"state_bytes_per_param", bytes_per_param}};
}

int run(const BenchOptions& options) {
  const torch::Device device = parse_device(options.device);
  torch::manual_seed(0);
  nlohmann::json results = nlohmann::json::array();
  for (const auto kind : {train::OptimizerKind::AdamW, train::OptimizerKind::AdamW8bit})
    results.push_back(bench_kind(kind, options, device));
  std::cout << nlohmann::json{{"device", device.str()}, {"threads", torch::get_num_threads()}, {"results", results}}.dump()
            << "\n";
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  return bench::run_main("bench_optim", kUsage, [&] { return run(parse_options(argc, argv)); });
}

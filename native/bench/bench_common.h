// Helpers shared by the benchmark executables (bench_*.cpp): main()'s error
// handling, command-line parsing with messages that name the option, the
// device, timing summaries, synchronisation, peak memory and random weights.
// Header-only: each bench is one .cpp.
#pragma once

#include "engine/memory_stats.h" // memory_stats
#include "engine/runtime.h"      // parse_device

#include <torch/cuda.h>    // torch::cuda::is_available, synchronize
#include <torch/torch.h>   // torch::nn::Module, torch::Device, NoGradGuard
#include <torch/version.h> // TORCH_VERSION

#include <algorithm> // std::sort
#include <chrono>    // steady_clock
#include <cstdint>   // int64_t
#include <cstdlib>   // std::exit
#include <exception> // std::exception
#include <iostream>  // std::cout, std::cerr
#include <map>
#include <numeric>   // std::accumulate
#include <set>
#include <stdexcept> // std::invalid_argument
#include <string>
#include <vector>

namespace sdxl::bench {

constexpr int kExitUsage = 2; // a bad command line; 1 is a failed run
constexpr double kBytesPerMiB = 1024.0 * 1024.0;

// ----------------------------------------------------------------------------
// Command line

// main()'s body: `run` returns the exit status; a std::invalid_argument (a bad
// option) prints the message and `usage` and exits 2, any other error exits 1.
template <typename Run>
int run_main(const char* bench_name, const char* usage, Run&& run) {
  try {
    return run();
  } catch (const std::invalid_argument& error) {
    std::cerr << bench_name << ": " << error.what() << "\n" << usage;
    return kExitUsage;
  } catch (const std::exception& error) {
    std::cerr << bench_name << ": " << error.what() << "\n";
    return 1;
  }
}

// "--name value" pairs, and "--name" alone for the options listed in `flags`
// (a flag may also be given a value: "--name on|off"). "--help"/"-h" gives {"help": ""}.
inline std::map<std::string, std::string> parse_arguments(int argc, char** argv, const std::set<std::string>& flags) {
  std::map<std::string, std::string> values;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") return {{"help", ""}};
    if (arg.rfind("--", 0) != 0) throw std::invalid_argument("unexpected argument '" + arg + "'");
    const std::string name = arg.substr(2);
    const bool has_value = i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0;
    if (flags.count(name) != 0 && !has_value) {
      values[name] = "on";
      continue;
    }
    if (!has_value) throw std::invalid_argument("--" + name + " needs a value");
    values[name] = argv[++i];
  }
  return values;
}

// std::invalid_argument("unknown option --x") for an option not in `known`.
inline void require_known_options(const std::map<std::string, std::string>& values, const std::set<std::string>& known) {
  for (const auto& entry : values)
    if (known.count(entry.first) == 0) throw std::invalid_argument("unknown option --" + entry.first);
}

// The value given for --name, else `fallback`.
inline std::string option_or(const std::map<std::string, std::string>& values, const std::string& name,
                             const std::string& fallback) {
  const auto found = values.find(name);
  return found == values.end() ? fallback : found->second;
}

// parse_arguments, where --help/-h prints `usage` and exits 0.
inline std::map<std::string, std::string> parse_arguments_or_help(int argc, char** argv,
                                                                  const std::set<std::string>& flags,
                                                                  const char* usage) {
  auto values = parse_arguments(argc, argv, flags);
  if (values.count("help") != 0) {
    std::cout << usage;
    std::exit(0);
  }
  return values;
}

// An integer option, at least `minimum`.
inline int64_t parse_count(const std::string& name, const std::string& value, int64_t minimum) {
  size_t used = 0;
  int64_t parsed = 0;
  try {
    parsed = std::stoll(value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != value.size() || value.empty() || parsed < minimum)
    throw std::invalid_argument("--" + name + " expects an integer >= " + std::to_string(minimum) + ", got '" +
                                value + "'");
  return parsed;
}

// An on/off option.
inline bool parse_switch(const std::string& name, const std::string& value) {
  if (value == "on") return true;
  if (value == "off") return false;
  throw std::invalid_argument("--" + name + " expects on or off, got '" + value + "'");
}

// ----------------------------------------------------------------------------
// Device and memory

// The --device option; plain "cuda" becomes device 0 (allocator stats and
// synchronize need an index), and CUDA must be there.
inline torch::Device parse_bench_device(const std::string& name) {
  torch::Device device = parse_device(name);
  if (device.is_cuda() && !device.has_index()) device = torch::Device(torch::kCUDA, 0);
  if (device.is_cuda() && !torch::cuda::is_available())
    throw std::invalid_argument("--device " + name + ": CUDA is not available (libtorch " + TORCH_VERSION + ")");
  return device;
}

// Peak memory since the last reset_peak_memory (CUDA: caching-allocator peak)
// or of the whole process (CPU: peak RSS), in MiB, and which of the two it is.
inline double peak_memory_mib(const torch::Device& device) {
  return static_cast<double>(memory_stats(device).peak_bytes) / kBytesPerMiB;
}
inline std::string peak_memory_kind(const torch::Device& device) {
  return device.is_cuda() ? "cuda_allocated_peak" : "process_peak_rss";
}

// ----------------------------------------------------------------------------
// Timing

struct Timings {
  double mean_ms = 0;
  double min_ms = 0;
  double p50_ms = 0;
};

inline Timings summarize(std::vector<double> ms) {
  Timings timings;
  if (ms.empty()) return timings;
  std::sort(ms.begin(), ms.end());
  timings.mean_ms = std::accumulate(ms.begin(), ms.end(), 0.0) / static_cast<double>(ms.size());
  timings.min_ms = ms.front();
  const size_t mid = ms.size() / 2;
  timings.p50_ms = ms.size() % 2 == 1 ? ms[mid] : (ms[mid - 1] + ms[mid]) / 2.0;
  return timings;
}

inline double elapsed_ms(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - since).count();
}

// Waits for queued CUDA work, so wall-clock times cover it; a no-op on the CPU.
inline void synchronize(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

// ----------------------------------------------------------------------------
// Models

constexpr double kRandomWeightStd = 0.02; // small enough to keep activations finite through a deep UNet

// Random weights, generated in place where the parameters live (no host copy on CUDA).
inline void fill_random_weights(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& parameter : module.parameters(/*recurse=*/true)) parameter.normal_(0.0, kRandomWeightStd);
}

} // namespace sdxl::bench

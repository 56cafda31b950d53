// Times one LoRA training step of a UNet (SDXL, SD 1.x or 2.x) as the trainer runs
// it: UNet forward on noised latents + DDPM MSE loss (to the noise or, for a
// v-prediction model, the velocity) + backward + AdamW(8bit) step on the LoRA
// tensors only. Latents, text embeddings and (SDXL) time ids are random tensors of
// the right shapes (the text encoders and the VAE are not needed), so the figure
// is the UNet's share of a training step. Full-size SD 1.5:
// --config ../shared/fixtures/sd15-base-keys/unet_config.json --resolution 512.
//
//   bench_train [--model <diffusers folder> | --config <unet config.json or its folder>]
//               [--resolution 1024] [--rank 16] [--batch 1] [--dtype float32|bfloat16|float16]
//               [--device cpu|cuda[:N]] [--optimizer adamw|adamw8bit|adafactor] [--gradient-checkpointing [on|off]]
//               [--method lora|full] [--full-bf16 [on|off]]
//               [--warmup 1] [--iters 5] [--seed 0]
//
// Without --model the UNet has random weights (full-size SDXL-base by default),
// created on the target device. Prints ms per step (mean, min, p50, and the
// forward / backward / optimizer split), images/s and peak memory (CUDA:
// caching-allocator peak over the timed steps; CPU: the process's peak RSS,
// which includes building the model), then the same figures as one JSON line.
#include "bench_common.h"           // parse_arguments, summarize, synchronize, fill_random_weights
#include "engine/memory_stats.h"    // reset_peak_memory
#include "engine/model.h"           // load_model_from
#include "engine/runtime.h"         // parse_dtype
#include "models/configs.h"         // UNetConfig
#include "models/grad_checkpoint.h" // set_gradient_checkpointing
#include "models/state_dict.h"      // count_parameters
#include "models/unet.h"            // UNet2DConditionModel
#include "sample/noise_schedule.h"  // SchedulerConfig, train_alphas_cumprod
#include "train/ddpm_loss.h"        // ddpm_loss, global_grad_norm
#include "train/lora_network.h"     // LoraNetwork
#include "train/optimizer.h"        // make_optimizer

#include <ATen/CPUGeneratorImpl.h> // at::detail::createCPUGenerator
#if defined(SDXL_WITH_CUDA)
#include <ATen/cuda/CUDAGeneratorImpl.h> // at::cuda::detail::createCUDAGenerator
#endif
#include <nlohmann/json.hpp>       // the summary line
#include <torch/cuda.h>            // torch::cuda::is_available
#include <torch/torch.h>
#include <torch/version.h>         // TORCH_VERSION

#include <chrono>    // steady_clock
#include <cmath>     // std::isfinite
#include <cstdint>   // int64_t
#include <cstdio>    // std::printf
#include <cstdlib>   // std::exit
#include <filesystem> // config.json lookup
#include <iostream>  // std::cout, std::cerr
#include <memory>    // std::shared_ptr<Model>
#include <stdexcept> // std::invalid_argument
#include <string>
#include <vector>

using namespace sdxl;

namespace {

// ----------------------------------------------------------------------------
// Constants

constexpr int64_t kTextTokens = 77; // CLIP context length
constexpr int64_t kTimeIds = 6;     // original size, crop top-left, target size
constexpr int64_t kVaeScale = 8;    // pixels per latent
constexpr double kLearningRate = 1e-4;
constexpr double kMaxGradNorm = 1.0; // the trainer's default clipping

// ----------------------------------------------------------------------------
// Command line

struct BenchOptions {
  std::string model;  // a diffusers folder: real UNet weights and scheduler
  std::string config; // a UNet config.json (or its folder) for random weights; empty: SDXL-base
  int64_t resolution = 1024;
  int64_t rank = 16;
  int64_t batch = 1;
  std::string dtype = "float32";
  std::string device = "cpu";
  std::string optimizer = "adamw8bit";
  std::string method = "lora"; // "full": every UNet weight trained
  bool full_bf16 = false;      // method full: bfloat16 weights updated with stochastic rounding
  bool gradient_checkpointing = false;
  int64_t warmup = 1;
  int64_t iters = 5;
  int64_t seed = 0;
};

const char* const kUsage =
    "usage: bench_train [--model <diffusers folder> | --config <unet config.json or its folder>]\n"
    "                   [--resolution 1024] [--rank 16] [--batch 1] [--dtype float32|bfloat16|float16]\n"
    "                   [--device cpu|cuda[:N]] [--optimizer adamw|adamw8bit|adafactor] [--gradient-checkpointing [on|off]]\n"
    "                   [--method lora|full] [--full-bf16 [on|off]]\n"
    "                   [--warmup 1] [--iters 5] [--seed 0]\n";

BenchOptions parse_options(int argc, char** argv) {
  const auto values = bench::parse_arguments_or_help(argc, argv, {"gradient-checkpointing", "full-bf16"}, kUsage);
  BenchOptions options;
  for (const auto& [name, value] : values) {
    if (name == "model") options.model = value;
    else if (name == "config") options.config = value;
    else if (name == "resolution") options.resolution = bench::parse_count(name, value, kVaeScale);
    else if (name == "rank") options.rank = bench::parse_count(name, value, 1);
    else if (name == "batch") options.batch = bench::parse_count(name, value, 1);
    else if (name == "dtype") options.dtype = value;
    else if (name == "device") options.device = value;
    else if (name == "optimizer") options.optimizer = value;
    else if (name == "method") options.method = value;
    else if (name == "full-bf16") options.full_bf16 = bench::parse_switch(name, value);
    else if (name == "gradient-checkpointing") options.gradient_checkpointing = bench::parse_switch(name, value);
    else if (name == "warmup") options.warmup = bench::parse_count(name, value, 0);
    else if (name == "iters") options.iters = bench::parse_count(name, value, 1);
    else if (name == "seed") options.seed = bench::parse_count(name, value, 0);
    else throw std::invalid_argument("unknown option --" + name);
  }
  if (!options.model.empty() && !options.config.empty())
    throw std::invalid_argument("--model and --config exclude each other");
  if (options.optimizer != "adamw" && options.optimizer != "adamw8bit" && options.optimizer != "adafactor")
    throw std::invalid_argument("--optimizer: expected adamw, adamw8bit or adafactor");
  if (options.method != "lora" && options.method != "full") throw std::invalid_argument("--method: expected lora or full");
  if (options.full_bf16 && (options.method != "full" || options.dtype != "bfloat16"))
    throw std::invalid_argument("--full-bf16 needs --method full and --dtype bfloat16");
  return options;
}

// ----------------------------------------------------------------------------
// Model

struct BenchModel {
  models::UNet2DConditionModel unet{nullptr};
  sample::SchedulerConfig scheduler;
  std::string description;
};

// `path` may be the config.json itself, a UNet folder holding it, or a diffusers folder with unet/.
std::string unet_config_file(const std::string& path) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(path)) return path;
  if (fs::exists(fs::path(path) / "unet" / "config.json")) return (fs::path(path) / "unet" / "config.json").string();
  return (fs::path(path) / "config.json").string();
}

BenchModel build_model(const BenchOptions& options, const torch::Device& device, torch::Dtype dtype) {
  BenchModel bench_model;
  if (!options.model.empty()) {
    LoadOptions load;
    load.model_path = options.model;
    load.runtime = RuntimeOptions{options.device, options.dtype};
    const CancelFlag never_cancelled;
    std::shared_ptr<Model> model = load_model_from(load, never_cancelled);
    bench_model.unet = model->unet; // the text encoders and the VAE go with `model`
    bench_model.scheduler = model->scheduler;
    bench_model.description = options.model;
    return bench_model;
  }
  const models::UNetConfig config =
      options.config.empty() ? models::UNetConfig::sdxl_base() : models::UNetConfig::from_file(unet_config_file(options.config));
  bench_model.unet = models::UNet2DConditionModel(config, torch::TensorOptions().device(device).dtype(dtype));
  bench::fill_random_weights(*bench_model.unet);
  bench_model.description = options.config.empty() ? "SDXL-base UNet (random weights)" : options.config + " (random weights)";
  return bench_model;
}

// Random stand-ins for what the trainer feeds the UNet: cached latents and prompt embeddings.
train::DdpmLossInputs random_batch(const models::UNetConfig& config, const BenchOptions& options,
                                   const sample::SchedulerConfig& scheduler, const torch::TensorOptions& tensor) {
  const int64_t b = options.batch;
  const int64_t latent = options.resolution / kVaeScale;
  const int64_t pooled_dim = config.projection_class_embeddings_input_dim - kTimeIds * config.addition_time_embed_dim;
  const double pixels = static_cast<double>(options.resolution);
  const std::vector<double> time_ids = {pixels, pixels, 0.0, 0.0, pixels, pixels};
  train::DdpmLossInputs inputs;
  inputs.latents = torch::randn({b, config.in_channels, latent, latent}, tensor);                 // [B, 4, h, w]
  inputs.noise = torch::randn({b, config.in_channels, latent, latent}, tensor);                   // [B, 4, h, w]
  inputs.timesteps = torch::randint(0, scheduler.num_train_timesteps, {b}, tensor.dtype(torch::kInt64)); // [B]
  inputs.conditioning.context = torch::randn({b, kTextTokens, config.cross_attention_dim}, tensor); // [B, 77, cross]
  if (config.has_added_embedding()) { // SDXL: pooled text and size ids
    inputs.conditioning.text_embeds = torch::randn({b, pooled_dim}, tensor);                          // [B, pooled]
    inputs.conditioning.time_ids = torch::tensor(time_ids, torch::kFloat).to(tensor).unsqueeze(0).repeat({b, 1}); // [B, 6]
  }
  inputs.prediction_type = scheduler.prediction_type;
  return inputs;
}

// ----------------------------------------------------------------------------
// Timing

struct StepTimes {
  std::vector<double> total, forward, backward, optimizer;
};

int run(const BenchOptions& options) {
  const torch::Device device = bench::parse_bench_device(options.device);
  const torch::Dtype dtype = parse_dtype(options.dtype);
  torch::manual_seed(static_cast<uint64_t>(options.seed));

  const auto build_start = std::chrono::steady_clock::now();
  BenchModel model = build_model(options, device, dtype);
  const models::UNetConfig& config = model.unet->config();
  const int64_t latent_multiple = kVaeScale << (config.block_out_channels.size() - 1); // each level halves
  if (options.resolution % latent_multiple != 0)
    throw std::invalid_argument("--resolution must be a multiple of " + std::to_string(latent_multiple) +
                                " for this UNet, got " + std::to_string(options.resolution));

  // As the trainer: float32 LoRA masters on every attention projection, or (method full)
  // every UNet weight with float32 masters or stochastic rounding; the UNet in train mode.
  at::Generator generator = at::detail::createCPUGenerator(static_cast<uint64_t>(options.seed));
  const bool full = options.method == "full";
  train::LoraNetworkOptions network_options;
  network_options.rank = options.rank;
  network_options.alpha = static_cast<double>(options.rank);
  train::LoraNetwork network;
  std::vector<torch::Tensor> parameters;
  if (full) {
    for (auto& parameter : model.unet->parameters()) parameters.push_back(parameter.set_requires_grad(true));
  } else {
    network.attach(*model.unet, nullptr, nullptr, network_options, generator);
    parameters = network.unet_parameters();
  }
  model.unet->train();
  models::set_gradient_checkpointing(*model.unet, options.gradient_checkpointing);
  train::PrecisionOptions precision;
  precision.master_weights = !options.full_bf16;
  if (options.full_bf16) precision.rounding = at::detail::createCPUGenerator(static_cast<uint64_t>(options.seed) + 3);
#if defined(SDXL_WITH_CUDA)
  if (options.full_bf16 && device.is_cuda())
    precision.rounding = at::cuda::detail::createCUDAGenerator(device.has_index() ? device.index() : 0);
#endif
  const std::unique_ptr<train::Optimizer> optimizer_owner =
      train::make_optimizer(options.optimizer, {parameters}, train::OptimizerHyper{}, precision);
  train::Optimizer& optimizer = *optimizer_owner;
  const torch::Tensor alphas_cumprod = sample::train_alphas_cumprod(model.scheduler).to(device); // [T]
  bench::synchronize(device);
  const double build_ms = bench::elapsed_ms(build_start);

  const int64_t base_parameters = models::count_parameters(*model.unet); // registered parameters: LoRA slots are not
  if (full)
    std::printf("bench_train: %s, all %lld UNet parameters trained (%s)\n", model.description.c_str(),
                static_cast<long long>(base_parameters),
                options.full_bf16 ? "bfloat16 weights, stochastic rounding"
                                  : (options.dtype == "float32" ? "float32 weights" : "float32 master copies"));
  else
    std::printf("bench_train: %s, %lld frozen + %lld LoRA parameters (%lld modules, rank %lld)\n",
                model.description.c_str(), static_cast<long long>(base_parameters),
                static_cast<long long>(network.trainable_parameter_count()), static_cast<long long>(network.module_count()),
                static_cast<long long>(options.rank));
  std::printf("  device %s, dtype %s, %lld px (latent %lld), batch %lld, optimizer %s, gradient checkpointing %s\n",
              device.str().c_str(), options.dtype.c_str(), static_cast<long long>(options.resolution),
              static_cast<long long>(options.resolution / kVaeScale), static_cast<long long>(options.batch),
              options.optimizer.c_str(), options.gradient_checkpointing ? "on" : "off");
  std::printf("  built in %.0f ms\n", build_ms);
  std::fflush(stdout); // a full-size CPU step takes minutes: show where we are first

  const torch::TensorOptions tensor = torch::TensorOptions().device(device).dtype(dtype);
  StepTimes times;
  double last_loss = 0;
  auto step = [&](bool timed) {
    const train::DdpmLossInputs batch = random_batch(config, options, model.scheduler, tensor);
    bench::synchronize(device);
    const auto start = std::chrono::steady_clock::now();
    const train::DdpmLossOutput output = train::ddpm_loss(model.unet, alphas_cumprod, batch);
    bench::synchronize(device);
    const double forward_ms = bench::elapsed_ms(start);
    const auto backward_start = std::chrono::steady_clock::now();
    output.loss.backward();
    bench::synchronize(device);
    const double backward_ms = bench::elapsed_ms(backward_start);
    const auto optimizer_start = std::chrono::steady_clock::now();
    const double grad_norm = train::global_grad_norm(parameters);
    optimizer.step({kLearningRate}, grad_norm > kMaxGradNorm ? kMaxGradNorm / (grad_norm + 1e-6) : 1.0);
    optimizer.zero_grad();
    bench::synchronize(device);
    const double optimizer_ms = bench::elapsed_ms(optimizer_start);
    last_loss = output.loss.item<double>();
    if (!timed) return;
    times.total.push_back(bench::elapsed_ms(start));
    times.forward.push_back(forward_ms);
    times.backward.push_back(backward_ms);
    times.optimizer.push_back(optimizer_ms);
  };
  for (int64_t i = 0; i < options.warmup; ++i) step(false);
  reset_peak_memory(device);
  for (int64_t i = 0; i < options.iters; ++i) step(true);

  const bench::Timings total = bench::summarize(times.total);
  const double forward_ms = bench::summarize(times.forward).mean_ms;
  const double backward_ms = bench::summarize(times.backward).mean_ms;
  const double optimizer_ms = bench::summarize(times.optimizer).mean_ms;
  const double images_per_s = static_cast<double>(options.batch) * 1000.0 / total.mean_ms;
  const double peak_mib = bench::peak_memory_mib(device);
  const std::string memory_kind = bench::peak_memory_kind(device);
  const bool finite = std::isfinite(last_loss);

  std::printf("  step: mean %.1f ms, min %.1f ms, p50 %.1f ms over %lld steps (%lld warmup); %.3f images/s\n",
              total.mean_ms, total.min_ms, total.p50_ms, static_cast<long long>(options.iters),
              static_cast<long long>(options.warmup), images_per_s);
  std::printf("  split: forward+loss %.1f ms, backward %.1f ms, clip+optimizer %.1f ms\n", forward_ms, backward_ms,
              optimizer_ms);
  std::printf("  peak memory (%s): %.0f MiB; optimizer state %.1f MiB; last loss %.4f\n", memory_kind.c_str(),
              peak_mib, static_cast<double>(optimizer.state_bytes()) / bench::kBytesPerMiB, last_loss);

  const nlohmann::json summary = {
      {"bench", "train_step"},
      {"model", model.description},
      {"frozen_parameters", full ? 0 : base_parameters},
      {"method", options.method},
      {"full_bf16", options.full_bf16},
      {"trained_parameters", full ? base_parameters : network.trainable_parameter_count()},
      {"lora_modules", full ? nlohmann::json() : nlohmann::json(network.module_count())},
      {"device", device.str()},
      {"dtype", options.dtype},
      {"resolution", options.resolution},
      {"rank", full ? nlohmann::json() : nlohmann::json(options.rank)},
      {"batch", options.batch},
      {"optimizer", options.optimizer},
      {"gradient_checkpointing", options.gradient_checkpointing},
      {"warmup", options.warmup},
      {"iters", options.iters},
      {"mean_ms", total.mean_ms},
      {"min_ms", total.min_ms},
      {"p50_ms", total.p50_ms},
      {"forward_ms", forward_ms},
      {"backward_ms", backward_ms},
      {"optimizer_ms", optimizer_ms},
      {"images_per_s", images_per_s},
      {"peak_memory_mib", peak_mib},
      {"peak_memory_kind", memory_kind},
      {"optimizer_state_bytes", optimizer.state_bytes()},
      {"loss_finite", finite},
      {"libtorch", TORCH_VERSION},
  };
  std::cout << summary.dump() << std::endl;
  return finite ? 0 : 1;
}

} // namespace

int main(int argc, char** argv) {
  return bench::run_main("bench_train", kUsage, [&] { return run(parse_options(argc, argv)); });
}

// Times the training loop itself (trainer.cpp, every part of a step) on one device
// or on several ranks of a data-parallel run, to compare, on the CPU, one rank with
// two threads against two ranks with one thread each, and to see how much of a step
// the gradients' all-reduce takes that backward did not hide:
//
//   bench_data_parallel [--model <diffusers folder>] [--method lora|full] [--devices 2]
//                       [--device cpu|cuda] [--dtype float32|bfloat16|float16] [--threads 1]
//                       [--zero 0|1|2] [--overlap on|off] [--bucket-kb 25600]
//                       [--gradient-checkpointing on|off] [--full-bf16 on|off]
//                       [--steps 20] [--batch 4] [--resolution 128] [--optimizer adamw]
//
// --devices N > 1 trains N ranks, on the CPU (Gloo; each with --threads intra-op
// threads) or on cuda:0 to cuda:N-1 (NCCL), on random-pixel images. Prints images/s over the training steps (after the
// first reported one), the mean step, the all-reduce time left after backward per step
// and its share of the step, then one JSON line.
#include "bench_common.h" // run_main, parse_arguments_or_help, parse_count, parse_switch

#include <nlohmann/json.hpp> // the summary line
#include <torch/torch.h>

#include <chrono>
#include <cstdio>     // std::printf
#include <cstdlib>    // std::getenv
#include <filesystem> // the output folder
#include <unistd.h>   // getpid
#include <string>
#include <vector>

#include "sdxl/engine.h" // train_lora, TrainOptions

using namespace sdxl;

namespace {

const char* const kUsage =
    "usage: bench_data_parallel [--model <diffusers folder>] [--method lora|full] [--devices 2]\n"
    "                           [--device cpu|cuda] [--dtype float32|bfloat16|float16] [--threads 1]\n"
    "                           [--zero 0|1|2] [--overlap on|off] [--bucket-kb 25600]\n"
    "                           [--gradient-checkpointing on|off] [--full-bf16 on|off]\n"
    "                           [--steps 20] [--batch 4] [--resolution 128] [--optimizer adamw]\n";

// Random-pixel images: what they show does not change a step's time.
std::vector<TrainImage> random_images(int64_t count, int64_t side) {
  std::vector<TrainImage> images;
  for (int64_t i = 0; i < count; ++i) {
    TrainImage image;
    image.name = "image-" + std::to_string(i) + ".png";
    image.width = side;
    image.height = side;
    image.caption = "a photo of sks toy";
    const torch::Tensor pixels = torch::randint(0, 256, {side * side * 3}, torch::kUInt8);
    image.rgb.assign(pixels.data_ptr<uint8_t>(), pixels.data_ptr<uint8_t>() + pixels.numel());
    images.push_back(std::move(image));
  }
  return images;
}

int run(int argc, char** argv) {
  const auto values = bench::parse_arguments_or_help(argc, argv, {}, kUsage);
  bench::require_known_options(values, {"model", "method", "devices", "device", "dtype", "threads", "zero", "overlap",
                                         "bucket-kb", "gradient-checkpointing", "full-bf16", "steps", "batch",
                                         "resolution", "optimizer"});
  const auto value = [&](const std::string& name, const std::string& fallback) { return bench::option_or(values, name, fallback); };
  const char* fixtures = std::getenv("SDXL_FIXTURES_DIR");
  const std::string model = value("model", std::string(fixtures ? fixtures : "../shared/fixtures") + "/tiny-sdxl");
  const std::string method = value("method", "lora");
  const int64_t devices = bench::parse_count("devices", value("devices", "2"), 1);
  const int64_t threads = bench::parse_count("threads", value("threads", "1"), 1);
  const int64_t steps = bench::parse_count("steps", value("steps", "20"), 2);
  const int64_t batch = bench::parse_count("batch", value("batch", "4"), 1);
  const int64_t side = bench::parse_count("resolution", value("resolution", "128"), 64);

  TrainOptions options;
  options.model.model_path = model;
  options.method = method;
  options.images = random_images(batch * 2, side);
  options.output_dir = (std::filesystem::temp_directory_path() / ("bench-data-parallel-" + std::to_string(::getpid()))).string();
  options.output_name = method == "full" ? "model" : "lora";
  options.resolution = side;
  options.min_bucket_side = side;
  options.batch_size = batch;
  options.max_steps = steps;
  options.optimizer = value("optimizer", "adamw");
  options.zero_stage = bench::parse_count("zero", value("zero", "0"), 0);
  options.overlap_communication = bench::parse_switch("overlap", value("overlap", "on"));
  options.bucket_bytes = bench::parse_count("bucket-kb", value("bucket-kb", "25600"), 1) * 1024;
  const std::string kind = value("device", "cpu");
  if (kind != "cpu" && kind != "cuda") throw std::invalid_argument("--device: expected cpu or cuda");
  const auto device_of_rank = [&](int64_t rank) { return kind == "cpu" ? kind : kind + ":" + std::to_string(rank); };
  options.model.runtime.device = device_of_rank(0);
  options.model.runtime.dtype = value("dtype", "float32");
  options.gradient_checkpointing = bench::parse_switch("gradient-checkpointing", value("gradient-checkpointing", "off"));
  options.full_bf16 = bench::parse_switch("full-bf16", value("full-bf16", "off"));
  for (int64_t rank = 0; devices > 1 && rank < devices; ++rank) options.devices.push_back(device_of_rank(rank));
  at::set_num_threads(static_cast<int>(threads)); // every rank's intra-op pool

  // The training steps' time: from the first reported step to the last.
  std::chrono::steady_clock::time_point first_time, last_time;
  int64_t first_step = -1, last_step = 0;
  const TrainResult result = train_lora(options, [&](const Progress& progress) {
    if (progress.phase != "training") return;
    const auto now = std::chrono::steady_clock::now();
    if (first_step < 0) {
      first_step = progress.step;
      first_time = now;
    }
    last_step = progress.step;
    last_time = now;
  }, CancelFlag{});
  std::filesystem::remove_all(options.output_dir);
  if (last_step <= first_step) throw std::runtime_error("too few steps were reported: raise --steps");
  const double seconds = std::chrono::duration<double>(last_time - first_time).count();
  const double step_ms = 1000.0 * seconds / static_cast<double>(last_step - first_step);
  const double images_per_s = static_cast<double>(batch) * 1000.0 / step_ms;
  const auto metric = [&](const std::string& name) {
    const auto found = result.metrics.find(name);
    return found == result.metrics.end() ? 0.0 : found->second;
  };
  const double allreduce_ms = metric("allreduce_ms_mean");
  std::printf("bench_data_parallel: %s, %s, %lld %s rank(s) x %lld thread(s), ZeRO-%lld, overlap %s, batch %lld at %lld px\n",
              model.c_str(), method.c_str(), static_cast<long long>(devices), kind.c_str(), static_cast<long long>(threads),
              static_cast<long long>(options.zero_stage), options.overlap_communication ? "on" : "off",
              static_cast<long long>(batch), static_cast<long long>(side));
  std::printf("  %.2f images/s, %.1f ms per step; all-reduce left after backward %.2f ms per step (%.1f%% of a step); "
              "%.0f buckets, %.1f sent during backward\n",
              images_per_s, step_ms, allreduce_ms, 100 * allreduce_ms / step_ms, metric("gradient_buckets"),
              metric("buckets_sent_during_backward_mean"));
  const nlohmann::json summary = {
      {"bench", "data_parallel"}, {"model", model}, {"method", method}, {"devices", devices}, {"device", kind},
      {"dtype", options.model.runtime.dtype}, {"threads_per_rank", threads},
      {"zero_stage", options.zero_stage}, {"overlap", options.overlap_communication}, {"batch", batch},
      {"resolution", side}, {"steps_timed", last_step - first_step}, {"images_per_s", images_per_s},
      {"step_ms", step_ms}, {"allreduce_exposed_ms", allreduce_ms}, {"allreduce_share", allreduce_ms / step_ms},
      {"gradient_buckets", metric("gradient_buckets")},
      {"buckets_sent_during_backward", metric("buckets_sent_during_backward_mean")},
      {"optimizer_state_bytes_rank0", metric("optimizer_state_bytes")},
      {"peak_memory_bytes_rank0", metric("peak_memory_bytes")}, {"libtorch", TORCH_VERSION},
  };
  std::printf("%s\n", summary.dump().c_str());
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  return bench::run_main("bench_data_parallel", kUsage, [&] { return run(argc, argv); });
}

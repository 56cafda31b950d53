// One run on several devices (TrainOptions::devices), on the CPU over Gloo: ranks as
// threads of this process. Two ranks sharing each global batch train what one device
// trains from the same batch and seed (LoRA on tiny SDXL, full on tiny SD 1.5 with its
// text encoder), up to the order of the all-reduce's float sums, with gradients sent
// while backward runs; sharded optimizer states (ZeRO-1/2) train what unsharded ranks
// train; stopped runs (sharded or not) resume to byte-identical files, and a sharded
// run's checkpoint resumes on one device too; a failing rank fails the run with its own
// error at once, leaving no rank behind; and bad device lists are refused by name.
#include "check.h"
#include "test_support.h" // tiny_dir, make_images, fresh_dir, read_bytes, max_abs_diff

#include <sys/wait.h> // waitpid
#include <unistd.h>   // fork, execl

#include <algorithm> // std::minmax_element
#include <cstdlib>   // std::getenv
#include <chrono>
#include <cmath> // std::sqrt
#include <filesystem>
#include <stdexcept>

#include "dist/process_group.h" // dist::has_backend_for
#include "io/safetensors.h"     // load_safetensors
#include "sdxl/engine.h"        // train_lora, TrainOptions

using namespace sdxl;
using namespace sdxl::test;
namespace fs = std::filesystem;

namespace {

std::string sd15_dir() { return fixtures_dir() + "/tiny-sd15"; }

TrainOptions options_for(const std::string& method, const std::string& name) {
  TrainOptions options;
  options.method = method;
  options.model.model_path = method == "full" ? sd15_dir() : tiny_dir();
  options.train_text_encoder = method == "full";
  // 128 px: at 64 px the tiny models' deepest levels are 1x1 or 2x2 with one or two
  // channels per GroupNorm group, whose gradients float32 rounding alone changes by up to
  // 1e-4 between batch splits (one device's batch of 2 against two ranks' batches of 1).
  const int64_t side = 128;
  options.images = make_images(4, side, side);
  options.output_dir = fresh_dir(name).string();
  options.output_name = method == "full" ? "model" : "lora";
  options.resolution = side;
  options.min_bucket_side = side;
  options.batch_size = 2;
  options.rank = 4;
  options.alpha = 4;
  options.unet_lr = method == "full" ? 1e-4 : 1e-3;
  options.text_encoder_lr = 5e-5;
  options.max_steps = 20;
  options.seed = 31;
  options.optimizer = "adamw";
  options.adam_epsilon = 1e-4; // see two_ranks_train_what_one_device_trains_from_the_same_global_batch
  options.caption_dropout = 0.25; // drawn per sample of the global batch: the same on any number of ranks
  options.noise_offset = 0.05;
  options.min_snr_gamma = 5;
  options.validation_every = 1; // the validation loss (fixed samples) after every step
  options.validation_loss_samples = 2;
  return options;
}

struct Run {
  TrainResult result;
  std::vector<double> validation_losses;
};

Run train(const TrainOptions& options) {
  Run run;
  run.result = train_lora(options, [&](const Progress& progress) {
    const auto loss = progress.metrics.find("validation_loss");
    if (progress.phase == "validating" && loss != progress.metrics.end()) run.validation_losses.push_back(loss->second);
  }, CancelFlag{});
  return run;
}

// How far apart two files' weights are: ||a - b|| / ||b|| over all their tensors together
// (and, in `largest_tensor`, the largest of that ratio tensor by tensor).
double relative_difference(const std::string& a_path, const std::string& b_path, double& largest_tensor) {
  const io::TensorMap a = io::load_safetensors(a_path);
  const io::TensorMap b = io::load_safetensors(b_path);
  CHECK(a.size() == b.size());
  double difference = 0, reference = 0;
  largest_tensor = 0;
  for (const auto& [name, tensor] : a) {
    const torch::Tensor mine = tensor.to(torch::kFloat64);
    const torch::Tensor other = b.at(name).to(torch::kFloat64);
    const double d = (mine - other).norm().item<double>(), r = other.norm().item<double>();
    difference += d * d;
    reference += r * r;
    largest_tensor = std::max(largest_tensor, d / std::max(r, 1e-30));
  }
  return std::sqrt(difference / reference);
}

const std::string& output_of(const TrainResult& result) { return result.lora_path.empty() ? result.model_path : result.lora_path; }

} // namespace

// Gloo sums the ranks' gradients in another order than one device's backward sums a
// batch, so the gradients agree to float32 rounding (2e-6 relative), not bit for bit.
// Adam at its default epsilon (1e-8) divides each gradient element by its own size: an
// element whose gradient is rounding noise (mathematically zero, as for the tiny models'
// time-embedding projections in front of one-channel GroupNorm groups) steps +-lr
// whichever way the noise falls, and the runs part by about 1e-3. Epsilon 1e-4 keeps such
// elements still, so what is compared is what the gradients do.
TEST_CASE(two_ranks_train_what_one_device_trains_from_the_same_global_batch) {
  if (!dist::has_backend_for(torch::kCPU)) {
    std::printf("  skipped: built without Gloo (%s)\n", dist::backends_built().c_str());
    return;
  }
  for (const std::string method : {"lora", "full"}) {
    const Run one = train(options_for(method, "dp-one-" + method));
    TrainOptions two_options = options_for(method, "dp-two-" + method);
    two_options.devices = {"cpu", "cpu"};
    two_options.bucket_bytes = 16 << 10; // several buckets, most sent while backward runs
    const Run two = train(two_options);
    CHECK(two.result.status == "completed" && two.result.steps == 20);
    CHECK(two.result.metrics.at("world_size") == 2 && two.result.metrics.count("allreduce_ms_mean") == 1);
    std::printf("  %s: %.0f gradient buckets, %.1f of them sent during backward per step\n", method.c_str(),
                two.result.metrics.at("gradient_buckets"), two.result.metrics.at("buckets_sent_during_backward_mean"));
    CHECK(two.result.metrics.at("gradient_buckets") > 2);
    CHECK(two.result.metrics.at("buckets_sent_during_backward_mean") >= 1);
    CHECK(one.validation_losses.size() == 21 && two.validation_losses.size() == 21); // steps 0, 1, ..., 20
    double largest_gap = 0;
    for (size_t i = 0; i < one.validation_losses.size(); ++i)
      largest_gap = std::max(largest_gap, std::abs(one.validation_losses[i] - two.validation_losses[i]));
    const double training_gap = std::abs(one.result.metrics.at("final_loss") - two.result.metrics.at("final_loss"));
    double tensor_gap = 0;
    const double weights_gap = relative_difference(output_of(two.result), output_of(one.result), tensor_gap);
    std::printf("  %s: 2 ranks vs 1 device over 20 steps: validation loss within %.2e, last training loss within %.2e, "
                "weights within %.2e relative (the farthest tensor %.2e)\n",
                method.c_str(), largest_gap, training_gap, weights_gap, tensor_gap);
    const auto [lowest, highest] = std::minmax_element(one.validation_losses.begin(), one.validation_losses.end());
    CHECK(*highest - *lowest > 1e-4); // the weights move: the curves agreeing says something
    CHECK(largest_gap < 1e-6);
    CHECK(training_gap < 1e-6);
    CHECK(weights_gap < 1e-5);
  }
}

// A run of `options` (8 steps, checkpoints every 3) straight through, and again stopped
// after step 5 and resumed from its checkpoint; the resumed run's options in `resumed`.
struct StoppedAndResumed {
  TrainResult straight, stopped, resumed;
  TrainOptions resumed_options;
};

StoppedAndResumed stop_and_resume(TrainOptions options, const std::string& name) {
  options.max_steps = 8;
  options.validation_every = 0;
  options.checkpoint_every = 3;
  StoppedAndResumed runs;
  options.output_dir = fresh_dir(name + "-straight").string();
  runs.straight = train_lora(options, nullptr, CancelFlag{});
  options.output_dir = fresh_dir(name + "-resumed").string();
  options.stop_after_step = 5;
  runs.stopped = train_lora(options, nullptr, CancelFlag{});
  CHECK(runs.stopped.status == "cancelled" && runs.stopped.steps == 5 && fs::exists(runs.stopped.checkpoint_path));
  options.stop_after_step = 0;
  options.resume_from = runs.stopped.checkpoint_path;
  runs.resumed = train_lora(options, nullptr, CancelFlag{});
  CHECK(runs.resumed.status == "completed" && runs.resumed.steps == 8);
  runs.resumed_options = options;
  return runs;
}

TEST_CASE(a_stopped_two_rank_run_resumes_to_byte_identical_files) {
  if (!dist::has_backend_for(torch::kCPU)) return;
  TrainOptions options = options_for("lora", "dp");
  options.devices = {"cpu", "cpu"};
  options.optimizer = "adamw8bit";
  const StoppedAndResumed runs = stop_and_resume(options, "dp");
  CHECK(read_bytes(runs.resumed.lora_path) == read_bytes(runs.straight.lora_path));
}

// ZeRO on two ranks, a full fine-tune of tiny SD 1.5 and its text encoder with 8-bit
// AdamW: ZeRO-1 all-reduces the same gradients and each parameter is updated by one rank
// as every rank would update it, so it writes the unsharded run's bytes; ZeRO-2 reduces
// each shard onto its owner (another summation order), so it agrees to float32 rounding.
TrainOptions sharded_full_run(const std::string& name, int64_t zero_stage) {
  TrainOptions options = options_for("full", name);
  options.devices = {"cpu", "cpu"};
  options.zero_stage = zero_stage;
  options.optimizer = "adamw8bit";
  options.max_steps = 10;
  options.max_grad_norm = 0.01; // clipped every step: the norm is taken over both shards
  options.validation_every = 0;
  options.bucket_bytes = 64 << 10;
  return options;
}

TEST_CASE(sharded_optimizer_states_train_what_unsharded_ranks_train) {
  if (!dist::has_backend_for(torch::kCPU)) return;
  const TrainResult unsharded = train_lora(sharded_full_run("zero-0", 0), nullptr, CancelFlag{});
  for (const int64_t stage : {1, 2}) {
    const TrainResult sharded = train_lora(sharded_full_run("zero-" + std::to_string(stage), stage), nullptr, CancelFlag{});
    CHECK(sharded.status == "completed" && sharded.metrics.at("zero_stage") == static_cast<double>(stage));
    double tensor_gap = 0;
    const double gap = relative_difference(sharded.model_path, unsharded.model_path, tensor_gap);
    const double state_share =
        sharded.metrics.at("optimizer_state_bytes") / unsharded.metrics.at("optimizer_state_bytes");
    std::printf("  ZeRO-%lld vs unsharded over 10 steps: weights within %.2e relative (the farthest tensor %.2e); "
                "rank 0 holds %.0f%% of the optimizer states\n",
                static_cast<long long>(stage), gap, tensor_gap, 100 * state_share);
    CHECK(gap < 1e-5);
    if (stage == 1) CHECK(read_bytes(sharded.model_path) == read_bytes(unsharded.model_path));
    CHECK(state_share > 0.3 && state_share < 0.7); // about half: its shard's
  }
}

TEST_CASE(a_sharded_run_resumes_bit_for_bit_and_on_one_device) {
  if (!dist::has_backend_for(torch::kCPU)) return;
  const StoppedAndResumed runs = stop_and_resume(sharded_full_run("zero", 2), "zero");
  CHECK(read_bytes(runs.resumed.model_path) == read_bytes(runs.straight.model_path));
  // The checkpoint holds every shard under the unsharded keys: one device resumes it,
  // summing each batch in its own order.
  TrainOptions alone = runs.resumed_options;
  alone.output_dir = fresh_dir("zero-resumed-alone").string();
  alone.devices = {};
  alone.zero_stage = 0;
  const TrainResult third = train_lora(alone, nullptr, CancelFlag{});
  CHECK(third.status == "completed" && third.steps == 8);
  double tensor_gap = 0;
  const double gap = relative_difference(third.model_path, runs.straight.model_path, tensor_gap);
  std::printf("  a ZeRO-2 checkpoint of 2 ranks resumed on one device: weights within %.2e relative\n", gap);
  CHECK(gap < 1e-5);
}

// Run by two_processes_over_a_tcp_store_train_what_two_threads_train in child processes
// (SDXL_TEST_RANK set); nothing otherwise.
TEST_CASE(process_rank_child) {
  const char* rank = std::getenv("SDXL_TEST_RANK");
  if (rank == nullptr) return;
  TrainOptions options = options_for("lora", std::string("dp-process-") + rank);
  options.validation_every = 0;
  options.output_dir = std::getenv("SDXL_TEST_OUTPUT");
  options.process_rank = std::atoi(rank);
  options.process_world_size = 2;
  options.store_port = std::atoi(std::getenv("SDXL_TEST_PORT"));
  options.collective_timeout_ms = 60000;
  const TrainResult result = train_lora(options, nullptr, CancelFlag{});
  CHECK(result.status == "completed");
}

TEST_CASE(two_processes_over_a_tcp_store_train_what_two_threads_train) {
  if (!dist::has_backend_for(torch::kCPU) || std::getenv("SDXL_TEST_RANK") != nullptr) return;
  TrainOptions threads = options_for("lora", "dp-threads");
  threads.validation_every = 0;
  threads.devices = {"cpu", "cpu"};
  const TrainResult in_threads = train_lora(threads, nullptr, CancelFlag{});

  const fs::path output = fresh_dir("dp-processes");
  const std::string port = std::to_string(20000 + getpid() % 20000);
  std::vector<pid_t> children;
  for (const char* rank : {"0", "1"}) {
    const pid_t child = fork();
    if (child == 0) {
      setenv("SDXL_TEST_RANK", rank, 1);
      setenv("SDXL_TEST_PORT", port.c_str(), 1);
      // Rank 1 writes nothing: only rank 0 writes the run's files.
      setenv("SDXL_TEST_OUTPUT", (std::string(rank) == "0" ? output : output / "rank-1").c_str(), 1);
      execl("/proc/self/exe", "test_data_parallel", "process_rank_child", static_cast<char*>(nullptr));
      _exit(127);
    }
    children.push_back(child);
  }
  for (const pid_t child : children) {
    int status = 0;
    waitpid(child, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  CHECK(read_bytes((output / "lora.safetensors").string()) == read_bytes(in_threads.lora_path));
  CHECK(!fs::exists(output / "rank-1" / "lora.safetensors"));
}

TEST_CASE(a_failing_rank_fails_the_run_with_its_error_at_once) {
  if (!dist::has_backend_for(torch::kCPU)) return;
  TrainOptions options = options_for("lora", "dp-failing");
  options.devices = {"cpu", "cpu"};
  options.validation_every = 0;
  options.collective_timeout_ms = 60000;
  // Rank 0's listener throws at step 5, while rank 1 goes on into the next all-reduce.
  const auto started = std::chrono::steady_clock::now();
  CHECK_THROWS_WITH(train_lora(options, [](const Progress& progress) {
    if (progress.phase == "training" && progress.step >= 5) throw std::runtime_error("listener failed at step 5");
  }, CancelFlag{}), "listener failed at step 5");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf("  the run failed after %.1f s (collective timeout 60 s)\n", seconds);
  CHECK(seconds < 30); // the other rank's collective failed when the failing rank's group closed, not at the timeout
}

TEST_CASE(device_lists_are_refused_naming_what_is_wrong) {
  TrainOptions options = options_for("lora", "dp-refused");
  options.devices = {"cpu", "cpu", "cpu"};
  CHECK_THROWS_WITH(train_lora(options, nullptr, CancelFlag{}), "batch_size: 2 images do not split evenly over 3 devices");
  options.devices = {"cpu", "cpu"};
  options.dropout = 0.1;
  CHECK_THROWS_WITH(train_lora(options, nullptr, CancelFlag{}), "dropout: is not supported on several devices");
  options.dropout = 0;
  options.devices = {"cpu", "cuda:0"};
  CHECK_THROWS_WITH(train_lora(options, nullptr, CancelFlag{}), "devices[1]: 'cuda:0' is not the kind of device 'cpu' is");
  options.devices = {"cpu", "tpu"};
  CHECK_THROWS_WITH(train_lora(options, nullptr, CancelFlag{}), "devices[1]:");
  options.devices = {"cpu", "cpu"};
  options.zero_stage = 3;
  CHECK_THROWS_WITH(train_lora(options, nullptr, CancelFlag{}), "zero_stage: must be 0, 1 or 2");
  options.devices = {};
  options.zero_stage = 1;
  CHECK_THROWS_WITH(train_lora(options, nullptr, CancelFlag{}), "zero_stage: 1 shards over several ranks");
  options.zero_stage = 0;
  options.devices = {"cuda:0", "cuda:0"};
  CHECK_THROWS_WITH(train_lora(options, nullptr, CancelFlag{}),
                    dist::has_backend_for(torch::Device("cuda:0")) ? "devices[1]: 'cuda:0' is named twice"
                                                                  : "devices[0]: this engine has no c10d backend for 'cuda:0'");
}

SDXL_TEST_MAIN()

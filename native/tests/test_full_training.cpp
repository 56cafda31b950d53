// Full fine-tuning (method "full") on the tiny fixture models, CPU: every UNet weight
// (and the text encoder) trained on the LoRA runs' loop, the model written as a
// diffusers folder and as one single file in the family's official layout, exact
// resume with EMA and 8-bit states, bfloat16 weights with stochastic rounding against
// float32 master weights, AdamW8bit against AdamW, Adafactor, and the parts alone.
#include "check.h"
#include "test_support.h" // tiny_dir, make_images, fresh_dir, read_bytes, max_abs_diff

#include <cmath>      // std::pow, std::ldexp
#include <filesystem>
#include <fstream>    // checkpoint stand-ins
#include <functional> // option changes
#include <set>

#include <ATen/CPUGeneratorImpl.h> // at::detail::createCPUGenerator

#include "engine/model.h"          // load_model_from, Model
#include "io/safetensors.h"        // SafetensorsFile
#include "sdxl/engine.h"           // train_lora, TrainOptions
#include "train/adafactor.h"       // Adafactor
#include "train/checkpoint_file.h" // prune_checkpoints
#include "train/ema.h"             // ExponentialMovingAverage
#include "train/optimizer.h"       // stochastic_round_to_bfloat16, make_optimizer

using namespace sdxl;
using namespace sdxl::test;
namespace fs = std::filesystem;

namespace {

std::string sd15_dir() { return fixtures_dir() + "/tiny-sd15"; }

TrainOptions full_options(const std::string& model, const std::string& name) {
  TrainOptions options;
  options.method = "full";
  options.model.model_path = model;
  options.images = make_images(4, 64, 64);
  options.output_dir = fresh_dir(name).string();
  options.output_name = "model";
  options.resolution = 64;
  options.min_bucket_side = 64;
  options.unet_lr = 1e-4;
  options.max_steps = 8;
  options.seed = 77;
  options.optimizer = "adamw";
  options.validation_loss_samples = 2;
  return options;
}

// The UNet's output on fixed inputs (conditioned on the family's context width).
torch::Tensor unet_output(Model& model) {
  torch::NoGradGuard no_grad;
  const models::UNetConfig& config = model.unet->config();
  auto generator = at::detail::createCPUGenerator(5);
  const torch::Tensor sample = torch::randn({1, config.in_channels, 8, 8}, generator, torch::kFloat);
  models::UNetConditioning conditioning;
  conditioning.context = torch::randn({1, 77, config.cross_attention_dim}, generator, torch::kFloat);
  if (config.has_added_embedding()) {
    conditioning.text_embeds = torch::randn({1, config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim},
                                            generator, torch::kFloat);
    conditioning.time_ids = torch::tensor({{64.0f, 64.0f, 0.0f, 0.0f, 64.0f, 64.0f}});
  }
  return model.unet->forward(sample, torch::tensor({500.0f}), conditioning);
}

std::shared_ptr<Model> load(const std::string& path, const std::string& config_dir = "") {
  LoadOptions options;
  options.model_path = path;
  options.config_dir = config_dir;
  return load_model_from(options, CancelFlag{});
}

// A file's keys without the entries that hold no weights (position ids, DDPM buffers).
std::set<std::string> weight_keys(const std::string& path) {
  std::set<std::string> keys;
  for (const std::string& key : io::SafetensorsFile::open(path).keys()) {
    if (key.find("position_ids") != std::string::npos || key.rfind("model.diffusion_model.", 0) != 0 &&
                                                             key.rfind("first_stage_model.", 0) != 0 &&
                                                             key.rfind("cond_stage_model.", 0) != 0 &&
                                                             key.rfind("conditioner.", 0) != 0)
      continue;
    keys.insert(key);
  }
  return keys;
}

// The validation loss at steps 0, 10, ..., max_steps (fixed images, timesteps and noise).
std::vector<double> validation_curve(const TrainOptions& options) {
  std::vector<double> curve;
  train_lora(options, [&](const Progress& progress) {
    const auto loss = progress.metrics.find("validation_loss");
    if (progress.phase == "validating" && loss != progress.metrics.end()) curve.push_back(loss->second);
  }, CancelFlag{});
  return curve;
}

double largest_relative_gap(const std::vector<double>& a, const std::vector<double>& b) {
  CHECK(a.size() == b.size() && !a.empty());
  double gap = 0;
  for (size_t i = 0; i < a.size(); ++i) gap = std::max(gap, std::abs(a[i] - b[i]) / std::abs(b[i]));
  return gap;
}

} // namespace

TEST_CASE(full_runs_write_a_folder_and_a_single_file_that_load_back_as_the_trained_model) {
  for (const std::string& base : {tiny_dir(), sd15_dir()}) {
    const bool sdxl = base == tiny_dir();
    TrainOptions options = full_options(base, sdxl ? "full-sdxl" : "full-sd15");
    options.train_text_encoder = !sdxl; // SD 1.5: the text encoder too, at its own rate
    options.text_encoder_lr = 5e-5;
    const TrainResult result = train_lora(options, nullptr, CancelFlag{});
    CHECK(result.status == "completed" && result.steps == 8 && result.lora_path.empty());
    const double base_parameters = static_cast<double>(inspect_model(LoadOptions{base}).unet_parameters);
    // Every UNet weight (and SD 1.5's text encoder).
    CHECK(sdxl ? result.metrics.at("trainable_parameters") == base_parameters
               : result.metrics.at("trainable_parameters") > base_parameters);

    // The folder: trained components written, the rest linked to the base model.
    const fs::path folder = result.model_dir;
    CHECK(fs::is_directory(folder / "unet") && !fs::is_symlink(folder / "unet"));
    CHECK(fs::is_symlink(folder / "vae") && fs::is_symlink(folder / "scheduler") && fs::is_symlink(folder / "tokenizer"));
    CHECK(fs::is_symlink(folder / "text_encoder") == sdxl);
    CHECK(fs::exists(folder / "model_index.json") && fs::exists(folder / "unet" / "config.json"));

    const auto trained = load(folder.string());
    const auto original = load(base);
    const torch::Tensor trained_out = unet_output(*trained);
    CHECK(max_abs_diff(trained_out, unet_output(*original)) > 1e-4); // it trained

    // The single file, read back by our own loader, is the same model.
    const auto from_file = load(result.model_path, base);
    CHECK_CLOSE(max_abs_diff(unet_output(*from_file), trained_out), 0, 1e-6);
    // Its keys are the official layout's: those of the fixture's single file of this family.
    const std::string official = sdxl ? fixtures_dir() + "/tiny-sdxl-single-file/tiny_sdxl_sgm.safetensors"
                                      : fixtures_dir() + "/tiny-sd15-single-file/tiny_sd15.safetensors";
    CHECK(weight_keys(result.model_path) == weight_keys(official));
    const io::SafetensorsFile file = io::SafetensorsFile::open(result.model_path);
    const auto& metadata = file.metadata();
    CHECK(metadata.at("modelspec.architecture") == (sdxl ? "stable-diffusion-xl-v1-base" : "stable-diffusion-v1"));
  }
}

TEST_CASE(a_full_run_stopped_and_resumed_writes_byte_identical_files) {
  const auto options_for = [](const std::string& name) {
    TrainOptions options = full_options(sd15_dir(), name);
    options.max_steps = 10;
    options.optimizer = "adamw8bit";
    options.ema_decay = 0.9;
    options.ema_start_step = 2;
    options.caption_dropout = 0.2;
    options.noise_offset = 0.05;
    options.checkpoint_every = 3;
    options.keep_checkpoints = 1;
    return options;
  };
  const TrainResult straight = train_lora(options_for("full-straight"), nullptr, CancelFlag{});
  CHECK(straight.status == "completed" && !straight.ema_model_path.empty());
  CHECK(read_bytes(straight.ema_model_path) != read_bytes(straight.model_path));
  // keep_checkpoints 1: only the final state is left.
  int checkpoints = 0;
  for (const auto& entry : fs::directory_iterator(fs::path(straight.checkpoint_path).parent_path())) checkpoints += entry.is_regular_file();
  CHECK(checkpoints == 1);

  TrainOptions stopped = options_for("full-resumed");
  stopped.stop_after_step = 4;
  const TrainResult first = train_lora(stopped, nullptr, CancelFlag{});
  CHECK(first.status == "cancelled" && first.steps == 4 && first.model_path.empty());
  TrainOptions resumed = stopped;
  resumed.stop_after_step = 0;
  resumed.resume_from = first.checkpoint_path;
  const TrainResult second = train_lora(resumed, nullptr, CancelFlag{});
  CHECK(second.status == "completed");
  CHECK(read_bytes(second.model_path) == read_bytes(straight.model_path));
  CHECK(read_bytes(second.ema_model_path) == read_bytes(straight.ema_model_path));
}

TEST_CASE(full_bf16_and_adamw8bit_follow_float32_master_weights_and_adamw) {
  // bfloat16 weights: float32 master copies against stochastic rounding (kohya's --full_bf16).
  const auto options_for = [](const std::string& name) {
    TrainOptions options = full_options(tiny_dir(), name);
    options.max_steps = 50;
    options.validation_every = 10;
    options.validation_loss_samples = 4;
    options.unet_lr = 2e-4;
    return options;
  };
  TrainOptions master = options_for("bf16-master");
  master.model.runtime.dtype = "bfloat16";
  TrainOptions rounded = master;
  rounded.output_dir = fresh_dir("bf16-rounded").string();
  rounded.full_bf16 = true;
  const std::vector<double> master_curve = validation_curve(master);
  const std::vector<double> rounded_curve = validation_curve(rounded);
  CHECK(master_curve.size() == 6); // steps 0, 10, ..., 50
  CHECK(master_curve.back() < master_curve.front()); // it learns
  const double bf16_gap = largest_relative_gap(rounded_curve, master_curve);
  std::printf("  full_bf16 vs float32 masters over 50 steps: validation loss %.5f -> %.5f vs %.5f -> %.5f, largest gap %.2f%%\n",
              rounded_curve.front(), rounded_curve.back(), master_curve.front(), master_curve.back(), 100 * bf16_gap);
  CHECK(bf16_gap < 0.02);

  // float32 weights: AdamW8bit's block-wise moments against AdamW's float32 ones.
  const TrainOptions adamw = options_for("adamw-32");
  TrainOptions eight = options_for("adamw-8");
  eight.optimizer = "adamw8bit";
  const std::vector<double> adamw_curve = validation_curve(adamw);
  const std::vector<double> eight_curve = validation_curve(eight);
  const double eight_gap = largest_relative_gap(eight_curve, adamw_curve);
  std::printf("  adamw8bit vs adamw over 50 steps: validation loss %.5f -> %.5f vs %.5f -> %.5f, largest gap %.2f%%\n",
              eight_curve.front(), eight_curve.back(), adamw_curve.front(), adamw_curve.back(), 100 * eight_gap);
  CHECK(adamw_curve.back() < adamw_curve.front());
  CHECK(eight_gap < 0.02);
}

TEST_CASE(adafactor_trains_with_factored_second_moments) {
  TrainOptions adafactor = full_options(tiny_dir(), "adafactor");
  adafactor.optimizer = "adafactor";
  adafactor.unet_lr = 1e-3;
  const TrainResult factored = train_lora(adafactor, nullptr, CancelFlag{});
  TrainOptions adamw = full_options(tiny_dir(), "adafactor-adamw");
  const TrainResult full_states = train_lora(adamw, nullptr, CancelFlag{});
  CHECK(factored.status == "completed" && std::isfinite(factored.metrics.at("final_loss")));
  // AdamW holds 8 bytes per weight; Adafactor a row and a column per matrix.
  CHECK(full_states.metrics.at("optimizer_state_bytes") == 8 * full_states.metrics.at("trainable_parameters"));
  CHECK(factored.metrics.at("optimizer_state_bytes") < full_states.metrics.at("optimizer_state_bytes") / 4);
}

TEST_CASE(adafactor_matches_its_definition) {
  // transformers' Adafactor(relative_step=False, scale_parameter=False, beta1=None), in double precision.
  auto generator = at::detail::createCPUGenerator(3);
  const torch::Tensor start = torch::randn({6, 5}, generator, torch::kFloat);
  torch::Tensor weight = start.clone().requires_grad_(true);
  torch::Tensor bias = torch::randn({5}, generator, torch::kFloat).requires_grad_(true);
  train::Adafactor optimizer({{weight, bias}}, /*weight_decay=*/0.01);
  torch::Tensor reference = start.to(torch::kDouble);
  torch::Tensor row = torch::zeros({6}, torch::kDouble), col = torch::zeros({5}, torch::kDouble);
  const double lr = 0.05;
  for (int t = 1; t <= 3; ++t) {
    const torch::Tensor grad = torch::randn({6, 5}, generator, torch::kFloat);
    weight.mutable_grad() = grad.clone();
    bias.mutable_grad() = torch::ones({5});
    optimizer.step({lr});
    const torch::Tensor g = grad.to(torch::kDouble);
    const double rho = 1.0 - std::pow(t, -0.8);
    const torch::Tensor u = g * g + 1e-30;
    row = rho * row + (1 - rho) * u.mean(-1);
    col = rho * col + (1 - rho) * u.mean(-2);
    torch::Tensor update = (row / row.mean()).rsqrt().unsqueeze(-1) * col.unsqueeze(0).rsqrt() * g;
    update = update / std::max(1.0, (update.norm() / std::sqrt(30.0)).item<double>());
    reference = reference - 0.01 * lr * reference - lr * update;
  }
  CHECK_CLOSE(max_abs_diff(weight.detach().to(torch::kDouble), reference), 0, 1e-6);
  CHECK(!weight.grad().defined()); // freed as it was used
}

TEST_CASE(stochastic_rounding_is_unbiased_and_lands_on_a_neighbour) {
  // 1 + 2^-9 lies a quarter of the way from bfloat16's 1 to its next value 1 + 2^-7.
  const double value = 1.0 + std::ldexp(1.0, -9);
  auto generator = at::detail::createCPUGenerator(11);
  at::Generator handle = generator;
  const torch::Tensor rounded =
      train::stochastic_round_to_bfloat16(torch::full({100000}, value, torch::kFloat), handle).to(torch::kDouble);
  const torch::Tensor up = rounded.eq(1.0 + std::ldexp(1.0, -7)), down = rounded.eq(1.0);
  CHECK(up.logical_or(down).all().item<bool>());
  CHECK_CLOSE(up.to(torch::kDouble).mean().item<double>(), 0.25, 0.01);
  CHECK_CLOSE(rounded.mean().item<double>(), value, 1e-4);
  // Negative values round their magnitude the same way.
  const torch::Tensor negative =
      train::stochastic_round_to_bfloat16(torch::full({100000}, -value, torch::kFloat), handle).to(torch::kDouble);
  CHECK_CLOSE(negative.mean().item<double>(), -value, 1e-4);
}

TEST_CASE(ema_follows_diffusers_decay_schedule) {
  torch::Tensor weight = torch::zeros({2});
  train::ExponentialMovingAverage ema({weight}, {"w"}, /*decay=*/0.9, /*update_after_step=*/1, /*on_cpu=*/true);
  double expected = 0;
  for (int step = 1; step <= 6; ++step) {
    weight.fill_(static_cast<double>(step));
    ema.update(step);
    const double n = step - 1 - 1;
    const double decay = n <= 0 ? 0.0 : std::min(0.9, (1 + n) / (10 + n));
    expected -= (1 - decay) * (expected - step);
    CHECK_CLOSE(ema.shadows_like_weights().at("w")[0].item<double>(), expected, 1e-5);
  }
  std::map<std::string, torch::Tensor> state;
  ema.save_state(state, "ema");
  train::ExponentialMovingAverage restored({weight}, {"w"}, 0.9, 1, false);
  restored.load_state(state, "ema");
  CHECK(torch::equal(restored.shadows_like_weights().at("w"), ema.shadows_like_weights().at("w")));
  CHECK_THROWS_WITH(restored.load_state({}, "ema"), "ema.w");
}

TEST_CASE(method_options_are_refused_naming_the_option) {
  const auto refused = [](const std::function<void(TrainOptions&)>& change, const std::string& field) {
    TrainOptions options = full_options(tiny_dir(), "refused");
    change(options);
    CHECK_THROWS_WITH(train_lora(options, nullptr, CancelFlag{}), field);
  };
  refused([](TrainOptions& o) { o.method = "dreambooth"; }, "method: 'dreambooth' is not one of lora, full");
  refused([](TrainOptions& o) { o.method = "lora"; o.full_bf16 = true; }, "full_bf16: applies to method full only");
  refused([](TrainOptions& o) { o.full_bf16 = true; }, "full_bf16: needs model.runtime.dtype bfloat16");
  refused([](TrainOptions& o) { o.method = "lora"; o.ema_decay = 0.99; }, "ema_decay: applies to method full only");
  refused([](TrainOptions& o) { o.ema_decay = 1.0; }, "ema_decay: must be in [0, 1)");
  refused([](TrainOptions& o) { o.validation_weights = "ema"; }, "validation_weights: 'ema' needs ema_decay > 0");
  refused([](TrainOptions& o) { o.optimizer = "lion"; }, "optimizer: 'lion' is not one of adamw, adamw8bit, adafactor");
  refused([](TrainOptions& o) { o.keep_checkpoints = -1; }, "keep_checkpoints: must be >= 0");
}

TEST_CASE(prune_checkpoints_keeps_the_newest) {
  const fs::path dir = fresh_dir("prune");
  fs::create_directories(dir / "checkpoints");
  for (int step : {3, 12, 6, 9}) std::ofstream(train::checkpoint_path(dir.string(), step)) << "x";
  std::ofstream(dir / "checkpoints" / "notes.txt") << "kept";
  const std::vector<std::string> deleted = train::prune_checkpoints(dir.string(), 2);
  CHECK(deleted.size() == 2 && deleted[0] == train::checkpoint_path(dir.string(), 3) &&
        deleted[1] == train::checkpoint_path(dir.string(), 6));
  CHECK(fs::exists(train::checkpoint_path(dir.string(), 12)) && fs::exists(train::checkpoint_path(dir.string(), 9)));
  CHECK(fs::exists(dir / "checkpoints" / "notes.txt"));
}

SDXL_TEST_MAIN()

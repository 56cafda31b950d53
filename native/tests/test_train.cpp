// The trainer end to end on the tiny fixture model (CPU, float32 unless a case
// says otherwise), with images generated here: bad options, learning, exact
// resume after a stop and after a cancel, the saved file against the adapter
// in memory, bfloat16 weights, validation images, held-out images and epochs.
#include "check.h"
#include "test_support.h" // tiny_dir, max_abs_diff, scratch_path

#include <cmath>      // std::abs
#include <filesystem> // temp dirs, file checks
#include <fstream>    // byte comparison
#include <iterator>   // std::istreambuf_iterator

#include <ATen/CPUGeneratorImpl.h> // at::detail::createCPUGenerator

#include "engine/model.h"          // load_model_from
#include "io/safetensors.h"        // SafetensorsFile
#include "lora/apply.h"            // apply_lora, lora_targets
#include "lora/lora_file.h"        // load_lora_file
#include "sdxl/engine.h"           // train, TrainOptions
#include "train/checkpoint_file.h" // read_checkpoint
#include "train/lora_network.h"    // LoraNetwork

using namespace sdxl;
using namespace sdxl::test; // test_support.h
namespace fs = std::filesystem;

namespace {

TrainOptions base_options(const fs::path& output) {
  TrainOptions options;
  options.model.model_path = tiny_dir();
  options.images = make_images(4, 80, 64);
  options.output_dir = output.string();
  options.trigger_phrase = "sks";
  options.resolution = 64;
  options.min_bucket_side = 64;
  options.rank = 4;
  options.alpha = 4;
  options.unet_lr = 1e-3;
  options.max_steps = 20;
  options.seed = 1234;
  options.validation_loss_samples = 4;
  return options;
}

// Every feature that draws random numbers or carries state across steps.
TrainOptions resume_options(const fs::path& output) {
  TrainOptions options = base_options(output);
  options.max_steps = 100;
  options.batch_size = 2;
  options.gradient_accumulation = 2;
  options.random_flip = true;
  options.caption_dropout = 0.1;
  options.dropout = 0.1;
  options.noise_offset = 0.05;
  options.min_snr_gamma = 5;
  options.lr_scheduler = "cosine";
  options.lr_warmup_steps = 10;
  options.optimizer = "adamw8bit";
  options.images = make_images(5, 64, 80);
  return options;
}

// The uninterrupted 100-step run, shared by the resume cases.
const std::string& uninterrupted_lora() {
  static const std::string bytes = [] {
    const TrainResult result = train_lora(resume_options(fresh_dir("uninterrupted")), nullptr, CancelFlag{});
    CHECK(result.status == "completed");
    CHECK(result.steps == 100);
    return read_bytes(result.lora_path);
  }();
  return bytes;
}

} // namespace

TEST_CASE(bad_options_are_refused_before_any_model_work) {
  // A model path that does not exist: each refusal must come before loading.
  const auto refused = [](const std::function<void(TrainOptions&)>& change, const std::string& field) {
    TrainOptions options = base_options(fresh_dir("bad"));
    options.model.model_path = "/nonexistent/model";
    change(options);
    CHECK_THROWS_WITH(train_lora(options, nullptr, CancelFlag{}), field);
  };
  refused([](TrainOptions& o) { o.rank = 0; }, "rank:");
  refused([](TrainOptions& o) { o.unet_lr = -1e-4; }, "unet_lr:");
  refused([](TrainOptions& o) { o.resolution = 100; }, "resolution: must be a multiple of bucket_step");
  refused([](TrainOptions& o) { o.images.clear(); }, "images:");
  refused([](TrainOptions& o) { o.images[1].caption = "  "; }, "images[1].caption");
  refused([](TrainOptions& o) { o.images[0].rgb.pop_back(); }, "images[0].rgb");
  refused([](TrainOptions& o) { o.optimizer = "sgd"; }, "optimizer: 'sgd' is not one of adamw, adamw8bit");
  refused([](TrainOptions& o) { o.lr_scheduler = "step"; }, "lr_scheduler:");
  refused([](TrainOptions& o) { o.vae_dtype = "float16"; }, "vae_dtype:");
  refused([](TrainOptions& o) { o.caption_dropout = 1.0; }, "caption_dropout:");
}

TEST_CASE(training_lowers_the_validation_loss) {
  TrainOptions options = base_options(fresh_dir("learn"));
  options.max_steps = 200;
  options.rank = 8;
  options.alpha = 8;
  options.unet_lr = 1e-2; // a tiny random model: a large step size shows learning within 200 steps
  options.optimizer = "adamw";
  options.unet_targets = {"to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2"};
  options.validation_loss_samples = 8;
  std::vector<Progress> reports;
  const TrainResult result = train_lora(options, [&](const Progress& p) { reports.push_back(p); }, CancelFlag{});
  CHECK(result.status == "completed");
  const double first = result.metrics.at("validation_loss_first");
  const double last = result.metrics.at("validation_loss_last");
  std::printf("validation loss: %.5f -> %.5f (%.1f%% lower) after %lld steps; optimizer state %.0f bytes\n", first,
              last, 100 * (1 - last / first), static_cast<long long>(result.steps),
              result.metrics.at("optimizer_state_bytes"));
  CHECK(last < 0.92 * first); // measured: 1.175 -> 1.042 (11% lower)
  CHECK(fs::exists(result.lora_path));

  // Progress: every phase, training metrics, and not one report per step.
  std::set<std::string> phases;
  int64_t training_reports = 0;
  for (const Progress& p : reports) {
    phases.insert(p.phase);
    if (p.phase != "training") continue;
    ++training_reports;
    for (const char* key : {"loss", "loss_avg", "lr", "memory_bytes", "peak_memory_bytes"}) CHECK(p.metrics.count(key));
  }
  for (const char* phase : {"loading", "caching", "training", "validating", "saving", "done"}) CHECK(phases.count(phase));
  CHECK(training_reports >= 1);
  CHECK(training_reports <= options.max_steps);
}

TEST_CASE(a_run_stopped_at_step_50_and_resumed_is_byte_identical) {
  const fs::path dir = fresh_dir("stopped");
  TrainOptions options = resume_options(dir);
  options.stop_after_step = 50;
  const TrainResult stopped = train_lora(options, nullptr, CancelFlag{});
  CHECK(stopped.status == "cancelled");
  CHECK(stopped.steps == 50);
  CHECK(stopped.lora_path.empty());
  CHECK(fs::exists(stopped.checkpoint_path));

  TrainOptions resumed_options = resume_options(dir);
  resumed_options.resume_from = stopped.checkpoint_path;
  const TrainResult resumed = train_lora(resumed_options, nullptr, CancelFlag{});
  CHECK(resumed.status == "completed");
  CHECK(resumed.steps == 100);
  CHECK(read_bytes(resumed.lora_path) == uninterrupted_lora());
}

TEST_CASE(cancel_writes_a_checkpoint_that_resumes) {
  const fs::path dir = fresh_dir("cancelled");
  CancelFlag cancel;
  const TrainResult cancelled = train_lora(
      resume_options(dir),
      [&](const Progress& p) {
        if (p.phase == "training" && p.step >= 5) cancel.request();
      },
      cancel);
  CHECK(cancelled.status == "cancelled");
  CHECK(cancelled.steps >= 5 && cancelled.steps < 100);
  CHECK(fs::exists(cancelled.checkpoint_path));
  CHECK(train::read_checkpoint(cancelled.checkpoint_path).step == cancelled.steps);

  TrainOptions options = resume_options(dir);
  options.resume_from = cancelled.checkpoint_path;
  const TrainResult resumed = train_lora(options, nullptr, CancelFlag{});
  CHECK(resumed.status == "completed");
  CHECK(read_bytes(resumed.lora_path) == uninterrupted_lora());

  // A checkpoint written with other options is refused, naming them.
  TrainOptions other = resume_options(dir);
  other.resume_from = cancelled.checkpoint_path;
  other.rank = 8;
  CHECK_THROWS_WITH(train_lora(other, nullptr, CancelFlag{}), "rank was 4, now 8");
}

TEST_CASE(written_files_are_reported_once_on_disk_in_the_save_dtype) {
  TrainOptions options = base_options(fresh_dir("reported"));
  options.max_steps = 4;
  options.checkpoint_every = 2;
  options.save_peft = true;
  options.save_dtype = "float16";
  std::vector<std::string> saved;
  const TrainResult result = train_lora(options, [&](const Progress& p) {
    if (p.phase != "saving") return;
    for (const std::string& file : p.files) {
      CHECK(std::filesystem::exists(file)); // a listener may publish it at once
      saved.push_back(std::filesystem::path(file).lexically_relative(options.output_dir).generic_string());
    }
  }, CancelFlag{});
  CHECK(result.status == "completed");
  const std::vector<std::string> expected{"checkpoints/step-000002.safetensors", "lora.safetensors",
                                          "lora_peft.safetensors", "checkpoints/step-000004.safetensors"};
  CHECK(saved == expected);
  for (const std::string& path : {result.lora_path, result.peft_path}) {
    const io::SafetensorsFile file = io::SafetensorsFile::open(path);
    for (const std::string& name : file.keys()) CHECK(file.info(name).dtype == "F16");
  }
  options.save_dtype = "float8";
  CHECK_THROWS_WITH(train_lora(options, nullptr, CancelFlag{}), "save_dtype");
}

TEST_CASE(the_saved_lora_reproduces_the_adapter_in_memory) {
  TrainOptions options = base_options(fresh_dir("saved"));
  options.max_steps = 10;
  options.unet_lr = 5e-3;
  options.train_text_encoder = true;
  options.text_encoder_lr = 5e-3;
  options.checkpoint_every = 10; // keeps the final state: the adapter as it was in memory
  options.save_peft = true;
  const TrainResult result = train_lora(options, nullptr, CancelFlag{});
  CHECK(result.status == "completed");

  LoadOptions load;
  load.model_path = tiny_dir();
  // The adapter in memory: the checkpoint's float32 LoRA tensors on a fresh model.
  const auto in_memory = load_model_from(load, CancelFlag{});
  train::LoraNetwork network;
  train::LoraNetworkOptions network_options;
  network_options.rank = options.rank;
  network_options.alpha = options.alpha;
  network_options.unet_targets = options.unet_targets;
  network_options.text_encoders = true;
  network_options.text_encoder_targets = options.text_encoder_targets;
  auto generator = at::detail::createCPUGenerator(0);
  network.attach(*in_memory->unet, in_memory->text_encoder.ptr().get(), in_memory->text_encoder_2.ptr().get(),
                 network_options, generator);
  std::map<std::string, torch::Tensor> lora_state;
  for (const auto& [name, tensor] : train::read_checkpoint(result.checkpoint_path).tensors) {
    if (name.rfind("lora/", 0) == 0) lora_state[name.substr(5)] = tensor;
  }
  network.load_state(lora_state);
  in_memory->unet->eval();

  torch::NoGradGuard no_grad;
  auto inputs = at::detail::createCPUGenerator(5);
  const torch::Tensor sample = torch::randn({1, 4, 8, 8}, inputs, torch::kFloat32);
  const torch::Tensor context = torch::randn({1, 77, 64}, inputs, torch::kFloat32);
  const torch::Tensor pooled = torch::randn({1, 32}, inputs, torch::kFloat32);
  const torch::Tensor time_ids = torch::tensor({{64.f, 64.f, 0.f, 0.f, 64.f, 64.f}});
  const torch::Tensor t = torch::tensor({321.f});
  const torch::Tensor ids = torch::randint(3, 1000, {1, 77}, inputs, torch::kInt64);
  const torch::Tensor expected = in_memory->unet->forward(sample, t, context, pooled, time_ids);
  const torch::Tensor expected_te = in_memory->text_encoder->forward(ids).last_hidden_state;
  const torch::Tensor expected_te2 = in_memory->text_encoder_2->forward(ids).text_embeds;

  for (const std::string& path : {result.lora_path, result.peft_path}) {
    const auto reloaded = load_model_from(load, CancelFlag{});
    const auto targets = lora::lora_targets(reloaded->unet.ptr().get(), reloaded->text_encoder.ptr().get(),
                                            reloaded->text_encoder_2.ptr().get());
    const lora::LoraFile file = lora::load_lora_file(path, targets);
    lora::apply_lora(reloaded->unet.ptr().get(), reloaded->text_encoder.ptr().get(),
                     reloaded->text_encoder_2.ptr().get(), file, 1.0);
    const double unet_diff = max_abs_diff(reloaded->unet->forward(sample, t, context, pooled, time_ids), expected);
    const double te_diff = max_abs_diff(reloaded->text_encoder->forward(ids).last_hidden_state, expected_te);
    const double te2_diff = max_abs_diff(reloaded->text_encoder_2->forward(ids).text_embeds, expected_te2);
    std::printf("%s: max |diff| unet %.2e, te1 %.2e, te2 %.2e; %zu modules\n", path.c_str(), unet_diff, te_diff,
                te2_diff, file.modules.size());
    CHECK(unet_diff <= 1e-6);
    CHECK(te_diff <= 1e-6);
    CHECK(te2_diff <= 1e-6);
    // The adapter really changed the outputs (B left zero would pass the checks above trivially).
    CHECK(max_abs_diff(expected, load_model_from(load, CancelFlag{})->unet->forward(sample, t, context, pooled,
                                                                                     time_ids)) > 1e-5);
  }

  // Kohya layout with SGM block names, both text encoders, and the metadata users look for.
  const io::SafetensorsFile kohya = io::SafetensorsFile::open(result.lora_path);
  bool unet_sgm = false, te1 = false, te2 = false;
  for (const std::string& name : kohya.keys()) {
    unet_sgm |= name.rfind("lora_unet_input_blocks_", 0) == 0;
    te1 |= name.rfind("lora_te1_", 0) == 0;
    te2 |= name.rfind("lora_te2_", 0) == 0;
  }
  CHECK(unet_sgm && te1 && te2);
  for (const char* key : {"ss_network_dim", "ss_network_alpha", "ss_base_model_version", "modelspec.architecture",
                          "modelspec.trigger_phrase"})
    CHECK(kohya.metadata().count(key));
  CHECK(kohya.metadata().at("modelspec.trigger_phrase") == "sks");
}

TEST_CASE(bfloat16_weights_train_with_float32_lora) {
  TrainOptions options = base_options(fresh_dir("bf16"));
  options.model.runtime.dtype = "bfloat16";
  options.vae_dtype = "bfloat16";
  options.max_steps = 5;
  const TrainResult result = train_lora(options, nullptr, CancelFlag{});
  CHECK(result.status == "completed");
  CHECK(std::isfinite(result.metrics.at("final_loss")));
  const io::SafetensorsFile file = io::SafetensorsFile::open(result.lora_path);
  for (const std::string& name : file.keys()) CHECK(file.info(name).dtype == "F32");
}

TEST_CASE(validation_images_are_written_as_png) {
  TrainOptions options = base_options(fresh_dir("samples"));
  options.max_steps = 4;
  options.validation_every = 2;
  options.validation_steps = 2;
  options.validation_prompts = {"a photo of sks toy", "sks toy on a beach"};
  std::vector<std::string> reported; // the PNGs of "validating" reports (others report the LoRA files)
  const TrainResult result = train_lora(options, [&](const Progress& p) {
    if (p.phase == "validating") reported.insert(reported.end(), p.files.begin(), p.files.end());
  }, CancelFlag{});
  // Before training (step 0, the baseline), at step 2 and at the end (4), one per prompt.
  CHECK(result.sample_paths.size() == 6);
  CHECK(result.sample_paths.back().find("step-000004-01.png") != std::string::npos);
  CHECK(reported == result.sample_paths);
  for (const std::string& path : result.sample_paths) {
    const std::string bytes = read_bytes(path);
    CHECK(bytes.size() > 8 && bytes.compare(1, 3, "PNG") == 0);
  }
}

TEST_CASE(validation_images_are_scored_with_the_quality_metrics) {
  const auto run = [](const std::string& name) {
    TrainOptions options = base_options(fresh_dir(name));
    options.max_steps = 2;
    options.validation_every = 1;
    options.validation_steps = 2;
    options.validation_prompts = {"a photo of sks toy", "sks toy on a beach"};
    options.validation_metrics = {"clip_t", "clip_i", "hps", "lpips", "fid", "kid", "is"};
    options.validation_final_images = 2;
    options.metrics_models_dir = metrics_models_dir();
    std::vector<Progress> scored; // the validating reports with scores
    const TrainResult result = train_lora(options, [&](const Progress& p) {
      if (p.phase == "validating" && p.metrics.count("metric_images") == 1) scored.push_back(p);
    }, CancelFlag{});
    CHECK(result.status == "completed");
    return std::make_pair(result, scored);
  };
  const auto [result, scored] = run("scored");
  // Steps 0, 1 and 2 (one image per prompt: the per-image metrics), then the final set.
  CHECK(scored.size() == 4);
  for (size_t i = 0; i + 1 < scored.size(); ++i) {
    for (const char* key : {"metric_clip_t", "metric_clip_i", "metric_hps"}) CHECK(scored[i].metrics.count(key) == 1);
    CHECK(scored[i].metrics.count("metric_fid") == 0 && scored[i].metrics.count("final_set") == 0);
    CHECK(scored[i].metrics.at("metric_images") == 2);
  }
  const Progress& final_set = scored.back();
  CHECK(final_set.metrics.at("final_set") == 1);
  CHECK(final_set.metrics.at("metric_images") == 4); // 2 prompts x 2
  for (const char* key : {"metric_clip_t", "metric_clip_i", "metric_hps", "metric_lpips", "metric_fid", "metric_kid", "metric_is"})
    CHECK(final_set.metrics.count(key) == 1);
  CHECK(final_set.metrics.at("metric_lpips_pairs") == 2);
  CHECK(final_set.files.size() == 4 && final_set.files.back().find("final-01-01.png") != std::string::npos);
  CHECK(result.metrics.at("final_fid") == final_set.metrics.at("metric_fid"));
  std::printf("  final set: clip_t %.4f, clip_i %.4f, hps %.4f, lpips %.4f, fid %.4f, kid %.6f, is %.4f\n",
              final_set.metrics.at("metric_clip_t"), final_set.metrics.at("metric_clip_i"), final_set.metrics.at("metric_hps"),
              final_set.metrics.at("metric_lpips"), final_set.metrics.at("metric_fid"), final_set.metrics.at("metric_kid"),
              final_set.metrics.at("metric_is"));
  // The same seed scores the same.
  const auto scores = [](const Progress& p) {
    std::map<std::string, double> values;
    for (const auto& [key, value] : p.metrics)
      if (key.rfind("metric_", 0) == 0) values[key] = value;
    return values;
  };
  const auto again = run("scored-again");
  CHECK(again.second.size() == scored.size());
  for (size_t i = 0; i < scored.size() && i < again.second.size(); ++i) CHECK(scores(again.second[i]) == scores(scored[i]));

  // Without the networks: the run completes and says which metrics it could not compute.
  TrainOptions missing = base_options(fresh_dir("unscored"));
  missing.max_steps = 1;
  missing.validation_steps = 2;
  missing.validation_prompts = {"a photo of sks toy"};
  missing.validation_metrics = {"clip_t", "fid"};
  missing.validation_final_images = 1;
  std::string message;
  const TrainResult unscored = train_lora(missing, [&](const Progress& p) {
    if (p.phase == "validating" && p.metrics.count("final_set")) message = p.message;
  }, CancelFlag{});
  CHECK(unscored.status == "completed");
  CHECK(message.find("clip_t unavailable: no metrics models folder is configured") != std::string::npos);
  CHECK(unscored.metrics.count("final_fid") == 0);
  CHECK_THROWS_WITH(train_lora([&] { TrainOptions bad = missing; bad.validation_metrics = {"dino"}; return bad; }(), nullptr, CancelFlag{}),
                    "validation_metrics: unknown metric \"dino\"");
}

SDXL_TEST_MAIN()

TEST_CASE(held_out_images_are_validated_on_and_never_trained_on) {
  TrainOptions options = base_options(fresh_dir("without-split"));
  const TrainResult without = train_lora(options, nullptr, CancelFlag{});

  options.output_dir = fresh_dir("with-split").string();
  options.validation_images = make_images(3, 64, 80);
  for (TrainImage& image : options.validation_images) image.caption = "a photo of sks toy outdoors";
  const TrainResult with = train_lora(options, nullptr, CancelFlag{});
  CHECK(with.status == "completed");
  CHECK(with.metrics.at("held_out_images") == 3);
  CHECK(without.metrics.at("held_out_images") == 0);
  // Training saw the same images in the same order with the same draws: the same LoRA.
  CHECK(read_bytes(with.lora_path) == read_bytes(without.lora_path));
  // The validation loss is over other images (and other timesteps and noise).
  CHECK(std::abs(with.metrics.at("validation_loss_last") - without.metrics.at("validation_loss_last")) > 1e-6);

  // A held-out image is refused as a training image would be.
  TrainOptions bad = options;
  bad.model.model_path = "/nonexistent/model";
  bad.validation_images[2].rgb.pop_back();
  CHECK_THROWS_WITH(train_lora(bad, nullptr, CancelFlag{}), "validation_images[2].rgb");
}

TEST_CASE(progress_reports_the_epoch_and_epochs_count_in_micro_batches) {
  // 4 images of one bucket, batch 1: an epoch is 4 micro-batches, 2 optimizer steps with accumulation 2.
  TrainOptions options = base_options(fresh_dir("epochs"));
  options.max_steps = 7;
  options.gradient_accumulation = 2;
  CHECK(batches_per_epoch(options) == 4);
  std::vector<Progress> training;
  const TrainResult result = train_lora(
      options, [&](const Progress& p) { if (p.phase == "training") training.push_back(p); }, CancelFlag{});
  CHECK(result.status == "completed");
  CHECK(!training.empty());
  const Progress& last = training.back();
  CHECK(last.step == 7);
  CHECK(last.metrics.at("epoch") == 4); // the last step's micro-batches, 13 and 14, open epoch 4
  CHECK(last.metrics.at("epochs") == 4); // ceil(14 / 4)
  CHECK(result.metrics.at("epochs") == 4);

  // Buckets and repeats: 3 square images and 1 of 2:1 (the 320x192 bucket at resolution 256),
  // three times each, in batches of 2: ceil(9 / 2) + ceil(3 / 2) (one bucket would be ceil(12 / 2)).
  TrainOptions plan;
  plan.resolution = 256;
  plan.min_bucket_side = 64;
  plan.max_bucket_side = 512;
  plan.images = make_images(3, 512, 512);
  plan.images.push_back(make_images(1, 1024, 512).front());
  plan.repeats = 3;
  plan.batch_size = 2;
  CHECK(batches_per_epoch(plan) == 7);
  plan.images.clear();
  CHECK_THROWS_WITH(batches_per_epoch(plan), "images:");
}

TEST_CASE(a_shared_cache_is_reused_and_pixels_are_loaded_only_for_what_it_lacks) {
  const fs::path cache = fresh_dir("shared-cache");
  TrainOptions options = base_options(fresh_dir("cache-first"));
  options.max_steps = 4;
  options.random_flip = true; // two entries per image
  options.cache_dir = cache.string();
  // The pixels come from the loader, as the service gives them: keyed, sized, no rgb.
  std::vector<TrainImage> sources = options.images;
  std::vector<size_t> loaded;
  for (size_t i = 0; i < options.images.size(); ++i) {
    options.images[i].key = "image-" + std::to_string(i);
    options.images[i].rgb.clear();
  }
  options.load_pixels = [&](size_t index) {
    loaded.push_back(index);
    const TrainImage& source = sources.at(index);
    return Pixels{source.width, source.height, source.rgb};
  };
  const TrainResult first = train_lora(options, nullptr, CancelFlag{});
  CHECK(first.status == "completed");
  CHECK(loaded == (std::vector<size_t>{0, 1, 2, 3}));
  CHECK(first.metrics.at("cache_latents_encoded") == 8);
  CHECK(first.metrics.at("cache_latents_reused") == 0);
  CHECK(first.metrics.at("cache_prompts_encoded") == 2); // the caption and the empty prompt
  CHECK(fs::exists(cache / "latents" / "vae-float32" / "64x64" / "image-0-flip.safetensors"));

  // A second run on the same images encodes nothing and reads no pixels, and trains the same LoRA.
  loaded.clear();
  options.output_dir = fresh_dir("cache-second").string();
  const TrainResult second = train_lora(options, nullptr, CancelFlag{});
  CHECK(loaded.empty());
  CHECK(second.metrics.at("cache_latents_encoded") == 0);
  CHECK(second.metrics.at("cache_latents_reused") == 8);
  CHECK(second.metrics.at("cache_prompts_encoded") == 0);
  CHECK(read_bytes(second.lora_path) == read_bytes(first.lora_path));

  // One new image: only it is loaded.
  options.output_dir = fresh_dir("cache-third").string();
  options.images.push_back(options.images.front());
  options.images.back().key = "image-new";
  sources.push_back(sources.front());
  options.max_steps = 1;
  const TrainResult third = train_lora(options, nullptr, CancelFlag{});
  CHECK(loaded == (std::vector<size_t>{4}));
  CHECK(third.metrics.at("cache_latents_encoded") == 2);
  CHECK(third.metrics.at("cache_latents_reused") == 8);

  // An entry torn by a power cut (entries are not synced) is encoded again.
  loaded.clear();
  fs::resize_file(cache / "latents" / "vae-float32" / "64x64" / "image-2.safetensors", 20);
  options.output_dir = fresh_dir("cache-fourth").string();
  const TrainResult fourth = train_lora(options, nullptr, CancelFlag{});
  CHECK(loaded == (std::vector<size_t>{2}));
  CHECK(fourth.metrics.at("cache_latents_encoded") == 1);
}

TEST_CASE(images_without_pixels_are_refused_and_a_bad_loader_fails_the_run_naming_the_image) {
  TrainOptions options = base_options(fresh_dir("no-pixels"));
  options.max_steps = 1;
  options.images[1].rgb.clear();
  CHECK_THROWS_WITH(train_lora(options, nullptr, CancelFlag{}), "images[1].rgb");

  options.load_pixels = [](size_t) { return Pixels{8, 8, std::vector<uint8_t>(10)}; };
  CHECK_THROWS_WITH(train_lora(options, nullptr, CancelFlag{}), "images[1] (\"image-1.png\"): load_pixels gave 10 bytes for 8 x 8 x 3");
}

TEST_CASE(images_below_min_resolution_are_skipped_and_named) {
  TrainOptions options = base_options(fresh_dir("min-resolution"));
  options.max_steps = 2;
  options.resolution = 128;
  options.min_resolution = 64;
  options.images.push_back(make_images(1, 40, 40).front()); // 40^2 pixels: below 64^2
  options.images.back().name = "tiny.png";
  options.images.push_back(make_images(1, 160, 128).front()); // the 128 tier
  CHECK(batches_per_epoch(options) == 5); // 4 images of the 64 tier, 1 of the 128 tier; tiny.png skipped
  std::vector<Progress> skipping;
  const TrainResult result = train_lora(
      options, [&](const Progress& p) { if (p.phase == "skipping") skipping.push_back(p); }, CancelFlag{});
  CHECK(result.status == "completed");
  CHECK(result.metrics.at("skipped_images") == 1);
  CHECK(skipping.size() == 1);
  CHECK(skipping.front().message.find("1 images below min_resolution (64 px) are not trained on: tiny.png") != std::string::npos);
  CHECK(fs::exists(fs::path(options.output_dir) / "cache" / "latents" / "vae-float32" / "128x128"));

  TrainOptions none = base_options(fresh_dir("min-resolution-none"));
  none.resolution = 128;
  none.min_resolution = 128; // every 80x64 image is below it
  CHECK_THROWS_WITH(train_lora(none, nullptr, CancelFlag{}), "images: every one of the 4 images is below min_resolution (128)");
  CHECK_THROWS_WITH(batches_per_epoch(none), "below min_resolution");
  none.min_resolution = 96; // not a multiple of bucket_step
  CHECK_THROWS_WITH(train_lora(none, nullptr, CancelFlag{}), "min_resolution: must be 0 or a multiple of bucket_step (64)");
}

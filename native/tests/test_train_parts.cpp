// The small training parts: diffusers' learning-rate schedules at chosen steps
// (values worked out by hand), GradScaler-style dynamic loss scaling, and the
// LoRA header metadata (kohya ss_* keys, ModelSpec keys, dataset SHA-256,
// Python float formatting; expected values from Python's hashlib / repr()).
#include "check.h"

#include "train/lora_metadata.h" // lora_metadata, dataset_hash, Sha256, python_float
#include "train/loss_scaler.h"   // DynamicLossScaler
#include "train/lr_schedule.h"   // lr_multiplier, check_lr_scheduler

#include <cmath>  // std::cos
#include <limits> // std::numeric_limits
#include <map>
#include <string>
#include <vector>

using namespace sdxl;
using namespace sdxl::train;

namespace {

constexpr double kExact = 1e-12;

// A parameter whose gradient is `grad`.
torch::Tensor with_grad(const torch::Tensor& grad) {
  torch::Tensor parameter = torch::zeros_like(grad).requires_grad_(true);
  parameter.mutable_grad() = grad.clone();
  return parameter;
}

} // namespace

// ----------------------------------------------------------------------------
// Learning-rate schedules

TEST_CASE(constant_schedules) {
  for (int64_t step : {0, 1, 500, 5000}) CHECK(lr_multiplier("constant", step, 10, 100) == 1.0);
  // Warmup: step / warmup, so the first optimizer step runs at lr 0, as diffusers'.
  CHECK(lr_multiplier("constant_with_warmup", 0, 10, 100) == 0.0);
  CHECK_CLOSE(lr_multiplier("constant_with_warmup", 5, 10, 100), 0.5, kExact);
  CHECK_CLOSE(lr_multiplier("constant_with_warmup", 9, 10, 100), 0.9, kExact);
  CHECK(lr_multiplier("constant_with_warmup", 10, 10, 100) == 1.0);
  CHECK(lr_multiplier("constant_with_warmup", 1000, 10, 100) == 1.0);
  CHECK(lr_multiplier("constant_with_warmup", 0, 0, 100) == 1.0);
}

TEST_CASE(linear_schedule) {
  // warmup 10, total 110: up over 10 steps, then (110 - step) / 100.
  CHECK_CLOSE(lr_multiplier("linear", 4, 10, 110), 0.4, kExact);
  CHECK(lr_multiplier("linear", 10, 10, 110) == 1.0);
  CHECK_CLOSE(lr_multiplier("linear", 35, 10, 110), 0.75, kExact);
  CHECK_CLOSE(lr_multiplier("linear", 60, 10, 110), 0.5, kExact);
  CHECK_CLOSE(lr_multiplier("linear", 109, 10, 110), 0.01, kExact);
  CHECK(lr_multiplier("linear", 110, 10, 110) == 0.0);
  CHECK(lr_multiplier("linear", 200, 10, 110) == 0.0); // never negative
  CHECK(lr_multiplier("linear", 0, 0, 4) == 1.0);
  CHECK_CLOSE(lr_multiplier("linear", 3, 0, 4), 0.25, kExact);
}

TEST_CASE(cosine_schedule) {
  // warmup 0, total 100: 0.5 * (1 + cos(pi * step / 100)).
  CHECK(lr_multiplier("cosine", 0, 0, 100) == 1.0);
  CHECK_CLOSE(lr_multiplier("cosine", 25, 0, 100), 0.8535533905932737, kExact); // (1 + sqrt(2)/2) / 2
  CHECK_CLOSE(lr_multiplier("cosine", 50, 0, 100), 0.5, kExact);
  CHECK_CLOSE(lr_multiplier("cosine", 75, 0, 100), 0.14644660940672627, kExact);
  CHECK_CLOSE(lr_multiplier("cosine", 100, 0, 100), 0.0, kExact);
  // warmup 10, total 110: warmup, then the same half cosine over 100 steps.
  CHECK_CLOSE(lr_multiplier("cosine", 5, 10, 110), 0.5, kExact);
  CHECK(lr_multiplier("cosine", 10, 10, 110) == 1.0);
  CHECK_CLOSE(lr_multiplier("cosine", 40, 10, 110), 0.7938926261462366, kExact); // progress 0.3
  CHECK_CLOSE(lr_multiplier("cosine", 60, 10, 110), 0.5, kExact);
  CHECK_CLOSE(lr_multiplier("cosine", 110, 10, 110), 0.0, kExact);
}

TEST_CASE(unknown_schedule_names_list_the_valid_ones) {
  for (const char* name : {"constant", "constant_with_warmup", "linear", "cosine"}) check_lr_scheduler(name);
  CHECK_THROWS_WITH(check_lr_scheduler("cosine_with_restarts"),
                    "unknown lr_scheduler \"cosine_with_restarts\"; expected one of constant, constant_with_warmup, linear, cosine");
  CHECK_THROWS_WITH(lr_multiplier("Linear", 0, 0, 10), "expected one of");
  CHECK_THROWS_WITH(lr_multiplier("linear", -1, 0, 10), "must not be negative");
}

// ----------------------------------------------------------------------------
// Dynamic loss scaling

TEST_CASE(loss_scaler_detects_inf_and_nan) {
  DynamicLossScaler scaler;
  CHECK(scaler.enabled());
  CHECK(scaler.scale() == 65536.0);
  std::vector<torch::Tensor> parameters = {with_grad(torch::full({3}, 3.0 * 65536.0)),
                                           with_grad(torch::full({2, 2}, -65536.0)),
                                           torch::zeros({4}).requires_grad_(true)}; // no gradient: skipped
  CHECK(!scaler.found_non_finite(parameters));
  CHECK(scaler.inverse_scale() == 1.0 / 65536.0);
  CHECK(torch::equal(parameters[0].grad(), torch::full({3}, 3.0 * 65536.0))); // looked at, not changed
  CHECK(!parameters[2].grad().defined());

  std::vector<torch::Tensor> with_inf = {with_grad(torch::ones({2})),
                                         with_grad(torch::tensor({1.0f, std::numeric_limits<float>::infinity()}))};
  CHECK(scaler.found_non_finite(with_inf));
  std::vector<torch::Tensor> with_nan = {with_grad(torch::tensor({std::numeric_limits<float>::quiet_NaN()}))};
  CHECK(scaler.found_non_finite(with_nan));
}

TEST_CASE(loss_scaler_backs_off_skips_and_grows) {
  LossScalerOptions options;
  options.init_scale = 1024;
  options.growth_interval = 3;
  DynamicLossScaler scaler(options);
  scaler.update(true); // overflow: halve, count the skipped step
  CHECK(scaler.scale() == 512.0);
  CHECK(scaler.skipped_steps() == 1);
  scaler.update(false);
  scaler.update(false);
  CHECK(scaler.scale() == 512.0); // 2 clean steps: not yet
  scaler.update(true);            // an overflow restarts the count
  CHECK(scaler.scale() == 256.0);
  CHECK(scaler.growth_tracker() == 0);
  scaler.update(false);
  scaler.update(false);
  CHECK(scaler.scale() == 256.0);
  scaler.update(false); // the third clean step in a row
  CHECK(scaler.scale() == 512.0);
  CHECK(scaler.growth_tracker() == 0);
  CHECK(scaler.skipped_steps() == 2);

  // GradScaler's defaults: backoff 0.5, growth 2 after 2000 clean steps.
  DynamicLossScaler defaults;
  for (int i = 0; i < 1999; ++i) defaults.update(false);
  CHECK(defaults.scale() == 65536.0);
  defaults.update(false);
  CHECK(defaults.scale() == 131072.0);

  // Growth stops where float32 would overflow (GradScaler's scale is a float32 tensor).
  LossScalerOptions huge;
  huge.init_scale = std::ldexp(1.0, 127);
  huge.growth_interval = 1;
  DynamicLossScaler capped(huge);
  capped.update(false);
  CHECK(capped.scale() == std::ldexp(1.0, 127));
}

TEST_CASE(loss_scaler_state_round_trips_exactly) {
  LossScalerOptions options;
  options.growth_interval = 5;
  DynamicLossScaler scaler(options);
  scaler.update(true);
  scaler.update(true);
  scaler.update(false);
  scaler.update(false);
  const auto state = scaler.to_tensors("scaler.");
  CHECK(state.size() == 4);
  CHECK(state.count("scaler.scale") && state.at("scaler.scale").scalar_type() == torch::kFloat64);

  DynamicLossScaler restored(options);
  restored.from_tensors(state, "scaler.");
  CHECK(restored.scale() == scaler.scale() && restored.scale() == 16384.0);
  CHECK(restored.growth_tracker() == 2);
  CHECK(restored.skipped_steps() == 2);
  for (int i = 0; i < 3; ++i) restored.update(false); // growth continues where it was
  CHECK(restored.scale() == 32768.0);

  auto missing = state;
  missing.erase("scaler.growth_tracker");
  CHECK_THROWS_WITH(restored.from_tensors(missing, "scaler."), "loss scaler state lacks scaler.growth_tracker");
  DynamicLossScaler off = DynamicLossScaler::disabled();
  CHECK_THROWS_WITH(off.from_tensors(state, "scaler."), "saved by a enabled scaler");
  CHECK_THROWS_WITH(DynamicLossScaler(LossScalerOptions{0.0}), "init_scale must be positive");
}

TEST_CASE(disabled_scaler_never_skips) {
  DynamicLossScaler scaler = DynamicLossScaler::disabled();
  CHECK(!scaler.enabled());
  CHECK(scaler.scale() == 1.0);
  std::vector<torch::Tensor> parameters = {with_grad(torch::tensor({2.0f, std::numeric_limits<float>::infinity()}))};
  CHECK(!scaler.found_non_finite(parameters));
  CHECK(scaler.inverse_scale() == 1.0);
  scaler.update(true);
  CHECK(scaler.scale() == 1.0 && scaler.skipped_steps() == 0);
  DynamicLossScaler restored = DynamicLossScaler::disabled();
  restored.from_tensors(scaler.to_tensors(""), "");
  CHECK(restored.scale() == 1.0);
}

// ----------------------------------------------------------------------------
// Metadata

TEST_CASE(python_float_matches_repr) {
  const std::vector<std::pair<double, std::string>> cases = {
      {1e-4, "0.0001"}, {5e-5, "5e-05"},     {16.0, "16.0"},         {0.5, "0.5"},
      {65536.0, "65536.0"}, {1e16, "1e+16"}, {1e15, "1000000000000000.0"}, {1.5e-7, "1.5e-07"},
      {123.456, "123.456"}, {1714567890.75, "1714567890.75"}, {0.1, "0.1"}, {1.0 / 3.0, "0.3333333333333333"},
      {-2.5, "-2.5"}, {1e-8, "1e-08"}, {0.999, "0.999"}, {std::ldexp(1.0, 70), "1.1805916207174113e+21"},
      {0.0, "0.0"},
  };
  for (const auto& [value, expected] : cases) {
    const std::string got = python_float(value);
    if (got != expected) std::cerr << "    python_float: got " << got << ", expected " << expected << "\n";
    CHECK(got == expected);
  }
  CHECK(iso8601_utc(1714567890.75) == "2024-05-01T12:51:30+00:00");
}

TEST_CASE(sha256_matches_fips_vectors) {
  const auto digest = [](const std::string& text) {
    Sha256 hash;
    hash.update(text);
    return hash.hex_digest();
  };
  CHECK(digest("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(digest("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(digest("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  Sha256 million; // in uneven pieces, across block boundaries
  const std::string piece(997, 'a');
  size_t fed = 0;
  while (fed + piece.size() <= 1000000) {
    million.update(piece);
    fed += piece.size();
  }
  million.update(std::string(1000000 - fed, 'a'));
  CHECK(million.hex_digest() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE(dataset_hash_covers_names_pixels_captions_and_order) {
  // Python: sha256(pack('<Q', 0)) and the framing of lora_metadata.h for one image.
  CHECK(dataset_hash({}) == "af5570f5a1810b7af78caf4bc70a660f0df51e42baf91d4de5b2328de0e83dfc");
  TrainImage cat{"cat.png", 2, 1, {1, 2, 3, 4, 5, 6}, "a photo of sks cat"};
  const std::string base = dataset_hash({cat});
  CHECK(base == "d6803eff317691a6306884c75d1222c410142505d4eca671666296f070574260");

  TrainImage changed = cat;
  changed.caption = "a photo of sks dog";
  CHECK(dataset_hash({changed}) != base);
  changed = cat;
  changed.rgb[5] = 7;
  CHECK(dataset_hash({changed}) != base);
  changed = cat;
  changed.name = "cat2.png";
  CHECK(dataset_hash({changed}) != base);
  TrainImage dog{"dog.png", 1, 1, {9, 9, 9}, "dog"};
  CHECK(dataset_hash({cat, dog}) != dataset_hash({dog, cat}));
  // Framing: moving bytes between caption and name changes the hash.
  TrainImage a{"ab", 1, 1, {0, 0, 0}, "c"}, b{"a", 1, 1, {0, 0, 0}, "bc"};
  CHECK(dataset_hash({a}) != dataset_hash({b}));
}

TEST_CASE(lora_metadata_has_kohya_and_modelspec_keys) {
  TrainOptions options;
  options.model.model_path = "/models/sd_xl_base_1.0.safetensors";
  options.model.runtime.dtype = "bfloat16";
  options.images.resize(3);
  options.repeats = 10;
  options.output_name = "sks_cat";
  options.trigger_phrase = "sks cat";
  options.lr_scheduler = "cosine";
  options.lr_warmup_steps = 50;
  options.max_steps = 500;
  options.gradient_accumulation = 2;
  options.batch_size = 2;
  options.seed = 42;
  options.min_snr_gamma = 5;
  options.metadata = {{"ss_training_comment", "made in a test"}, {"modelspec.title", "Sks Cat"}};
  const auto metadata = lora_metadata(options, "abc123", 120, TrainingTimes{1714567000.5, 1714567890.75});

  const std::map<std::string, std::string> expected = {
      {"ss_network_module", "networks.lora"},
      {"ss_network_dim", "16"},
      {"ss_network_alpha", "16.0"},
      {"ss_network_dropout", "None"},
      {"ss_base_model_version", "sdxl_base_v1-0"},
      {"ss_sd_model_name", "sd_xl_base_1.0.safetensors"},
      {"ss_output_name", "sks_cat"},
      {"ss_resolution", "(1024, 1024)"},
      {"ss_learning_rate", "0.0001"},
      {"ss_unet_lr", "0.0001"},
      {"ss_text_encoder_lr", "None"}, // text encoders not trained
      {"ss_max_train_steps", "500"},
      {"ss_steps", "120"},
      {"ss_lr_scheduler", "cosine"},
      {"ss_lr_warmup_steps", "50"},
      {"ss_optimizer", "bitsandbytes.optim.adamw.AdamW8bit(weight_decay=0.01,betas=(0.9, 0.999),eps=1e-08)"},
      {"ss_mixed_precision", "bf16"},
      {"ss_seed", "42"},
      {"ss_min_snr_gamma", "5.0"},
      {"ss_noise_offset", "None"},
      {"ss_caption_dropout_rate", "0.0"},
      {"ss_num_train_images", "30"},
      {"ss_batch_size_per_device", "2"},
      {"ss_total_batch_size", "4"},
      {"ss_gradient_accumulation_steps", "2"},
      {"ss_gradient_checkpointing", "False"},
      {"ss_training_started_at", "1714567000.5"},
      {"ss_training_finished_at", "1714567890.75"},
      {"ss_training_comment", "made in a test"},
      {"modelspec.sai_model_spec", "1.0.0"},
      {"modelspec.architecture", "stable-diffusion-xl-v1-base/lora"},
      {"modelspec.implementation", "https://github.com/Stability-AI/generative-models"},
      {"modelspec.title", "Sks Cat"}, // the caller's entry wins over output_name
      {"modelspec.resolution", "1024x1024"},
      {"modelspec.date", "2024-05-01T12:51:30+00:00"},
      {"modelspec.trigger_phrase", "sks cat"},
      {"modelspec.prediction_type", "epsilon"},
      {kDatasetHashKey, "abc123"},
  };
  for (const auto& [key, value] : expected) {
    const auto found = metadata.find(key);
    if (found == metadata.end()) {
      std::cerr << "    missing " << key << "\n";
      CHECK(found != metadata.end());
    } else if (found->second != value) {
      std::cerr << "    " << key << ": got \"" << found->second << "\", expected \"" << value << "\"\n";
      CHECK(found->second == value);
    }
  }

  options.train_text_encoder = true;
  options.trigger_phrase.clear();
  options.model.runtime.dtype = "float16";
  options.optimizer = "adamw";
  options.dropout = 0.1;
  const auto second = lora_metadata(options, "", 500, TrainingTimes{});
  CHECK(second.at("ss_text_encoder_lr") == "5e-05");
  CHECK(second.at("ss_mixed_precision") == "fp16");
  CHECK(second.at("ss_network_dropout") == "0.1");
  CHECK(second.at("ss_optimizer").rfind("torch.optim.adamw.AdamW(", 0) == 0);
  CHECK(!second.count("modelspec.trigger_phrase"));
  CHECK(!second.count(kDatasetHashKey));
}

SDXL_TEST_MAIN()

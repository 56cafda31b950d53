// Sampling and training against the golden fixture: Euler tables, SDXL prompt
// encoding, a 4-step text-to-image run, the DDPM loss with and without LoRA,
// generate() behaviour and the whole verify() for both model layouts.
#include "check.h"        // TEST_CASE, CHECK, CHECK_CLOSE, CHECK_THROWS_WITH
#include "test_support.h" // tiny_dir, golden_dir, max_abs_diff, scratch_path

#include <fstream>    // std::ifstream golden.json
#include <string>

#include <nlohmann/json.hpp> // golden.json settings

#include "engine/model.h"           // Model, load_model_from
#include "io/safetensors.h"         // io::SafetensorsFile
#include "lora/apply.h"             // lora::apply_lora, clear_loras, lora_targets
#include "lora/lora_file.h"         // lora::load_lora_file
#include "sample/euler.h"           // sample::EulerDiscreteScheduler
#include "sample/pipeline.h"        // sample::text_to_image
#include "sample/conditioning.h"   // sample::TextConditioner, add_time_ids
#include "sdxl/engine.h"            // verify, generate, tokenize
#include "train/ddpm_loss.h"        // train::ddpm_loss

using namespace sdxl;
using sdxl::test::golden_dir;
using sdxl::test::max_abs_diff;
using sdxl::test::scratch_path;
using sdxl::test::tiny_dir;

namespace {

constexpr double kTableTolerance = 1e-5; // text encoders and scheduler tables
constexpr double kModelTolerance = 1e-4; // UNet, VAE, pipeline, training

std::string single_file() { return test::fixtures_dir() + "/tiny-sdxl-single-file/tiny_sdxl_sgm.safetensors"; }

const io::SafetensorsFile& golden() {
  static const io::SafetensorsFile file = io::SafetensorsFile::open(golden_dir() + "/golden.safetensors");
  return file;
}

const nlohmann::json& golden_settings() {
  static const nlohmann::json settings = [] {
    std::ifstream file(golden_dir() + "/golden.json");
    return nlohmann::json::parse(file);
  }();
  return settings;
}

// One float32 CPU model for the whole executable (tiny: loads in well under a second).
Model& tiny_model() {
  static const std::shared_ptr<Model> model = [] {
    LoadOptions options;
    options.model_path = tiny_dir();
    return load_model_from(options, CancelFlag{});
  }();
  return *model;
}

#define CHECK_TENSOR(computed, golden_name, tol)                                         \
  do {                                                                                   \
    const double diff_ = max_abs_diff((computed), golden().tensor(golden_name));         \
    std::cerr << "    " << (golden_name) << " max|diff| " << diff_ << "\n";              \
    CHECK(diff_ <= (tol));                                                               \
  } while (0)

sample::SchedulerConfig fixture_scheduler() {
  return sample::SchedulerConfig::from_file(tiny_dir() + "/scheduler/scheduler_config.json");
}

} // namespace

// ---------------------------------------------------------------------------
// Scheduler tables

TEST_CASE(euler_tables_match_diffusers) {
  const sample::EulerDiscreteScheduler thirty(fixture_scheduler(), 30);
  CHECK_TENSOR(thirty.timesteps(), "sched.euler30.timesteps", 0.0);
  CHECK_TENSOR(thirty.sigmas(), "sched.euler30.sigmas", kTableTolerance);
  const sample::EulerDiscreteScheduler four(fixture_scheduler(), 4);
  CHECK_TENSOR(four.timesteps(), "pipe.sched.timesteps", 0.0);
  CHECK_TENSOR(four.sigmas(), "pipe.sched.sigmas", kTableTolerance);
  CHECK_TENSOR(four.init_noise_sigma().reshape({1}), "pipe.sched.init_noise_sigma", kTableTolerance);
  CHECK_TENSOR(sample::train_alphas_cumprod(fixture_scheduler()), "train.ddpm.alphas_cumprod", kTableTolerance);
}

TEST_CASE(scheduler_config_rejects_what_it_does_not_implement) {
  nlohmann::json config = {{"use_karras_sigmas", true}};
  CHECK_THROWS_WITH(sample::SchedulerConfig::from_json(config), "use_karras_sigmas");
  config = {{"timestep_spacing", "random"}};
  CHECK_THROWS_WITH(sample::SchedulerConfig::from_json(config), "timestep_spacing");
  config = {{"prediction_type", "sample"}};
  CHECK_THROWS_WITH(sample::SchedulerConfig::from_json(config), "prediction_type");
  CHECK_THROWS_WITH(sample::EulerDiscreteScheduler(fixture_scheduler(), 0), "steps");
}

TEST_CASE(trailing_spacing_ends_at_the_last_train_step) {
  sample::SchedulerConfig config = fixture_scheduler();
  config.timestep_spacing = "trailing";
  const sample::EulerDiscreteScheduler scheduler(config, 4);
  // arange(1000, 0, -250).round() - 1
  CHECK(scheduler.timesteps().equal(torch::tensor({999.0f, 749.0f, 499.0f, 249.0f})));
  CHECK(scheduler.init_noise_sigma().item<double>() == scheduler.sigmas().max().item<double>());
}

// ---------------------------------------------------------------------------
// Prompt encoding

TEST_CASE(prompt_encoding_matches_text_encoder_references) {
  torch::NoGradGuard no_grad;
  Model& model = tiny_model();
  const std::string prompt = golden_settings().at("pipeline").at("prompt").get<std::string>();
  const auto conditioner = text_conditioner(model);
  const std::vector<torch::Tensor> ids = conditioner->token_ids({prompt});
  CHECK(ids.size() == 2);
  const models::UNetConditioning encoding = conditioner->encode_ids(ids);
  CHECK_TENSOR(encoding.context, "te.out.sdxl_prompt_embeds", kTableTolerance);
  CHECK_TENSOR(encoding.text_embeds, "te2.out.text_embeds", kTableTolerance);
  CHECK(!encoding.time_ids.defined()); // size ids belong to the images, not the prompt
  CHECK_TENSOR(model.text_encoder->forward(ids[0]).last_hidden_state, "te1.out.last_hidden_state", kTableTolerance);
  CHECK_TENSOR(model.text_encoder_2->forward(ids[1]).last_hidden_state, "te2.out.last_hidden_state", kTableTolerance);

  const TokenIds host_ids = tokenize(model, prompt);
  CHECK(torch::tensor(host_ids.tokenizer).reshape({1, 77}).equal(golden().tensor("te1.in.input_ids")));
  CHECK(torch::tensor(host_ids.tokenizer_2).reshape({1, 77}).equal(golden().tensor("te2.in.input_ids")));

  const PromptEmbeddings host = encode_prompt(model, prompt);
  CHECK(host.prompt_embeds.shape == (std::vector<int64_t>{1, 77, 64}));
  CHECK(host.pooled_prompt_embeds.shape == (std::vector<int64_t>{1, 32}));
  // SDXL conditions on the penultimate layers already: no clip skip.
  CHECK_THROWS_WITH(encode_prompt(model, prompt, 2), "clip_skip applies to SD 1.x and 2.x models");
}

TEST_CASE(empty_negative_prompt_is_zeros_only_when_the_model_says_so) {
  torch::NoGradGuard no_grad;
  Model& model = tiny_model();
  const auto conditioner = text_conditioner(model);
  const models::UNetConditioning positive = conditioner->encode({"a horse"});
  const models::UNetConditioning zeros = conditioner->unconditional({""}, positive);
  CHECK_TENSOR(zeros.context, "pipe.negative_prompt_embeds", 0.0);
  CHECK(zeros.text_embeds.abs().max().item<double>() == 0);
  sample::TextComponents text = text_components(model);
  text.force_zeros_for_empty_prompt = false;
  const models::UNetConditioning encoded_empty = sample::make_text_conditioner(text)->unconditional({""}, positive);
  CHECK(encoded_empty.context.abs().max().item<double>() > 0);
  const models::UNetConditioning blurry = conditioner->unconditional({"blurry"}, positive);
  CHECK(blurry.context.equal(conditioner->encode({"blurry"}).context));
}

TEST_CASE(add_time_ids_are_the_pipelines) {
  const auto expected = golden_settings().at("pipeline").at("add_time_ids").get<std::vector<double>>();
  const torch::Tensor ids =
      sample::add_time_ids(sample::SizeConditioning::for_output(128, 128), 2, torch::kFloat32, torch::kCPU);
  CHECK(ids.sizes() == (std::vector<int64_t>{2, 6}));
  CHECK(ids[1].equal(torch::tensor(expected, torch::kFloat64).to(torch::kFloat32)));
}

// ---------------------------------------------------------------------------
// Pipeline

TEST_CASE(four_step_pipeline_matches_diffusers) {
  torch::NoGradGuard no_grad;
  Model& model = tiny_model();
  const nlohmann::json& settings = golden_settings().at("pipeline");
  const auto conditioner = text_conditioner(model);
  sample::Text2ImageInputs inputs;
  inputs.positive = conditioner->encode({settings.at("prompt").get<std::string>()});
  inputs.negative = conditioner->unconditional({""}, inputs.positive);
  inputs.positive.time_ids = conditioner->size_ids(sample::SizeConditioning::for_output(128, 128), 1, torch::kFloat32,
                                                   torch::kCPU);
  inputs.latents = golden().tensor("pipe.in.latents");
  inputs.steps = settings.at("num_inference_steps").get<int64_t>();
  inputs.guidance_scale = settings.at("guidance_scale").get<double>();
  int64_t callbacks = 0;
  const auto result = sample::text_to_image(model.unet, model.vae, model.scheduler, inputs,
                                            [&](int64_t, int64_t) { ++callbacks; });
  CHECK(callbacks == inputs.steps + 1);
  CHECK_TENSOR(result.latents, "pipe.out.latents", kModelTolerance);
  CHECK_TENSOR(result.image, "pipe.out.image", kModelTolerance);
}

TEST_CASE(generate_is_seeded_sized_and_cancellable) {
  Model& model = tiny_model();
  GenerateOptions options;
  options.prompt = "a photo of an astronaut riding a horse";
  options.width = 64;
  options.height = 48;
  options.steps = 2;
  options.seed = 7;
  int64_t denoising_reports = 0;
  const ProgressFn progress = [&](const Progress& p) { denoising_reports += p.phase == "denoising"; };
  const auto one = [&](const GenerateOptions& o) { return generate(model, o, nullptr, CancelFlag{}).front(); };
  const std::vector<Image> firsts = generate(model, options, progress, CancelFlag{});
  CHECK(firsts.size() == 1);
  const Image& first = firsts.front();
  CHECK(first.width == 64 && first.height == 48);
  CHECK(first.rgb.size() == static_cast<size_t>(64 * 48 * 3));
  CHECK(denoising_reports == 2);
  CHECK(first.rgb == one(options).rgb);
  options.seed = 8;
  const Image eight = one(options);
  CHECK(eight.rgb != first.rgb);

  // Several images: seed, seed + 1, ... denoised as one batch.
  options.seed = 7;
  options.num_images = 2;
  const std::vector<Image> pair = generate(model, options, nullptr, CancelFlag{});
  CHECK(pair.size() == 2);
  CHECK(pair[0].rgb.size() == first.rgb.size() && pair[1].rgb.size() == first.rgb.size());
  CHECK(pair[0].rgb != pair[1].rgb);
  options.num_images = 1;

  options.loras.push_back({golden_dir() + "/lora/tiny_lora_kohya.safetensors", 1.0, ""});
  CHECK(one(options).rgb != first.rgb);
  CHECK(lora_cache_info(model).misses == 1);
  CHECK(one(options).rgb != first.rgb);
  CHECK(lora_cache_info(model).hits == 1);
  // The adapter is an overlay of that call: the shared modules never carry it.
  for (const auto& item : model.unet->named_modules("", false))
    if (const auto* linear = item.value()->as<models::LinearImpl>()) CHECK(linear->loras.empty());
  options.loras.clear();
  CHECK(one(options).rgb == first.rgb);
  options.sampler = "ddim";
  CHECK_THROWS_WITH(one(options), "sampler");
  options.sampler = "euler";

  CancelFlag cancel;
  cancel.request();
  CHECK_THROWS_WITH(generate(model, options, nullptr, cancel), "cancelled");
  options.width = 60;
  CHECK_THROWS_WITH(generate(model, options, nullptr, CancelFlag{}), "multiple of 8 for width");
}

// ---------------------------------------------------------------------------
// Training loss

TEST_CASE(ddpm_loss_and_lora_gradients_match_diffusers) {
  Model& model = tiny_model();
  train::DdpmLossInputs inputs;
  inputs.latents = golden().tensor("train.in.latents");
  inputs.noise = golden().tensor("train.in.noise");
  inputs.timesteps = golden().tensor("train.in.timestep");
  inputs.conditioning.context = golden().tensor("train.in.encoder_hidden_states");
  inputs.conditioning.text_embeds = golden().tensor("train.in.text_embeds");
  inputs.conditioning.time_ids = golden().tensor("train.in.time_ids");
  const torch::Tensor alphas_cumprod = sample::train_alphas_cumprod(model.scheduler);

  const train::DdpmLossOutput base = train::ddpm_loss(model.unet, alphas_cumprod, inputs);
  CHECK_TENSOR(base.noisy_latents, "train.noisy_latents", kModelTolerance);
  CHECK_TENSOR(base.loss.reshape({1}), "train.base.loss", kModelTolerance);

  const auto targets = lora::lora_targets(model.unet.get(), nullptr, nullptr);
  lora::apply_lora(model.unet.get(), nullptr, nullptr,
                   lora::load_lora_file(golden_dir() + "/lora/tiny_lora_peft.safetensors", targets), 1.0);
  const train::LoraParameters parameters = train::enable_lora_training(*model.unet);
  CHECK(parameters.down.size() == 224 && parameters.up.size() == 224);
  const train::DdpmLossOutput adapted = train::ddpm_loss(model.unet, alphas_cumprod, inputs);
  adapted.loss.backward();
  CHECK_TENSOR(adapted.prediction, "train.lora.pred", kModelTolerance);
  CHECK_TENSOR(adapted.loss.detach().reshape({1}), "train.lora.loss", kModelTolerance);
  CHECK_TENSOR(torch::tensor({train::global_grad_norm(parameters.down)}), "train.lora.grad_norm_A", kModelTolerance);
  CHECK_TENSOR(torch::tensor({train::global_grad_norm(parameters.up)}), "train.lora.grad_norm_B", kModelTolerance);
  // The base weights are frozen: no gradient reached them.
  for (const auto& parameter : model.unet->parameters()) CHECK(!parameter.grad().defined());
  lora::clear_loras(model.unet.get(), nullptr, nullptr);
  CHECK(train::lora_parameters(*model.unet).down.empty());
}

// ---------------------------------------------------------------------------
// verify() on both layouts

void check_verify(VerifyOptions options, const std::string& out_name) {
  // The computed tensors go to a scratch file, one per row.
  const std::string out_path = scratch_path(out_name);
  options.out_path = out_path;
  int64_t progress_reports = 0, last_total = 0;
  const ProgressFn progress = [&](const Progress& p) {
    if (p.phase != "verifying") return;
    ++progress_reports;
    last_total = p.total;
  };
  const VerifyReport report = verify(options, progress, CancelFlag{});
  for (const auto& row : report.rows) {
    std::cerr << "    " << (row.pass ? "ok   " : "FAIL ") << row.name << " " << row.max_abs_diff << " <= "
              << row.tolerance << "\n";
  }
  CHECK(report.pass);
  CHECK(report.rows.size() >= 40);
  CHECK(progress_reports == static_cast<int64_t>(report.rows.size()));
  CHECK(last_total == static_cast<int64_t>(report.rows.size()));
  const io::SafetensorsFile written = io::SafetensorsFile::open(out_path);
  CHECK(written.keys().size() == report.rows.size());
  CHECK(written.contains("lora.unet.out.sample_merged[tiny_lora_kohya]"));
  CHECK(written.tensor("pipe.out.image").sizes() == golden().tensor("pipe.out.image").sizes());
  std::filesystem::remove(out_path);
}

TEST_CASE(verify_passes_on_the_diffusers_folder) {
  VerifyOptions options;
  options.model_path = tiny_dir();
  options.golden_dir = golden_dir();
  check_verify(options, "nc2_verify_folder.safetensors");
}

TEST_CASE(verify_passes_on_the_single_file) {
  VerifyOptions options;
  options.model_path = single_file();
  options.config_dir = tiny_dir();
  options.golden_dir = golden_dir();
  check_verify(options, "nc2_verify_single_file.safetensors");
}

TEST_CASE(verify_stops_between_tensors_when_cancelled) {
  VerifyOptions options;
  options.model_path = tiny_dir();
  options.golden_dir = golden_dir();
  CancelFlag cancel;
  int64_t computed = 0;
  const ProgressFn progress = [&](const Progress& p) {
    if (p.phase != "verifying") return;
    ++computed;
    cancel.request();
  };
  CHECK_THROWS_WITH(verify(options, progress, cancel), "cancelled");
  CHECK(computed == 1);
}

TEST_CASE(single_file_without_tokenizers_says_what_is_missing) {
  LoadOptions options;
  options.model_path = single_file();
  CHECK_THROWS_WITH(load_model_from(options, CancelFlag{}), "tokenizer");
}

SDXL_TEST_MAIN()

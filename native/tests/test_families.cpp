// Stable Diffusion 1.x and 2.x (v-prediction) next to SDXL: the full-size SD 1.5
// architecture against its key tables, what a folder or file says it is (and the
// refusals), each family's text conditioning, zero terminal SNR schedules, SD 1.x
// LoRA files in kohya's and peft's layouts (1x1-conv adapters included) and the
// trainer on both families. The numbers of the tiny fixtures are npm run verify's.
#include "check.h"
#include "test_support.h" // scratch_path, max_abs_diff

#include <cmath>      // std::isfinite
#include <filesystem> // scratch copies of fixture folders
#include <fstream>    // byte comparison, edited configs
#include <iterator>   // std::istreambuf_iterator
#include <set>

#include <ATen/CPUGeneratorImpl.h> // at::detail::createCPUGenerator

#include "engine/model.h"         // load_model_from, read_folder_configs, text_conditioner
#include "io/safetensors.h"       // SafetensorsFile, load_safetensors
#include "lora/apply.h"           // apply_lora, lora_targets
#include "lora/lora_file.h"       // load_lora_file
#include "models/state_dict.h"    // normalize_state_dict_keys, count_parameters
#include "sample/euler.h"         // EulerDiscreteScheduler
#include "sample/noise_schedule.h" // SchedulerConfig, train/sampler alphas_cumprod
#include "sdxl/engine.h"          // inspect_model, train_lora
#include "train/ddpm_loss.h"      // min_snr_weights, training_target
#include "train/lora_network.h"   // LoraNetwork, save_trained_lora

using namespace sdxl;
using namespace sdxl::test;
using models::ModelFamily;
namespace fs = std::filesystem;

namespace {

std::string sd15_dir() { return fixtures_dir() + "/tiny-sd15"; }
std::string sd2v_dir() { return fixtures_dir() + "/tiny-sd2v"; }
std::string sd15_golden_dir() { return fixtures_dir() + "/tiny-sd15-golden"; }
std::string sd15_keys_dir() { return fixtures_dir() + "/sd15-base-keys"; }
std::string sd15_single_file() { return fixtures_dir() + "/tiny-sd15-single-file/tiny_sd15.safetensors"; }

const io::TensorMap& sd15_golden() {
  static const io::TensorMap tensors = io::load_safetensors(sd15_golden_dir() + "/golden.safetensors");
  return tensors;
}

Model& sd15_model() {
  static const std::shared_ptr<Model> model = [] {
    LoadOptions options;
    options.model_path = sd15_dir();
    return load_model_from(options, CancelFlag{});
  }();
  return *model;
}

LoadOptions load_options(const std::string& path, const std::string& config_dir = "") {
  LoadOptions options;
  options.model_path = path;
  options.config_dir = config_dir;
  return options;
}

// A writable copy of a fixture folder (the fixtures are read-only).
fs::path copy_of(const std::string& fixture, const std::string& name) {
  const fs::path dir = scratch_path(name);
  fs::remove_all(dir);
  fs::copy(fixture, dir, fs::copy_options::recursive);
  for (const auto& entry : fs::recursive_directory_iterator(dir))
    fs::permissions(entry.path(), fs::perms::owner_write, fs::perm_options::add);
  fs::permissions(dir, fs::perms::owner_write, fs::perm_options::add);
  return dir;
}

void write_json(const fs::path& path, const nlohmann::json& json) {
  fs::remove(path);
  std::ofstream(path) << json.dump(2);
}

std::set<std::string> keys_of(const std::string& path) {
  const std::vector<std::string> keys = io::SafetensorsFile::open(path).keys();
  return {keys.begin(), keys.end()};
}

const torch::TensorOptions kMeta = torch::TensorOptions().dtype(torch::kFloat).device(torch::kMeta);

// The model's parameters against a `<component>_keys.json` table: every name and shape.
void check_against_key_table(const torch::nn::Module& module, const std::string& component) {
  const nlohmann::json keys = models::read_json_file(sd15_keys_dir() + "/" + component + "_keys.json").at("keys");
  models::StateDict table;
  for (const auto& [key, shape] : keys.items()) table[key] = torch::empty(shape.get<std::vector<int64_t>>(), kMeta);
  const models::StateDict normalized = models::normalize_state_dict_keys(module, table);
  const auto parameters = module.named_parameters(/*recurse=*/true);
  int mismatches = 0;
  for (const auto& item : parameters) {
    const auto found = normalized.find(item.key());
    if ((found == normalized.end() || found->second.sizes() != item.value().sizes()) && mismatches++ < 10)
      report_failure(__FILE__, __LINE__, component + ": " + item.key());
  }
  CHECK(mismatches == 0);
  CHECK(parameters.size() == normalized.size());
}

} // namespace

// ----------------------------------------------------------------------------
// The full-size SD 1.5 architecture

TEST_CASE(sd15_base_configs_build_exactly_the_published_keys) {
  const nlohmann::json summary = models::read_json_file(sd15_keys_dir() + "/summary.json");
  models::UNet2DConditionModel unet(models::UNetConfig::sd15_base(), kMeta);
  check_against_key_table(*unet, "unet");
  CHECK(models::count_parameters(*unet) == summary.at("unet").at("num_params").get<int64_t>());
  models::AutoencoderKL vae(models::VaeConfig::sd15_base(), kMeta);
  check_against_key_table(*vae, "vae");
  models::ClipTextModel text_encoder(models::ClipTextConfig::sd15_base_text_encoder(), kMeta);
  check_against_key_table(*text_encoder, "text_encoder");
  // The published files' configs read to the same (diffusers fills what they leave out).
  const models::UNetConfig file = models::UNetConfig::from_file(sd15_keys_dir() + "/unet_config.json");
  const models::UNetConfig built_in = models::UNetConfig::sd15_base();
  CHECK(file.block_out_channels == built_in.block_out_channels && file.num_attention_heads == built_in.num_attention_heads);
  CHECK(!file.use_linear_projection && !file.has_added_embedding() && file.cross_attention_dim == 768);
  CHECK(models::VaeConfig::from_file(sd15_keys_dir() + "/vae_config.json").scaling_factor == 0.18215);
}

// ----------------------------------------------------------------------------
// What a model is

TEST_CASE(folders_and_files_say_their_family) {
  const ModelInfo sd15 = inspect_model(load_options(sd15_dir()));
  CHECK(sd15.family == "sd1" && sd15.prediction_type == "epsilon" && sd15.source_layout == "diffusers");
  CHECK(sd15.default_resolution == 128 && sd15.text_encoder_layers == 3 && sd15.text_encoder_2_parameters == 0);
  CHECK(sd15.unet_parameters == 2446788 && sd15.vae_parameters == 437847);
  const ModelInfo sd2v = inspect_model(load_options(sd2v_dir()));
  CHECK(sd2v.family == "sd2" && sd2v.prediction_type == "v_prediction");
  const ModelInfo sdxl = inspect_model(load_options(tiny_dir()));
  CHECK(sdxl.family == "sdxl" && sdxl.text_encoder_2_parameters > 0);
  const ModelInfo file = inspect_model(load_options(sd15_single_file(), sd15_dir()));
  CHECK(file.family == "sd1" && file.source_layout == "ldm-single-file" && file.unet_parameters == sd15.unet_parameters);
  CHECK(file.text_encoder_parameters == sd15.text_encoder_parameters);

  // PNDM's and DDIM's configs read as EulerDiscreteScheduler.from_config reads them: linspace.
  CHECK(read_folder_configs(sd15_dir()).scheduler.timestep_spacing == "linspace");
  CHECK(read_folder_configs(sd2v_dir()).scheduler.steps_offset == 1);
  CHECK(!read_folder_configs(sd15_dir()).force_zeros_for_empty_prompt);
  CHECK(read_folder_configs(tiny_dir()).force_zeros_for_empty_prompt);
}

TEST_CASE(models_of_no_known_shape_are_refused_naming_what_was_found) {
  const fs::path no_vae = copy_of(sd15_dir(), "sd15-no-vae");
  fs::remove_all(no_vae / "vae");
  CHECK_THROWS_WITH(inspect_model(load_options(no_vae.string())), "is missing vae/");
  CHECK_THROWS_WITH(load_model_from(load_options(no_vae.string()), CancelFlag{}), "is missing vae/");

  const fs::path sample = copy_of(sd15_dir(), "sd15-sample-prediction");
  nlohmann::json scheduler = models::read_json_file((sample / "scheduler" / "scheduler_config.json").string());
  scheduler["prediction_type"] = "sample";
  write_json(sample / "scheduler" / "scheduler_config.json", scheduler);
  CHECK_THROWS_WITH(inspect_model(load_options(sample.string())), "prediction_type \"sample\"");

  const fs::path inpaint = copy_of(sd15_dir(), "sd15-inpaint");
  nlohmann::json index = models::read_json_file((inpaint / "model_index.json").string());
  index["_class_name"] = "StableDiffusionInpaintPipeline";
  write_json(inpaint / "model_index.json", index);
  CHECK_THROWS_WITH(inspect_model(load_options(inpaint.string())), "names the pipeline \"StableDiffusionInpaintPipeline\"");

  const fs::path wide = copy_of(sd15_dir(), "sd15-wrong-context");
  nlohmann::json unet = models::read_json_file((wide / "unet" / "config.json").string());
  unet["cross_attention_dim"] = 768;
  write_json(wide / "unet" / "config.json", unet);
  CHECK_THROWS_WITH(inspect_model(load_options(wide.string())), "cross_attention_dim is 768 but the text encoder gives 32");

  // An SD 1.x file with an SDXL config folder, and a LoRA offered as a model.
  CHECK_THROWS_WITH(inspect_model(load_options(sd15_single_file(), tiny_dir())), "is an SD 1.x (LDM) checkpoint");
  CHECK_THROWS_WITH(inspect_model(load_options(sd15_golden_dir() + "/lora/tiny_lora_kohya.safetensors")),
                    "found lora_te_*, lora_unet_*");
}

// ----------------------------------------------------------------------------
// Text conditioning

TEST_CASE(sd1_conditions_on_the_last_hidden_state_or_clip_skips_earlier) {
  torch::NoGradGuard no_grad;
  Model& model = sd15_model();
  const std::vector<torch::Tensor> ids = text_conditioner(model)->token_ids({"a photo of an astronaut riding a horse"});
  CHECK(ids.size() == 1 && ids[0].equal(sd15_golden().at("te1.in.input_ids")));
  const models::UNetConditioning last = text_conditioner(model)->encode_ids(ids);
  CHECK(!last.text_embeds.defined());
  CHECK_CLOSE(max_abs_diff(last.context, sd15_golden().at("te1.out.last_hidden_state")), 0.0, 1e-5);
  CHECK(text_conditioner(model, 1)->encode_ids(ids).context.equal(last.context)); // clip skip 1 = the last layer
  CHECK_CLOSE(max_abs_diff(text_conditioner(model, 2)->encode_ids(ids).context,
                           sd15_golden().at("te1.out.clip_skip1_prompt_embeds")),
              0.0, 1e-5);
  CHECK_THROWS_WITH(text_conditioner(model, 4), "Expected clip_skip between 1 and 3");
  CHECK_THROWS_WITH(text_conditioner(model, -1), "Expected clip_skip between 1 and 3");
  // The empty negative prompt is encoded, not zeroed, and no size ids exist.
  const auto conditioner = text_conditioner(model);
  CHECK_CLOSE(max_abs_diff(conditioner->unconditional({""}, last).context, sd15_golden().at("pipe.negative_prompt_embeds")),
              0.0, 1e-5);
  CHECK(!conditioner->size_ids(sample::SizeConditioning::for_output(64, 64), 1, torch::kFloat32, torch::kCPU).defined());
  const TokenIds host = tokenize(model, "a dog");
  CHECK(host.tokenizer.size() == 77 && host.tokenizer_2.empty());
  CHECK(encode_prompt(model, "a dog").pooled_prompt_embeds.shape == std::vector<int64_t>{0});
}

TEST_CASE(generate_takes_clip_skip_and_refuses_sdxl_size_ids_on_sd1) {
  Model& model = sd15_model();
  GenerateOptions options;
  options.prompt = "a photo of an astronaut";
  options.width = options.height = 64;
  options.steps = 2;
  const Image plain = generate(model, options, nullptr, CancelFlag{}).front();
  options.clip_skip = 1;
  CHECK(generate(model, options, nullptr, CancelFlag{}).front().rgb == plain.rgb);
  options.clip_skip = 2;
  CHECK(generate(model, options, nullptr, CancelFlag{}).front().rgb != plain.rgb);
  options.clip_skip = 0;
  options.original_width = 1024;
  CHECK_THROWS_WITH(generate(model, options, nullptr, CancelFlag{}), "size conditioning");
}

// ----------------------------------------------------------------------------
// Schedules

TEST_CASE(zero_terminal_snr_ends_in_pure_noise_with_finite_sigmas) {
  sample::SchedulerConfig config = sample::SchedulerConfig::sd15_base();
  config.rescale_betas_zero_snr = true;
  config.timestep_spacing = "trailing";
  const torch::Tensor train = sample::train_alphas_cumprod(config);
  CHECK_CLOSE(train[-1].item<double>(), 0.0, 1e-12);
  CHECK_CLOSE(train[0].item<double>(), sample::train_alphas_cumprod(sample::SchedulerConfig::sd15_base())[0].item<double>(), 1e-7);
  CHECK(sample::sampler_alphas_cumprod(config)[-1].item<double>() == 1.0 / 16777216.0);
  const sample::EulerDiscreteScheduler euler(config, 10);
  CHECK(euler.timesteps()[0].item<double>() == 999);
  CHECK(torch::isfinite(euler.sigmas()).all().item<bool>());
  CHECK_CLOSE(euler.sigmas()[0].item<double>(), 4096.0, 1.0); // sqrt((1 - 2^-24) / 2^-24)
  // The scheduler file's flag is read, not refused.
  nlohmann::json json = {{"rescale_betas_zero_snr", true}, {"prediction_type", "v_prediction"}};
  CHECK(sample::SchedulerConfig::from_json(json).rescale_betas_zero_snr);
}

TEST_CASE(min_snr_weights_differ_for_v_prediction) {
  const torch::Tensor alphas_cumprod = sample::train_alphas_cumprod(sample::SchedulerConfig::sd15_base());
  const torch::Tensor t = torch::tensor({10, 500, 990}, torch::kInt64);
  const torch::Tensor alpha = alphas_cumprod.index_select(0, t).to(torch::kDouble);
  const torch::Tensor snr = alpha / (1 - alpha);
  const torch::Tensor eps = train::min_snr_weights(alphas_cumprod, t, 5.0, "epsilon").to(torch::kDouble);
  const torch::Tensor v = train::min_snr_weights(alphas_cumprod, t, 5.0, "v_prediction").to(torch::kDouble);
  CHECK_CLOSE(max_abs_diff(eps, torch::clamp_max(snr, 5.0) / snr), 0.0, 1e-6);
  CHECK_CLOSE(max_abs_diff(v, torch::clamp_max(snr, 5.0) / (snr + 1)), 0.0, 1e-6);
  // v = sqrt(a) eps - sqrt(1 - a) x0
  const torch::Tensor x0 = torch::ones({1, 4, 2, 2}), noise = torch::full({1, 4, 2, 2}, 2.0);
  const torch::Tensor target = train::training_target(alphas_cumprod, x0, noise, torch::tensor({500}), "v_prediction");
  const double a = alphas_cumprod[500].item<double>();
  CHECK_CLOSE(target[0][0][0][0].item<double>(), std::sqrt(a) * 2 - std::sqrt(1 - a), 1e-6);
  CHECK(train::training_target(alphas_cumprod, x0, noise, torch::tensor({500}), "epsilon").equal(noise));
}

// ----------------------------------------------------------------------------
// SD 1.x LoRA files

TEST_CASE(sd1_lora_network_saves_kohya_names_as_sd_scripts_writes_them) {
  Model& model = sd15_model();
  at::Generator generator = at::detail::createCPUGenerator(11);
  train::LoraNetwork network;
  train::LoraNetworkOptions options;
  options.rank = 4;
  options.alpha = 2;
  options.text_encoders = true;
  network.attach(*model.unet, model.text_encoder.get(), nullptr, options, generator);
  const io::UNetLayout layout = io::UNetLayout::from_config(model.unet->config());
  const std::string kohya = scratch_path("sd1_kohya.safetensors"), peft = scratch_path("sd1_peft.safetensors");
  train::save_trained_lora(kohya, network, lora::LoraLayout::KohyaDiffusers, layout, torch::kFloat32, {}, true);
  train::save_trained_lora(peft, network, lora::LoraLayout::Peft, layout, torch::kFloat32, {});
  network.detach();
  // The same modules and names as the fixture's files, made by diffusers and sd-scripts' naming.
  CHECK(keys_of(kohya) == keys_of(sd15_golden_dir() + "/lora/tiny_lora_kohya.safetensors"));
  CHECK(keys_of(peft) == keys_of(sd15_golden_dir() + "/lora/tiny_lora_peft.safetensors"));
  const lora::LoraFile file = lora::load_lora_file(
      kohya, lora::lora_targets(model.unet.get(), model.text_encoder.get(), nullptr));
  CHECK(file.layout == lora::LoraLayout::KohyaDiffusers && file.modules.size() == 140);
}

TEST_CASE(sd1_pointwise_conv_adapters_are_stored_as_1x1_convolutions) {
  Model& model = sd15_model();
  at::Generator generator = at::detail::createCPUGenerator(12);
  train::LoraNetwork network;
  train::LoraNetworkOptions options;
  options.rank = 2;
  options.unet_targets = {"proj_in", "proj_out"};
  network.attach(*model.unet, nullptr, nullptr, options, generator);
  {
    torch::NoGradGuard no_grad;
    for (auto& tensor : network.unet_parameters()) tensor.normal_(0, 0.1);
  }
  const auto run = [&] {
    torch::NoGradGuard no_grad;
    return model.unet->forward(sd15_golden().at("unet.in.sample"), sd15_golden().at("unet.in.timestep"),
                               sd15_golden().at("unet.in.encoder_hidden_states"), {}, {});
  };
  const torch::Tensor adapted = run();
  const std::string path = scratch_path("sd1_conv_lora.safetensors");
  train::save_trained_lora(path, network, lora::LoraLayout::KohyaDiffusers,
                           io::UNetLayout::from_config(model.unet->config()), torch::kFloat32, {}, true);
  network.detach();
  const io::SafetensorsFile saved = io::SafetensorsFile::open(path);
  CHECK(saved.info("lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight").shape ==
        (std::vector<int64_t>{2, 32, 1, 1}));
  CHECK(saved.info("lora_unet_up_blocks_3_attentions_2_proj_out.lora_up.weight").shape ==
        (std::vector<int64_t>{32, 2, 1, 1}));
  const torch::Tensor base = run();
  CHECK(max_abs_diff(base, adapted) > 1e-4); // the adapters did something
  lora::apply_lora(model.unet.get(), nullptr, nullptr,
                   lora::load_lora_file(path, lora::lora_targets(model.unet.get(), nullptr, nullptr)), 1.0);
  CHECK_CLOSE(max_abs_diff(run(), adapted), 0.0, 1e-6);
  lora::clear_loras(model.unet.get(), nullptr, nullptr);
}

TEST_CASE(loras_of_the_other_family_are_refused_naming_their_keys) {
  Model& model = sd15_model();
  const fs::path sdxl_lora = fs::path(golden_dir()) / "lora" / "tiny_lora_kohya.safetensors";
  const LoraCheck check = check_lora(model, sdxl_lora.string());
  CHECK(!check.problems.empty());
  CHECK_THROWS_WITH(lora::load_lora_file(sdxl_lora.string(), lora::lora_targets(model.unet.get(), model.text_encoder.get(), nullptr)),
                    "lora_unet_input_blocks_");
}

// ----------------------------------------------------------------------------
// The trainer on SD 1.x and on a v-prediction model

namespace {

TrainOptions sd_options(const std::string& model, const std::string& output) {
  TrainOptions options;
  options.model.model_path = model;
  options.images = make_images(3, 64, 64);
  options.output_dir = scratch_path(output);
  fs::remove_all(options.output_dir);
  options.resolution = 64;
  options.min_bucket_side = 64;
  options.rank = 2;
  options.alpha = 2;
  options.unet_lr = 1e-3;
  options.max_steps = 12;
  options.seed = 5;
  options.train_text_encoder = true;
  options.clip_skip = 2;
  options.min_snr_gamma = 5;
  options.validation_prompts = {"a photo of sks toy"};
  options.validation_steps = 2;
  return options;
}

} // namespace

TEST_CASE(sd1_runs_train_their_text_encoder_with_clip_skip_and_resume_exactly) {
  const TrainResult full = train_lora(sd_options(sd15_dir(), "sd1-full"), nullptr, CancelFlag{});
  CHECK(full.status == "completed" && full.steps == 12);
  CHECK(full.sample_paths.size() == 2); // validation images before the first step and after the last
  const io::SafetensorsFile file = io::SafetensorsFile::open(full.lora_path);
  CHECK(file.contains("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight"));
  CHECK(file.contains("lora_te_text_model_encoder_layers_2_self_attn_out_proj.lora_up.weight"));
  const auto& metadata = file.metadata();
  CHECK(metadata.at("ss_base_model_version") == "sd_v1" && metadata.at("ss_v2") == "False");
  CHECK(metadata.at("ss_clip_skip") == "2" && metadata.at("modelspec.encoder_layer") == "2");
  CHECK(metadata.at("modelspec.architecture") == "stable-diffusion-v1/lora");
  CHECK(metadata.at("modelspec.prediction_type") == "epsilon");

  TrainOptions stopped = sd_options(sd15_dir(), "sd1-resumed");
  stopped.stop_after_step = 5;
  const TrainResult first = train_lora(stopped, nullptr, CancelFlag{});
  CHECK(first.status == "cancelled" && first.steps == 5);
  TrainOptions resumed = stopped;
  resumed.stop_after_step = 0;
  resumed.resume_from = first.checkpoint_path;
  const TrainResult second = train_lora(resumed, nullptr, CancelFlag{});
  CHECK(second.status == "completed" && read_bytes(second.lora_path) == read_bytes(full.lora_path));
}

TEST_CASE(v_prediction_runs_learn_the_velocity) {
  TrainOptions options = sd_options(sd2v_dir(), "sd2v");
  options.max_steps = 30;
  options.unet_lr = 5e-3; // enough to move the tiny model's validation loss clearly on any CPU
  options.validation_prompts.clear();
  options.validation_every = 30;
  const TrainResult result = train_lora(options, nullptr, CancelFlag{});
  CHECK(result.status == "completed");
  CHECK(result.metrics.count("validation_loss_first") && result.metrics.count("validation_loss_last"));
  std::printf("  validation loss %.6f -> %.6f\n", result.metrics.at("validation_loss_first"), result.metrics.at("validation_loss_last"));
  CHECK(result.metrics.at("validation_loss_last") < result.metrics.at("validation_loss_first"));
  const io::SafetensorsFile file = io::SafetensorsFile::open(result.lora_path);
  const auto& metadata = file.metadata();
  CHECK(metadata.at("ss_base_model_version") == "sd_v2_v" && metadata.at("ss_v2") == "True");
  CHECK(metadata.at("ss_v_parameterization") == "True" && metadata.at("modelspec.prediction_type") == "v");
  CHECK(metadata.at("modelspec.architecture") == "stable-diffusion-v2-768-v/lora");
}

TEST_CASE(sdxl_v_prediction_fine_tunes_sample_and_train_as_v) {
  // A folder whose scheduler says v_prediction with zero terminal SNR (as SDXL v-prediction fine-tunes ship).
  const fs::path folder = copy_of(tiny_dir(), "sdxl-vpred");
  nlohmann::json scheduler = models::read_json_file((folder / "scheduler" / "scheduler_config.json").string());
  scheduler["prediction_type"] = "v_prediction";
  scheduler["rescale_betas_zero_snr"] = true;
  scheduler["timestep_spacing"] = "trailing";
  write_json(folder / "scheduler" / "scheduler_config.json", scheduler);
  CHECK(inspect_model(load_options(folder.string())).prediction_type == "v_prediction");
  const std::shared_ptr<Model> model = load_model_from(load_options(folder.string()), CancelFlag{});
  GenerateOptions generate_options;
  generate_options.prompt = "a photo of an astronaut";
  generate_options.width = generate_options.height = 64;
  generate_options.steps = 3;
  CHECK(generate(*model, generate_options, nullptr, CancelFlag{}).front().rgb.size() == 64 * 64 * 3);

  TrainOptions options = sd_options(folder.string(), "sdxl-vpred-run");
  options.clip_skip = 0;
  options.validation_prompts.clear();
  options.max_steps = 4;
  const TrainResult result = train_lora(options, nullptr, CancelFlag{});
  CHECK(result.status == "completed" && std::isfinite(result.metrics.at("final_loss")));
  const io::SafetensorsFile file = io::SafetensorsFile::open(result.lora_path);
  CHECK(file.metadata().at("ss_base_model_version") == "sdxl_base_v1-0");
  CHECK(file.metadata().at("modelspec.prediction_type") == "v" && file.metadata().at("ss_zero_terminal_snr") == "True");
  CHECK(file.contains("lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight"));

  // A single file marks itself with an empty v_pred tensor (what ComfyUI reads): v-prediction without a config saying so.
  io::TensorMap tensors = io::load_safetensors(fixtures_dir() + "/tiny-sdxl-single-file/tiny_sdxl_sgm.safetensors");
  tensors["v_pred"] = torch::empty({0});
  const std::string marked = scratch_path("sdxl_vpred_sgm.safetensors");
  io::save_safetensors(marked, tensors);
  CHECK(inspect_model(load_options(marked, tiny_dir())).prediction_type == "v_prediction");
  CHECK(inspect_model(load_options(fixtures_dir() + "/tiny-sdxl-single-file/tiny_sdxl_sgm.safetensors", tiny_dir()))
            .prediction_type == "epsilon");
}

TEST_CASE(family_options_are_refused_before_loading) {
  TrainOptions sd1 = sd_options(sd15_dir(), "sd1-refused");
  sd1.text_encoder_2_lr = 1e-5;
  CHECK_THROWS_WITH(train_lora(sd1, nullptr, CancelFlag{}), "text_encoder_2_lr: is SDXL's");
  sd1.text_encoder_2_lr = 0;
  sd1.clip_skip = 4;
  CHECK_THROWS_WITH(train_lora(sd1, nullptr, CancelFlag{}), "clip_skip: Expected clip_skip between 1 and 3");
  TrainOptions sdxl = sd_options(tiny_dir(), "sdxl-refused");
  CHECK_THROWS_WITH(train_lora(sdxl, nullptr, CancelFlag{}), "clip_skip: clip_skip applies to SD 1.x and 2.x models");
  CHECK(!fs::exists(sdxl.output_dir));
}

SDXL_TEST_MAIN()

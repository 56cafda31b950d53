// engine.h's verify(): recompute every output the golden fixture names from
// the model and the fixture's input tensors alone, then compare.
// Golden outputs are read only to compare; inputs are the tensors whose name
// has an "in" segment (unet.in.sample, vae.dec.in, ...); token ids are
// computed from te.in.prompt_utf8.
#include "engine/verify.h"

#include <algorithm>  // std::max
#include <cmath>      // std::isfinite
#include <filesystem> // std::filesystem::path, directory_iterator
#include <fstream>    // std::ifstream
#include <functional> // std::function
#include <limits>     // std::numeric_limits
#include <sstream>    // std::stringstream name segments
#include <stdexcept>  // std::logic_error, std::runtime_error
#include <vector>

#include <nlohmann/json.hpp> // golden.json

#include "engine/model.h"          // Model, load_model_from
#include "io/safetensors.h"        // io::SafetensorsFile, save_safetensors
#include "lora/apply.h"            // lora::apply_lora, clear_loras, lora_targets
#include "lora/lora_file.h"        // lora::load_lora_file
#include "sample/euler.h"          // sample::EulerDiscreteScheduler
#include "sample/pipeline.h"       // sample::text_to_image
#include "sample/prompt_encoding.h" // sample::encode_prompts, add_time_ids
#include "sdxl/engine.h"           // verify, VerifyReport
#include "train/ddpm_loss.h"       // train::ddpm_loss, enable_lora_training

namespace sdxl {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------
// Tolerances

namespace {

bool starts_with(const std::string& text, const std::string& prefix) { return text.rfind(prefix, 0) == 0; }

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Tables computed in float32 whatever the runtime dtype.
bool is_schedule_table(const std::string& name) {
  return starts_with(name, "sched.") || starts_with(name, "pipe.sched.") || name == "train.ddpm.alphas_cumprod";
}

double unit_roundoff(torch::Dtype dtype) {
  if (dtype == torch::kFloat16) return 1.0 / 2048;  // 2^-11
  if (dtype == torch::kBFloat16) return 1.0 / 256;  // 2^-8
  return 0;
}

} // namespace

double verify_tolerance(const std::string& name, torch::Dtype dtype, double reference_absmax) {
  if (ends_with(name, "input_ids")) return 0;
  const bool text = starts_with(name, "te1.") || starts_with(name, "te2.") || starts_with(name, "te.") ||
                    name == "pipe.negative_prompt_embeds" || is_schedule_table(name);
  const double float32_bound = text ? kTextTolerance : kModelTolerance;
  if (is_schedule_table(name)) return float32_bound;
  return std::max(float32_bound, kReducedPrecisionUlps * unit_roundoff(dtype) * reference_absmax);
}

namespace {

// ---------------------------------------------------------------------------
// The fixture

class GoldenFixture {
 public:
  explicit GoldenFixture(const fs::path& dir)
      : dir_(dir), tensors_(io::SafetensorsFile::open((dir / "golden.safetensors").string())) {
    std::ifstream file(dir / "golden.json");
    if (!file) throw std::runtime_error("cannot open " + (dir / "golden.json").string());
    settings_ = nlohmann::json::parse(file);
  }

  // An input tensor: refused unless one segment of its name is "in".
  torch::Tensor input(const std::string& name) const {
    std::stringstream segments(name);
    std::string segment;
    bool is_input = false;
    while (std::getline(segments, segment, '.')) is_input = is_input || segment == "in";
    if (!is_input) throw std::logic_error("verify may only read fixture inputs, not " + name);
    return tensors_.tensor(name);
  }
  // A reference output, for comparison only.
  torch::Tensor reference(const std::string& name) const { return tensors_.tensor(name); }
  bool has(const std::string& name) const { return tensors_.contains(name); }

  const nlohmann::json& settings() const { return settings_; }
  const fs::path& dir() const { return dir_; }

 private:
  fs::path dir_;
  io::SafetensorsFile tensors_;
  nlohmann::json settings_;
};

// One computed tensor and the golden tensor it is compared with.
struct Computed {
  std::string name;      // row name (and name in the out file)
  std::string reference; // golden tensor name
  torch::Tensor value;
};

struct VerifyContext {
  Model& model;
  const GoldenFixture& golden;
  torch::Device device;
  torch::Dtype dtype;
  torch::Tensor in(const std::string& name) const { return golden.input(name).to(device, dtype); }
};

using Group = std::function<std::vector<Computed>(VerifyContext&)>;

std::string prompt_from_bytes(const torch::Tensor& utf8) {
  const torch::Tensor bytes = utf8.to(torch::kUInt8).contiguous();
  const auto* data = reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>());
  return std::string(data, data + bytes.numel());
}

torch::Tensor unet_on_inputs(VerifyContext& ctx, const std::string& prefix) {
  // Timesteps stay float32 (999 has no exact bfloat16); the UNet casts its time features itself.
  const torch::Tensor timestep = ctx.golden.input(prefix + ".in.timestep").to(ctx.device, torch::kFloat32); // [B]
  return ctx.model.unet->forward(ctx.in(prefix + ".in.sample"), timestep,
                                 ctx.in(prefix + ".in.encoder_hidden_states"), ctx.in(prefix + ".in.text_embeds"),
                                 ctx.in(prefix + ".in.time_ids")); // [B, 4, h, w]
}

// The LoRA files of the fixture, sorted by name.
std::vector<fs::path> fixture_loras(const GoldenFixture& golden) {
  std::vector<fs::path> files;
  const fs::path dir = golden.dir() / "lora";
  if (!fs::is_directory(dir)) return files;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.path().extension() == ".safetensors") files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  return files;
}

void attach_lora(Model& model, const fs::path& path) {
  const lora::LoraTargets targets =
      lora::lora_targets(model.unet.get(), model.text_encoder.get(), model.text_encoder_2.get());
  lora::apply_lora(model.unet.get(), model.text_encoder.get(), model.text_encoder_2.get(),
                   lora::load_lora_file(path.string(), targets), 1.0);
}

void detach_loras(Model& model) {
  lora::clear_loras(model.unet.get(), model.text_encoder.get(), model.text_encoder_2.get());
}

// ---------------------------------------------------------------------------
// The groups of outputs, each from its inputs

std::vector<Computed> unet_outputs(VerifyContext& ctx) {
  torch::NoGradGuard no_grad;
  return {{"unet.out.sample", "unet.out.sample", unet_on_inputs(ctx, "unet")},
          {"unet_b2.out.sample", "unet_b2.out.sample", unet_on_inputs(ctx, "unet_b2")}};
}

std::vector<Computed> vae_outputs(VerifyContext& ctx) {
  torch::NoGradGuard no_grad;
  const torch::Dtype vae_dtype = ctx.model.vae_dtype;
  const models::LatentDistribution posterior =
      ctx.model.vae->encode(ctx.golden.input("vae.in.image").to(ctx.device, vae_dtype));
  const torch::Tensor decoded = ctx.model.vae->decode(ctx.golden.input("vae.dec.in").to(ctx.device, vae_dtype));
  return {{"vae.enc.moments", "vae.enc.moments", posterior.moments},
          {"vae.enc.mean", "vae.enc.mean", posterior.mean},
          {"vae.enc.logvar", "vae.enc.logvar", posterior.logvar},
          {"vae.dec.out", "vae.dec.out", decoded}};
}

std::vector<Computed> text_outputs(VerifyContext& ctx) {
  torch::NoGradGuard no_grad;
  const std::string prompt = prompt_from_bytes(ctx.golden.input("te.in.prompt_utf8"));
  const torch::Tensor ids = sample::frame_prompts(ctx.model.tokenizer, {prompt}, ctx.device);     // [1, 77]
  const torch::Tensor ids_2 = sample::frame_prompts(ctx.model.tokenizer_2, {prompt}, ctx.device); // [1, 77]
  const sample::PromptEncoding encoding =
      sample::encode_token_ids(ctx.model.text_encoder, ctx.model.text_encoder_2, ids, ids_2);
  std::vector<Computed> rows = {{"te1.in.input_ids", "te1.in.input_ids", ids},
                                {"te2.in.input_ids", "te2.in.input_ids", ids_2}};
  const std::pair<const char*, const models::ClipTextOutput*> encoders[] = {{"te1", &encoding.text_encoder},
                                                                           {"te2", &encoding.text_encoder_2}};
  for (const auto& [prefix, output] : encoders) {
    for (size_t i = 0; i < output->hidden_states.size(); ++i) {
      const std::string name = std::string(prefix) + ".hidden_states." + std::to_string(i);
      rows.push_back({name, name, output->hidden_states[i]});
    }
    rows.push_back({std::string(prefix) + ".out.last_hidden_state", std::string(prefix) + ".out.last_hidden_state",
                    output->last_hidden_state});
  }
  rows.push_back({"te1.out.pooler_output", "te1.out.pooler_output", encoding.text_encoder.pooled_output});
  rows.push_back({"te2.out.text_embeds", "te2.out.text_embeds", encoding.text_encoder_2.text_embeds});
  rows.push_back({"te.out.sdxl_prompt_embeds", "te.out.sdxl_prompt_embeds", encoding.prompt_embeds});
  return rows;
}

std::vector<Computed> scheduler_outputs(VerifyContext& ctx) {
  constexpr int64_t kTableSteps = 30; // sched.euler30.*
  const sample::EulerDiscreteScheduler scheduler(ctx.model.scheduler, kTableSteps);
  return {{"sched.euler30.timesteps", "sched.euler30.timesteps", scheduler.timesteps()},
          {"sched.euler30.sigmas", "sched.euler30.sigmas", scheduler.sigmas()}};
}

std::vector<Computed> pipeline_outputs(VerifyContext& ctx) {
  torch::NoGradGuard no_grad;
  const nlohmann::json& settings = ctx.golden.settings().at("pipeline");
  const std::string prompt = settings.at("prompt").get<std::string>();
  const std::string negative_prompt =
      settings.contains("negative_prompt") && settings.at("negative_prompt").is_string()
          ? settings.at("negative_prompt").get<std::string>()
          : std::string();
  const int64_t height = settings.at("height").get<int64_t>();
  const int64_t width = settings.at("width").get<int64_t>();

  Model& model = ctx.model;
  const sample::PromptEncoding positive =
      sample::encode_prompts(model.tokenizer, model.tokenizer_2, model.text_encoder, model.text_encoder_2, {prompt});
  const sample::NegativeEmbeddings negative =
      sample::encode_negative_prompts(model.tokenizer, model.tokenizer_2, model.text_encoder, model.text_encoder_2,
                                      {negative_prompt}, positive, model.force_zeros_for_empty_prompt);
  sample::Text2ImageInputs inputs;
  inputs.prompt_embeds = positive.prompt_embeds;
  inputs.pooled_prompt_embeds = positive.pooled_prompt_embeds;
  inputs.negative_prompt_embeds = negative.prompt_embeds;
  inputs.negative_pooled_prompt_embeds = negative.pooled_prompt_embeds;
  inputs.time_ids = sample::add_time_ids(sample::SizeConditioning::for_output(height, width), 1, ctx.dtype,
                                         ctx.device); // [1, 6]
  inputs.latents = ctx.in("pipe.in.latents");        // the fixture's starting noise, not our generator's
  inputs.steps = settings.at("num_inference_steps").get<int64_t>();
  inputs.guidance_scale = settings.at("guidance_scale").get<double>();

  const sample::EulerDiscreteScheduler scheduler(model.scheduler, inputs.steps);
  const sample::Text2ImageResult result = sample::text_to_image(model.unet, model.vae, model.scheduler, inputs);
  return {{"pipe.sched.timesteps", "pipe.sched.timesteps", scheduler.timesteps()},
          {"pipe.sched.sigmas", "pipe.sched.sigmas", scheduler.sigmas()},
          {"pipe.sched.init_noise_sigma", "pipe.sched.init_noise_sigma", scheduler.init_noise_sigma().reshape({1})},
          {"pipe.negative_prompt_embeds", "pipe.negative_prompt_embeds", negative.prompt_embeds},
          {"pipe.out.latents", "pipe.out.latents", result.latents},
          {"pipe.out.image", "pipe.out.image", result.image}};
}

std::vector<Computed> lora_outputs(VerifyContext& ctx) {
  torch::NoGradGuard no_grad;
  std::vector<Computed> rows;
  for (const fs::path& file : fixture_loras(ctx.golden)) {
    attach_lora(ctx.model, file);
    try {
      rows.push_back({"lora.unet.out.sample_merged[" + file.stem().string() + "]", "lora.unet.out.sample_merged",
                      unet_on_inputs(ctx, "unet")});
    } catch (...) {
      detach_loras(ctx.model);
      throw;
    }
    detach_loras(ctx.model);
  }
  if (rows.empty()) throw std::runtime_error("no LoRA files in " + (ctx.golden.dir() / "lora").string());
  return rows;
}

// The fixture trained the peft file's adapter (its "peft_crosscheck"); all
// three files hold the same weights.
constexpr const char* kTrainingLoraFile = "tiny_lora_peft.safetensors";

std::vector<Computed> training_outputs(VerifyContext& ctx) {
  Model& model = ctx.model;
  const torch::Tensor alphas_cumprod = sample::train_alphas_cumprod(model.scheduler); // [T]
  train::DdpmLossInputs inputs;
  inputs.latents = ctx.in("train.in.latents");
  inputs.noise = ctx.in("train.in.noise");
  inputs.timesteps = ctx.golden.input("train.in.timestep").to(ctx.device, torch::kInt64);
  inputs.encoder_hidden_states = ctx.in("train.in.encoder_hidden_states");
  inputs.text_embeds = ctx.in("train.in.text_embeds");
  inputs.time_ids = ctx.in("train.in.time_ids");

  train::DdpmLossOutput base;
  {
    torch::NoGradGuard no_grad;
    base = train::ddpm_loss(model.unet, alphas_cumprod, inputs);
  }
  attach_lora(model, ctx.golden.dir() / "lora" / kTrainingLoraFile);
  train::DdpmLossOutput adapted;
  double grad_norm_down = 0, grad_norm_up = 0;
  try {
    const train::LoraParameters parameters = train::enable_lora_training(*model.unet);
    adapted = train::ddpm_loss(model.unet, alphas_cumprod, inputs);
    adapted.loss.backward();
    grad_norm_down = train::global_grad_norm(parameters.down);
    grad_norm_up = train::global_grad_norm(parameters.up);
  } catch (...) {
    detach_loras(model);
    throw;
  }
  detach_loras(model);
  const auto scalar = [](double value) { return torch::tensor({value}, torch::kFloat64).to(torch::kFloat32); };
  return {{"train.ddpm.alphas_cumprod", "train.ddpm.alphas_cumprod", alphas_cumprod},
          {"train.noisy_latents", "train.noisy_latents", base.noisy_latents},
          {"train.base.pred", "train.base.pred", base.prediction},
          {"train.base.loss", "train.base.loss", base.loss.detach().reshape({1})},
          {"train.lora.pred", "train.lora.pred", adapted.prediction.detach()},
          {"train.lora.loss", "train.lora.loss", adapted.loss.detach().reshape({1})},
          {"train.lora.grad_norm_A", "train.lora.grad_norm_A", scalar(grad_norm_down)},
          {"train.lora.grad_norm_B", "train.lora.grad_norm_B", scalar(grad_norm_up)}};
}

// How many rows the groups above produce, for progress totals.
int64_t planned_rows(const Model& model, const GoldenFixture& golden) {
  constexpr int64_t kUnetRows = 2, kVaeRows = 4, kSchedulerRows = 2, kPipelineRows = 6, kTrainingRows = 8;
  // ids x2, every hidden state (layers + 1) of both encoders, two last states, pooled, text_embeds, concat
  const int64_t text_rows = 2 + (model.text_encoder->config().num_hidden_layers + 1) +
                            (model.text_encoder_2->config().num_hidden_layers + 1) + 2 + 3;
  const auto lora_rows = static_cast<int64_t>(fixture_loras(golden).size());
  return kUnetRows + kVaeRows + text_rows + kSchedulerRows + kPipelineRows + lora_rows + kTrainingRows;
}

// ---------------------------------------------------------------------------
// Comparison

VerifyRow compare(const Computed& computed, const GoldenFixture& golden, torch::Dtype dtype) {
  VerifyRow row;
  row.name = computed.name;
  const torch::Tensor reference = golden.reference(computed.reference).to(torch::kFloat64);
  const torch::Tensor value = computed.value.detach().to(torch::kCPU, torch::kFloat64);
  const double reference_absmax = reference.numel() ? reference.abs().max().item<double>() : 0.0;
  row.tolerance = verify_tolerance(computed.reference, dtype, reference_absmax);
  if (value.sizes() != reference.sizes()) {
    row.max_abs_diff = std::numeric_limits<double>::infinity();
  } else {
    row.max_abs_diff = value.numel() ? (value - reference).abs().max().item<double>() : 0.0;
  }
  row.pass = std::isfinite(row.max_abs_diff) && row.max_abs_diff <= row.tolerance;
  return row;
}

} // namespace

// ---------------------------------------------------------------------------
// verify()

VerifyReport verify(const VerifyOptions& options, const ProgressFn& progress, const CancelFlag& cancel) {
  const GoldenFixture golden(options.golden_dir);
  LoadOptions load;
  load.model_path = options.model_path;
  load.config_dir = options.config_dir;
  load.runtime = options.runtime;
  std::shared_ptr<Model> model = load_model_from(load, cancel, progress);
  VerifyContext ctx{*model, golden, model->device, model->dtype};

  const std::vector<std::pair<const char*, Group>> groups = {
      {"unet", unet_outputs},           {"vae", vae_outputs},   {"text encoders", text_outputs},
      {"scheduler", scheduler_outputs}, {"pipeline", pipeline_outputs}, {"lora", lora_outputs},
      {"training", training_outputs}};

  VerifyReport report;
  io::TensorMap written;
  int64_t done = 0;
  const int64_t total = planned_rows(*model, golden);
  for (const auto& [label, group] : groups) {
    throw_if_cancelled(cancel);
    for (const Computed& computed : group(ctx)) {
      report.rows.push_back(compare(computed, golden, ctx.dtype));
      // Floating outputs are written as float32, the fixture's dtype, whatever the runtime dtype.
      torch::Tensor value = computed.value.detach().to(torch::kCPU);
      if (value.is_floating_point()) value = value.to(torch::kFloat32);
      written[computed.name] = value.contiguous();
      ++done;
      if (progress) progress(Progress{"verifying", done, std::max(total, done), computed.name});
      throw_if_cancelled(cancel);
    }
  }
  report.pass = !report.rows.empty();
  for (const auto& row : report.rows) report.pass = report.pass && row.pass;
  if (!options.out_path.empty())
    io::save_safetensors(options.out_path, written,
                         {{"model_path", options.model_path},
                          {"device", options.runtime.device},
                          {"dtype", options.runtime.dtype}});
  return report;
}

} // namespace sdxl

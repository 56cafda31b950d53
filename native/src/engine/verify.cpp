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
#include <memory>     // std::unique_ptr sampler
#include <iterator>   // std::istreambuf_iterator
#include <optional>   // std::optional extra fixture
#include <regex>      // std::regex non-finite JSON numbers
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
#include "sample/sampler.h"        // sample::make_sampler
#include "sample/conditioning.h"   // sample::TextConditioner, frame_prompts, SizeConditioning
#include "sdxl/engine.h"           // verify, VerifyReport
#include "train/ddpm_loss.h"       // train::ddpm_loss, enable_lora_training

#include <ATen/CPUGeneratorImpl.h> // at::detail::createCPUGenerator (Euler ancestral's step noise)

namespace sdxl {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------
// Tolerances

namespace {

bool starts_with(const std::string& text, const std::string& prefix) { return text.rfind(prefix, 0) == 0; }

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Tables (and a sampler's step noise) computed in float32 whatever the runtime dtype.
bool is_schedule_table(const std::string& name) {
  return starts_with(name, "sched.") || name.find(".sched.") != std::string::npos ||
         name == "train.ddpm.alphas_cumprod" || (name.find(".step") != std::string::npos && ends_with(name, ".noise"));
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
  // pipe.step2.latents, pipe_dpmpp.out.latents, lora.pipe.out.latents, ...
  const bool pipeline_latents = (starts_with(name, "pipe") || starts_with(name, "lora.pipe")) && ends_with(name, ".latents");
  const double float32_bound = text             ? kTextTolerance
                               : pipeline_latents ? std::max(kModelTolerance, kLatentsRelativeTolerance * reference_absmax)
                                                  : kModelTolerance;
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
    settings_ = read_json(dir / "golden.json");
    // More references beside the main ones (extra_golden.*: the DPM++ sampler, ...), when present.
    if (fs::exists(dir / "extra_golden.safetensors")) {
      extra_.emplace(io::SafetensorsFile::open((dir / "extra_golden.safetensors").string()));
      extra_settings_ = read_json(dir / "extra_golden.json");
    }
  }

  // Inputs are the tensors one segment of whose name is "in" (unet.in.sample, vae.dec.in).
  static bool is_input(const std::string& name) {
    std::stringstream segments(name);
    std::string segment;
    while (std::getline(segments, segment, '.'))
      if (segment == "in") return true;
    return false;
  }
  // An input tensor: refused unless it is one.
  torch::Tensor input(const std::string& name) const {
    if (!is_input(name)) throw std::logic_error("verify may only read fixture inputs, not " + name);
    return tensor(name);
  }
  // A reference output, for comparison only.
  torch::Tensor reference(const std::string& name) const { return tensor(name); }
  bool has(const std::string& name) const { return tensors_.contains(name) || (extra_ && extra_->contains(name)); }
  // How many tensors of the fixture (and its extra set) `keep` accepts.
  template <typename Keep>
  int64_t reference_count(Keep keep) const {
    int64_t count = 0;
    for (const auto& name : tensors_.keys()) count += keep(name) ? 1 : 0;
    if (extra_)
      for (const auto& name : extra_->keys()) count += keep(name) ? 1 : 0;
    return count;
  }
  bool has_extra() const { return extra_.has_value(); }

  const nlohmann::json& settings() const { return settings_; }
  const nlohmann::json& extra_settings() const { return extra_settings_; }
  const fs::path& dir() const { return dir_; }

 private:
  // Python's json writes -Infinity, Infinity and NaN (extra_golden.json's lambda_min_clipped);
  // they are read as null, which no setting verify uses needs to be.
  static nlohmann::json read_json(const fs::path& path) {
    std::ifstream file(path);
    if (!file) throw std::runtime_error("cannot open " + path.string());
    const std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    static const std::regex non_finite(R"(([:\[,]\s*)-?(Infinity|NaN)\b)");
    return nlohmann::json::parse(std::regex_replace(text, non_finite, "$1null"));
  }
  torch::Tensor tensor(const std::string& name) const {
    if (!tensors_.contains(name) && extra_ && extra_->contains(name)) return extra_->tensor(name);
    return tensors_.tensor(name);
  }

  fs::path dir_;
  io::SafetensorsFile tensors_;
  std::optional<io::SafetensorsFile> extra_;
  nlohmann::json settings_;
  nlohmann::json extra_settings_;
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
  // An optional input: undefined when the fixture has none (SD 1.x/2.x have no text_embeds or time_ids).
  torch::Tensor in_if_present(const std::string& name) const { return golden.has(name) ? in(name) : torch::Tensor(); }
};

using Group = std::function<std::vector<Computed>(VerifyContext&)>;

std::string prompt_from_bytes(const torch::Tensor& utf8) {
  const torch::Tensor bytes = utf8.to(torch::kUInt8).contiguous();
  const auto* data = reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>());
  return std::string(data, data + bytes.numel());
}

std::string fixture_prompt(const VerifyContext& ctx) { return prompt_from_bytes(ctx.golden.input("te.in.prompt_utf8")); }

torch::Tensor unet_on_inputs(VerifyContext& ctx, const std::string& prefix) {
  // Timesteps stay float32 (999 has no exact bfloat16); the UNet casts its time features itself.
  const torch::Tensor timestep = ctx.golden.input(prefix + ".in.timestep").to(ctx.device, torch::kFloat32); // [B]
  models::UNetConditioning conditioning;
  conditioning.context = ctx.in(prefix + ".in.encoder_hidden_states");
  conditioning.text_embeds = ctx.in_if_present(prefix + ".in.text_embeds");
  conditioning.time_ids = ctx.in_if_present(prefix + ".in.time_ids");
  return ctx.model.unet->forward(ctx.in(prefix + ".in.sample"), timestep, conditioning); // [B, 4, h, w]
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
      lora::lora_targets(model.unet.get(), module_or_null(model.text_encoder), module_or_null(model.text_encoder_2));
  lora::apply_lora(model.unet.get(), module_or_null(model.text_encoder), module_or_null(model.text_encoder_2),
                   lora::load_lora_file(path.string(), targets), 1.0);
}

void detach_loras(Model& model) {
  lora::clear_loras(model.unet.get(), module_or_null(model.text_encoder), module_or_null(model.text_encoder_2));
}

// Runs `body` with the LoRA file attached, detaching it whatever happens.
template <typename Body>
void with_lora(Model& model, const fs::path& file, Body body) {
  attach_lora(model, file);
  try {
    body();
  } catch (...) {
    detach_loras(model);
    throw;
  }
  detach_loras(model);
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

// Every hidden state and output of one encoder on framed ids, as rows named "<prefix>.*".
void encoder_rows(models::ClipTextModel& encoder, const torch::Tensor& ids, const std::string& prefix,
                  std::vector<Computed>& rows) {
  const models::ClipTextOutput output = encoder->forward(ids);
  for (size_t i = 0; i < output.hidden_states.size(); ++i) {
    const std::string name = prefix + ".hidden_states." + std::to_string(i);
    rows.push_back({name, name, output.hidden_states[i]});
  }
  rows.push_back({prefix + ".out.last_hidden_state", prefix + ".out.last_hidden_state", output.last_hidden_state});
  if (prefix == "te1") rows.push_back({"te1.out.pooler_output", "te1.out.pooler_output", output.pooled_output});
  if (output.text_embeds.defined()) rows.push_back({prefix + ".out.text_embeds", prefix + ".out.text_embeds", output.text_embeds});
}

std::vector<Computed> text_outputs(VerifyContext& ctx) {
  torch::NoGradGuard no_grad;
  Model& model = ctx.model;
  const auto conditioner = text_conditioner(model);
  const std::vector<torch::Tensor> ids = conditioner->token_ids({fixture_prompt(ctx)}); // [1, 77] per tokenizer
  std::vector<Computed> rows = {{"te1.in.input_ids", "te1.in.input_ids", ids[0]}};
  if (ids.size() > 1) rows.push_back({"te2.in.input_ids", "te2.in.input_ids", ids[1]});
  if (ctx.golden.has("te1.in.negative_input_ids")) // the empty prompt the SD pipelines encode as negative
    rows.push_back({"te1.in.negative_input_ids", "te1.in.negative_input_ids",
                    sample::frame_prompts(model.tokenizer, {""}, ctx.device)});
  encoder_rows(model.text_encoder, ids[0], "te1", rows);
  if (ids.size() > 1) encoder_rows(model.text_encoder_2, ids[1], "te2", rows);
  if (model.family == models::ModelFamily::Sdxl) {
    rows.push_back({"te.out.sdxl_prompt_embeds", "te.out.sdxl_prompt_embeds", conditioner->encode_ids(ids).context});
  } else if (ctx.golden.has("te1.out.clip_skip1_prompt_embeds")) {
    // diffusers' clip_skip=1 is AUTOMATIC1111's "Clip skip 2", ours.
    rows.push_back({"te1.out.clip_skip1_prompt_embeds", "te1.out.clip_skip1_prompt_embeds",
                    text_conditioner(model, 2)->encode_ids(ids).context});
  }
  return rows;
}

std::vector<Computed> scheduler_outputs(VerifyContext& ctx) {
  constexpr int64_t kTableSteps = 30; // sched.euler30.*
  const sample::EulerDiscreteScheduler scheduler(ctx.model.scheduler, kTableSteps);
  return {{"sched.euler30.timesteps", "sched.euler30.timesteps", scheduler.timesteps()},
          {"sched.euler30.sigmas", "sched.euler30.sigmas", scheduler.sigmas()}};
}

// The text-to-image conditioning of a fixture's pipeline settings.
sample::Text2ImageInputs pipeline_inputs(VerifyContext& ctx, const nlohmann::json& settings,
                                         models::UNetConditioning* negative_out = nullptr) {
  const std::string prompt = settings.at("prompt").get<std::string>();
  const std::string negative_prompt =
      settings.contains("negative_prompt") && settings.at("negative_prompt").is_string()
          ? settings.at("negative_prompt").get<std::string>()
          : std::string();
  const int64_t height = settings.at("height").get<int64_t>();
  const int64_t width = settings.at("width").get<int64_t>();
  const auto conditioner = text_conditioner(ctx.model);
  sample::Text2ImageInputs inputs;
  inputs.positive = conditioner->encode({prompt});
  inputs.negative = conditioner->unconditional({negative_prompt}, inputs.positive);
  inputs.positive.time_ids =
      conditioner->size_ids(sample::SizeConditioning::for_output(height, width), 1, ctx.dtype, ctx.device); // [1, 6] (SDXL)
  inputs.steps = settings.at("num_inference_steps").get<int64_t>();
  inputs.guidance_scale = settings.at("guidance_scale").get<double>();
  if (negative_out != nullptr) *negative_out = inputs.negative;
  return inputs;
}

// The seed of a fixture's `torch.Generator("cpu").manual_seed(N)`, from its description.
uint64_t generator_seed(const nlohmann::json& settings) {
  const std::string text = settings.at("generator").get<std::string>();
  const std::string marker = "manual_seed(";
  const size_t at = text.find(marker);
  if (at == std::string::npos) throw std::runtime_error("fixture generator without a manual_seed: " + text);
  return std::stoull(text.substr(at + marker.size()));
}

// A text-to-image run as the fixture's `settings` describe it, from its starting latents
// `<prefix>.in.latents`: its tables, the latents after every step, the final latents and image.
std::vector<Computed> text_to_image_outputs(VerifyContext& ctx, const nlohmann::json& settings, const std::string& prefix,
                                            const std::string& sampler) {
  torch::NoGradGuard no_grad;
  Model& model = ctx.model;
  models::UNetConditioning negative;
  sample::Text2ImageInputs inputs = pipeline_inputs(ctx, settings, &negative);
  inputs.latents = ctx.in(prefix + ".in.latents"); // the fixture's starting noise, not our generator's
  inputs.sampler = sampler;
  if (settings.contains("generator")) inputs.generators = {at::detail::createCPUGenerator(generator_seed(settings))};

  const std::unique_ptr<sample::Sampler> tables = sample::make_sampler(sampler, model.scheduler, inputs.steps);
  std::vector<Computed> rows = {
      {prefix + ".sched.timesteps", prefix + ".sched.timesteps", tables->timesteps()},
      {prefix + ".sched.sigmas", prefix + ".sched.sigmas", tables->sigmas()},
      {prefix + ".sched.init_noise_sigma", prefix + ".sched.init_noise_sigma", tables->init_noise_sigma().reshape({1})}};
  if (tables->needs_noise()) {
    // The step noise our generator draws, against the noise the fixture's run drew.
    auto generator = at::detail::createCPUGenerator(generator_seed(settings));
    for (int64_t i = 0; i < inputs.steps; ++i) {
      const std::string name = prefix + ".step" + std::to_string(i) + ".noise";
      const torch::Tensor noise = torch::randn(inputs.latents.sizes(), generator, torch::TensorOptions().dtype(torch::kFloat32));
      if (ctx.golden.has(name)) rows.push_back({name, name, noise});
    }
  }
  const auto on_latents = [&](int64_t step, const torch::Tensor& latents) {
    const std::string name = prefix + ".step" + std::to_string(step) + ".latents";
    if (ctx.golden.has(name)) rows.push_back({name, name, latents});
  };
  const sample::Text2ImageResult result =
      sample::text_to_image(model.unet, model.vae, model.scheduler, inputs, nullptr, on_latents);
  if (prefix == "pipe") rows.push_back({"pipe.negative_prompt_embeds", "pipe.negative_prompt_embeds", negative.context});
  rows.push_back({prefix + ".out.latents", prefix + ".out.latents", result.latents});
  rows.push_back({prefix + ".out.image", prefix + ".out.image", result.image});
  return rows;
}

std::vector<Computed> pipeline_outputs(VerifyContext& ctx) {
  return text_to_image_outputs(ctx, ctx.golden.settings().at("pipeline"), "pipe", "euler");
}

// The main pipeline's settings with an extra run's own (its scheduler, generator).
nlohmann::json extra_pipeline_settings(const VerifyContext& ctx, const char* key) {
  nlohmann::json settings = ctx.golden.settings().at("pipeline");
  for (const auto& [name, value] : ctx.golden.extra_settings().at(key).items()) settings[name] = value;
  return settings;
}

// DPM++ 2M Karras (extra_golden): its 30-step tables and a 4-step run with every step's latents.
std::vector<Computed> dpmpp_outputs(VerifyContext& ctx) {
  if (!ctx.golden.has_extra()) return {};
  constexpr int64_t kTableSteps = 30; // sched.dpmpp_2m_karras30.*
  const std::unique_ptr<sample::Sampler> tables = sample::make_sampler("dpmpp_2m_karras", ctx.model.scheduler, kTableSteps);
  std::vector<Computed> rows = {
      {"sched.dpmpp_2m_karras30.timesteps", "sched.dpmpp_2m_karras30.timesteps", tables->timesteps()},
      {"sched.dpmpp_2m_karras30.sigmas", "sched.dpmpp_2m_karras30.sigmas", tables->sigmas()}};
  for (Computed& row : text_to_image_outputs(ctx, extra_pipeline_settings(ctx, "pipeline_dpmpp"), "pipe_dpmpp",
                                             "dpmpp_2m_karras"))
    rows.push_back(std::move(row));
  return rows;
}

// Euler ancestral (extra_golden, when the fixture has it): 30-step tables, the step noise
// of its generator and a 4-step run with every step's latents.
std::vector<Computed> euler_a_outputs(VerifyContext& ctx) {
  if (!ctx.golden.has_extra() || !ctx.golden.extra_settings().contains("pipeline_euler_a")) return {};
  constexpr int64_t kTableSteps = 30; // sched.euler_a30.*
  const std::unique_ptr<sample::Sampler> tables = sample::make_sampler("euler_a", ctx.model.scheduler, kTableSteps);
  std::vector<Computed> rows = {{"sched.euler_a30.timesteps", "sched.euler_a30.timesteps", tables->timesteps()},
                                {"sched.euler_a30.sigmas", "sched.euler_a30.sigmas", tables->sigmas()}};
  for (Computed& row : text_to_image_outputs(ctx, extra_pipeline_settings(ctx, "pipeline_euler_a"), "pipe_euler_a", "euler_a"))
    rows.push_back(std::move(row));
  return rows;
}

// Each LoRA file merged into the UNet's output, and, where the fixture has them, into the
// text encoder's output and a whole pipeline run.
std::vector<Computed> lora_outputs(VerifyContext& ctx) {
  torch::NoGradGuard no_grad;
  std::vector<Computed> rows;
  Model& model = ctx.model;
  for (const fs::path& file : fixture_loras(ctx.golden)) {
    const std::string tag = "[" + file.stem().string() + "]";
    with_lora(model, file, [&] {
      rows.push_back({"lora.unet.out.sample_merged" + tag, "lora.unet.out.sample_merged", unet_on_inputs(ctx, "unet")});
      if (ctx.golden.has("lora.te1.out.last_hidden_state")) {
        const torch::Tensor ids = sample::frame_prompts(model.tokenizer, {fixture_prompt(ctx)}, ctx.device);
        rows.push_back({"lora.te1.out.last_hidden_state" + tag, "lora.te1.out.last_hidden_state",
                        model.text_encoder->forward(ids).last_hidden_state});
      }
      if (ctx.golden.has("lora.pipe.out.latents")) {
        sample::Text2ImageInputs inputs = pipeline_inputs(ctx, ctx.golden.settings().at("pipeline"));
        inputs.latents = ctx.in("pipe.in.latents");
        const torch::Tensor latents = sample::text_to_image(model.unet, model.vae, model.scheduler, inputs).latents;
        rows.push_back({"lora.pipe.out.latents" + tag, "lora.pipe.out.latents", latents});
      }
    });
  }
  if (rows.empty()) throw std::runtime_error("no LoRA files in " + (ctx.golden.dir() / "lora").string());
  return rows;
}

// The fixture trained the peft file's adapter (its "peft_crosscheck"); every
// file of the set holds the same weights.
constexpr const char* kTrainingLoraFile = "tiny_lora_peft.safetensors";

std::vector<Computed> training_outputs(VerifyContext& ctx) {
  Model& model = ctx.model;
  const torch::Tensor alphas_cumprod = sample::train_alphas_cumprod(model.scheduler); // [T]
  train::DdpmLossInputs inputs;
  inputs.latents = ctx.in("train.in.latents");
  inputs.noise = ctx.in("train.in.noise");
  inputs.timesteps = ctx.golden.input("train.in.timestep").to(ctx.device, torch::kInt64);
  inputs.conditioning.context = ctx.in("train.in.encoder_hidden_states");
  inputs.conditioning.text_embeds = ctx.in_if_present("train.in.text_embeds");
  inputs.conditioning.time_ids = ctx.in_if_present("train.in.time_ids");
  inputs.prediction_type = model.scheduler.prediction_type;

  train::DdpmLossOutput base;
  {
    torch::NoGradGuard no_grad;
    base = train::ddpm_loss(model.unet, alphas_cumprod, inputs);
  }
  const auto scalar = [](double value) { return torch::tensor({value}, torch::kFloat64).to(torch::kFloat32); };
  std::vector<Computed> rows = {{"train.ddpm.alphas_cumprod", "train.ddpm.alphas_cumprod", alphas_cumprod},
                                {"train.noisy_latents", "train.noisy_latents", base.noisy_latents}};
  if (ctx.golden.has("train.target")) rows.push_back({"train.target", "train.target", base.target});
  rows.push_back({"train.base.pred", "train.base.pred", base.prediction});
  rows.push_back({"train.base.loss", "train.base.loss", base.loss.detach().reshape({1})});
  if (!ctx.golden.has("train.lora.loss")) return rows; // a fixture without a LoRA (tiny-sd2v)

  train::DdpmLossOutput adapted;
  double grad_norm_down = 0, grad_norm_up = 0;
  with_lora(model, ctx.golden.dir() / "lora" / kTrainingLoraFile, [&] {
    const train::LoraParameters parameters = train::enable_lora_training(*model.unet);
    adapted = train::ddpm_loss(model.unet, alphas_cumprod, inputs);
    adapted.loss.backward();
    grad_norm_down = train::global_grad_norm(parameters.down);
    grad_norm_up = train::global_grad_norm(parameters.up);
  });
  rows.push_back({"train.lora.pred", "train.lora.pred", adapted.prediction.detach()});
  rows.push_back({"train.lora.loss", "train.lora.loss", adapted.loss.detach().reshape({1})});
  rows.push_back({"train.lora.grad_norm_A", "train.lora.grad_norm_A", scalar(grad_norm_down)});
  rows.push_back({"train.lora.grad_norm_B", "train.lora.grad_norm_B", scalar(grad_norm_up)});
  return rows;
}

// How many rows the groups produce, for progress totals: every fixture tensor verify
// recomputes (its outputs and the token ids), the LoRA rows once per LoRA file.
int64_t planned_rows(const GoldenFixture& golden) {
  static const std::vector<std::string> not_recomputed = {
      "vae.enc.std", "vae.enc.eps", "vae.enc.sample",  // the sampled posterior: its noise is the fixture's
      "unet_fp16.", "unet_bf16.",                      // low-precision references (compared by a dtype's run)
      "sd1.unet.", "sgm.unet."};                       // single-file loads: the unet.* rows cover them
  const auto recomputed = [](const std::string& name) {
    if (name.find(".dbg.") != std::string::npos) return false;
    for (const auto& prefix : not_recomputed)
      if (starts_with(name, prefix)) return false;
    return !GoldenFixture::is_input(name) || ends_with(name, "input_ids");
  };
  const int64_t loras = static_cast<int64_t>(fixture_loras(golden).size());
  return golden.reference_count([&](const std::string& name) { return recomputed(name) && !starts_with(name, "lora."); }) +
         loras * golden.reference_count([&](const std::string& name) { return starts_with(name, "lora."); }) -
         (loras == 0 ? golden.reference_count([](const std::string& name) { return starts_with(name, "train.lora."); }) : 0);
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

  const bool has_loras = !fixture_loras(golden).empty();
  std::vector<std::pair<const char*, Group>> groups = {
      {"unet", unet_outputs},           {"vae", vae_outputs},           {"text encoders", text_outputs},
      {"scheduler", scheduler_outputs}, {"pipeline", pipeline_outputs}, {"dpm++", dpmpp_outputs},
      {"euler a", euler_a_outputs}};
  if (has_loras) groups.push_back({"lora", lora_outputs});
  groups.push_back({"training", training_outputs});

  VerifyReport report;
  io::TensorMap written;
  int64_t done = 0;
  const int64_t total = planned_rows(golden);
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

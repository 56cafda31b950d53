// Training noise schedule: betas and alphas_cumprod from scheduler_config.json.
#include "sample/noise_schedule.h"

#include <cmath>     // std::sqrt
#include <fstream>   // std::ifstream
#include <stdexcept> // std::invalid_argument

namespace sdxl::sample {

namespace {

template <typename T>
void read_if_present(const nlohmann::json& json, const char* key, T& field) {
  auto it = json.find(key);
  if (it != json.end() && !it->is_null()) field = it->get<T>();
}

bool flag_set(const nlohmann::json& json, const char* key) {
  auto it = json.find(key);
  return it != json.end() && it->is_boolean() && it->get<bool>();
}

[[noreturn]] void unsupported(const std::string& what) {
  throw std::invalid_argument("scheduler config: " + what + " is not supported by the native Euler sampler");
}

} // namespace

// ---------------------------------------------------------------------------
// Config

SchedulerConfig SchedulerConfig::from_json(const nlohmann::json& json) {
  SchedulerConfig config;
  read_if_present(json, "num_train_timesteps", config.num_train_timesteps);
  read_if_present(json, "beta_start", config.beta_start);
  read_if_present(json, "beta_end", config.beta_end);
  read_if_present(json, "beta_schedule", config.beta_schedule);
  read_if_present(json, "prediction_type", config.prediction_type);
  read_if_present(json, "timestep_spacing", config.timestep_spacing);
  read_if_present(json, "steps_offset", config.steps_offset);
  read_if_present(json, "interpolation_type", config.interpolation_type);
  read_if_present(json, "final_sigmas_type", config.final_sigmas_type);
  read_if_present(json, "use_karras_sigmas", config.use_karras_sigmas);
  read_if_present(json, "rescale_betas_zero_snr", config.rescale_betas_zero_snr);
  // Settings we do not implement must fail loudly rather than sample differently.
  auto trained = json.find("trained_betas");
  if (trained != json.end() && !trained->is_null()) unsupported("trained_betas");
  if (flag_set(json, "use_exponential_sigmas")) unsupported("use_exponential_sigmas");
  if (flag_set(json, "use_beta_sigmas")) unsupported("use_beta_sigmas");
  auto timestep_type = json.find("timestep_type");
  if (timestep_type != json.end() && timestep_type->is_string() && timestep_type->get<std::string>() != "discrete")
    unsupported("timestep_type \"" + timestep_type->get<std::string>() + "\"");
  for (const char* key : {"sigma_min", "sigma_max"}) {
    auto it = json.find(key);
    if (it != json.end() && !it->is_null()) unsupported(key);
  }
  config.validate();
  return config;
}

SchedulerConfig SchedulerConfig::from_file(const std::string& path) {
  std::ifstream file(path);
  if (!file) throw std::invalid_argument("cannot open scheduler config " + path);
  nlohmann::json json;
  try {
    file >> json;
  } catch (const nlohmann::json::exception& error) {
    throw std::invalid_argument("scheduler config " + path + " is not valid JSON: " + error.what());
  }
  return from_json(json);
}

SchedulerConfig SchedulerConfig::sdxl_base() {
  SchedulerConfig config;
  config.beta_start = 0.00085;
  config.beta_end = 0.012;
  config.beta_schedule = "scaled_linear";
  config.timestep_spacing = "leading";
  config.steps_offset = 1;
  return config;
}

SchedulerConfig SchedulerConfig::sd15_base() {
  SchedulerConfig config = sdxl_base();
  config.timestep_spacing = "linspace"; // the PNDM file names none: Euler's own default
  return config;
}

void SchedulerConfig::validate() const {
  if (num_train_timesteps < 2) unsupported("num_train_timesteps " + std::to_string(num_train_timesteps));
  if (beta_schedule != "scaled_linear" && beta_schedule != "linear")
    unsupported("beta_schedule \"" + beta_schedule + "\"");
  if (prediction_type != "epsilon" && prediction_type != "v_prediction")
    unsupported("prediction_type \"" + prediction_type + "\"");
  if (timestep_spacing != "leading" && timestep_spacing != "linspace" && timestep_spacing != "trailing")
    unsupported("timestep_spacing \"" + timestep_spacing + "\"");
  if (interpolation_type != "linear") unsupported("interpolation_type \"" + interpolation_type + "\"");
  if (final_sigmas_type != "zero" && final_sigmas_type != "sigma_min")
    unsupported("final_sigmas_type \"" + final_sigmas_type + "\"");
  if (use_karras_sigmas) unsupported("use_karras_sigmas");
}

void check_inference_steps(const SchedulerConfig& config, int64_t steps) {
  if (steps < 1 || steps > config.num_train_timesteps)
    throw std::invalid_argument("steps must be between 1 and " + std::to_string(config.num_train_timesteps) +
                                ", got " + std::to_string(steps));
}

// ---------------------------------------------------------------------------
// Tables (float32, as diffusers builds them with torch.linspace / torch.cumprod)

namespace {

// diffusers' rescale_zero_terminal_snr: shift and scale sqrt(alphas_cumprod) so its
// first value stays and its last becomes 0, then back to betas.
torch::Tensor rescale_zero_terminal_snr(const torch::Tensor& betas) {
  torch::Tensor alphas_bar_sqrt = torch::cumprod(1.0 - betas, 0).sqrt(); // [T]
  const torch::Tensor first = alphas_bar_sqrt[0].clone();
  const torch::Tensor last = alphas_bar_sqrt[-1].clone();
  alphas_bar_sqrt = (alphas_bar_sqrt - last) * (first / (first - last));
  const torch::Tensor alphas_bar = alphas_bar_sqrt.pow(2);
  const torch::Tensor alphas = torch::cat({alphas_bar.slice(0, 0, 1), alphas_bar.slice(0, 1) / alphas_bar.slice(0, 0, -1)});
  return 1.0 - alphas; // [T]
}

constexpr double kTerminalAlphaCumprod = 1.0 / 16777216.0; // 2^-24

} // namespace

torch::Tensor train_betas(const SchedulerConfig& config) {
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
  torch::Tensor betas;
  if (config.beta_schedule == "linear") {
    betas = torch::linspace(config.beta_start, config.beta_end, config.num_train_timesteps, f32); // [T]
  } else {
    // scaled_linear: linear in sqrt(beta), the schedule Stable Diffusion was trained with.
    betas = torch::linspace(std::sqrt(config.beta_start), std::sqrt(config.beta_end), config.num_train_timesteps, f32)
                .pow(2); // [T]
  }
  return config.rescale_betas_zero_snr ? rescale_zero_terminal_snr(betas) : betas;
}

torch::Tensor train_alphas_cumprod(const SchedulerConfig& config) {
  torch::Tensor alphas = 1.0 - train_betas(config); // [T]
  return torch::cumprod(alphas, 0);                  // [T]
}

torch::Tensor sampler_alphas_cumprod(const SchedulerConfig& config) {
  torch::Tensor alphas_cumprod = train_alphas_cumprod(config); // [T]
  if (config.rescale_betas_zero_snr) alphas_cumprod[-1] = kTerminalAlphaCumprod;
  return alphas_cumprod;
}

} // namespace sdxl::sample

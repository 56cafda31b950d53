// Random weights for a diffusers folder of configs: the service's built-in demo
// model, and test or benchmark models of any size.
#include <cmath>      // std::sqrt, std::log
#include <cstdint>    // uint64_t
#include <filesystem> // std::filesystem::path
#include <string>

#include <torch/torch.h>

#include "engine/model.h"      // read_folder_configs
#include "io/safetensors.h"    // io::save_safetensors
#include "models/clip.h"       // models::ClipTextModel
#include "models/unet.h"       // models::UNet2DConditionModel
#include "models/vae.h"        // models::AutoencoderKL
#include "sdxl/engine.h"       // RandomWeightsOptions, CancelFlag

namespace sdxl {

namespace fs = std::filesystem;

namespace {

// splitmix64: a tiny generator with a fixed definition, so a seed gives the same
// numbers with every libtorch on every machine (torch's generators make no such promise).
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  // Uniform in [-1, 1), from the top 53 bits.
  double symmetric() { return static_cast<double>(next() >> 11) * (2.0 / 9007199254740992.0) - 1.0; }

 private:
  uint64_t state_;
};

// FNV-1a of a parameter's name: each tensor gets its own stream, so adding a layer
// does not change the others.
uint64_t name_hash(const std::string& name) {
  uint64_t hash = 0xCBF29CE484222325ULL;
  for (unsigned char c : name) hash = (hash ^ c) * 0x100000001B3ULL;
  return hash;
}

// One parameter's values: layers (2-D and up) uniform in +-1/sqrt(fan_in), PyTorch's
// default scale, which keeps activations of the order of one through the network;
// 1-D weights are norm scales (1), biases 0.
torch::Tensor random_tensor(const std::string& name, const torch::Tensor& like, uint64_t seed) {
  torch::Tensor values = torch::empty(like.sizes(), torch::TensorOptions().dtype(torch::kFloat));
  const bool is_bias = name.size() >= 4 && name.compare(name.size() - 4, 4, "bias") == 0;
  if (like.dim() < 2) return is_bias ? values.zero_() : values.fill_(1.0);
  const double bound = 1.0 / std::sqrt(static_cast<double>(like.numel() / like.size(0))); // fan_in
  SplitMix64 generator(seed ^ name_hash(name));
  float* data = values.data_ptr<float>();
  for (int64_t i = 0; i < values.numel(); ++i) data[i] = static_cast<float>(bound * generator.symmetric());
  return values;
}

// Every parameter of `module`, drawn from `seed`, saved as one safetensors file.
void write_component(const torch::nn::Module& module, const fs::path& file, uint64_t seed,
                     const std::string& component, const CancelFlag& cancel) {
  io::TensorMap tensors;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) {
    throw_if_cancelled(cancel);
    tensors[item.key()] = random_tensor(component + "." + item.key(), item.value(), seed);
  }
  io::save_safetensors(file.string(), tensors, {{"format", "pt"}});
}

} // namespace

void write_random_weights(const RandomWeightsOptions& options, const CancelFlag& cancel) {
  const fs::path dir = options.model_dir;
  const ComponentConfigs configs = read_folder_configs(dir);
  const auto cpu = torch::TensorOptions().dtype(torch::kFloat);
  torch::NoGradGuard no_grad;
  write_component(*models::ClipTextModel(configs.text_encoder, cpu), dir / "text_encoder" / "model.safetensors",
                  options.seed, "text_encoder", cancel);
  if (configs.has_text_encoder_2())
    write_component(*models::ClipTextModel(configs.text_encoder_2, cpu), dir / "text_encoder_2" / "model.safetensors",
                    options.seed, "text_encoder_2", cancel);
  write_component(*models::UNet2DConditionModel(configs.unet, cpu), dir / "unet" / "diffusion_pytorch_model.safetensors",
                  options.seed, "unet", cancel);
  write_component(*models::AutoencoderKL(configs.vae, cpu), dir / "vae" / "diffusion_pytorch_model.safetensors",
                  options.seed, "vae", cancel);
}

} // namespace sdxl

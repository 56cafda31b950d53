// transformers' CLIPModel as the CLIP score uses it (torchmetrics CLIPScore, DreamBooth's
// CLIP-T and CLIP-I): the vision tower (a ViT with a class token, non-causal attention,
// post_layernorm on the class token, visual_projection), the text tower (models::
// ClipTextModel with its projection), the tokenizer and CLIPImageProcessor's
// preprocessing, all from one model folder (config.json, model.safetensors,
// preprocessor_config.json, tokenizer files). Key names are transformers':
// vision_model.embeddings.patch_embedding.weight, vision_model.pre_layrnorm.weight, ...
#pragma once

#include <array>   // std::array mean/std
#include <cstdint> // int64_t
#include <functional> // encode_images' encoder
#include <memory>  // std::shared_ptr
#include <string>
#include <vector>

#include <torch/torch.h> // torch::nn::Module, torch::Tensor

#include "io/tokenizer.h"   // ClipTokenizer
#include "models/clip.h"    // ClipTextModel, ClipEncoderLayer
#include "models/configs.h" // ClipEncoderConfig
#include "models/layers.h"  // LayerNorm, Linear, Embedding

namespace sdxl::metrics {

struct ClipVisionConfig : models::ClipEncoderConfig {
  int64_t image_size = 224;
  int64_t patch_size = 14;
  int64_t num_channels = 3;
  int64_t projection_dim = 768;
};

// An 8-bit image [3, H, W] resized with the antialiased bicubic filter as Pillow does it:
// the width, then the height, in fixed point, each pass rounded to 8 bits. `weight_bits`
// is the weights' precision: 22 is Pillow's own; 0 picks the most under 2^15 as torch's
// uint8 kernel (which torchvision and transformers' torchvision backend use) does.
torch::Tensor resize_8bit(const torch::Tensor& image, int64_t height, int64_t width, int weight_bits);

constexpr int kPillowWeightBits = 22;
constexpr int kTorchUint8WeightBits = 0;

// CLIPImageProcessor: resize the shortest edge to `shortest_edge` (resize_8bit), centre
// crop, x/255, normalise.
struct ClipImageProcessing {
  int64_t shortest_edge = 224;
  int64_t crop_height = 224;
  int64_t crop_width = 224;
  std::array<double, 3> mean{0.48145466, 0.4578275, 0.40821073}; // OpenAI's
  std::array<double, 3> std{0.26862954, 0.26130258, 0.27577711};
  int weight_bits = kTorchUint8WeightBits; // open_clip resizes with Pillow: kPillowWeightBits
};

// One uint8 RGB image [3, H, W] -> float32 [3, crop_height, crop_width].
torch::Tensor clip_image_input(const torch::Tensor& image_uint8, const ClipImageProcessing& processing);

// Images of any sizes through clip_image_input and `encode` ([n, 3, S, S] -> [n, D]) in
// batches, without autograd: [N, D] on the CPU.
torch::Tensor encode_images(const std::vector<torch::Tensor>& images_uint8, const ClipImageProcessing& processing,
                            const std::function<torch::Tensor(const torch::Tensor&)>& encode);

class ClipVisionModelImpl : public torch::nn::Module {
 public:
  ClipVisionModelImpl(const ClipVisionConfig& config, torch::TensorOptions options);
  // pixel_values [N, 3, S, S] -> {pooler_output [N, hidden], image_embeds [N, projection]}
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& pixel_values);

  torch::Tensor class_embedding;         // vision_model.embeddings.class_embedding [hidden]
  torch::Tensor patch_embedding;         // vision_model.embeddings.patch_embedding.weight [hidden, 3, p, p], no bias
  models::Embedding position_embedding{nullptr}; // vision_model.embeddings.position_embedding [patches + 1, hidden]
  models::LayerNorm pre_layrnorm{nullptr};       // (transformers' spelling)
  std::vector<models::ClipEncoderLayer> layers;  // vision_model.encoder.layers.N
  models::LayerNorm post_layernorm{nullptr};
  models::Linear visual_projection{nullptr};     // bias-free

 private:
  ClipVisionConfig config_;
};
TORCH_MODULE(ClipVisionModel);

// A CLIPModel folder loaded for scoring (float32, eval mode).
struct ClipModel {
  ClipVisionModel vision{nullptr};
  models::ClipTextModel text{nullptr};
  ClipImageProcessing processing;
  std::shared_ptr<io::ClipTokenizer> tokenizer;

  // Projected embeddings (not normalised): uint8 RGB images [3, H, W] (any sizes) ->
  // [N, projection]; prompts -> [P, projection].
  torch::Tensor image_embeds(const std::vector<torch::Tensor>& images_uint8);
  torch::Tensor text_embeds(const std::vector<std::string>& prompts);
};

// Throws std::runtime_error naming the folder and what is missing or wrong.
ClipModel load_clip_model(const std::string& dir, const torch::Device& device);

} // namespace sdxl::metrics

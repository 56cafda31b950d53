// An OpenCLIP model (open_clip's CLIP with a VisionTransformer and a TextTransformer) as
// HPSv2 scores with it: HPSv2.1 is OpenCLIP ViT-H-14 with fine-tuned weights, and its score
// is the cosine of the normalised image and prompt features. Loaded from an OpenCLIP model
// folder: open_clip_config.json (model_cfg and preprocess_cfg), open_clip_model.safetensors
// (open_clip's key names: visual.conv1.weight, visual.transformer.resblocks.N.attn.
// in_proj_weight, token_embedding.weight, text_projection, ...) and CLIP tokenizer files.
#pragma once

#include <cstdint> // int64_t
#include <memory>  // std::shared_ptr
#include <string>
#include <vector>

#include <torch/torch.h> // torch::nn::Module, torch::Tensor

#include "io/tokenizer.h"          // ClipTokenizer
#include "metrics/clip_model.h"    // ClipImageProcessing

namespace sdxl::metrics {

struct OpenClipConfig {
  int64_t embed_dim = 1024;
  bool quick_gelu = false; // model_cfg.quick_gelu; ViT-H-14 uses nn.GELU
  // vision_cfg
  int64_t image_size = 224;
  int64_t patch_size = 14;
  int64_t vision_width = 1280;
  int64_t vision_layers = 32;
  int64_t vision_head_width = 80; // heads = width / head_width
  double vision_mlp_ratio = 4.0;
  // text_cfg
  int64_t context_length = 77;
  int64_t vocab_size = 49408;
  int64_t text_width = 1024;
  int64_t text_heads = 16;
  int64_t text_layers = 24;
  double text_mlp_ratio = 4.0;
};

class OpenClipTowerImpl; // the shared transformer trunk of both towers

class OpenClipImpl : public torch::nn::Module {
 public:
  explicit OpenClipImpl(const OpenClipConfig& config);
  // Preprocessed pixels [N, 3, S, S] -> image features [N, embed_dim] (not normalised).
  torch::Tensor encode_image(const torch::Tensor& pixels);
  // Token ids [P, context_length] -> text features [P, embed_dim] (not normalised), pooled
  // at the first highest id (the end-of-text token, open_clip's "argmax" pooling).
  torch::Tensor encode_text(const torch::Tensor& tokens);

  const OpenClipConfig& config() const { return config_; }

 private:
  OpenClipConfig config_;
  // visual.*
  torch::Tensor conv1_, class_embedding_, visual_positions_, visual_proj_;
  torch::Tensor ln_pre_weight_, ln_pre_bias_, ln_post_weight_, ln_post_bias_;
  std::shared_ptr<OpenClipTowerImpl> visual_transformer_;
  // text
  torch::Tensor token_embedding_, text_positions_, text_projection_;
  torch::Tensor ln_final_weight_, ln_final_bias_;
  std::shared_ptr<OpenClipTowerImpl> text_transformer_;
};

struct OpenClipModel {
  std::shared_ptr<OpenClipImpl> network;
  ClipImageProcessing processing;
  std::shared_ptr<io::ClipTokenizer> tokenizer;

  // uint8 RGB images [3, H, W] (any sizes) -> [N, embed_dim]; prompts -> [P, embed_dim].
  torch::Tensor image_features(const std::vector<torch::Tensor>& images_uint8);
  torch::Tensor text_features(const std::vector<std::string>& prompts);
  // The prompt ids, [bos] + text + [eos], padded to context_length.
  torch::Tensor tokens(const std::vector<std::string>& prompts) const;
};

// Throws std::runtime_error naming the folder and what is missing or wrong.
OpenClipModel load_open_clip(const std::string& dir, const torch::Device& device);

} // namespace sdxl::metrics

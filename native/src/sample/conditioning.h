// What each model family conditions the UNet on (models::UNetConditioning), behind
// one interface that sampling, training and verify share:
//   SD 1.x / 2.x (StableDiffusionPipeline.encode_prompt): one tokenizer and CLIP text
//     encoder; the context is its last_hidden_state (the last layer after
//     final_layer_norm), or with clip skip N, final_layer_norm(hidden_states[-N]);
//     the unconditional branch is the encoded negative prompt, "" when there is none.
//   SDXL (StableDiffusionXLPipeline.encode_prompt): two tokenizers and encoders; the
//     context is both penultimate hidden states (no final norm) concatenated, te1 then
//     te2; text_embeds is text_encoder_2's projection; six size ids per image; an empty
//     negative prompt is zeros when the model says force_zeros_for_empty_prompt.
// Reference: diffusers pipelines/stable_diffusion/pipeline_stable_diffusion.py and
// pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl.py.
#pragma once

#include <cstdint> // int64_t
#include <memory>  // std::unique_ptr
#include <string>
#include <vector>

#include <torch/torch.h> // torch::Tensor

#include "io/tokenizer.h"   // io::ClipTokenizer
#include "models/clip.h"    // models::ClipTextModel, ClipTextOutput
#include "models/configs.h" // models::ModelFamily
#include "models/unet.h"    // models::UNetConditioning

namespace sdxl::sample {

// SDXL micro-conditioning: [orig_h, orig_w, crop_top, crop_left, target_h, target_w].
struct SizeConditioning {
  int64_t original_height = 1024;
  int64_t original_width = 1024;
  int64_t crop_top = 0;
  int64_t crop_left = 0;
  int64_t target_height = 1024;
  int64_t target_width = 1024;

  // The text-to-image default: original and target are the output size, no crop.
  static SizeConditioning for_output(int64_t height, int64_t width);
};
inline constexpr int64_t kTimeIdCount = 6;
torch::Tensor add_time_ids(const SizeConditioning& size, int64_t batch, torch::Dtype dtype,
                           const torch::Device& device); // [B, 6]

// Token ids of each prompt, framed as the pipelines frame them, as an int64 tensor. -> [B, 77]
torch::Tensor frame_prompts(const io::ClipTokenizer& tokenizer, const std::vector<std::string>& prompts,
                            const torch::Device& device);

// A pipeline's text side: tokenizer(s), text encoder(s) and the negative-prompt rule.
// The second pair is SDXL's; null for SD 1.x/2.x.
struct TextComponents {
  models::ModelFamily family = models::ModelFamily::Sdxl;
  const io::ClipTokenizer* tokenizer = nullptr;
  models::ClipTextModel text_encoder{nullptr};
  const io::ClipTokenizer* tokenizer_2 = nullptr;
  models::ClipTextModel text_encoder_2{nullptr};
  bool force_zeros_for_empty_prompt = false;
};

class TextConditioner {
 public:
  virtual ~TextConditioner() = default;

  // Framed token ids per tokenizer, on the encoders' device: one [B, 77] int64 tensor (two for SDXL).
  virtual std::vector<torch::Tensor> token_ids(const std::vector<std::string>& prompts) const = 0;
  // The text part of the UNet's conditioning (context; SDXL's text_embeds) from framed ids.
  // Autograd follows the caller's grad mode (trained text encoders).
  virtual models::UNetConditioning encode_ids(const std::vector<torch::Tensor>& ids) const = 0;
  models::UNetConditioning encode(const std::vector<std::string>& prompts) const {
    return encode_ids(token_ids(prompts));
  }
  // Classifier-free guidance's unconditional branch for `negative_prompts` (one per prompt
  // of `positive`).
  virtual models::UNetConditioning unconditional(const std::vector<std::string>& negative_prompts,
                                                 const models::UNetConditioning& positive) const = 0;
  // The per-image size ids the family's UNet takes: SDXL's [B, 6]; undefined for SD 1.x/2.x.
  virtual torch::Tensor size_ids(const SizeConditioning& size, int64_t batch, torch::Dtype dtype,
                                 const torch::Device& device) const = 0;
};

// The conditioner of `text`'s family. clip_skip (SD 1.x/2.x, AUTOMATIC1111's "Clip skip"):
// 0 or 1 = the last layer; N = final_layer_norm(hidden_states[-N]). Throws
// std::invalid_argument for clip_skip outside [0, layers] or any clip_skip with SDXL.
std::unique_ptr<TextConditioner> make_text_conditioner(const TextComponents& text, int64_t clip_skip = 0);

// Checks clip_skip against a family and its (first) text encoder's layer count, as make_text_conditioner does.
void check_clip_skip(models::ModelFamily family, int64_t clip_skip, int64_t text_encoder_layers);

// The hidden state SDXL conditions on: the penultimate layer's output (hidden_states[-2],
// no final layer norm).
inline constexpr int64_t kSdxlHiddenStateFromEnd = 2;

} // namespace sdxl::sample

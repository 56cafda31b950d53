// SDXL prompt encoding, as diffusers' StableDiffusionXLPipeline.encode_prompt
// does it: both tokenizers frame the prompt to 77 ids, both text encoders run
// with every hidden state, the UNet context is the concatenation of both
// penultimate hidden states and the pooled embedding is text_encoder_2's
// projected text_embeds. Also the micro-conditioning time ids.
// Reference: diffusers pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl.py.
#pragma once

#include <cstdint> // int64_t
#include <string>
#include <vector>

#include <torch/torch.h> // torch::Tensor

#include "io/tokenizer.h" // io::ClipTokenizer
#include "models/clip.h"  // models::ClipTextModel, ClipTextOutput

namespace sdxl::sample {

// The hidden state SDXL conditions on: the penultimate layer's output
// (hidden_states[-2], no final layer norm).
inline constexpr int64_t kSdxlHiddenStateFromEnd = 2;

struct PromptEncoding {
  models::ClipTextOutput text_encoder;   // text_encoder/ outputs
  models::ClipTextOutput text_encoder_2; // text_encoder_2/ outputs (with text_embeds)
  torch::Tensor prompt_embeds;           // [B, 77, te1_hidden + te2_hidden]
  torch::Tensor pooled_prompt_embeds;    // [B, projection_dim]
};

// Token ids of each prompt, framed by SDXL's rule, as an int64 tensor. -> [B, 77]
torch::Tensor frame_prompts(const io::ClipTokenizer& tokenizer, const std::vector<std::string>& prompts,
                            const torch::Device& device);

// Runs both encoders on already framed ids. ids [B, 77] int64 each.
PromptEncoding encode_token_ids(models::ClipTextModel& text_encoder, models::ClipTextModel& text_encoder_2,
                                const torch::Tensor& input_ids, const torch::Tensor& input_ids_2);

// Tokenizes and encodes a batch of prompts on the encoders' device.
PromptEncoding encode_prompts(const io::ClipTokenizer& tokenizer, const io::ClipTokenizer& tokenizer_2,
                              models::ClipTextModel& text_encoder, models::ClipTextModel& text_encoder_2,
                              const std::vector<std::string>& prompts);

// The unconditional branch of classifier-free guidance: zeros shaped like the
// prompt's embeddings when the negative prompt is empty and the model says
// force_zeros_for_empty_prompt (SDXL-base does), else the encoded negative prompt.
struct NegativeEmbeddings {
  torch::Tensor prompt_embeds;        // [B, 77, te1_hidden + te2_hidden]
  torch::Tensor pooled_prompt_embeds; // [B, projection_dim]
};
NegativeEmbeddings encode_negative_prompts(const io::ClipTokenizer& tokenizer, const io::ClipTokenizer& tokenizer_2,
                                           models::ClipTextModel& text_encoder,
                                           models::ClipTextModel& text_encoder_2,
                                           const std::vector<std::string>& negative_prompts,
                                           const PromptEncoding& positive, bool force_zeros_for_empty_prompt);

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

} // namespace sdxl::sample

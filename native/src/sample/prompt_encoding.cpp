// SDXL prompt encoding: two tokenizers, two CLIP text encoders, one context.
#include "sample/prompt_encoding.h"

#include <stdexcept> // std::invalid_argument

namespace sdxl::sample {

namespace {

// The model's device, read off its first parameter.
torch::Device module_device(const torch::nn::Module& module) {
  const auto parameters = module.parameters();
  return parameters.empty() ? torch::Device(torch::kCPU) : parameters.front().device();
}

// hidden_states[-2]: the penultimate encoder layer's output.
const torch::Tensor& penultimate(const models::ClipTextOutput& output) {
  const auto count = static_cast<int64_t>(output.hidden_states.size());
  if (count < kSdxlHiddenStateFromEnd) throw std::runtime_error("text encoder returned too few hidden states");
  return output.hidden_states[count - kSdxlHiddenStateFromEnd];
}

} // namespace

// ---------------------------------------------------------------------------
// Tokens

torch::Tensor frame_prompts(const io::ClipTokenizer& tokenizer, const std::vector<std::string>& prompts,
                            const torch::Device& device) {
  std::vector<int64_t> ids;
  ids.reserve(prompts.size() * io::ClipTokenizer::kSdxlMaxLength);
  for (const auto& prompt : prompts) {
    const std::vector<int64_t> framed = tokenizer.frame_sdxl(prompt);
    ids.insert(ids.end(), framed.begin(), framed.end());
  }
  const auto batch = static_cast<int64_t>(prompts.size());
  return torch::tensor(ids, torch::TensorOptions().dtype(torch::kInt64))
      .reshape({batch, io::ClipTokenizer::kSdxlMaxLength})
      .to(device); // [B, 77]
}

// ---------------------------------------------------------------------------
// Encoders

PromptEncoding encode_token_ids(models::ClipTextModel& text_encoder, models::ClipTextModel& text_encoder_2,
                                const torch::Tensor& input_ids, const torch::Tensor& input_ids_2) {
  PromptEncoding encoding;
  encoding.text_encoder = text_encoder->forward(input_ids);       // hidden [B, 77, te1_hidden]
  encoding.text_encoder_2 = text_encoder_2->forward(input_ids_2); // hidden [B, 77, te2_hidden]
  if (!encoding.text_encoder_2.text_embeds.defined())
    throw std::runtime_error("text_encoder_2 has no text_projection: SDXL needs CLIPTextModelWithProjection");
  // Concatenation order is te1 then te2, as the UNet's cross-attention was trained.
  encoding.prompt_embeds =
      torch::cat({penultimate(encoding.text_encoder), penultimate(encoding.text_encoder_2)}, -1); // [B, 77, h1+h2]
  encoding.pooled_prompt_embeds = encoding.text_encoder_2.text_embeds;                         // [B, proj]
  return encoding;
}

PromptEncoding encode_prompts(const io::ClipTokenizer& tokenizer, const io::ClipTokenizer& tokenizer_2,
                              models::ClipTextModel& text_encoder, models::ClipTextModel& text_encoder_2,
                              const std::vector<std::string>& prompts) {
  const torch::Tensor ids = frame_prompts(tokenizer, prompts, module_device(*text_encoder));       // [B, 77]
  const torch::Tensor ids_2 = frame_prompts(tokenizer_2, prompts, module_device(*text_encoder_2)); // [B, 77]
  return encode_token_ids(text_encoder, text_encoder_2, ids, ids_2);
}

NegativeEmbeddings encode_negative_prompts(const io::ClipTokenizer& tokenizer, const io::ClipTokenizer& tokenizer_2,
                                           models::ClipTextModel& text_encoder,
                                           models::ClipTextModel& text_encoder_2,
                                           const std::vector<std::string>& negative_prompts,
                                           const PromptEncoding& positive, bool force_zeros_for_empty_prompt) {
  bool all_empty = true;
  for (const auto& prompt : negative_prompts) all_empty = all_empty && prompt.empty();
  if (force_zeros_for_empty_prompt && all_empty)
    return {torch::zeros_like(positive.prompt_embeds), torch::zeros_like(positive.pooled_prompt_embeds)};
  const PromptEncoding negative =
      encode_prompts(tokenizer, tokenizer_2, text_encoder, text_encoder_2, negative_prompts);
  return {negative.prompt_embeds, negative.pooled_prompt_embeds};
}

// ---------------------------------------------------------------------------
// Micro-conditioning

SizeConditioning SizeConditioning::for_output(int64_t height, int64_t width) {
  SizeConditioning size;
  size.original_height = size.target_height = height;
  size.original_width = size.target_width = width;
  return size;
}

torch::Tensor add_time_ids(const SizeConditioning& size, int64_t batch, torch::Dtype dtype,
                           const torch::Device& device) {
  const std::vector<double> ids = {static_cast<double>(size.original_height), static_cast<double>(size.original_width),
                                   static_cast<double>(size.crop_top),        static_cast<double>(size.crop_left),
                                   static_cast<double>(size.target_height),   static_cast<double>(size.target_width)};
  return torch::tensor(ids, torch::TensorOptions().dtype(torch::kFloat64))
      .to(device, dtype)
      .reshape({1, kTimeIdCount})
      .repeat({batch, 1}); // [B, 6]
}

} // namespace sdxl::sample

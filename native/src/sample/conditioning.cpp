// Each family's text conditioning of the UNet; see conditioning.h.
#include "sample/conditioning.h"

#include <stdexcept> // std::invalid_argument

namespace sdxl::sample {

namespace {

using models::ModelFamily;
using models::UNetConditioning;

// The model's device, read off its first parameter.
torch::Device module_device(const torch::nn::Module& module) {
  const auto parameters = module.parameters();
  return parameters.empty() ? torch::Device(torch::kCPU) : parameters.front().device();
}

bool all_empty(const std::vector<std::string>& prompts) {
  for (const auto& prompt : prompts)
    if (!prompt.empty()) return false;
  return true;
}

// hidden_states[-n] of an encoder's output.
const torch::Tensor& hidden_state_from_end(const models::ClipTextOutput& output, int64_t n) {
  const auto count = static_cast<int64_t>(output.hidden_states.size());
  if (count < n) throw std::runtime_error("text encoder returned too few hidden states");
  return output.hidden_states[count - n];
}

// ---------------------------------------------------------------------------
// SD 1.x / 2.x: one encoder, its last hidden state (or clip skip's earlier one)

class SingleEncoderConditioner : public TextConditioner {
 public:
  SingleEncoderConditioner(const TextComponents& text, int64_t clip_skip) : text_(text), clip_skip_(clip_skip) {}

  std::vector<torch::Tensor> token_ids(const std::vector<std::string>& prompts) const override {
    return {frame_prompts(*text_.tokenizer, prompts, module_device(*text_.text_encoder))};
  }

  UNetConditioning encode_ids(const std::vector<torch::Tensor>& ids) const override {
    models::ClipTextModel encoder = text_.text_encoder;
    const models::ClipTextOutput output = encoder->forward(ids.at(0)); // [B, 77, hidden]
    UNetConditioning conditioning;
    // Clip skip 1 is the last layer: last_hidden_state itself, bit for bit.
    conditioning.context = clip_skip_ <= 1 ? output.last_hidden_state
                                           : encoder->final_layer_norm(hidden_state_from_end(output, clip_skip_));
    return conditioning;
  }

  UNetConditioning unconditional(const std::vector<std::string>& negative_prompts,
                                 const UNetConditioning&) const override {
    return encode(negative_prompts); // "" is encoded too: StableDiffusionPipeline never zeros it
  }

  torch::Tensor size_ids(const SizeConditioning&, int64_t, torch::Dtype, const torch::Device&) const override {
    return {};
  }

 private:
  TextComponents text_;
  int64_t clip_skip_;
};

// ---------------------------------------------------------------------------
// SDXL: two encoders' penultimate states, the second's projection, size ids

class SdxlConditioner : public TextConditioner {
 public:
  explicit SdxlConditioner(const TextComponents& text) : text_(text) {}

  std::vector<torch::Tensor> token_ids(const std::vector<std::string>& prompts) const override {
    return {frame_prompts(*text_.tokenizer, prompts, module_device(*text_.text_encoder)),
            frame_prompts(*text_.tokenizer_2, prompts, module_device(*text_.text_encoder_2))};
  }

  UNetConditioning encode_ids(const std::vector<torch::Tensor>& ids) const override {
    models::ClipTextModel encoder = text_.text_encoder, encoder_2 = text_.text_encoder_2;
    const models::ClipTextOutput first = encoder->forward(ids.at(0));    // hidden [B, 77, te1_hidden]
    const models::ClipTextOutput second = encoder_2->forward(ids.at(1)); // hidden [B, 77, te2_hidden]
    if (!second.text_embeds.defined())
      throw std::runtime_error("text_encoder_2 has no text_projection: SDXL needs CLIPTextModelWithProjection");
    UNetConditioning conditioning;
    // Concatenation order is te1 then te2, as the UNet's cross-attention was trained.
    conditioning.context = torch::cat({hidden_state_from_end(first, kSdxlHiddenStateFromEnd),
                                       hidden_state_from_end(second, kSdxlHiddenStateFromEnd)},
                                      -1);                 // [B, 77, h1 + h2]
    conditioning.text_embeds = second.text_embeds;         // [B, proj]
    return conditioning;
  }

  UNetConditioning unconditional(const std::vector<std::string>& negative_prompts,
                                 const UNetConditioning& positive) const override {
    if (text_.force_zeros_for_empty_prompt && all_empty(negative_prompts)) {
      UNetConditioning zeros;
      zeros.context = torch::zeros_like(positive.context);
      zeros.text_embeds = torch::zeros_like(positive.text_embeds);
      return zeros;
    }
    return encode(negative_prompts);
  }

  torch::Tensor size_ids(const SizeConditioning& size, int64_t batch, torch::Dtype dtype,
                         const torch::Device& device) const override {
    return add_time_ids(size, batch, dtype, device);
  }

 private:
  TextComponents text_;
};

} // namespace

// ---------------------------------------------------------------------------
// Tokens and size ids

torch::Tensor frame_prompts(const io::ClipTokenizer& tokenizer, const std::vector<std::string>& prompts,
                            const torch::Device& device) {
  std::vector<int64_t> ids;
  ids.reserve(prompts.size() * io::ClipTokenizer::kMaxLength);
  for (const auto& prompt : prompts) {
    const std::vector<int64_t> framed = tokenizer.frame(prompt);
    ids.insert(ids.end(), framed.begin(), framed.end());
  }
  const auto batch = static_cast<int64_t>(prompts.size());
  return torch::tensor(ids, torch::TensorOptions().dtype(torch::kInt64))
      .reshape({batch, io::ClipTokenizer::kMaxLength})
      .to(device); // [B, 77]
}

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

// ---------------------------------------------------------------------------
// Conditioners

void check_clip_skip(ModelFamily family, int64_t clip_skip, int64_t text_encoder_layers) {
  if (clip_skip == 0) return;
  if (family == ModelFamily::Sdxl)
    throw std::invalid_argument("clip_skip applies to SD 1.x and 2.x models; SDXL always conditions on its text "
                                "encoders' penultimate layers (leave clip_skip out)");
  if (clip_skip < 0 || clip_skip > text_encoder_layers)
    throw std::invalid_argument("Expected clip_skip between 1 and " + std::to_string(text_encoder_layers) +
                                " (the text encoder's layers) but received " + std::to_string(clip_skip));
}

std::unique_ptr<TextConditioner> make_text_conditioner(const TextComponents& text, int64_t clip_skip) {
  if (text.tokenizer == nullptr || text.text_encoder.is_empty())
    throw std::logic_error("make_text_conditioner: the model's text encoder is not loaded");
  check_clip_skip(text.family, clip_skip, text.text_encoder->config().num_hidden_layers);
  if (text.family != ModelFamily::Sdxl) return std::make_unique<SingleEncoderConditioner>(text, clip_skip);
  if (text.tokenizer_2 == nullptr || text.text_encoder_2.is_empty())
    throw std::logic_error("make_text_conditioner: an SDXL model needs text_encoder_2");
  return std::make_unique<SdxlConditioner>(text);
}

} // namespace sdxl::sample

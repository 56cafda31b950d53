// The trainable LoRA network: one float32 LoraSlot per targeted Linear of the
// UNet (and optionally the text encoders: one for SD 1.x/2.x, two for SDXL), initialised as peft does
// (LoraLayer.reset_lora_parameters: A = kaiming_uniform_(a=sqrt(5)), i.e.
// U(-1/sqrt(in), 1/sqrt(in)); B = 0; scale = alpha / rank), so the models'
// output is unchanged until B moves. The slots hold the master weights in
// float32 whatever dtype the frozen base runs in; LinearImpl::forward casts.
//
// The network owns its tensors and keeps the adapted Linears alive; the
// trainer reads parameters from here, checkpoints state() and writes the
// finished adapter with save_trained_lora (kohya SGM names or peft).
#pragma once

#include <torch/torch.h> // torch::Tensor, torch::nn::Module, at::Generator

#include <cstdint> // int64_t
#include <map>     // state dictionaries, header metadata
#include <memory>  // std::shared_ptr<models::LinearImpl>
#include <string>
#include <vector>

#include "io/key_conversion.h" // io::UNetLayout
#include "lora/lora_file.h"    // lora::LoraModule, lora::LoraLayout
#include "models/layers.h"     // models::LinearImpl

namespace sdxl::train {

struct LoraNetworkOptions {
  int64_t rank = 16;
  double alpha = 16;  // scale = alpha / rank
  double dropout = 0; // on the low-rank input, training only; [0, 1)
  // Module-path suffixes at a '.' boundary: "to_q" matches "...attn1.to_q".
  std::vector<std::string> unet_targets{"to_q", "to_k", "to_v", "to_out.0"};
  bool text_encoders = false; // also adapt text_encoder (and SDXL's text_encoder_2)
  std::vector<std::string> text_encoder_targets{"q_proj", "k_proj", "v_proj", "out_proj"};
};

class LoraNetwork {
 public:
  // Adds one trainable slot to every targeted Linear, components in the order
  // unet, text_encoder, text_encoder_2 and modules in named_modules() order, A
  // drawn from `generator` (a CPU generator: the same seed gives the same
  // network on every device) and then moved to the module's device.
  // text_encoder_2 may be null (SD 1.x/2.x). Throws std::invalid_argument (changing
  // nothing) for rank <= 0, alpha <= 0, dropout outside [0, 1), a target that matches
  // no Linear (named, with its component), or text_encoders without a text encoder;
  // std::logic_error when already attached.
  void attach(torch::nn::Module& unet, torch::nn::Module* text_encoder, torch::nn::Module* text_encoder_2,
              const LoraNetworkOptions& options, at::Generator& generator);

  // Removes exactly the slots attach() added (other slots, e.g. inference
  // LoRAs, stay) and lets go of the modules. The tensors stay: parameters,
  // modules(), state() and save_trained_lora still work; attach() again starts
  // a new network.
  void detach();

  // Sets the generator every slot of this network draws its dropout masks from
  // (models::LoraSlot::generator; one on the modules' device). Until called,
  // slots use the default generator of their device.
  void set_dropout_generator(const at::Generator& generator);

  bool attached() const { return attached_; }
  const LoraNetworkOptions& options() const { return options_; }
  int64_t module_count() const { return static_cast<int64_t>(entries_.size()); }

  // The trainable tensors (down, up per module, in attach order).
  std::vector<torch::Tensor> unet_parameters() const;
  std::vector<torch::Tensor> text_encoder_parameters() const; // every text encoder's
  std::vector<torch::Tensor> parameters_of(const std::string& component) const; // "unet", "text_encoder", ...
  int64_t trainable_parameter_count() const;

  // CPU copies in `save_dtype`, for lora::save_lora_file.
  std::vector<lora::LoraModule> modules(torch::Dtype save_dtype) const;

  // "<component>:<module_path>.down" / ".up" -> float32 CPU copies (checkpoints).
  std::map<std::string, torch::Tensor> state() const;
  // Copies values into the network's tensors in place (the slots keep them).
  // Exact: throws std::invalid_argument naming a missing, unexpected or
  // mis-shaped key, before changing anything.
  void load_state(const std::map<std::string, torch::Tensor>& state);

 private:
  struct Entry {
    std::string component;   // "unet", "text_encoder" or "text_encoder_2"
    std::string module_path; // the Linear's path inside its model
    std::shared_ptr<models::LinearImpl> linear; // null after detach()
    bool pointwise_conv = false;                // the Linear is a 1x1 conv (SD 1.x proj_in / proj_out)
    torch::Tensor down; // [r, in] float32, requires_grad
    torch::Tensor up;   // [out, r] float32, requires_grad
  };
  std::vector<Entry> entries_;
  LoraNetworkOptions options_;
  bool attached_ = false;
};

// Writes the network as a LoRA file (kohya with SGM or diffusers names, or
// peft), tensors in `save_dtype`, `metadata` merged into the header after the
// layout's own entries; `single_text_encoder` as lora::save_lora_file. lora::save_lora_file writes through
// io::save_safetensors, which writes a temporary file and renames it, so a
// crash never leaves a half-written adapter at `path`.
void save_trained_lora(const std::string& path, const LoraNetwork& network, lora::LoraLayout layout,
                       const io::UNetLayout& unet_layout, torch::Dtype save_dtype,
                       const std::map<std::string, std::string>& metadata, bool single_text_encoder = false);

} // namespace sdxl::train

// LoRA adapter files in the three layouts users exchange, read into one
// normalized list of (component, diffusers module path, down, up, alpha):
//   kohya, SGM block names:      lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_down.weight
//                                (+ .lora_up.weight, .alpha) — what ComfyUI / AUTOMATIC1111 use for SDXL;
//   kohya, diffusers names:      lora_unet_down_blocks_1_attentions_0_..._attn1_to_q.lora_down.weight
//                                (sd-scripts' SD 1.x/2.x layout);
//   peft / diffusers:            unet.down_blocks.1...attn1.to_q.lora_A.weight / .lora_B.weight,
//                                alpha in __metadata__["lora_adapter_metadata"] ("unet.lora_alpha").
// Text encoders: kohya lora_te1_* / lora_te2_* (SDXL) or lora_te_* (SD 1.x/2.x), peft
// text_encoder.* / text_encoder_2.*. Adapters of SD 1.x's 1x1-conv proj_in / proj_out
// are stored as 1x1 convolutions ([r, in, 1, 1] / [out, r, 1, 1]) and read as matrices.
//
// Kohya names replace every '.' by '_', which is ambiguous (to_out_0, ff_net_0_proj,
// transformer_blocks); names are resolved against the module paths the target
// models really have, never by string heuristics.
#pragma once

#include <cstdint> // int64_t
#include <map>     // std::map header metadata
#include <string>
#include <vector>

#include "io/key_conversion.h" // io::UNetLayout

namespace sdxl::lora {

// The Linear module paths (diffusers names) each model has; LoRA names are
// matched against these. Text-encoder paths may or may not start with "text_model.".
struct LoraTargets {
  std::vector<std::string> unet;
  std::vector<std::string> text_encoder;
  std::vector<std::string> text_encoder_2;
};

enum class LoraLayout { KohyaSgm, KohyaDiffusers, Peft };
const char* to_string(LoraLayout layout);

struct LoraModule {
  std::string component;   // "unet", "text_encoder" or "text_encoder_2"
  std::string module_path; // the target's own path, e.g. "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"
  torch::Tensor down;      // [r, in]  (kohya lora_down, peft lora_A), as stored
  torch::Tensor up;        // [out, r] (kohya lora_up,   peft lora_B), as stored
  double alpha = 0;        // scale at weight 1 is alpha / rank
  int64_t rank = 0;
  std::string down_key;    // the file's keys of down and up, for messages; empty when built in memory
  std::string up_key;
  bool pointwise_conv = false; // the target is a 1x1 Conv2d: files hold down and up as 1x1 convolutions
};

struct LoraFile {
  std::string path;
  LoraLayout layout = LoraLayout::Peft;
  std::vector<LoraModule> modules; // sorted by (component, module_path)
};

// Reads a LoRA .safetensors file. Throws std::invalid_argument with every
// unrecognised or unmatched key listed, or when a module lacks half of its pair or
// its down/up shapes disagree. When `problems` is given, those are described there
// instead (one line each, naming the key) and left out of the result, so a check can
// report them all. A file that is not safetensors, or holds no lora_down / lora_A
// keys, always throws std::invalid_argument.
LoraFile load_lora_file(const std::string& path, const LoraTargets& targets,
                        std::vector<std::string>* problems = nullptr);

// Writes modules in one of the layouts (what the trainer saves: KohyaSgm for SDXL,
// KohyaDiffusers for SD 1.x/2.x, as sd-scripts writes them). `unet_layout` names UNet
// blocks for KohyaSgm; `single_text_encoder` names kohya text-encoder modules lora_te_
// (SD 1.x/2.x) instead of lora_te1_ / lora_te2_. Text-encoder paths are written with
// transformers' "text_model." prefix, as kohya (lora_te1_text_model_...) and diffusers do. Tensors are saved as given
// (contiguous CPU copies); kohya alphas as 0-dim float32. `metadata` is merged
// into the header after the layout's own entries (ss_network_dim/alpha or
// lora_adapter_metadata).
void save_lora_file(const std::string& path, const std::vector<LoraModule>& modules, LoraLayout layout,
                    const io::UNetLayout& unet_layout, const std::map<std::string, std::string>& metadata = {},
                    bool single_text_encoder = false);

} // namespace sdxl::lora

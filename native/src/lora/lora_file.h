// LoRA adapter files in the three layouts users exchange, read into one
// normalized list of (component, diffusers module path, down, up, alpha):
//   kohya, SGM block names:      lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_down.weight
//                                (+ .lora_up.weight, .alpha) — what ComfyUI / AUTOMATIC1111 use;
//   kohya, diffusers names:      lora_unet_down_blocks_1_attentions_0_..._attn1_to_q.lora_down.weight;
//   peft / diffusers:            unet.down_blocks.1...attn1.to_q.lora_A.weight / .lora_B.weight,
//                                alpha in __metadata__["lora_adapter_metadata"] ("unet.lora_alpha").
// Text encoders: kohya lora_te1_* / lora_te2_*, peft text_encoder.* / text_encoder_2.*.
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

// Writes modules in one of the layouts (what the trainer saves; KohyaSgm is what
// ComfyUI / AUTOMATIC1111 read). `unet_layout` names UNet blocks for KohyaSgm.
// Text-encoder paths are written with transformers' "text_model." prefix, as
// kohya (lora_te1_text_model_...) and diffusers do. Tensors are saved as given
// (contiguous CPU copies); kohya alphas as 0-dim float32. `metadata` is merged
// into the header after the layout's own entries (ss_network_dim/alpha or
// lora_adapter_metadata).
void save_lora_file(const std::string& path, const std::vector<LoraModule>& modules, LoraLayout layout,
                    const io::UNetLayout& unet_layout, const std::map<std::string, std::string>& metadata = {});

} // namespace sdxl::lora

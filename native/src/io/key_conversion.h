// The one place that converts between state-dict key layouts:
//   single files <-> diffusers folders:
//     SGM (SDXL, sd_xl_base_1.0.safetensors: model.diffusion_model.*,
//       first_stage_model.*, conditioner.embedders.{0,1}.*),
//     LDM (SD 1.x, v1-5-pruned-emaonly.safetensors: model.diffusion_model.*,
//       first_stage_model.*, cond_stage_model.transformer.*);
//   UNet module paths, diffusers <-> SGM/LDM block names (the same numbering in both).
// Kohya LoRA files name UNet modules either way, so the UNet module-path
// mapping is public too (lora/lora_file.cpp uses it).
//
// Where each mapping is defined:
//   UNet, VAE, text encoders: diffusers
//     scripts/convert_diffusers_to_original_sdxl.py and
//     scripts/convert_diffusers_to_original_stable_diffusion.py (unet_conversion_map*,
//     vae_conversion_map*, textenc_conversion_lst) and
//     src/diffusers/loaders/single_file_utils.py (convert_ldm_unet_checkpoint,
//     convert_ldm_vae_checkpoint, convert_ldm_clip_checkpoint, convert_open_clip_checkpoint,
//     infer_diffusers_model_type);
//   the same UNet table in kohya-ss/sd-scripts library/sdxl_model_util.py
//     (make_unet_conversion_map);
//   OpenCLIP names: mlfoundations/open_clip src/open_clip/transformer.py.
#pragma once

#include <cstdint> // int64_t
#include <string>
#include <vector>

#include "io/safetensors.h" // sdxl::io::TensorMap
#include "models/configs.h" // models::UNetConfig, VaeConfig, ClipTextConfig

namespace sdxl::io {

// ----------------------------------------------------------------------------
// UNet block layout: all the SGM <-> diffusers UNet mapping depends on.

struct UNetLayout {
  std::vector<int> layers_per_block{2, 2, 2};              // resnets per down level; up level i has
                                                           // layers_per_block[levels-1-i] + 1
  std::vector<bool> down_has_attention{false, true, true}; // per down level (CrossAttnDownBlock2D)
  std::vector<bool> up_has_attention{true, true, false};   // per up level, in up order (CrossAttnUpBlock2D)
  bool added_embedding = true;                             // SDXL's add_embedding (SGM label_emb)
  int levels() const { return static_cast<int>(layers_per_block.size()); }

  static UNetLayout sdxl_base() { return UNetLayout{}; }
  static UNetLayout from_config(const models::UNetConfig& config);
  // Reads the layout off diffusers keys or module paths (down_blocks.N.resnets.M..., attentions);
  // every resnet has a time_emb_proj Linear, so Linear module paths suffice.
  static UNetLayout from_diffusers_keys(const std::vector<std::string>& keys);
};

// A diffusers UNet module path or parameter key ("down_blocks.1.attentions.0.proj_in",
// "down_blocks.0.resnets.1.time_emb_proj.weight") to its SGM name without the
// "model.diffusion_model." prefix ("input_blocks.4.1.proj_in",
// "input_blocks.2.0.emb_layers.1.weight"); and back. Throws std::invalid_argument
// for a path the layout has no block for.
std::string unet_diffusers_to_sgm(const std::string& diffusers_path, const UNetLayout& layout);
std::string unet_sgm_to_diffusers(const std::string& sgm_path, const UNetLayout& layout);

// ----------------------------------------------------------------------------
// Single files (SGM, LDM) -> diffusers components

// The prefixes of each component: the UNet and VAE are named alike in both layouts.
inline constexpr const char* kSgmUNetPrefix = "model.diffusion_model.";
inline constexpr const char* kSgmVaePrefix = "first_stage_model.";
inline constexpr const char* kSgmTextEncoderPrefix = "conditioner.embedders.0.transformer.";
inline constexpr const char* kSgmTextEncoder2Prefix = "conditioner.embedders.1.model.";
inline constexpr const char* kLdmTextEncoderPrefix = "cond_stage_model.transformer.";   // SD 1.x: CLIP ViT-L
inline constexpr const char* kLdmOpenClipPrefix = "cond_stage_model.model.";           // SD 2.x: OpenCLIP-H

// What a single file's keys say it is: its family and layout, and the markers some
// SDXL v-prediction fine-tunes carry (empty "v_pred" and "ztsnr" tensors, read by ComfyUI).
struct SingleFileKind {
  models::ModelFamily family = models::ModelFamily::Sdxl;
  std::string layout;                // "sgm-single-file" (SDXL) or "ldm-single-file" (SD 1.x)
  bool v_prediction_marker = false;  // a "v_pred" key
  bool zero_terminal_snr_marker = false; // a "ztsnr" key
};

// Throws std::invalid_argument naming the key prefixes found when the keys are of no
// family this engine loads (an SD 2.x LDM file, a LoRA, a VAE alone, ...).
SingleFileKind single_file_kind(const std::vector<std::string>& keys, const std::string& file_name);

// Keys come out as diffusers writes them today: unet/vae as in their
// diffusion_pytorch_model.safetensors; text_encoder without the "text_model."
// prefix (transformers 5 layout, as tiny-sdxl/text_encoder/); text_encoder_2
// with it ("text_model.*", "text_projection.weight"). Tensors keep their dtype;
// VAE attention 1x1 conv weights are reshaped to Linear [C, C], OpenCLIP's fused
// in_proj is split into q/k/v and text_projection is transposed to [proj, hidden].
// SD 1.x's 1x1-conv proj_in / proj_out stay [C, C, 1, 1], as diffusers keeps them.
struct SplitCheckpoint {
  TensorMap unet, vae, text_encoder, text_encoder_2; // text_encoder_2 empty for SD 1.x
};

struct SingleFileExpectations {
  models::ModelFamily family = models::ModelFamily::Sdxl;
  UNetLayout unet = UNetLayout::sdxl_base();
  int vae_levels = 4;             // len(vae block_out_channels)
  int text_encoder_layers = 12;   // CLIP ViT-L; -1: take what the file has
  int text_encoder_2_layers = 32; // OpenCLIP bigG (SDXL only); -1: take what the file has

  // text_encoder_2 is ignored for SD 1.x.
  static SingleFileExpectations from_configs(models::ModelFamily family, const models::UNetConfig& unet,
                                             const models::VaeConfig& vae, const models::ClipTextConfig& text_encoder,
                                             const models::ClipTextConfig& text_encoder_2);
};

// Throws std::invalid_argument listing every key it does not recognise, and
// when the file's block or layer counts disagree with the expectations.
// Entries without weights (logit_scale, position_ids, LDM's DDPM schedule buffers,
// the EMA copy of a non-pruned file, SDXL's v_pred / ztsnr markers) are dropped.
SplitCheckpoint split_single_file(const TensorMap& tensors, const SingleFileExpectations& expect);

// ----------------------------------------------------------------------------
// Diffusers components -> single file

// The inverse of split_single_file: the components as the family's official single file
// names them (SGM for SDXL, LDM for SD 1.x). Text-encoder keys may come with or without
// "text_model." and come out with it; VAE mid-attention q/k/v/proj_out go back to 1x1 conv
// weights [C, C, 1, 1], OpenCLIP's q/k/v are fused into in_proj and text_projection is
// stored [hidden, proj]. Tensors keep their dtype and values (results are contiguous);
// position_ids buffers are dropped. Reads expect.family, .unet and .vae_levels. Throws
// std::invalid_argument listing keys it cannot place, when the UNet lacks a block of its
// layout, and for SD 2.x (its single files are refused on load).
TensorMap join_single_file(const SplitCheckpoint& components, const SingleFileExpectations& expect);

} // namespace sdxl::io

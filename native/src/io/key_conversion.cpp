// SGM single file <-> diffusers key layouts (see key_conversion.h for the
// sources of each mapping).
#include "io/key_conversion.h"

#include <algorithm> // std::max, std::find
#include <cstdlib>   // std::strtol
#include <map>       // std::map block tables
#include <set>       // std::set of layer indices
#include <sstream>   // std::ostringstream error messages
#include <stdexcept> // std::invalid_argument

namespace sdxl::io {
namespace {

// At most this many offending keys are named in one error message.
constexpr size_t kMaxKeysInError = 40;

bool starts_with(const std::string& text, const std::string& prefix) {
  return text.compare(0, prefix.size(), prefix) == 0;
}

// `path` is `prefix` itself or `prefix` followed by ".rest".
bool has_path_prefix(const std::string& path, const std::string& prefix) {
  return starts_with(path, prefix) && (path.size() == prefix.size() || path[prefix.size()] == '.');
}

std::vector<std::string> split_dots(const std::string& path) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    parts.push_back(path.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) return parts;
    start = dot + 1;
  }
}

// A non-negative decimal index, or -1.
int parse_index(const std::string& text) {
  if (text.empty() || text.size() > 6) return -1;
  for (const char c : text)
    if (c < '0' || c > '9') return -1;
  return static_cast<int>(std::strtol(text.c_str(), nullptr, 10));
}

std::string list_keys(const std::vector<std::string>& keys) {
  std::ostringstream out;
  for (size_t i = 0; i < keys.size() && i < kMaxKeysInError; ++i) out << (i ? ", " : "") << keys[i];
  if (keys.size() > kMaxKeysInError) out << " ... (" << keys.size() << " in all)";
  return out.str();
}

// ----------------------------------------------------------------------------
// UNet: block table
//
// SGM numbers the UNet's blocks sequentially: input_blocks.0 is conv_in, then per
// down level each resnet (+ its transformer at .1) and the downsampler; the
// middle block is resnet / transformer / resnet; output_blocks count the up
// levels' resnets (+ transformer at .1, upsampler at .1 or .2 after the last).

struct UNetBlock {
  std::string diffusers; // "down_blocks.1.resnets.0"
  std::string sgm;       // "input_blocks.4.0"
  bool resnet = false;   // inner names differ (in_layers.0 -> norm1, ...)
};

// ResnetBlock2D inner names: SGM (ldm ResBlock) -> diffusers.
const std::vector<std::pair<std::string, std::string>>& resnet_renames() {
  static const std::vector<std::pair<std::string, std::string>> renames = {
      {"in_layers.0", "norm1"},  {"in_layers.2", "conv1"},  {"emb_layers.1", "time_emb_proj"},
      {"out_layers.0", "norm2"}, {"out_layers.3", "conv2"}, {"skip_connection", "conv_shortcut"},
  };
  return renames;
}

std::vector<UNetBlock> unet_blocks(const UNetLayout& layout) {
  const int levels = layout.levels();
  if (levels == 0 || static_cast<int>(layout.down_has_attention.size()) != levels ||
      static_cast<int>(layout.up_has_attention.size()) != levels)
    throw std::invalid_argument("UNetLayout: layers_per_block, down_has_attention and up_has_attention need one entry per level");
  std::vector<UNetBlock> blocks = {
      {"conv_in", "input_blocks.0.0", false},
      {"time_embedding.linear_1", "time_embed.0", false},
      {"time_embedding.linear_2", "time_embed.2", false},
      {"conv_norm_out", "out.0", false},
      {"conv_out", "out.2", false},
      {"mid_block.resnets.0", "middle_block.0", true},
      {"mid_block.attentions.0", "middle_block.1", false},
      {"mid_block.resnets.1", "middle_block.2", true},
  };
  if (layout.added_embedding) {
    blocks.push_back({"add_embedding.linear_1", "label_emb.0.0", false});
    blocks.push_back({"add_embedding.linear_2", "label_emb.0.2", false});
  }
  int input_index = 1;
  for (int level = 0; level < levels; ++level) {
    const std::string down = "down_blocks." + std::to_string(level);
    for (int j = 0; j < layout.layers_per_block[level]; ++j, ++input_index) {
      const std::string sgm = "input_blocks." + std::to_string(input_index);
      blocks.push_back({down + ".resnets." + std::to_string(j), sgm + ".0", true});
      if (layout.down_has_attention[level])
        blocks.push_back({down + ".attentions." + std::to_string(j), sgm + ".1", false});
    }
    if (level + 1 < levels) {
      blocks.push_back({down + ".downsamplers.0.conv", "input_blocks." + std::to_string(input_index) + ".0.op", false});
      ++input_index;
    }
  }
  int output_index = 0;
  for (int up_level = 0; up_level < levels; ++up_level) {
    const std::string up = "up_blocks." + std::to_string(up_level);
    const int resnets = layout.layers_per_block[levels - 1 - up_level] + 1;
    const bool attention = layout.up_has_attention[up_level];
    for (int j = 0; j < resnets; ++j, ++output_index) {
      const std::string sgm = "output_blocks." + std::to_string(output_index);
      blocks.push_back({up + ".resnets." + std::to_string(j), sgm + ".0", true});
      if (attention) blocks.push_back({up + ".attentions." + std::to_string(j), sgm + ".1", false});
      if (j + 1 == resnets && up_level + 1 < levels)
        blocks.push_back({up + ".upsamplers.0", sgm + (attention ? ".2" : ".1"), false});
    }
  }
  return blocks;
}

// Renames `path` through the block whose `from` prefix is longest; sets
// *matched = false (and returns "") when no block or inner name matches.
std::string convert_unet_path(const std::string& path, const std::vector<UNetBlock>& blocks, bool to_sgm,
                              bool* matched) {
  const UNetBlock* best = nullptr;
  size_t best_length = 0;
  for (const auto& block : blocks) {
    const std::string& from = to_sgm ? block.diffusers : block.sgm;
    if (from.size() > best_length && has_path_prefix(path, from)) {
      best = &block;
      best_length = from.size();
    }
  }
  *matched = best != nullptr;
  if (best == nullptr) return "";
  const std::string& to = to_sgm ? best->sgm : best->diffusers;
  std::string rest = path.substr(best_length); // "" or ".inner.names"
  if (best->resnet && !rest.empty()) {
    bool renamed = false;
    for (const auto& [sgm_name, diffusers_name] : resnet_renames()) {
      const std::string& inner_from = to_sgm ? diffusers_name : sgm_name;
      const std::string& inner_to = to_sgm ? sgm_name : diffusers_name;
      if (has_path_prefix(rest.substr(1), inner_from)) {
        rest = "." + inner_to + rest.substr(1 + inner_from.size());
        renamed = true;
        break;
      }
    }
    if (!renamed) {
      *matched = false;
      return "";
    }
  }
  return to + rest;
}

// ----------------------------------------------------------------------------
// VAE: ldm (first_stage_model.*) -> diffusers

// Converts one key below first_stage_model.; "" when not recognised.
// `levels` = number of encoder levels (decoder.up.i is up_blocks[levels-1-i]).
std::string convert_vae_key(const std::string& key, int levels) {
  static const std::map<std::string, std::string> renamed_whole = {
      {"encoder.norm_out", "encoder.conv_norm_out"}, {"decoder.norm_out", "decoder.conv_norm_out"}};
  static const std::set<std::string> kept = {"encoder.conv_in", "encoder.conv_out", "decoder.conv_in",
                                             "decoder.conv_out", "quant_conv", "post_quant_conv"};
  static const std::map<std::string, std::string> resnet_inner = {
      {"norm1", "norm1"}, {"conv1", "conv1"}, {"norm2", "norm2"}, {"conv2", "conv2"}, {"nin_shortcut", "conv_shortcut"}};
  static const std::map<std::string, std::string> attention_inner = {
      {"norm", "group_norm"}, {"q", "to_q"}, {"k", "to_k"}, {"v", "to_v"}, {"proj_out", "to_out.0"}};

  const std::vector<std::string> parts = split_dots(key);
  const size_t n = parts.size();
  const std::string& param = parts.back();
  if (param != "weight" && param != "bias") return "";
  const std::string module = key.substr(0, key.size() - param.size() - 1);
  if (kept.count(module)) return key;
  if (const auto found = renamed_whole.find(module); found != renamed_whole.end()) return found->second + "." + param;
  if (n < 4) return "";
  const std::string& coder = parts[0]; // encoder / decoder
  if (coder != "encoder" && coder != "decoder") return "";
  // {coder}.mid.block_{1,2}.{inner}.{param} / {coder}.mid.attn_1.{inner}.{param}
  if (parts[1] == "mid" && n == 5) {
    if (parts[2] == "block_1" || parts[2] == "block_2") {
      const auto inner = resnet_inner.find(parts[3]);
      if (inner == resnet_inner.end()) return "";
      return coder + ".mid_block.resnets." + (parts[2] == "block_1" ? "0" : "1") + "." + inner->second + "." + param;
    }
    if (parts[2] == "attn_1") {
      const auto inner = attention_inner.find(parts[3]);
      if (inner == attention_inner.end()) return "";
      return coder + ".mid_block.attentions.0." + inner->second + "." + param;
    }
    return "";
  }
  // encoder.down.i.block.j.{inner}.{param}, encoder.down.i.downsample.conv.{param}
  // decoder.up.i.block.j.{inner}.{param},   decoder.up.i.upsample.conv.{param}
  const bool encoder = coder == "encoder";
  if (parts[1] != (encoder ? "down" : "up")) return "";
  const int level = parse_index(parts[2]);
  if (level < 0 || level >= levels) return "";
  const std::string block = encoder ? "encoder.down_blocks." + std::to_string(level)
                                    : "decoder.up_blocks." + std::to_string(levels - 1 - level);
  if (parts[3] == "block" && n == 7) {
    const int j = parse_index(parts[4]);
    const auto inner = resnet_inner.find(parts[5]);
    if (j < 0 || inner == resnet_inner.end()) return "";
    return block + ".resnets." + std::to_string(j) + "." + inner->second + "." + param;
  }
  const std::string resample = encoder ? "downsample" : "upsample";
  if (parts[3] == resample && n == 6 && parts[4] == "conv")
    return block + (encoder ? ".downsamplers.0.conv." : ".upsamplers.0.conv.") + param;
  return "";
}

// ----------------------------------------------------------------------------
// Text encoder 2: OpenCLIP (conditioner.embedders.1.model.*) -> transformers

// Converts one key below conditioner.embedders.1.model.; fills `out` (q/k/v split
// from the fused in_proj), returns false when not recognised.
bool convert_open_clip_key(const std::string& key, const torch::Tensor& tensor, TensorMap& out,
                           std::set<int>& layers) {
  static const std::map<std::string, std::string> whole = {
      {"token_embedding.weight", "text_model.embeddings.token_embedding.weight"},
      {"positional_embedding", "text_model.embeddings.position_embedding.weight"},
      {"ln_final.weight", "text_model.final_layer_norm.weight"},
      {"ln_final.bias", "text_model.final_layer_norm.bias"},
  };
  static const std::map<std::string, std::string> layer_inner = {
      {"ln_1", "layer_norm1"}, {"ln_2", "layer_norm2"}, {"attn.out_proj", "self_attn.out_proj"},
      {"mlp.c_fc", "mlp.fc1"}, {"mlp.c_proj", "mlp.fc2"}};

  if (const auto found = whole.find(key); found != whole.end()) {
    out[found->second] = tensor;
    return true;
  }
  if (key == "text_projection") { // stored [hidden, projection]; Linear weight is [projection, hidden]
    out["text_projection.weight"] = tensor.t().contiguous(); // [P, H]
    return true;
  }
  const std::string resblocks = "transformer.resblocks.";
  if (!starts_with(key, resblocks)) return false;
  const size_t dot = key.find('.', resblocks.size());
  if (dot == std::string::npos) return false;
  const int layer = parse_index(key.substr(resblocks.size(), dot - resblocks.size()));
  if (layer < 0) return false;
  const std::string inner = key.substr(dot + 1);
  const std::string target = "text_model.encoder.layers." + std::to_string(layer) + ".";
  if (inner == "attn.in_proj_weight" || inner == "attn.in_proj_bias") {
    // Fused [3H, ...] in q, k, v order.
    if (tensor.size(0) % 3 != 0) return false;
    const auto chunks = tensor.chunk(3, 0); // 3 x [H, ...]
    const std::string param = inner == "attn.in_proj_weight" ? "weight" : "bias";
    out[target + "self_attn.q_proj." + param] = chunks[0].contiguous();
    out[target + "self_attn.k_proj." + param] = chunks[1].contiguous();
    out[target + "self_attn.v_proj." + param] = chunks[2].contiguous();
    layers.insert(layer);
    return true;
  }
  const size_t last_dot = inner.rfind('.');
  if (last_dot == std::string::npos) return false;
  const auto renamed = layer_inner.find(inner.substr(0, last_dot));
  const std::string param = inner.substr(last_dot + 1);
  if (renamed == layer_inner.end() || (param != "weight" && param != "bias")) return false;
  out[target + renamed->second + "." + param] = tensor;
  layers.insert(layer);
  return true;
}

// Checks that layer indices are 0..n-1 and n equals the expectation (-1: any).
void check_layers(const std::set<int>& layers, int expected, const std::string& what, const char* component) {
  const int count = static_cast<int>(layers.size());
  if (count > 0 && *layers.rbegin() != count - 1) {
    std::ostringstream message;
    message << what << ": " << component << " layer indices are not contiguous (" << count
            << " layers, highest index " << *layers.rbegin() << ")";
    throw std::invalid_argument(message.str());
  }
  if (expected >= 0 && count != expected) {
    std::ostringstream message;
    message << what << ": " << component << " has " << count << " layers, the config expects " << expected;
    throw std::invalid_argument(message.str());
  }
}

} // namespace

// ----------------------------------------------------------------------------
// UNetLayout

UNetLayout UNetLayout::from_config(const models::UNetConfig& config) {
  UNetLayout layout;
  layout.layers_per_block.clear();
  layout.down_has_attention.clear();
  layout.up_has_attention.clear();
  for (const int64_t layers : config.layers_per_block) layout.layers_per_block.push_back(static_cast<int>(layers));
  for (const auto& type : config.down_block_types)
    layout.down_has_attention.push_back(type.find("CrossAttn") != std::string::npos);
  for (const auto& type : config.up_block_types)
    layout.up_has_attention.push_back(type.find("CrossAttn") != std::string::npos);
  layout.added_embedding = config.has_added_embedding();
  return layout;
}

UNetLayout UNetLayout::from_diffusers_keys(const std::vector<std::string>& keys) {
  // Highest index seen per level: down resnets, down/up attentions.
  std::map<int, int> down_resnets;
  std::set<int> down_attention, up_attention;
  int levels = 0;
  bool added_embedding = false;
  for (const auto& key : keys) {
    if (has_path_prefix(key, "add_embedding")) added_embedding = true;
    const std::vector<std::string> parts = split_dots(key);
    if (parts.size() < 4) continue;
    const int level = parse_index(parts[1]);
    const int index = parse_index(parts[3]);
    if (level < 0 || index < 0) continue;
    if (parts[0] == "down_blocks") {
      levels = std::max(levels, level + 1);
      if (parts[2] == "resnets") down_resnets[level] = std::max(down_resnets[level], index + 1);
      if (parts[2] == "attentions") down_attention.insert(level);
    } else if (parts[0] == "up_blocks") {
      levels = std::max(levels, level + 1);
      if (parts[2] == "attentions") up_attention.insert(level);
    }
  }
  if (levels == 0) throw std::invalid_argument("UNetLayout: no down_blocks.* keys to read the layout from");
  UNetLayout layout;
  layout.layers_per_block.assign(levels, 0);
  layout.down_has_attention.assign(levels, false);
  layout.up_has_attention.assign(levels, false);
  for (int level = 0; level < levels; ++level) {
    layout.layers_per_block[level] = down_resnets.count(level) ? down_resnets[level] : 0;
    layout.down_has_attention[level] = down_attention.count(level) > 0;
    layout.up_has_attention[level] = up_attention.count(level) > 0;
  }
  layout.added_embedding = added_embedding;
  return layout;
}

// ----------------------------------------------------------------------------
// UNet module paths

std::string unet_diffusers_to_sgm(const std::string& diffusers_path, const UNetLayout& layout) {
  bool matched = false;
  const std::string converted = convert_unet_path(diffusers_path, unet_blocks(layout), true, &matched);
  if (!matched) throw std::invalid_argument("no SGM UNet name for diffusers path \"" + diffusers_path + "\"");
  return converted;
}

std::string unet_sgm_to_diffusers(const std::string& sgm_path, const UNetLayout& layout) {
  bool matched = false;
  const std::string converted = convert_unet_path(sgm_path, unet_blocks(layout), false, &matched);
  if (!matched) throw std::invalid_argument("no diffusers UNet name for SGM path \"" + sgm_path + "\"");
  return converted;
}

// ----------------------------------------------------------------------------
// Whole checkpoints

SingleFileExpectations SingleFileExpectations::from_configs(models::ModelFamily family, const models::UNetConfig& unet,
                                                           const models::VaeConfig& vae,
                                                           const models::ClipTextConfig& text_encoder,
                                                           const models::ClipTextConfig& text_encoder_2) {
  SingleFileExpectations expect;
  expect.family = family;
  expect.unet = UNetLayout::from_config(unet);
  expect.vae_levels = static_cast<int>(vae.block_out_channels.size());
  expect.text_encoder_layers = static_cast<int>(text_encoder.num_hidden_layers);
  expect.text_encoder_2_layers = static_cast<int>(text_encoder_2.num_hidden_layers);
  return expect;
}

namespace {

// Top-level keys of an LDM file that hold no weight: LatentDiffusion's DDPM schedule
// buffers (and its logvar), which the scheduler config carries instead.
bool is_ldm_schedule_buffer(const std::string& key) {
  static const std::set<std::string> buffers = {
      "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
      "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
      "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2", "logvar"};
  return buffers.count(key) > 0;
}

constexpr const char* kEmaPrefix = "model_ema."; // a non-pruned file's EMA copy: A1111 loads the live weights too
constexpr const char* kVPredictionMarker = "v_pred";
constexpr const char* kZeroTerminalSnrMarker = "ztsnr";

// The distinct key prefixes of a file (first two segments, or the start of a long
// flattened name such as kohya's lora_unet_...), for an error naming what it holds.
std::string key_prefixes(const std::vector<std::string>& keys) {
  constexpr size_t kLongSegment = 24;
  std::set<std::string> prefixes;
  for (const auto& key : keys) {
    const std::vector<std::string> parts = split_dots(key);
    const std::string& head = parts[0];
    if (head.size() > kLongSegment) {
      const size_t first = head.find('_');
      const size_t second = first == std::string::npos ? first : head.find('_', first + 1);
      prefixes.insert(head.substr(0, second == std::string::npos ? kLongSegment : second + 1) + "*");
    } else {
      prefixes.insert(parts.size() > 2 ? head + "." + parts[1] + ".*" : key);
    }
    if (prefixes.size() > 12) break;
  }
  return list_keys(std::vector<std::string>(prefixes.begin(), prefixes.end()));
}

} // namespace

SingleFileKind single_file_kind(const std::vector<std::string>& keys, const std::string& file_name) {
  const auto any = [&](const std::string& prefix) {
    return std::any_of(keys.begin(), keys.end(), [&](const std::string& key) { return starts_with(key, prefix); });
  };
  const auto has = [&](const std::string& key) { return std::find(keys.begin(), keys.end(), key) != keys.end(); };
  SingleFileKind kind;
  kind.v_prediction_marker = has(kVPredictionMarker);
  kind.zero_terminal_snr_marker = has(kZeroTerminalSnrMarker);
  const bool unet = any(kSgmUNetPrefix);
  if (unet && any("conditioner.embedders.")) {
    kind.family = models::ModelFamily::Sdxl;
    kind.layout = "sgm-single-file";
    return kind;
  }
  if (unet && any(kLdmTextEncoderPrefix)) {
    kind.family = models::ModelFamily::Sd1;
    kind.layout = "ldm-single-file";
    return kind;
  }
  if (unet && any(kLdmOpenClipPrefix))
    throw std::invalid_argument(file_name + " is an SD 2.x single file (cond_stage_model.model.*, OpenCLIP): not supported; "
                                "load the model as a diffusers folder (stabilityai/stable-diffusion-2-1 layout)");
  throw std::invalid_argument(file_name + " is not a Stable Diffusion checkpoint of a known family: SDXL files hold "
                              "model.diffusion_model.* and conditioner.embedders.*, SD 1.x files model.diffusion_model.* "
                              "and cond_stage_model.transformer.*; found " + (keys.empty() ? "no tensors" : key_prefixes(keys)));
}

SplitCheckpoint split_single_file(const TensorMap& tensors, const SingleFileExpectations& expect) {
  const bool sdxl = expect.family == models::ModelFamily::Sdxl;
  const std::string unet_prefix = kSgmUNetPrefix, vae_prefix = kSgmVaePrefix;
  const std::string te1_root = sdxl ? kSgmTextEncoderPrefix : kLdmTextEncoderPrefix;
  const std::string te1_prefix = te1_root + "text_model.";
  const std::string te2_prefix = kSgmTextEncoder2Prefix;
  const std::string te1_name = sdxl ? "text encoder (conditioner.embedders.0)" : "text encoder (cond_stage_model)";
  const std::string what = sdxl ? "SGM checkpoint" : "LDM checkpoint";
  // Entries without weights a model needs.
  std::set<std::string> ignored = {te1_prefix + "embeddings.position_ids", te1_root + "embeddings.position_ids",
                                   kVPredictionMarker, kZeroTerminalSnrMarker};
  if (sdxl) ignored.insert(te2_prefix + "logit_scale");

  const std::vector<UNetBlock> blocks = unet_blocks(expect.unet);
  std::set<std::string> used_blocks;
  std::vector<std::string> unknown;
  std::set<int> te1_layers, te2_layers, vae_encoder_levels;
  SplitCheckpoint split;

  for (const auto& [key, tensor] : tensors) {
    if (ignored.count(key) || starts_with(key, kEmaPrefix) || (!sdxl && is_ldm_schedule_buffer(key))) continue;
    if (starts_with(key, unet_prefix)) {
      const std::string path = key.substr(unet_prefix.size());
      bool matched = false;
      const std::string converted = convert_unet_path(path, blocks, false, &matched);
      if (!matched) {
        unknown.push_back(key);
        continue;
      }
      split.unet[converted] = tensor;
      for (const auto& block : blocks)
        if (has_path_prefix(path, block.sgm)) used_blocks.insert(block.sgm);
    } else if (starts_with(key, vae_prefix)) {
      const std::string path = key.substr(vae_prefix.size());
      const std::string converted = convert_vae_key(path, expect.vae_levels);
      if (converted.empty()) {
        unknown.push_back(key);
        continue;
      }
      if (starts_with(path, "encoder.down.")) vae_encoder_levels.insert(parse_index(split_dots(path)[2]));
      // The mid-block attention's q/k/v/proj_out are 1x1 convs in ldm, Linear in diffusers.
      const bool conv_as_linear = converted.find(".mid_block.attentions.") != std::string::npos && tensor.dim() == 4;
      split.vae[converted] = conv_as_linear ? tensor.reshape({tensor.size(0), tensor.size(1)}) : tensor; // [C, C]
    } else if (starts_with(key, te1_root)) {
      // Out in the transformers 5 layout, without "text_model." (the loader accepts both); a
      // file written from a transformers 5 model has none to remove.
      std::string converted = key.substr(te1_root.size());
      if (starts_with(converted, "text_model.")) converted = converted.substr(std::string("text_model.").size());
      split.text_encoder[converted] = tensor;
      const std::string layers = "encoder.layers.";
      if (starts_with(converted, layers)) te1_layers.insert(parse_index(split_dots(converted)[2]));
    } else if (sdxl && starts_with(key, te2_prefix)) {
      if (!convert_open_clip_key(key.substr(te2_prefix.size()), tensor, split.text_encoder_2, te2_layers))
        unknown.push_back(key);
    } else {
      unknown.push_back(key);
    }
  }
  if (!unknown.empty())
    throw std::invalid_argument(what + ": " + std::to_string(unknown.size()) + " keys not recognised: " + list_keys(unknown));

  // Every block the layout expects must be in the file, and the file must not
  // have more levels or layers than the layout (those keys were unknown above).
  std::vector<std::string> missing;
  for (const auto& block : blocks)
    if (!used_blocks.count(block.sgm)) missing.push_back(unet_prefix + block.sgm);
  if (!missing.empty())
    throw std::invalid_argument(what + ": the UNet config expects blocks the file does not have: " + list_keys(missing));
  if (static_cast<int>(vae_encoder_levels.size()) != expect.vae_levels)
    throw std::invalid_argument(what + ": VAE encoder has " + std::to_string(vae_encoder_levels.size()) +
                                " levels, the config expects " + std::to_string(expect.vae_levels));
  check_layers(te1_layers, expect.text_encoder_layers, what, te1_name.c_str());
  if (sdxl) check_layers(te2_layers, expect.text_encoder_2_layers, what, "text encoder 2 (conditioner.embedders.1)");
  if (split.unet.empty() || split.vae.empty() || split.text_encoder.empty() || (sdxl && split.text_encoder_2.empty()))
    throw std::invalid_argument(what + ": a component is missing (unet " + std::to_string(split.unet.size()) +
                                ", vae " + std::to_string(split.vae.size()) + ", text_encoder " +
                                std::to_string(split.text_encoder.size()) +
                                (sdxl ? ", text_encoder_2 " + std::to_string(split.text_encoder_2.size()) : std::string()) +
                                " tensors)");
  return split;
}

} // namespace sdxl::io

// SGM single file <-> diffusers key layouts (see key_conversion.h for the
// sources of each mapping).
#include "io/key_conversion.h"

#include <algorithm> // std::max, std::find, std::all_of
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
// Name tables read both ways: {single-file name, diffusers / transformers name}

using NamePairs = std::vector<std::pair<std::string, std::string>>;

// The partner of `name` in `pairs`, looked up on the single-file side (to_diffusers) or
// on the diffusers side; "" when absent (no table holds an empty name).
std::string paired_name(const NamePairs& pairs, const std::string& name, bool to_diffusers) {
  for (const auto& [single_file, diffusers] : pairs)
    if ((to_diffusers ? single_file : diffusers) == name) return to_diffusers ? diffusers : single_file;
  return "";
}

// VAE modules outside the down/mid/up blocks.
const NamePairs& vae_outer_modules() {
  static const NamePairs pairs = {
      {"encoder.conv_in", "encoder.conv_in"},   {"encoder.conv_out", "encoder.conv_out"},
      {"decoder.conv_in", "decoder.conv_in"},   {"decoder.conv_out", "decoder.conv_out"},
      {"quant_conv", "quant_conv"},             {"post_quant_conv", "post_quant_conv"},
      {"encoder.norm_out", "encoder.conv_norm_out"}, {"decoder.norm_out", "decoder.conv_norm_out"}};
  return pairs;
}

// VAE ResnetBlock2D inner names.
const NamePairs& vae_resnet_names() {
  static const NamePairs pairs = {
      {"norm1", "norm1"}, {"conv1", "conv1"}, {"norm2", "norm2"}, {"conv2", "conv2"}, {"nin_shortcut", "conv_shortcut"}};
  return pairs;
}

// VAE mid-block attention inner names (ldm AttnBlock -> diffusers Attention).
const NamePairs& vae_attention_names() {
  static const NamePairs pairs = {
      {"norm", "group_norm"}, {"q", "to_q"}, {"k", "to_k"}, {"v", "to_v"}, {"proj_out", "to_out.0"}};
  return pairs;
}

// OpenCLIP text-tower names outside the layers (the transformers side with "text_model.").
const NamePairs& open_clip_outer_names() {
  static const NamePairs pairs = {
      {"token_embedding.weight", "text_model.embeddings.token_embedding.weight"},
      {"positional_embedding", "text_model.embeddings.position_embedding.weight"},
      {"ln_final.weight", "text_model.final_layer_norm.weight"},
      {"ln_final.bias", "text_model.final_layer_norm.bias"}};
  return pairs;
}

// OpenCLIP residual-block modules (q/k/v are fused in attn.in_proj_*, handled apart).
const NamePairs& open_clip_layer_modules() {
  static const NamePairs pairs = {{"ln_1", "layer_norm1"},
                                  {"ln_2", "layer_norm2"},
                                  {"attn.out_proj", "self_attn.out_proj"},
                                  {"mlp.c_fc", "mlp.fc1"},
                                  {"mlp.c_proj", "mlp.fc2"}};
  return pairs;
}

// ----------------------------------------------------------------------------
// VAE: ldm (first_stage_model.*) -> diffusers

// Converts one key below first_stage_model.; "" when not recognised.
// `levels` = number of encoder levels (decoder.up.i is up_blocks[levels-1-i]).
std::string convert_vae_key(const std::string& key, int levels) {
  const std::vector<std::string> parts = split_dots(key);
  const size_t n = parts.size();
  const std::string& param = parts.back();
  if (n < 2 || (param != "weight" && param != "bias")) return "";
  const std::string module = key.substr(0, key.size() - param.size() - 1);
  if (const std::string outer = paired_name(vae_outer_modules(), module, true); !outer.empty()) return outer + "." + param;
  if (n < 4) return "";
  const std::string& coder = parts[0]; // encoder / decoder
  if (coder != "encoder" && coder != "decoder") return "";
  // {coder}.mid.block_{1,2}.{inner}.{param} / {coder}.mid.attn_1.{inner}.{param}
  if (parts[1] == "mid" && n == 5) {
    if (parts[2] == "block_1" || parts[2] == "block_2") {
      const std::string inner = paired_name(vae_resnet_names(), parts[3], true);
      if (inner.empty()) return "";
      return coder + ".mid_block.resnets." + (parts[2] == "block_1" ? "0" : "1") + "." + inner + "." + param;
    }
    if (parts[2] == "attn_1") {
      const std::string inner = paired_name(vae_attention_names(), parts[3], true);
      if (inner.empty()) return "";
      return coder + ".mid_block.attentions.0." + inner + "." + param;
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
    const std::string inner = paired_name(vae_resnet_names(), parts[5], true);
    if (j < 0 || inner.empty()) return "";
    return block + ".resnets." + std::to_string(j) + "." + inner + "." + param;
  }
  const std::string resample = encoder ? "downsample" : "upsample";
  if (parts[3] == resample && n == 6 && parts[4] == "conv")
    return block + (encoder ? ".downsamplers.0.conv." : ".upsamplers.0.conv.") + param;
  return "";
}

// The inverse of convert_vae_key: one diffusers VAE key to its name below
// first_stage_model.; "" when not recognised.
std::string vae_key_to_ldm(const std::string& key, int levels) {
  const std::vector<std::string> parts = split_dots(key);
  const size_t n = parts.size();
  const std::string& param = parts.back();
  if (n < 2 || (param != "weight" && param != "bias")) return "";
  const std::string module = key.substr(0, key.size() - param.size() - 1);
  if (const std::string outer = paired_name(vae_outer_modules(), module, false); !outer.empty()) return outer + "." + param;
  if (n < 6) return "";
  const std::string& coder = parts[0]; // encoder / decoder
  if (coder != "encoder" && coder != "decoder") return "";
  // {coder}.mid_block.resnets.{0,1}.{inner}.{param} / {coder}.mid_block.attentions.0.{inner}.{param}
  if (parts[1] == "mid_block") {
    // The inner name may have two segments (to_out.0).
    const std::string block = parts[0] + "." + parts[1] + "." + parts[2] + "." + parts[3] + ".";
    const std::string inner_module = module.substr(block.size());
    if (parts[2] == "resnets" && (parts[3] == "0" || parts[3] == "1")) {
      const std::string inner = paired_name(vae_resnet_names(), inner_module, false);
      if (inner.empty()) return "";
      return coder + ".mid.block_" + (parts[3] == "0" ? "1" : "2") + "." + inner + "." + param;
    }
    if (parts[2] == "attentions" && parts[3] == "0") {
      const std::string inner = paired_name(vae_attention_names(), inner_module, false);
      if (inner.empty()) return "";
      return coder + ".mid.attn_1." + inner + "." + param;
    }
    return "";
  }
  // encoder.down_blocks.i.resnets.j.{inner}.{param}, encoder.down_blocks.i.downsamplers.0.conv.{param}
  // decoder.up_blocks.i.resnets.j.{inner}.{param},   decoder.up_blocks.i.upsamplers.0.conv.{param}
  const bool encoder = coder == "encoder";
  if (parts[1] != (encoder ? "down_blocks" : "up_blocks") || n != 7) return "";
  const int level = parse_index(parts[2]);
  if (level < 0 || level >= levels) return "";
  const std::string block = encoder ? "encoder.down." + std::to_string(level)
                                    : "decoder.up." + std::to_string(levels - 1 - level);
  if (parts[3] == "resnets") {
    const int j = parse_index(parts[4]);
    const std::string inner = paired_name(vae_resnet_names(), parts[5], false);
    if (j < 0 || inner.empty()) return "";
    return block + ".block." + std::to_string(j) + "." + inner + "." + param;
  }
  if (parts[3] == (encoder ? "downsamplers" : "upsamplers") && parts[4] == "0" && parts[5] == "conv")
    return block + (encoder ? ".downsample.conv." : ".upsample.conv.") + param;
  return "";
}

// ----------------------------------------------------------------------------
// Text encoder 2: OpenCLIP (conditioner.embedders.1.model.*) -> transformers

// Converts one key below conditioner.embedders.1.model.; fills `out` (q/k/v split
// from the fused in_proj), returns false when not recognised.
bool convert_open_clip_key(const std::string& key, const torch::Tensor& tensor, TensorMap& out,
                           std::set<int>& layers) {
  if (const std::string outer = paired_name(open_clip_outer_names(), key, true); !outer.empty()) {
    out[outer] = tensor;
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
  const std::string renamed = paired_name(open_clip_layer_modules(), inner.substr(0, last_dot), true);
  const std::string param = inner.substr(last_dot + 1);
  if (renamed.empty() || (param != "weight" && param != "bias")) return false;
  out[target + renamed + "." + param] = tensor;
  layers.insert(layer);
  return true;
}

// The inverse of convert_open_clip_key for a whole text_encoder_2 (transformers
// CLIPTextModelWithProjection, with or without "text_model."): the OpenCLIP names below
// conditioner.embedders.1.model., q/k/v fused into in_proj (their order on dim 0).
// Keys it cannot place go to `unplaced`.
TensorMap open_clip_from_transformers(const TensorMap& tensors, std::vector<std::string>& unplaced) {
  const std::string text_model = "text_model.";
  const std::string layers = "text_model.encoder.layers.";
  const std::string self_attn = "self_attn.";
  const std::vector<std::string> projections = {"q_proj", "k_proj", "v_proj"}; // in_proj order
  TensorMap out;
  std::map<std::string, std::vector<torch::Tensor>> fused; // "transformer.resblocks.N.attn.in_proj_weight" -> q, k, v
  std::set<std::string> seen;
  for (const auto& [original, tensor] : tensors) {
    // transformers 5 may leave out "text_model."; text_projection is never under it.
    const bool bare = !starts_with(original, text_model) && original != "text_projection.weight";
    const std::string key = bare ? text_model + original : original;
    if (key == "text_model.embeddings.position_ids") continue; // a buffer, no weight
    if (!seen.insert(key).second) {
      unplaced.push_back(original + " (a second tensor for " + key + ")");
      continue;
    }
    if (const std::string outer = paired_name(open_clip_outer_names(), key, false); !outer.empty()) {
      out[outer] = tensor.contiguous();
      continue;
    }
    if (key == "text_projection.weight") { // Linear [projection, hidden]; OpenCLIP multiplies x @ P
      out["text_projection"] = tensor.t().contiguous(); // [H, P]
      continue;
    }
    const std::vector<std::string> parts = split_dots(key);
    const int layer = parts.size() >= 6 && starts_with(key, layers) ? parse_index(parts[3]) : -1;
    const std::string& param = parts.back();
    if (layer < 0 || (param != "weight" && param != "bias")) {
      unplaced.push_back(original);
      continue;
    }
    const std::string layer_prefix = layers + parts[3] + ".";
    const std::string module = key.substr(layer_prefix.size(), key.size() - layer_prefix.size() - param.size() - 1);
    const std::string block = "transformer.resblocks." + std::to_string(layer) + ".";
    const auto projection = starts_with(module, self_attn)
                                ? std::find(projections.begin(), projections.end(), module.substr(self_attn.size()))
                                : projections.end();
    if (projection != projections.end()) {
      auto& slots = fused[block + "attn.in_proj_" + param];
      slots.resize(projections.size());
      slots[static_cast<size_t>(projection - projections.begin())] = tensor;
      continue;
    }
    const std::string renamed = paired_name(open_clip_layer_modules(), module, false);
    if (renamed.empty()) {
      unplaced.push_back(original);
      continue;
    }
    out[block + renamed + "." + param] = tensor.contiguous();
  }
  for (const auto& [key, slots] : fused) {
    const bool defined = std::all_of(slots.begin(), slots.end(), [](const torch::Tensor& part) { return part.defined(); });
    const bool complete = defined && std::all_of(slots.begin(), slots.end(), [&](const torch::Tensor& part) {
      return part.sizes() == slots[0].sizes() && part.scalar_type() == slots[0].scalar_type();
    });
    if (!complete) {
      unplaced.push_back(key + " (needs q_proj, k_proj and v_proj of one shape and dtype)");
      continue;
    }
    out[key] = torch::cat(slots, 0).contiguous(); // [3H, ...]
  }
  return out;
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

// ----------------------------------------------------------------------------
// Diffusers components -> single file

namespace {

// The single file being joined, and what went wrong on the way (reported all at once).
struct JoinedFile {
  TensorMap tensors;
  std::vector<std::string> unplaced;       // "component/key"
  std::vector<std::string> missing_blocks; // UNet blocks the layout expects and the UNet lacks

  // A second tensor for one key (a text encoder holding a key with and without
  // "text_model.") is an error, not a silent overwrite.
  void place(const std::string& key, const torch::Tensor& tensor, const std::string& source) {
    if (!tensors.emplace(key, tensor.contiguous()).second) unplaced.push_back(source + " (a second tensor for " + key + ")");
  }
};

// The UNet through the block table, diffusers -> SGM; like split_single_file, every
// block the layout expects must be there.
void join_unet(const TensorMap& unet, const UNetLayout& layout, JoinedFile& out) {
  const std::vector<UNetBlock> blocks = unet_blocks(layout);
  std::set<std::string> used_blocks;
  for (const auto& [key, tensor] : unet) {
    bool matched = false;
    const std::string converted = convert_unet_path(key, blocks, /*to_sgm=*/true, &matched);
    if (!matched) {
      out.unplaced.push_back("unet/" + key);
      continue;
    }
    out.place(kSgmUNetPrefix + converted, tensor, "unet/" + key);
    for (const auto& block : blocks)
      if (has_path_prefix(key, block.diffusers)) used_blocks.insert(block.diffusers);
  }
  for (const auto& block : blocks)
    if (!used_blocks.count(block.diffusers)) out.missing_blocks.push_back(block.diffusers);
}

void join_vae(const TensorMap& vae, int levels, JoinedFile& out) {
  for (const auto& [key, tensor] : vae) {
    const std::string converted = vae_key_to_ldm(key, levels);
    if (converted.empty()) {
      out.unplaced.push_back("vae/" + key);
      continue;
    }
    // ldm's mid-block attention q/k/v/proj_out are 1x1 convs; diffusers holds them as Linear [C, C].
    const bool linear_as_conv = converted.find(".mid.attn_1.") != std::string::npos && tensor.dim() == 2;
    out.place(kSgmVaePrefix + converted, linear_as_conv ? tensor.reshape({tensor.size(0), tensor.size(1), 1, 1}) : tensor,
              "vae/" + key); // [C, C, 1, 1]
  }
}

// CLIP ViT-L keeps its transformers names under `root` + "text_model.", as transformers 4
// saved them; transformers 5 leaves the prefix out, so keys may come either way.
void join_clip_text(const TensorMap& text_encoder, const std::string& root, JoinedFile& out) {
  const std::string text_model = "text_model.";
  for (const auto& [key, tensor] : text_encoder) {
    const std::string bare = starts_with(key, text_model) ? key.substr(text_model.size()) : key;
    if (bare == "embeddings.position_ids") continue; // a buffer, no weight
    // CLIPTextModel has nothing else (a text_projection would mean the wrong encoder).
    if (!starts_with(bare, "embeddings.") && !starts_with(bare, "encoder.layers.") && !starts_with(bare, "final_layer_norm.")) {
      out.unplaced.push_back("text_encoder/" + key);
      continue;
    }
    out.place(root + text_model + bare, tensor, "text_encoder/" + key);
  }
}

} // namespace

TensorMap join_single_file(const SplitCheckpoint& components, const SingleFileExpectations& expect) {
  if (expect.family == models::ModelFamily::Sd2)
    throw std::invalid_argument("join_single_file: SD 2.x is not joined into a single file (its LDM single files, "
                                "cond_stage_model.model.*, are refused on load); keep it as a diffusers folder");
  const bool sdxl = expect.family == models::ModelFamily::Sdxl;
  const std::string what = sdxl ? "SGM checkpoint" : "LDM checkpoint";
  if (components.unet.empty() || components.vae.empty() || components.text_encoder.empty() ||
      (sdxl && components.text_encoder_2.empty()))
    throw std::invalid_argument(what + ": a component is missing (unet " + std::to_string(components.unet.size()) +
                                ", vae " + std::to_string(components.vae.size()) + ", text_encoder " +
                                std::to_string(components.text_encoder.size()) +
                                (sdxl ? ", text_encoder_2 " + std::to_string(components.text_encoder_2.size()) : std::string()) +
                                " tensors)");
  if (!sdxl && !components.text_encoder_2.empty())
    throw std::invalid_argument(what + ": SD 1.x has one text encoder, but text_encoder_2 holds " +
                                std::to_string(components.text_encoder_2.size()) + " tensors");

  JoinedFile joined;
  join_unet(components.unet, expect.unet, joined);
  join_vae(components.vae, expect.vae_levels, joined);
  join_clip_text(components.text_encoder, sdxl ? kSgmTextEncoderPrefix : kLdmTextEncoderPrefix, joined);
  if (sdxl) {
    std::vector<std::string> unplaced;
    for (const auto& [key, tensor] : open_clip_from_transformers(components.text_encoder_2, unplaced))
      joined.place(kSgmTextEncoder2Prefix + key, tensor, "text_encoder_2/" + key);
    for (const auto& key : unplaced) joined.unplaced.push_back("text_encoder_2/" + key);
  }
  if (!joined.unplaced.empty())
    throw std::invalid_argument(what + ": " + std::to_string(joined.unplaced.size()) +
                                " keys cannot be placed: " + list_keys(joined.unplaced));
  if (!joined.missing_blocks.empty())
    throw std::invalid_argument(what + ": the UNet config expects blocks the UNet does not have: " +
                                list_keys(joined.missing_blocks));
  return std::move(joined.tensors);
}

} // namespace sdxl::io

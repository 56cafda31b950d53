// Reading component configs (diffusers / transformers config.json) into config structs.
#include "models/configs.h"

#include <fstream>   // std::ifstream
#include <stdexcept> // std::invalid_argument, std::runtime_error

namespace sdxl::models {

namespace {

using nlohmann::json;

// A value when the key is present and not null, else the fallback.
template <typename T>
T value_or(const json& config, const char* key, const T& fallback) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return fallback;
  return it->get<T>();
}

// An int-or-list option ("layers_per_block": 2 or [2, 2, 2]) expanded to one value per level.
std::vector<int64_t> per_level(const json& config, const char* key, size_t levels,
                               const std::vector<int64_t>& fallback) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) {
    if (fallback.size() == levels) return fallback;
    throw std::invalid_argument(std::string("UNet config: '") + key + "' is missing");
  }
  if (it->is_number_integer()) return std::vector<int64_t>(levels, it->get<int64_t>());
  auto values = it->get<std::vector<int64_t>>();
  if (values.size() != levels) {
    throw std::invalid_argument(std::string("UNet config: '") + key + "' has " +
                                std::to_string(values.size()) + " entries for " +
                                std::to_string(levels) + " levels");
  }
  return values;
}

// Rejects a config value the models do not implement.
void require(bool supported, const std::string& component, const std::string& what) {
  if (!supported) throw std::invalid_argument(component + " config: unsupported " + what);
}

bool is_null_or_missing(const json& config, const char* key) {
  auto it = config.find(key);
  return it == config.end() || it->is_null();
}

} // namespace

const char* family_name(ModelFamily family) {
  switch (family) {
    case ModelFamily::Sd1: return "sd1";
    case ModelFamily::Sd2: return "sd2";
    case ModelFamily::Sdxl: return "sdxl";
  }
  return "unknown";
}

ModelFamily parse_family(const std::string& name) {
  for (const ModelFamily family : {ModelFamily::Sd1, ModelFamily::Sd2, ModelFamily::Sdxl})
    if (name == family_name(family)) return family;
  throw std::invalid_argument("unknown model family \"" + name + "\" (expected sd1, sd2 or sdxl)");
}

json read_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    throw std::runtime_error("cannot parse " + path + ": " + e.what());
  }
}

// ----------------------------------------------------------------------------
// UNet

UNetConfig UNetConfig::from_json(const json& config) {
  UNetConfig c;
  c.in_channels = value_or(config, "in_channels", c.in_channels);
  c.out_channels = value_or(config, "out_channels", c.out_channels);
  c.sample_size = value_or(config, "sample_size", c.sample_size);
  // Fallbacks for keys a file leaves out are diffusers' own defaults (SD 1.x's), not SDXL's.
  const UNetConfig defaults = sd15_base();
  c.block_out_channels = value_or(config, "block_out_channels", defaults.block_out_channels);
  const size_t levels = c.block_out_channels.size();
  c.down_block_types = value_or(config, "down_block_types", defaults.down_block_types);
  c.up_block_types = value_or(config, "up_block_types", defaults.up_block_types);
  c.mid_block_type = value_or(config, "mid_block_type", c.mid_block_type);
  // diffusers' defaults when absent: 2 resnets and 1 transformer layer per level.
  c.layers_per_block = per_level(config, "layers_per_block", levels, std::vector<int64_t>(levels, 2));
  c.transformer_layers_per_block =
      per_level(config, "transformer_layers_per_block", levels, std::vector<int64_t>(levels, 1));
  // diffusers' legacy naming: attention_head_dim holds the head count when num_attention_heads is null.
  const std::vector<int64_t> default_heads(levels, defaults.num_attention_heads.front());
  c.num_attention_heads = is_null_or_missing(config, "num_attention_heads")
                              ? per_level(config, "attention_head_dim", levels, default_heads)
                              : per_level(config, "num_attention_heads", levels, default_heads);
  c.cross_attention_dim = value_or(config, "cross_attention_dim", int64_t{1280});
  c.norm_num_groups = value_or(config, "norm_num_groups", c.norm_num_groups);
  c.norm_eps = value_or(config, "norm_eps", c.norm_eps);
  c.use_linear_projection = value_or(config, "use_linear_projection", false); // diffusers' default: conv
  c.upcast_attention = value_or(config, "upcast_attention", c.upcast_attention);
  c.flip_sin_to_cos = value_or(config, "flip_sin_to_cos", c.flip_sin_to_cos);
  c.freq_shift = value_or(config, "freq_shift", c.freq_shift);
  // A missing or null addition_embed_type means none (SD 1.x/2.x), whatever our SDXL default.
  c.addition_embed_type = value_or(config, "addition_embed_type", std::string());
  c.addition_time_embed_dim = value_or(config, "addition_time_embed_dim", c.addition_time_embed_dim);
  c.projection_class_embeddings_input_dim = value_or(
      config, "projection_class_embeddings_input_dim", c.projection_class_embeddings_input_dim);
  c.downsample_padding = value_or(config, "downsample_padding", c.downsample_padding);
  c.mid_block_scale_factor = value_or(config, "mid_block_scale_factor", c.mid_block_scale_factor);
  c.conv_in_kernel = value_or(config, "conv_in_kernel", c.conv_in_kernel);
  c.conv_out_kernel = value_or(config, "conv_out_kernel", c.conv_out_kernel);

  const std::string unet = "UNet";
  require(c.down_block_types.size() == levels && c.up_block_types.size() == levels, unet,
          "block type lists (one per block_out_channels entry expected)");
  for (const auto& t : c.down_block_types)
    require(t == "DownBlock2D" || t == "CrossAttnDownBlock2D", unet, "down block type " + t);
  for (const auto& t : c.up_block_types)
    require(t == "UpBlock2D" || t == "CrossAttnUpBlock2D", unet, "up block type " + t);
  require(c.mid_block_type == "UNetMidBlock2DCrossAttn", unet, "mid_block_type " + c.mid_block_type);
  require(c.addition_embed_type.empty() || c.addition_embed_type == "text_time", unet,
          "addition_embed_type " + c.addition_embed_type);
  require(value_or<std::string>(config, "act_fn", "silu") == "silu", unet, "act_fn");
  require(value_or<std::string>(config, "time_embedding_type", "positional") == "positional", unet,
          "time_embedding_type");
  require(value_or<std::string>(config, "resnet_time_scale_shift", "default") == "default", unet,
          "resnet_time_scale_shift");
  require(value_or<std::string>(config, "attention_type", "default") == "default", unet,
          "attention_type");
  require(value_or(config, "resnet_out_scale_factor", 1.0) == 1.0, unet, "resnet_out_scale_factor");
  require(!value_or(config, "center_input_sample", false), unet, "center_input_sample");
  require(!value_or(config, "dual_cross_attention", false), unet, "dual_cross_attention");
  require(!value_or(config, "resnet_skip_time_act", false), unet, "resnet_skip_time_act");
  require(!value_or(config, "class_embeddings_concat", false), unet, "class_embeddings_concat");
  require(config.value("only_cross_attention", json(false)) == json(false), unet,
          "only_cross_attention");
  for (const char* key : {"class_embed_type", "num_class_embeds", "encoder_hid_dim",
                          "encoder_hid_dim_type", "time_cond_proj_dim", "time_embedding_dim",
                          "time_embedding_act_fn", "timestep_post_act", "cross_attention_norm",
                          "reverse_transformer_layers_per_block", "mid_block_only_cross_attention"}) {
    require(is_null_or_missing(config, key), unet, std::string(key) + " (must be null)");
  }
  require(c.mid_block_scale_factor == 1.0, unet, "mid_block_scale_factor");
  for (size_t i = 0; i < levels; ++i) {
    require(c.block_out_channels[i] % c.num_attention_heads[i] == 0, unet,
            "head count (channels not divisible by heads)");
  }
  return c;
}

UNetConfig UNetConfig::from_file(const std::string& path) { return from_json(read_json_file(path)); }

UNetConfig UNetConfig::sdxl_base() { return UNetConfig{}; } // the defaults are SDXL-base 1.0

UNetConfig UNetConfig::sd15_base() {
  UNetConfig c;
  c.sample_size = 64;
  c.block_out_channels = {320, 640, 1280, 1280};
  c.down_block_types = {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"};
  c.up_block_types = {"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"};
  c.layers_per_block = {2, 2, 2, 2};
  c.transformer_layers_per_block = {1, 1, 1, 1};
  c.num_attention_heads = {8, 8, 8, 8}; // attention_head_dim 8 in diffusers' legacy naming
  c.cross_attention_dim = 768;
  c.use_linear_projection = false;
  c.addition_embed_type = "";
  c.addition_time_embed_dim = 0;
  c.projection_class_embeddings_input_dim = 0;
  return c;
}

// ----------------------------------------------------------------------------
// CLIP text

ClipEncoderConfig ClipEncoderConfig::from_json(const json& config, const std::string& component) {
  ClipEncoderConfig c;
  c.hidden_size = value_or(config, "hidden_size", c.hidden_size);
  c.intermediate_size = value_or(config, "intermediate_size", c.intermediate_size);
  c.num_hidden_layers = value_or(config, "num_hidden_layers", c.num_hidden_layers);
  c.num_attention_heads = value_or(config, "num_attention_heads", c.num_attention_heads);
  c.hidden_act = value_or(config, "hidden_act", c.hidden_act);
  c.layer_norm_eps = value_or(config, "layer_norm_eps", c.layer_norm_eps);
  require(c.hidden_act == "quick_gelu" || c.hidden_act == "gelu", component, "hidden_act " + c.hidden_act);
  require(c.hidden_size % c.num_attention_heads == 0, component, "head count");
  return c;
}

ClipTextConfig ClipTextConfig::from_json(const json& config) {
  ClipTextConfig c;
  static_cast<ClipEncoderConfig&>(c) = ClipEncoderConfig::from_json(config, "CLIP text");
  c.vocab_size = value_or(config, "vocab_size", c.vocab_size);
  c.max_position_embeddings = value_or(config, "max_position_embeddings", c.max_position_embeddings);
  c.projection_dim = value_or(config, "projection_dim", c.projection_dim);
  c.bos_token_id = value_or(config, "bos_token_id", c.bos_token_id);
  c.eos_token_id = value_or(config, "eos_token_id", c.eos_token_id);
  c.pad_token_id = value_or(config, "pad_token_id", c.pad_token_id);
  const auto architectures = value_or(config, "architectures", std::vector<std::string>{});
  c.with_projection = !architectures.empty() && architectures.front() == "CLIPTextModelWithProjection";
  return c;
}

ClipTextConfig ClipTextConfig::from_file(const std::string& path) {
  return from_json(read_json_file(path));
}

ClipTextConfig ClipTextConfig::sdxl_base_text_encoder() { return ClipTextConfig{}; }

ClipTextConfig ClipTextConfig::sd15_base_text_encoder() { return ClipTextConfig{}; } // CLIP ViT-L/14, as SDXL's first

ClipTextConfig ClipTextConfig::sdxl_base_text_encoder_2() {
  ClipTextConfig c;
  c.hidden_size = 1280;
  c.intermediate_size = 5120;
  c.num_hidden_layers = 32;
  c.num_attention_heads = 20;
  c.hidden_act = "gelu";
  c.projection_dim = 1280;
  c.with_projection = true;
  return c;
}

// ----------------------------------------------------------------------------
// VAE

VaeConfig VaeConfig::from_json(const json& config) {
  VaeConfig c;
  c.in_channels = value_or(config, "in_channels", c.in_channels);
  c.out_channels = value_or(config, "out_channels", c.out_channels);
  c.latent_channels = value_or(config, "latent_channels", c.latent_channels);
  c.sample_size = value_or(config, "sample_size", c.sample_size);
  c.block_out_channels = value_or(config, "block_out_channels", c.block_out_channels);
  c.down_block_types = value_or(config, "down_block_types", c.down_block_types);
  c.up_block_types = value_or(config, "up_block_types", c.up_block_types);
  c.layers_per_block = value_or(config, "layers_per_block", c.layers_per_block);
  c.norm_num_groups = value_or(config, "norm_num_groups", c.norm_num_groups);
  c.scaling_factor = value_or(config, "scaling_factor", sd15_base().scaling_factor); // diffusers' default
  c.shift_factor = value_or(config, "shift_factor", c.shift_factor);
  c.force_upcast = value_or(config, "force_upcast", c.force_upcast);
  c.use_quant_conv = value_or(config, "use_quant_conv", c.use_quant_conv);
  c.use_post_quant_conv = value_or(config, "use_post_quant_conv", c.use_post_quant_conv);
  c.mid_block_add_attention = value_or(config, "mid_block_add_attention", c.mid_block_add_attention);

  const size_t levels = c.block_out_channels.size();
  require(c.down_block_types.size() == levels && c.up_block_types.size() == levels, "VAE",
          "block type lists (one per block_out_channels entry expected)");
  for (const auto& t : c.down_block_types) require(t == "DownEncoderBlock2D", "VAE", "down block " + t);
  for (const auto& t : c.up_block_types) require(t == "UpDecoderBlock2D", "VAE", "up block " + t);
  require(value_or<std::string>(config, "act_fn", "silu") == "silu", "VAE", "act_fn");
  return c;
}

VaeConfig VaeConfig::from_file(const std::string& path) { return from_json(read_json_file(path)); }

VaeConfig VaeConfig::sdxl_base() { return VaeConfig{}; }

VaeConfig VaeConfig::sd15_base() {
  VaeConfig c;
  c.sample_size = 512;
  c.scaling_factor = 0.18215;
  return c;
}

} // namespace sdxl::models

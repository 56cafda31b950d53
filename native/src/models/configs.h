// Configuration of each pipeline component, read from its diffusers / transformers
// config.json. Defaults are SDXL-base 1.0's values; the sdxl_base() and sd15_base()
// factories give the whole published configs for single-file checkpoints that carry
// none. Options the models do not implement are rejected with a clear error instead
// of being silently ignored.
#pragma once

#include <nlohmann/json.hpp> // nlohmann::json

#include <cstdint> // int64_t
#include <string>
#include <vector>

namespace sdxl::models {

// ----------------------------------------------------------------------------
// Model family: what conditions the UNet
//   Sd1   Stable Diffusion 1.x: one CLIP ViT-L text encoder, 1x1-conv projections, 512 px
//   Sd2   Stable Diffusion 2.x: one OpenCLIP-H text encoder, linear projections, 768 px
//   Sdxl  SDXL: two text encoders, pooled text and size ids as an added embedding, 1024 px

enum class ModelFamily { Sd1, Sd2, Sdxl };

const char* family_name(ModelFamily family); // "sd1", "sd2", "sdxl"
ModelFamily parse_family(const std::string& name); // throws std::invalid_argument for another name

// ----------------------------------------------------------------------------
// UNet2DConditionModel

struct UNetConfig {
  int64_t in_channels = 4;
  int64_t out_channels = 4;
  int64_t sample_size = 128;                                 // latent side (informational)
  std::vector<int64_t> block_out_channels = {320, 640, 1280}; // channels per level
  std::vector<std::string> down_block_types = {"DownBlock2D", "CrossAttnDownBlock2D",
                                               "CrossAttnDownBlock2D"};
  std::vector<std::string> up_block_types = {"CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                                             "UpBlock2D"};
  std::string mid_block_type = "UNetMidBlock2DCrossAttn";
  std::vector<int64_t> layers_per_block = {2, 2, 2};            // resnets per down level (up: +1)
  std::vector<int64_t> transformer_layers_per_block = {1, 2, 10}; // per down level; up uses reversed
  // Attention heads per level. diffusers' legacy `attention_head_dim` holds these
  // when `num_attention_heads` is null; head_dim = channels / heads.
  std::vector<int64_t> num_attention_heads = {5, 10, 20};
  int64_t cross_attention_dim = 2048;   // te1 hidden + te2 hidden
  int64_t norm_num_groups = 32;
  double norm_eps = 1e-5;               // resnets and final norm
  bool use_linear_projection = true;    // Transformer2DModel proj_in / proj_out: Linear, else 1x1 Conv2d (SD 1.x)
  bool upcast_attention = false;        // attention scores in float32 for half dtypes
  bool flip_sin_to_cos = true;          // timestep features are [cos, sin]
  double freq_shift = 0;                // downscale_freq_shift of the sinusoidal features
  std::string addition_embed_type = "text_time"; // "" (SD 1.x/2.x: none) or "text_time" (SDXL)
  int64_t addition_time_embed_dim = 256;                 // sinusoidal features per time id
  int64_t projection_class_embeddings_input_dim = 2816;  // pooled text (1280) + 6 * 256
  int64_t downsample_padding = 1;
  double mid_block_scale_factor = 1.0;
  int64_t conv_in_kernel = 3;
  int64_t conv_out_kernel = 3;

  int64_t time_embed_dim() const { return block_out_channels.front() * 4; }
  // SDXL's added embedding of pooled text and size ids ("text_time").
  bool has_added_embedding() const { return addition_embed_type == "text_time"; }

  // Throws std::invalid_argument for options the UNet does not implement.
  static UNetConfig from_json(const nlohmann::json& config);
  static UNetConfig from_file(const std::string& path);
  static UNetConfig sdxl_base();
  static UNetConfig sd15_base(); // stable-diffusion-v1-5's unet/config.json
};

// ----------------------------------------------------------------------------
// CLIP's transformer encoder (both towers), CLIPTextModel / CLIPTextModelWithProjection

// The encoder layers' shape, shared by the text and the vision tower (metrics/clip_model.h).
struct ClipEncoderConfig {
  int64_t hidden_size = 768;
  int64_t intermediate_size = 3072;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 12;
  std::string hidden_act = "quick_gelu"; // "quick_gelu" or "gelu"
  double layer_norm_eps = 1e-5;

  // Throws std::invalid_argument("<component>: ...") for an unsupported activation or head count.
  static ClipEncoderConfig from_json(const nlohmann::json& config, const std::string& component);
};

struct ClipTextConfig : ClipEncoderConfig {
  int64_t vocab_size = 49408;
  int64_t max_position_embeddings = 77;
  int64_t projection_dim = 768;
  int64_t bos_token_id = 0;
  int64_t eos_token_id = 2; // 2 = legacy: the pooled token is argmax(input_ids)
  int64_t pad_token_id = 1;
  bool with_projection = false; // architectures: CLIPTextModelWithProjection

  static ClipTextConfig from_json(const nlohmann::json& config);
  static ClipTextConfig from_file(const std::string& path);
  static ClipTextConfig sdxl_base_text_encoder();   // CLIP ViT-L/14 text model (SD 1.x's too)
  static ClipTextConfig sdxl_base_text_encoder_2(); // OpenCLIP ViT-bigG/14 text model + projection
  static ClipTextConfig sd15_base_text_encoder();   // stable-diffusion-v1-5's text_encoder/config.json
};

// ----------------------------------------------------------------------------
// AutoencoderKL

struct VaeConfig {
  int64_t in_channels = 3;
  int64_t out_channels = 3;
  int64_t latent_channels = 4;
  int64_t sample_size = 1024;
  std::vector<int64_t> block_out_channels = {128, 256, 512, 512};
  std::vector<std::string> down_block_types = std::vector<std::string>(4, "DownEncoderBlock2D");
  std::vector<std::string> up_block_types = std::vector<std::string>(4, "UpDecoderBlock2D");
  int64_t layers_per_block = 2; // encoder resnets per level (decoder: +1)
  int64_t norm_num_groups = 32;
  double scaling_factor = 0.13025; // latents * scaling_factor feed the UNet (SD 1.x/2.x: 0.18215)
  double shift_factor = 0.0;       // null in SDXL
  bool force_upcast = true;        // SDXL's VAE overflows in float16
  bool use_quant_conv = true;
  bool use_post_quant_conv = true;
  bool mid_block_add_attention = true;

  static VaeConfig from_json(const nlohmann::json& config);
  static VaeConfig from_file(const std::string& path);
  static VaeConfig sdxl_base();
  static VaeConfig sd15_base(); // stable-diffusion-v1-5's vae/config.json
};

// Reads a JSON file; throws std::runtime_error naming the path on failure.
nlohmann::json read_json_file(const std::string& path);

} // namespace sdxl::models

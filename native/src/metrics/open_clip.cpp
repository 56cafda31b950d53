// OpenCLIP (open_clip.h): open_clip 3.x's VisionTransformer (class-token pooling, ln_post,
// proj) and TextTransformer (causal mask, ln_final, argmax pooling, text_projection) with
// ResidualAttentionBlock (pre-norm nn.MultiheadAttention with a fused in_proj, MLP c_fc/c_proj).
#include "metrics/open_clip.h"

#include <filesystem> // model folder files
#include <fstream>    // open_clip_config.json
#include <stdexcept>  // std::runtime_error

#include <nlohmann/json.hpp>

#include "io/safetensors.h"    // load_safetensors
#include "models/layers.h"     // attend
#include "models/state_dict.h" // load_state_dict, add_parameter

namespace sdxl::metrics {

namespace {

namespace F = torch::nn::functional;
using nlohmann::json;

constexpr double kQuickGeluSlope = 1.702;
constexpr double kLayerNormEps = 1e-5;

torch::Tensor layer_norm(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  return torch::layer_norm(x, {x.size(-1)}, weight, bias, kLayerNormEps);
}

} // namespace

// open_clip's Transformer: `layers` ResidualAttentionBlocks under resblocks.N.
class OpenClipTowerImpl : public torch::nn::Module {
 public:
  OpenClipTowerImpl(int64_t width, int64_t heads, int64_t layers, double mlp_ratio, bool quick_gelu)
      : heads_(heads), quick_gelu_(quick_gelu) {
    const int64_t hidden = static_cast<int64_t>(width * mlp_ratio);
    for (int64_t i = 0; i < layers; ++i) {
      const std::string p = "resblocks." + std::to_string(i) + ".";
      Block b;
      b.ln_1_weight = models::add_parameter(*this, p + "ln_1.weight", torch::ones({width}));
      b.ln_1_bias = models::add_parameter(*this, p + "ln_1.bias", torch::zeros({width}));
      b.in_proj_weight = models::add_parameter(*this, p + "attn.in_proj_weight", torch::zeros({3 * width, width}));
      b.in_proj_bias = models::add_parameter(*this, p + "attn.in_proj_bias", torch::zeros({3 * width}));
      b.out_proj_weight = models::add_parameter(*this, p + "attn.out_proj.weight", torch::zeros({width, width}));
      b.out_proj_bias = models::add_parameter(*this, p + "attn.out_proj.bias", torch::zeros({width}));
      b.ln_2_weight = models::add_parameter(*this, p + "ln_2.weight", torch::ones({width}));
      b.ln_2_bias = models::add_parameter(*this, p + "ln_2.bias", torch::zeros({width}));
      b.fc_weight = models::add_parameter(*this, p + "mlp.c_fc.weight", torch::zeros({hidden, width}));
      b.fc_bias = models::add_parameter(*this, p + "mlp.c_fc.bias", torch::zeros({hidden}));
      b.proj_weight = models::add_parameter(*this, p + "mlp.c_proj.weight", torch::zeros({width, hidden}));
      b.proj_bias = models::add_parameter(*this, p + "mlp.c_proj.bias", torch::zeros({width}));
      blocks_.push_back(b);
    }
  }

  torch::Tensor forward(torch::Tensor x, bool causal) { // [B, N, width] -> same
    const int64_t batch = x.size(0), tokens = x.size(1);
    auto split = [&](const torch::Tensor& t) { return t.view({batch, tokens, heads_, -1}).transpose(1, 2); };
    for (const Block& b : blocks_) {
      const auto qkv = torch::linear(layer_norm(x, b.ln_1_weight, b.ln_1_bias), b.in_proj_weight, b.in_proj_bias)
                           .chunk(3, -1); // 3 x [B, N, width]
      const torch::Tensor attended = models::attend(split(qkv[0]), split(qkv[1]), split(qkv[2]), causal); // [B, heads, N, d]
      x = x + torch::linear(attended.transpose(1, 2).reshape({batch, tokens, -1}), b.out_proj_weight, b.out_proj_bias);
      torch::Tensor h = torch::linear(layer_norm(x, b.ln_2_weight, b.ln_2_bias), b.fc_weight, b.fc_bias);
      h = quick_gelu_ ? h * torch::sigmoid(kQuickGeluSlope * h) : torch::gelu(h);
      x = x + torch::linear(h, b.proj_weight, b.proj_bias);
    }
    return x;
  }

 private:
  struct Block {
    torch::Tensor ln_1_weight, ln_1_bias, in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias;
    torch::Tensor ln_2_weight, ln_2_bias, fc_weight, fc_bias, proj_weight, proj_bias;
  };
  int64_t heads_;
  bool quick_gelu_;
  std::vector<Block> blocks_;
};

OpenClipImpl::OpenClipImpl(const OpenClipConfig& c) : config_(c) {
  const int64_t vw = c.vision_width, grid = c.image_size / c.patch_size;
  conv1_ = models::add_parameter(*this, "visual.conv1.weight", torch::zeros({vw, 3, c.patch_size, c.patch_size}));
  class_embedding_ = models::add_parameter(*this, "visual.class_embedding", torch::zeros({vw}));
  visual_positions_ = models::add_parameter(*this, "visual.positional_embedding", torch::zeros({grid * grid + 1, vw}));
  ln_pre_weight_ = models::add_parameter(*this, "visual.ln_pre.weight", torch::ones({vw}));
  ln_pre_bias_ = models::add_parameter(*this, "visual.ln_pre.bias", torch::zeros({vw}));
  auto visual = named_children()["visual"];
  visual_transformer_ = visual->register_module(
      "transformer", std::make_shared<OpenClipTowerImpl>(vw, vw / c.vision_head_width, c.vision_layers,
                                                         c.vision_mlp_ratio, c.quick_gelu));
  ln_post_weight_ = models::add_parameter(*this, "visual.ln_post.weight", torch::ones({vw}));
  ln_post_bias_ = models::add_parameter(*this, "visual.ln_post.bias", torch::zeros({vw}));
  visual_proj_ = models::add_parameter(*this, "visual.proj", torch::zeros({vw, c.embed_dim}));

  const int64_t tw = c.text_width;
  token_embedding_ = models::add_parameter(*this, "token_embedding.weight", torch::zeros({c.vocab_size, tw}));
  text_positions_ = models::add_parameter(*this, "positional_embedding", torch::zeros({c.context_length, tw}));
  text_transformer_ = register_module(
      "transformer", std::make_shared<OpenClipTowerImpl>(tw, c.text_heads, c.text_layers, c.text_mlp_ratio, c.quick_gelu));
  ln_final_weight_ = models::add_parameter(*this, "ln_final.weight", torch::ones({tw}));
  ln_final_bias_ = models::add_parameter(*this, "ln_final.bias", torch::zeros({tw}));
  text_projection_ = models::add_parameter(*this, "text_projection", torch::zeros({tw, c.embed_dim}));
}

torch::Tensor OpenClipImpl::encode_image(const torch::Tensor& pixels) {
  const int64_t batch = pixels.size(0);
  const torch::Tensor x = pixels.to(conv1_.device(), conv1_.scalar_type());
  torch::Tensor h = torch::conv2d(x, conv1_, {}, config_.patch_size).flatten(2).transpose(1, 2); // [N, g*g, width]
  h = torch::cat({class_embedding_.view({1, 1, -1}).expand({batch, 1, -1}), h}, 1);        // [N, g*g + 1, width]
  h = layer_norm(h + visual_positions_.unsqueeze(0), ln_pre_weight_, ln_pre_bias_);
  h = visual_transformer_->forward(h, /*causal=*/false);
  const torch::Tensor pooled = layer_norm(h.select(1, 0), ln_post_weight_, ln_post_bias_); // [N, width]
  return pooled.matmul(visual_proj_);                                                      // [N, embed_dim]
}

torch::Tensor OpenClipImpl::encode_text(const torch::Tensor& tokens) {
  const torch::Tensor ids = tokens.to(token_embedding_.device(), torch::kLong); // [P, L]
  torch::Tensor h = F::embedding(ids, token_embedding_) + text_positions_.slice(0, 0, ids.size(1)).unsqueeze(0);
  h = layer_norm(text_transformer_->forward(h, /*causal=*/true), ln_final_weight_, ln_final_bias_); // [P, L, width]
  const torch::Tensor rows = torch::arange(ids.size(0), ids.options());
  return h.index({rows, ids.argmax(-1)}).matmul(text_projection_); // [P, embed_dim]
}

// ----------------------------------------------------------------------------
// The model folder

torch::Tensor OpenClipModel::tokens(const std::vector<std::string>& prompts) const {
  const int64_t length = network->config().context_length;
  std::vector<torch::Tensor> rows;
  for (const std::string& prompt : prompts) {
    std::vector<int64_t> ids = tokenizer->encode(prompt);
    ids.resize(std::min<size_t>(ids.size(), static_cast<size_t>(length - 2)));
    ids.insert(ids.begin(), tokenizer->bos_id());
    ids.push_back(tokenizer->eos_id());
    ids.resize(static_cast<size_t>(length), tokenizer->pad_id());
    rows.push_back(torch::tensor(ids, torch::kLong));
  }
  return torch::stack(rows); // [P, context_length]
}

torch::Tensor OpenClipModel::image_features(const std::vector<torch::Tensor>& images) {
  return encode_images(images, processing, [&](const torch::Tensor& pixels) { return network->encode_image(pixels); });
}

torch::Tensor OpenClipModel::text_features(const std::vector<std::string>& prompts) {
  torch::NoGradGuard no_grad;
  return network->encode_text(tokens(prompts)).to(torch::kCPU); // [P, embed_dim]
}

OpenClipModel load_open_clip(const std::string& dir, const torch::Device& device) {
  const std::filesystem::path root(dir);
  std::ifstream file(root / "open_clip_config.json");
  if (!file) throw std::runtime_error("cannot read " + (root / "open_clip_config.json").string());
  const json config = json::parse(file);
  const json& model = config.at("model_cfg");
  const json vision = model.value("vision_cfg", json::object());
  const json text = model.value("text_cfg", json::object());

  OpenClipConfig c;
  c.embed_dim = model.value("embed_dim", c.embed_dim);
  c.quick_gelu = model.value("quick_gelu", c.quick_gelu);
  c.image_size = vision.value("image_size", c.image_size);
  c.patch_size = vision.value("patch_size", c.patch_size);
  c.vision_width = vision.value("width", c.vision_width);
  c.vision_layers = vision.value("layers", c.vision_layers);
  c.vision_head_width = vision.value("head_width", int64_t{64}); // open_clip's CLIPVisionCfg default
  c.vision_mlp_ratio = vision.value("mlp_ratio", c.vision_mlp_ratio);
  c.context_length = text.value("context_length", c.context_length);
  c.vocab_size = text.value("vocab_size", c.vocab_size);
  c.text_width = text.value("width", c.text_width);
  c.text_heads = text.value("heads", c.text_heads);
  c.text_layers = text.value("layers", c.text_layers);
  c.text_mlp_ratio = text.value("mlp_ratio", c.text_mlp_ratio);
  for (const char* unsupported : {"attentional_pool", "ls_init_value", "no_ln_pre", "final_ln_after_pool"}) {
    if (vision.contains(unsupported) && !vision.at(unsupported).is_null() && vision.at(unsupported) != false)
      throw std::runtime_error(dir + ": vision_cfg." + unsupported + " is not supported");
  }

  OpenClipModel result;
  result.network = std::make_shared<OpenClipImpl>(c);
  models::load_state_dict(*result.network, io::load_safetensors((root / "open_clip_model.safetensors").string()),
                          "OpenCLIP model");
  result.network->to(device);
  result.network->eval();
  const json preprocess = config.value("preprocess_cfg", json::object());
  ClipImageProcessing& p = result.processing;
  p.shortest_edge = p.crop_height = p.crop_width = preprocess.value("size", c.image_size);
  p.weight_bits = kPillowWeightBits; // open_clip's preprocess_val resizes PIL images
  if (preprocess.contains("mean")) p.mean = preprocess.at("mean").get<std::array<double, 3>>();
  if (preprocess.contains("std")) p.std = preprocess.at("std").get<std::array<double, 3>>();
  result.tokenizer = std::make_shared<io::ClipTokenizer>(io::ClipTokenizer::from_dir(dir));
  return result;
}

} // namespace sdxl::metrics

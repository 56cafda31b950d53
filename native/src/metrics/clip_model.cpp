// CLIPModel for scoring (clip_model.h): transformers' CLIPVisionTransformer forward and
// CLIPImageProcessor's (torchvision backend) preprocessing.
#include "metrics/clip_model.h"

#include <algorithm>  // std::min, std::max
#include <cmath>      // std::nearbyint, std::abs
#include <filesystem> // model folder files
#include <fstream>    // config files
#include <stdexcept>  // std::runtime_error

#include <nlohmann/json.hpp>

#include "io/safetensors.h"    // load_safetensors
#include "models/state_dict.h" // load_state_dict, StateDict

namespace sdxl::metrics {

namespace {

namespace F = torch::nn::functional;
using nlohmann::json;

constexpr int64_t kEmbedBatch = 16; // images per forward when scoring many

json read_json(const std::filesystem::path& path) {
  std::ifstream file(path);
  if (!file) throw std::runtime_error("cannot read " + path.string());
  return json::parse(file);
}

// Python's round() (half to even), as torchvision's centre crop uses it.
int64_t round_half_even(double x) { return static_cast<int64_t>(std::nearbyint(x)); }

ClipImageProcessing processing_from(const json& config) {
  ClipImageProcessing p;
  const json& size = config.at("size");
  if (size.contains("shortest_edge")) {
    p.shortest_edge = size.at("shortest_edge").get<int64_t>();
  } else if (size.contains("height")) {
    p.shortest_edge = std::min(size.at("height").get<int64_t>(), size.at("width").get<int64_t>());
  } else {
    p.shortest_edge = size.get<int64_t>();
  }
  const json crop = config.value("crop_size", json::object({{"height", p.shortest_edge}, {"width", p.shortest_edge}}));
  p.crop_height = crop.is_number() ? crop.get<int64_t>() : crop.at("height").get<int64_t>();
  p.crop_width = crop.is_number() ? crop.get<int64_t>() : crop.at("width").get<int64_t>();
  if (config.contains("image_mean")) p.mean = config.at("image_mean").get<std::array<double, 3>>();
  if (config.contains("image_std")) p.std = config.at("image_std").get<std::array<double, 3>>();
  return p;
}

// Pillow's bicubic filter (a = -0.5), the one its antialiased resize and torch's copy of it use.
double bicubic(double x) {
  constexpr double a = -0.5;
  x = std::abs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

constexpr double kBicubicSupport = 2.0;

// One output pixel's taps along an axis: the first input index and fixed-point weights.
struct Taps {
  int64_t first = 0;
  std::vector<int64_t> weights;
};

// Pillow's precompute_coeffs (antialiased: the filter widened by the scale when shrinking),
// the weights normalised, then rounded to `bits` fractional bits (0: the most that keep
// every weight under 2^15, as torch's uint8 kernel chooses).
std::vector<Taps> resize_taps(int64_t in_size, int64_t out_size, int bits) {
  const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);
  const double filter_scale = std::max(scale, 1.0);
  const double support = kBicubicSupport * filter_scale;
  std::vector<std::vector<double>> weights(out_size);
  std::vector<int64_t> firsts(out_size);
  double largest = 0;
  for (int64_t o = 0; o < out_size; ++o) {
    const double center = (o + 0.5) * scale;
    const int64_t first = std::max<int64_t>(static_cast<int64_t>(center - support + 0.5), 0);
    const int64_t last = std::min<int64_t>(static_cast<int64_t>(center + support + 0.5), in_size);
    double total = 0;
    for (int64_t i = first; i < last; ++i) {
      weights[o].push_back(bicubic((i - center + 0.5) / filter_scale));
      total += weights[o].back();
    }
    for (double& w : weights[o]) {
      if (total != 0.0) w /= total;
      largest = std::max(largest, w);
    }
    firsts[o] = first;
  }
  if (bits == 0) {
    while (bits < 22 && static_cast<int64_t>(0.5 + largest * static_cast<double>(int64_t{1} << (bits + 1))) < (1 << 15)) ++bits;
  }
  std::vector<Taps> taps(out_size);
  for (int64_t o = 0; o < out_size; ++o) {
    taps[o].first = firsts[o];
    for (double w : weights[o]) {
      const double scaled = w * static_cast<double>(int64_t{1} << bits);
      taps[o].weights.push_back(static_cast<int64_t>(scaled < 0 ? scaled - 0.5 : scaled + 0.5));
    }
    taps[o].weights.push_back(bits); // the last entry carries the precision
  }
  return taps;
}

// One pass along the last axis of [C, rows, in] uint8 -> [C, rows, out].
torch::Tensor resample_rows(const torch::Tensor& pixels, int64_t out_size, int bits) {
  const torch::Tensor in = pixels.contiguous();
  const int64_t channels = in.size(0), rows = in.size(1), in_size = in.size(2);
  const std::vector<Taps> taps = resize_taps(in_size, out_size, bits);
  torch::Tensor out = torch::empty({channels, rows, out_size}, torch::kUInt8);
  const uint8_t* src = in.data_ptr<uint8_t>();
  uint8_t* dst = out.data_ptr<uint8_t>();
  for (int64_t r = 0; r < channels * rows; ++r) {
    for (int64_t o = 0; o < out_size; ++o) {
      const Taps& t = taps[o];
      const int64_t precision = t.weights.back();
      int64_t sum = int64_t{1} << (precision - 1);
      for (size_t k = 0; k + 1 < t.weights.size(); ++k) sum += src[r * in_size + t.first + static_cast<int64_t>(k)] * t.weights[k];
      dst[r * out_size + o] = static_cast<uint8_t>(std::clamp<int64_t>(sum >> precision, 0, 255));
    }
  }
  return out;
}

} // namespace

torch::Tensor resize_8bit(const torch::Tensor& image, int64_t height, int64_t width, int weight_bits) {
  torch::Tensor x = image;
  if (x.size(2) != width) x = resample_rows(x, width, weight_bits); // [3, H, width]
  if (x.size(1) != height) x = resample_rows(x.transpose(1, 2), height, weight_bits).transpose(1, 2); // [3, height, width]
  return x.contiguous();
}

// ----------------------------------------------------------------------------
// Preprocessing

torch::Tensor clip_image_input(const torch::Tensor& image, const ClipImageProcessing& p) {
  if (image.scalar_type() != torch::kUInt8 || image.dim() != 3 || image.size(0) != 3)
    throw std::invalid_argument("clip_image_input: expected a uint8 RGB image [3, H, W]");
  const int64_t height = image.size(1), width = image.size(2);
  // transformers' get_resize_output_image_size: the short side becomes shortest_edge, the
  // long one int(shortest_edge * long / short) (truncated).
  const bool portrait = height > width;
  const int64_t short_side = portrait ? width : height, long_side = portrait ? height : width;
  const int64_t new_long = static_cast<int64_t>(static_cast<double>(p.shortest_edge) * long_side / short_side);
  const int64_t new_height = portrait ? new_long : p.shortest_edge;
  const int64_t new_width = portrait ? p.shortest_edge : new_long;
  torch::Tensor x = resize_8bit(image, new_height, new_width, p.weight_bits).unsqueeze(0); // [1, 3, h, w]
  // torchvision's center_crop (pads with zeros when the image is smaller than the crop).
  if (new_height < p.crop_height || new_width < p.crop_width) {
    const int64_t pad_h = std::max<int64_t>(0, p.crop_height - new_height), pad_w = std::max<int64_t>(0, p.crop_width - new_width);
    x = F::pad(x, F::PadFuncOptions({pad_w / 2, (pad_w + 1) / 2, pad_h / 2, (pad_h + 1) / 2}));
  }
  const int64_t top = round_half_even((x.size(2) - p.crop_height) / 2.0);
  const int64_t left = round_half_even((x.size(3) - p.crop_width) / 2.0);
  x = x.slice(2, top, top + p.crop_height).slice(3, left, left + p.crop_width); // [1, 3, ch, cw]
  const torch::Tensor mean = torch::tensor({p.mean[0], p.mean[1], p.mean[2]}, torch::kFloat32).view({1, 3, 1, 1});
  const torch::Tensor std = torch::tensor({p.std[0], p.std[1], p.std[2]}, torch::kFloat32).view({1, 3, 1, 1});
  return ((x.to(torch::kFloat32) / 255.0 - mean) / std).squeeze(0); // [3, ch, cw]
}

// ----------------------------------------------------------------------------
// Vision tower

ClipVisionModelImpl::ClipVisionModelImpl(const ClipVisionConfig& c, torch::TensorOptions options) : config_(c) {
  auto vision_model = register_module("vision_model", std::make_shared<torch::nn::Module>());
  auto embeddings = vision_model->register_module("embeddings", std::make_shared<torch::nn::Module>());
  class_embedding = embeddings->register_parameter("class_embedding", torch::zeros({c.hidden_size}, options), false);
  auto patch = embeddings->register_module("patch_embedding", std::make_shared<torch::nn::Module>());
  patch_embedding = patch->register_parameter(
      "weight", torch::zeros({c.hidden_size, c.num_channels, c.patch_size, c.patch_size}, options), false);
  const int64_t patches = (c.image_size / c.patch_size) * (c.image_size / c.patch_size);
  position_embedding =
      embeddings->register_module("position_embedding", models::Embedding(patches + 1, c.hidden_size, options));
  pre_layrnorm = vision_model->register_module("pre_layrnorm", models::LayerNorm(c.hidden_size, c.layer_norm_eps, options));
  auto encoder = vision_model->register_module("encoder", std::make_shared<torch::nn::Module>());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i)
    layers.push_back(models::ClipEncoderLayer(c, options, /*causal=*/false));
  models::register_list(*encoder, "layers", layers);
  post_layernorm = vision_model->register_module("post_layernorm", models::LayerNorm(c.hidden_size, c.layer_norm_eps, options));
  visual_projection = register_module("visual_projection", models::Linear(c.hidden_size, c.projection_dim, false, options));
}

std::pair<torch::Tensor, torch::Tensor> ClipVisionModelImpl::forward(const torch::Tensor& pixel_values) {
  const int64_t batch = pixel_values.size(0);
  torch::Tensor x = pixel_values.to(patch_embedding.device(), patch_embedding.scalar_type());
  torch::Tensor patches = torch::conv2d(x, patch_embedding, {}, config_.patch_size); // [N, hidden, g, g]
  patches = patches.flatten(2).transpose(1, 2);                                       // [N, g*g, hidden]
  torch::Tensor cls = class_embedding.view({1, 1, -1}).expand({batch, 1, -1});        // [N, 1, hidden]
  torch::Tensor h = torch::cat({cls, patches}, 1);                                    // [N, g*g + 1, hidden]
  const torch::Tensor positions = torch::arange(h.size(1), torch::TensorOptions().dtype(torch::kLong).device(h.device()));
  h = pre_layrnorm(h + position_embedding(positions).unsqueeze(0));
  for (auto& layer : layers) h = layer(h);
  torch::Tensor pooled = post_layernorm(h.select(1, 0)); // [N, hidden]
  return {pooled, visual_projection(pooled)};           // [N, hidden], [N, projection]
}

// ----------------------------------------------------------------------------
// The model folder

torch::Tensor encode_images(const std::vector<torch::Tensor>& images, const ClipImageProcessing& processing,
                            const std::function<torch::Tensor(const torch::Tensor&)>& encode) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> chunks;
  for (size_t start = 0; start < images.size(); start += kEmbedBatch) {
    std::vector<torch::Tensor> inputs;
    for (size_t i = start; i < std::min(images.size(), start + kEmbedBatch); ++i)
      inputs.push_back(clip_image_input(images[i], processing));
    chunks.push_back(encode(torch::stack(inputs)).to(torch::kCPU)); // [n, D]
  }
  return torch::cat(chunks); // [N, D]
}

torch::Tensor ClipModel::image_embeds(const std::vector<torch::Tensor>& images) {
  return encode_images(images, processing, [&](const torch::Tensor& pixels) { return vision->forward(pixels).second; });
}

torch::Tensor ClipModel::text_embeds(const std::vector<std::string>& prompts) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> rows;
  for (const std::string& prompt : prompts) rows.push_back(torch::tensor(tokenizer->frame(prompt), torch::kLong));
  return text->forward(torch::stack(rows)).text_embeds.to(torch::kCPU); // [P, projection]
}

ClipModel load_clip_model(const std::string& dir, const torch::Device& device) {
  const std::filesystem::path root(dir);
  const json config = read_json(root / "config.json");
  const json& text_json = config.at("text_config");
  const json& vision_json = config.at("vision_config");
  const int64_t projection_dim = config.value("projection_dim", int64_t{512});

  models::ClipTextConfig text_config = models::ClipTextConfig::from_json(text_json);
  text_config.with_projection = true;
  text_config.projection_dim = projection_dim;
  ClipVisionConfig vision_config;
  static_cast<models::ClipEncoderConfig&>(vision_config) = models::ClipEncoderConfig::from_json(vision_json, "CLIP vision");
  vision_config.image_size = vision_json.value("image_size", vision_config.image_size);
  vision_config.patch_size = vision_json.value("patch_size", vision_config.patch_size);
  vision_config.num_channels = vision_json.value("num_channels", vision_config.num_channels);
  vision_config.projection_dim = projection_dim;

  ClipModel model;
  const auto options = torch::TensorOptions().dtype(torch::kFloat32);
  model.text = models::ClipTextModel(text_config, options);
  model.vision = ClipVisionModel(vision_config, options);
  // One file holds both towers: each takes its own keys.
  models::StateDict text_tensors, vision_tensors;
  for (auto& [key, tensor] : io::load_safetensors((root / "model.safetensors").string())) {
    const bool vision = key.rfind("vision_model.", 0) == 0 || key.rfind("visual_projection.", 0) == 0;
    (vision ? vision_tensors : text_tensors)[key] = tensor;
  }
  models::load_state_dict(*model.text, text_tensors, "CLIP text model");
  models::load_state_dict(*model.vision, vision_tensors, "CLIP vision model");
  model.text->to(device);
  model.vision->to(device);
  model.text->eval();
  model.vision->eval();
  model.processing = processing_from(read_json(root / "preprocessor_config.json"));
  model.tokenizer = std::make_shared<io::ClipTokenizer>(io::ClipTokenizer::from_dir(dir));
  return model;
}

} // namespace sdxl::metrics

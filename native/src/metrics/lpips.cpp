// LPIPS (lpips.h): lpips 0.1.4's LPIPS(net="alex", version="0.1") forward.
#include "metrics/lpips.h"

#include <stdexcept> // std::invalid_argument

#include "io/safetensors.h"    // load_safetensors
#include "models/state_dict.h" // load_state_dict, add_parameter

namespace sdxl::metrics {

namespace {

// torchvision AlexNet.features[0:12]: the five convolutions' shapes, strides and padding.
struct ConvShape {
  const char* key; // under "net."
  int64_t in, out, kernel, stride, padding;
};
constexpr ConvShape kTrunk[5] = {{"slice1.0", 3, 64, 11, 4, 2},
                                 {"slice2.3", 64, 192, 5, 1, 2},
                                 {"slice3.6", 192, 384, 3, 1, 1},
                                 {"slice4.8", 384, 256, 3, 1, 1},
                                 {"slice5.10", 256, 256, 3, 1, 1}};

} // namespace

LpipsImpl::LpipsImpl() {
  shift_ = models::add_parameter(*this, "scaling_layer.shift", torch::tensor({-.030, -.088, -.188}).view({1, 3, 1, 1}));
  scale_ = models::add_parameter(*this, "scaling_layer.scale", torch::tensor({.458, .448, .450}).view({1, 3, 1, 1}));
  for (int l = 0; l < 5; ++l) {
    const ConvShape& conv = kTrunk[l];
    const std::string key = std::string("net.") + conv.key;
    conv_weight_.push_back(models::add_parameter(*this, key + ".weight", torch::zeros({conv.out, conv.in, conv.kernel, conv.kernel})));
    conv_bias_.push_back(models::add_parameter(*this, key + ".bias", torch::zeros({conv.out})));
    lin_.push_back(models::add_parameter(*this, "lin" + std::to_string(l) + ".model.1.weight", torch::zeros({1, conv.out, 1, 1})));
  }
}

std::vector<torch::Tensor> LpipsImpl::features(const torch::Tensor& x) {
  torch::Tensor h = (x - shift_) / scale_;
  std::vector<torch::Tensor> taps;
  for (int l = 0; l < 5; ++l) {
    if (l == 1 || l == 2) h = torch::max_pool2d(h, {3, 3}, {2, 2}); // before conv2 and conv3
    h = torch::relu(torch::conv2d(h, conv_weight_[l], conv_bias_[l], kTrunk[l].stride, kTrunk[l].padding));
    taps.push_back(h);
  }
  return taps;
}

LpipsResult LpipsImpl::forward(const torch::Tensor& x0, const torch::Tensor& x1) {
  if (x0.sizes() != x1.sizes() || x0.dim() != 4 || x0.size(1) != 3)
    throw std::invalid_argument("lpips: expected two image batches of one shape [N, 3, H, W]");
  torch::NoGradGuard no_grad;
  const std::vector<torch::Tensor> f0 = features(x0), f1 = features(x1);
  // Unit-normalised over channels (eps 1e-10 outside the square root, as lpips).
  const auto normalised = [](const torch::Tensor& f) { return f / (f.pow(2).sum(1, /*keepdim=*/true).sqrt() + 1e-10); };
  LpipsResult result;
  for (int l = 0; l < 5; ++l) {
    const torch::Tensor d = (normalised(f0[l]) - normalised(f1[l])).pow(2);            // [N, C, h, w]
    result.per_layer.push_back(torch::conv2d(d, lin_[l]).mean({1, 2, 3}));             // [N]
  }
  result.distance = result.per_layer[0];
  for (int l = 1; l < 5; ++l) result.distance = result.distance + result.per_layer[l];
  return result;
}

std::shared_ptr<LpipsImpl> load_lpips(const std::string& path, const torch::Device& device) {
  auto network = std::make_shared<LpipsImpl>();
  models::load_state_dict(*network, io::load_safetensors(path), "lpips");
  network->to(device);
  network->eval();
  return network;
}

torch::Tensor lpips_input(const torch::Tensor& images_uint8) {
  if (images_uint8.scalar_type() != torch::kUInt8) throw std::invalid_argument("lpips_input: expected uint8 images");
  return images_uint8.to(torch::kFloat32) / 127.5 - 1.0;
}

} // namespace sdxl::metrics

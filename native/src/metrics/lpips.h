// LPIPS v0.1 with the AlexNet trunk (lpips.LPIPS(net="alex"), Zhang et al. 2018): the
// perceptual distance of two images, with lpips' state-dict key names
// (scaling_layer.shift, net.slice1.0.weight ... net.slice5.10.bias, lin0.model.1.weight).
#pragma once

#include <memory> // std::shared_ptr
#include <string>
#include <vector>

#include <torch/torch.h> // torch::nn::Module, torch::Tensor

namespace sdxl::metrics {

struct LpipsResult {
  torch::Tensor distance;                // [N]
  std::vector<torch::Tensor> per_layer;  // 5 x [N]: each layer's term of the distance
};

class LpipsImpl : public torch::nn::Module {
 public:
  LpipsImpl();
  // Two batches of images [N, 3, H, W] in [-1, 1] (pair i = (x0[i], x1[i])).
  LpipsResult forward(const torch::Tensor& x0, const torch::Tensor& x1);
  // The trunk's five ReLU outputs of an image batch (after the scaling layer).
  std::vector<torch::Tensor> features(const torch::Tensor& x);

 private:
  torch::Tensor shift_, scale_;            // [1, 3, 1, 1]
  std::vector<torch::Tensor> conv_weight_; // conv1 ... conv5
  std::vector<torch::Tensor> conv_bias_;
  std::vector<torch::Tensor> lin_;         // [1, C, 1, 1] each, non-negative in the published weights
};

// Loads LPIPS from a safetensors file of lpips.LPIPS's state dict (std::runtime_error
// naming missing, unexpected or mis-shaped keys).
std::shared_ptr<LpipsImpl> load_lpips(const std::string& path, const torch::Device& device);

// [N, 3, H, W] uint8 RGB to lpips' input range [-1, 1].
torch::Tensor lpips_input(const torch::Tensor& images_uint8);

} // namespace sdxl::metrics

// The FID InceptionV3: the TensorFlow "inception-2015-12-05" graph behind FID, KID and
// the Inception Score, as torch-fidelity (FeatureExtractorInceptionV3, which torchmetrics
// subclasses) and pytorch-fid (fid_inception_v3) port it, with the published
// pt_inception-2015-12-05 key names (Conv2d_1a_3x3.conv.weight, Mixed_5b.branch1x1.bn.
// running_mean, ..., fc.weight). Not torchvision's inception_v3 forward: the average
// pools of Mixed_5b..7b leave the padding out of the count, Mixed_7c pools by max, there
// are 1008 classes and no auxiliary head; BatchNorm (eps 0.001) uses its running stats.
#pragma once

#include <cstdint> // int64_t
#include <memory> // std::shared_ptr
#include <string>
#include <vector>

#include <torch/torch.h> // torch::nn::Module, torch::Tensor

namespace sdxl::metrics {

struct InceptionFeatures {
  torch::Tensor pool;            // [N, 2048] the global average pool after Mixed_7c (FID, KID)
  torch::Tensor logits_unbiased; // [N, 1008] pool @ fc.weight^T (the Inception Score's)
  torch::Tensor logits;          // [N, 1008] with fc.bias
};

class FidInceptionV3Impl;

// Loads the network from a safetensors file (float16 or float32 values, computed in
// `dtype`); std::runtime_error listing missing, unexpected or mis-shaped keys.
std::shared_ptr<FidInceptionV3Impl> load_fid_inception(const std::string& path, const torch::Device& device,
                                                       torch::Dtype dtype = torch::kFloat32);

// torchmetrics' default input path: uint8 RGB [N, 3, H, W] to float, resized to 299x299
// (bilinear, half-pixel centres, antialiased when shrinking), then (x - 128) / 128.
torch::Tensor inception_input(const torch::Tensor& images_uint8);

// A block of the network: a BasicConv2d (conv, BatchNorm, ReLU) or an Inception module.
class InceptionBlock : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(const torch::Tensor& x) = 0;
};

class FidInceptionV3Impl : public torch::nn::Module {
 public:
  FidInceptionV3Impl();
  // `input` as inception_input makes it, [N, 3, 299, 299].
  InceptionFeatures forward(const torch::Tensor& input);

 private:
  std::shared_ptr<InceptionBlock> add(const std::string& name, std::shared_ptr<InceptionBlock> block);

  std::vector<std::shared_ptr<InceptionBlock>> stem_;  // Conv2d_1a_3x3 ... Conv2d_4a_3x3 (max pools after 2b and 4a)
  std::vector<std::shared_ptr<InceptionBlock>> mixed_; // Mixed_5b ... Mixed_7c
  torch::Tensor fc_weight_; // [1008, 2048]
  torch::Tensor fc_bias_;   // [1008]
};

} // namespace sdxl::metrics

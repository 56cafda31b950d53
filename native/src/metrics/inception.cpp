// The FID InceptionV3 (inception.h): torchvision's block structure with the FID graph's
// pools, written out block by block with the published key names.
#include "metrics/inception.h"

#include <stdexcept> // std::runtime_error
#include <utility>   // std::pair

#include "io/safetensors.h"    // load_safetensors
#include "models/state_dict.h" // load_state_dict

namespace sdxl::metrics {

namespace {

namespace F = torch::nn::functional;

using Pair = std::pair<int64_t, int64_t>;

// Conv2d (no bias) -> BatchNorm2d (eps 0.001, running statistics) -> ReLU; its tensors are
// parameters so the state dict fills them ("conv.weight", "bn.weight", "bn.running_mean", ...).
class BasicConv2d final : public InceptionBlock {
 public:
  BasicConv2d(int64_t in, int64_t out, Pair kernel, Pair stride = {1, 1}, Pair padding = {0, 0})
      : stride_(stride), padding_(padding) {
    auto conv = register_module("conv", std::make_shared<torch::nn::Module>());
    auto bn = register_module("bn", std::make_shared<torch::nn::Module>());
    weight_ = conv->register_parameter("weight", torch::zeros({out, in, kernel.first, kernel.second}), false);
    scale_ = bn->register_parameter("weight", torch::ones({out}), false);
    shift_ = bn->register_parameter("bias", torch::zeros({out}), false);
    mean_ = bn->register_parameter("running_mean", torch::zeros({out}), false);
    var_ = bn->register_parameter("running_var", torch::ones({out}), false);
  }
  BasicConv2d(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1, int64_t padding = 0)
      : BasicConv2d(in, out, {kernel, kernel}, {stride, stride}, {padding, padding}) {}

  torch::Tensor forward(const torch::Tensor& x) override {
    const torch::Tensor y = torch::conv2d(x, weight_, {}, {stride_.first, stride_.second}, {padding_.first, padding_.second});
    return torch::relu(torch::batch_norm(y, scale_, shift_, mean_, var_, /*training=*/false, 0.0, /*eps=*/0.001, true));
  }

 private:
  Pair stride_, padding_;
  torch::Tensor weight_, scale_, shift_, mean_, var_;
};

// The FID graph's 3x3 stride-1 pools: the average leaves the padding out of the count.
torch::Tensor average_pool_3x3(const torch::Tensor& x) {
  return torch::avg_pool2d(x, {3, 3}, {1, 1}, {1, 1}, /*ceil_mode=*/false, /*count_include_pad=*/false);
}
torch::Tensor max_pool_3x3_stride_2(const torch::Tensor& x) { return torch::max_pool2d(x, {3, 3}, {2, 2}); }

// A module's BasicConv2d children by name.
class InceptionModule : public InceptionBlock {
 protected:
  std::shared_ptr<BasicConv2d> conv(const std::string& name, std::shared_ptr<BasicConv2d> block) {
    return register_module(name, std::move(block));
  }
};

class InceptionA final : public InceptionModule {
 public:
  InceptionA(int64_t in, int64_t pool_features) {
    b1x1_ = conv("branch1x1", std::make_shared<BasicConv2d>(in, 64, 1));
    b5x5_1_ = conv("branch5x5_1", std::make_shared<BasicConv2d>(in, 48, 1));
    b5x5_2_ = conv("branch5x5_2", std::make_shared<BasicConv2d>(48, 64, 5, 1, 2));
    dbl_1_ = conv("branch3x3dbl_1", std::make_shared<BasicConv2d>(in, 64, 1));
    dbl_2_ = conv("branch3x3dbl_2", std::make_shared<BasicConv2d>(64, 96, 3, 1, 1));
    dbl_3_ = conv("branch3x3dbl_3", std::make_shared<BasicConv2d>(96, 96, 3, 1, 1));
    pool_ = conv("branch_pool", std::make_shared<BasicConv2d>(in, pool_features, 1));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    return torch::cat({b1x1_->forward(x), b5x5_2_->forward(b5x5_1_->forward(x)),
                       dbl_3_->forward(dbl_2_->forward(dbl_1_->forward(x))), pool_->forward(average_pool_3x3(x))},
                      1);
  }

 private:
  std::shared_ptr<BasicConv2d> b1x1_, b5x5_1_, b5x5_2_, dbl_1_, dbl_2_, dbl_3_, pool_;
};

class InceptionB final : public InceptionModule {
 public:
  explicit InceptionB(int64_t in) {
    b3x3_ = conv("branch3x3", std::make_shared<BasicConv2d>(in, 384, 3, 2));
    dbl_1_ = conv("branch3x3dbl_1", std::make_shared<BasicConv2d>(in, 64, 1));
    dbl_2_ = conv("branch3x3dbl_2", std::make_shared<BasicConv2d>(64, 96, 3, 1, 1));
    dbl_3_ = conv("branch3x3dbl_3", std::make_shared<BasicConv2d>(96, 96, 3, 2));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    return torch::cat({b3x3_->forward(x), dbl_3_->forward(dbl_2_->forward(dbl_1_->forward(x))), max_pool_3x3_stride_2(x)}, 1);
  }

 private:
  std::shared_ptr<BasicConv2d> b3x3_, dbl_1_, dbl_2_, dbl_3_;
};

class InceptionC final : public InceptionModule {
 public:
  InceptionC(int64_t in, int64_t c7) {
    b1x1_ = conv("branch1x1", std::make_shared<BasicConv2d>(in, 192, 1));
    b7_1_ = conv("branch7x7_1", std::make_shared<BasicConv2d>(in, c7, 1));
    b7_2_ = conv("branch7x7_2", std::make_shared<BasicConv2d>(c7, c7, Pair{1, 7}, Pair{1, 1}, Pair{0, 3}));
    b7_3_ = conv("branch7x7_3", std::make_shared<BasicConv2d>(c7, 192, Pair{7, 1}, Pair{1, 1}, Pair{3, 0}));
    dbl_1_ = conv("branch7x7dbl_1", std::make_shared<BasicConv2d>(in, c7, 1));
    dbl_2_ = conv("branch7x7dbl_2", std::make_shared<BasicConv2d>(c7, c7, Pair{7, 1}, Pair{1, 1}, Pair{3, 0}));
    dbl_3_ = conv("branch7x7dbl_3", std::make_shared<BasicConv2d>(c7, c7, Pair{1, 7}, Pair{1, 1}, Pair{0, 3}));
    dbl_4_ = conv("branch7x7dbl_4", std::make_shared<BasicConv2d>(c7, c7, Pair{7, 1}, Pair{1, 1}, Pair{3, 0}));
    dbl_5_ = conv("branch7x7dbl_5", std::make_shared<BasicConv2d>(c7, 192, Pair{1, 7}, Pair{1, 1}, Pair{0, 3}));
    pool_ = conv("branch_pool", std::make_shared<BasicConv2d>(in, 192, 1));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    const torch::Tensor b7 = b7_3_->forward(b7_2_->forward(b7_1_->forward(x)));
    const torch::Tensor dbl = dbl_5_->forward(dbl_4_->forward(dbl_3_->forward(dbl_2_->forward(dbl_1_->forward(x)))));
    return torch::cat({b1x1_->forward(x), b7, dbl, pool_->forward(average_pool_3x3(x))}, 1);
  }

 private:
  std::shared_ptr<BasicConv2d> b1x1_, b7_1_, b7_2_, b7_3_, dbl_1_, dbl_2_, dbl_3_, dbl_4_, dbl_5_, pool_;
};

class InceptionD final : public InceptionModule {
 public:
  explicit InceptionD(int64_t in) {
    b3_1_ = conv("branch3x3_1", std::make_shared<BasicConv2d>(in, 192, 1));
    b3_2_ = conv("branch3x3_2", std::make_shared<BasicConv2d>(192, 320, 3, 2));
    b7_1_ = conv("branch7x7x3_1", std::make_shared<BasicConv2d>(in, 192, 1));
    b7_2_ = conv("branch7x7x3_2", std::make_shared<BasicConv2d>(192, 192, Pair{1, 7}, Pair{1, 1}, Pair{0, 3}));
    b7_3_ = conv("branch7x7x3_3", std::make_shared<BasicConv2d>(192, 192, Pair{7, 1}, Pair{1, 1}, Pair{3, 0}));
    b7_4_ = conv("branch7x7x3_4", std::make_shared<BasicConv2d>(192, 192, 3, 2));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    return torch::cat({b3_2_->forward(b3_1_->forward(x)),
                       b7_4_->forward(b7_3_->forward(b7_2_->forward(b7_1_->forward(x)))), max_pool_3x3_stride_2(x)},
                      1);
  }

 private:
  std::shared_ptr<BasicConv2d> b3_1_, b3_2_, b7_1_, b7_2_, b7_3_, b7_4_;
};

// Mixed_7b pools by average (padding left out), Mixed_7c by max: the FID graph's quirk.
class InceptionE final : public InceptionModule {
 public:
  InceptionE(int64_t in, bool max_pool) : max_pool_(max_pool) {
    b1x1_ = conv("branch1x1", std::make_shared<BasicConv2d>(in, 320, 1));
    b3_1_ = conv("branch3x3_1", std::make_shared<BasicConv2d>(in, 384, 1));
    b3_2a_ = conv("branch3x3_2a", std::make_shared<BasicConv2d>(384, 384, Pair{1, 3}, Pair{1, 1}, Pair{0, 1}));
    b3_2b_ = conv("branch3x3_2b", std::make_shared<BasicConv2d>(384, 384, Pair{3, 1}, Pair{1, 1}, Pair{1, 0}));
    dbl_1_ = conv("branch3x3dbl_1", std::make_shared<BasicConv2d>(in, 448, 1));
    dbl_2_ = conv("branch3x3dbl_2", std::make_shared<BasicConv2d>(448, 384, 3, 1, 1));
    dbl_3a_ = conv("branch3x3dbl_3a", std::make_shared<BasicConv2d>(384, 384, Pair{1, 3}, Pair{1, 1}, Pair{0, 1}));
    dbl_3b_ = conv("branch3x3dbl_3b", std::make_shared<BasicConv2d>(384, 384, Pair{3, 1}, Pair{1, 1}, Pair{1, 0}));
    pool_ = conv("branch_pool", std::make_shared<BasicConv2d>(in, 192, 1));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    const torch::Tensor b3 = b3_1_->forward(x);
    const torch::Tensor dbl = dbl_2_->forward(dbl_1_->forward(x));
    const torch::Tensor pooled = max_pool_ ? torch::max_pool2d(x, {3, 3}, {1, 1}, {1, 1}) : average_pool_3x3(x);
    return torch::cat({b1x1_->forward(x), torch::cat({b3_2a_->forward(b3), b3_2b_->forward(b3)}, 1),
                       torch::cat({dbl_3a_->forward(dbl), dbl_3b_->forward(dbl)}, 1), pool_->forward(pooled)},
                      1);
  }

 private:
  bool max_pool_;
  std::shared_ptr<BasicConv2d> b1x1_, b3_1_, b3_2a_, b3_2b_, dbl_1_, dbl_2_, dbl_3a_, dbl_3b_, pool_;
};

} // namespace

FidInceptionV3Impl::FidInceptionV3Impl() {
  stem_ = {add("Conv2d_1a_3x3", std::make_shared<BasicConv2d>(3, 32, 3, 2)),
           add("Conv2d_2a_3x3", std::make_shared<BasicConv2d>(32, 32, 3)),
           add("Conv2d_2b_3x3", std::make_shared<BasicConv2d>(32, 64, 3, 1, 1)),
           add("Conv2d_3b_1x1", std::make_shared<BasicConv2d>(64, 80, 1)),
           add("Conv2d_4a_3x3", std::make_shared<BasicConv2d>(80, 192, 3))};
  mixed_ = {add("Mixed_5b", std::make_shared<InceptionA>(192, 32)),  add("Mixed_5c", std::make_shared<InceptionA>(256, 64)),
            add("Mixed_5d", std::make_shared<InceptionA>(288, 64)),  add("Mixed_6a", std::make_shared<InceptionB>(288)),
            add("Mixed_6b", std::make_shared<InceptionC>(768, 128)), add("Mixed_6c", std::make_shared<InceptionC>(768, 160)),
            add("Mixed_6d", std::make_shared<InceptionC>(768, 160)), add("Mixed_6e", std::make_shared<InceptionC>(768, 192)),
            add("Mixed_7a", std::make_shared<InceptionD>(768)),      add("Mixed_7b", std::make_shared<InceptionE>(1280, false)),
            add("Mixed_7c", std::make_shared<InceptionE>(2048, true))};
  auto fc = register_module("fc", std::make_shared<torch::nn::Module>());
  fc_weight_ = fc->register_parameter("weight", torch::zeros({1008, 2048}), false);
  fc_bias_ = fc->register_parameter("bias", torch::zeros({1008}), false);
}

std::shared_ptr<InceptionBlock> FidInceptionV3Impl::add(const std::string& name, std::shared_ptr<InceptionBlock> block) {
  return register_module(name, std::move(block));
}

InceptionFeatures FidInceptionV3Impl::forward(const torch::Tensor& input) {
  torch::NoGradGuard no_grad;
  torch::Tensor x = input;
  for (size_t i = 0; i < stem_.size(); ++i) {
    x = stem_[i]->forward(x);
    if (i == 2 || i == 4) x = max_pool_3x3_stride_2(x); // after Conv2d_2b_3x3 and Conv2d_4a_3x3
  }
  for (const auto& block : mixed_) x = block->forward(x);
  InceptionFeatures features;
  features.pool = x.mean({2, 3});                                      // [N, 2048]
  features.logits_unbiased = torch::matmul(features.pool, fc_weight_.t()); // [N, 1008]
  features.logits = features.logits_unbiased + fc_bias_;
  return features;
}

torch::Tensor inception_input(const torch::Tensor& images_uint8) {
  if (images_uint8.scalar_type() != torch::kUInt8 || images_uint8.dim() != 4 || images_uint8.size(1) != 3)
    throw std::invalid_argument("inception_input: expected uint8 RGB images [N, 3, H, W]");
  const torch::Tensor x = F::interpolate(images_uint8.to(torch::kFloat32), F::InterpolateFuncOptions()
                                                                               .size(std::vector<int64_t>{299, 299})
                                                                               .mode(torch::kBilinear)
                                                                               .align_corners(false)
                                                                               .antialias(true));
  return (x - 128.0) / 128.0;
}

std::shared_ptr<FidInceptionV3Impl> load_fid_inception(const std::string& path, const torch::Device& device,
                                                       torch::Dtype dtype) {
  auto network = std::make_shared<FidInceptionV3Impl>();
  models::load_state_dict(*network, io::load_safetensors(path), "inception");
  network->to(device, dtype);
  network->eval();
  return network;
}

} // namespace sdxl::metrics

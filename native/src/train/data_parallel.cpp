// Data parallel training over a c10d process group (parallelism.h). Gradients go
// in buckets: each bucket's gradients (one dtype, one device) are flattened into
// one buffer, all the buckets' all-reduces are started, then each is awaited and
// copied back. All ranks receive the same bits from an all-reduce, so they take the
// same optimizer step.
#include "train/parallelism.h"

#include <chrono> // all-reduce timing

#if defined(SDXL_WITH_C10D)
#include <torch/csrc/distributed/c10d/Work.hpp> // c10d::Work
#endif

namespace sdxl::train {

std::unique_ptr<Parallelism> single_device() { return std::make_unique<Parallelism>(); }

#if defined(SDXL_WITH_C10D)

namespace {

class DataParallel final : public Parallelism {
 public:
  DataParallel(c10::intrusive_ptr<torch_compat::Collectives> group, torch::Device device, int64_t bucket_bytes)
      : group_(std::move(group)), device_(device), bucket_bytes_(bucket_bytes) {}

  int rank() const override { return group_->getRank(); }
  int world_size() const override { return group_->getSize(); }

  void sum_gradients(const std::vector<torch::Tensor>& parameters) override {
    const auto started = std::chrono::steady_clock::now();
    torch::NoGradGuard no_grad;
    // Which parameters have a gradient on some rank: every rank then reduces the same ones.
    std::vector<int32_t> local(parameters.size());
    for (size_t i = 0; i < parameters.size(); ++i) local[i] = parameters[i].grad().defined() ? 1 : 0;
    std::vector<torch::Tensor> present{torch::tensor(local, torch::kInt32).to(device_)};
    group_->allreduce(present)->wait();
    const torch::Tensor anywhere = present.front().cpu();
    // Buckets in parameter order, each of one dtype and device, closed at bucket_bytes.
    struct Bucket {
      std::vector<torch::Tensor> grads;
      torch::Tensor flat;
      c10::intrusive_ptr<c10d::Work> work;
    };
    std::vector<Bucket> buckets;
    int64_t bytes = 0;
    for (size_t i = 0; i < parameters.size(); ++i) {
      if (anywhere[static_cast<int64_t>(i)].item<int32_t>() == 0) continue; // none anywhere: stays none
      torch::Tensor parameter = parameters[i];
      if (!parameter.grad().defined()) parameter.mutable_grad() = torch::zeros_like(parameter);
      const torch::Tensor grad = parameter.grad();
      const bool fits = !buckets.empty() && buckets.back().grads.front().scalar_type() == grad.scalar_type() &&
                        buckets.back().grads.front().device() == grad.device() &&
                        bytes + grad.numel() * grad.element_size() <= bucket_bytes_;
      if (!fits) {
        buckets.emplace_back();
        bytes = 0;
      }
      buckets.back().grads.push_back(grad);
      bytes += grad.numel() * grad.element_size();
    }
    for (Bucket& bucket : buckets) {
      std::vector<torch::Tensor> flat_views;
      for (const auto& grad : bucket.grads) flat_views.push_back(grad.reshape({-1}));
      std::vector<torch::Tensor> tensors{torch::cat(flat_views)};
      bucket.flat = tensors.front();
      bucket.work = group_->allreduce(tensors);
    }
    for (Bucket& bucket : buckets) {
      bucket.work->wait();
      int64_t offset = 0;
      for (torch::Tensor& grad : bucket.grads) {
        grad.copy_(bucket.flat.narrow(0, offset, grad.numel()).view_as(grad));
        offset += grad.numel();
      }
    }
    allreduce_ms_ += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
    ++allreduces_;
  }

  std::vector<double> sum(const std::vector<double>& values) override {
    if (values.empty()) return values;
    std::vector<torch::Tensor> tensors{torch::tensor(values, torch::kFloat64).to(device_)};
    group_->allreduce(tensors)->wait();
    const torch::Tensor total = tensors.front().cpu().contiguous();
    return std::vector<double>(total.data_ptr<double>(), total.data_ptr<double>() + total.numel());
  }

  bool any(bool flag) override {
    std::vector<torch::Tensor> tensors{torch::tensor({flag ? int64_t{1} : int64_t{0}}, torch::kInt64).to(device_)};
    group_->allreduce(tensors)->wait();
    return tensors.front().item<int64_t>() > 0;
  }

  std::map<std::string, double> metrics() const override {
    return {{"world_size", static_cast<double>(world_size())},
            {"allreduce_ms_mean", allreduces_ == 0 ? 0.0 : allreduce_ms_ / static_cast<double>(allreduces_)}};
  }

 private:
  c10::intrusive_ptr<torch_compat::Collectives> group_;
  torch::Device device_; // collectives of small values run there too (NCCL takes CUDA tensors only)
  int64_t bucket_bytes_;
  double allreduce_ms_ = 0;
  int64_t allreduces_ = 0;
};

} // namespace

std::unique_ptr<Parallelism> data_parallel(c10::intrusive_ptr<torch_compat::Collectives> group, torch::Device device,
                                           int64_t bucket_bytes) {
  return std::make_unique<DataParallel>(std::move(group), device, bucket_bytes);
}

#endif

} // namespace sdxl::train

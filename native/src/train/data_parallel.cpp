// Data parallel training over a c10d process group (parallelism.h), with ZeRO-1/2.
//
// Gradients travel in buckets of about 25 MiB, as in DistributedDataParallel: the
// trained parameters group by group (the UNet's, then the text encoders'), each group
// last first: the order backward reaches them, since the UNet's output is where it
// starts and the text encoders feed the UNet. A bucket is a run of one dtype, device
// and (under ZeRO) shard. The order is fixed, not learnt from a first step as DDP
// rebuilds it, so a resumed run sums every step's buckets as an uninterrupted one did. During the step's last backward pass each
// parameter's gradient is accumulated straight into its bucket (its .grad is a view
// of the bucket's buffer: no copy), and a bucket whose gradients are all in is sent
// while backward goes on: all-reduced, or under ZeRO-2 reduced onto the shard's owner.
// Buckets are sent in one fixed order on every rank, whatever order their gradients
// arrive in, since collectives pair up by order. A gradient hook runs before its
// gradient is accumulated, so a bucket counts as full from the next hook on (autograd
// runs one node at a time per device), or at the end of backward.
#include "train/parallelism.h"

#include <c10/util/accumulate.h> // c10::multiply_integers

#include <algorithm> // std::min
#include <chrono>    // communication timing
#include <cmath>     // std::sqrt
#include <stdexcept> // std::logic_error

#include "train/ddpm_loss.h" // global_grad_norm

#if defined(SDXL_WITH_C10D)
#include <torch/csrc/distributed/c10d/Types.hpp> // ReduceOptions, BroadcastOptions
#include <torch/csrc/distributed/c10d/Work.hpp>  // c10d::Work
#endif

namespace sdxl::train {

double Parallelism::gradient_norm(const std::vector<torch::Tensor>& parameters) { return global_grad_norm(parameters); }

std::unique_ptr<Parallelism> single_device() { return std::make_unique<Parallelism>(); }

#if defined(SDXL_WITH_C10D)

namespace {

using WorkPtr = c10::intrusive_ptr<c10d::Work>;

// Each parameter's owner: `world_size` contiguous runs of whole tensors, each about
// 1/world_size of the elements (a tensor goes to the run its midpoint falls in).
std::vector<int> contiguous_shards(const std::vector<torch::Tensor>& parameters, int world_size) {
  int64_t total = 0;
  for (const auto& parameter : parameters) total += parameter.numel();
  std::vector<int> owners;
  int64_t before = 0;
  for (const auto& parameter : parameters) {
    const int64_t twice_midpoint = 2 * before + parameter.numel();
    owners.push_back(total == 0 ? 0 : static_cast<int>(std::min<int64_t>(world_size - 1, twice_midpoint * world_size / (2 * total))));
    before += parameter.numel();
  }
  return owners;
}

class DataParallel final : public Parallelism {
 public:
  DataParallel(c10::intrusive_ptr<torch_compat::Collectives> group, torch::Device device, const DataParallelOptions& options)
      : group_(std::move(group)), device_(device), options_(options) {
    if (options.zero_stage < 0 || options.zero_stage > 2) throw std::invalid_argument("zero_stage must be 0, 1 or 2");
  }

  ~DataParallel() override {
    for (size_t k = 0; k < hooks_.size(); ++k) parameters_[k].remove_hook(hooks_[k]);
  }

  int rank() const override { return group_->getRank(); }
  int world_size() const override { return group_->getSize(); }

  void attach(const std::vector<std::vector<torch::Tensor>>& groups) override {
    std::vector<size_t> order; // the sending order
    for (const auto& group : groups) {
      const size_t first = parameters_.size();
      parameters_.insert(parameters_.end(), group.begin(), group.end());
      for (size_t k = parameters_.size(); k-- > first;) order.push_back(k);
    }
    const std::vector<torch::Tensor>& parameters = parameters_;
    owners_ = options_.zero_stage > 0 ? contiguous_shards(parameters, world_size()) : std::vector<int>(parameters.size(), -1);
    bucket_of_.assign(parameters.size(), 0);
    int64_t bytes = 0;
    for (const size_t k : order) {
      const torch::Tensor& parameter = parameters[k];
      const int64_t size = parameter.numel() * parameter.element_size();
      const bool fits = !buckets_.empty() && bytes + size <= options_.bucket_bytes &&
                        buckets_.back().dtype == parameter.scalar_type() && buckets_.back().device == parameter.device() &&
                        buckets_.back().owner == owners_[k];
      if (!fits) {
        buckets_.emplace_back(parameter.scalar_type(), parameter.device(), owners_[k]);
        bytes = 0;
      }
      Bucket& bucket = buckets_.back();
      bucket.members.push_back(k);
      bucket.offsets.push_back(bucket.numel);
      bucket.numel += parameter.numel();
      bytes += size;
      bucket_of_[k] = buckets_.size() - 1;
    }
    for (size_t k = 0; k < parameters.size(); ++k)
      hooks_.push_back(parameters_[k].register_hook([this, k](const torch::Tensor&) { on_gradient(k); }));
  }

  std::vector<bool> owned() const override {
    if (options_.zero_stage == 0) return {};
    std::vector<bool> mine;
    for (const int owner : owners_) mine.push_back(owner == rank());
    return mine;
  }

  void begin_last_backward() override {
    armed_ = options_.overlap_communication;
    had_gradient_.assign(parameters_.size(), false);
    arrived_.assign(parameters_.size(), false);
    for (size_t k = 0; k < parameters_.size(); ++k) had_gradient_[k] = parameters_[k].grad().defined(); // earlier micro-batches'
    for (Bucket& bucket : buckets_) bucket.reset();
    next_to_send_ = 0;
    filled_.clear();
  }

  void sum_gradients() override {
    const auto started = std::chrono::steady_clock::now();
    torch::NoGradGuard no_grad;
    armed_ = false;
    mark_filled(); // the last hook's gradient is accumulated by now
    for (const Bucket& bucket : buckets_) { // gradients that arrived unseen (no overlap) count too
      if (bucket.flat.defined()) continue;
      for (const size_t k : bucket.members) had_gradient_[k] = had_gradient_[k] || parameters_[k].grad().defined();
    }
    while (next_to_send_ < buckets_.size()) send(buckets_[next_to_send_++]); // the rest, in the same order
    // Which parameters have a gradient on some rank: one that has none anywhere keeps none.
    std::vector<int32_t> local(had_gradient_.begin(), had_gradient_.end());
    std::vector<torch::Tensor> present{torch::tensor(local, torch::kInt32).to(device_)};
    group_->allreduce(present)->wait();
    for (Bucket& bucket : buckets_) {
      bucket.work->wait();
      settle(bucket);
    }
    const torch::Tensor anywhere = present.front().cpu();
    const int32_t* counts = anywhere.data_ptr<int32_t>();
    for (size_t k = 0; k < parameters_.size(); ++k)
      if (counts[k] == 0 && parameters_[k].grad().defined()) parameters_[k].mutable_grad() = torch::Tensor();
    exposed_ms_ = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
    exposed_ms_total_ += exposed_ms_;
    ++steps_;
  }

  double gradient_norm(const std::vector<torch::Tensor>& parameters) override {
    if (options_.zero_stage < 2) return global_grad_norm(parameters); // every rank holds every summed gradient
    // ZeRO-2: each shard's squares on its owner, summed.
    double squares = 0;
    for (const auto& parameter : parameters) {
      const torch::Tensor grad = parameter.grad();
      if (grad.defined()) squares += grad.to(torch::kFloat64).pow(2).sum().item<double>();
    }
    return std::sqrt(sum({squares}).front());
  }

  void share_updated_weights() override {
    if (options_.zero_stage == 0) return;
    torch::NoGradGuard no_grad;
    // Each shard's weights from its owner, bucket by bucket, at most two buckets in flight.
    struct InFlight {
      const Bucket* bucket = nullptr;
      torch::Tensor flat;
      WorkPtr work;
    };
    InFlight previous;
    const auto finish = [&](InFlight& sent) {
      if (sent.bucket == nullptr) return;
      sent.work->wait();
      if (sent.bucket->owner != rank()) {
        for (size_t m = 0; m < sent.bucket->members.size(); ++m) {
          torch::Tensor parameter = parameters_[sent.bucket->members[m]];
          parameter.detach().copy_(sent.flat.narrow(0, sent.bucket->offsets[m], parameter.numel()).view(parameter.sizes()));
        }
      }
      sent = InFlight{};
    };
    for (const Bucket& bucket : buckets_) {
      InFlight current;
      current.bucket = &bucket;
      if (bucket.owner == rank()) {
        std::vector<torch::Tensor> pieces;
        for (const size_t k : bucket.members) pieces.push_back(parameters_[k].detach().reshape({-1}));
        current.flat = torch::cat(pieces);
      } else {
        current.flat = torch::empty({bucket.numel}, torch::TensorOptions().dtype(bucket.dtype).device(bucket.device));
      }
      std::vector<torch::Tensor> tensors{current.flat};
      c10d::BroadcastOptions options;
      options.rootRank = bucket.owner;
      current.work = group_->broadcast(tensors, options);
      finish(previous);
      previous = std::move(current);
    }
    finish(previous);
  }

  void gather_on_main(std::map<std::string, torch::Tensor>& entries) override {
    if (options_.zero_stage == 0) return;
    torch::NoGradGuard no_grad;
    // Rank by rank: the names, dtypes and shapes first (as int64s), then each tensor.
    for (int source = 1; source < world_size(); ++source) {
      std::vector<int64_t> header;
      if (rank() == source) {
        header.push_back(static_cast<int64_t>(entries.size()));
        for (const auto& [name, tensor] : entries) {
          header.push_back(static_cast<int64_t>(name.size()));
          header.insert(header.end(), name.begin(), name.end());
          header.push_back(static_cast<int64_t>(tensor.scalar_type()));
          header.push_back(tensor.dim());
          for (const int64_t size : tensor.sizes()) header.push_back(size);
        }
      }
      header = broadcast_int64s(header, source);
      size_t at = 0;
      const int64_t count = header[at++];
      for (int64_t e = 0; e < count; ++e) {
        const int64_t name_length = header[at++];
        std::string name;
        for (int64_t c = 0; c < name_length; ++c) name.push_back(static_cast<char>(header[at++]));
        const auto dtype = static_cast<torch::ScalarType>(header[at++]);
        std::vector<int64_t> sizes(static_cast<size_t>(header[at++]));
        for (int64_t& size : sizes) size = header[at++];
        torch::Tensor flat = rank() == source
                                 ? entries.at(name).to(device_).reshape({-1}).contiguous()
                                 : torch::empty({c10::multiply_integers(sizes)}, torch::TensorOptions().dtype(dtype).device(device_));
        std::vector<torch::Tensor> tensors{flat};
        c10d::BroadcastOptions options;
        options.rootRank = source;
        group_->broadcast(tensors, options)->wait();
        if (rank() == 0) entries[name] = flat.cpu().view(sizes).clone();
      }
    }
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

  double last_exposed_communication_ms() const override { return exposed_ms_; }

  std::map<std::string, double> metrics() const override {
    return {{"world_size", static_cast<double>(world_size())},
            {"zero_stage", static_cast<double>(options_.zero_stage)},
            {"gradient_buckets", static_cast<double>(buckets_.size())},
            {"buckets_sent_during_backward_mean", steps_ == 0 ? 0.0 : static_cast<double>(sent_during_backward_) / static_cast<double>(steps_)},
            {"allreduce_ms_mean", steps_ == 0 ? 0.0 : exposed_ms_total_ / static_cast<double>(steps_)}};
  }

 private:
  struct Bucket {
    Bucket(torch::ScalarType dtype, torch::Device device, int owner) : dtype(dtype), device(device), owner(owner) {}
    void reset() {
      flat = torch::Tensor();
      missing = members.size();
      full = false;
      work.reset();
    }

    torch::ScalarType dtype;
    torch::Device device;
    int owner;                    // ZeRO: the rank whose shard these parameters are; -1 otherwise
    std::vector<size_t> members;  // parameter indices, last first
    std::vector<int64_t> offsets; // each member's first element in `flat`
    int64_t numel = 0;
    // The step's:
    torch::Tensor flat;   // the members' gradients: their .grad are views of it
    size_t missing = 0;   // members whose gradient has not arrived in the last backward
    bool full = false;    // every member's gradient is accumulated
    WorkPtr work;
  };

  // A parameter's gradient is about to be accumulated (hooks run before accumulation).
  void on_gradient(size_t k) {
    if (!armed_) return;
    torch::NoGradGuard no_grad;
    mark_filled();
    if (arrived_[k]) throw std::logic_error("data parallel: a parameter's gradient arrived twice in one backward pass");
    arrived_[k] = true;
    had_gradient_[k] = true;
    Bucket& bucket = buckets_[bucket_of_[k]];
    if (!bucket.flat.defined()) open(bucket);
    if (--bucket.missing == 0) filled_.push_back(bucket_of_[k]);
    while (next_to_send_ < buckets_.size() && buckets_[next_to_send_].full) {
      send(buckets_[next_to_send_++]);
      ++sent_during_backward_;
    }
    if (options_.zero_stage == 2) release_sent_gradients();
  }

  // Buckets whose last gradient arrived at an earlier hook: accumulated by now.
  void mark_filled() {
    for (const size_t b : filled_) buckets_[b].full = true;
    filled_.clear();
  }

  // The bucket's buffer, holding what its members' gradients hold so far (earlier
  // micro-batches'); their .grad become views of it, so backward accumulates into it.
  void open(Bucket& bucket) {
    bucket.flat = torch::zeros({bucket.numel}, torch::TensorOptions().dtype(bucket.dtype).device(bucket.device));
    for (size_t m = 0; m < bucket.members.size(); ++m) {
      torch::Tensor parameter = parameters_[bucket.members[m]];
      torch::Tensor view = bucket.flat.narrow(0, bucket.offsets[m], parameter.numel()).view(parameter.sizes());
      if (parameter.grad().defined()) view.copy_(parameter.grad());
      parameter.mutable_grad() = view;
    }
  }

  void send(Bucket& bucket) {
    if (!bucket.flat.defined()) open(bucket); // no gradient of it arrived here (a rank without images)
    std::vector<torch::Tensor> tensors{bucket.flat};
    if (options_.zero_stage == 2) {
      c10d::ReduceOptions options;
      options.rootRank = bucket.owner;
      bucket.work = group_->reduce(tensors, options);
    } else {
      bucket.work = group_->allreduce(tensors);
    }
  }

  // ZeRO-2: a sent bucket of another rank's shard frees its gradients once the reduce is done.
  void release_sent_gradients() {
    for (size_t b = 0; b < next_to_send_; ++b) {
      Bucket& bucket = buckets_[b];
      if (bucket.flat.defined() && bucket.owner != rank() && bucket.work->isCompleted()) settle(bucket);
    }
  }

  // After a bucket's collective: under ZeRO-2 a rank keeps only its own shard's gradients.
  void settle(Bucket& bucket) {
    if (options_.zero_stage != 2 || bucket.owner == rank() || !bucket.flat.defined()) return;
    bucket.work->wait(); // rethrows the collective's error, if any
    for (const size_t k : bucket.members) parameters_[k].mutable_grad() = torch::Tensor();
    bucket.flat = torch::Tensor();
  }

  std::vector<int64_t> broadcast_int64s(const std::vector<int64_t>& values, int root) {
    std::vector<torch::Tensor> length{torch::tensor({static_cast<int64_t>(values.size())}, torch::kInt64).to(device_)};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    group_->broadcast(length, options)->wait();
    const int64_t count = length.front().item<int64_t>();
    std::vector<torch::Tensor> data{rank() == root ? torch::tensor(values, torch::kInt64).to(device_)
                                                   : torch::empty({count}, torch::TensorOptions().dtype(torch::kInt64).device(device_))};
    group_->broadcast(data, options)->wait();
    const torch::Tensor received = data.front().cpu().contiguous();
    return std::vector<int64_t>(received.data_ptr<int64_t>(), received.data_ptr<int64_t>() + count);
  }

  c10::intrusive_ptr<torch_compat::Collectives> group_;
  torch::Device device_; // collectives of small values run there too (NCCL takes CUDA tensors only)
  DataParallelOptions options_;
  std::vector<torch::Tensor> parameters_;
  std::vector<unsigned> hooks_;
  std::vector<int> owners_;       // each parameter's shard (ZeRO), -1 without
  std::vector<Bucket> buckets_;   // in sending order
  std::vector<size_t> bucket_of_; // each parameter's bucket
  // The step's:
  bool armed_ = false;
  std::vector<bool> arrived_;      // its gradient arrived in this backward pass
  std::vector<bool> had_gradient_; // has a gradient here (from this backward or earlier micro-batches)
  std::vector<size_t> filled_;     // buckets whose last gradient is being accumulated
  size_t next_to_send_ = 0;
  double exposed_ms_ = 0;
  double exposed_ms_total_ = 0;
  int64_t steps_ = 0;
  int64_t sent_during_backward_ = 0; // buckets sent before backward ended, over all steps
};

} // namespace

std::unique_ptr<Parallelism> data_parallel(c10::intrusive_ptr<torch_compat::Collectives> group, torch::Device device,
                                           const DataParallelOptions& options) {
  return std::make_unique<DataParallel>(std::move(group), device, options);
}

#endif

} // namespace sdxl::train

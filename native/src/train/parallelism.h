// How a training run spreads over devices, given to the one training loop
// (trainer.cpp) behind this interface, as it is given a TrainingMethod:
//   single device  one rank: nothing to exchange;
//   data parallel  N ranks of a c10d process group (dist/process_group.h), each on
//                  its own device with a whole copy of the model, each taking its
//                  share of every global batch and computing its part of the batch's
//                  mean loss; the parts' gradients are summed over the ranks while
//                  the step's last backward pass runs, so every rank makes the same
//                  update and the weights stay equal everywhere;
//   + ZeRO-1       each rank keeps the optimizer states (and master copies) of its
//                  shard of the parameters only, updates that shard and sends it to
//                  the others (ZeroRedundancyOptimizer, DeepSpeed stage 1);
//   + ZeRO-2       and its gradients: each shard's gradients are summed onto its
//                  owner only, the others free theirs as soon as they are sent.
// A shard is a contiguous run of whole parameter tensors (about 1/N of the elements),
// so an 8-bit state's quantisation blocks and Adafactor's factored moments stay whole.
// Rank 0 writes every file (validation images, checkpoints, the result) and reports
// progress; the others wait for it where a file must exist before they go on.
#pragma once

#include <map>
#include <memory> // std::unique_ptr
#include <string>
#include <vector>

#include <torch/torch.h> // torch::Tensor

#include "dist/process_group.h" // Collectives

namespace sdxl::train {

class Parallelism {
 public:
  virtual ~Parallelism() = default;

  virtual int rank() const { return 0; }
  virtual int world_size() const { return 1; }
  bool is_main() const { return rank() == 0; }

  // The trained parameters, the optimizer's groups (the UNet's first), once before training.
  virtual void attach(const std::vector<std::vector<torch::Tensor>>& groups) {}
  // Which of them (in the groups' order) this rank's optimizer updates (empty: all).
  virtual std::vector<bool> owned() const { return {}; }

  // Before the step's last backward pass: gradients are sent as they become ready.
  virtual void begin_last_backward() {}
  // After the step's backward passes: every rank holds the sum over the ranks of the
  // gradients it updates with (under ZeRO-2, its shard's only). A parameter without a
  // gradient on one rank (a rank with no image of a small batch) counts as zero there;
  // one without a gradient on every rank keeps none, as on one device (the optimizer
  // skips it).
  virtual void sum_gradients() {}
  // The L2 norm of the summed gradients of every parameter (clipping).
  virtual double gradient_norm(const std::vector<torch::Tensor>& parameters);
  // After an optimizer step: every rank gets the weights the other ranks updated.
  virtual void share_updated_weights() {}
  // A checkpoint's optimizer entries: every rank's merged into rank 0's `entries`
  // (the keys do not depend on the sharding, so any sharding resumes from them).
  virtual void gather_on_main(std::map<std::string, torch::Tensor>& entries) {}

  // The sum over the ranks of each value (the parts of the step's losses).
  virtual std::vector<double> sum(const std::vector<double>& values) { return values; }
  // True on every rank when `flag` is true on any (a cancel seen by one rank stops all at the same step).
  virtual bool any(bool flag) { return flag; }

  // Milliseconds the last step waited for its gradients after backward (communication
  // that did not overlap computation).
  virtual double last_exposed_communication_ms() const { return 0; }
  // Figures for the run's metrics (e.g. allreduce_ms_mean).
  virtual std::map<std::string, double> metrics() const { return {}; }
};

std::unique_ptr<Parallelism> single_device();

#if defined(SDXL_WITH_C10D)
struct DataParallelOptions {
  int zero_stage = 0;               // 0, 1 or 2 (see above)
  int64_t bucket_bytes = 25 << 20;  // gradients are sent in buckets of about this size, as DDP does
  bool overlap_communication = true; // false: every bucket is sent after backward (for benchmarks)
};

// Rank `group->getRank()` of a data-parallel run over `group`, training on `device`.
std::unique_ptr<Parallelism> data_parallel(c10::intrusive_ptr<torch_compat::Collectives> group, torch::Device device,
                                           const DataParallelOptions& options = {});
#endif

} // namespace sdxl::train

// How a training run spreads over devices, given to the one training loop
// (trainer.cpp) behind this interface, as it is given a TrainingMethod:
//   single device  one rank: nothing to exchange;
//   data parallel  N ranks of a c10d process group (dist/process_group.h), each on
//                  its own device with a whole copy of the model, each taking its
//                  share of every global batch and computing its part of the batch's
//                  mean loss; the parts' gradients are summed over the ranks before
//                  the optimizer step, so every rank makes the same update and the
//                  weights stay equal everywhere.
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

  // Makes the gradients of `parameters` (after the step's backward passes) their sum over
  // the ranks. A parameter without a gradient on one rank (a rank with no image of a small
  // batch) counts as zero there; one without a gradient on every rank keeps none, as on
  // one device (the optimizer skips it).
  virtual void sum_gradients(const std::vector<torch::Tensor>& parameters) {}
  // The sum over the ranks of each value (the parts of the step's losses).
  virtual std::vector<double> sum(const std::vector<double>& values) { return values; }
  // True on every rank when `flag` is true on any (a cancel seen by one rank stops all at the same step).
  virtual bool any(bool flag) { return flag; }

  // Figures for the run's metrics (e.g. allreduce_ms_mean).
  virtual std::map<std::string, double> metrics() const { return {}; }
};

std::unique_ptr<Parallelism> single_device();

#if defined(SDXL_WITH_C10D)
// Rank `group->getRank()` of a data-parallel run over `group`, training on `device`.
// Gradients are all-reduced in buckets of about `bucket_bytes` (flattened per dtype),
// as DistributedDataParallel does.
std::unique_ptr<Parallelism> data_parallel(c10::intrusive_ptr<torch_compat::Collectives> group, torch::Device device,
                                           int64_t bucket_bytes = 25 << 20);
#endif

} // namespace sdxl::train

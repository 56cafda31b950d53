// The ranks of one training run as a c10d process group: PyTorch's own collectives
// (ProcessGroupGloo on the CPU, ProcessGroupNCCL on CUDA devices), linked from the
// libtorch the engine builds on. Ranks meet through a c10d store: one in-process
// HashStore for ranks that are threads of one process, or a TCPStore served by rank 0
// for ranks that are processes (and so, later, nodes).
//
// Each backend is compiled in only where the build found it (native/CMakeLists.txt:
// SDXL_WITH_GLOO, SDXL_WITH_NCCL); asking for a missing one is a clear error.
#pragma once

#include <chrono>  // std::chrono::milliseconds
#include <cstdint> // uint16_t
#include <string>

#include <torch/torch.h> // torch::Device

#include "torch_compat.h" // Collectives

#if defined(SDXL_WITH_GLOO) || defined(SDXL_WITH_NCCL)
#include <torch/csrc/distributed/c10d/Store.hpp> // c10d::Store
#define SDXL_WITH_C10D 1
#endif

namespace sdxl::dist {

// Whether this build can run collectives on `device` (Gloo for the CPU, NCCL for CUDA).
bool has_backend_for(const torch::Device& device);
// What this build has, for errors and logs: "gloo, nccl", "gloo", or "none".
std::string backends_built();

#if defined(SDXL_WITH_C10D)

// A store for ranks that are threads of this process (one per group, shared by its ranks).
c10::intrusive_ptr<c10d::Store> in_process_store();

// A TCPStore on host:port: rank 0 serves it, the others connect, all wait until
// `world_size` ranks have joined or `timeout` passes.
c10::intrusive_ptr<c10d::Store> tcp_store(const std::string& host, uint16_t port, int rank, int world_size,
                                          std::chrono::milliseconds timeout);

// Rank `rank` of `world_size` on `device`: Gloo on the CPU, NCCL on CUDA. Every
// collective fails after `timeout` rather than wait for a rank that is gone.
c10::intrusive_ptr<torch_compat::Collectives> make_process_group(const c10::intrusive_ptr<c10d::Store>& store, int rank,
                                                                 int world_size, const torch::Device& device,
                                                                 std::chrono::milliseconds timeout);

#endif

} // namespace sdxl::dist

#include "dist/process_group.h"

#include <stdexcept> // std::invalid_argument, std::runtime_error

#if defined(SDXL_WITH_C10D)
#include <torch/csrc/distributed/c10d/HashStore.hpp> // c10d::HashStore
#include <torch/csrc/distributed/c10d/TCPStore.hpp>  // c10d::TCPStore
#endif
// The c10d headers hide each process group behind the macro libtorch was built with
// (Torch's CMake config usually defines it already).
#if defined(SDXL_WITH_GLOO)
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp> // c10d::ProcessGroupGloo
#endif
#if defined(SDXL_WITH_NCCL)
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp> // c10d::ProcessGroupNCCL
#endif

namespace sdxl::dist {

bool has_backend_for(const torch::Device& device) {
#if defined(SDXL_WITH_GLOO)
  if (device.is_cpu()) return true;
#endif
#if defined(SDXL_WITH_NCCL)
  if (device.is_cuda()) return true;
#endif
  return false;
}

std::string backends_built() {
  std::string built;
#if defined(SDXL_WITH_GLOO)
  built += "gloo";
#endif
#if defined(SDXL_WITH_NCCL)
  built += built.empty() ? "nccl" : ", nccl";
#endif
  return built.empty() ? "none" : built;
}

#if defined(SDXL_WITH_C10D)

c10::intrusive_ptr<c10d::Store> in_process_store() { return c10::make_intrusive<c10d::HashStore>(); }

c10::intrusive_ptr<c10d::Store> tcp_store(const std::string& host, uint16_t port, int rank, int world_size,
                                          std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions options;
  options.port = port;
  options.isServer = rank == 0;
  options.numWorkers = static_cast<size_t>(world_size);
  options.waitWorkers = true;
  options.timeout = timeout;
  return c10::make_intrusive<c10d::TCPStore>(host, options);
}

c10::intrusive_ptr<torch_compat::Collectives> make_process_group(const c10::intrusive_ptr<c10d::Store>& store, int rank,
                                                                 int world_size, const torch::Device& device,
                                                                 std::chrono::milliseconds timeout) {
  if (rank < 0 || rank >= world_size)
    throw std::invalid_argument("rank " + std::to_string(rank) + " is outside a group of " + std::to_string(world_size));
#if defined(SDXL_WITH_GLOO)
  if (device.is_cpu()) {
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    // Loopback for ranks of one machine; GLOO_SOCKET_IFNAME picks the interface otherwise.
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world_size, options);
  }
#endif
#if defined(SDXL_WITH_NCCL)
  if (device.is_cuda()) {
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = timeout;
    return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world_size, options);
  }
#endif
  throw std::runtime_error("this engine was built without a c10d backend for " + device.str() +
                           " devices (built with: " + backends_built() +
                           "); Gloo needs Debian's libgloo-dev beside libtorch-dev, NCCL a CUDA libtorch and nccl.h");
}

#endif

} // namespace sdxl::dist

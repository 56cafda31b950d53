// What differs between the libtorch versions the engine builds against:
// Debian's libtorch-dev 1.13 (CPU, what CI runs) and the CUDA libtorch of a
// PyTorch 2.x install (2.11 on the lent GPU machines, up to 2.14 for users).
// Every TORCH_VERSION_* test in the engine is here, so a new libtorch means
// reading one file.
#pragma once

#include <torch/csrc/autograd/function.h>        // Node (and deleteNode before 2.13)
#include <torch/csrc/autograd/functions/utils.h> // set_history
#include <torch/version.h>                       // TORCH_VERSION_MAJOR / MINOR
#if defined(SDXL_WITH_GLOO) || defined(SDXL_WITH_NCCL)
#include <torch/csrc/distributed/c10d/Backend.hpp>      // c10d::Backend (2.x)
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp> // c10d::ProcessGroup (1.13)
#endif

#include <type_traits> // std::is_base_of
#include <utility>     // std::forward

#define SDXL_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

// at::scaled_dot_product_attention (fused kernels: flash / memory-efficient on CUDA) arrived in 2.0.
#define SDXL_TORCH_HAS_SDPA SDXL_TORCH_AT_LEAST(2, 0)

// float8_e4m3fn / float8_e5m2 (safetensors F8_E4M3 / F8_E5M2) arrived in 2.1.
#define SDXL_TORCH_HAS_FLOAT8 SDXL_TORCH_AT_LEAST(2, 1)

// Autograd nodes are c10::intrusive_ptr<Node> since pytorch/pytorch#181782 (merged
// April 2026, after the 2.12 branch cut, so first released in 2.13); before, they were
// std::shared_ptr<Node> created with torch::autograd::deleteNode as the deleter (it
// frees long graphs without deep recursion).
#define SDXL_TORCH_INTRUSIVE_NODES SDXL_TORCH_AT_LEAST(2, 13)

// c10d's process groups (ProcessGroupGloo, ProcessGroupNCCL) derive from c10d::Backend
// since 2.0; in 1.13 they derive from c10d::ProcessGroup itself. Either has the same
// collectives (allreduce, broadcast, barrier, ... returning a c10d::Work).
#define SDXL_TORCH_C10D_BACKEND SDXL_TORCH_AT_LEAST(2, 0)

namespace sdxl::torch_compat {

#if SDXL_TORCH_INTRUSIVE_NODES
template <typename T>
using NodePtr = c10::intrusive_ptr<T>;
static_assert(std::is_base_of<c10::intrusive_ptr_target, torch::autograd::Node>::value,
              "this libtorch's autograd Node is not intrusive: correct SDXL_TORCH_INTRUSIVE_NODES in torch_compat.h");
#else
template <typename T>
using NodePtr = std::shared_ptr<T>;
static_assert(std::is_base_of<std::enable_shared_from_this<torch::autograd::Node>, torch::autograd::Node>::value,
              "this libtorch's autograd Node is not shared_ptr-owned: correct SDXL_TORCH_INTRUSIVE_NODES in torch_compat.h");
#endif

// A new autograd node of type T, owned the way this libtorch's engine expects,
// ready for set_next_edges and torch::autograd::set_history.
template <typename T, typename... Args>
NodePtr<T> make_autograd_node(Args&&... args) {
#if SDXL_TORCH_INTRUSIVE_NODES
  return c10::make_intrusive<T>(std::forward<Args>(args)...);
#else
  return std::shared_ptr<T>(new T(std::forward<Args>(args)...), torch::autograd::deleteNode);
#endif
}

#if defined(SDXL_WITH_GLOO) || defined(SDXL_WITH_NCCL)
#if SDXL_TORCH_C10D_BACKEND
using Collectives = c10d::Backend;
#else
using Collectives = c10d::ProcessGroup;
#endif
#endif

} // namespace sdxl::torch_compat

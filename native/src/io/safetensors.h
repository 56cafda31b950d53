// Reading and writing .safetensors files (https://github.com/huggingface/safetensors):
// an 8-byte little-endian header length, a JSON header naming every tensor's
// dtype, shape and byte range, then the raw little-endian data.
//
// The reader memory-maps the file and validates the whole header before any
// tensor is read, so a truncated or hostile file fails at open() with a message
// that names the file and the tensor. Supported dtypes: F64 F32 F16 BF16 I64 I32
// I16 I8 U8 BOOL. U16/U32/U64 and F8_E4M3/F8_E5M2 are accepted in the header
// (info() works) but tensor() throws for them, except F8_* on libtorch >= 2.1,
// which has matching float8 dtypes.
#pragma once

#include <torch/torch.h> // torch::Tensor

#include <cstdint> // uint64_t, int64_t
#include <map>     // std::map TensorMap, metadata
#include <memory>  // std::shared_ptr mapping
#include <string>
#include <vector>

namespace sdxl::io {

using TensorMap = std::map<std::string, torch::Tensor>; // ordered by name

// One header entry; begin/end are byte offsets into the data section.
struct TensorInfo {
  std::string dtype; // as in the file: "F32", "F16", "BF16", "I64", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

class SafetensorsFile {
 public:
  // Maps and validates the file; throws std::runtime_error("<path>: <what is wrong>").
  static SafetensorsFile open(const std::string& path);

  std::vector<std::string> keys() const; // sorted, without __metadata__
  bool contains(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;
  torch::Tensor tensor(const std::string& name) const; // CPU tensor in its stored dtype (owning copy)
  TensorMap tensors() const;                           // all of them
  const std::map<std::string, std::string>& metadata() const;
  const std::string& path() const { return path_; }

 private:
  struct Mapping; // the mmap'd file, unmapped when the last copy goes
  SafetensorsFile() = default;

  std::string path_;
  std::shared_ptr<const Mapping> mapping_;
  const uint8_t* data_ = nullptr; // start of the data section inside the mapping
  std::map<std::string, TensorInfo> entries_;
  std::map<std::string, std::string> metadata_;
};

TensorMap load_safetensors(const std::string& path);

// kSynced: the file and then its directory entry are flushed to the disk, so a power cut
// leaves the old file or the whole new one. kUnsynced: the rename alone, whole against a
// crashed process but not a power cut; for derived data its reader checks (the training cache).
enum class Durability { kSynced, kUnsynced };

// Writes contiguous CPU copies of the tensors, header sorted by name and padded
// with spaces to 8 bytes, to a temporary file next to `path`, then renames it.
void save_safetensors(const std::string& path, const TensorMap& tensors,
                      const std::map<std::string, std::string>& metadata = {},
                      Durability durability = Durability::kSynced);

} // namespace sdxl::io

// .safetensors reader (mmap + validated header) and writer (temp file + rename).
// Format: https://github.com/huggingface/safetensors#format
#include "io/safetensors.h"

#include "torch_compat.h" // SDXL_TORCH_HAS_FLOAT8

#include <nlohmann/json.hpp> // header parsing and writing

#include <fcntl.h>    // ::open
#include <sys/mman.h> // ::mmap, ::munmap
#include <sys/stat.h> // ::fstat
#include <unistd.h>   // ::close, ::getpid

#include <algorithm> // std::sort
#include <atomic>    // unique temp-file counter
#include <cerrno>    // errno
#include <cstdio>    // std::fopen, std::fwrite, std::rename, std::remove
#include <cstring>   // std::memcpy, std::strerror
#include <stdexcept> // std::runtime_error, std::invalid_argument

namespace sdxl::io {
namespace {

// ----------------------------------------------------------------------------
// Constants and dtypes

constexpr uint64_t kHeaderLengthBytes = 8;           // little-endian u64 before the JSON
constexpr uint64_t kMaxHeaderBytes = 100'000'000;    // the reference implementation's limit
constexpr uint64_t kHeaderAlignment = 8;             // writer pads the header to this
constexpr const char* kMetadataKey = "__metadata__";

struct DtypeSpec {
  const char* name;
  uint64_t item_bytes;
  bool torch_supported; // false: header accepted, tensor() throws
  torch::ScalarType scalar_type;
};

const std::vector<DtypeSpec>& dtype_table() {
  static const std::vector<DtypeSpec> table = {
      {"F64", 8, true, torch::kFloat64},  {"F32", 4, true, torch::kFloat32},
      {"F16", 2, true, torch::kFloat16},  {"BF16", 2, true, torch::kBFloat16},
      {"I64", 8, true, torch::kInt64},    {"I32", 4, true, torch::kInt32},
      {"I16", 2, true, torch::kInt16},    {"I8", 1, true, torch::kInt8},
      {"U8", 1, true, torch::kUInt8},     {"BOOL", 1, true, torch::kBool},
      // No unsigned 16/32/64-bit tensors in libtorch 1.13.
      {"U16", 2, false, torch::kUInt8},   {"U32", 4, false, torch::kUInt8},
      {"U64", 8, false, torch::kUInt8},
#if SDXL_TORCH_HAS_FLOAT8
      {"F8_E4M3", 1, true, torch::kFloat8_e4m3fn}, {"F8_E5M2", 1, true, torch::kFloat8_e5m2},
#else
      {"F8_E4M3", 1, false, torch::kUInt8},  {"F8_E5M2", 1, false, torch::kUInt8},
#endif
  };
  return table;
}

const DtypeSpec* find_dtype(const std::string& name) {
  for (const auto& spec : dtype_table())
    if (name == spec.name) return &spec;
  return nullptr;
}

const DtypeSpec* find_dtype(torch::ScalarType scalar_type) {
  for (const auto& spec : dtype_table())
    if (spec.torch_supported && spec.scalar_type == scalar_type) return &spec;
  return nullptr;
}

std::string known_dtypes() {
  std::string names;
  for (const auto& spec : dtype_table()) names += (names.empty() ? "" : " ") + std::string(spec.name);
  return names;
}

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error(path + ": " + what);
}

uint64_t read_u64_le(const uint8_t* bytes) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | bytes[i];
  return value;
}

// ----------------------------------------------------------------------------
// Header validation

TensorInfo parse_entry(const std::string& path, const std::string& name, const nlohmann::json& entry,
                       uint64_t data_bytes) {
  const std::string where = "tensor '" + name + "'";
  if (!entry.is_object()) fail(path, where + ": header entry is not an object");

  TensorInfo info;
  const auto dtype = entry.find("dtype");
  if (dtype == entry.end() || !dtype->is_string()) fail(path, where + ": missing string 'dtype'");
  info.dtype = dtype->get<std::string>();
  const DtypeSpec* spec = find_dtype(info.dtype);
  if (spec == nullptr) fail(path, where + ": unknown dtype '" + info.dtype + "' (known: " + known_dtypes() + ")");

  const auto shape = entry.find("shape");
  if (shape == entry.end() || !shape->is_array()) fail(path, where + ": missing array 'shape'");
  uint64_t numel = 1;
  for (const auto& dim : *shape) {
    if (!dim.is_number_integer() || dim.get<int64_t>() < 0)
      fail(path, where + ": shape " + shape->dump() + " must hold non-negative integers");
    const auto size = dim.get<uint64_t>();
    if (__builtin_mul_overflow(numel, size, &numel)) fail(path, where + ": shape " + shape->dump() + " is too large");
    info.shape.push_back(static_cast<int64_t>(size));
  }

  const auto offsets = entry.find("data_offsets");
  if (offsets == entry.end() || !offsets->is_array() || offsets->size() != 2 ||
      !(*offsets)[0].is_number_unsigned() || !(*offsets)[1].is_number_unsigned())
    fail(path, where + ": 'data_offsets' must be [begin, end] with non-negative integers");
  info.begin = (*offsets)[0].get<uint64_t>();
  info.end = (*offsets)[1].get<uint64_t>();
  const std::string range = "[" + std::to_string(info.begin) + ", " + std::to_string(info.end) + "]";
  if (info.begin > info.end) fail(path, where + ": data_offsets " + range + " has begin > end");
  if (info.end > data_bytes)
    fail(path, where + ": data_offsets " + range + " run past the end of the data section (" +
                   std::to_string(data_bytes) + " bytes); the file may be truncated");

  uint64_t expected_bytes = 0;
  if (__builtin_mul_overflow(numel, spec->item_bytes, &expected_bytes))
    fail(path, where + ": shape " + shape->dump() + " is too large");
  if (expected_bytes != info.end - info.begin)
    fail(path, where + ": " + info.dtype + " " + shape->dump() + " needs " + std::to_string(expected_bytes) +
                   " bytes but data_offsets " + range + " span " + std::to_string(info.end - info.begin));
  return info;
}

// Tensors may not overlap and, as the format requires, must cover the data section without holes.
void check_layout(const std::string& path, const std::map<std::string, TensorInfo>& entries, uint64_t data_bytes) {
  std::vector<std::pair<const std::string*, const TensorInfo*>> by_offset;
  for (const auto& [name, info] : entries) by_offset.emplace_back(&name, &info);
  std::sort(by_offset.begin(), by_offset.end(), [](const auto& a, const auto& b) {
    return a.second->begin != b.second->begin ? a.second->begin < b.second->begin : a.second->end < b.second->end;
  });
  uint64_t covered = 0;
  const std::string* previous = nullptr;
  for (const auto& [name, info] : by_offset) {
    if (info->begin < covered)
      fail(path, "tensor '" + *name + "' overlaps tensor '" + *previous + "' (bytes " + std::to_string(info->begin) +
                     " to " + std::to_string(covered) + ")");
    if (info->begin > covered)
      fail(path, "data section has a gap of " + std::to_string(info->begin - covered) + " bytes before tensor '" +
                     *name + "'");
    if (info->end > covered || previous == nullptr) previous = name;
    covered = std::max(covered, info->end);
  }
  if (covered != data_bytes)
    fail(path, "data section has " + std::to_string(data_bytes - covered) +
                   " trailing bytes that no tensor covers");
}

} // namespace

// ----------------------------------------------------------------------------
// Mapping

struct SafetensorsFile::Mapping {
  void* address = nullptr;
  size_t bytes = 0;
  ~Mapping() {
    if (address != nullptr && address != MAP_FAILED) ::munmap(address, bytes);
  }
};

// ----------------------------------------------------------------------------
// Reader

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat status {};
  if (::fstat(fd, &status) != 0) {
    const int error = errno;
    ::close(fd);
    fail(path, std::string("cannot stat: ") + std::strerror(error));
  }
  if (!S_ISREG(status.st_mode)) {
    ::close(fd);
    fail(path, "not a regular file");
  }
  const auto file_bytes = static_cast<uint64_t>(status.st_size);
  if (file_bytes < kHeaderLengthBytes) {
    ::close(fd);
    fail(path, "file is " + std::to_string(file_bytes) + " bytes, too short for a safetensors header");
  }
  auto mapping = std::make_shared<Mapping>();
  mapping->bytes = file_bytes;
  mapping->address = ::mmap(nullptr, file_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_error = errno;
  ::close(fd); // the mapping keeps the file alive
  if (mapping->address == MAP_FAILED) fail(path, std::string("cannot mmap: ") + std::strerror(map_error));
  const auto* bytes = static_cast<const uint8_t*>(mapping->address);

  const uint64_t header_bytes = read_u64_le(bytes);
  if (header_bytes > kMaxHeaderBytes)
    fail(path, "header length " + std::to_string(header_bytes) + " exceeds the limit of " +
                   std::to_string(kMaxHeaderBytes) + " bytes; not a safetensors file?");
  if (header_bytes > file_bytes - kHeaderLengthBytes)
    fail(path, "header length " + std::to_string(header_bytes) + " runs past the end of the file (" +
                   std::to_string(file_bytes) + " bytes); the file is truncated or not safetensors");

  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes + kHeaderLengthBytes, bytes + kHeaderLengthBytes + header_bytes);
  } catch (const nlohmann::json::exception& e) {
    fail(path, std::string("header is not valid JSON (") + e.what() + ")");
  }
  if (!header.is_object()) fail(path, "header is not a JSON object");

  SafetensorsFile file;
  file.path_ = path;
  file.mapping_ = mapping;
  file.data_ = bytes + kHeaderLengthBytes + header_bytes;
  const uint64_t data_bytes = file_bytes - kHeaderLengthBytes - header_bytes;

  for (const auto& [name, entry] : header.items()) {
    if (name == kMetadataKey) {
      if (!entry.is_object()) fail(path, "__metadata__ is not a JSON object");
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string())
          fail(path, "__metadata__ value of '" + key + "' is " + value.type_name() + ", expected a string");
        file.metadata_[key] = value.get<std::string>();
      }
      continue;
    }
    file.entries_[name] = parse_entry(path, name, entry, data_bytes);
  }
  check_layout(path, file.entries_, data_bytes);
  return file;
}

std::vector<std::string> SafetensorsFile::keys() const {
  std::vector<std::string> names;
  names.reserve(entries_.size());
  for (const auto& [name, info] : entries_) names.push_back(name);
  return names;
}

bool SafetensorsFile::contains(const std::string& name) const { return entries_.count(name) != 0; }

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  const auto found = entries_.find(name);
  if (found == entries_.end()) fail(path_, "no tensor named '" + name + "'");
  return found->second;
}

torch::Tensor SafetensorsFile::tensor(const std::string& name) const {
  const TensorInfo& entry = info(name);
  const DtypeSpec* spec = find_dtype(entry.dtype);
  if (!spec->torch_supported)
    fail(path_, "tensor '" + name + "' has dtype " + entry.dtype + ", which this libtorch (" TORCH_VERSION
                ") cannot represent; convert the file to F16/F32");
  const bool is_bool = spec->scalar_type == torch::kBool;
  // Bytes of a BOOL tensor may be any value; read them as U8 and compare to 0.
  auto result = torch::empty(entry.shape, torch::TensorOptions().dtype(is_bool ? torch::kUInt8 : spec->scalar_type));
  if (entry.end > entry.begin) std::memcpy(result.data_ptr(), data_ + entry.begin, entry.end - entry.begin);
  return is_bool ? result.ne(0) : result;
}

TensorMap SafetensorsFile::tensors() const {
  TensorMap all;
  for (const auto& [name, info] : entries_) all.emplace(name, tensor(name));
  return all;
}

const std::map<std::string, std::string>& SafetensorsFile::metadata() const { return metadata_; }

TensorMap load_safetensors(const std::string& path) { return SafetensorsFile::open(path).tensors(); }

// ----------------------------------------------------------------------------
// Writer

void save_safetensors(const std::string& path, const TensorMap& tensors,
                      const std::map<std::string, std::string>& metadata, Durability durability) {
  std::vector<torch::Tensor> contiguous;
  contiguous.reserve(tensors.size());
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header[kMetadataKey] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, source] : tensors) {
    if (name == kMetadataKey) throw std::invalid_argument(path + ": '__metadata__' cannot name a tensor");
    if (!source.defined()) throw std::invalid_argument(path + ": tensor '" + name + "' is undefined");
    const DtypeSpec* spec = find_dtype(source.scalar_type());
    if (spec == nullptr)
      throw std::invalid_argument(path + ": tensor '" + name + "' has dtype " +
                                  std::string(c10::toString(source.scalar_type())) +
                                  ", which safetensors cannot store here");
    auto tensor = source.detach().to(torch::kCPU).contiguous();
    if (tensor.scalar_type() == torch::kBool) tensor = tensor.to(torch::kUInt8); // 0/1 bytes
    const uint64_t bytes = static_cast<uint64_t>(tensor.numel()) * spec->item_bytes;
    header[name] = {{"dtype", spec->name}, {"shape", tensor.sizes().vec()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    contiguous.push_back(std::move(tensor));
  }

  std::string header_text;
  try {
    header_text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    throw std::invalid_argument(path + ": cannot write header (" + e.what() + ")");
  }
  header_text.append((kHeaderAlignment - header_text.size() % kHeaderAlignment) % kHeaderAlignment, ' ');
  uint8_t length_bytes[kHeaderLengthBytes];
  for (uint64_t i = 0, value = header_text.size(); i < kHeaderLengthBytes; ++i, value >>= 8)
    length_bytes[i] = static_cast<uint8_t>(value & 0xff);

  static std::atomic<uint64_t> counter{0};
  const std::string temp_path = path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
  std::FILE* out = std::fopen(temp_path.c_str(), "wb");
  if (out == nullptr) fail(path, std::string("cannot create ") + temp_path + ": " + std::strerror(errno));
  bool ok = std::fwrite(length_bytes, 1, kHeaderLengthBytes, out) == kHeaderLengthBytes &&
            std::fwrite(header_text.data(), 1, header_text.size(), out) == header_text.size();
  for (const auto& tensor : contiguous) {
    const size_t bytes = tensor.numel() * tensor.element_size();
    if (ok && bytes > 0) ok = std::fwrite(tensor.data_ptr(), 1, bytes, out) == bytes;
  }
  // Flushed to the disk before the rename, so a crash leaves the old file or the whole new one.
  if (ok) ok = std::fflush(out) == 0 && (durability == Durability::kUnsynced || ::fsync(::fileno(out)) == 0);
  const int write_error = errno;
  ok = (std::fclose(out) == 0) && ok;
  if (!ok) {
    std::remove(temp_path.c_str());
    fail(path, std::string("write failed: ") + std::strerror(write_error));
  }
  if (std::rename(temp_path.c_str(), path.c_str()) != 0) {
    const int rename_error = errno;
    std::remove(temp_path.c_str());
    fail(path, std::string("cannot rename temporary file: ") + std::strerror(rename_error));
  }
  if (durability == Durability::kUnsynced) return;
  // The rename itself is durable once the directory entry is.
  const auto slash = path.find_last_of('/');
  const std::string directory = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const int dir_fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
}

} // namespace sdxl::io

// Parsed LoRAs of one loaded model, ready to overlay (lora::prepare_adapters): kept by
// key (the file's sha256 when the caller knows it) and evicted least recently used first
// once their converted tensors pass the byte budget. A set in use by a running call stays
// alive through its shared_ptr even when evicted. Thread-safe; a file is parsed outside
// the lock, so two first uses of one file at once may both parse it (the first kept wins).
#pragma once

#include <cstdint>    // int64_t
#include <functional> // std::function loader
#include <list>       // LRU order
#include <memory>     // std::shared_ptr
#include <mutex>      // std::mutex
#include <string>
#include <unordered_map>

#include "models/layers.h" // models::AdapterSet

namespace sdxl {

struct LoraCacheStats {
  int64_t entries = 0;
  int64_t bytes = 0;
  int64_t hits = 0;
  int64_t misses = 0;
};

class LoraCache {
 public:
  using Loader = std::function<models::AdapterSet()>;

  explicit LoraCache(int64_t max_bytes) : max_bytes_(max_bytes) {}

  // The set under `key`, loading it with `load` on a miss.
  std::shared_ptr<const models::AdapterSet> get(const std::string& key, const Loader& load);
  LoraCacheStats stats() const;

 private:
  struct Entry {
    std::shared_ptr<const models::AdapterSet> set;
    std::list<std::string>::iterator position; // in recency_, most recent first
  };
  void evict_locked();

  int64_t max_bytes_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Entry> entries_;
  std::list<std::string> recency_;
  LoraCacheStats stats_;
};

} // namespace sdxl

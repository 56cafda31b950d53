// LRU cache of prepared LoRA overlays (see lora_cache.h).
#include "engine/lora_cache.h"

#include <utility> // std::move

namespace sdxl {

std::shared_ptr<const models::AdapterSet> LoraCache::get(const std::string& key, const Loader& load) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto found = entries_.find(key);
    if (found != entries_.end()) {
      ++stats_.hits;
      recency_.splice(recency_.begin(), recency_, found->second.position);
      return found->second.set;
    }
    ++stats_.misses;
  }
  auto set = std::make_shared<const models::AdapterSet>(load()); // parsed without the lock
  std::lock_guard<std::mutex> lock(mutex_);
  const auto found = entries_.find(key);
  if (found != entries_.end()) return found->second.set; // another call parsed it meanwhile
  recency_.push_front(key);
  entries_.emplace(key, Entry{set, recency_.begin()});
  stats_.entries = static_cast<int64_t>(entries_.size());
  stats_.bytes += set->bytes;
  evict_locked();
  return set;
}

void LoraCache::evict_locked() {
  // The newest entry stays even when it alone is over the budget: the call needs it.
  while (stats_.bytes > max_bytes_ && recency_.size() > 1) {
    const std::string& oldest = recency_.back();
    const auto found = entries_.find(oldest);
    stats_.bytes -= found->second.set->bytes;
    entries_.erase(found);
    recency_.pop_back();
  }
  stats_.entries = static_cast<int64_t>(entries_.size());
}

LoraCacheStats LoraCache::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

} // namespace sdxl

// Seeded, resumable, bucket-pure batch order.
#include "train/batch_sampler.h"

#include <algorithm> // std::min
#include <cstddef>   // std::ptrdiff_t
#include <cstdint>   // UINT64_MAX
#include <map>       // buckets by id
#include <random>    // std::mt19937_64, std::seed_seq
#include <stdexcept> // std::invalid_argument
#include <string>    // std::to_string
#include <utility>   // std::swap

namespace sdxl::train {

namespace {

// The generator for one epoch: seed and epoch both reach all of its state.
std::mt19937_64 epoch_generator(uint64_t seed, int64_t epoch) {
  const uint64_t e = static_cast<uint64_t>(epoch);
  std::seed_seq sequence{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), static_cast<uint32_t>(e),
                         static_cast<uint32_t>(e >> 32)};
  return std::mt19937_64(sequence);
}

// Uniform in [0, bound), bound >= 1, by rejection (no modulo bias, same on every platform).
uint64_t draw_below(std::mt19937_64& rng, uint64_t bound) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % bound; // largest multiple of bound, exclusive
  uint64_t value;
  do value = rng();
  while (value >= limit);
  return value % bound;
}

// Fisher-Yates, from the back.
template <typename T>
void shuffle(std::vector<T>& items, std::mt19937_64& rng) {
  for (size_t i = items.size(); i > 1; --i) std::swap(items[i - 1], items[draw_below(rng, i)]);
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

} // namespace

BatchSampler::BatchSampler(std::vector<size_t> bucket_of_image, int64_t repeats, int64_t batch_size,
                           bool random_flip, uint64_t seed)
    : repeats_(repeats), batch_size_(batch_size), random_flip_(random_flip), seed_(seed) {
  if (bucket_of_image.empty()) throw std::invalid_argument("BatchSampler: no training images");
  if (repeats < 1) throw std::invalid_argument("BatchSampler: repeats must be >= 1, got " + std::to_string(repeats));
  if (batch_size < 1)
    throw std::invalid_argument("BatchSampler: batch_size must be >= 1, got " + std::to_string(batch_size));
  std::map<size_t, std::vector<int64_t>> by_bucket;
  for (size_t i = 0; i < bucket_of_image.size(); ++i) by_bucket[bucket_of_image[i]].push_back(static_cast<int64_t>(i));
  for (auto& [bucket, images] : by_bucket) {
    batches_per_epoch_ += ceil_div(static_cast<int64_t>(images.size()) * repeats_, batch_size_);
    images_by_bucket_.push_back(std::move(images));
  }
}

std::vector<std::vector<SampleRef>> BatchSampler::epoch_batches(int64_t epoch) const {
  if (epoch < 0) throw std::invalid_argument("BatchSampler: epoch must be >= 0, got " + std::to_string(epoch));
  std::mt19937_64 rng = epoch_generator(seed_, epoch);

  // Per bucket: every (image, repeat) item, shuffled, cut into batches.
  std::vector<std::vector<SampleRef>> batches;
  batches.reserve(static_cast<size_t>(batches_per_epoch_));
  for (const auto& images : images_by_bucket_) {
    std::vector<SampleRef> items;
    items.reserve(images.size() * static_cast<size_t>(repeats_));
    for (int64_t repeat = 0; repeat < repeats_; ++repeat)
      for (int64_t image : images) items.push_back({image, false});
    shuffle(items, rng);
    for (size_t start = 0; start < items.size(); start += static_cast<size_t>(batch_size_)) {
      const size_t end = std::min(items.size(), start + static_cast<size_t>(batch_size_));
      batches.emplace_back(items.begin() + static_cast<std::ptrdiff_t>(start),
                           items.begin() + static_cast<std::ptrdiff_t>(end));
    }
  }
  shuffle(batches, rng);

  // Flips last, in final order, from the same stream.
  if (random_flip_)
    for (auto& batch : batches)
      for (auto& item : batch) item.flip = (rng() >> 63) != 0;
  return batches;
}

std::vector<SampleRef> BatchSampler::next() {
  if (cached_epoch_ != state_.epoch) {
    cached_batches_ = epoch_batches(state_.epoch);
    cached_epoch_ = state_.epoch;
  }
  std::vector<SampleRef> batch = cached_batches_[static_cast<size_t>(state_.position)];
  if (++state_.position == batches_per_epoch_) {
    state_.position = 0;
    ++state_.epoch;
  }
  return batch;
}

void BatchSampler::restore(State state) {
  if (state.epoch < 0)
    throw std::invalid_argument("BatchSampler: restored epoch must be >= 0, got " + std::to_string(state.epoch));
  if (state.position < 0 || state.position >= batches_per_epoch_)
    throw std::invalid_argument("BatchSampler: restored position " + std::to_string(state.position) +
                                " is outside [0, " + std::to_string(batches_per_epoch_) +
                                "): the data set or batch size changed since the checkpoint");
  state_ = state;
}

} // namespace sdxl::train

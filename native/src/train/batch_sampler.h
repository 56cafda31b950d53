// The order training images are seen in: every (image, repeat) pair once per
// epoch, in batches that never mix buckets (their latents must stack), with
// an optional horizontal flip per item. Kohya style: shuffle each bucket's
// items, cut them into batches (the last one of a bucket may be short), then
// shuffle the batches of all buckets together.
//
// Each epoch draws from its own std::mt19937_64 seeded with (seed, epoch)
// through std::seed_seq, and the shuffles and flips use our own
// Fisher-Yates and bounded draws (std::shuffle and the std distributions are
// implementation-defined), so an epoch's order is the same on every platform
// and can be recomputed from (seed, epoch) alone: a resumed run restores
// {epoch, position} and goes on exactly as the uninterrupted run would.
#pragma once

#include <cstddef> // size_t
#include <cstdint> // int64_t, uint64_t
#include <vector>

namespace sdxl::train {

struct SampleRef {
  int64_t image = 0; // index into the training images
  bool flip = false;
};

inline bool operator==(const SampleRef& a, const SampleRef& b) { return a.image == b.image && a.flip == b.flip; }

class BatchSampler {
 public:
  // bucket_of_image[i]: the bucket image i was assigned to (any ids; only equality matters).
  // Throws std::invalid_argument for no images, repeats < 1 or batch_size < 1.
  BatchSampler(std::vector<size_t> bucket_of_image, int64_t repeats, int64_t batch_size, bool random_flip,
               uint64_t seed);

  // The next batch (1..batch_size items of one bucket); rolls into the next epoch after the last.
  std::vector<SampleRef> next();

  // Where next() stands: the batch it returns next is batch `position` of epoch `epoch`.
  struct State {
    int64_t epoch = 0;
    int64_t position = 0;
  };
  State state() const { return state_; }
  // Throws std::invalid_argument when epoch < 0 or position is outside [0, batches_per_epoch()).
  void restore(State state);

  // The same in every epoch: sum over buckets of ceil(images * repeats / batch_size).
  int64_t batches_per_epoch() const { return batches_per_epoch_; }

  // Every batch of one epoch, in order, computed from (seed, epoch) alone.
  std::vector<std::vector<SampleRef>> epoch_batches(int64_t epoch) const;

 private:
  std::vector<std::vector<int64_t>> images_by_bucket_; // image indices, buckets by ascending id
  int64_t repeats_;
  int64_t batch_size_;
  bool random_flip_;
  uint64_t seed_;
  int64_t batches_per_epoch_ = 0;

  State state_;
  int64_t cached_epoch_ = -1; // epoch whose batches cached_batches_ holds
  std::vector<std::vector<SampleRef>> cached_batches_;
};

} // namespace sdxl::train

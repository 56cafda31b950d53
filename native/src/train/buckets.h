// Aspect-ratio buckets: the training resolutions an image may be resized and
// cropped to, so that portrait and landscape photos keep most of their pixels
// instead of being center-cropped to a square. Same list and same choice rule
// as kohya's sd-scripts (library/model_util.py make_bucket_resolutions and
// library/train_util.py BucketManager.select_bucket).
#pragma once

#include <cstddef> // size_t
#include <cstdint> // int64_t
#include <vector>

namespace sdxl::train {

struct Bucket {
  int64_t width = 0;
  int64_t height = 0;
};

inline bool operator==(const Bucket& a, const Bucket& b) { return a.width == b.width && a.height == b.height; }
inline bool operator!=(const Bucket& a, const Bucket& b) { return !(a == b); }
// Width first, then height: the order kohya sorts its (width, height) tuples in.
inline bool operator<(const Bucket& a, const Bucket& b) {
  return a.width != b.width ? a.width < b.width : a.height < b.height;
}

// Every bucket for a pixel budget of resolution^2, sorted by (width, height), no duplicates:
//  - the square floor(resolution / step) * step, always (even below min_side, as kohya does,
//    so a tiny run at resolution 128 gets 128x128 whatever min_side says);
//  - for each width = min_side, min_side + step, ..., max_side: the tallest height that is a
//    multiple of step, at most max_side and within the budget, when it is >= min_side; and
//    the same bucket turned on its side.
// Every side is a multiple of step and every area <= resolution^2.
// Throws std::invalid_argument when step <= 0, resolution < step, min_side <= 0, min_side or
// max_side is not a multiple of step, max_side < min_side or max_side < resolution.
std::vector<Bucket> make_buckets(int64_t resolution, int64_t step, int64_t min_side, int64_t max_side);

// The index of the bucket for an image of width x height: the bucket of exactly that size when
// there is one, else the one whose aspect ratio (width / height, as a double) is nearest in
// absolute difference. Ties go to the lowest index, i.e. the narrower bucket of a sorted list
// (numpy's argmin in kohya's select_bucket).
// Throws std::invalid_argument for an empty list or a non-positive size.
size_t assign_bucket(const std::vector<Bucket>& buckets, int64_t width, int64_t height);

// The buckets of one run: those of `resolution` alone, or with min_resolution > 0 those of every
// tier resolution from min_resolution to resolution in steps of `step` (multi-resolution
// training, buckets per resolution as the FSDP fine-tuner keeps them). An image trains in the
// largest tier whose square fits in its own pixels (tier^2 <= width * height), so it is never
// enlarged to a larger tier, among that tier's buckets by assign_bucket's rule; an image below
// min_resolution has no bucket (the run skips it). Without min_resolution every image has one,
// exactly make_buckets(resolution, ...) and assign_bucket.
class BucketPlan {
 public:
  // Throws std::invalid_argument as make_buckets does, and for a min_resolution that is not a
  // multiple of step or lies above resolution.
  BucketPlan(int64_t resolution, int64_t min_resolution, int64_t step, int64_t min_side, int64_t max_side);

  const std::vector<Bucket>& buckets() const { return buckets_; }
  // The index into buckets() for an image of width x height, or -1 when it is skipped.
  int64_t assign(int64_t width, int64_t height) const;

 private:
  struct Tier {
    int64_t resolution;
    std::vector<Bucket> buckets;
    std::vector<size_t> index; // of each in buckets_
  };
  int64_t min_resolution_;
  std::vector<Tier> tiers_; // ascending
  std::vector<Bucket> buckets_;
};

} // namespace sdxl::train

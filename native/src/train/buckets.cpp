// Aspect-ratio buckets (kohya's make_bucket_resolutions and select_bucket).
#include "train/buckets.h"

#include <algorithm> // std::sort, std::unique, std::min
#include <cmath>     // std::fabs
#include <stdexcept> // std::invalid_argument
#include <string>    // std::to_string

namespace sdxl::train {

namespace {

void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument("buckets: " + message);
}

std::string multiple_of_step(const char* name, int64_t value, int64_t step) {
  return std::string(name) + " (" + std::to_string(value) + ") must be a positive multiple of bucket_step (" +
         std::to_string(step) + ")";
}

} // namespace

std::vector<Bucket> make_buckets(int64_t resolution, int64_t step, int64_t min_side, int64_t max_side) {
  require(step > 0, "bucket_step must be positive, got " + std::to_string(step));
  require(resolution >= step, "resolution (" + std::to_string(resolution) + ") must be at least bucket_step (" +
                                  std::to_string(step) + ")");
  require(min_side > 0 && min_side % step == 0, multiple_of_step("min_bucket_side", min_side, step));
  require(max_side > 0 && max_side % step == 0, multiple_of_step("max_bucket_side", max_side, step));
  require(max_side >= min_side, "max_bucket_side (" + std::to_string(max_side) + ") must be >= min_bucket_side (" +
                                    std::to_string(min_side) + ")");
  require(max_side >= resolution, "max_bucket_side (" + std::to_string(max_side) + ") must be >= resolution (" +
                                      std::to_string(resolution) + ")");

  const int64_t max_area = resolution * resolution;
  std::vector<Bucket> buckets;
  // floor(sqrt(area) / step) * step == floor(resolution / step) * step for integer resolution.
  const int64_t square = resolution / step * step;
  buckets.push_back({square, square});
  for (int64_t width = min_side; width <= max_side; width += step) {
    const int64_t height = std::min(max_side, max_area / width / step * step);
    if (height < min_side) continue;
    buckets.push_back({width, height});
    buckets.push_back({height, width});
  }
  std::sort(buckets.begin(), buckets.end());
  buckets.erase(std::unique(buckets.begin(), buckets.end()), buckets.end());
  return buckets;
}

size_t assign_bucket(const std::vector<Bucket>& buckets, int64_t width, int64_t height) {
  require(!buckets.empty(), "no buckets to choose from");
  require(width > 0 && height > 0,
          "image size must be positive, got " + std::to_string(width) + "x" + std::to_string(height));
  for (size_t i = 0; i < buckets.size(); ++i)
    if (buckets[i].width == width && buckets[i].height == height) return i;

  const double aspect = static_cast<double>(width) / static_cast<double>(height);
  size_t best = 0;
  double best_error = 0;
  for (size_t i = 0; i < buckets.size(); ++i) {
    const double error =
        std::fabs(static_cast<double>(buckets[i].width) / static_cast<double>(buckets[i].height) - aspect);
    if (i == 0 || error < best_error) { // strict: the first of equal errors wins
      best = i;
      best_error = error;
    }
  }
  return best;
}

BucketPlan::BucketPlan(int64_t resolution, int64_t min_resolution, int64_t step, int64_t min_side, int64_t max_side)
    : min_resolution_(min_resolution) {
  require(min_resolution >= 0 && min_resolution <= resolution,
          "min_resolution (" + std::to_string(min_resolution) + ") must lie between 0 and resolution (" +
              std::to_string(resolution) + ")");
  require(min_resolution == 0 || (step > 0 && min_resolution % step == 0),
          multiple_of_step("min_resolution", min_resolution, step));
  for (int64_t tier = min_resolution == 0 ? resolution : min_resolution; tier <= resolution; tier += step) {
    tiers_.push_back(Tier{tier, make_buckets(tier, step, std::min(min_side, tier / step * step), max_side), {}});
    buckets_.insert(buckets_.end(), tiers_.back().buckets.begin(), tiers_.back().buckets.end());
  }
  std::sort(buckets_.begin(), buckets_.end());
  buckets_.erase(std::unique(buckets_.begin(), buckets_.end()), buckets_.end());
  for (Tier& tier : tiers_)
    for (const Bucket& bucket : tier.buckets)
      tier.index.push_back(static_cast<size_t>(std::lower_bound(buckets_.begin(), buckets_.end(), bucket) - buckets_.begin()));
}

int64_t BucketPlan::assign(int64_t width, int64_t height) const {
  const Tier* chosen = &tiers_.front();
  if (min_resolution_ > 0) {
    const int64_t area = width * height;
    if (area < min_resolution_ * min_resolution_) return -1;
    for (const Tier& tier : tiers_)
      if (tier.resolution * tier.resolution <= area) chosen = &tier;
  }
  return static_cast<int64_t>(chosen->index[assign_bucket(chosen->buckets, width, height)]);
}

} // namespace sdxl::train

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

} // namespace sdxl::train

// Resize-to-cover, center crop, optional mirror and [-1, 1] scaling of one training image.
#include "train/image_prep.h"

#include <stdexcept> // std::invalid_argument
#include <string>    // std::to_string

namespace sdxl::train {

namespace {

namespace F = torch::nn::functional;

std::string size_text(int64_t width, int64_t height) { return std::to_string(width) + "x" + std::to_string(height); }

// round(numerator / denominator) for positive integers, halves up (kohya's int(x + 0.5)).
int64_t divide_rounding_half_up(int64_t numerator, int64_t denominator) {
  return (2 * numerator + denominator) / (2 * denominator);
}

// [1, 3, h, w] float 0..255 -> [1, 3, height, width].
torch::Tensor resample(const torch::Tensor& image, int64_t width, int64_t height) {
  const int64_t source_width = image.size(3), source_height = image.size(2);
  if (width == source_width && height == source_height) return image;
  const bool shrinking = width * height < source_width * source_height;
  auto options = F::InterpolateFuncOptions().size(std::vector<int64_t>{height, width}).align_corners(false);
  if (shrinking)
    options.mode(torch::kBilinear).antialias(true); // averages every source pixel under the footprint
  else
    options.mode(torch::kBicubic);
  return F::interpolate(image, options);
}

} // namespace

std::pair<int64_t, int64_t> covering_size(int64_t width, int64_t height, const Bucket& bucket) {
  if (width <= 0 || height <= 0)
    throw std::invalid_argument("prepare_image: image size must be positive, got " + size_text(width, height));
  if (bucket.width <= 0 || bucket.height <= 0)
    throw std::invalid_argument("prepare_image: bucket size must be positive, got " +
                                size_text(bucket.width, bucket.height));
  // Integer comparison of aspect ratios, so the side that fits is chosen exactly.
  if (width * bucket.height > height * bucket.width) // wider than the bucket: heights match
    return {divide_rounding_half_up(width * bucket.height, height), bucket.height};
  return {bucket.width, divide_rounding_half_up(height * bucket.width, width)};
}

PreparedImage prepare_image(const uint8_t* rgb, int64_t width, int64_t height, const Bucket& bucket, bool flip) {
  const auto [resized_width, resized_height] = covering_size(width, height, bucket);
  if (rgb == nullptr) throw std::invalid_argument("prepare_image: no pixel data");

  PreparedImage out;
  out.original_width = width;
  out.original_height = height;
  out.resized_width = resized_width;
  out.resized_height = resized_height;
  out.bucket = bucket;
  out.flipped = flip;
  out.crop_left = (resized_width - bucket.width) / 2;
  out.crop_top = (resized_height - bucket.height) / 2;

  // from_blob does not own the caller's bytes; the float conversion copies them.
  const torch::Tensor bytes =
      torch::from_blob(const_cast<uint8_t*>(rgb), {height, width, 3}, torch::kUInt8); // [H, W, 3]
  const torch::Tensor image = bytes.permute({2, 0, 1}).unsqueeze(0).to(torch::kFloat32); // [1, 3, H, W]
  torch::Tensor resized = resample(image, resized_width, resized_height);               // [1, 3, rh, rw]
  torch::Tensor cropped = resized.narrow(2, out.crop_top, bucket.height)
                              .narrow(3, out.crop_left, bucket.width)[0]; // [3, bh, bw]
  if (flip) {
    cropped = cropped.flip({2});
    out.crop_left = resized_width - out.crop_left - bucket.width;
  }
  // Bicubic overshoots; 8-bit rounding matches what PIL/OpenCV pipelines feed the VAE.
  out.pixels = (cropped.clamp(0, 255).round() / 127.5 - 1).contiguous(); // [3, bh, bw]
  return out;
}

} // namespace sdxl::train

// Turns one decoded RGB image into the VAE's input for its bucket, and records
// the numbers SDXL's micro-conditioning needs: time_ids = [orig_h, orig_w,
// crop_top, crop_left, target_h, target_w] (diffusers
// StableDiffusionXLPipeline._get_add_time_ids; the training scripts fill them
// the same way per image).
//
// Steps, all deterministic:
//  1. Resize, keeping the aspect ratio, to the smallest size that covers the
//     bucket: the side that fits exactly equals the bucket's, the other is
//     rounded half up (kohya's int(x * scale + 0.5)).
//     Down: antialiased bilinear (PIL-style triangle filter widened by the
//     scale, as torchvision/diffusers' BILINEAR resize of a PIL image);
//     up: bicubic (a = -0.75). Same size: no resampling.
//  2. Center crop to the bucket; an odd margin leaves the extra pixel on the
//     right/bottom (kohya: trim = (size - bucket) // 2).
//  3. Optionally mirror left-right. The recorded crop_left is then where the
//     crop window sits in the mirrored resized image:
//       crop_left = resized_width - crop_left - target_width
//     which is what diffusers' DreamBooth SDXL scripts record (they flip the
//     resized image before cropping) and what kohya records
//     (target - crop_right, in its own crop frame).
//  4. Round to 8-bit values (as the PIL/OpenCV pipelines hold them) and map
//     0..255 to -1..1.
#pragma once

#include <cstdint> // int64_t, uint8_t
#include <utility> // std::pair

#include <torch/torch.h> // torch::Tensor

#include "train/buckets.h" // Bucket

namespace sdxl::train {

struct PreparedImage {
  torch::Tensor pixels; // [3, bucket.height, bucket.width] float32 in [-1, 1], CPU, contiguous
  int64_t original_width = 0;
  int64_t original_height = 0;
  int64_t resized_width = 0;  // the size before cropping
  int64_t resized_height = 0;
  int64_t crop_left = 0; // in the resized image's pixels; mirrored per step 3 when flipped
  int64_t crop_top = 0;
  Bucket bucket;
  bool flipped = false;
};

// The covering size of step 1: {resized_width, resized_height}, each >= the bucket's side.
// Throws std::invalid_argument for non-positive sizes.
std::pair<int64_t, int64_t> covering_size(int64_t width, int64_t height, const Bucket& bucket);

// rgb: width * height * 3 bytes, row-major (as engine.h's TrainImage holds them).
// Throws std::invalid_argument for a null buffer or non-positive sizes.
PreparedImage prepare_image(const uint8_t* rgb, int64_t width, int64_t height, const Bucket& bucket, bool flip);

} // namespace sdxl::train

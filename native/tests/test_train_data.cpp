// The data side of training: kohya's aspect-ratio buckets and the choice of
// bucket, resize/crop/flip of an image with the crop numbers SDXL's time_ids
// need, the seeded resumable batch order, and the PNG writer (checked by
// parsing the file here with an independent CRC, Adler and stored-block inflate).
#include "check.h"
#include "test_support.h" // scratch_path

#include "train/batch_sampler.h" // BatchSampler, SampleRef
#include "train/buckets.h"       // Bucket, make_buckets, assign_bucket
#include "train/image_prep.h"    // prepare_image, covering_size
#include "train/png_writer.h"    // encode_png, write_png, crc32, adler32

#include <algorithm>  // std::find, std::count
#include <filesystem> // scratch files
#include <fstream>    // reading written files back
#include <iterator>   // std::istreambuf_iterator
#include <map>
#include <set>
#include <string>
#include <vector>

using namespace sdxl::train;
using namespace sdxl::test; // test_support.h

namespace {

bool contains(const std::vector<Bucket>& buckets, int64_t width, int64_t height) {
  return std::find(buckets.begin(), buckets.end(), Bucket{width, height}) != buckets.end();
}

// An image whose every byte says where it came from: R = x, G = y, B = 7x + 3y (mod 256).
std::vector<uint8_t> coordinate_image(int64_t width, int64_t height) {
  std::vector<uint8_t> rgb(static_cast<size_t>(width * height * 3));
  for (int64_t y = 0; y < height; ++y)
    for (int64_t x = 0; x < width; ++x) {
      uint8_t* p = &rgb[static_cast<size_t>((y * width + x) * 3)];
      p[0] = static_cast<uint8_t>(x);
      p[1] = static_cast<uint8_t>(y);
      p[2] = static_cast<uint8_t>(7 * x + 3 * y);
    }
  return rgb;
}

double to_unit(uint8_t value) { return value / 127.5 - 1.0; }

// The prepared value at (c, y, x) equals the source byte at (source_x, source_y).
bool matches_source(const PreparedImage& prepared, const std::vector<uint8_t>& rgb, int64_t width, int64_t c,
                    int64_t y, int64_t x, int64_t source_x, int64_t source_y) {
  const float got = prepared.pixels[c][y][x].item<float>();
  const double want = to_unit(rgb[static_cast<size_t>((source_y * width + source_x) * 3 + c)]);
  return std::fabs(got - want) <= 1e-6;
}

} // namespace

// ----------------------------------------------------------------------------
// Buckets

TEST_CASE(buckets_at_1024_are_kohyas_list) {
  const auto buckets = make_buckets(1024, 64, 256, 2048);
  // kohya's make_bucket_resolutions((1024, 1024), 256, 2048, 64) gives 41 resolutions.
  CHECK(buckets.size() == 41);
  for (auto [w, h] : std::vector<std::pair<int64_t, int64_t>>{
           {1024, 1024}, {896, 1152}, {1152, 896}, {832, 1216}, {1216, 832}, {768, 1344}, {1344, 768},
           {640, 1536},  {1536, 640}, {960, 1088}, {1088, 960}, {256, 2048}, {2048, 256}, {512, 2048}})
    CHECK(contains(buckets, w, h));
  CHECK(!contains(buckets, 1024, 960)); // not the tallest height for width 1024
  CHECK(buckets.front() == (Bucket{256, 2048}));
  CHECK(buckets.back() == (Bucket{2048, 512}));
  for (size_t i = 0; i < buckets.size(); ++i) {
    const Bucket& b = buckets[i];
    CHECK(b.width % 64 == 0 && b.height % 64 == 0);
    CHECK(b.width * b.height <= 1024 * 1024);
    CHECK(b.width >= 256 && b.height >= 256 && b.width <= 2048 && b.height <= 2048);
    CHECK(contains(buckets, b.height, b.width)); // both orientations
    if (i > 0) CHECK(buckets[i - 1] < b);        // sorted, no duplicates
  }
}

TEST_CASE(buckets_for_tiny_resolutions) {
  const auto small = make_buckets(128, 64, 64, 2048);
  CHECK(small.size() == 5);
  const std::vector<Bucket> expected{{64, 192}, {64, 256}, {128, 128}, {192, 64}, {256, 64}};
  CHECK(small == expected);
  // The square is kept even below min_side (kohya), so the trainer's default min 256 still works at 128.
  CHECK((make_buckets(128, 64, 256, 2048) == std::vector<Bucket>{{128, 128}}));
  CHECK((make_buckets(64, 64, 64, 64) == std::vector<Bucket>{{64, 64}}));
  // A resolution that is not a multiple of step rounds the square down.
  CHECK((make_buckets(100, 64, 64, 128) == std::vector<Bucket>{{64, 64}, {64, 128}, {128, 64}}));
}

TEST_CASE(bad_bucket_arguments_are_refused) {
  CHECK_THROWS_WITH(make_buckets(1024, 0, 256, 2048), "bucket_step must be positive");
  CHECK_THROWS_WITH(make_buckets(32, 64, 64, 2048), "resolution (32) must be at least bucket_step (64)");
  CHECK_THROWS_WITH(make_buckets(1024, 64, 100, 2048), "min_bucket_side (100) must be a positive multiple");
  CHECK_THROWS_WITH(make_buckets(1024, 64, 0, 2048), "min_bucket_side (0)");
  CHECK_THROWS_WITH(make_buckets(1024, 64, 256, 2000), "max_bucket_side (2000) must be a positive multiple");
  CHECK_THROWS_WITH(make_buckets(1024, 64, 512, 256), "must be >= min_bucket_side");
  CHECK_THROWS_WITH(make_buckets(1024, 64, 256, 512), "max_bucket_side (512) must be >= resolution (1024)");
}

TEST_CASE(assign_bucket_picks_the_nearest_aspect_ratio) {
  const auto buckets = make_buckets(1024, 64, 256, 2048);
  auto at = [&](int64_t w, int64_t h) { return buckets[assign_bucket(buckets, w, h)]; };
  CHECK(at(1000, 1000) == (Bucket{1024, 1024}));
  CHECK(at(512, 512) == (Bucket{1024, 1024}));
  CHECK(at(1536, 2048) == (Bucket{896, 1152}));  // 3:4 portrait: 0.778 beats 0.684
  CHECK(at(2048, 1536) == (Bucket{1152, 896}));  // 4:3 landscape: 1.286 beats 1.462
  CHECK(at(1920, 1080) == (Bucket{1344, 768}));  // 16:9: 1.75
  CHECK(at(1080, 1920) == (Bucket{768, 1344}));  // 9:16 = 0.5625: 0.571 beats 0.6
}

TEST_CASE(assign_bucket_ties_go_to_the_lower_index) {
  const std::vector<Bucket> two{{64, 128}, {128, 64}}; // ratios 0.5 and 2
  CHECK(assign_bucket(two, 5, 4) == 0);                 // 1.25 is 0.75 from both
  CHECK(assign_bucket(two, 4, 5) == 0);                 // 0.8: 0.3 vs 1.2
  CHECK(assign_bucket(two, 3, 1) == 1);
  // An exact size wins even over an earlier bucket of the same ratio.
  const std::vector<Bucket> same_ratio{{64, 64}, {128, 128}};
  CHECK(assign_bucket(same_ratio, 128, 128) == 1);
  CHECK(assign_bucket(same_ratio, 100, 100) == 0);
  CHECK_THROWS_WITH(assign_bucket({}, 1, 1), "no buckets");
  CHECK_THROWS_WITH(assign_bucket(two, 0, 5), "image size must be positive");
}

TEST_CASE(a_bucket_plan_of_one_resolution_is_make_buckets_and_assign_bucket) {
  const BucketPlan plan(1024, 0, 64, 256, 2048);
  const auto buckets = make_buckets(1024, 64, 256, 2048);
  CHECK(plan.buckets() == buckets);
  for (const auto& [w, h] : std::vector<std::pair<int64_t, int64_t>>{{1000, 1000}, {64, 64}, {1920, 1080}, {1080, 1920}})
    CHECK(plan.assign(w, h) == static_cast<int64_t>(assign_bucket(buckets, w, h))); // small images too: none skipped
}

TEST_CASE(a_multi_resolution_plan_trains_each_image_at_the_largest_tier_it_fills_and_skips_the_smaller) {
  const BucketPlan plan(1024, 512, 64, 256, 2048);
  const auto at = [&](int64_t w, int64_t h) { return plan.buckets()[static_cast<size_t>(plan.assign(w, h))]; };
  CHECK(at(2000, 2000) == (Bucket{1024, 1024})); // above the top tier: the top tier
  CHECK(at(1000, 1000) == (Bucket{960, 960}));   // 1000^2 holds 960^2, not 1024^2: never enlarged
  CHECK(at(700, 700) == (Bucket{640, 640}));
  CHECK(at(512, 512) == (Bucket{512, 512}));
  CHECK(at(1920, 1080) == (Bucket{1344, 768}));  // 1440^2 pixels: the 1024 tier's 16:9 bucket
  CHECK(at(960, 540) == (Bucket{896, 512}));     // 720^2 pixels: the 704 tier, its nearest ratio (1.75)
  CHECK(plan.assign(511, 511) == -1);            // below min_resolution
  CHECK(plan.assign(1024, 200) == -1);           // 452^2 pixels, however long
  // Every tier's buckets, once each, sorted.
  for (int64_t tier = 512; tier <= 1024; tier += 64)
    for (const Bucket& bucket : make_buckets(tier, 64, 256, 2048))
      CHECK(std::count(plan.buckets().begin(), plan.buckets().end(), bucket) == 1);
  CHECK(std::is_sorted(plan.buckets().begin(), plan.buckets().end()));
  CHECK_THROWS_WITH(BucketPlan(1024, 500, 64, 256, 2048), "min_resolution (500) must be a positive multiple of bucket_step");
  CHECK_THROWS_WITH(BucketPlan(1024, 1088, 64, 256, 2048), "min_resolution (1088) must lie between 0 and resolution");
  // Tiers below the smallest bucket side keep their square bucket (make_buckets' rule).
  const BucketPlan tiny(128, 64, 64, 256, 256);
  CHECK(tiny.buckets()[static_cast<size_t>(tiny.assign(100, 100))] == (Bucket{64, 64}));
}

// ----------------------------------------------------------------------------
// Image preparation

TEST_CASE(covering_size_keeps_the_aspect_ratio) {
  CHECK((covering_size(1000, 750, {1152, 896}) == std::make_pair<int64_t, int64_t>(1195, 896))); // kohya: 1195.17
  CHECK((covering_size(750, 1000, {896, 1152}) == std::make_pair<int64_t, int64_t>(896, 1195)));
  CHECK((covering_size(4000, 3000, {1024, 1024}) == std::make_pair<int64_t, int64_t>(1365, 1024))); // 1365.33
  CHECK((covering_size(3, 2, {64, 64}) == std::make_pair<int64_t, int64_t>(96, 64)));
  CHECK((covering_size(64, 64, {64, 64}) == std::make_pair<int64_t, int64_t>(64, 64)));
  CHECK_THROWS_WITH(covering_size(0, 5, {64, 64}), "image size must be positive");
  CHECK_THROWS_WITH(covering_size(5, 5, {0, 64}), "bucket size must be positive");
}

TEST_CASE(an_image_of_the_bucket_size_passes_through) {
  const auto rgb = coordinate_image(64, 128);
  const PreparedImage out = prepare_image(rgb.data(), 64, 128, {64, 128}, false);
  CHECK(out.pixels.sizes() == torch::IntArrayRef({3, 128, 64}));
  CHECK(out.pixels.scalar_type() == torch::kFloat32 && out.pixels.is_contiguous());
  CHECK(out.crop_left == 0 && out.crop_top == 0 && !out.flipped);
  CHECK(out.original_width == 64 && out.original_height == 128);
  bool all = true;
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t y = 0; y < 128; y += 9)
      for (int64_t x = 0; x < 64; x += 5) all = all && matches_source(out, rgb, 64, c, y, x, x, y);
  CHECK(all);
  CHECK_CLOSE(out.pixels[0][0][0].item<float>(), -1.0, 1e-7); // byte 0 -> -1
}

TEST_CASE(center_crop_takes_the_middle_and_records_where) {
  // 257x128 into 128x128: no resampling; margin 129, so 64 left of the window and 65 right.
  const auto rgb = coordinate_image(257, 128);
  const PreparedImage out = prepare_image(rgb.data(), 257, 128, {128, 128}, false);
  CHECK(out.resized_width == 257 && out.resized_height == 128);
  CHECK(out.crop_left == 64 && out.crop_top == 0);
  bool all = true;
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t y = 0; y < 128; y += 7)
      for (int64_t x = 0; x < 128; x += 3) all = all && matches_source(out, rgb, 257, c, y, x, 64 + x, y);
  CHECK(all);

  // Portrait: 100x300 into 64x128 -> 64x192 (downscale), crop_top 32.
  const auto tall = coordinate_image(100, 300);
  const PreparedImage portrait = prepare_image(tall.data(), 100, 300, {64, 128}, false);
  CHECK(portrait.resized_width == 64 && portrait.resized_height == 192);
  CHECK(portrait.crop_left == 0 && portrait.crop_top == 32);
  CHECK(portrait.pixels.sizes() == torch::IntArrayRef({3, 128, 64}));
}

TEST_CASE(flip_mirrors_and_records_crop_left_in_the_mirrored_frame) {
  const auto rgb = coordinate_image(257, 128);
  const PreparedImage out = prepare_image(rgb.data(), 257, 128, {128, 128}, true);
  CHECK(out.flipped);
  CHECK(out.crop_left == 257 - 64 - 128); // 65
  CHECK(out.crop_top == 0);
  // diffusers' DreamBooth SDXL order: mirror the resized image, then crop at crop_left.
  bool all = true;
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t y = 0; y < 128; y += 7)
      for (int64_t x = 0; x < 128; x += 3) {
        const int64_t mirrored_x = out.crop_left + x;      // column in the mirrored resized image
        const int64_t source_x = 257 - 1 - mirrored_x;     // the same column before mirroring
        all = all && matches_source(out, rgb, 257, c, y, x, source_x, y);
      }
  CHECK(all);
  // And it is the unflipped crop, mirrored.
  const PreparedImage plain = prepare_image(rgb.data(), 257, 128, {128, 128}, false);
  CHECK(torch::equal(out.pixels, plain.pixels.flip({2})));
}

TEST_CASE(downscale_keeps_regions_where_they_were) {
  // 512x256: left half red, right half blue -> 256x128, crop_left 64: red then blue halves.
  std::vector<uint8_t> rgb(512 * 256 * 3, 0);
  for (int64_t y = 0; y < 256; ++y)
    for (int64_t x = 0; x < 512; ++x) rgb[static_cast<size_t>((y * 512 + x) * 3 + (x < 256 ? 0 : 2))] = 255;
  const PreparedImage out = prepare_image(rgb.data(), 512, 256, {128, 128}, false);
  CHECK(out.resized_width == 256 && out.resized_height == 128 && out.crop_left == 64);
  const auto red = out.pixels[0], blue = out.pixels[2], green = out.pixels[1];
  CHECK(torch::all(red.narrow(1, 0, 62) == 1).item<bool>());
  CHECK(torch::all(blue.narrow(1, 0, 62) == -1).item<bool>());
  CHECK(torch::all(blue.narrow(1, 66, 62) == 1).item<bool>());
  CHECK(torch::all(red.narrow(1, 66, 62) == -1).item<bool>());
  CHECK(torch::all(green == -1).item<bool>());
  // The boundary is blended, not a hard copy (antialiased), and symmetric.
  CHECK(red[0][63].item<float>() < 1.0f && red[0][63].item<float>() > -1.0f);
  CHECK_CLOSE(red[5][63].item<float>(), blue[5][64].item<float>(), 1e-6);

  const PreparedImage flipped = prepare_image(rgb.data(), 512, 256, {128, 128}, true);
  CHECK(torch::all(flipped.pixels[2].narrow(1, 0, 62) == 1).item<bool>()); // blue now on the left
}

TEST_CASE(upscale_stays_in_range_and_constants_stay_constant) {
  std::vector<uint8_t> gray(10 * 7 * 3, 200);
  const PreparedImage flat = prepare_image(gray.data(), 10, 7, {128, 64}, false);
  CHECK(flat.pixels.sizes() == torch::IntArrayRef({3, 64, 128}));
  CHECK(flat.resized_width == 128 && flat.resized_height == 90 && flat.crop_top == 13);
  CHECK_CLOSE((flat.pixels - (200 / 127.5 - 1)).abs().max().item<float>(), 0.0, 1e-6);

  // A checkerboard overshoots under bicubic; the output is still clamped to [-1, 1].
  std::vector<uint8_t> board(9 * 9 * 3);
  for (size_t i = 0; i < board.size(); ++i) board[i] = ((i / 3) % 2) ? 255 : 0;
  const PreparedImage up = prepare_image(board.data(), 9, 9, {64, 64}, false);
  CHECK(up.pixels.min().item<float>() >= -1.0f && up.pixels.max().item<float>() <= 1.0f);
  CHECK(up.pixels.min().item<float>() == -1.0f && up.pixels.max().item<float>() == 1.0f);
  // Values are whole 8-bit levels.
  const auto levels = (up.pixels + 1) * 127.5;
  CHECK_CLOSE((levels - levels.round()).abs().max().item<float>(), 0.0, 1e-4);
}

TEST_CASE(prepare_image_is_deterministic_and_checks_arguments) {
  const auto rgb = coordinate_image(333, 222);
  const PreparedImage a = prepare_image(rgb.data(), 333, 222, {192, 128}, true);
  const PreparedImage b = prepare_image(rgb.data(), 333, 222, {192, 128}, true);
  CHECK(torch::equal(a.pixels, b.pixels));
  CHECK(a.crop_left == b.crop_left && a.crop_top == b.crop_top);
  CHECK_THROWS_WITH(prepare_image(nullptr, 4, 4, {64, 64}, false), "no pixel data");
  CHECK_THROWS_WITH(prepare_image(rgb.data(), -1, 4, {64, 64}, false), "image size must be positive");
}

// ----------------------------------------------------------------------------
// Batch order

namespace {

// Images 0..6 in buckets 0,0,0,1,1,2,0 (4 + 2 + 1), repeats 3, batches of 2:
// ceil(12/2) + ceil(6/2) + ceil(3/2) = 6 + 3 + 2 = 11 batches per epoch.
const std::vector<size_t> kBuckets{0, 0, 0, 1, 1, 2, 0};

std::vector<std::vector<SampleRef>> take(BatchSampler& sampler, int64_t count) {
  std::vector<std::vector<SampleRef>> out;
  for (int64_t i = 0; i < count; ++i) out.push_back(sampler.next());
  return out;
}

} // namespace

TEST_CASE(every_item_once_per_epoch_in_single_bucket_batches) {
  BatchSampler sampler(kBuckets, 3, 2, true, 42);
  CHECK(sampler.batches_per_epoch() == 11);
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    std::map<int64_t, int> seen;
    std::map<size_t, int> short_batches;
    for (int64_t b = 0; b < sampler.batches_per_epoch(); ++b) {
      CHECK(sampler.state().epoch == epoch && sampler.state().position == b);
      const auto batch = sampler.next();
      CHECK(!batch.empty() && batch.size() <= 2);
      const size_t bucket = kBuckets[static_cast<size_t>(batch[0].image)];
      for (const auto& item : batch) {
        CHECK(kBuckets[static_cast<size_t>(item.image)] == bucket);
        ++seen[item.image];
      }
      if (batch.size() < 2) ++short_batches[bucket];
    }
    CHECK(seen.size() == 7);
    for (const auto& [image, count] : seen) CHECK(count == 3);
    // Only the odd-sized bucket (image 5, 3 items) ends with a short batch.
    CHECK(short_batches.size() == 1 && short_batches[2] == 1);
  }
  CHECK(sampler.state().epoch == 3 && sampler.state().position == 0);
}

TEST_CASE(same_seed_same_order_other_seed_other_order) {
  BatchSampler a(kBuckets, 3, 2, true, 7), b(kBuckets, 3, 2, true, 7), c(kBuckets, 3, 2, true, 8);
  const auto run_a = take(a, 33), run_b = take(b, 33), run_c = take(c, 33);
  CHECK(run_a == run_b);
  CHECK(run_a != run_c);
  // Epochs differ from each other too.
  BatchSampler d(kBuckets, 3, 2, true, 7);
  CHECK(d.epoch_batches(0) != d.epoch_batches(1));
  // epoch_batches(e) is what next() hands out in epoch e.
  const auto epoch2 = d.epoch_batches(2);
  CHECK(std::vector<std::vector<SampleRef>>(run_a.begin() + 22, run_a.begin() + 33) == epoch2);
}

TEST_CASE(flips_follow_random_flip) {
  BatchSampler off(kBuckets, 3, 2, false, 1), on(kBuckets, 3, 2, true, 1);
  int flipped_off = 0, flipped_on = 0, total = 0;
  for (int i = 0; i < 55; ++i) {
    for (const auto& item : off.next()) flipped_off += item.flip;
    for (const auto& item : on.next()) {
      flipped_on += item.flip;
      ++total;
    }
  }
  CHECK(flipped_off == 0);
  CHECK(flipped_on > total / 4 && flipped_on < total * 3 / 4); // 105 coin flips
}

TEST_CASE(restore_resumes_exactly_across_an_epoch_boundary) {
  BatchSampler uninterrupted(kBuckets, 3, 2, true, 1234);
  const auto reference = take(uninterrupted, 30); // epochs 0, 1 and part of 2

  for (int64_t stop : {0, 8, 10, 11, 21, 25}) {
    BatchSampler first(kBuckets, 3, 2, true, 1234);
    take(first, stop);
    const BatchSampler::State saved = first.state();
    CHECK(saved.epoch == stop / 11 && saved.position == stop % 11);

    BatchSampler resumed(kBuckets, 3, 2, true, 1234);
    resumed.restore(saved);
    const auto rest = take(resumed, 30 - stop);
    CHECK(std::vector<std::vector<SampleRef>>(reference.begin() + stop, reference.end()) == rest);
  }

  BatchSampler sampler(kBuckets, 3, 2, true, 1234);
  CHECK_THROWS_WITH(sampler.restore({0, 11}), "outside [0, 11)");
  CHECK_THROWS_WITH(sampler.restore({-1, 0}), "epoch must be >= 0");
}

TEST_CASE(batch_sampler_checks_arguments) {
  CHECK_THROWS_WITH(BatchSampler({}, 1, 1, false, 0), "no training images");
  CHECK_THROWS_WITH(BatchSampler({0}, 0, 1, false, 0), "repeats must be >= 1");
  CHECK_THROWS_WITH(BatchSampler({0}, 1, 0, false, 0), "batch_size must be >= 1");
  BatchSampler single({0}, 1, 4, false, 0);
  CHECK(single.batches_per_epoch() == 1);
  CHECK((single.next() == std::vector<SampleRef>{{0, false}}));
  CHECK(single.state().epoch == 1 && single.state().position == 0);
}

// ----------------------------------------------------------------------------
// PNG

namespace {

// Bit by bit, independent of the writer's table.
uint32_t reference_crc(const std::vector<uint8_t>& bytes) {
  uint32_t crc = 0xFFFFFFFFu;
  for (uint8_t byte : bytes) {
    crc ^= byte;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1)));
  }
  return ~crc;
}

uint32_t reference_adler(const std::vector<uint8_t>& bytes) {
  uint64_t a = 1, b = 0;
  for (uint8_t byte : bytes) {
    a = (a + byte) % 65521;
    b = (b + a) % 65521;
  }
  return static_cast<uint32_t>(b << 16 | a);
}

uint32_t read_u32_be(const std::vector<uint8_t>& bytes, size_t at) {
  return uint32_t{bytes[at]} << 24 | uint32_t{bytes[at + 1]} << 16 | uint32_t{bytes[at + 2]} << 8 | bytes[at + 3];
}

struct Chunk {
  std::string type;
  std::vector<uint8_t> data;
  bool crc_ok = false;
};

// Splits a PNG after its signature into chunks, checking each CRC.
std::vector<Chunk> read_chunks(const std::vector<uint8_t>& png) {
  std::vector<Chunk> chunks;
  size_t at = 8;
  while (at + 12 <= png.size()) {
    const uint32_t length = read_u32_be(png, at);
    if (at + 12 + length > png.size()) break;
    Chunk chunk;
    chunk.type.assign(png.begin() + at + 4, png.begin() + at + 8);
    chunk.data.assign(png.begin() + at + 8, png.begin() + at + 8 + length);
    const std::vector<uint8_t> covered(png.begin() + at + 4, png.begin() + at + 8 + length);
    chunk.crc_ok = reference_crc(covered) == read_u32_be(png, at + 8 + length);
    chunks.push_back(std::move(chunk));
    at += 12 + length;
  }
  CHECK(at == png.size());
  return chunks;
}

// Inflates a zlib stream of stored blocks only; counts blocks; checks header, NLEN and Adler.
std::vector<uint8_t> inflate_stored(const std::vector<uint8_t>& zlib, int& blocks) {
  CHECK(zlib.size() >= 6);
  CHECK((zlib[0] & 0x0F) == 8);                    // CM = deflate
  CHECK((zlib[0] * 256 + zlib[1]) % 31 == 0);      // FCHECK
  CHECK((zlib[1] & 0x20) == 0);                    // no preset dictionary
  std::vector<uint8_t> out;
  size_t at = 2;
  blocks = 0;
  bool final_block = false;
  while (!final_block && at + 5 <= zlib.size()) {
    final_block = zlib[at] & 1;
    CHECK(((zlib[at] >> 1) & 3) == 0); // BTYPE 00: stored
    const size_t length = zlib[at + 1] | zlib[at + 2] << 8;
    const size_t complement = zlib[at + 3] | zlib[at + 4] << 8;
    CHECK((length ^ 0xFFFF) == complement);
    at += 5;
    if (at + length > zlib.size()) break;
    out.insert(out.end(), zlib.begin() + at, zlib.begin() + at + length);
    at += length;
    ++blocks;
  }
  CHECK(final_block);
  CHECK(at + 4 == zlib.size());
  if (at + 4 == zlib.size()) CHECK(read_u32_be(zlib, at) == reference_adler(out));
  return out;
}

std::vector<uint8_t> gradient(int64_t width, int64_t height) {
  std::vector<uint8_t> rgb(static_cast<size_t>(width * height * 3));
  for (int64_t y = 0; y < height; ++y)
    for (int64_t x = 0; x < width; ++x) {
      uint8_t* p = &rgb[static_cast<size_t>((y * width + x) * 3)];
      p[0] = static_cast<uint8_t>(x * 255 / (width - 1));
      p[1] = static_cast<uint8_t>(y * 255 / (height - 1));
      p[2] = static_cast<uint8_t>((x + y) & 0xFF);
    }
  return rgb;
}

std::vector<uint8_t> bytes_of(const std::string& text) { return std::vector<uint8_t>(text.begin(), text.end()); }

} // namespace

TEST_CASE(crc32_and_adler32_known_values) {
  const auto digits = bytes_of("123456789");
  CHECK(crc32(digits.data(), digits.size()) == 0xCBF43926u); // the CRC-32 check value
  const auto iend = bytes_of("IEND");
  CHECK(crc32(iend.data(), iend.size()) == 0xAE426082u); // every PNG's last four bytes
  const auto wiki = bytes_of("Wikipedia");
  CHECK(adler32(wiki.data(), wiki.size()) == 0x11E60398u);
  CHECK(crc32(nullptr, 0) == 0 && adler32(nullptr, 0) == 1);
  // Continuing over a split gives the whole; long inputs match the naive reference.
  std::vector<uint8_t> big(100000);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<uint8_t>(i * 2654435761u >> 13);
  CHECK(crc32(big.data() + 40000, 60000, crc32(big.data(), 40000)) == reference_crc(big));
  CHECK(adler32(big.data() + 40000, 60000, adler32(big.data(), 40000)) == reference_adler(big));
  CHECK(adler32(big.data(), big.size()) == reference_adler(big));
}

TEST_CASE(png_round_trips_through_an_independent_reader) {
  const int64_t width = 200, height = 120; // 72120 raw bytes: two stored blocks
  const auto rgb = gradient(width, height);
  const auto png = encode_png(width, height, rgb);
  const uint8_t signature[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  CHECK(png.size() > 8 && std::equal(signature, signature + 8, png.begin()));

  const auto chunks = read_chunks(png);
  CHECK(chunks.size() == 3);
  if (chunks.size() != 3) return;
  CHECK(chunks[0].type == "IHDR" && chunks[1].type == "IDAT" && chunks[2].type == "IEND");
  for (const auto& chunk : chunks) CHECK(chunk.crc_ok);
  const auto& ihdr = chunks[0].data;
  CHECK(ihdr.size() == 13);
  CHECK(read_u32_be(ihdr, 0) == width && read_u32_be(ihdr, 4) == height);
  CHECK(ihdr[8] == 8 && ihdr[9] == 2 && ihdr[10] == 0 && ihdr[11] == 0 && ihdr[12] == 0);
  CHECK(chunks[2].data.empty());

  int blocks = 0;
  const auto raw = inflate_stored(chunks[1].data, blocks);
  CHECK(blocks == 2);
  const size_t row = width * 3 + 1;
  CHECK(raw.size() == row * height);
  if (raw.size() != row * height) return;
  bool same = true;
  for (int64_t y = 0; y < height; ++y) {
    same = same && raw[y * row] == 0; // filter type None
    same = same && std::equal(raw.begin() + y * row + 1, raw.begin() + (y + 1) * row, rgb.begin() + y * width * 3);
  }
  CHECK(same);

  // A 1x1 image is one block; an exact 65535-byte stream is still one block.
  int one = 0;
  inflate_stored(read_chunks(encode_png(1, 1, {1, 2, 3}))[1].data, one);
  CHECK(one == 1);
  const int64_t exact_width = 1456, exact_height = 15; // 15 rows of 3 * 1456 + 1 bytes
  CHECK((exact_width * 3 + 1) * exact_height == 65535);
  int exact = 0;
  inflate_stored(read_chunks(encode_png(exact_width, exact_height, gradient(exact_width, exact_height)))[1].data,
                 exact);
  CHECK(exact == 1);
}

TEST_CASE(write_png_writes_atomically) {
  const auto rgb = gradient(33, 17);
  const std::string path = scratch_path("gradient.png");
  write_png(path, 33, 17, rgb);
  std::ifstream file(path, std::ios::binary);
  const std::vector<uint8_t> written((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  CHECK(written == encode_png(33, 17, rgb));
  CHECK(!std::filesystem::exists(path + ".tmp"));
  write_png(path, 1, 1, {9, 9, 9}); // replaces the earlier file
  CHECK(std::filesystem::file_size(path) == encode_png(1, 1, {9, 9, 9}).size());

  CHECK_THROWS_WITH(write_png(scratch_path("missing/dir/x.png"), 1, 1, {0, 0, 0}), "missing/dir/x.png.tmp");
  CHECK_THROWS_WITH(encode_png(2, 2, {0, 0, 0}), "expected 12 RGB bytes for 2x2, got 3");
  CHECK_THROWS_WITH(encode_png(0, 2, {}), "size must be");
}

SDXL_TEST_MAIN()

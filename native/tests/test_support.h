// Helpers several C++ tests share, on top of check.h: the tiny-sdxl fixture's
// folders, its golden tensors and models loaded from it, a scratch folder for
// files a test writes (the fixtures are read-only), a tensor difference and
// learnable training images.
//
//   #include "check.h"
//   #include "test_support.h"
//   auto unet = sdxl::test::load_tiny_unet();
//   CHECK_CLOSE(sdxl::test::max_abs_diff(sdxl::test::run_golden_unet(unet), golden().at("unet.out.sample")), 0, 1e-4);
#pragma once

#include "check.h" // fixtures_dir

#include "io/safetensors.h"    // load_safetensors, TensorMap
#include "models/clip.h"       // ClipTextModel
#include "models/configs.h"    // UNetConfig, ClipTextConfig
#include "models/state_dict.h" // load_state_dict
#include "models/unet.h"       // UNet2DConditionModel
#include "sdxl/engine.h"       // TrainImage

#include <torch/torch.h>

#include <unistd.h> // getpid: a scratch folder per test process

#include <filesystem> // the scratch folder
#include <fstream>    // read_bytes
#include <iterator>   // std::istreambuf_iterator
#include <limits>     // infinity
#include <random>     // training image patterns
#include <string>
#include <system_error> // std::error_code

namespace sdxl::test {

// ----------------------------------------------------------------------------
// Fixtures

inline std::string tiny_dir() { return fixtures_dir() + "/tiny-sdxl"; }
inline std::string golden_dir() { return fixtures_dir() + "/tiny-sdxl-golden"; }

// golden.safetensors: what diffusers / transformers computed from tiny-sdxl, read once.
inline const io::TensorMap& golden() {
  static const io::TensorMap tensors = io::load_safetensors(golden_dir() + "/golden.safetensors");
  return tensors;
}

// The tiny UNet in float32 on the CPU, with the fixture's weights.
inline models::UNet2DConditionModel load_tiny_unet() {
  models::UNet2DConditionModel unet(models::UNetConfig::from_file(tiny_dir() + "/unet/config.json"), torch::kFloat);
  models::load_state_dict(*unet, io::load_safetensors(tiny_dir() + "/unet/diffusion_pytorch_model.safetensors"), "unet");
  return unet;
}

// "text_encoder" or "text_encoder_2" of tiny-sdxl in float32 on the CPU.
inline models::ClipTextModel load_text_encoder(const std::string& folder) {
  models::ClipTextModel model(models::ClipTextConfig::from_file(tiny_dir() + "/" + folder + "/config.json"),
                              torch::kFloat);
  models::load_state_dict(*model, io::load_safetensors(tiny_dir() + "/" + folder + "/model.safetensors"), folder);
  return model;
}

// The UNet on the golden inputs (no grad): compare with golden().at("unet.out.sample").
inline torch::Tensor run_golden_unet(models::UNet2DConditionModel& unet) {
  torch::NoGradGuard no_grad;
  return unet->forward(golden().at("unet.in.sample"), golden().at("unet.in.timestep"),
                       golden().at("unet.in.encoder_hidden_states"), golden().at("unet.in.text_embeds"),
                       golden().at("unet.in.time_ids")); // [1, 4, 16, 16]
}

// ----------------------------------------------------------------------------
// Comparisons

// max |a - b| in float64; infinity when either is undefined or the shapes differ.
inline double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  if (!a.defined() || !b.defined() || a.sizes() != b.sizes()) return std::numeric_limits<double>::infinity();
  return (a.detach().cpu().to(torch::kDouble) - b.detach().cpu().to(torch::kDouble)).abs().max().item<double>();
}

// ----------------------------------------------------------------------------
// Training images

// A few distinct, learnable pictures: a coloured disc on a two-tone background.
inline std::vector<TrainImage> make_images(int64_t count, int64_t width, int64_t height) {
  std::vector<TrainImage> images;
  std::mt19937 random(7);
  for (int64_t i = 0; i < count; ++i) {
    TrainImage image;
    image.name = "image-" + std::to_string(i) + ".png";
    image.width = width;
    image.height = height;
    image.caption = "a photo of sks toy";
    image.rgb.resize(width * height * 3);
    const int64_t cx = width / 4 + static_cast<int64_t>(random() % (width / 2));
    const int64_t cy = height / 4 + static_cast<int64_t>(random() % (height / 2));
    const int64_t r = std::min(width, height) / 4;
    for (int64_t y = 0; y < height; ++y) {
      for (int64_t x = 0; x < width; ++x) {
        const bool disc = (x - cx) * (x - cx) + (y - cy) * (y - cy) < r * r;
        uint8_t* px = &image.rgb[(y * width + x) * 3];
        px[0] = disc ? 220 : static_cast<uint8_t>(y < height / 2 ? 30 : 90);
        px[1] = disc ? 40 : static_cast<uint8_t>(60 + i * 20);
        px[2] = disc ? 60 : 160;
      }
    }
    images.push_back(std::move(image));
  }
  return images;
}

// A key table ({"keys": {name: shape}}, the *-base-keys fixtures) as meta tensors:
// shapes without memory (a full-size SDXL UNet holds 2.6e9 weights).
inline io::TensorMap meta_tensors(const std::string& path) {
  io::TensorMap tensors;
  const nlohmann::json keys = models::read_json_file(path).at("keys");
  for (auto entry = keys.begin(); entry != keys.end(); ++entry)
    tensors[entry.key()] = torch::empty(entry->get<std::vector<int64_t>>(), torch::TensorOptions().device(torch::kMeta));
  return tensors;
}

// ----------------------------------------------------------------------------
// Scratch files

// `name` inside this test process's scratch folder (temp dir, "sdxl_test_<pid>"),
// created on first use and removed with its contents when the process exits.
inline std::string scratch_path(const std::string& name) {
  static const struct ScratchDir {
    std::filesystem::path path =
        std::filesystem::temp_directory_path() / ("sdxl_test_" + std::to_string(::getpid()));
    ScratchDir() { std::filesystem::create_directories(path); }
    ~ScratchDir() {
      std::error_code ignored;
      std::filesystem::remove_all(path, ignored);
    }
  } dir;
  return (dir.path / name).string();
}

// An empty folder `name` in the scratch folder (emptied if an earlier case used it).
inline std::filesystem::path fresh_dir(const std::string& name) {
  const std::filesystem::path dir = scratch_path(name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// A metrics models folder in the operator's layout (inception/, lpips/, clip/, hps/), of
// links to the fixtures' tiny networks (fixtures/metrics/README.md).
inline std::string metrics_models_dir() {
  static const std::string dir = [] {
    const std::filesystem::path root = fresh_dir("metrics-models");
    const std::filesystem::path metrics = std::filesystem::absolute(fixtures_dir() + "/metrics");
    for (const auto& [link, target] : std::vector<std::pair<std::string, std::string>>{
             {"inception", "inception"}, {"lpips", "lpips"}, {"clip", "clip-tiny"}, {"hps", "openclip-tiny"}})
      std::filesystem::create_directory_symlink(metrics / target, root / link);
    return root.string();
  }();
  return dir;
}

// A file's bytes (byte-identical outputs of interrupted and uninterrupted runs).
inline std::string read_bytes(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(file), {});
}

} // namespace sdxl::test

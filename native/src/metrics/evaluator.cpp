// The evaluator (evaluator.h): the metrics over the networks of a metrics models folder.
#include "metrics/evaluator.h"

#include <ATen/CPUGeneratorImpl.h> // at::detail::createCPUGenerator

#include <algorithm>  // std::min
#include <cmath>      // std::isfinite
#include <filesystem> // network files
#include <stdexcept>  // std::invalid_argument

#include "metrics/clip_model.h" // ClipModel, load_clip_model
#include "metrics/inception.h"  // load_fid_inception, inception_input
#include "metrics/lpips.h"      // load_lpips, lpips_input
#include "metrics/open_clip.h"  // OpenClipModel, load_open_clip
#include "metrics/statistics.h" // frechet_distance, kernel_inception_distance, inception_score

namespace sdxl::metrics {

namespace {

namespace fs = std::filesystem;

constexpr int64_t kInceptionBatch = 16;  // images per Inception forward
constexpr int64_t kLpipsBatch = 8;       // pairs per LPIPS forward
constexpr int64_t kKidSubsets = 100;     // torchmetrics' defaults
constexpr int64_t kKidMaxSubsetSize = 1000;
constexpr int64_t kMaxIsSplits = 10;
constexpr int64_t kMinIsImages = 4;     // two splits of two

struct NetworkFiles {
  const char* folder;
  std::vector<const char*> files;
};

// What each network's folder must hold.
const std::map<std::string, NetworkFiles>& network_files() {
  static const std::map<std::string, NetworkFiles> files = {
      {"clip", {"clip", {"config.json", "model.safetensors", "preprocessor_config.json"}}},
      {"hps", {"hps", {"open_clip_config.json", "open_clip_model.safetensors"}}},
      {"inception", {"inception", {"model.safetensors"}}},
      {"lpips", {"lpips", {"model.safetensors"}}},
  };
  return files;
}

// Why a network's files are not there; empty when they are.
std::string missing_files(const std::string& models_dir, const std::string& network) {
  if (models_dir.empty()) return "no metrics models folder is configured";
  const NetworkFiles& needed = network_files().at(network);
  for (const char* file : needed.files) {
    const fs::path path = fs::path(models_dir) / needed.folder / file;
    if (!fs::is_regular_file(path)) return std::string("no ") + needed.folder + "/" + file + " in the metrics models folder";
  }
  return {};
}

torch::Tensor normalized(const torch::Tensor& x) { return x / x.norm(2, -1, true); }

} // namespace

const std::vector<std::string>& metric_names() {
  static const std::vector<std::string> names = {"clip_t", "clip_i", "hps", "lpips", "fid", "kid", "is"};
  return names;
}

std::string metric_network(const std::string& metric) {
  if (metric == "clip_t" || metric == "clip_i") return "clip";
  if (metric == "hps") return "hps";
  if (metric == "lpips") return "lpips";
  if (metric == "fid" || metric == "kid" || metric == "is") return "inception";
  throw std::invalid_argument("unknown metric \"" + metric + "\" (one of clip_t, clip_i, hps, lpips, fid, kid, is)");
}

std::vector<MetricNetworkStatus> metric_network_status(const std::string& models_dir) {
  std::vector<MetricNetworkStatus> statuses;
  for (const std::string& metric : metric_names()) {
    MetricNetworkStatus status{metric, metric_network(metric), false, ""};
    status.reason = missing_files(models_dir, status.network);
    status.available = status.reason.empty();
    statuses.push_back(status);
  }
  return statuses;
}

// ----------------------------------------------------------------------------
// Networks, loaded on first use

Evaluator::Evaluator(std::string models_dir, torch::Device device, uint64_t seed)
    : models_dir_(std::move(models_dir)), device_(device), seed_(seed) {}

Evaluator::~Evaluator() = default;

template <typename T, typename Load>
T* Evaluator::lazily(std::shared_ptr<T>& slot, std::optional<std::string>& failure, const std::string& network,
                     std::string& why, Load load) {
  if (!slot && !failure) {
    const std::string missing = missing_files(models_dir_, network);
    if (!missing.empty()) {
      failure = missing;
    } else {
      try {
        slot = load((fs::path(models_dir_) / network_files().at(network).folder).string());
      } catch (const std::exception& error) {
        failure = std::string("the ") + network + " network does not load: " + error.what();
      }
    }
  }
  if (failure) why = *failure;
  return slot.get();
}

ClipModel* Evaluator::clip(std::string& why) {
  return lazily(clip_, clip_failure_, "clip", why,
                [&](const std::string& dir) { return std::make_shared<ClipModel>(load_clip_model(dir, device_)); });
}

OpenClipModel* Evaluator::open_clip(std::string& why) {
  return lazily(open_clip_, open_clip_failure_, "hps", why,
                [&](const std::string& dir) { return std::make_shared<OpenClipModel>(load_open_clip(dir, device_)); });
}

FidInceptionV3Impl* Evaluator::inception(std::string& why) {
  return lazily(inception_, inception_failure_, "inception", why,
                [&](const std::string& dir) { return load_fid_inception(dir + "/model.safetensors", device_); });
}

LpipsImpl* Evaluator::lpips(std::string& why) {
  return lazily(lpips_, lpips_failure_, "lpips", why,
                [&](const std::string& dir) { return load_lpips(dir + "/model.safetensors", device_); });
}

torch::Tensor image_tensor(const TrainImage& image) {
  if (image.width <= 0 || image.height <= 0 ||
      image.rgb.size() != static_cast<size_t>(image.width * image.height * 3))
    throw std::invalid_argument("image \"" + image.name + "\": expected " + std::to_string(image.width) + "x" +
                                std::to_string(image.height) + "x3 bytes, got " + std::to_string(image.rgb.size()));
  return torch::from_blob(const_cast<uint8_t*>(image.rgb.data()), {image.height, image.width, 3}, torch::kUInt8)
      .permute({2, 0, 1})
      .clone(); // [3, H, W]
}

void Evaluator::set_references(std::vector<torch::Tensor> images) {
  references_ = std::move(images);
  reference_clip_ = torch::Tensor();
  reference_inception_ = torch::Tensor();
}

// ----------------------------------------------------------------------------
// Scoring

namespace {

// Pool features (float64) and unbiased logits of images of any sizes.
InceptionFeatures inception_features(FidInceptionV3Impl& network, const std::vector<torch::Tensor>& images,
                                     const torch::Device& device) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> pools, logits;
  for (size_t start = 0; start < images.size(); start += kInceptionBatch) {
    std::vector<torch::Tensor> inputs;
    for (size_t i = start; i < std::min(images.size(), start + kInceptionBatch); ++i)
      inputs.push_back(inception_input(images[i].unsqueeze(0))); // [1, 3, 299, 299]
    const InceptionFeatures features = network.forward(torch::cat(inputs).to(device));
    pools.push_back(features.pool.to(torch::kCPU, torch::kFloat64));
    logits.push_back(features.logits_unbiased.to(torch::kCPU, torch::kFloat64));
  }
  InceptionFeatures all;
  all.pool = torch::cat(pools);                // [N, 2048]
  all.logits_unbiased = torch::cat(logits);    // [N, 1008]
  return all;
}

} // namespace

Scores Evaluator::score(const std::vector<ScoredImage>& images, const std::vector<std::string>& metrics) {
  Scores scores;
  for (const std::string& metric : metrics) metric_network(metric); // unknown names throw before any work
  std::vector<torch::Tensor> pixels;
  for (const ScoredImage& image : images) pixels.push_back(image.rgb);
  const auto n = static_cast<int64_t>(images.size());
  const auto r = static_cast<int64_t>(references_.size());
  auto wants = [&](const char* name) { return std::find(metrics.begin(), metrics.end(), name) != metrics.end(); };
  auto unavailable = [&](const std::string& metric, const std::string& why) { scores.unavailable[metric] = why; };
  scores.values["images"] = static_cast<double>(n);
  if (n == 0) {
    for (const std::string& metric : metrics) unavailable(metric, "no images");
    return scores;
  }

  // Prompts, one per image; images without one are left out of clip_t and hps.
  std::vector<int64_t> prompted;
  std::vector<std::string> prompts;
  for (int64_t i = 0; i < n; ++i) {
    if (images[i].prompt.empty()) continue;
    prompted.push_back(i);
    prompts.push_back(images[i].prompt);
  }

  // CLIP: clip_t, clip_i
  if (wants("clip_t") || wants("clip_i")) {
    std::string why;
    ClipModel* model = clip(why);
    if (model == nullptr) {
      for (const char* metric : {"clip_t", "clip_i"})
        if (wants(metric)) unavailable(metric, why);
    } else {
      const torch::Tensor embeds = normalized(model->image_embeds(pixels).to(torch::kFloat64)); // [N, P]
      if (wants("clip_t")) {
        if (prompted.empty()) {
          unavailable("clip_t", "no image has a prompt");
        } else {
          const torch::Tensor text = normalized(model->text_embeds(prompts).to(torch::kFloat64)); // [M, P]
          const torch::Tensor cos = (embeds.index_select(0, torch::tensor(prompted)) * text).sum(-1); // [M]
          scores.values["clip_t"] = std::max(100.0 * cos.mean().item<double>(), 0.0);
        }
      }
      if (wants("clip_i")) {
        if (r == 0) {
          unavailable("clip_i", "no reference images");
        } else {
          if (!reference_clip_.defined()) reference_clip_ = normalized(model->image_embeds(references_).to(torch::kFloat64));
          scores.values["clip_i"] = embeds.matmul(reference_clip_.t()).mean().item<double>();
          scores.values["reference_images"] = static_cast<double>(r);
        }
      }
    }
  }

  // OpenCLIP: hps
  if (wants("hps")) {
    std::string why;
    OpenClipModel* model = prompted.empty() ? nullptr : open_clip(why);
    if (prompted.empty()) {
      unavailable("hps", "no image has a prompt");
    } else if (model == nullptr) {
      unavailable("hps", why);
    } else {
      std::vector<torch::Tensor> subset;
      for (int64_t i : prompted) subset.push_back(pixels[i]);
      const torch::Tensor image = normalized(model->image_features(subset).to(torch::kFloat64));
      const torch::Tensor text = normalized(model->text_features(prompts).to(torch::kFloat64));
      scores.values["hps"] = (image * text).sum(-1).mean().item<double>();
    }
  }

  // LPIPS among the images of each prompt (same size only)
  if (wants("lpips")) {
    std::vector<std::pair<int64_t, int64_t>> pairs;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = i + 1; j < n; ++j)
        if (images[i].prompt == images[j].prompt && pixels[i].sizes() == pixels[j].sizes()) pairs.emplace_back(i, j);
    std::string why;
    LpipsImpl* network = pairs.empty() ? nullptr : lpips(why);
    if (pairs.empty()) {
      unavailable("lpips", "needs at least two images of one prompt");
    } else if (network == nullptr) {
      unavailable("lpips", why);
    } else {
      torch::NoGradGuard no_grad;
      double total = 0;
      for (size_t start = 0; start < pairs.size(); start += kLpipsBatch) {
        std::vector<torch::Tensor> first, second;
        for (size_t p = start; p < std::min(pairs.size(), start + kLpipsBatch); ++p) {
          first.push_back(pixels[pairs[p].first]);
          second.push_back(pixels[pairs[p].second]);
        }
        const LpipsResult result = network->forward(lpips_input(torch::stack(first)).to(device_),
                                                    lpips_input(torch::stack(second)).to(device_));
        total += result.distance.to(torch::kCPU, torch::kFloat64).sum().item<double>();
      }
      scores.values["lpips"] = total / static_cast<double>(pairs.size());
      scores.values["lpips_pairs"] = static_cast<double>(pairs.size());
    }
  }

  // Inception: fid, kid, is
  const bool distribution = wants("fid") || wants("kid");
  if (distribution || wants("is")) {
    std::string why;
    FidInceptionV3Impl* network = inception(why);
    if (network == nullptr) {
      for (const char* metric : {"fid", "kid", "is"})
        if (wants(metric)) unavailable(metric, why);
    } else {
      const InceptionFeatures generated = inception_features(*network, pixels, device_);
      if (distribution) {
        std::string too_few;
        if (n < 2) too_few = "needs at least 2 images (has " + std::to_string(n) + ")";
        else if (r < 2) too_few = "needs at least 2 reference images (has " + std::to_string(r) + ")";
        if (!too_few.empty()) {
          for (const char* metric : {"fid", "kid"})
            if (wants(metric)) unavailable(metric, too_few);
        } else {
          if (!reference_inception_.defined()) reference_inception_ = inception_features(*network, references_, device_).pool;
          scores.values["reference_images"] = static_cast<double>(r);
          if (wants("fid")) scores.values["fid"] = frechet_distance(reference_inception_, generated.pool);
          if (wants("kid")) {
            const int64_t subset_size = std::min({kKidMaxSubsetSize, n, r});
            auto generator = at::detail::createCPUGenerator(seed_);
            const torch::Tensor subsets = kid_subsets(r, n, kKidSubsets, subset_size, generator);
            const MeanAndSpread kid = kernel_inception_distance(reference_inception_, generated.pool, subsets);
            scores.values["kid"] = kid.mean;
            scores.values["kid_std"] = kid.std;
            scores.values["kid_subsets"] = static_cast<double>(kKidSubsets);
            scores.values["kid_subset_size"] = static_cast<double>(subset_size);
          }
        }
      }
      if (wants("is")) {
        if (n < kMinIsImages) {
          unavailable("is", "needs at least " + std::to_string(kMinIsImages) + " images (has " + std::to_string(n) + ")");
        } else {
          const int64_t splits = std::min(kMaxIsSplits, n / 2);
          auto generator = at::detail::createCPUGenerator(seed_ + 1);
          const torch::Tensor permutation = torch::randperm(n, generator, torch::kLong);
          const MeanAndSpread is = inception_score(generated.logits_unbiased, permutation, splits);
          scores.values["is"] = is.mean;
          scores.values["is_std"] = is.std;
          scores.values["is_splits"] = static_cast<double>(splits);
        }
      }
    }
  }
  // Never a NaN or infinity in a result (JSON cannot carry them): such a metric is unavailable.
  for (auto entry = scores.values.begin(); entry != scores.values.end();) {
    if (std::isfinite(entry->second)) {
      ++entry;
    } else {
      scores.unavailable[entry->first] = "not a finite number on these images";
      entry = scores.values.erase(entry);
    }
  }
  return scores;
}

} // namespace sdxl::metrics

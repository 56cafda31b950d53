// Scores a set of generated images with the quality metrics of issue 25, loading each
// metric's network from a metrics models folder the first time a metric needs it:
//   clip_t  torchmetrics' CLIPScore: max(100 * mean cos(image, its prompt), 0)      clip/
//   clip_i  DreamBooth's CLIP-I: mean cosine of every (image, reference image) pair   clip/
//   hps     HPSv2's score: mean cosine of OpenCLIP image and prompt features          hps/
//   lpips   DreamBooth's DIV: mean LPIPS over pairs of images with one prompt         lpips/
//   fid     FID of the images against the references (float64)                       inception/
//   kid     KID (mean; kid_std), seeded subsets                                        inception/
//   is      Inception Score (mean; is_std) over min(10, n/2) splits of a seeded permutation inception/
// A metric that cannot be computed (no network, a network that does not load, too few
// images, no prompts) is reported unavailable with the reason; it never throws.
#pragma once

#include <cstdint> // uint64_t
#include <map>
#include <memory>  // std::shared_ptr
#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h> // torch::Tensor, torch::Device

#include "sdxl/engine.h" // TrainImage

namespace sdxl::metrics {

class FidInceptionV3Impl;
class LpipsImpl;
struct ClipModel;
struct OpenClipModel;

// Every metric, in the order results list them.
const std::vector<std::string>& metric_names();

// The folder under the metrics models folder a metric's network lives in ("clip", ...);
// throws std::invalid_argument for an unknown metric.
std::string metric_network(const std::string& metric);

// Whether a metric's network files are present (not whether they load).
struct MetricNetworkStatus {
  std::string metric;
  std::string network;
  bool available = false;
  std::string reason; // empty when available
};
std::vector<MetricNetworkStatus> metric_network_status(const std::string& models_dir);

// A decoded image as [3, H, W] uint8; std::invalid_argument naming it when its buffer
// does not hold width * height * 3 bytes.
torch::Tensor image_tensor(const TrainImage& image);

struct ScoredImage {
  torch::Tensor rgb;  // [3, H, W] uint8
  std::string prompt; // what it was made from; empty when unknown
};

struct Scores {
  std::map<std::string, double> values;           // metric -> value, plus images, kid_std, ...
  std::map<std::string, std::string> unavailable; // metric -> why it was not computed
};

class Evaluator {
 public:
  // `seed` draws KID's subsets and the Inception Score's permutation.
  Evaluator(std::string models_dir, torch::Device device, uint64_t seed);
  ~Evaluator();

  // The images generated images are compared with (clip_i, fid, kid): [3, H, W] uint8 each.
  // Their features are computed once, when a metric first needs them.
  void set_references(std::vector<torch::Tensor> images);

  Scores score(const std::vector<ScoredImage>& images, const std::vector<std::string>& metrics);

 private:
  ClipModel* clip(std::string& why);
  OpenClipModel* open_clip(std::string& why);
  FidInceptionV3Impl* inception(std::string& why);
  LpipsImpl* lpips(std::string& why);
  // Runs `load` once; later calls return its result or its error.
  template <typename T, typename Load>
  T* lazily(std::shared_ptr<T>& slot, std::optional<std::string>& failure, const std::string& network,
            std::string& why, Load load);

  std::string models_dir_;
  torch::Device device_;
  uint64_t seed_;
  std::vector<torch::Tensor> references_;
  torch::Tensor reference_clip_;      // [R, projection], normalised
  torch::Tensor reference_inception_; // [R, 2048] float64
  std::shared_ptr<ClipModel> clip_;
  std::shared_ptr<OpenClipModel> open_clip_;
  std::shared_ptr<FidInceptionV3Impl> inception_;
  std::shared_ptr<LpipsImpl> lpips_;
  std::optional<std::string> clip_failure_, open_clip_failure_, inception_failure_, lpips_failure_;
};

} // namespace sdxl::metrics

// evaluate() and metric_networks() (engine.h): the public face of metrics/evaluator.h.
#include "sdxl/engine.h"

#include <stdexcept> // std::invalid_argument

#include "engine/runtime.h"    // parse_device
#include "metrics/evaluator.h" // Evaluator, metric_network_status, image_tensor

namespace sdxl {

std::vector<MetricNetwork> metric_networks(const std::string& models_dir) {
  std::vector<MetricNetwork> networks;
  for (const metrics::MetricNetworkStatus& status : metrics::metric_network_status(models_dir))
    networks.push_back(MetricNetwork{status.metric, status.network, status.available, status.reason});
  return networks;
}

EvaluateResult evaluate(const EvaluateOptions& options, const ProgressFn& progress, const CancelFlag& cancel) {
  for (const std::string& metric : options.metrics) metrics::metric_network(metric); // unknown names throw
  check_runtime(RuntimeOptions{options.device, "float32"});
  const torch::Device device = parse_device(options.device);
  std::vector<metrics::ScoredImage> images;
  for (const TrainImage& image : options.images) images.push_back({metrics::image_tensor(image), image.caption});
  std::vector<torch::Tensor> references;
  for (const TrainImage& image : options.references) references.push_back(metrics::image_tensor(image));
  throw_if_cancelled(cancel);
  if (progress) progress(Progress("scoring", 0, 1));
  metrics::Evaluator evaluator(options.models_dir, device, options.seed);
  evaluator.set_references(std::move(references));
  const metrics::Scores scores = evaluator.score(images, options.metrics);
  if (progress) progress(Progress("scoring", 1, 1));
  return EvaluateResult{scores.values, scores.unavailable};
}

} // namespace sdxl

// Times what each quality metric adds to a validation step (metrics/evaluator.h): for
// each metric alone, the first scoring of a set (which loads its network and computes
// the references' features) and a later one (what every further validation costs):
//
//   bench_metrics [--models <folder>] [--images 16] [--size 64] [--references 8] [--device cpu|cuda]
//
// --models is a metrics models folder (inception/, lpips/, clip/, hps/); by default one
// of links to the fixtures' tiny networks is made. Images are random pixels of --size
// squared, one prompt per 4 images (so lpips has pairs). Prints a table, then one JSON line.
#include "bench_common.h" // run_main, parse_arguments_or_help, parse_count, parse_bench_device

#include <nlohmann/json.hpp> // the summary line
#include <torch/torch.h>

#include <chrono>
#include <cstdio>     // std::printf
#include <cstdlib>    // std::getenv
#include <filesystem> // the folder of links
#include <unistd.h>   // getpid
#include <string>
#include <vector>

#include "metrics/evaluator.h" // Evaluator, metric_names

using namespace sdxl;

namespace {

const char* const kUsage =
    "usage: bench_metrics [--models <folder>] [--images 16] [--size 64] [--references 8] [--device cpu|cuda]\n";

std::vector<torch::Tensor> random_images(int64_t count, int64_t side) {
  std::vector<torch::Tensor> images;
  for (int64_t i = 0; i < count; ++i) images.push_back(torch::randint(0, 256, {3, side, side}, torch::kUInt8));
  return images;
}

// A models folder of links to the fixtures' networks.
std::string fixture_models() {
  const char* fixtures = std::getenv("SDXL_FIXTURES_DIR");
  const std::filesystem::path metrics = std::filesystem::absolute(std::string(fixtures ? fixtures : "../shared/fixtures") + "/metrics");
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / ("bench-metrics-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  for (const auto& [link, target] : std::vector<std::pair<std::string, std::string>>{
           {"inception", "inception"}, {"lpips", "lpips"}, {"clip", "clip-tiny"}, {"hps", "openclip-tiny"}})
    std::filesystem::create_directory_symlink(metrics / target, dir / link);
  return dir.string();
}

double time_ms(const std::function<void()>& work, const torch::Device& device) {
  const auto start = std::chrono::steady_clock::now();
  work();
  if (device.is_cuda()) torch::cuda::synchronize();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

int run(int argc, char** argv) {
  const auto values = bench::parse_arguments_or_help(argc, argv, {}, kUsage);
  bench::require_known_options(values, {"models", "images", "size", "references", "device"});
  const auto value = [&](const std::string& name, const std::string& fallback) { return bench::option_or(values, name, fallback); };
  const bool own_folder = values.count("models") == 0;
  const std::string models = own_folder ? fixture_models() : value("models", "");
  const int64_t count = bench::parse_count("images", value("images", "16"), 2);
  const int64_t side = bench::parse_count("size", value("size", "64"), 16);
  const int64_t reference_count = bench::parse_count("references", value("references", "8"), 2);
  const torch::Device device = bench::parse_bench_device(value("device", "cpu"));

  torch::manual_seed(0);
  std::vector<metrics::ScoredImage> images;
  for (int64_t i = 0; i < count; ++i)
    images.push_back({random_images(1, side)[0], "a photo of sks toy, variation " + std::to_string(i / 4)});
  const std::vector<torch::Tensor> references = random_images(reference_count, side);

  std::printf("bench_metrics: %lld images and %lld references at %lldx%lld on %s, networks in %s\n",
              static_cast<long long>(count), static_cast<long long>(reference_count), static_cast<long long>(side),
              static_cast<long long>(side), device.str().c_str(), models.c_str());
  std::printf("  %-8s %14s %14s\n", "metric", "first (ms)", "later (ms)");
  nlohmann::json summary = {{"bench", "metrics"}, {"images", count}, {"references", reference_count},
                            {"size", side}, {"device", device.str()}, {"metrics", nlohmann::json::object()}};
  for (const std::string& metric : metrics::metric_names()) {
    metrics::Evaluator evaluator(models, device, 0);
    evaluator.set_references(references);
    metrics::Scores scores;
    const double first = time_ms([&] { scores = evaluator.score(images, {metric}); }, device);
    if (scores.unavailable.count(metric) != 0) {
      std::printf("  %-8s unavailable: %s\n", metric.c_str(), scores.unavailable.at(metric).c_str());
      continue;
    }
    const double later = time_ms([&] { evaluator.score(images, {metric}); }, device);
    std::printf("  %-8s %14.1f %14.1f\n", metric.c_str(), first, later);
    summary["metrics"][metric] = {{"first_ms", first}, {"later_ms", later}, {"value", scores.values.at(metric)}};
  }
  if (own_folder) std::filesystem::remove_all(models);
  std::printf("%s\n", summary.dump().c_str());
  return 0;
}

} // namespace

int main(int argc, char** argv) { return bench::run_main("bench_metrics", kUsage, [&] { return run(argc, argv); }); }

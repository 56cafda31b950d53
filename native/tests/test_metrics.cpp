// The image metrics against the goldens of ../shared/fixtures/metrics (README.md there):
// the FID InceptionV3's input, pool features and logits on random float16-exact weights,
// then FID, KID and the Inception Score from the goldens' own features (the statistics
// alone) and from ours (the whole path), within the README's tolerances.
#include "check.h"

#include <ATen/CPUGeneratorImpl.h> // at::detail::createCPUGenerator

#include <cmath>   // std::abs
#include <cstdio>  // std::printf
#include <fstream> // golden.json
#include <string>

#include <nlohmann/json.hpp>

#include "io/safetensors.h"      // load_safetensors
#include "metrics/inception.h"   // load_fid_inception, inception_input
#include "metrics/lpips.h"       // load_lpips, lpips_input
#include "metrics/statistics.h"  // frechet_distance, kernel_inception_distance, inception_score

using namespace sdxl;
using namespace sdxl::test;

namespace {

std::string metrics_dir() { return fixtures_dir() + "/metrics"; }

const io::TensorMap& golden() {
  static const io::TensorMap tensors = io::load_safetensors(metrics_dir() + "/golden.safetensors");
  return tensors;
}

double golden_value(const std::string& name) {
  static const nlohmann::json values = [] {
    std::ifstream file(metrics_dir() + "/golden.json");
    return nlohmann::json::parse(file).at("values");
  }();
  return values.at(name).at("value").get<double>();
}

double max_abs(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

// Within rtol of the golden, or atol near zero.
void check_near(const char* what, double value, double expected, double rtol, double atol = 0) {
  const double gap = std::abs(value - expected);
  std::printf("  %s: %.10g (golden %.10g, %.2e apart)\n", what, value, expected, gap);
  CHECK(gap <= atol + rtol * std::abs(expected));
}

metrics::InceptionFeatures our_features(const std::string& set) {
  static const auto network = metrics::load_fid_inception(metrics_dir() + "/inception/model.safetensors", torch::kCPU);
  return network->forward(metrics::inception_input(golden().at("images." + set)));
}

} // namespace

TEST_CASE(the_fid_inception_matches_torchmetrics_features) {
  const torch::Tensor input = metrics::inception_input(golden().at("images.A"));
  CHECK(input.sizes() == torch::IntArrayRef({8, 3, 299, 299}));
  const double input_gap = max_abs(input[0].narrow(1, 0, 4), golden().at("inception.tm.input_A0"));
  std::printf("  input rows of A_0 within %.2e\n", input_gap);
  CHECK(input_gap < 1e-5);
  for (const std::string set : {"A", "B"}) {
    const metrics::InceptionFeatures features = our_features(set);
    const double pool = max_abs(features.pool, golden().at("inception.tm.pool_" + set));
    const double logits = max_abs(features.logits, golden().at("inception.tm.logits_" + set));
    const double unbiased = max_abs(features.logits_unbiased, golden().at("inception.tm.logits_unbiased_" + set));
    std::printf("  set %s: pool within %.2e, logits within %.2e, unbiased logits within %.2e\n", set.c_str(), pool, logits,
                unbiased);
    CHECK(pool < 2e-4);     // the README's tolerances (float32 noise floor 8.4e-5 and 2.0e-4)
    CHECK(logits < 5e-4);
    CHECK(unbiased < 5e-4);
  }
}

TEST_CASE(fid_kid_and_the_inception_score_match_torchmetrics) {
  const torch::Tensor pool_a = golden().at("inception.tm.pool_A"), pool_b = golden().at("inception.tm.pool_B");
  // FID: torchmetrics' eigvals trace and the exact one differ by 1e-6 relative; ours is the exact one.
  check_near("FID from the golden features", metrics::frechet_distance(pool_a, pool_b), golden_value("inception.fid.value"), 1e-4);
  check_near("FID, against the exact low-rank value", metrics::frechet_distance(pool_a, pool_b),
             golden_value("inception.fid.value_exact_lowrank"), 1e-9);
  // More samples than features (here 4 features of 20 and 24 samples): through the
  // covariances' square roots, which the cross-Gram nuclear norm checks.
  auto generator = at::detail::createCPUGenerator(5);
  const torch::Tensor x = torch::randn({20, 4}, generator, torch::kFloat64);
  const torch::Tensor y = torch::randn({24, 4}, generator, torch::kFloat64) * 1.5 + 0.3;
  const torch::Tensor xc = x - x.mean(0), yc = y - y.mean(0);
  const double exact_trace = at::linalg_svdvals(torch::matmul(xc, yc.t()) / std::sqrt(19.0 * 23.0)).sum().item<double>();
  const double exact = (x.mean(0) - y.mean(0)).pow(2).sum().item<double>() + (torch::matmul(xc.t(), xc) / 19).trace().item<double>() +
                       (torch::matmul(yc.t(), yc) / 23).trace().item<double>() - 2 * exact_trace;
  check_near("FID of 20 and 24 samples of 4 features", metrics::frechet_distance(x, y), exact, 1e-9);
  const metrics::MeanAndSpread kid =
      metrics::kernel_inception_distance(pool_a, pool_b, golden().at("inception.kid.subset_indices"));
  check_near("KID mean", kid.mean, golden_value("inception.kid.mean"), 1e-4, 1e-6);
  check_near("KID std", kid.std, golden_value("inception.kid.std"), 1e-4, 1e-6);
  for (const std::string set : {"A", "B"}) {
    const metrics::MeanAndSpread score = metrics::inception_score(
        golden().at("inception.tm.logits_unbiased_" + set), golden().at("inception.is_" + set + ".permutation"), 2);
    check_near(("IS mean, set " + set).c_str(), score.mean, golden_value("inception.is_" + set + ".mean"), 1e-4);
    check_near(("IS std, set " + set).c_str(), score.std, golden_value("inception.is_" + set + ".std"), 1e-4);
  }
  // The whole path: from our own network's features.
  const metrics::InceptionFeatures a = our_features("A"), b = our_features("B");
  check_near("FID from our features", metrics::frechet_distance(a.pool, b.pool), golden_value("inception.fid.value"), 1e-4);
  const metrics::MeanAndSpread our_kid =
      metrics::kernel_inception_distance(a.pool, b.pool, golden().at("inception.kid.subset_indices"));
  check_near("KID mean from our features", our_kid.mean, golden_value("inception.kid.mean"), 1e-4, 1e-6);
  const metrics::MeanAndSpread our_is =
      metrics::inception_score(a.logits_unbiased, golden().at("inception.is_A.permutation"), 2);
  check_near("IS mean from our features", our_is.mean, golden_value("inception.is_A.mean"), 1e-4);
}

TEST_CASE(kid_subsets_are_drawn_from_a_seeded_generator) {
  auto first = at::detail::createCPUGenerator(1234);
  auto second = at::detail::createCPUGenerator(1234);
  const torch::Tensor subsets = metrics::kid_subsets(8, 6, 10, 4, first);
  CHECK(subsets.sizes() == torch::IntArrayRef({10, 2, 4}));
  CHECK(torch::equal(subsets, metrics::kid_subsets(8, 6, 10, 4, second)));
  CHECK(subsets.select(1, 0).max().item<int64_t>() < 8 && subsets.select(1, 1).max().item<int64_t>() < 6);
  CHECK_THROWS_WITH(metrics::kid_subsets(3, 8, 10, 4, first), "subset_size must be at least 2 and at most each set's size");
}

TEST_CASE(lpips_matches_the_lpips_package) {
  const auto network = metrics::load_lpips(metrics_dir() + "/lpips/model.safetensors", torch::kCPU);
  const torch::Tensor x0 = metrics::lpips_input(golden().at("images.A").narrow(0, 0, 4));
  const torch::Tensor x1 = metrics::lpips_input(golden().at("images.B").narrow(0, 0, 4));
  const metrics::LpipsResult result = network->forward(x0, x1);
  const std::vector<torch::Tensor> f0 = network->features(x0.narrow(0, 0, 1));
  double feature_gap = 0;
  for (int l = 0; l < 5; ++l)
    feature_gap = std::max(feature_gap, max_abs(f0[l][0], golden().at("lpips.pair0.relu" + std::to_string(l + 1) + "_x0")));
  const double distance_gap = max_abs(result.distance, golden().at("lpips.distance"));
  const double layer_gap = max_abs(torch::stack(result.per_layer), golden().at("lpips.per_layer"));
  std::printf("  features within %.2e, distances within %.2e (%s), per layer within %.2e\n", feature_gap, distance_gap,
              [&] {
                std::string text;
                for (int i = 0; i < 4; ++i) text += (i ? ", " : "") + std::to_string(result.distance[i].item<double>());
                return text;
              }().c_str(),
              layer_gap);
  CHECK(feature_gap < 1e-4);
  CHECK(distance_gap < 1e-5); // the README's tolerance
  CHECK(layer_gap < 1e-5);
  CHECK_THROWS_WITH(network->forward(x0, x1.narrow(0, 0, 2)), "lpips: expected two image batches of one shape");
}

SDXL_TEST_MAIN()

// The image metrics against the goldens of ../shared/fixtures/metrics (README.md there):
// the FID InceptionV3's input, pool features and logits on random float16-exact weights,
// then FID, KID and the Inception Score from the goldens' own features (the statistics
// alone) and from ours (the whole path), within the README's tolerances.
#include "check.h"
#include "test_support.h" // fresh_dir, metrics_models_dir

#include <ATen/CPUGeneratorImpl.h> // at::detail::createCPUGenerator

#include <cmath>   // std::abs, std::isfinite
#include <cstdio>  // std::printf
#include <filesystem> // folders of broken and missing networks
#include <fstream> // golden.json
#include <string>

#include <nlohmann/json.hpp>

#include "io/safetensors.h"      // load_safetensors
#include "metrics/clip_model.h"  // load_clip_model, clip_image_input
#include "metrics/evaluator.h"   // Evaluator
#include "metrics/inception.h"   // load_fid_inception, inception_input
#include "metrics/lpips.h"       // load_lpips, lpips_input
#include "metrics/open_clip.h"   // load_open_clip
#include "metrics/statistics.h"  // frechet_distance, kernel_inception_distance, inception_score

using namespace sdxl;
using namespace sdxl::test;

namespace {

std::string metrics_dir() { return fixtures_dir() + "/metrics"; }

const io::TensorMap& metric_goldens() {
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
  return network->forward(metrics::inception_input(metric_goldens().at("images." + set)));
}

} // namespace

TEST_CASE(the_fid_inception_matches_torchmetrics_features) {
  const torch::Tensor input = metrics::inception_input(metric_goldens().at("images.A"));
  CHECK(input.sizes() == torch::IntArrayRef({8, 3, 299, 299}));
  const double input_gap = max_abs(input[0].narrow(1, 0, 4), metric_goldens().at("inception.tm.input_A0"));
  std::printf("  input rows of A_0 within %.2e\n", input_gap);
  CHECK(input_gap < 1e-5);
  for (const std::string set : {"A", "B"}) {
    const metrics::InceptionFeatures features = our_features(set);
    const double pool = max_abs(features.pool, metric_goldens().at("inception.tm.pool_" + set));
    const double logits = max_abs(features.logits, metric_goldens().at("inception.tm.logits_" + set));
    const double unbiased = max_abs(features.logits_unbiased, metric_goldens().at("inception.tm.logits_unbiased_" + set));
    std::printf("  set %s: pool within %.2e, logits within %.2e, unbiased logits within %.2e\n", set.c_str(), pool, logits,
                unbiased);
    CHECK(pool < 2e-4);     // the README's tolerances (float32 noise floor 8.4e-5 and 2.0e-4)
    CHECK(logits < 5e-4);
    CHECK(unbiased < 5e-4);
  }
}

TEST_CASE(fid_kid_and_the_inception_score_match_torchmetrics) {
  const torch::Tensor pool_a = metric_goldens().at("inception.tm.pool_A"), pool_b = metric_goldens().at("inception.tm.pool_B");
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
      metrics::kernel_inception_distance(pool_a, pool_b, metric_goldens().at("inception.kid.subset_indices"));
  check_near("KID mean", kid.mean, golden_value("inception.kid.mean"), 1e-4, 1e-6);
  check_near("KID std", kid.std, golden_value("inception.kid.std"), 1e-4, 1e-6);
  for (const std::string set : {"A", "B"}) {
    const metrics::MeanAndSpread score = metrics::inception_score(
        metric_goldens().at("inception.tm.logits_unbiased_" + set), metric_goldens().at("inception.is_" + set + ".permutation"), 2);
    check_near(("IS mean, set " + set).c_str(), score.mean, golden_value("inception.is_" + set + ".mean"), 1e-4);
    check_near(("IS std, set " + set).c_str(), score.std, golden_value("inception.is_" + set + ".std"), 1e-4);
  }
  // The whole path: from our own network's features.
  const metrics::InceptionFeatures a = our_features("A"), b = our_features("B");
  check_near("FID from our features", metrics::frechet_distance(a.pool, b.pool), golden_value("inception.fid.value"), 1e-4);
  const metrics::MeanAndSpread our_kid =
      metrics::kernel_inception_distance(a.pool, b.pool, metric_goldens().at("inception.kid.subset_indices"));
  check_near("KID mean from our features", our_kid.mean, golden_value("inception.kid.mean"), 1e-4, 1e-6);
  const metrics::MeanAndSpread our_is =
      metrics::inception_score(a.logits_unbiased, metric_goldens().at("inception.is_A.permutation"), 2);
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

TEST_CASE(the_inception_score_of_a_class_no_sample_picks_is_finite) {
  // Every sample certain of class 0: p(class 1) underflows to 0 and adds nothing (0 log 0 = 0).
  torch::Tensor logits = torch::tensor({0.0, -1e4}, torch::kFloat64).repeat({4, 1});
  const metrics::MeanAndSpread score = metrics::inception_score(logits, torch::arange(4), 2);
  CHECK(score.mean == 1.0 && score.std == 0.0);
  // The smallest subnormal p(class 1), whose mean with a 0 rounds to 0: still finite, about 1.
  logits[0][1] = -744.4;
  const metrics::MeanAndSpread subnormal = metrics::inception_score(logits, torch::arange(4), 2);
  std::printf("  IS with a subnormal probability: %.17g\n", subnormal.mean);
  CHECK(std::isfinite(subnormal.mean) && std::abs(subnormal.mean - 1.0) < 1e-12);
}

TEST_CASE(lpips_matches_the_lpips_package) {
  const auto network = metrics::load_lpips(metrics_dir() + "/lpips/model.safetensors", torch::kCPU);
  const torch::Tensor x0 = metrics::lpips_input(metric_goldens().at("images.A").narrow(0, 0, 4));
  const torch::Tensor x1 = metrics::lpips_input(metric_goldens().at("images.B").narrow(0, 0, 4));
  const metrics::LpipsResult result = network->forward(x0, x1);
  const std::vector<torch::Tensor> f0 = network->features(x0.narrow(0, 0, 1));
  double feature_gap = 0;
  for (int l = 0; l < 5; ++l)
    feature_gap = std::max(feature_gap, max_abs(f0[l][0], metric_goldens().at("lpips.pair0.relu" + std::to_string(l + 1) + "_x0")));
  const double distance_gap = max_abs(result.distance, metric_goldens().at("lpips.distance"));
  const double layer_gap = max_abs(torch::stack(result.per_layer), metric_goldens().at("lpips.per_layer"));
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

// ----------------------------------------------------------------------------
// CLIP (transformers CLIPModel) and OpenCLIP

namespace {

std::vector<std::string> clip_prompts() {
  static const nlohmann::json values = [] {
    std::ifstream file(metrics_dir() + "/golden.json");
    return nlohmann::json::parse(file).at("values");
  }();
  return values.at("clip.prompts").at("value").get<std::vector<std::string>>();
}

std::vector<torch::Tensor> images_of(const std::string& set) {
  const torch::Tensor all = metric_goldens().at("images." + set);
  std::vector<torch::Tensor> images;
  for (int64_t i = 0; i < all.size(0); ++i) images.push_back(all[i]);
  return images;
}

} // namespace

TEST_CASE(clip_preprocessing_matches_the_clip_image_processor) {
  const metrics::ClipModel model = metrics::load_clip_model(metrics_dir() + "/clip-tiny", torch::kCPU);
  std::vector<torch::Tensor> square;
  for (const torch::Tensor& image : images_of("A")) square.push_back(metrics::clip_image_input(image, model.processing));
  const double square_gap = max_abs(torch::stack(square), metric_goldens().at("clip.pixel_values"));
  // 80x96 and 96x72: resized, then centre-cropped; by torch's uint8 kernel (the torchvision
  // backend) and by Pillow (the PIL backend, and open_clip).
  metrics::ClipImageProcessing pillow = model.processing;
  pillow.weight_bits = metrics::kPillowWeightBits;
  double torchvision_gap = 0, pillow_gap = 0;
  for (const char* name : {"X0", "X1"}) {
    const torch::Tensor image = metric_goldens().at(std::string("images.") + name);
    const std::string golden = std::string("clip.extra.") + name + ".pixel_values";
    torchvision_gap = std::max(torchvision_gap, max_abs(metrics::clip_image_input(image, model.processing), metric_goldens().at(golden)));
    pillow_gap = std::max(pillow_gap, max_abs(metrics::clip_image_input(image, pillow), metric_goldens().at(golden + "_pil")));
  }
  std::printf("  64x64 images within %.2e; resized and cropped within %.2e (torchvision), %.2e (Pillow)\n", square_gap,
              torchvision_gap, pillow_gap);
  CHECK(square_gap < 1e-5);
  CHECK(torchvision_gap < 1e-5);
  CHECK(pillow_gap < 1e-5);
}

TEST_CASE(clip_embeddings_and_score_match_transformers_and_torchmetrics) {
  metrics::ClipModel model = metrics::load_clip_model(metrics_dir() + "/clip-tiny", torch::kCPU);
  const torch::Tensor image_embeds = model.image_embeds(images_of("A"));
  const torch::Tensor text_embeds = model.text_embeds(clip_prompts());
  const double image_gap = max_abs(image_embeds, metric_goldens().at("clip.image_embeds"));
  const double text_gap = max_abs(text_embeds, metric_goldens().at("clip.text_embeds"));
  // The ids up to each prompt's end are transformers' (which pads to the longest prompt only).
  const torch::Tensor ids = metric_goldens().at("clip.text.input_ids"), mask = metric_goldens().at("clip.text.attention_mask");
  bool same_ids = true;
  for (int64_t p = 0; p < ids.size(0); ++p) {
    const std::vector<int64_t> ours = model.tokenizer->frame(clip_prompts()[p]);
    for (int64_t t = 0; t < ids.size(1); ++t)
      if (mask[p][t].item<int64_t>() == 1 && ours[t] != ids[p][t].item<int64_t>()) same_ids = false;
  }
  std::printf("  image embeds within %.2e, text embeds within %.2e\n", image_gap, text_gap);
  CHECK(same_ids);
  CHECK(image_gap < 1e-5);
  CHECK(text_gap < 1e-5);

  metrics::Evaluator evaluator(metrics_models_dir(), torch::kCPU, 0);
  std::vector<metrics::ScoredImage> pairs;
  for (int i = 0; i < 4; ++i) pairs.push_back({images_of("A")[i], clip_prompts()[i]});
  const metrics::Scores scores = evaluator.score(pairs, {"clip_t"});
  check_near("CLIPScore over the 4 pairs", scores.values.at("clip_t"), golden_value("clip.score.torchmetrics_4pairs"), 0, 1e-3);
  // clip_t of the one pair whose cosine is negative is clamped to 0
  const metrics::Scores negative = evaluator.score({pairs[1]}, {"clip_t"});
  CHECK(negative.values.at("clip_t") == 0.0);
}

TEST_CASE(clip_i_is_the_mean_cosine_of_generated_and_reference_images) {
  metrics::ClipModel model = metrics::load_clip_model(metrics_dir() + "/clip-tiny", torch::kCPU);
  const torch::Tensor a = metric_goldens().at("clip.image_embeds").to(torch::kFloat64);
  const torch::Tensor b = model.image_embeds(images_of("B")).to(torch::kFloat64);
  const double expected = (a / a.norm(2, -1, true)).matmul((b / b.norm(2, -1, true)).t()).mean().item<double>();
  metrics::Evaluator evaluator(metrics_models_dir(), torch::kCPU, 0);
  evaluator.set_references(images_of("A"));
  std::vector<metrics::ScoredImage> generated;
  for (const torch::Tensor& image : images_of("B")) generated.push_back({image, ""});
  const metrics::Scores scores = evaluator.score(generated, {"clip_i", "clip_t"});
  check_near("CLIP-I of B against A", scores.values.at("clip_i"), expected, 1e-6);
  CHECK(scores.values.at("reference_images") == 8);
  CHECK(scores.unavailable.at("clip_t") == "no image has a prompt");
}

TEST_CASE(open_clip_features_and_the_hps_score_match_open_clip) {
  metrics::OpenClipModel model = metrics::load_open_clip(metrics_dir() + "/openclip-tiny", torch::kCPU);
  CHECK(torch::equal(model.tokens(clip_prompts()), metric_goldens().at("openclip.tokens")));
  const double image_gap = max_abs(model.image_features(images_of("A")), metric_goldens().at("openclip.image_features"));
  const double text_gap = max_abs(model.text_features(clip_prompts()), metric_goldens().at("openclip.text_features"));
  std::printf("  image features within %.2e, text features within %.2e\n", image_gap, text_gap);
  CHECK(image_gap < 1e-5);
  CHECK(text_gap < 1e-5);

  metrics::Evaluator evaluator(metrics_models_dir(), torch::kCPU, 0);
  std::vector<metrics::ScoredImage> pairs;
  for (int i = 0; i < 4; ++i) pairs.push_back({images_of("A")[i], clip_prompts()[i]});
  const double expected = metric_goldens().at("openclip.hps_score").to(torch::kFloat64).mean().item<double>();
  check_near("HPS-style score, mean of the 4 pairs", evaluator.score(pairs, {"hps"}).values.at("hps"), expected, 0, 1e-5);
}

TEST_CASE(the_evaluator_gives_fid_kid_is_and_lpips_diversity) {
  metrics::Evaluator evaluator(metrics_models_dir(), torch::kCPU, 7);
  evaluator.set_references(images_of("A"));
  std::vector<metrics::ScoredImage> generated;
  for (const torch::Tensor& image : images_of("B")) generated.push_back({image, "one prompt"});
  const metrics::Scores scores = evaluator.score(generated, {"fid", "kid", "is"});
  // FID is symmetric: B scored against A is the golden FID of A against B.
  check_near("FID", scores.values.at("fid"), golden_value("inception.fid.value"), 1e-4);
  // Eight images each: every KID subset is the whole set, so KID is the full-set MMD.
  const torch::Tensor whole = torch::arange(8).view({1, 1, 8}).expand({1, 2, 8}).contiguous();
  const metrics::MeanAndSpread full = metrics::kernel_inception_distance(
      metric_goldens().at("inception.tm.pool_A").to(torch::kFloat64), metric_goldens().at("inception.tm.pool_B").to(torch::kFloat64), whole);
  check_near("KID", scores.values.at("kid"), full.mean, 1e-4, 1e-6);
  CHECK(scores.values.at("kid_subset_size") == 8 && scores.values.at("kid_subsets") == 100);
  CHECK(scores.values.at("is_splits") == 4 && scores.values.at("is") >= 1.0);
  // The same seed draws the same permutation: the same numbers again.
  metrics::Evaluator again(metrics_models_dir(), torch::kCPU, 7);
  again.set_references(images_of("A"));
  CHECK(again.score(generated, {"is"}).values.at("is") == scores.values.at("is"));

  // LPIPS diversity: the pairs of images with one prompt; (A_0, B_0) is the golden pair 0.
  const metrics::Scores one_pair = evaluator.score({{images_of("A")[0], "p"}, {images_of("B")[0], "p"}, {images_of("B")[1], "q"}}, {"lpips"});
  check_near("LPIPS of the one same-prompt pair", one_pair.values.at("lpips"), metric_goldens().at("lpips.distance")[0].item<double>(), 0, 1e-5);
  CHECK(one_pair.values.at("lpips_pairs") == 1);
  CHECK(evaluator.score({generated[0]}, {"lpips", "fid"}).unavailable.at("fid") == "needs at least 2 images (has 1)");
}

TEST_CASE(metrics_without_their_networks_are_unavailable_not_errors) {
  const std::filesystem::path empty = fresh_dir("no-metric-models");
  std::filesystem::create_directories(empty / "clip");
  for (const metrics::MetricNetworkStatus& status : metrics::metric_network_status(empty.string())) CHECK(!status.available);
  CHECK(metrics::metric_network_status("").front().reason == "no metrics models folder is configured");
  CHECK(metrics::metric_network_status(metrics_models_dir()).size() == 7);
  for (const metrics::MetricNetworkStatus& status : metrics::metric_network_status(metrics_models_dir())) CHECK(status.available);

  metrics::Evaluator evaluator(empty.string(), torch::kCPU, 0);
  evaluator.set_references(images_of("A"));
  std::vector<metrics::ScoredImage> generated;
  for (const torch::Tensor& image : images_of("B")) generated.push_back({image, "a prompt"});
  const metrics::Scores scores = evaluator.score(generated, {"clip_t", "clip_i", "hps", "lpips", "fid", "kid", "is"});
  CHECK(scores.unavailable.size() == 7);
  CHECK(scores.unavailable.at("clip_t") == "no clip/config.json in the metrics models folder");
  CHECK(scores.unavailable.at("fid") == "no inception/model.safetensors in the metrics models folder");
  CHECK(scores.values.count("fid") == 0);
  CHECK_THROWS_WITH(evaluator.score(generated, {"dino"}), "unknown metric \"dino\" (one of clip_t, clip_i, hps, lpips, fid, kid, is)");

  // A network folder whose weights do not load: the reason says so.
  const std::filesystem::path broken = fresh_dir("broken-metric-models");
  std::filesystem::create_directories(broken / "lpips");
  std::ofstream(broken / "lpips" / "model.safetensors") << "not a safetensors file";
  metrics::Evaluator broken_evaluator(broken.string(), torch::kCPU, 0);
  const std::string why = broken_evaluator.score(generated, {"lpips"}).unavailable.at("lpips");
  std::printf("  %s\n", why.c_str());
  CHECK(why.rfind("the lpips network does not load: ", 0) == 0);
}

SDXL_TEST_MAIN()

// The samplers: Euler ancestral's step against its formula with injected noise (computed
// here element by element in double), its sigma split, DPM++ 2M Karras's tables against
// the fixture and its order (first order first and last), and unknown names refused.
#include "check.h"        // TEST_CASE, CHECK, CHECK_CLOSE, CHECK_THROWS_WITH
#include "test_support.h" // golden_dir

#include <algorithm> // std::max
#include <cmath>     // std::sqrt, std::log, std::exp, std::fabs
#include <utility>   // std::pair
#include <string>

#include "io/safetensors.h"        // io::SafetensorsFile
#include "sample/dpm_solver.h"     // sample::DpmSolverMultistepScheduler
#include "sample/noise_schedule.h" // sample::SchedulerConfig
#include "sample/sampler.h"        // sample::make_sampler, euler_ancestral_step, ancestral_sigmas

using namespace sdxl;

namespace {

const io::SafetensorsFile& extra_golden() {
  static const io::SafetensorsFile file = io::SafetensorsFile::open(test::golden_dir() + "/extra_golden.safetensors");
  return file;
}

double max_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

} // namespace

TEST_CASE(euler_ancestral_step_is_its_formula_with_the_given_noise) {
  torch::manual_seed(3);
  const torch::Tensor sample = torch::randn({2, 4, 3, 3}) * 5;
  const torch::Tensor eps = torch::randn({2, 4, 3, 3});
  const torch::Tensor noise = torch::randn({2, 4, 3, 3});
  const double sigma = 7.5, sigma_next = 3.25;
  const torch::Tensor next = sample::euler_ancestral_step(eps, sample, torch::tensor(static_cast<float>(sigma)),
                                                          torch::tensor(static_cast<float>(sigma_next)), noise, "epsilon");
  // By hand: x0 = x - sigma eps; up = sqrt(s'^2 (s^2 - s'^2) / s^2); down = sqrt(s'^2 - up^2);
  // x' = x + (x - x0) / sigma * (down - sigma) + noise * up.
  const double up = std::sqrt(sigma_next * sigma_next * (sigma * sigma - sigma_next * sigma_next) / (sigma * sigma));
  const double down = std::sqrt(sigma_next * sigma_next - up * up);
  const auto x = sample.to(torch::kFloat64).contiguous(), e = eps.to(torch::kFloat64).contiguous(),
             n = noise.to(torch::kFloat64).contiguous();
  torch::Tensor expected = torch::empty_like(x);
  for (int64_t i = 0; i < x.numel(); ++i) {
    const double xi = x.view(-1)[i].item<double>(), ei = e.view(-1)[i].item<double>(), ni = n.view(-1)[i].item<double>();
    const double x0 = xi - sigma * ei;
    expected.view(-1)[i] = xi + (xi - x0) / sigma * (down - sigma) + ni * up;
  }
  CHECK_CLOSE(max_diff(next, expected), 0, 1e-4);
  // Other noise moves the result by exactly noise * sigma_up.
  const torch::Tensor shifted = sample::euler_ancestral_step(eps, sample, torch::tensor(static_cast<float>(sigma)),
                                                             torch::tensor(static_cast<float>(sigma_next)), noise + 1, "epsilon");
  CHECK_CLOSE(max_diff(shifted - next, torch::full_like(next, up)), 0, 1e-4);
}

TEST_CASE(ancestral_sigmas_split_the_next_sigma) {
  for (const auto& [sigma, next] : {std::pair<double, double>{14.6, 9.7}, {1.2, 0.3}, {0.5, 0.0}}) {
    const sample::AncestralSigmas split = sample::ancestral_sigmas(sigma, next);
    CHECK_CLOSE(split.up * split.up + split.down * split.down, next * next, 1e-12);
    CHECK(split.down <= next + 1e-12);
  }
  CHECK_CLOSE(sample::ancestral_sigmas(0.5, 0.0).up, 0, 0); // the last step adds no noise
}

TEST_CASE(euler_ancestral_shares_eulers_tables_and_needs_noise) {
  const auto config = sample::SchedulerConfig::sdxl_base();
  const auto euler = sample::make_sampler("euler", config, 30);
  const auto ancestral = sample::make_sampler("euler_a", config, 30);
  CHECK(max_diff(euler->sigmas(), ancestral->sigmas()) == 0);
  CHECK(max_diff(euler->timesteps(), ancestral->timesteps()) == 0);
  CHECK(ancestral->needs_noise());
  CHECK(!euler->needs_noise());
}

TEST_CASE(dpmpp_2m_karras_tables_match_diffusers) {
  const sample::DpmSolverMultistepScheduler scheduler(sample::SchedulerConfig::sdxl_base(), 30);
  CHECK_CLOSE(max_diff(scheduler.timesteps(), extra_golden().tensor("sched.dpmpp_2m_karras30.timesteps")), 0, 0);
  CHECK_CLOSE(max_diff(scheduler.sigmas(), extra_golden().tensor("sched.dpmpp_2m_karras30.sigmas")), 0, 1e-5);
  const auto sampler = sample::make_sampler("dpmpp_2m_karras", sample::SchedulerConfig::sdxl_base(), 4);
  CHECK(sampler->init_noise_sigma().item<float>() == 1.0f);
  const torch::Tensor x = torch::randn({1, 4, 2, 2});
  CHECK(sampler->scale_model_input(x, 2).equal(x));
}

TEST_CASE(dpmpp_2m_steps_are_first_order_then_second_order_then_first_order) {
  // Four steps on a one-element sample, against DPM-Solver++(2M) written out in double:
  // alpha = 1 / sqrt(s^2 + 1), sigma_t = s alpha, lambda = log(alpha / sigma_t), x0 = (x - sigma_t eps) / alpha.
  const auto config = sample::SchedulerConfig::sdxl_base();
  sample::DpmSolverMultistepScheduler scheduler(config, 4);
  const auto sigmas = scheduler.sigmas().to(torch::kFloat64);
  const auto s = [&](int64_t i) { return sigmas[i].item<double>(); };
  const auto alpha = [&](int64_t i) { return 1 / std::sqrt(s(i) * s(i) + 1); };
  const auto sigma_t = [&](int64_t i) { return s(i) * alpha(i); };
  const auto lambda = [&](int64_t i) { return std::log(alpha(i)) - std::log(sigma_t(i)); };
  const double eps[4] = {0.5, -0.25, 0.125, 0.75};

  double x = 3.0, previous_x0 = 0;
  torch::Tensor sample = torch::full({1, 1, 1, 1}, x);
  for (int64_t i = 0; i < 4; ++i) {
    sample = scheduler.step(torch::full({1, 1, 1, 1}, eps[i]), i, sample);
    const double x0 = (x - sigma_t(i) * eps[i]) / alpha(i);
    if (i == 3) {
      x = x0; // onto sigma 0, first order: the data prediction itself
    } else {
      const double h = lambda(i + 1) - lambda(i);
      const double weight = alpha(i + 1) * (std::exp(-h) - 1);
      x = sigma_t(i + 1) / sigma_t(i) * x - weight * x0;
      if (i > 0) { // second order: the midpoint correction from the previous prediction
        const double r0 = (lambda(i) - lambda(i - 1)) / h;
        x -= 0.5 * weight * (x0 - previous_x0) / r0;
      }
    }
    previous_x0 = x0;
    CHECK_CLOSE(sample.item<double>(), x, 1e-4 * std::max(1.0, std::fabs(x)));
  }
  sample::DpmSolverMultistepScheduler fresh(config, 4);
  CHECK_THROWS_WITH(fresh.step(torch::zeros({1}), 1, torch::zeros({1})), "in order");
}

TEST_CASE(unknown_sampler_names_are_refused) {
  CHECK_THROWS_WITH(sample::make_sampler("ddim", sample::SchedulerConfig::sdxl_base(), 4), "ddim");
  CHECK_THROWS_WITH(sample::make_sampler("euler", sample::SchedulerConfig::sdxl_base(), 0), "steps");
}

SDXL_TEST_MAIN()

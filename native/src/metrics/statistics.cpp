// FID, KID and the Inception Score over features (statistics.h), in float64.
#include "metrics/statistics.h"

#include <cmath>     // std::sqrt
#include <stdexcept> // std::invalid_argument
#include <string>
#include <vector>

namespace sdxl::metrics {

namespace {

torch::Tensor as_float64(const torch::Tensor& features, const char* name) {
  if (features.dim() != 2 || features.size(0) < 2)
    throw std::invalid_argument(std::string(name) + ": expected features [N, D] with N >= 2");
  return features.to(torch::kCPU, torch::kFloat64).contiguous();
}

// sqrt of a symmetric positive semi-definite matrix (eigenvalues below zero, rounding, count as zero).
torch::Tensor symmetric_sqrt(const torch::Tensor& matrix) {
  const auto [values, vectors] = at::linalg_eigh(matrix, "L");
  return torch::matmul(vectors * values.clamp_min(0).sqrt().unsqueeze(0), vectors.t());
}

double variance(const std::vector<double>& values, bool unbiased) {
  double mean = 0;
  for (const double value : values) mean += value;
  mean /= static_cast<double>(values.size());
  double squares = 0;
  for (const double value : values) squares += (value - mean) * (value - mean);
  return squares / static_cast<double>(values.size() - (unbiased ? 1 : 0));
}

} // namespace

double frechet_distance(const torch::Tensor& features_a, const torch::Tensor& features_b) {
  const torch::Tensor a = as_float64(features_a, "frechet_distance");
  const torch::Tensor b = as_float64(features_b, "frechet_distance");
  if (a.size(1) != b.size(1)) throw std::invalid_argument("frechet_distance: the two sets' features differ in size");
  const torch::Tensor mu_a = a.mean(0), mu_b = b.mean(0);
  const torch::Tensor centred_a = a - mu_a, centred_b = b - mu_b;
  const torch::Tensor cov_a = torch::matmul(centred_a.t(), centred_a) / static_cast<double>(a.size(0) - 1);
  const torch::Tensor cov_b = torch::matmul(centred_b.t(), centred_b) / static_cast<double>(b.size(0) - 1);
  double trace_sqrt = 0;
  if (a.size(0) * b.size(0) <= a.size(1) * a.size(1)) {
    // Few samples: the nonzero eigenvalues of C_a C_b are the squared singular values of
    // the cross-Gram X_a X_b^T / sqrt((N_a - 1)(N_b - 1)) (centred X), so the trace is its
    // nuclear norm, exactly, where the covariances' many zero eigenvalues would only add
    // the square roots of rounding noise.
    const torch::Tensor cross = torch::matmul(centred_a, centred_b.t()) /
                                std::sqrt(static_cast<double>((a.size(0) - 1) * (b.size(0) - 1)));
    trace_sqrt = at::linalg_svdvals(cross).sum().item<double>();
  } else {
    const torch::Tensor root_a = symmetric_sqrt(cov_a);
    const torch::Tensor middle = torch::matmul(torch::matmul(root_a, cov_b), root_a);
    trace_sqrt = at::linalg_eigvalsh(0.5 * (middle + middle.t()), "L").clamp_min(0).sqrt().sum().item<double>();
  }
  return (mu_a - mu_b).pow(2).sum().item<double>() + cov_a.trace().item<double>() + cov_b.trace().item<double>() -
         2 * trace_sqrt;
}

MeanAndSpread kernel_inception_distance(const torch::Tensor& features_a, const torch::Tensor& features_b,
                                        const torch::Tensor& indices) {
  const torch::Tensor a = as_float64(features_a, "kernel_inception_distance");
  const torch::Tensor b = as_float64(features_b, "kernel_inception_distance");
  if (indices.dim() != 3 || indices.size(1) != 2 || indices.size(2) < 2)
    throw std::invalid_argument("kernel_inception_distance: expected subset indices [subsets, 2, m] with m >= 2");
  const double dimension = static_cast<double>(a.size(1));
  const auto kernel = [&](const torch::Tensor& x, const torch::Tensor& y) {
    return (torch::matmul(x, y.t()) / dimension + 1.0).pow(3);
  };
  const torch::Tensor subsets = indices.to(torch::kCPU, torch::kInt64);
  const double m = static_cast<double>(subsets.size(2));
  std::vector<double> values;
  for (int64_t s = 0; s < subsets.size(0); ++s) {
    const torch::Tensor x = a.index_select(0, subsets[s][0]);
    const torch::Tensor y = b.index_select(0, subsets[s][1]);
    const torch::Tensor k_xx = kernel(x, x), k_yy = kernel(y, y), k_xy = kernel(x, y);
    const double off_diagonal = (k_xx.sum() - k_xx.trace() + k_yy.sum() - k_yy.trace()).item<double>();
    values.push_back(off_diagonal / (m * (m - 1)) - 2 * k_xy.sum().item<double>() / (m * m));
  }
  double mean = 0;
  for (const double value : values) mean += value;
  return {mean / static_cast<double>(values.size()), std::sqrt(variance(values, /*unbiased=*/false))};
}

torch::Tensor kid_subsets(int64_t count_a, int64_t count_b, int64_t subsets, int64_t subset_size, at::Generator& generator) {
  if (subset_size < 2 || subset_size > count_a || subset_size > count_b)
    throw std::invalid_argument("kid_subsets: subset_size must be at least 2 and at most each set's size");
  std::vector<torch::Tensor> rows;
  for (int64_t s = 0; s < subsets; ++s) {
    const torch::Tensor from_a = torch::randperm(count_a, generator, torch::kInt64).narrow(0, 0, subset_size);
    const torch::Tensor from_b = torch::randperm(count_b, generator, torch::kInt64).narrow(0, 0, subset_size);
    rows.push_back(torch::stack({from_a, from_b}));
  }
  return torch::stack(rows); // [subsets, 2, subset_size]
}

MeanAndSpread inception_score(const torch::Tensor& logits, const torch::Tensor& permutation, int64_t splits) {
  const torch::Tensor all = as_float64(logits, "inception_score").index_select(0, permutation.to(torch::kCPU, torch::kInt64));
  if (splits < 2 || splits > all.size(0)) throw std::invalid_argument("inception_score: splits must be 2 to the sample count");
  std::vector<double> scores;
  for (const torch::Tensor& chunk : all.chunk(splits, 0)) {
    const torch::Tensor log_p = torch::log_softmax(chunk, 1);
    const torch::Tensor p = log_p.exp();
    // log of the mean probability through logsumexp: a class whose probabilities are
    // subnormal keeps a finite log (p.mean().log() would give -inf there, and inf scores).
    const torch::Tensor log_py = torch::logsumexp(log_p, 0, /*keepdim=*/true) - std::log(static_cast<double>(chunk.size(0)));
    // A class no sample gives any probability adds nothing (0 log 0 = 0), not NaN.
    const torch::Tensor kl = torch::where(p > 0, p * (log_p - log_py), torch::zeros_like(p));
    scores.push_back(std::exp(kl.sum(1).mean().item<double>()));
  }
  double mean = 0;
  for (const double score : scores) mean += score;
  return {mean / static_cast<double>(scores.size()), std::sqrt(variance(scores, /*unbiased=*/true))};
}

} // namespace sdxl::metrics

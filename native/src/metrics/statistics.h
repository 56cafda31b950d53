// The distribution metrics over Inception features, in float64 as torchmetrics computes
// them: the Fréchet distance (FID), the kernel distance (KID) and the Inception Score.
#pragma once

#include <cstdint> // int64_t

#include <torch/torch.h> // torch::Tensor, at::Generator

namespace sdxl::metrics {

struct MeanAndSpread {
  double mean = 0;
  double std = 0;
};

// FID between two sets of pool features [N, D] (N >= 2 each): |mu_a - mu_b|^2 +
// tr(C_a) + tr(C_b) - 2 tr sqrt(C_a C_b), covariances unbiased (N - 1). The trace of the
// square root is computed stably, never from the complex eigenvalues of the non-symmetric
// C_a C_b (as scipy's sqrtm or torchmetrics' eigvals): with fewer samples than features
// as the nuclear norm of the samples' cross-Gram matrix, else as tr sqrt(S C_b S) with
// S = sqrt(C_a), through symmetric eigendecompositions.
double frechet_distance(const torch::Tensor& features_a, const torch::Tensor& features_b);

// KID (torchmetrics' KernelInceptionDistance): for each subset s, indices[s][0] into A
// and indices[s][1] into B (m each), the unbiased MMD^2 with the kernel
// k(x, y) = (x.y / D + 1)^3; the mean and population std over the subsets.
MeanAndSpread kernel_inception_distance(const torch::Tensor& features_a, const torch::Tensor& features_b,
                                        const torch::Tensor& indices);

// `subsets` subsets of `subset_size` indices into sets of `count_a` and `count_b`
// samples ([subsets, 2, subset_size] int64): each a random permutation's first
// subset_size, A's then B's, as torchmetrics draws them.
torch::Tensor kid_subsets(int64_t count_a, int64_t count_b, int64_t subsets, int64_t subset_size, at::Generator& generator);

// The Inception Score of logits [N, C] (the unbiased ones): the samples in `permutation`'s
// order, cut into `splits` chunks; per chunk exp(mean KL(p(y|x) || p(y))); the mean and
// unbiased std over the chunks.
MeanAndSpread inception_score(const torch::Tensor& logits, const torch::Tensor& permutation, int64_t splits);

} // namespace sdxl::metrics

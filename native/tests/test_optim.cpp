// Optimizer tests: the dynamic maps and block-wise quantization (error bound,
// zeros, absmax), 32-bit AdamW against a direct double-precision reference,
// the 8-bit trajectory against 32-bit on a least-squares problem, state sizes,
// checkpoint round trips, the torch-op 8-bit path against the CPU loop, and
// CUDA against CPU (skipped without a GPU). Figures are printed to stdout.
#include "check.h"

#include <torch/cuda.h>  // torch::cuda::is_available
#include <torch/torch.h> // tensors

#include <cmath>   // std::pow, std::sqrt
#include <cstdint> // int64_t
#include <cstdio>  // std::printf
#include <map>
#include <string>
#include <vector>

#include "train/adamw.h"              // AdamW, OptimizerKind
#include "train/block_quantization.h" // maps, quantize_blockwise

using namespace sdxl::train;

namespace {

// ----------------------------------------------------------------------------
// Constants

// Error bounds of nearest-code quantization: half the widest gap between
// neighbouring codes (the top decade: 0.9/64 signed, 0.9/128 unsigned), times
// absmax; kRoundingSlack covers the float32 rounding of x / absmax, of the
// midpoints and of code * absmax (a few ulps of absmax).
constexpr double kSignedHalfGap = 0.9 / 64 / 2;    // 0.00703125
constexpr double kUnsignedHalfGap = 0.9 / 128 / 2; // 0.003515625
constexpr double kRoundingSlack = 1e-6;

constexpr int64_t kBlock = kQuantizationBlock;
constexpr int64_t kOddLength = 10 * kBlock + 37; // ends with a short block

// ----------------------------------------------------------------------------
// Helpers

// Values over many decades (log-normal magnitudes), both signs, with exact zeros.
torch::Tensor heavy_tailed(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  torch::Tensor x = torch::randn({n}) * torch::exp(2.0 * torch::randn({n})); // [n]
  x.index_put_({torch::arange(0, n, 7)}, 0.0f);                               // scattered zeros
  x.slice(0, kBlock, 2 * kBlock).zero_();                                     // one block of zeros
  return x;
}

// Bitwise equality (floats compared as their bit patterns).
bool same_bits(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.sizes() != b.sizes() || a.scalar_type() != b.scalar_type()) return false;
  const torch::Tensor ca = a.cpu().contiguous(), cb = b.cpu().contiguous();
  if (ca.scalar_type() == torch::kFloat32) return torch::equal(ca.view(torch::kInt32), cb.view(torch::kInt32));
  return torch::equal(ca, cb);
}

torch::Tensor expand_per_block(const torch::Tensor& absmax, int64_t n) {
  return absmax.repeat_interleave(kBlock).slice(0, 0, n); // [n]
}

// Deterministic gradient for (step, tensor index).
torch::Tensor gradient_for(int64_t step, int64_t index, at::IntArrayRef shape) {
  torch::manual_seed(1000 * step + index);
  return torch::randn(shape) * (1.0 + index); // tensors see different scales
}

// Checks the quantization of x with `map`: shapes, exact absmax, zeros, the
// error bound and that each code is the nearest one. Returns max error / absmax.
double check_quantization(const torch::Tensor& x, const torch::Tensor& map, double half_gap) {
  const int64_t n = x.numel();
  const int64_t blocks = block_count(n, kBlock);
  const BlockwiseCodes q = quantize_blockwise(x, map);
  CHECK(q.codes.scalar_type() == torch::kUInt8 && q.codes.numel() == n);
  CHECK(q.absmax.scalar_type() == torch::kFloat32 && q.absmax.numel() == blocks);
  for (int64_t b = 0; b < blocks; ++b) {
    const float expected = x.slice(0, b * kBlock, std::min(n, (b + 1) * kBlock)).abs().max().item<float>();
    CHECK(q.absmax[b].item<float>() == expected);
  }
  const torch::Tensor dequantized = dequantize_blockwise(q, map); // [n]
  CHECK(dequantized.sizes() == x.sizes());
  const torch::Tensor zeros = x == 0;
  CHECK(torch::equal(dequantized.masked_select(zeros), torch::zeros({zeros.sum().item<int64_t>()})));

  const torch::Tensor absmax = expand_per_block(q.absmax, n).to(torch::kFloat64);     // [n]
  const torch::Tensor error = (dequantized.to(torch::kFloat64) - x.to(torch::kFloat64)).abs(); // [n]
  CHECK((error <= absmax * (half_gap + kRoundingSlack)).all().item<bool>());

  // Nearest code: no other code is closer to x / absmax (up to float rounding).
  const torch::Tensor divisor = torch::where(absmax > 0, absmax, torch::ones_like(absmax));
  const torch::Tensor scaled = (x.to(torch::kFloat64) / divisor).unsqueeze(1);           // [n, 1]
  const torch::Tensor distances = (scaled - map.to(torch::kFloat64).unsqueeze(0)).abs(); // [n, 256]
  const torch::Tensor chosen = distances.gather(1, q.codes.to(torch::kInt64).unsqueeze(1)).squeeze(1);
  const torch::Tensor best = std::get<0>(distances.min(1));
  CHECK((chosen <= best + kRoundingSlack).all().item<bool>());

  const torch::Tensor relative = torch::where(absmax > 0, error / divisor, torch::zeros_like(error));
  const torch::Tensor nonzero = absmax > 0;
  std::printf("    error / block absmax: max %.6f (bound %.6f), mean %.6f\n", relative.max().item<double>(),
              half_gap, relative.masked_select(nonzero).mean().item<double>());
  return relative.max().item<double>();
}

// ----------------------------------------------------------------------------
// Reference AdamW in double precision, straight from the definition.

struct ReferenceParam {
  std::vector<double> p, m, v;
  int64_t t = 0;
};

void reference_step(ReferenceParam& r, const std::vector<double>& g, double lr, const AdamWHyper& h) {
  r.t += 1;
  for (size_t i = 0; i < r.p.size(); ++i) {
    r.p[i] -= lr * h.weight_decay * r.p[i];
    r.m[i] = h.beta1 * r.m[i] + (1 - h.beta1) * g[i];
    r.v[i] = h.beta2 * r.v[i] + (1 - h.beta2) * g[i] * g[i];
    const double m_hat = r.m[i] / (1 - std::pow(h.beta1, r.t));
    const double v_hat = r.v[i] / (1 - std::pow(h.beta2, r.t));
    r.p[i] -= lr * m_hat / (std::sqrt(v_hat) + h.eps);
  }
}

std::vector<double> to_vector(const torch::Tensor& t) {
  const torch::Tensor flat = t.detach().to(torch::kFloat64).contiguous().view({-1});
  return std::vector<double>(flat.data_ptr<double>(), flat.data_ptr<double>() + flat.numel());
}

// ----------------------------------------------------------------------------
// Small training loops

std::vector<torch::Tensor> fresh_params(const std::vector<std::vector<int64_t>>& shapes, uint64_t seed) {
  torch::manual_seed(seed);
  std::vector<torch::Tensor> params;
  for (const auto& shape : shapes) params.push_back((0.5 * torch::randn(shape)).requires_grad_(true));
  return params;
}

std::vector<torch::Tensor> clone_params(const std::vector<torch::Tensor>& params, torch::Device device) {
  std::vector<torch::Tensor> out;
  for (const auto& p : params) out.push_back(p.detach().to(device, false, /*copy=*/true).requires_grad_(true));
  return out;
}

// Steps [first, last) with gradient_for; tensor `skip` gets no gradient on step `skip_step`.
void run_steps(AdamW& optimizer, std::vector<torch::Tensor>& flat_params, int64_t first, int64_t last,
               const std::vector<double>& lrs, int64_t skip = -1, int64_t skip_step = -1) {
  for (int64_t step = first; step < last; ++step) {
    optimizer.zero_grad();
    for (size_t i = 0; i < flat_params.size(); ++i) {
      if (static_cast<int64_t>(i) == skip && step == skip_step) continue;
      flat_params[i].mutable_grad() = gradient_for(step, i, flat_params[i].sizes()).to(flat_params[i].device());
    }
    optimizer.step(lrs);
  }
}

// Least squares: loss = mean((X W^T + b - Y)^2); W has 8192 elements (8-bit moments), b 64 (float32).
struct LeastSquares {
  torch::Tensor x, y; // [512, 128], [512, 64]
};

LeastSquares make_least_squares() {
  torch::manual_seed(7);
  LeastSquares problem;
  problem.x = torch::randn({512, 128});
  const torch::Tensor w_true = 0.2 * torch::randn({64, 128});
  const torch::Tensor b_true = torch::randn({64});
  problem.y = torch::matmul(problem.x, w_true.t()) + b_true + 0.01 * torch::randn({512, 64});
  return problem;
}

torch::Tensor least_squares_loss(const LeastSquares& problem, const torch::Tensor& w, const torch::Tensor& b) {
  return (torch::matmul(problem.x, w.t()) + b - problem.y).pow(2).mean();
}

double train_least_squares(OptimizerKind kind, const LeastSquares& problem, std::vector<torch::Tensor>& params,
                           int64_t steps, double lr) {
  AdamW optimizer(kind, {params}, AdamWHyper{});
  for (int64_t step = 0; step < steps; ++step) {
    optimizer.zero_grad();
    least_squares_loss(problem, params[0], params[1]).backward();
    optimizer.step({lr});
  }
  torch::NoGradGuard no_grad;
  return least_squares_loss(problem, params[0], params[1]).item<double>();
}

} // namespace

// ----------------------------------------------------------------------------
// Maps and quantization

TEST_CASE(dynamic_maps_are_ascending_256_codes_with_zero_and_one) {
  const torch::Tensor s = signed_dynamic_map(), u = unsigned_dynamic_map();
  for (const auto& map : {s, u}) {
    CHECK(map.numel() == kDynamicMapSize && map.scalar_type() == torch::kFloat32);
    CHECK((map.slice(0, 1) > map.slice(0, 0, -1)).all().item<bool>()); // strictly ascending
    CHECK(map[255].item<float>() == 1.0f);
  }
  CHECK(s[kSignedMapZeroCode].item<float>() == 0.0f);
  CHECK(u[kUnsignedMapZeroCode].item<float>() == 0.0f);
  CHECK((s < 0).sum().item<int64_t>() == 127);
  CHECK_CLOSE(s[0].item<float>(), -0.99296875, 1e-7);   // top decade midpoint: -(0.1 + 0.9/64 * 63.5)
  CHECK_CLOSE(s[128].item<float>(), 5.5e-7, 1e-12);     // smallest: 1e-6 * (0.1 + 0.9/2)
  CHECK_CLOSE(u[1].item<float>(), 3.25e-7, 1e-12);      // 1e-6 * (0.1 + 0.9/4)
  CHECK_CLOSE(u[254].item<float>(), 0.996484375, 1e-7); // 0.1 + 0.9/128 * 127.5
  // The widest gaps are what the error bounds rest on.
  CHECK_CLOSE((s.slice(0, 1) - s.slice(0, 0, -1)).max().item<float>(), 2 * kSignedHalfGap, 1e-6);
  CHECK_CLOSE((u.slice(0, 1) - u.slice(0, 0, -1)).max().item<float>(), 2 * kUnsignedHalfGap, 1e-6);
}

TEST_CASE(quantize_blockwise_signed_error_bound_zeros_absmax) {
  const torch::Tensor x = heavy_tailed(kOddLength, 1);
  std::printf("  signed map, %lld values over many decades:\n", static_cast<long long>(x.numel()));
  check_quantization(x, signed_dynamic_map(), kSignedHalfGap);
  CHECK_THROWS_WITH(quantize_blockwise(x.to(torch::kFloat64), signed_dynamic_map()), "float32");
}

TEST_CASE(quantize_blockwise_unsigned_error_bound_zeros_absmax) {
  const torch::Tensor x = heavy_tailed(kOddLength, 2).pow(2); // second moments are non-negative
  std::printf("  unsigned map, %lld squared values:\n", static_cast<long long>(x.numel()));
  check_quantization(x, unsigned_dynamic_map(), kUnsignedHalfGap);
  // The block maximum is code 1.0 and comes back exactly.
  const BlockwiseCodes q = quantize_blockwise(x, unsigned_dynamic_map());
  const torch::Tensor back = dequantize_blockwise(q, unsigned_dynamic_map());
  const int64_t top = x.slice(0, 0, kBlock).argmax().item<int64_t>();
  CHECK(back[top].item<float>() == x[top].item<float>());
}

TEST_CASE(map_values_quantize_to_their_own_codes) {
  for (const auto& map : {signed_dynamic_map(), unsigned_dynamic_map()}) {
    const BlockwiseCodes q = quantize_blockwise(map * 3.0, map); // one block, absmax 3
    CHECK(q.absmax.item<float>() == 3.0f);
    CHECK(torch::equal(q.codes.to(torch::kInt64), torch::arange(kDynamicMapSize)));
  }
}

TEST_CASE(cpu_code_lookup_agrees_with_bucketize_at_every_midpoint) {
  // The CPU loop's table lookup must give exactly the rule's code (count of
  // midpoints strictly below y), above all right at and next to each midpoint.
  for (const bool is_signed : {true, false}) {
    const torch::Tensor map = is_signed ? signed_dynamic_map() : unsigned_dynamic_map();
    const torch::Tensor midpoints = (map.slice(0, 0, -1) + map.slice(0, 1)) * 0.5; // [255]
    const torch::Tensor up = torch::tensor(2.0f), down = torch::tensor(-2.0f); // nextafter directions
    torch::manual_seed(17);
    const torch::Tensor decades = torch::pow(10.0, -8.0 * torch::rand({20000})) * torch::rand({20000}); // [0, 1]
    std::vector<torch::Tensor> parts{midpoints, torch::nextafter(midpoints, up), torch::nextafter(midpoints, down),
                                     map, torch::nextafter(map, up), torch::nextafter(map, down), decades,
                                     torch::tensor({0.0f, -0.0f, 1.0f, 1e-30f, 1e-40f, 3e-8f, 6e-8f})};
    if (is_signed) parts.push_back(-decades);
    torch::Tensor y = torch::cat(parts).clamp(is_signed ? -1.0 : 0.0, 1.0); // [N]
    const torch::Tensor expected = torch::bucketize(y, midpoints, /*out_int32=*/true, /*right=*/false).to(torch::kUInt8);
    const torch::Tensor got = nearest_codes_cpu(y, is_signed);
    CHECK(torch::equal(got, expected));
    if (!torch::equal(got, expected)) {
      const torch::Tensor bad = (got != expected).nonzero().view({-1});
      std::printf("  %lld mismatches, first y = %.9g: %d vs %d\n", static_cast<long long>(bad.numel()),
                  y[bad[0]].item<float>(), got[bad[0]].item<int>(), expected[bad[0]].item<int>());
    }
  }
}

// ----------------------------------------------------------------------------
// 32-bit AdamW

TEST_CASE(adamw_matches_reference_with_decay_bias_correction_and_skipped_grads) {
  const AdamWHyper hyper{0.8, 0.95, 1e-6, 0.1};
  const std::vector<double> lrs{1e-2, 3e-2};
  const std::vector<std::vector<int64_t>> shapes{{3, 4}, {5}, {2, 3}};
  std::vector<torch::Tensor> params = fresh_params(shapes, 3);
  std::vector<ReferenceParam> reference;
  for (const auto& p : params) reference.push_back({to_vector(p), std::vector<double>(p.numel()), std::vector<double>(p.numel())});
  const std::vector<torch::Tensor> copies = clone_params(params, torch::kCPU);
  std::vector<torch::Tensor> params_8bit_kind = clone_params(params, torch::kCPU);

  AdamW optimizer(OptimizerKind::AdamW, {{params[0], params[1]}, {params[2]}}, hyper);
  // Under AdamW8bit these small tensors keep float32 moments: the very same update.
  AdamW small_8bit(OptimizerKind::AdamW8bit, {{params_8bit_kind[0], params_8bit_kind[1]}, {params_8bit_kind[2]}}, hyper);
  CHECK(!small_8bit.is_quantized(0, 0) && !small_8bit.is_quantized(1, 0));

  constexpr int64_t kSteps = 6, kSkipped = 1, kSkipStep = 2;
  run_steps(optimizer, params, 0, kSteps, lrs, kSkipped, kSkipStep);
  run_steps(small_8bit, params_8bit_kind, 0, kSteps, lrs, kSkipped, kSkipStep);
  const std::vector<int64_t> group_of{0, 0, 1};
  for (int64_t step = 0; step < kSteps; ++step) {
    for (size_t i = 0; i < reference.size(); ++i) {
      if (static_cast<int64_t>(i) == kSkipped && step == kSkipStep) continue;
      reference_step(reference[i], to_vector(gradient_for(step, i, params[i].sizes())), lrs[group_of[i]], hyper);
    }
  }
  double max_diff = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    const torch::Tensor expected = torch::tensor(reference[i].p, torch::kFloat64).view(params[i].sizes());
    const double diff = (params[i].detach().to(torch::kFloat64) - expected).abs().max().item<double>();
    max_diff = std::max(max_diff, diff);
    CHECK(diff < 1e-6);
    CHECK(same_bits(params[i].detach(), params_8bit_kind[i].detach()));
    CHECK(!torch::equal(params[i].detach(), copies[i])); // it did move
  }
  std::printf("  32-bit AdamW vs double reference after %lld steps: max |diff| %.3g\n",
              static_cast<long long>(kSteps), max_diff);
  CHECK(optimizer.steps() == kSteps);
  CHECK_THROWS_WITH(optimizer.step({1e-2}), "2 parameter groups");
}

TEST_CASE(parse_optimizer_kind_names) {
  CHECK(parse_optimizer_kind("adamw") == OptimizerKind::AdamW);
  CHECK(parse_optimizer_kind("adamw8bit") == OptimizerKind::AdamW8bit);
  CHECK(std::string(optimizer_kind_name(OptimizerKind::AdamW8bit)) == "adamw8bit");
  CHECK_THROWS_WITH(parse_optimizer_kind("sgd"), "sgd");
  CHECK_THROWS_WITH(parse_optimizer_kind("AdamW"), "expected adamw or adamw8bit");
}

// ----------------------------------------------------------------------------
// 8-bit AdamW

TEST_CASE(adamw8bit_trajectory_tracks_adamw_on_least_squares) {
  constexpr int64_t kSteps = 500;
  constexpr double kLr = 1e-2;
  const LeastSquares problem = make_least_squares();
  const std::vector<torch::Tensor> start = fresh_params({{64, 128}, {64}}, 11);
  std::vector<torch::Tensor> p32 = clone_params(start, torch::kCPU), p8 = clone_params(start, torch::kCPU);
  double initial_loss = 0;
  {
    torch::NoGradGuard no_grad;
    initial_loss = least_squares_loss(problem, start[0], start[1]).item<double>();
  }
  const double loss32 = train_least_squares(OptimizerKind::AdamW, problem, p32, kSteps, kLr);
  const double loss8 = train_least_squares(OptimizerKind::AdamW8bit, problem, p8, kSteps, kLr);
  const double travelled = (p32[0] - start[0]).norm().item<double>();
  const double distance = (p8[0] - p32[0]).norm().item<double>();
  const double bias_distance = (p8[1] - p32[1]).norm().item<double>() / (p32[1] - start[1]).norm().item<double>();
  std::printf("  least squares, %lld steps: loss %.4g -> adamw %.6g, adamw8bit %.6g (relative gap %.3g)\n",
              static_cast<long long>(kSteps), initial_loss, loss32, loss8, std::fabs(loss8 - loss32) / loss32);
  std::printf("  |W8 - W32| / |W32 - W0| = %.3g, bias %.3g\n", distance / travelled, bias_distance);
  CHECK(loss32 < 1e-2 * initial_loss); // both really optimize
  CHECK(loss8 < 1e-2 * initial_loss);
  // Measured: loss gap 0.105 (the losses sit near the noise floor, which magnifies it), distance 0.0013.
  CHECK(std::fabs(loss8 - loss32) <= 0.25 * loss32);
  CHECK(distance <= 0.01 * travelled);
}

TEST_CASE(state_bytes_per_parameter) {
  const std::vector<torch::Tensor> params = fresh_params({{1024, 64}, {100}, {4095}, {4096}}, 5);
  const AdamW full(OptimizerKind::AdamW, {params}, AdamWHyper{});
  const AdamW eight(OptimizerKind::AdamW8bit, {params}, AdamWHyper{});
  const AdamW big_only(OptimizerKind::AdamW8bit, {{params[0]}}, AdamWHyper{});
  CHECK(full.parameter_count() == 65536 + 100 + 4095 + 4096);
  CHECK(full.state_bytes() == 8 * full.parameter_count());
  CHECK(eight.is_quantized(0, 0) && !eight.is_quantized(0, 1) && !eight.is_quantized(0, 2) && eight.is_quantized(0, 3));
  // codes: 2 bytes per element; absmax: 2 x 4 bytes per 256-element block; small tensors: 8 bytes each.
  const int64_t expected = 2 * 65536 + 8 * 256 + 8 * 100 + 8 * 4095 + 2 * 4096 + 8 * 16;
  CHECK(eight.state_bytes() == expected);
  const double per_param = static_cast<double>(big_only.state_bytes()) / big_only.parameter_count();
  CHECK_CLOSE(per_param, 2.03125, 1e-12);
  std::printf("  bytes of state per parameter: adamw %.3f, adamw8bit %.5f (large tensors), %.3f (this mix)\n",
              static_cast<double>(full.state_bytes()) / full.parameter_count(), per_param,
              static_cast<double>(eight.state_bytes()) / eight.parameter_count());
}

TEST_CASE(torch_op_8bit_path_matches_cpu_loop) {
  // The path CUDA tensors take without our kernel, run here on the CPU.
  constexpr int64_t kN = 40 * kBlock + 100;
  constexpr int kSteps = 8;
  constexpr double kLr = 1e-3;
  torch::manual_seed(21);
  torch::Tensor p_loop = torch::randn({kN}), p_ops = p_loop.clone();
  Blockwise8bitState s_loop = zero_8bit_state(kN, torch::kCPU), s_ops = zero_8bit_state(kN, torch::kCPU);
  for (int step = 1; step <= kSteps; ++step) {
    const torch::Tensor grad = heavy_tailed(kN, 100 + step);
    const AdamWStepConstants c = adamw_step_constants(kLr, 0.9, 0.999, 1e-8, 1e-2, step);
    adamw8bit_update_cpu(p_loop, grad, s_loop, c);
    adamw8bit_update_torch_ops(p_ops, grad, s_ops, c, signed_dynamic_map(), unsigned_dynamic_map());
  }
  const torch::Tensor code_diff = (s_loop.exp_avg_codes.to(torch::kInt32) - s_ops.exp_avg_codes.to(torch::kInt32)).abs();
  const torch::Tensor sq_code_diff = (s_loop.exp_avg_sq_codes.to(torch::kInt32) - s_ops.exp_avg_sq_codes.to(torch::kInt32)).abs();
  const double p_diff = (p_loop - p_ops).abs().max().item<double>();
  const int64_t differing = (code_diff > 0).sum().item<int64_t>() + (sq_code_diff > 0).sum().item<int64_t>();
  std::printf("  torch ops vs CPU loop, %d steps: max |dp| %.3g, codes differing %lld of %lld, bitwise %s\n", kSteps,
              p_diff, static_cast<long long>(differing), static_cast<long long>(2 * kN),
              same_bits(p_loop, p_ops) && differing == 0 ? "yes" : "no");
  // Bitwise here; a multiply-add fused by another ATen build may move a value across a code
  // midpoint: then one code apart, rarely, and parameters less than one step (lr) apart.
  CHECK(code_diff.max().item<int>() <= 1 && sq_code_diff.max().item<int>() <= 1);
  CHECK(differing <= 2 * kN / 1000);
  CHECK(p_diff <= kLr);
  const double absmax_diff = ((s_loop.exp_avg_absmax - s_ops.exp_avg_absmax).abs() /
                              s_loop.exp_avg_absmax.abs().clamp_min(1e-30)).max().item<double>();
  CHECK(absmax_diff <= 0.02); // one code gap of the signed map, relative
}

// ----------------------------------------------------------------------------
// Checkpoints

TEST_CASE(checkpoint_round_trip_continues_bitwise) {
  const std::vector<std::vector<int64_t>> shapes{{75, 67}, {10}, {4096 + 3}};
  const std::vector<double> lrs{2e-3, 5e-3};
  for (const OptimizerKind kind : {OptimizerKind::AdamW, OptimizerKind::AdamW8bit}) {
    std::vector<torch::Tensor> straight = fresh_params(shapes, 9);
    std::vector<torch::Tensor> resumed = clone_params(straight, torch::kCPU);
    AdamW a(kind, {{straight[0], straight[1]}, {straight[2]}}, AdamWHyper{});
    run_steps(a, straight, 0, 10, lrs, /*skip=*/1, /*skip_step=*/3);

    std::map<std::string, torch::Tensor> checkpoint;
    {
      AdamW b(kind, {{resumed[0], resumed[1]}, {resumed[2]}}, AdamWHyper{});
      run_steps(b, resumed, 0, 6, lrs, 1, 3);
      b.save_state(checkpoint, "opt");
    }
    CHECK(checkpoint.at("opt.steps").dim() == 0 && checkpoint.at("opt.steps").item<int64_t>() == 6);
    CHECK(checkpoint.at("opt.0.1.step").item<int64_t>() == 5); // skipped once
    const std::string moment = kind == OptimizerKind::AdamW8bit ? "opt.0.0.exp_avg_codes" : "opt.0.0.exp_avg";
    CHECK(checkpoint.count(moment) == 1 && checkpoint.at(moment).device().is_cpu());
    CHECK(checkpoint.count("opt.0.1.exp_avg") == 1); // small tensor: float32 under both kinds

    // A fresh optimizer (as after a restart) on the saved parameters continues the run.
    std::vector<torch::Tensor> restarted = clone_params(resumed, torch::kCPU);
    AdamW c(kind, {{restarted[0], restarted[1]}, {restarted[2]}}, AdamWHyper{});
    c.load_state(checkpoint, "opt");
    CHECK(c.steps() == 6);
    run_steps(c, restarted, 6, 10, lrs, 1, 3);
    for (size_t i = 0; i < shapes.size(); ++i) CHECK(same_bits(straight[i].detach(), restarted[i].detach()));
    std::map<std::string, torch::Tensor> after_a, after_c;
    a.save_state(after_a, "opt");
    c.save_state(after_c, "opt");
    CHECK(after_a.size() == after_c.size());
    for (const auto& [key, tensor] : after_a) CHECK(same_bits(tensor, after_c.at(key)));

    // Bad checkpoints name the key and change nothing.
    std::map<std::string, torch::Tensor> missing = checkpoint;
    missing.erase("opt.1.0.step");
    CHECK_THROWS_WITH(c.load_state(missing, "opt"), "opt.1.0.step");
    std::map<std::string, torch::Tensor> misshaped = checkpoint;
    const std::string key = kind == OptimizerKind::AdamW8bit ? "opt.0.0.exp_avg_sq_absmax" : "opt.0.0.exp_avg_sq";
    misshaped[key] = torch::zeros({3});
    CHECK_THROWS_WITH(c.load_state(misshaped, "opt"), key);
    CHECK_THROWS_WITH(c.load_state(checkpoint, "other"), "other.steps");
    CHECK(c.steps() == 10);
  }
}

// ----------------------------------------------------------------------------
// CUDA against CPU

TEST_CASE(cuda_adamw8bit_matches_cpu) {
  if (!torch::cuda::is_available()) {
    std::printf("  SKIPPED: CUDA is not available (CPU libtorch or no GPU)\n");
    return;
  }
#if defined(SDXL_WITH_CUDA_KERNELS)
  const char* path = "kernels/adamw8bit.cu";
#else
  const char* path = "torch ops on the device (no CUDA kernels built)";
#endif
  const std::vector<std::vector<int64_t>> shapes{{75, 67}, {1000}, {300000}};
  constexpr double kLr = 1e-3;
  const std::vector<double> lrs{kLr};
  std::vector<torch::Tensor> cpu = fresh_params(shapes, 13);
  std::vector<torch::Tensor> gpu = clone_params(cpu, torch::Device(torch::kCUDA));
  AdamW on_cpu(OptimizerKind::AdamW8bit, {cpu}, AdamWHyper{});
  AdamW on_gpu(OptimizerKind::AdamW8bit, {gpu}, AdamWHyper{});
  run_steps(on_cpu, cpu, 0, 10, lrs);
  run_steps(on_gpu, gpu, 0, 10, lrs);
  std::map<std::string, torch::Tensor> state_cpu, state_gpu;
  on_cpu.save_state(state_cpu, "opt");
  on_gpu.save_state(state_gpu, "opt");
  bool bitwise = true;
  int64_t differing_codes = 0, codes = 0;
  for (const auto& [key, tensor] : state_cpu) {
    const torch::Tensor& other = state_gpu.at(key);
    bitwise = bitwise && same_bits(tensor, other);
    if (tensor.scalar_type() == torch::kUInt8) {
      const torch::Tensor diff = (tensor.to(torch::kInt32) - other.to(torch::kInt32)).abs();
      CHECK(diff.max().item<int>() <= 1);
      differing_codes += (diff > 0).sum().item<int64_t>();
      codes += diff.numel();
    }
  }
  double p_diff = 0;
  for (size_t i = 0; i < shapes.size(); ++i) {
    bitwise = bitwise && same_bits(cpu[i].detach(), gpu[i].detach());
    p_diff = std::max(p_diff, (cpu[i].detach() - gpu[i].detach().cpu()).abs().max().item<double>());
  }
  std::printf("  CUDA (%s) vs CPU, 10 steps: max |dp| %.3g, codes differing %lld of %lld, bitwise %s\n", path,
              p_diff, static_cast<long long>(differing_codes), static_cast<long long>(codes), bitwise ? "yes" : "no");
  // The kernel repeats the CPU loop's float32 operations in order without fused multiply-adds:
  // expected bitwise. Asserted with margin for a CPU compiler that fuses (not x86-64's default):
  // codes one apart at most and rarely, parameters less than one step (lr) apart.
  CHECK(differing_codes <= codes / 1000);
  CHECK(p_diff <= kLr);
}

SDXL_TEST_MAIN()

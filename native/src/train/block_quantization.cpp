// Dynamic quantization maps, block-wise (de)quantization and the 8-bit AdamW
// update of one tensor (CPU loop and torch-op form).
#include "train/block_quantization.h"

#include <algorithm> // std::clamp, std::lower_bound, std::max, std::min, std::sort
#include <array>
#include <cmath>     // std::pow, std::sqrt, std::fabs
#include <cstring>   // std::memcpy: float bits
#include <limits>    // infinity: padding past the last midpoint
#include <stdexcept> // std::invalid_argument
#include <string>
#include <vector>

#include <ATen/Parallel.h> // at::parallel_for

namespace sdxl::train {

namespace {

// ---------------------------------------------------------------------------
// Map construction

constexpr int kDecades = 7;        // magnitudes 10^-6 .. 10^0
constexpr double kDecadeLow = 0.1; // each decade covers [0.1, 1] * 10^(k-6)

using MapValues = std::array<float, kDynamicMapSize>;

// Midpoints of `count` equal steps splitting [0.1, 1] (the linspace of count+1 boundaries).
std::vector<double> decade_midpoints(int count) {
  std::vector<double> midpoints;
  const double step = (1.0 - kDecadeLow) / count;
  for (int i = 0; i < count; ++i) midpoints.push_back(kDecadeLow + step * (i + 0.5));
  return midpoints;
}

MapValues build_dynamic_map(bool is_signed) {
  std::vector<double> values;
  for (int k = 0; k < kDecades; ++k) {
    const double scale = std::pow(10.0, k - (kDecades - 1));
    // The sign bit takes one bit from the fraction: 2^k codes per sign, or 2^(k+1) unsigned.
    const int count = is_signed ? (1 << k) : (1 << (k + 1));
    for (double midpoint : decade_midpoints(count)) {
      values.push_back(scale * midpoint);
      if (is_signed) values.push_back(-scale * midpoint);
    }
  }
  values.push_back(0.0);
  values.push_back(1.0);
  if (static_cast<int64_t>(values.size()) != kDynamicMapSize)
    throw std::logic_error("dynamic map: built " + std::to_string(values.size()) + " codes, expected 256");
  std::sort(values.begin(), values.end());
  MapValues map;
  for (int64_t i = 0; i < kDynamicMapSize; ++i) map[i] = static_cast<float>(values[i]);
  return map;
}

const MapValues& signed_map_values() {
  static const MapValues map = build_dynamic_map(/*is_signed=*/true);
  return map;
}

const MapValues& unsigned_map_values() {
  static const MapValues map = build_dynamic_map(/*is_signed=*/false);
  return map;
}

torch::Tensor map_tensor(const MapValues& values) {
  return torch::from_blob(const_cast<float*>(values.data()), {kDynamicMapSize}, torch::kFloat32).clone();
}

// ---------------------------------------------------------------------------
// Nearest code on the CPU

constexpr int64_t kParallelGrainBlocks = 16; // quantization blocks per task in at::parallel_for

// The code of y is the number of midpoints (map[i] + map[i+1]) * 0.5 (float32,
// as the torch-op path and the kernel compute them) strictly below y. A binary
// search costs 8 dependent loads per value; instead, the sign, exponent and top
// mantissa bits of y pick a bucket whose table entry counts the midpoints below
// it, and a fixed number of compares counts the few inside it. Same result,
// about 2x faster for the whole update.
constexpr int kBucketShift = 18;                     // keep exponent and 5 mantissa bits of |y|
constexpr uint32_t kSmallestBucketBits = 0x33800000; // 2^-24: smaller |y| share bucket 0 (no midpoint that small)
constexpr uint32_t kOneBits = 0x3F800000;            // 1.0f, the largest |y| (x / absmax)
constexpr int kBucketBase = static_cast<int>(kSmallestBucketBits >> kBucketShift);
constexpr int kBuckets = static_cast<int>(kOneBits >> kBucketShift) - kBucketBase + 1;
constexpr int kBucketScan = 4; // most midpoints one bucket of one sign holds (checked when built)

struct CodeFinder {
  std::array<float, kDynamicMapSize - 1 + kBucketScan> midpoints; // ascending, padded with +inf
  std::array<uint8_t, kBuckets> below_positive; // midpoints < the bucket's smallest |y|
  std::array<uint8_t, kBuckets> below_negative; // midpoints <= -(the bucket's bound above |y|)
};

float float_from_bits(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

// Bucket q holds |y| in [low(q), low(q + 1)); bucket 0 starts at 0.
float bucket_low(int q) { return q == 0 ? 0.0f : float_from_bits(static_cast<uint32_t>(q + kBucketBase) << kBucketShift); }

CodeFinder build_code_finder(const MapValues& map) {
  CodeFinder finder;
  finder.midpoints.fill(std::numeric_limits<float>::infinity());
  for (int64_t i = 0; i + 1 < kDynamicMapSize; ++i) finder.midpoints[i] = (map[i] + map[i + 1]) * 0.5f;
  const auto first = finder.midpoints.begin(), last = first + (kDynamicMapSize - 1);
  for (int q = 0; q < kBuckets; ++q) {
    const float low = bucket_low(q), high = bucket_low(q + 1);
    const auto positive = std::lower_bound(first, last, low);   // first midpoint >= low
    const auto negative = std::upper_bound(first, last, -high); // first midpoint > -high
    finder.below_positive[q] = static_cast<uint8_t>(positive - first);
    finder.below_negative[q] = static_cast<uint8_t>(negative - first);
    const auto inside_positive = std::lower_bound(first, last, high) - positive;   // in [low, high)
    const auto inside_negative = std::upper_bound(first, last, -low) - negative;   // in (-high, -low]
    if (inside_positive > kBucketScan || inside_negative > kBucketScan)
      throw std::logic_error("dynamic map: a code bucket holds more than kBucketScan midpoints");
  }
  return finder;
}

const CodeFinder& signed_code_finder() {
  static const CodeFinder finder = build_code_finder(signed_map_values());
  return finder;
}

const CodeFinder& unsigned_code_finder() {
  static const CodeFinder finder = build_code_finder(unsigned_map_values());
  return finder;
}

// The number of midpoints strictly below y, for y in [-1, 1] (NaN gives an unspecified code).
inline uint8_t nearest_code(const CodeFinder& finder, float y) {
  uint32_t bits;
  std::memcpy(&bits, &y, sizeof(bits));
  const int q = std::clamp(static_cast<int>((bits & 0x7FFFFFFFu) >> kBucketShift) - kBucketBase, 0, kBuckets - 1);
  const int below = (bits >> 31) != 0 ? finder.below_negative[q] : finder.below_positive[q];
  const float* next = finder.midpoints.data() + below;
  int inside = 0;
  for (int k = 0; k < kBucketScan; ++k) inside += next[k] < y ? 1 : 0; // past the bucket every compare fails
  return static_cast<uint8_t>(below + inside);
}

void check_map(const torch::Tensor& map, const char* caller) {
  if (!map.defined() || map.dim() != 1 || map.size(0) != kDynamicMapSize || map.scalar_type() != torch::kFloat32)
    throw std::invalid_argument(std::string(caller) + ": map must be a float32 [256] tensor");
}

void check_block(int64_t block, const char* caller) {
  if (block <= 0) throw std::invalid_argument(std::string(caller) + ": block must be positive");
}

// [n] -> [blocks, block], zero padded at the end.
torch::Tensor padded_blocks(const torch::Tensor& flat, int64_t block) {
  const int64_t n = flat.numel();
  const int64_t padding = block_count(n, block) * block - n;
  return torch::constant_pad_nd(flat, {0, padding}, 0).view({-1, block}); // [blocks, block]
}

// Torch-op quantization of a flat float32 tensor: per-block absmax, then the nearest code.
BlockwiseCodes quantize_flat_torch_ops(const torch::Tensor& flat, const torch::Tensor& map, int64_t block) {
  const int64_t n = flat.numel();
  const torch::Tensor blocks = padded_blocks(flat, block);                               // [blocks, block]
  const torch::Tensor absmax = blocks.abs().amax(/*dim=*/1);                              // [blocks]
  const torch::Tensor divisor = torch::where(absmax > 0, absmax, torch::ones_like(absmax)); // [blocks]
  const torch::Tensor scaled = blocks / divisor.unsqueeze(1);                             // [blocks, block]
  const torch::Tensor midpoints = (map.slice(0, 0, -1) + map.slice(0, 1)) * 0.5;          // [255]
  // bucketize (right=false) counts the boundaries strictly below each value.
  const torch::Tensor codes = torch::bucketize(scaled, midpoints, /*out_int32=*/true, /*right=*/false); // [blocks, block]
  return {codes.view({-1}).slice(0, 0, n).to(torch::kUInt8).contiguous(), absmax.contiguous()};
}

torch::Tensor dequantize_flat_torch_ops(const torch::Tensor& codes, const torch::Tensor& absmax,
                                        const torch::Tensor& map, int64_t block) {
  const int64_t n = codes.numel();
  const torch::Tensor values = map.index_select(0, codes.to(torch::kInt64));  // [n]
  const torch::Tensor scaled = padded_blocks(values, block) * absmax.unsqueeze(1); // [blocks, block]
  return scaled.view({-1}).slice(0, 0, n);                                    // [n]
}

void check_8bit_operands(const torch::Tensor& param, const torch::Tensor& grad, const Blockwise8bitState& state,
                         int64_t block, const char* caller) {
  check_block(block, caller);
  const int64_t n = param.numel();
  const int64_t blocks = block_count(n, block);
  const bool ok = param.scalar_type() == torch::kFloat32 && grad.scalar_type() == torch::kFloat32 &&
                  grad.numel() == n && param.is_contiguous() &&
                  state.exp_avg_codes.numel() == n && state.exp_avg_sq_codes.numel() == n &&
                  state.exp_avg_codes.scalar_type() == torch::kUInt8 &&
                  state.exp_avg_sq_codes.scalar_type() == torch::kUInt8 &&
                  state.exp_avg_absmax.numel() == blocks && state.exp_avg_sq_absmax.numel() == blocks &&
                  state.exp_avg_absmax.scalar_type() == torch::kFloat32 &&
                  state.exp_avg_sq_absmax.scalar_type() == torch::kFloat32;
  if (!ok)
    throw std::invalid_argument(std::string(caller) +
                                ": param/grad must be float32 of one numel (param contiguous) and the state "
                                "must hold uint8 codes [n] and float32 absmax [ceil(n / block)]");
}

} // namespace

// ---------------------------------------------------------------------------
// Maps

const torch::Tensor& signed_dynamic_map() {
  static const torch::Tensor map = map_tensor(signed_map_values());
  return map;
}

const torch::Tensor& unsigned_dynamic_map() {
  static const torch::Tensor map = map_tensor(unsigned_map_values());
  return map;
}

// ---------------------------------------------------------------------------
// Block-wise quantization

int64_t block_count(int64_t numel, int64_t block) { return (numel + block - 1) / block; }

BlockwiseCodes quantize_blockwise(const torch::Tensor& x, const torch::Tensor& map, int64_t block) {
  check_map(map, "quantize_blockwise");
  check_block(block, "quantize_blockwise");
  if (x.scalar_type() != torch::kFloat32) throw std::invalid_argument("quantize_blockwise: x must be float32");
  torch::NoGradGuard no_grad;
  return quantize_flat_torch_ops(x.reshape({-1}), map.to(x.device()), block);
}

torch::Tensor dequantize_blockwise(const BlockwiseCodes& quantized, const torch::Tensor& map, int64_t block) {
  check_map(map, "dequantize_blockwise");
  check_block(block, "dequantize_blockwise");
  const int64_t n = quantized.codes.numel();
  if (quantized.codes.scalar_type() != torch::kUInt8 || quantized.absmax.scalar_type() != torch::kFloat32 ||
      quantized.absmax.numel() != block_count(n, block))
    throw std::invalid_argument("dequantize_blockwise: codes must be uint8 [n], absmax float32 [ceil(n / block)]");
  torch::NoGradGuard no_grad;
  return dequantize_flat_torch_ops(quantized.codes.reshape({-1}), quantized.absmax.reshape({-1}),
                                   map.to(quantized.codes.device()), block);
}

torch::Tensor nearest_codes_cpu(const torch::Tensor& y, bool is_signed_map) {
  if (y.scalar_type() != torch::kFloat32 || !y.device().is_cpu())
    throw std::invalid_argument("nearest_codes_cpu: y must be a float32 CPU tensor");
  const torch::Tensor flat = y.reshape({-1}).contiguous();
  const CodeFinder& finder = is_signed_map ? signed_code_finder() : unsigned_code_finder();
  torch::Tensor codes = torch::empty({flat.numel()}, torch::kUInt8); // [n]
  const float* values = flat.data_ptr<float>();
  uint8_t* out = codes.data_ptr<uint8_t>();
  for (int64_t i = 0; i < flat.numel(); ++i) out[i] = nearest_code(finder, values[i]);
  return codes;
}

// ---------------------------------------------------------------------------
// 8-bit AdamW

AdamWStepConstants adamw_step_constants(double lr, double beta1, double beta2, double eps,
                                        double weight_decay, int64_t step) {
  if (step < 1) throw std::invalid_argument("adamw_step_constants: step counts from 1");
  const double bias_correction1 = 1.0 - std::pow(beta1, static_cast<double>(step));
  const double bias_correction2 = 1.0 - std::pow(beta2, static_cast<double>(step));
  AdamWStepConstants constants;
  constants.beta1 = static_cast<float>(beta1);
  constants.one_minus_beta1 = static_cast<float>(1.0 - beta1);
  constants.beta2 = static_cast<float>(beta2);
  constants.one_minus_beta2 = static_cast<float>(1.0 - beta2);
  constants.eps = static_cast<float>(eps);
  constants.decay = static_cast<float>(1.0 - lr * weight_decay);
  constants.step_size = static_cast<float>(lr / bias_correction1);
  constants.bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
  return constants;
}

Blockwise8bitState zero_8bit_state(int64_t numel, torch::Device device, int64_t block) {
  check_block(block, "zero_8bit_state");
  const auto codes = torch::TensorOptions().dtype(torch::kUInt8).device(device);
  const auto floats = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  const int64_t blocks = block_count(numel, block);
  return {torch::full({numel}, kSignedMapZeroCode, codes), torch::zeros({blocks}, floats),
          torch::full({numel}, kUnsignedMapZeroCode, codes), torch::zeros({blocks}, floats)};
}

void adamw8bit_update_cpu(torch::Tensor& param, const torch::Tensor& grad, Blockwise8bitState& state,
                          const AdamWStepConstants& c, int64_t block) {
  check_8bit_operands(param, grad, state, block, "adamw8bit_update_cpu");
  if (!param.device().is_cpu() || !grad.device().is_cpu() || !state.exp_avg_codes.device().is_cpu())
    throw std::invalid_argument("adamw8bit_update_cpu: tensors must be on the CPU");
  const torch::Tensor grad_flat = grad.contiguous();
  const int64_t n = param.numel();
  float* p = param.data_ptr<float>();
  const float* g = grad_flat.data_ptr<float>();
  uint8_t* m_codes = state.exp_avg_codes.data_ptr<uint8_t>();
  uint8_t* v_codes = state.exp_avg_sq_codes.data_ptr<uint8_t>();
  float* m_absmax = state.exp_avg_absmax.data_ptr<float>();
  float* v_absmax = state.exp_avg_sq_absmax.data_ptr<float>();
  const MapValues& m_map = signed_map_values();
  const MapValues& v_map = unsigned_map_values();
  const CodeFinder& m_finder = signed_code_finder();
  const CodeFinder& v_finder = unsigned_code_finder();

  at::parallel_for(0, block_count(n, block), kParallelGrainBlocks, [&](int64_t first, int64_t last) {
    std::vector<float> m_new(block), v_new(block); // one block's updated moments before requantization
    for (int64_t b = first; b < last; ++b) {
      const int64_t begin = b * block;
      const int64_t count = std::min(block, n - begin);
      const float m_scale = m_absmax[b], v_scale = v_absmax[b];
      float m_max = 0.0f, v_max = 0.0f;
      for (int64_t j = 0; j < count; ++j) {
        const int64_t i = begin + j;
        const float gi = g[i];
        const float m = c.beta1 * (m_map[m_codes[i]] * m_scale) + c.one_minus_beta1 * gi;
        const float v = c.beta2 * (v_map[v_codes[i]] * v_scale) + c.one_minus_beta2 * (gi * gi);
        const float denom = std::sqrt(v) / c.bias_correction2_sqrt + c.eps;
        const float decayed = p[i] * c.decay;
        p[i] = decayed - c.step_size * (m / denom);
        m_new[j] = m;
        v_new[j] = v;
        m_max = std::max(m_max, std::fabs(m));
        v_max = std::max(v_max, std::fabs(v));
      }
      const float m_divisor = m_max > 0.0f ? m_max : 1.0f;
      const float v_divisor = v_max > 0.0f ? v_max : 1.0f;
      for (int64_t j = 0; j < count; ++j) {
        m_codes[begin + j] = nearest_code(m_finder, m_new[j] / m_divisor);
        v_codes[begin + j] = nearest_code(v_finder, v_new[j] / v_divisor);
      }
      m_absmax[b] = m_max;
      v_absmax[b] = v_max;
    }
  });
}

void adamw8bit_update_torch_ops(torch::Tensor& param, const torch::Tensor& grad, Blockwise8bitState& state,
                                const AdamWStepConstants& c, const torch::Tensor& signed_map,
                                const torch::Tensor& unsigned_map, int64_t block) {
  check_8bit_operands(param, grad, state, block, "adamw8bit_update_torch_ops");
  check_map(signed_map, "adamw8bit_update_torch_ops");
  check_map(unsigned_map, "adamw8bit_update_torch_ops");
  torch::NoGradGuard no_grad;
  const torch::Tensor g = grad.reshape({-1});                                                     // [n]
  torch::Tensor m = dequantize_flat_torch_ops(state.exp_avg_codes, state.exp_avg_absmax, signed_map, block);
  torch::Tensor v = dequantize_flat_torch_ops(state.exp_avg_sq_codes, state.exp_avg_sq_absmax, unsigned_map, block);
  // Same operations in the same order as the CPU loop; each op rounds to float32.
  m = m.mul(c.beta1).add_(g.mul(c.one_minus_beta1));                                              // [n]
  v = v.mul(c.beta2).add_(g.mul(g).mul_(c.one_minus_beta2));                                      // [n]
  const torch::Tensor denom = v.sqrt().div_(c.bias_correction2_sqrt).add_(c.eps);                 // [n]
  torch::Tensor p = param.view({-1});                                                             // [n]
  p.mul_(c.decay).sub_(m.div(denom).mul_(c.step_size));
  BlockwiseCodes m_codes = quantize_flat_torch_ops(m, signed_map, block);
  BlockwiseCodes v_codes = quantize_flat_torch_ops(v, unsigned_map, block);
  state.exp_avg_codes.copy_(m_codes.codes);
  state.exp_avg_absmax.copy_(m_codes.absmax);
  state.exp_avg_sq_codes.copy_(v_codes.codes);
  state.exp_avg_sq_absmax.copy_(v_codes.absmax);
}

} // namespace sdxl::train

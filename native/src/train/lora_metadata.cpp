// LoRA header metadata (see lora_metadata.h). Key names and value formats:
// kohya-ss/sd-scripts train_network.py (the metadata dict, then
// {k: str(v)}; ss_training_finished_at / ss_steps set when saving),
// library/sdxl_model_util.py (MODEL_VERSION_SDXL_BASE_V1_0 = "sdxl_base_v1-0"),
// library/model_util.py get_model_version_str_for_sd1_sd2 ("sd_v1", "sd_v2", plus
// "_v" for v-parameterization), library/sai_model_spec.py (architecture
// "stable-diffusion-v1/lora", "stable-diffusion-v2-512/lora",
// "stable-diffusion-v2-768-v/lora" or "stable-diffusion-xl-v1-base/lora";
// implementation "https://github.com/Stability-AI/generative-models" for an SDXL
// LoRA, "diffusers" for SD 1.x/2.x; resolution "WxH"; prediction_type "epsilon" or
// "v"; encoder_layer = clip skip). SHA-256: FIPS 180-4.
#include "train/lora_metadata.h"

#include <algorithm> // std::min
#include <cmath>     // std::isnan, std::isinf, std::signbit, std::floor
#include <cstdio>    // std::snprintf
#include <cstdlib>   // std::strtod
#include <cstring>   // std::memcpy
#include <ctime>     // gmtime_r

namespace sdxl::train {
namespace {

// ----------------------------------------------------------------------------
// Values kohya and ModelSpec write for a LoRA of each family

constexpr const char* kNetworkModule = "networks.lora";
constexpr const char* kModelSpecVersion = "1.0.0"; // what the LoRAs in circulation carry

std::string base_model_version(const BaseModelTraits& base) {
  if (base.family == models::ModelFamily::Sdxl) return "sdxl_base_v1-0";
  return std::string(base.family == models::ModelFamily::Sd2 ? "sd_v2" : "sd_v1") + (base.v_prediction ? "_v" : "");
}

// The family's ModelSpec architecture; a LoRA's ends in "/lora".
std::string modelspec_architecture(const BaseModelTraits& base, bool lora = true) {
  const std::string suffix = lora ? "/lora" : "";
  if (base.family == models::ModelFamily::Sdxl) return "stable-diffusion-xl-v1-base" + suffix;
  if (base.family == models::ModelFamily::Sd2)
    return (base.v_prediction ? "stable-diffusion-v2-768-v" : "stable-diffusion-v2-512") + suffix;
  return "stable-diffusion-v1" + suffix;
}

std::string modelspec_implementation(const BaseModelTraits& base) {
  return base.family == models::ModelFamily::Sdxl ? "https://github.com/Stability-AI/generative-models" : "diffusers";
}

const char* python_bool(bool value) { return value ? "True" : "False"; }

// kohya's defaults for these are None; our 0 means the same "off".
std::string float_or_none(double value) { return value == 0 ? "None" : python_float(value); }

// --mixed_precision as kohya names it.
std::string mixed_precision(const std::string& dtype) {
  if (dtype == "float16") return "fp16";
  if (dtype == "bfloat16") return "bf16";
  return "no";
}

// kohya writes the optimizer class as module.Class(user args); ours are the
// AdamW and 8-bit AdamW of those classes' update rules.
std::string optimizer_description(const TrainOptions& options) {
  std::string name = options.optimizer;
  if (options.optimizer == "adamw8bit") name = "bitsandbytes.optim.adamw.AdamW8bit";
  if (options.optimizer == "adamw") name = "torch.optim.adamw.AdamW";
  return name + "(weight_decay=" + python_float(options.weight_decay) + ",betas=(" +
         python_float(options.adam_beta1) + ", " + python_float(options.adam_beta2) +
         "),eps=" + python_float(options.adam_epsilon) + ")";
}

std::string base_name(const std::string& path) {
  std::string trimmed = path;
  while (trimmed.size() > 1 && trimmed.back() == '/') trimmed.pop_back();
  const size_t slash = trimmed.rfind('/');
  return slash == std::string::npos ? trimmed : trimmed.substr(slash + 1);
}

// ----------------------------------------------------------------------------
// SHA-256 constants (FIPS 180-4 section 4.2.2 and 5.3.3)

constexpr uint32_t kRoundConstants[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};
constexpr uint32_t kInitialState[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                       0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

uint32_t rotate_right(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

void update_u64(Sha256& hash, uint64_t value) {
  uint8_t bytes[8];
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<uint8_t>(value >> (8 * i)); // little-endian
  hash.update(bytes, sizeof bytes);
}

void update_framed(Sha256& hash, const void* data, size_t size) {
  update_u64(hash, size);
  hash.update(data, size);
}

} // namespace

// ----------------------------------------------------------------------------
// SHA-256

Sha256::Sha256() { std::memcpy(state_, kInitialState, sizeof state_); }

void Sha256::compress(const uint8_t* block) {
  uint32_t w[64];
  for (int i = 0; i < 16; ++i)
    w[i] = (uint32_t(block[4 * i]) << 24) | (uint32_t(block[4 * i + 1]) << 16) | (uint32_t(block[4 * i + 2]) << 8) |
           uint32_t(block[4 * i + 3]);
  for (int i = 16; i < 64; ++i) {
    const uint32_t s0 = rotate_right(w[i - 15], 7) ^ rotate_right(w[i - 15], 18) ^ (w[i - 15] >> 3);
    const uint32_t s1 = rotate_right(w[i - 2], 17) ^ rotate_right(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  uint32_t a = state_[0], b = state_[1], c = state_[2], d = state_[3];
  uint32_t e = state_[4], f = state_[5], g = state_[6], h = state_[7];
  for (int i = 0; i < 64; ++i) {
    const uint32_t sum1 = rotate_right(e, 6) ^ rotate_right(e, 11) ^ rotate_right(e, 25);
    const uint32_t choose = (e & f) ^ (~e & g);
    const uint32_t t1 = h + sum1 + choose + kRoundConstants[i] + w[i];
    const uint32_t sum0 = rotate_right(a, 2) ^ rotate_right(a, 13) ^ rotate_right(a, 22);
    const uint32_t majority = (a & b) ^ (a & c) ^ (b & c);
    const uint32_t t2 = sum0 + majority;
    h = g;
    g = f;
    f = e;
    e = d + t1;
    d = c;
    c = b;
    b = a;
    a = t1 + t2;
  }
  state_[0] += a, state_[1] += b, state_[2] += c, state_[3] += d;
  state_[4] += e, state_[5] += f, state_[6] += g, state_[7] += h;
}

void Sha256::update(const void* data, size_t size) {
  const auto* bytes = static_cast<const uint8_t*>(data);
  total_bytes_ += size;
  while (size > 0) {
    const size_t take = std::min(size, sizeof buffer_ - buffered_);
    std::memcpy(buffer_ + buffered_, bytes, take);
    buffered_ += take;
    bytes += take;
    size -= take;
    if (buffered_ == sizeof buffer_) {
      compress(buffer_);
      buffered_ = 0;
    }
  }
}

std::string Sha256::hex_digest() {
  const uint64_t bit_length = total_bytes_ * 8;
  const uint8_t one_bit = 0x80, zero = 0;
  update(&one_bit, 1);
  while (buffered_ != 56) update(&zero, 1);
  uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<uint8_t>(bit_length >> (56 - 8 * i)); // big-endian
  update(length, sizeof length);
  static const char* kHex = "0123456789abcdef";
  std::string hex;
  for (uint32_t word : state_)
    for (int shift = 28; shift >= 0; shift -= 4) hex.push_back(kHex[(word >> shift) & 0xf]);
  return hex;
}

// ----------------------------------------------------------------------------
// Formatting

std::string python_float(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  if (value == 0) return std::signbit(value) ? "-0.0" : "0.0";
  // The fewest significant digits that read back as the same double.
  char buffer[40];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buffer, sizeof buffer, "%.*e", precision - 1, value);
    if (std::strtod(buffer, nullptr) == value) break;
  }
  const std::string text = buffer; // [-]d[.ddd]e[+-]XX
  const bool negative = text[0] == '-';
  const size_t e = text.find('e');
  const int exponent = std::atoi(text.c_str() + e + 1);
  std::string digits;
  for (size_t i = negative ? 1 : 0; i < e; ++i)
    if (text[i] != '.') digits.push_back(text[i]);
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  // Python's repr switches to exponent form when the decimal point would sit
  // 4+ places before the first digit or 16+ places after it.
  const int point = exponent + 1; // digits before the decimal point
  std::string out;
  if (point <= -4 || point > 16) {
    out = digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char suffix[16];
    std::snprintf(suffix, sizeof suffix, "e%c%02d", exponent < 0 ? '-' : '+', exponent < 0 ? -exponent : exponent);
    out += suffix;
  } else if (point <= 0) {
    out = "0." + std::string(static_cast<size_t>(-point), '0') + digits;
  } else if (static_cast<size_t>(point) >= digits.size()) {
    out = digits + std::string(static_cast<size_t>(point) - digits.size(), '0') + ".0";
  } else {
    out = digits.substr(0, static_cast<size_t>(point)) + "." + digits.substr(static_cast<size_t>(point));
  }
  return negative ? "-" + out : out;
}

std::string iso8601_utc(double unix_seconds) {
  const std::time_t seconds = static_cast<std::time_t>(std::floor(unix_seconds));
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char buffer[40];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%S+00:00", &utc);
  return buffer;
}

// ----------------------------------------------------------------------------
// Dataset hash and metadata

std::string dataset_hash(const std::vector<TrainImage>& images) {
  Sha256 hash;
  update_u64(hash, images.size());
  for (const auto& image : images) {
    update_framed(hash, image.name.data(), image.name.size());
    update_u64(hash, static_cast<uint64_t>(image.width));
    update_u64(hash, static_cast<uint64_t>(image.height));
    // The pixels, or what names them when the loader gives them (the hash of the same
    // pixels differs between the two: a run resumes with its images given the same way).
    if (image.rgb.empty()) {
      update_framed(hash, image.key.data(), image.key.size());
    } else {
      update_framed(hash, image.rgb.data(), image.rgb.size());
    }
    update_framed(hash, image.caption.data(), image.caption.size());
  }
  return hash.hex_digest();
}

std::map<std::string, std::string> lora_metadata(const TrainOptions& options, const std::string& dataset_hash,
                                                 int64_t steps_done, const TrainingTimes& times,
                                                 const BaseModelTraits& base) {
  const std::string resolution = std::to_string(options.resolution);
  const int64_t train_images = static_cast<int64_t>(options.images.size()) * options.repeats; // with repeats
  std::map<std::string, std::string> metadata = {
      // kohya sd-scripts
      {"ss_training_started_at", python_float(times.started_at)},
      {"ss_training_finished_at", python_float(times.finished_at)},
      {"ss_output_name", options.output_name},
      {"ss_sd_model_name", base_name(options.model.model_path)},
      {"ss_base_model_version", base_model_version(base)},
      {"ss_v2", python_bool(base.family == models::ModelFamily::Sd2)},
      {"ss_v_parameterization", python_bool(base.v_prediction)},
      {"ss_zero_terminal_snr", python_bool(base.zero_terminal_snr)},
      {"ss_clip_skip", options.clip_skip > 0 ? std::to_string(options.clip_skip) : "None"},
      {"ss_network_module", kNetworkModule},
      {"ss_network_dim", std::to_string(options.rank)},
      {"ss_network_alpha", python_float(options.alpha)},
      {"ss_network_dropout", float_or_none(options.dropout)},
      {"ss_learning_rate", python_float(options.unet_lr)},
      {"ss_unet_lr", python_float(options.unet_lr)},
      {"ss_text_encoder_lr", options.train_text_encoder ? python_float(options.text_encoder_lr) : "None"},
      {"ss_lr_scheduler", options.lr_scheduler},
      {"ss_lr_warmup_steps", std::to_string(options.lr_warmup_steps)},
      {"ss_max_train_steps", std::to_string(options.max_steps)},
      {"ss_steps", std::to_string(steps_done)},
      {"ss_optimizer", optimizer_description(options)},
      {"ss_max_grad_norm", python_float(options.max_grad_norm > 0 ? options.max_grad_norm : 0.0)},
      {"ss_mixed_precision", mixed_precision(options.model.runtime.dtype)},
      {"ss_full_fp16", python_bool(false)}, // LoRA weights stay float32 masters
      {"ss_seed", std::to_string(options.seed)},
      {"ss_min_snr_gamma", float_or_none(options.min_snr_gamma)},
      {"ss_noise_offset", float_or_none(options.noise_offset)},
      {"ss_caption_dropout_rate", python_float(options.caption_dropout)},
      {"ss_num_train_images", std::to_string(train_images)},
      {"ss_num_reg_images", std::to_string(options.class_images.size())},
      {"ss_prior_loss_weight", python_float(options.prior_loss_weight)},
      {"ss_batch_size_per_device", std::to_string(options.batch_size)},
      {"ss_total_batch_size", std::to_string(options.batch_size * options.gradient_accumulation)},
      {"ss_gradient_accumulation_steps", std::to_string(options.gradient_accumulation)},
      {"ss_gradient_checkpointing", python_bool(options.gradient_checkpointing)},
      {"ss_resolution", "(" + resolution + ", " + resolution + ")"},
      {"ss_enable_bucket", python_bool(true)},
      {"ss_min_bucket_reso", std::to_string(options.min_bucket_side)},
      {"ss_max_bucket_reso", std::to_string(options.max_bucket_side)},
      {"ss_flip_aug", python_bool(options.random_flip)},
      // Stability AI ModelSpec
      {"modelspec.sai_model_spec", kModelSpecVersion},
      {"modelspec.architecture", modelspec_architecture(base)},
      {"modelspec.implementation", modelspec_implementation(base)},
      {"modelspec.title", options.output_name},
      {"modelspec.resolution", resolution + "x" + resolution},
      {"modelspec.date", iso8601_utc(times.finished_at)},
      {"modelspec.prediction_type", base.v_prediction ? "v" : "epsilon"},
  };
  if (options.clip_skip > 0) metadata["modelspec.encoder_layer"] = std::to_string(options.clip_skip);
  if (!options.trigger_phrase.empty()) metadata["modelspec.trigger_phrase"] = options.trigger_phrase;
  if (!dataset_hash.empty()) metadata[kDatasetHashKey] = dataset_hash;
  for (const auto& [key, value] : options.metadata) metadata[key] = value;
  return metadata;
}

std::map<std::string, std::string> model_metadata(const TrainOptions& options, const std::string& dataset_hash,
                                                  const BaseModelTraits& base) {
  const std::string resolution = std::to_string(options.resolution);
  std::map<std::string, std::string> metadata = {
      {"modelspec.sai_model_spec", kModelSpecVersion},
      {"modelspec.architecture", modelspec_architecture(base, /*lora=*/false)},
      {"modelspec.implementation", modelspec_implementation(base)},
      {"modelspec.title", options.output_name},
      {"modelspec.resolution", resolution + "x" + resolution},
      {"modelspec.prediction_type", base.v_prediction ? "v" : "epsilon"},
  };
  if (!options.trigger_phrase.empty()) metadata["modelspec.trigger_phrase"] = options.trigger_phrase;
  if (!dataset_hash.empty()) metadata[kDatasetHashKey] = dataset_hash;
  for (const auto& [key, value] : options.metadata) metadata[key] = value;
  return metadata;
}

} // namespace sdxl::train

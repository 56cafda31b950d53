// Rules for TrainOptions; see options_check.h.
#include "train/options_check.h"

#include "dist/process_group.h"  // dist::has_backend_for
#include "engine/runtime.h"       // parse_device
#include "metrics/evaluator.h"    // metric_network
#include "sample/conditioning.h" // sample::check_clip_skip

#include <cmath>     // std::isfinite
#include <optional>  // the first device
#include <set>       // GPUs named once
#include <stdexcept> // std::invalid_argument
#include <string>

namespace sdxl::train {

namespace {
constexpr int64_t kMaxFinalImages = 64; // per validation prompt

[[noreturn]] void refuse(const std::string& field, const std::string& why) {
  throw std::invalid_argument(field + ": " + why);
}

void require_positive(const std::string& field, int64_t value) {
  if (value <= 0) refuse(field, "must be at least 1, got " + std::to_string(value));
}

void require_non_negative(const std::string& field, double value) {
  if (!std::isfinite(value) || value < 0) refuse(field, "must be a finite number >= 0, got " + std::to_string(value));
}

void require_probability(const std::string& field, double value) {
  if (!std::isfinite(value) || value < 0 || value >= 1) refuse(field, "must be in [0, 1), got " + std::to_string(value));
}

void require_one_of(const std::string& field, const std::string& value, std::initializer_list<const char*> allowed) {
  std::string list;
  for (const char* name : allowed) {
    if (value == name) return;
    list += (list.empty() ? "" : ", ") + std::string(name);
  }
  refuse(field, "'" + value + "' is not one of " + list);
}
// Several devices: one kind, each GPU once (the CPU may stand for several ranks: tests),
// a backend for them in this build, and a batch that splits evenly over them.
void check_devices(const TrainOptions& o) {
  require_positive("collective_timeout_ms", o.collective_timeout_ms);
  if (o.process_world_size < 0) refuse("process_world_size", "must be >= 0");
  if (o.process_world_size > 1) {
    if (o.devices.size() > 1)
      refuse("devices", "a rank of several processes trains on model.runtime.device alone; leave devices empty");
    if (o.process_rank < 0 || o.process_rank >= o.process_world_size)
      refuse("process_rank", std::to_string(o.process_rank) + " is not a rank of " + std::to_string(o.process_world_size));
    if (o.store_port < 1 || o.store_port > 65535) refuse("store_port", "must be a TCP port, 1 to 65535");
    if (o.store_host.empty()) refuse("store_host", "is required");
  }
  const bool processes = o.process_world_size > 1;
  if (o.zero_stage < 0 || o.zero_stage > 2) refuse("zero_stage", "must be 0, 1 or 2");
  require_positive("bucket_bytes", o.bucket_bytes);
  if (!processes && o.devices.size() <= 1) {
    if (o.zero_stage > 0)
      refuse("zero_stage", std::to_string(o.zero_stage) + " shards over several ranks: give two or more devices, or 0");
    return;
  }
  const std::vector<std::string> devices = processes ? std::vector<std::string>{o.model.runtime.device} : o.devices;
  const int64_t count = processes ? o.process_world_size : static_cast<int64_t>(o.devices.size());
  std::set<std::string> gpus;
  std::optional<torch::Device> first;
  for (size_t i = 0; i < devices.size(); ++i) {
    const std::string field = processes ? "model.runtime.device" : "devices[" + std::to_string(i) + "]";
    torch::Device device = torch::kCPU;
    try {
      device = parse_device(devices[i]);
    } catch (const std::exception& error) {
      refuse(field, error.what());
    }
    if (first.has_value() && device.type() != first->type())
      refuse(field, "'" + devices[i] + "' is not the kind of device '" + devices[0] + "' is: one run trains on one kind");
    if (!first.has_value()) first = device;
    if (device.is_cuda() && !gpus.insert("cuda:" + std::to_string(device.has_index() ? device.index() : 0)).second)
      refuse(field, "'" + devices[i] + "' is named twice: each GPU takes one rank");
    if (!dist::has_backend_for(device))
      refuse(field, "this engine has no c10d backend for '" + devices[i] + "' (built with: " + dist::backends_built() +
                        "): Gloo needs Debian's libgloo-dev at build time, NCCL a CUDA libtorch and nccl.h");
  }
  if (o.batch_size % count != 0)
    refuse("batch_size", std::to_string(o.batch_size) + " images do not split evenly over " + std::to_string(count) +
                             " devices (each takes batch_size / devices of every batch): use a multiple of " +
                             std::to_string(count));
  if (o.dropout > 0)
    refuse("dropout", "is not supported on several devices: each rank would draw the dropout masks of its share "
                      "only, so the run would neither match a one-device run nor resume exactly");
}

// An image holds its pixels, or leaves them to the loader.
bool pixels_fit(const TrainImage& image, const TrainOptions& o) {
  if (image.rgb.empty() && o.load_pixels) return true;
  return image.rgb.size() == static_cast<size_t>(image.width * image.height * 3);
}

} // namespace

void check_train_options(const TrainOptions& o) {
  if (o.model.model_path.empty()) refuse("model.model_path", "is required");
  require_one_of("model.runtime.dtype", o.model.runtime.dtype, {"float32", "bfloat16", "float16"});
  require_one_of("vae_dtype", o.vae_dtype, {"float32", "bfloat16"});
  require_one_of("save_dtype", o.save_dtype, {"float32", "float16", "bfloat16"});
  if (o.output_dir.empty()) refuse("output_dir", "is required");
  if (o.output_name.empty() || o.output_name.find('/') != std::string::npos)
    refuse("output_name", "must be a file name without '/'");

  if (o.images.empty()) refuse("images", "at least one image is required");
  for (const auto& [list, name] : {std::pair{&o.images, "images"}, std::pair{&o.validation_images, "validation_images"}}) {
    for (size_t i = 0; i < list->size(); ++i) {
      const TrainImage& image = (*list)[i];
      const std::string field = std::string(name) + "[" + std::to_string(i) + "]";
      if (image.width <= 0 || image.height <= 0) refuse(field, "width and height must be positive");
      if (!pixels_fit(image, o))
        refuse(field + ".rgb", "must hold width * height * 3 bytes (" + std::to_string(image.width * image.height * 3) +
                                   "), got " + std::to_string(image.rgb.size()));
      if (image.caption.find_first_not_of(" \t\r\n") == std::string::npos) refuse(field + ".caption", "is empty");
    }
  }

  for (size_t i = 0; i < o.class_images.size(); ++i) {
    const TrainImage& image = o.class_images[i];
    const std::string field = "class_images[" + std::to_string(i) + "]";
    if (image.width <= 0 || image.height <= 0) refuse(field, "width and height must be positive");
    if (!pixels_fit(image, o)) refuse(field + ".rgb", "must hold width * height * 3 bytes");
    if (image.width != o.class_images[0].width || image.height != o.class_images[0].height)
      refuse(field, "class images must all have one size (they are batched together)");
    if (image.caption.find_first_not_of(" \t\r\n") == std::string::npos) refuse(field + ".caption", "is empty");
  }
  if (!std::isfinite(o.prior_loss_weight) || o.prior_loss_weight < 0) refuse("prior_loss_weight", "must be >= 0");

  require_positive("bucket_step", o.bucket_step);
  require_positive("resolution", o.resolution);
  if (o.resolution % o.bucket_step != 0)
    refuse("resolution", "must be a multiple of bucket_step (" + std::to_string(o.bucket_step) + "), got " +
                             std::to_string(o.resolution));
  if (o.min_bucket_side > o.resolution || o.max_bucket_side < o.resolution)
    refuse("resolution", "must lie between min_bucket_side and max_bucket_side");
  if (o.min_resolution < 0 || o.min_resolution > o.resolution || o.min_resolution % o.bucket_step != 0)
    refuse("min_resolution", "must be 0 or a multiple of bucket_step (" + std::to_string(o.bucket_step) +
                                 ") up to resolution (" + std::to_string(o.resolution) + "), got " +
                                 std::to_string(o.min_resolution));
  require_positive("repeats", o.repeats);
  require_probability("caption_dropout", o.caption_dropout);

  require_one_of("method", o.method, {"lora", "full"});
  const bool full = o.method == "full";
  if (o.full_bf16 && !full) refuse("full_bf16", "applies to method full only (LoRA weights are float32 masters)");
  if (o.full_bf16 && o.model.runtime.dtype != "bfloat16")
    refuse("full_bf16", "needs model.runtime.dtype bfloat16 (the weights are trained in it), got " + o.model.runtime.dtype);
  if (!std::isfinite(o.ema_decay) || o.ema_decay < 0 || o.ema_decay >= 1) refuse("ema_decay", "must be in [0, 1)");
  if (o.ema_decay > 0 && !full) refuse("ema_decay", "applies to method full only");
  if (o.ema_start_step < 0) refuse("ema_start_step", "must be >= 0");
  require_one_of("validation_weights", o.validation_weights, {"trained", "ema"});
  if (o.validation_weights == "ema" && o.ema_decay == 0) refuse("validation_weights", "'ema' needs ema_decay > 0");

  require_positive("rank", o.rank);
  if (!std::isfinite(o.alpha) || o.alpha <= 0) refuse("alpha", "must be > 0");
  require_probability("dropout", o.dropout);
  if (o.unet_targets.empty()) refuse("unet_targets", "at least one target module name is required");
  if (o.train_text_encoder && o.text_encoder_targets.empty())
    refuse("text_encoder_targets", "at least one target is required when train_text_encoder is set");

  require_positive("max_steps", o.max_steps);
  require_positive("batch_size", o.batch_size);
  require_positive("gradient_accumulation", o.gradient_accumulation);
  if (!std::isfinite(o.max_grad_norm)) refuse("max_grad_norm", "must be finite");
  require_one_of("lr_scheduler", o.lr_scheduler, {"constant", "constant_with_warmup", "linear", "cosine"});
  if (o.lr_warmup_steps < 0) refuse("lr_warmup_steps", "must be >= 0");
  if (!std::isfinite(o.unet_lr) || o.unet_lr <= 0) refuse("unet_lr", "must be > 0");
  if (o.train_text_encoder && (!std::isfinite(o.text_encoder_lr) || o.text_encoder_lr <= 0))
    refuse("text_encoder_lr", "must be > 0");
  require_non_negative("text_encoder_2_lr", o.text_encoder_2_lr);
  if (o.clip_skip < 0) refuse("clip_skip", "must be >= 0");
  require_non_negative("min_snr_gamma", o.min_snr_gamma);
  require_non_negative("noise_offset", o.noise_offset);

  require_one_of("optimizer", o.optimizer, {"adamw", "adamw8bit", "adafactor"});
  if (!(o.adam_beta1 >= 0 && o.adam_beta1 < 1)) refuse("adam_beta1", "must be in [0, 1)");
  if (!(o.adam_beta2 >= 0 && o.adam_beta2 < 1)) refuse("adam_beta2", "must be in [0, 1)");
  if (!(o.adam_epsilon > 0)) refuse("adam_epsilon", "must be > 0");
  require_non_negative("weight_decay", o.weight_decay);
  if (!(o.initial_loss_scale >= 1)) refuse("initial_loss_scale", "must be >= 1");

  if (o.checkpoint_every < 0) refuse("checkpoint_every", "must be >= 0");
  if (o.keep_checkpoints < 0) refuse("keep_checkpoints", "must be >= 0");
  if (o.stop_after_step < 0) refuse("stop_after_step", "must be >= 0");
  if (o.validation_every < 0) refuse("validation_every", "must be >= 0");
  require_positive("validation_steps", o.validation_steps);
  if (o.validation_loss_samples < 0) refuse("validation_loss_samples", "must be >= 0");
  for (const std::string& metric : o.validation_metrics) {
    try {
      metrics::metric_network(metric);
    } catch (const std::invalid_argument& error) {
      refuse("validation_metrics", error.what());
    }
  }
  if (o.validation_final_images < 0 || o.validation_final_images > kMaxFinalImages)
    refuse("validation_final_images", "must be between 0 and " + std::to_string(kMaxFinalImages));
  if (o.validation_final_images > 0 && o.validation_prompts.empty())
    refuse("validation_final_images", "needs validation_prompts to sample from");
  check_devices(o);
}

void check_family_options(const TrainOptions& o, models::ModelFamily family, int64_t text_encoder_layers) {
  try {
    sample::check_clip_skip(family, o.clip_skip, text_encoder_layers);
  } catch (const std::invalid_argument& error) {
    refuse("clip_skip", error.what());
  }
  if (o.text_encoder_2_lr > 0 && family != models::ModelFamily::Sdxl)
    refuse("text_encoder_2_lr", std::string("is SDXL's (its second text encoder); an ") + models::family_name(family) +
                                    " model has one text encoder");
}

} // namespace sdxl::train

// sdxl::train_lora: DreamBooth-style fine-tuning of SD 1.x, 2.x and SDXL (engine.h),
// one loop for every method: what is trained (a LoRA network, or the model's own
// weights) is a TrainingMethod (training_method.h), what conditions the UNet the
// model family's (sample/conditioning.h). The loop of kohya's sd-scripts
// train_network.py / fine_tune.py and diffusers' train_dreambooth(_lora)(_sdxl).py:
// cached latents and prompt conditioning, DDPM noising, the MSE to the noise or
// (v-prediction models) the velocity, optionally min-SNR weighted, gradient
// accumulation and clipping, AdamW / AdamW8bit / Adafactor (optimizer.h: float32
// master weights, or bfloat16 with stochastic rounding), dynamic loss scaling for
// float16, checkpoints that resume bit for bit on the CPU. How the run spreads over
// devices is a Parallelism (parallelism.h): one device, or data-parallel ranks (threads
// of this process, or processes), each running this loop on its share of every batch.
//
// Every random draw (latent sampling, LoRA init, caption dropout, noise,
// timesteps) comes from one CPU generator seeded by options.seed; LoRA dropout
// masks from a second one on the model's device, stochastic rounding's bits from a
// third, seeded afresh for each weight and update (optimizer.h). Each checkpoint
// stores the first two's states.
#include <ATen/CPUGeneratorImpl.h> // at::detail::createCPUGenerator
#if defined(SDXL_WITH_CUDA)
#include <ATen/cuda/CUDAGeneratorImpl.h> // at::cuda::detail::createCUDAGenerator
#endif

#include <chrono>     // wall-clock seconds in the result
#include <cstdio>     // std::snprintf validation image names
#include <cmath>      // std::isfinite
#include <exception>  // std::exception_ptr: the first rank's error
#include <filesystem> // output directories
#include <functional> // std::function
#include <memory>     // std::unique_ptr evaluator
#include <mutex>      // the first rank's error
#include <sstream>    // option fingerprints
#include <thread>     // one thread per rank

#include "dist/process_group.h"   // in_process_store, tcp_store, make_process_group
#include "engine/memory_stats.h"  // memory_stats
#include "engine/model.h"         // Model, load_model_from
#include "engine/runtime.h"       // parse_device, parse_dtype
#include "io/key_conversion.h"    // io::UNetLayout
#include "metrics/evaluator.h"     // Evaluator, image_tensor
#include "models/grad_checkpoint.h" // set_gradient_checkpointing
#include "sample/noise_schedule.h"  // train_alphas_cumprod
#include "sdxl/engine.h"
#include "train/batch_sampler.h"   // BatchSampler
#include "train/buckets.h"         // BucketPlan
#include "train/checkpoint_file.h" // TrainingState, write_checkpoint
#include "train/ddpm_loss.h"       // add_noise
#include "train/lora_metadata.h"   // dataset_hash, BaseModelTraits
#include "train/loss_scaler.h"     // DynamicLossScaler
#include "train/lr_schedule.h"     // lr_multiplier
#include "train/optimizer.h"       // Optimizer, make_optimizer
#include "train/options_check.h"   // check_train_options, check_family_options
#include "train/parallelism.h"     // Parallelism, single_device, data_parallel
#include "train/progress_meter.h"  // ProgressMeter
#include "train/training_method.h" // TrainingMethod, make_lora_method, make_full_method
#include "train/training_set.h"    // build_training_set
#include "train/validation.h"      // validation_loss, write_validation_images, quality_metrics

namespace sdxl {

namespace {

using train::TrainingState;

// The options that decide the trajectory; a checkpoint only resumes a run with the same ones.
std::map<std::string, std::string> trajectory_options(const TrainOptions& o, const std::string& dataset_hash) {
  const auto join = [](const std::vector<std::string>& items) {
    std::string out;
    for (const auto& item : items) out += (out.empty() ? "" : ",") + item;
    return out;
  };
  const auto num = [](double value) {
    std::ostringstream text;
    text.precision(17);
    text << value;
    return text.str();
  };
  return {
      {"dataset_hash", dataset_hash},
      {"dtype", o.model.runtime.dtype},
      {"vae_dtype", o.vae_dtype},
      {"resolution", std::to_string(o.resolution)},
      {"buckets", std::to_string(o.bucket_step) + "/" + std::to_string(o.min_bucket_side) + "/" +
                      std::to_string(o.max_bucket_side)},
      {"random_flip", o.random_flip ? "true" : "false"},
      {"repeats", std::to_string(o.repeats)},
      {"caption_dropout", num(o.caption_dropout)},
      {"rank", std::to_string(o.rank)},
      {"alpha", num(o.alpha)},
      {"dropout", num(o.dropout)},
      {"unet_targets", join(o.unet_targets)},
      {"text_encoder_targets", o.train_text_encoder ? join(o.text_encoder_targets) : "(not trained)"},
      {"max_steps", std::to_string(o.max_steps)},
      {"batch_size", std::to_string(o.batch_size)},
      {"gradient_accumulation", std::to_string(o.gradient_accumulation)},
      {"max_grad_norm", num(o.max_grad_norm)},
      {"lr_scheduler", o.lr_scheduler + "/" + std::to_string(o.lr_warmup_steps)},
      {"unet_lr", num(o.unet_lr)},
      {"text_encoder_lr", num(o.text_encoder_lr)},
      {"min_snr_gamma", num(o.min_snr_gamma)},
      {"noise_offset", num(o.noise_offset)},
      {"seed", std::to_string(o.seed)},
      {"optimizer", o.optimizer + "/" + num(o.adam_beta1) + "/" + num(o.adam_beta2) + "/" + num(o.adam_epsilon) + "/" +
                        num(o.weight_decay)},
  };
}

// Prior preservation, clip skip and SDXL's second text-encoder learning rate decide the
// trajectory too (named only when on, so older checkpoints still resume).
std::map<std::string, std::string> trajectory_options_with_priors(const TrainOptions& o, const std::string& dataset_hash) {
  std::map<std::string, std::string> options = trajectory_options(o, dataset_hash);
  const auto num = [](double value) {
    std::ostringstream text;
    text.precision(17);
    text << value;
    return text.str();
  };
  if (!o.class_images.empty()) {
    options["class_images"] = train::dataset_hash(o.class_images);
    options["prior_loss_weight"] = num(o.prior_loss_weight);
  }
  if (o.clip_skip > 1) options["clip_skip"] = std::to_string(o.clip_skip);
  if (o.method != "lora") { // LoRA checkpoints of earlier versions name no method
    options["method"] = o.method;
    options["full_bf16"] = o.full_bf16 ? "true" : "false";
    options["ema"] = o.ema_decay > 0 ? num(o.ema_decay) + "/" + std::to_string(o.ema_start_step) : "off";
  }
  if (o.text_encoder_2_lr > 0 && o.text_encoder_2_lr != o.text_encoder_lr) options["text_encoder_2_lr"] = num(o.text_encoder_2_lr);
  return options;
}

// What a LoRA file's metadata says of the model it was trained on.
train::BaseModelTraits base_model_traits(const Model& model) {
  train::BaseModelTraits traits;
  traits.family = model.family;
  traits.v_prediction = model.scheduler.prediction_type == "v_prediction";
  traits.zero_terminal_snr = model.scheduler.rescale_betas_zero_snr;
  return traits;
}

// One micro-batch's images and prompts; SDXL's size ids with them.
struct MicroBatch {
  torch::Tensor latents;   // [B, 4, h, w] float32
  torch::Tensor time_ids;  // [B, 6] float32 (used by SDXL only)
  std::vector<int64_t> prompts;
  // Prior preservation: as many class images (undefined latents when off).
  torch::Tensor class_latents;  // [B, 4, h', w'] float32
  torch::Tensor class_time_ids; // [B, 6]
  std::vector<int64_t> class_prompts;
};

class Trainer {
 public:
  Trainer(const TrainOptions& options, const ProgressFn& progress, const CancelFlag& cancel, train::Parallelism& parallel)
      : options_(options),
        cancel_(cancel),
        parallel_(parallel),
        device_(parse_device(options.model.runtime.device)),
        dtype_(parse_dtype(options.model.runtime.dtype)),
        encoders_trained_(options.train_text_encoder),
        generator_(at::detail::createCPUGenerator(options.seed)),
        meter_(progress, device_, options.max_steps, options.batch_size * options.gradient_accumulation) {}

  TrainResult run();

 private:
  void load();
  void prepare();
  void restore(const TrainingState& state);
  double train_step(int64_t step);
  torch::Tensor micro_batch_loss(const MicroBatch& batch);
  MicroBatch next_micro_batch(int64_t micro_batch_index);
  std::vector<torch::Tensor> trainable() const;
  std::vector<double> learning_rates(double multiplier) const;
  bool split_text_encoders() const;
  at::Generator make_device_generator(uint64_t seed) const;
  std::string save_checkpoint(int64_t steps_done);
  void validate(int64_t steps_done);
  // The end-of-run set: validation_final_images per prompt, scored with every metric.
  void validate_final(int64_t steps_done);
  metrics::Evaluator& evaluator();
  std::vector<torch::Tensor> metric_references() const;
  void save_outputs(TrainResult& result, int64_t steps_done);
  bool on_main(const std::function<void()>& work);

  const TrainOptions& options_;
  const CancelFlag& cancel_;
  train::Parallelism& parallel_;
  torch::Device device_;
  torch::Dtype dtype_;
  bool encoders_trained_;
  at::Generator generator_;
  at::Generator dropout_generator_;  // on the model's device
  at::Generator rounding_generator_; // on the model's device (full_bf16)
  train::ProgressMeter meter_;

  std::shared_ptr<Model> model_;
  // The trained text encoders' conditioner (null when they are frozen: every prompt is cached).
  std::unique_ptr<sample::TextConditioner> conditioner_;
  std::string dataset_hash_;
  train::TrainingSet set_;
  train::ValidationSet validation_;
  std::unique_ptr<train::TrainingMethod> method_;
  std::unique_ptr<train::Optimizer> optimizer_;
  train::DynamicLossScaler scaler_ = train::DynamicLossScaler::disabled();
  std::unique_ptr<train::BatchSampler> sampler_;
  torch::Tensor alphas_cumprod_;
  std::map<std::string, double> metrics_;
  std::vector<int64_t> class_order_; // class images in the order micro-batches take them, cyclically
  int64_t epoch_ = 0;                // the sampler epoch of the last micro-batch taken
  double last_instance_loss_ = 0;    // the parts of the last micro-batch's loss (prior preservation)
  double last_prior_loss_ = 0;
  std::vector<std::string> sample_paths_;
  std::string last_checkpoint_;
  std::unique_ptr<metrics::Evaluator> evaluator_; // quality metrics; made at the first validation that scores
};

void Trainer::load() {
  meter_.report("loading", 0, 1, options_.model.model_path);
  model_ = load_model_from(options_.model, cancel_);
  // The VAE never runs in float16 (its activations overflow there); float32 unless bfloat16 is asked.
  model_->vae->to(parse_dtype(options_.vae_dtype));
  model_->vae_dtype = parse_dtype(options_.vae_dtype);
  model_->vae->eval();
  meter_.report("loading", 1, 1, options_.model.model_path);
}

void Trainer::prepare() {
  dataset_hash_ = train::dataset_hash(options_.images);
  conditioner_ = text_conditioner(*model_, options_.clip_skip);
  const train::TrainingCache cache(
      options_.cache_dir.empty() ? (std::filesystem::path(options_.output_dir) / "cache").string() : options_.cache_dir,
      options_.vae_dtype, options_.model.runtime.dtype + "-skip" + std::to_string(options_.clip_skip));
  set_ = train::build_training_set(
      *model_, *conditioner_, options_, cache, !encoders_trained_,
      [&](int64_t done, int64_t total, const train::CacheCounts& reused) {
        // The first report says what the cache held: the run's log keeps the phase's first message.
        meter_.report("caching", done, total,
                      done > 0 ? "latents and prompt embeddings"
                               : "latents and prompt embeddings: " + std::to_string(total) +
                                     " images and prompts to encode, " + std::to_string(reused.latents_reused) +
                                     " latents and " + std::to_string(reused.prompts_reused) +
                                     " prompts reused from the cache");
      },
      cancel_);
  metrics_["cache_latents_encoded"] = static_cast<double>(set_.counts.latents_encoded);
  metrics_["cache_latents_reused"] = static_cast<double>(set_.counts.latents_reused);
  metrics_["cache_prompts_encoded"] = static_cast<double>(set_.counts.prompts_encoded);
  metrics_["cache_prompts_reused"] = static_cast<double>(set_.counts.prompts_reused);
  metrics_["skipped_images"] = static_cast<double>(set_.skipped.size());
  if (!set_.skipped.empty()) {
    constexpr size_t kNamed = 20;
    std::string names;
    for (size_t i = 0; i < std::min(kNamed, set_.skipped.size()); ++i) names += (i == 0 ? "" : ", ") + set_.skipped[i];
    if (set_.skipped.size() > kNamed) names += ", ... (" + std::to_string(set_.skipped.size() - kNamed) + " more)";
    meter_.report("skipping", 0, 0,
                  std::to_string(set_.skipped.size()) + " images below min_resolution (" +
                      std::to_string(options_.min_resolution) + " px) are not trained on: " + names,
                  {{"skipped_images", static_cast<double>(set_.skipped.size())}});
  }
  validation_ = train::make_validation_set(*model_, options_, set_, encoders_trained_ ? nullptr : conditioner_.get());
  if (!encoders_trained_) {
    // Every prompt is cached: the encoders' memory goes back before the loop (the
    // conditioner holds them too).
    conditioner_.reset();
    model_->text_encoder = models::ClipTextModel{nullptr};
    model_->text_encoder_2 = models::ClipTextModel{nullptr};
  }
  if (validation_.prompts.empty()) model_->vae = models::AutoencoderKL{nullptr};

  // A fixed offset from the run's seed keeps each device stream apart from the main one.
  dropout_generator_ = make_device_generator(options_.seed + 1);
  rounding_generator_ = make_device_generator(options_.seed + 3);
  method_ = options_.method == "full" ? train::make_full_method(options_, *model_)
                                      : train::make_lora_method(options_, *model_, generator_, dropout_generator_);

  model_->unet->train();
  models::set_gradient_checkpointing(*model_->unet, options_.gradient_checkpointing);
  if (encoders_trained_) {
    model_->text_encoder->train();
    if (!model_->text_encoder_2.is_empty()) model_->text_encoder_2->train();
    models::set_gradient_checkpointing(*model_->text_encoder, options_.gradient_checkpointing);
    if (!model_->text_encoder_2.is_empty())
      models::set_gradient_checkpointing(*model_->text_encoder_2, options_.gradient_checkpointing);
  }

  train::OptimizerHyper hyper;
  hyper.beta1 = options_.adam_beta1;
  hyper.beta2 = options_.adam_beta2;
  hyper.eps = options_.adam_epsilon;
  hyper.weight_decay = options_.weight_decay;
  train::PrecisionOptions precision;
  precision.master_weights = !options_.full_bf16;
  precision.rounding = rounding_generator_;
  precision.rounding_seed = options_.seed + 3;
  const std::vector<std::vector<torch::Tensor>> groups = method_->parameter_groups(split_text_encoders());
  parallel_.attach(groups);
  // ZeRO: this rank's optimizer keeps and updates its shard only.
  train::Ownership owned;
  const std::vector<bool> mine = parallel_.owned();
  if (!mine.empty()) {
    size_t k = 0;
    for (const auto& group : groups) {
      owned.emplace_back();
      for (size_t i = 0; i < group.size(); ++i) owned.back().push_back(mine[k++]);
    }
  }
  optimizer_ = train::make_optimizer(options_.optimizer, groups, hyper, precision, owned);

  if (dtype_ == torch::kFloat16) {
    train::LossScalerOptions scaler_options;
    scaler_options.init_scale = options_.initial_loss_scale;
    scaler_ = train::DynamicLossScaler(scaler_options);
  }

  std::vector<size_t> bucket_of_image;
  for (const auto& image : set_.images) bucket_of_image.push_back(image.bucket);
  sampler_ = std::make_unique<train::BatchSampler>(bucket_of_image, options_.repeats, options_.batch_size,
                                                   options_.random_flip, options_.seed);
  alphas_cumprod_ = sample::train_alphas_cumprod(model_->scheduler).to(device_);
  if (!set_.class_images.empty()) {
    // A fixed shuffle from the seed, so micro-batch k takes the same class images after a resume.
    auto order_generator = at::detail::createCPUGenerator(options_.seed + 2);
    const torch::Tensor order =
        torch::randperm(static_cast<int64_t>(set_.class_images.size()), order_generator, torch::kInt64);
    class_order_.assign(order.data_ptr<int64_t>(), order.data_ptr<int64_t>() + order.numel());
  }
}

at::Generator Trainer::make_device_generator(uint64_t seed) const {
#if defined(SDXL_WITH_CUDA)
  if (device_.is_cuda()) {
    at::Generator generator = at::cuda::detail::createCUDAGenerator(device_.has_index() ? device_.index() : 0);
    generator.set_current_seed(seed);
    return generator;
  }
#endif
  return at::detail::createCPUGenerator(seed);
}

void Trainer::restore(const TrainingState& state) {
  train::check_same_options(state.options, trajectory_options_with_priors(options_, dataset_hash_), options_.resume_from);
  if (state.step >= options_.max_steps)
    throw std::invalid_argument("resume_from: the checkpoint is at step " + std::to_string(state.step) +
                                ", not before max_steps " + std::to_string(options_.max_steps));
  method_->load_state(state.tensors);
  optimizer_->load_state(state.tensors, "optim");
  scaler_.from_tensors(state.tensors, "scaler");
  const auto rng = state.tensors.find("rng/cpu");
  if (rng == state.tensors.end()) throw std::invalid_argument("resume_from: the checkpoint has no RNG state");
  generator_.set_state(rng->second);
  const auto dropout_rng = state.tensors.find("rng/dropout");
  if (dropout_rng == state.tensors.end()) throw std::invalid_argument("resume_from: the checkpoint has no dropout RNG state");
  dropout_generator_.set_state(dropout_rng->second);
  sampler_->restore(train::BatchSampler::State{state.sampler_epoch, state.sampler_position});
}

// Called on every rank: a sharded run's optimizer states come to rank 0, which writes the file.
std::string Trainer::save_checkpoint(int64_t steps_done) {
  std::map<std::string, torch::Tensor> optimizer_state;
  optimizer_->save_state(optimizer_state, "optim");
  parallel_.gather_on_main(optimizer_state);
  if (!parallel_.is_main()) return "";
  TrainingState state;
  state.step = steps_done;
  state.sampler_epoch = sampler_->state().epoch;
  state.sampler_position = sampler_->state().position;
  state.options = trajectory_options_with_priors(options_, dataset_hash_);
  method_->save_state(state.tensors);
  state.tensors.insert(optimizer_state.begin(), optimizer_state.end());
  for (auto& [name, tensor] : scaler_.to_tensors("scaler")) state.tensors[name] = tensor;
  state.tensors["rng/cpu"] = generator_.get_state();
  state.tensors["rng/dropout"] = dropout_generator_.get_state();
  const std::string path = train::checkpoint_path(options_.output_dir, steps_done);
  meter_.report("saving", steps_done, options_.max_steps, "checkpoint " + path);
  train::write_checkpoint(path, state);
  last_checkpoint_ = path;
  // Reported once on disk, so a listener may publish it (a crashed run resumes from it).
  meter_.report("saving", steps_done, options_.max_steps, "checkpoint written", {}, {path});
  if (options_.keep_checkpoints > 0) train::prune_checkpoints(options_.output_dir, options_.keep_checkpoints);
  return path;
}

// SDXL's second encoder gets a group of its own only when its rate differs (one group
// otherwise, as checkpoints of earlier versions hold it).
bool Trainer::split_text_encoders() const {
  return options_.text_encoder_2_lr > 0 && options_.text_encoder_2_lr != options_.text_encoder_lr &&
         model_->family == models::ModelFamily::Sdxl;
}

std::vector<double> Trainer::learning_rates(double multiplier) const {
  std::vector<double> lrs{options_.unet_lr * multiplier};
  if (encoders_trained_) lrs.push_back(options_.text_encoder_lr * multiplier);
  if (encoders_trained_ && split_text_encoders()) lrs.push_back(options_.text_encoder_2_lr * multiplier);
  return lrs;
}

MicroBatch Trainer::next_micro_batch(int64_t micro_batch_index) {
  MicroBatch batch;
  std::vector<torch::Tensor> latents, time_ids;
  epoch_ = sampler_->state().epoch; // next() may roll over into the next epoch
  for (const train::SampleRef& ref : sampler_->next()) {
    const train::CachedImage& image = set_.images[ref.image];
    train::CachedLatents cached = train::read_latents(image, ref.flip);
    latents.push_back(std::move(cached.latents));
    time_ids.push_back(std::move(cached.time_ids));
    int64_t prompt = image.caption;
    if (options_.caption_dropout > 0 &&
        torch::rand({1}, generator_, torch::kFloat64).item<double>() < options_.caption_dropout)
      prompt = set_.prompts.empty_index;
    batch.prompts.push_back(prompt);
  }
  batch.latents = torch::stack(latents);   // [B, 4, h, w]
  batch.time_ids = torch::stack(time_ids); // [B, 6]
  if (!class_order_.empty()) {
    // As many class images as instance images, in the fixed order from micro-batch index * batch_size.
    std::vector<torch::Tensor> class_latents, class_time_ids;
    const int64_t count = static_cast<int64_t>(class_order_.size());
    for (int64_t k = 0; k < batch.latents.size(0); ++k) {
      const int64_t position = (micro_batch_index * options_.batch_size + k) % count;
      const train::CachedImage& image = set_.class_images[class_order_[position]];
      train::CachedLatents cached = train::read_latents(image, false);
      class_latents.push_back(std::move(cached.latents));
      class_time_ids.push_back(std::move(cached.time_ids));
      batch.class_prompts.push_back(image.caption);
    }
    batch.class_latents = torch::stack(class_latents);   // [B, 4, h', w']
    batch.class_time_ids = torch::stack(class_time_ids); // [B, 6]
  }
  return batch;
}

torch::Tensor Trainer::micro_batch_loss(const MicroBatch& batch) {
  const std::string& prediction_type = model_->scheduler.prediction_type;
  const bool size_conditioned = model_->unet->config().has_added_embedding();
  // This rank's share of the global micro-batch: rows [first, first + share). A bucket's
  // last batch may be smaller than batch_size, and then some shares are smaller or empty.
  const int64_t global = batch.latents.size(0);
  const int64_t first = global * parallel_.rank() / parallel_.world_size();
  const int64_t share = global * (parallel_.rank() + 1) / parallel_.world_size() - first;
  const auto mine = [&](const torch::Tensor& rows) { return rows.narrow(0, first, share); };
  // This rank's part of the min-SNR-weighted MSE to the target (noise or v) of one set of
  // latents: the sum over its rows divided by the global batch size, so the ranks' parts
  // (and their gradients) sum to the global batch's mean. Noise and timesteps are drawn
  // here for the whole global batch, so every rank's generator stays in step and each
  // sample gets the draws it gets on one device.
  const auto loss_of = [&](const torch::Tensor& clean, const torch::Tensor& time_ids, const std::vector<int64_t>& prompts) {
    const auto sizes = clean.sizes();
    const int64_t b = sizes[0];
    torch::Tensor noise = torch::randn(sizes, generator_, torch::kFloat32); // [B, 4, h, w]
    if (options_.noise_offset > 0) // offset noise (Guttenberg 2023): a per-channel constant shift
      noise = noise + options_.noise_offset * torch::randn({b, sizes[1], 1, 1}, generator_, torch::kFloat32);
    const torch::Tensor timesteps =
        torch::randint(0, model_->scheduler.num_train_timesteps, {b}, generator_, torch::kInt64); // [B]
    if (share == 0) return torch::zeros({}, torch::kFloat32); // nothing of this batch here: no gradient
    noise = mine(noise).to(device_);
    const torch::Tensor t = mine(timesteps).to(device_);

    const std::vector<int64_t> my_prompts(prompts.begin() + first, prompts.begin() + first + share);
    models::UNetConditioning conditioning =
        train::condition_batch(conditioner_.get(), set_.prompts, my_prompts).to(device_, dtype_);
    if (size_conditioned) conditioning.time_ids = mine(time_ids).to(device_, dtype_); // SDXL: each image's size ids
    const torch::Tensor latents = mine(clean).to(device_);
    const torch::Tensor noisy = train::add_noise(alphas_cumprod_, latents, noise, t); // float32
    const torch::Tensor target = train::training_target(alphas_cumprod_, latents, noise, t, prediction_type); // float32
    const torch::Tensor prediction =
        model_->unet->forward(noisy.to(dtype_), t.to(torch::kFloat32), conditioning); // [B, 4, h, w]
    torch::Tensor per_sample = (prediction.to(torch::kFloat32) - target).pow(2).mean({1, 2, 3}); // [B]
    if (options_.min_snr_gamma > 0)
      per_sample = per_sample * train::min_snr_weights(alphas_cumprod_, t, options_.min_snr_gamma, prediction_type);
    return per_sample.sum() / static_cast<double>(b);
  };
  const torch::Tensor instance = loss_of(batch.latents, batch.time_ids, batch.prompts);
  if (!batch.class_latents.defined()) return instance;
  // diffusers' prior preservation: the instance loss plus the weighted loss on class images.
  const torch::Tensor prior = loss_of(batch.class_latents, batch.class_time_ids, batch.class_prompts);
  last_instance_loss_ = instance.item<double>();
  last_prior_loss_ = prior.item<double>();
  return instance + options_.prior_loss_weight * prior;
}

std::vector<torch::Tensor> Trainer::trainable() const {
  std::vector<torch::Tensor> all;
  for (const auto& group : method_->parameter_groups(split_text_encoders()))
    all.insert(all.end(), group.begin(), group.end());
  return all;
}

// One optimizer step over gradient_accumulation micro-batches; returns the mean loss.
double Trainer::train_step(int64_t step) {
  const double multiplier =
      train::lr_multiplier(options_.lr_scheduler, step, options_.lr_warmup_steps, options_.max_steps);
  double loss_sum = 0, instance_sum = 0, prior_sum = 0;
  for (int64_t micro = 0; micro < options_.gradient_accumulation; ++micro) {
    const torch::Tensor loss = micro_batch_loss(next_micro_batch(step * options_.gradient_accumulation + micro));
    loss_sum += loss.item<double>();
    instance_sum += last_instance_loss_;
    prior_sum += last_prior_loss_;
    // Once per optimizer step, whatever the accumulation: the ranks' parts are summed
    // while the last micro-batch's backward runs.
    if (micro + 1 == options_.gradient_accumulation) parallel_.begin_last_backward();
    if (loss.requires_grad()) // false on a rank with no image of this micro-batch
      (loss * (scaler_.scale() / static_cast<double>(options_.gradient_accumulation))).backward();
  }
  const std::vector<torch::Tensor> parameters = trainable();
  parallel_.sum_gradients();
  bool found_inf = scaler_.found_non_finite(parameters);
  if (scaler_.enabled()) found_inf = parallel_.any(found_inf); // ZeRO-2: each rank sees its shard
  double grad_norm = 0;
  if (!found_inf) {
    // The gradients stay as backward left them (float16 ones scaled): the optimizer
    // widens each to float32 and multiplies it by the unscale and clip factors.
    double grad_factor = scaler_.inverse_scale();
    grad_norm = parallel_.gradient_norm(parameters) * grad_factor;
    // torch.nn.utils.clip_grad_norm_: scale by max / (norm + 1e-6).
    if (options_.max_grad_norm > 0 && grad_norm > options_.max_grad_norm)
      grad_factor *= options_.max_grad_norm / (grad_norm + 1e-6);
    optimizer_->step(learning_rates(multiplier), grad_factor);
    parallel_.share_updated_weights(); // ZeRO: each shard from the rank that updated it
    method_->after_step(step + 1);
  }
  if (scaler_.enabled()) scaler_.update(found_inf);
  optimizer_->zero_grad();
  const double micro_batches = static_cast<double>(options_.gradient_accumulation);
  // The global batch's losses: the sum of the ranks' parts; with them each rank's memory in use.
  std::vector<double> values{loss_sum, instance_sum, prior_sum};
  const int ranks = parallel_.world_size();
  values.resize(3 + static_cast<size_t>(ranks), 0.0);
  if (ranks > 1) values[3 + static_cast<size_t>(parallel_.rank())] = static_cast<double>(memory_stats(device_).in_use_bytes);
  const std::vector<double> losses = parallel_.sum(values);
  loss_sum = losses[0];
  instance_sum = losses[1];
  prior_sum = losses[2];
  const double loss = loss_sum / micro_batches;
  // Epochs are counted in micro-batches, as kohya counts them: max_steps spans
  // ceil(max_steps * gradient_accumulation / batches_per_epoch) of them.
  const int64_t micro_batches_total = options_.max_steps * options_.gradient_accumulation;
  std::map<std::string, double> extra{{"epoch", static_cast<double>(epoch_ + 1)},
                                      {"epochs", static_cast<double>((micro_batches_total + sampler_->batches_per_epoch() - 1) /
                                                                     sampler_->batches_per_epoch())},
                                      {"grad_norm", grad_norm},
                                      {"loss_scale", scaler_.scale()},
                                      {"skipped_steps", static_cast<double>(scaler_.skipped_steps())}};
  if (ranks > 1) { // each device's memory, and the all-reduce time backward did not hide
    for (int r = 0; r < ranks; ++r) extra["memory_bytes_rank" + std::to_string(r)] = losses[3 + static_cast<size_t>(r)];
    extra["allreduce_ms"] = parallel_.last_exposed_communication_ms();
  }
  if (!class_order_.empty()) { // the loss split: on the subject, and on the class images
    extra["loss_instance"] = instance_sum / micro_batches;
    extra["loss_prior"] = prior_sum / micro_batches;
  }
  meter_.on_step(step + 1, loss, options_.unet_lr * multiplier, extra);
  metrics_["final_loss"] = loss;
  return loss;
}

// Swaps the method's validation weights in (the EMA, when asked) for its lifetime.
class ValidationWeights {
 public:
  explicit ValidationWeights(train::TrainingMethod& method) : method_(method) { method_.begin_validation(); }
  ~ValidationWeights() { method_.end_validation(); }
  ValidationWeights(const ValidationWeights&) = delete;
  ValidationWeights& operator=(const ValidationWeights&) = delete;

 private:
  train::TrainingMethod& method_;
};

void Trainer::validate(int64_t steps_done) {
  meter_.report("validating", steps_done, options_.max_steps, "");
  const ValidationWeights weights(*method_);
  std::map<std::string, double> results;
  if (!validation_.triples.empty()) {
    const double loss = train::validation_loss(*model_, set_, validation_, alphas_cumprod_, conditioner_.get());
    results["validation_loss"] = loss;
    if (!metrics_.count("validation_loss_first")) metrics_["validation_loss_first"] = loss;
    metrics_["validation_loss_last"] = loss;
  }
  std::vector<std::string> files;
  std::string message;
  if (!validation_.prompts.empty()) {
    char name[32];
    std::snprintf(name, sizeof name, "step-%06lld", static_cast<long long>(steps_done));
    const train::ValidationImages written =
        train::write_validation_images(*model_, options_, validation_, conditioner_.get(), name, 1, cancel_);
    files = written.paths;
    sample_paths_.insert(sample_paths_.end(), files.begin(), files.end());
    // One image per prompt: the metrics of single images; the set metrics wait for the final set.
    std::vector<std::string> per_image;
    for (const std::string& metric : options_.validation_metrics)
      if (metric == "clip_t" || metric == "clip_i" || metric == "hps") per_image.push_back(metric);
    if (!per_image.empty()) results.merge(train::quality_metrics(evaluator(), written.images, per_image, message));
  }
  meter_.report("validating", steps_done, options_.max_steps, message, results, files);
}

void Trainer::validate_final(int64_t steps_done) {
  meter_.report("validating", steps_done, options_.max_steps, "final set");
  const ValidationWeights weights(*method_);
  const train::ValidationImages written = train::write_validation_images(
      *model_, options_, validation_, conditioner_.get(), "final", options_.validation_final_images, cancel_);
  sample_paths_.insert(sample_paths_.end(), written.paths.begin(), written.paths.end());
  std::string message;
  std::map<std::string, double> results =
      train::quality_metrics(evaluator(), written.images, options_.validation_metrics, message);
  const std::string prefix = "metric_";
  for (const auto& [key, value] : results)
    if (key.rfind(prefix, 0) == 0) metrics_["final_" + key.substr(prefix.size())] = value;
  results["final_set"] = 1;
  meter_.report("validating", steps_done, options_.max_steps, message, results, written.paths);
}

metrics::Evaluator& Trainer::evaluator() {
  if (!evaluator_) {
    evaluator_ = std::make_unique<metrics::Evaluator>(options_.metrics_models_dir, device_, options_.validation_seed);
    evaluator_->set_references(metric_references());
  }
  return *evaluator_;
}

// What clip_i, fid and kid compare validation images with: the held-out images when the run
// has them (images the weights never saw), else the training images; at most
// kMaxMetricReferences of them, spread evenly over the list, so their pixels stay bounded.
std::vector<torch::Tensor> Trainer::metric_references() const {
  constexpr size_t kMaxMetricReferences = 1000;
  const bool held_out = !options_.validation_images.empty();
  const size_t count = held_out ? options_.validation_images.size() : options_.images.size();
  const size_t first = held_out ? options_.images.size() + options_.class_images.size() : 0; // pixels_of's numbering
  const size_t taken = std::min(count, kMaxMetricReferences);
  std::vector<torch::Tensor> references;
  for (size_t k = 0; k < taken; ++k) {
    const Pixels pixels = train::pixels_of(options_, first + k * count / taken);
    TrainImage image;
    image.width = pixels.width;
    image.height = pixels.height;
    image.rgb = pixels.rgb;
    references.push_back(metrics::image_tensor(image));
  }
  return references;
}

void Trainer::save_outputs(TrainResult& result, int64_t steps_done) {
  const bool lora = options_.method == "lora";
  meter_.report("saving", steps_done, options_.max_steps, lora ? "LoRA" : "model");
  const std::vector<std::string> files =
      method_->save_outputs(train::RunRecord{dataset_hash_, steps_done, base_model_traits(*model_)}, result);
  meter_.report("saving", steps_done, options_.max_steps, lora ? "LoRA written" : "model written", {}, files);
}

// Rank 0's files (validation images, checkpoints): written by rank 0 while the others
// wait, so every rank learns at the same step whether validation was cancelled.
bool Trainer::on_main(const std::function<void()>& work) {
  bool cancelled = false;
  if (parallel_.is_main()) {
    try {
      work();
    } catch (const Cancelled&) {
      cancelled = true;
    }
  }
  return parallel_.any(cancelled);
}

TrainResult Trainer::run() {
  const auto started = std::chrono::steady_clock::now();
  // A bad checkpoint is refused before minutes of loading and caching.
  TrainingState resume;
  if (!options_.resume_from.empty()) resume = train::read_checkpoint(options_.resume_from);
  reset_peak_memory(device_);
  load();
  prepare();
  int64_t step = 0;
  if (!options_.resume_from.empty()) {
    restore(resume);
    step = resume.step;
  }

  TrainResult result;
  int64_t done = step; // optimizer steps done
  bool interrupted = false;
  if (done == 0 && !validation_.triples.empty()) interrupted = on_main([&] { validate(0); });
  while (!interrupted && done < options_.max_steps) {
    if (parallel_.any(cancel_.is_set())) { // every rank stops before the same step
      interrupted = true;
      break;
    }
    train_step(done);
    ++done;
    const bool last = done == options_.max_steps;
    if (options_.validation_every > 0 && done % options_.validation_every == 0 && !last)
      interrupted = on_main([&] { validate(done); });
    if (!interrupted && options_.checkpoint_every > 0 && done % options_.checkpoint_every == 0 && !last)
      save_checkpoint(done);
    if (options_.stop_after_step > 0 && done == options_.stop_after_step && !last) interrupted = true;
  }

  result.steps = done;
  if (interrupted) {
    result.status = "cancelled";
    result.checkpoint_path = save_checkpoint(done);
  } else {
    if (parallel_.is_main()) {
      if (!validation_.prompts.empty() || !validation_.triples.empty()) validate(done);
      if (options_.validation_final_images > 0) validate_final(done);
      save_outputs(result, done);
    }
    // With checkpoints on, the final state is kept too (kohya's --save_state_on_train_end).
    if (options_.checkpoint_every > 0) save_checkpoint(done);
    result.checkpoint_path = last_checkpoint_;
    result.status = "completed";
  }
  result.sample_paths = sample_paths_;
  metrics_["skipped_steps"] = static_cast<double>(scaler_.skipped_steps());
  metrics_["loss_scale"] = scaler_.scale();
  metrics_["mean_loss"] = meter_.loss_mean();
  metrics_["optimizer_state_bytes"] = static_cast<double>(optimizer_->state_bytes());
  metrics_["trainable_parameters"] = static_cast<double>(method_->trainable_parameter_count());
  for (const auto& [name, value] : method_->metrics()) metrics_[name] = value;
  for (const auto& [name, value] : parallel_.metrics()) metrics_[name] = value;
  metrics_["peak_memory_bytes"] = static_cast<double>(memory_stats(device_).peak_bytes);
  metrics_["epochs"] = static_cast<double>(epoch_ + (done > 0 ? 1 : 0));
  metrics_["held_out_images"] = static_cast<double>(set_.held_out.size());
  metrics_["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  result.metrics = metrics_;
  meter_.report(result.status == "completed" ? "done" : "cancelled", done, options_.max_steps, result.status,
                metrics_);
  return result;
}

} // namespace

namespace {

#if defined(SDXL_WITH_C10D)
// One rank of a data-parallel run: its process group on `store`, and the loop on its device
// (rank 0 reports progress and writes the files).
TrainResult train_rank(const TrainOptions& options, const c10::intrusive_ptr<c10d::Store>& store, int rank,
                       int world_size, const ProgressFn& progress, const CancelFlag& cancel,
                       const std::function<void()>& on_error) {
  const std::chrono::milliseconds timeout(options.collective_timeout_ms);
  const torch::Device device = parse_device(options.model.runtime.device);
  train::DataParallelOptions parallel_options;
  parallel_options.zero_stage = static_cast<int>(options.zero_stage);
  parallel_options.overlap_communication = options.overlap_communication;
  parallel_options.bucket_bytes = options.bucket_bytes;
  std::unique_ptr<train::Parallelism> parallel =
      train::data_parallel(dist::make_process_group(store, rank, world_size, device, timeout), device, parallel_options);
  const ProgressFn silent = [](const Progress&) {};
  Trainer trainer(options, rank == 0 ? progress : silent, cancel, *parallel);
  try {
    return trainer.run();
  } catch (...) {
    on_error(); // while this rank's process group still stands
    throw;
  }
}
#endif

// A run over several devices: one rank per device, each a thread running the loop on its
// own model copy, meeting in an in-process store. Rank 0's result is the run's. The first
// rank to fail fails the run with its error: the error is kept before its process group
// goes (closing its connections makes the other ranks' collectives fail at once, or at
// the collective timeout), and every thread is joined before this returns.
TrainResult train_on_ranks(const TrainOptions& options, const ProgressFn& progress, const CancelFlag& cancel) {
#if defined(SDXL_WITH_C10D)
  const int world_size = static_cast<int>(options.devices.size());
  const auto store = dist::in_process_store();
  store->setTimeout(std::chrono::milliseconds(options.collective_timeout_ms));
  std::vector<TrainResult> results(static_cast<size_t>(world_size));
  std::mutex first_error_mutex;
  std::exception_ptr first_error;
  const auto keep_first_error = [&] {
    const std::lock_guard<std::mutex> lock(first_error_mutex);
    if (!first_error) first_error = std::current_exception();
  };
  std::vector<std::thread> ranks;
  for (int rank = 0; rank < world_size; ++rank) {
    ranks.emplace_back([&, rank] {
      try {
        TrainOptions rank_options = options;
        rank_options.model.runtime.device = options.devices[static_cast<size_t>(rank)];
        results[static_cast<size_t>(rank)] =
            train_rank(rank_options, store, rank, world_size, progress, cancel, keep_first_error);
      } catch (...) {
        keep_first_error();
      }
    });
  }
  for (std::thread& rank : ranks) rank.join();
  if (first_error) std::rethrow_exception(first_error);
  return results.front();
#else
  throw std::invalid_argument("devices: this engine was built without c10d backends (" + dist::backends_built() + ")");
#endif
}

// This process as one rank of a run whose ranks are processes, meeting at a TCPStore
// that rank 0 serves. Another rank's death fails this one's next collective.
TrainResult train_as_process_rank(const TrainOptions& options, const ProgressFn& progress, const CancelFlag& cancel) {
#if defined(SDXL_WITH_C10D)
  const int rank = static_cast<int>(options.process_rank);
  const int world_size = static_cast<int>(options.process_world_size);
  const auto store = dist::tcp_store(options.store_host, static_cast<uint16_t>(options.store_port), rank, world_size,
                                     std::chrono::milliseconds(options.collective_timeout_ms));
  return train_rank(options, store, rank, world_size, progress, cancel, [] {});
#else
  throw std::invalid_argument("process_world_size: this engine was built without c10d backends (" +
                              dist::backends_built() + ")");
#endif
}

} // namespace

int64_t batches_per_epoch(const TrainOptions& options) {
  if (options.images.empty()) throw std::invalid_argument("images: at least one image is required");
  if (options.repeats < 1) throw std::invalid_argument("repeats: must be >= 1");
  if (options.batch_size < 1) throw std::invalid_argument("batch_size: must be >= 1");
  const train::BucketPlan plan(options.resolution, options.min_resolution, options.bucket_step, options.min_bucket_side,
                               options.max_bucket_side);
  std::vector<size_t> bucket_of_image;
  for (size_t i = 0; i < options.images.size(); ++i) {
    const TrainImage& image = options.images[i];
    if (image.width <= 0 || image.height <= 0)
      throw std::invalid_argument("images[" + std::to_string(i) + "]: width and height must be positive");
    const int64_t bucket = plan.assign(image.width, image.height);
    if (bucket >= 0) bucket_of_image.push_back(static_cast<size_t>(bucket)); // the others are skipped
  }
  if (bucket_of_image.empty())
    throw std::invalid_argument("images: every one of the " + std::to_string(options.images.size()) +
                                " images is below min_resolution (" + std::to_string(options.min_resolution) + ")");
  return train::BatchSampler(bucket_of_image, options.repeats, options.batch_size, false, 0).batches_per_epoch();
}

TrainResult train_lora(const TrainOptions& options, const ProgressFn& progress, const CancelFlag& cancel) {
  train::check_train_options(options);
  check_runtime(options.model.runtime);
  for (const std::string& device : options.devices) { // each rank's device exists
    RuntimeOptions rank_runtime = options.model.runtime;
    rank_runtime.device = device;
    check_runtime(rank_runtime);
  }
  // The family's options, from the configs alone: refused before any weight is loaded.
  const ModelInfo model = inspect_model(options.model);
  train::check_family_options(options, models::parse_family(model.family), model.text_encoder_layers);
  if (options.devices.size() > 1) return train_on_ranks(options, progress, cancel);
  if (options.process_world_size > 1) return train_as_process_rank(options, progress, cancel);
  const std::unique_ptr<train::Parallelism> parallel = train::single_device();
  Trainer trainer(options, progress, cancel, *parallel);
  return trainer.run();
}

} // namespace sdxl

// Public API of the engine (Stable Diffusion 1.x, 2.x and SDXL): what the Node-API
// layer (native/src/addon/) and the command-line tools call. Everything here is plain C++ data, so the
// binding copies JavaScript values into these structs on the main thread and
// the worker threads never touch Napi objects.
//
// Naming: PascalCase types, snake_case functions and files.
#pragma once

#include <atomic>     // std::atomic<bool> cancel flags
#include <cstdint>    // int64_t, uint8_t
#include <functional> // std::function progress callbacks
#include <map>        // Progress::metrics, TrainResult::metrics
#include <memory>     // std::shared_ptr<Model>
#include <stdexcept>  // std::runtime_error
#include <string>
#include <utility>    // std::move
#include <vector>

namespace sdxl {

// ----------------------------------------------------------------------------
// Runtime: devices, dtypes, progress and cancellation

// Where and in what precision a model runs.
struct RuntimeOptions {
  std::string device = "cpu";    // "cpu", "cuda" or "cuda:N"
  std::string dtype = "float32"; // "float32", "bfloat16" or "float16"
};

// One progress report of a long job; sent at most a few times per second.
struct Progress {
  Progress() = default;
  Progress(std::string phase_, int64_t step_, int64_t total_, std::string message_ = {})
      : phase(std::move(phase_)), step(step_), total(total_), message(std::move(message_)) {}

  std::string phase;  // e.g. "loading", "denoising", "decoding", "verifying"
  int64_t step = 0;   // steps done in this phase
  int64_t total = 0;  // steps in this phase (0 when unknown)
  std::string message;
  std::map<std::string, double> metrics; // e.g. training "loss", "lr", "it_per_s"; empty when none
  std::vector<std::string> files;        // files written since the last report (e.g. validation PNGs)
};
using ProgressFn = std::function<void(const Progress&)>;

// Set from any thread; long jobs check it between steps and throw Cancelled.
struct CancelFlag {
  std::atomic<bool> requested{false};
  void request() { requested.store(true); }
  bool is_set() const { return requested.load(); }
};

class Cancelled : public std::runtime_error {
 public:
  Cancelled() : std::runtime_error("cancelled") {}
};

// Throws Cancelled when the flag is set.
void throw_if_cancelled(const CancelFlag& cancel);

// Validates "cpu" / "cuda" / "cuda:N" and that the build and machine support it.
// Throws std::invalid_argument with a clear message otherwise.
void check_runtime(const RuntimeOptions& runtime);

// What this build of libtorch can do.
struct BuildInfo {
  std::string torch_version; // e.g. "1.13.1"
  bool cuda_available = false;
  int cuda_device_count = 0;
};
BuildInfo build_info();

// ----------------------------------------------------------------------------
// Models

struct LoadOptions {
  std::string model_path; // a diffusers folder (model_index.json) or one .safetensors checkpoint:
                          // SGM (SDXL, sd_xl_base_1.0.safetensors) or LDM (SD 1.x, v1-5-pruned-emaonly.safetensors)
  std::string config_dir; // for a single file: a diffusers folder of the same family whose configs and tokenizers
                          // to use; empty = the published SDXL-base or SD 1.5 configs and tokenizer/ (and, for
                          // SDXL, tokenizer_2/) beside the file
  RuntimeOptions runtime;
  int64_t lora_cache_bytes = int64_t{1} << 30; // parsed LoRAs generate() keeps (least recently used leave)
};

// A loaded pipeline: tokenizer(s), text encoder(s), UNet, VAE, scheduler config.
// Frozen weights are never modified, so one Model is shared by concurrent calls.
class Model;

std::shared_ptr<Model> load_model(const LoadOptions& options, const CancelFlag& cancel);

// What a model is. family: what conditions its UNet:
//   "sd1"  Stable Diffusion 1.x: one CLIP ViT-L text encoder (its last hidden state)
//   "sd2"  Stable Diffusion 2.x: one OpenCLIP-H text encoder (its last hidden state)
//   "sdxl" SDXL: two text encoders (both penultimate states), pooled text and size ids
struct ModelInfo {
  std::string family;           // "sd1", "sd2" or "sdxl"
  std::string prediction_type;  // "epsilon" or "v_prediction", from the scheduler config
  std::string source_layout;    // "diffusers", "sgm-single-file" or "ldm-single-file"
  int64_t default_resolution = 0;  // the UNet's sample_size times the VAE's scale: 512, 768, 1024
  int64_t text_encoder_layers = 0; // of the (first) text encoder: the largest clip_skip
  int64_t unet_parameters = 0;
  int64_t vae_parameters = 0;
  int64_t text_encoder_parameters = 0;
  int64_t text_encoder_2_parameters = 0; // 0 without a second text encoder
  RuntimeOptions runtime;
};
ModelInfo describe(const Model& model);

// The same from the model's configs and weight headers alone, without loading weights
// (LoadOptions::runtime is ignored). Throws std::invalid_argument naming what was
// found for a folder with a missing component, a config the engine does not implement
// (an unknown prediction_type, ...), or a single file of no known family.
ModelInfo inspect_model(const LoadOptions& options);

// Fills a diffusers folder that holds only configs (model_index.json, the four
// components' config.json, tokenizers, scheduler) with float32 weights drawn from
// `seed`: the service's built-in demo model, and test models of any size. Layers are
// uniform in +-1/sqrt(fan_in), norm scales 1, biases 0, from the engine's own generator,
// so one seed gives the same bytes with any libtorch on any machine. Writes
// text_encoder/model.safetensors, text_encoder_2/model.safetensors (SDXL) and
// {unet,vae}/diffusion_pytorch_model.safetensors; needs about twice the model's float32
// size in memory. Any family's folder (StableDiffusionPipeline or StableDiffusionXLPipeline).
struct RandomWeightsOptions {
  std::string model_dir;
  uint64_t seed = 0;
};
void write_random_weights(const RandomWeightsOptions& options, const CancelFlag& cancel);

// ----------------------------------------------------------------------------
// Prompts

struct TokenIds {
  std::vector<int64_t> tokenizer;   // 77 ids framed by tokenizer/
  std::vector<int64_t> tokenizer_2; // 77 ids framed by tokenizer_2/ (SDXL); empty for SD 1.x/2.x
};
TokenIds tokenize(const Model& model, const std::string& prompt);

// A float32 tensor copied to host memory, row-major.
struct HostTensor {
  std::vector<int64_t> shape;
  std::vector<float> data;
};

struct PromptEmbeddings {
  HostTensor prompt_embeds;        // [1, 77, cross_attention_dim]
  HostTensor pooled_prompt_embeds; // [1, projection_dim] (SDXL); shape [0] for SD 1.x/2.x
};
// clip_skip as in GenerateOptions.
PromptEmbeddings encode_prompt(const Model& model, const std::string& prompt, int64_t clip_skip = 0);

// ----------------------------------------------------------------------------
// Generation (text-to-image, classifier-free guidance, LoRAs unmerged per call)

struct LoraSpec {
  std::string path;   // kohya (SGM or diffusers names; SD 1.x: lora_te_*) or peft .safetensors
  double scale = 1.0;
  std::string sha256; // the file's hash, its key in the model's LoRA cache; empty = path, size and mtime
};

struct GenerateOptions {
  std::string prompt;
  std::string negative_prompt; // empty = zeros when the model says force_zeros_for_empty_prompt (SDXL-base),
                               // else the encoded empty prompt (SD 1.x/2.x)
  int64_t width = 1024;
  int64_t height = 1024;
  int64_t steps = 30;
  double guidance_scale = 5.0;
  std::string sampler = "euler"; // "euler", "euler_a" (Euler ancestral) or "dpmpp_2m_karras"
  uint64_t seed = 0;             // image i starts from (and, for euler_a, steps with) seed + i
  int64_t num_images = 1;        // 1 to 4, denoised as one batch
  // AUTOMATIC1111's "Clip skip", SD 1.x/2.x only: condition on final_layer_norm(hidden_states[-clip_skip]);
  // 0 or 1 = the last layer (the family's default), 2 = the penultimate. SDXL refuses any value but 0.
  int64_t clip_skip = 0;
  // SDXL micro-conditioning; 0 = diffusers' defaults (original and target = the output size, no crop).
  int64_t original_width = 0;
  int64_t original_height = 0;
  int64_t crop_top = 0;
  int64_t crop_left = 0;
  int64_t target_width = 0;
  int64_t target_height = 0;
  std::vector<LoraSpec> loras; // applied for this call only: concurrent calls never see each other's
};

struct Image {
  int64_t width = 0;
  int64_t height = 0;
  std::vector<uint8_t> rgb; // width * height * 3, row-major
};

// One image per num_images, in seed order.
std::vector<Image> generate(Model& model, const GenerateOptions& options, const ProgressFn& progress,
                            const CancelFlag& cancel);

// What the model's LoRA cache holds and how it has served.
struct LoraCacheInfo {
  int64_t entries = 0;
  int64_t bytes = 0;
  int64_t hits = 0;
  int64_t misses = 0;
};
LoraCacheInfo lora_cache_info(const Model& model);

// A LoRA file checked against a model: its layout and shape, and every key that names no
// module of the model or whose shapes do not fit (empty problems: the file applies).
// Throws std::invalid_argument for a file that is not safetensors, or not a LoRA at all
// (no lora_down / lora_A keys).
struct LoraCheck {
  std::string layout; // "kohya-sgm", "kohya-diffusers" (SD 1.x's kohya layout) or "peft"
  int64_t modules = 0;
  std::vector<std::string> components; // of "unet", "text_encoder", "text_encoder_2"
  std::vector<int64_t> ranks;          // distinct, ascending
  std::vector<double> alphas;          // distinct, ascending
  std::vector<std::string> problems;
};
LoraCheck check_lora(const Model& model, const std::string& path);

// ----------------------------------------------------------------------------
// Verify: recompute every output a golden fixture names and compare

struct VerifyOptions {
  std::string model_path;  // as LoadOptions::model_path
  std::string config_dir;  // as LoadOptions::config_dir
  std::string golden_dir;  // holds golden.json + golden.safetensors (+ lora/)
  std::string out_path;    // when set, computed tensors are written here as .safetensors
  RuntimeOptions runtime;
};

struct VerifyRow {
  std::string name;        // the fixture's tensor name, e.g. "unet.out.sample"
  double max_abs_diff = 0;
  double tolerance = 0;
  bool pass = false;
};

struct VerifyReport {
  std::vector<VerifyRow> rows;
  bool pass = false; // every row passed
};

VerifyReport verify(const VerifyOptions& options, const ProgressFn& progress, const CancelFlag& cancel);

// ----------------------------------------------------------------------------
// Training: DreamBooth-style LoRA fine-tuning of any family (native/src/train/)

// One training image (the caller decodes; sharp does it in Node).
struct TrainImage {
  std::string name;         // used in errors and in the dataset hash
  int64_t width = 0;        // the image's size: it chooses the image's bucket
  int64_t height = 0;
  std::vector<uint8_t> rgb; // width * height * 3, row-major; or empty, and TrainOptions::load_pixels gives them
  std::string caption;
  // What the pixels are (the source's content hash and how it was decoded): names the image's
  // cached latents, so a later run on the same pixels reuses them. Empty: the hash of `rgb`.
  std::string key;
};

// Pixels a PixelLoader gives: decoded as the caller decodes (a size limit may scale them
// down from the TrainImage's width x height; the image keeps its bucket).
struct Pixels {
  int64_t width = 0;
  int64_t height = 0;
  std::vector<uint8_t> rgb; // width * height * 3
};

// Gives the pixels of image `index` of images, then class_images, then validation_images
// (one numbering), when the trainer must encode it and its rgb is empty. Called on a
// training thread, one image at a time; may block. Throws to fail the run.
using PixelLoader = std::function<Pixels(size_t index)>;

struct TrainOptions {
  LoadOptions model; // runtime.dtype is the frozen weights' dtype: "float32", "bfloat16" or "float16"
  std::vector<TrainImage> images;
  // Held out from training (a validation split): never trained on. When given, the
  // validation loss is computed over them (one (timestep, noise) pair each, at least
  // validation_loss_samples in all) instead of over `images`.
  std::vector<TrainImage> validation_images;
  std::string output_dir;  // receives the LoRA file(s) or the model, checkpoints/ and samples/
  std::string output_name = "lora"; // <output_dir>/<output_name>.safetensors (+ _peft.safetensors);
                                    // method "full": also the folder <output_dir>/<output_name>/
  std::string resume_from; // a checkpoint file written by an earlier run with the same options; empty = fresh
  std::string trigger_phrase; // recorded as modelspec.trigger_phrase
  // Latents (per image key, bucket and flip) and prompt embeddings (per caption) are cached
  // here, per VAE and text-encoder dtype, and read back a batch at a time: host memory does
  // not grow with the dataset. Give one folder per model to share it between runs.
  // Empty: <output_dir>/cache.
  std::string cache_dir;
  PixelLoader load_pixels; // for images whose rgb is empty (see PixelLoader)

  // Data
  int64_t resolution = 1024;  // buckets hold about resolution^2 pixels, sides multiples of bucket_step
  // > 0: multi-resolution (train/buckets.h BucketPlan): each image trains at the largest tier
  // from min_resolution to resolution (multiples of bucket_step) that fits in its own pixels, and
  // images below min_resolution are skipped (TrainResult::metrics skipped_images). 0: every
  // image at resolution.
  int64_t min_resolution = 0;
  int64_t bucket_step = 64;
  int64_t min_bucket_side = 256;
  int64_t max_bucket_side = 2048;
  bool random_flip = false;
  int64_t repeats = 1;
  double caption_dropout = 0.0; // probability of training on the empty prompt

  // Prior preservation (DreamBooth's class images, diffusers' --with_prior_preservation):
  // every micro-batch also trains on as many class images (made by the base model from
  // the class prompt, all one size), taken in a fixed shuffled order, and the loss is
  // instance loss + prior_loss_weight * prior loss. Empty: off.
  std::vector<TrainImage> class_images;
  double prior_loss_weight = 1.0;

  // What is trained: "lora" (a LoRA network on the frozen model) or "full" (every
  // weight of the UNet, and of the text encoder(s) with train_text_encoder: DreamBooth
  // and fine-tuning as diffusers' train_dreambooth.py and kohya's fine_tune.py do).
  std::string method = "lora";

  // LoRA network (method "lora"; scale = alpha / rank; A random, B zero, as peft)
  int64_t rank = 16;
  double alpha = 16;
  double dropout = 0.0;
  std::vector<std::string> unet_targets{"to_q", "to_k", "to_v", "to_out.0"}; // module-name suffixes
  bool train_text_encoder = false; // the model's text encoder(s): one for SD 1.x/2.x, both for SDXL
  std::vector<std::string> text_encoder_targets{"q_proj", "k_proj", "v_proj", "out_proj"};
  int64_t clip_skip = 0; // SD 1.x/2.x only, as GenerateOptions::clip_skip (kohya's --clip_skip)

  // Loop
  int64_t max_steps = 1000;             // optimizer steps
  int64_t batch_size = 1;
  int64_t gradient_accumulation = 1;
  double max_grad_norm = 1.0;           // <= 0 disables clipping
  std::string lr_scheduler = "constant"; // constant, constant_with_warmup, linear, cosine
  int64_t lr_warmup_steps = 0;
  double unet_lr = 1e-4;
  double text_encoder_lr = 5e-5;
  double text_encoder_2_lr = 0; // SDXL only: text_encoder_2's LoRA learning rate; 0 = text_encoder_lr
  double min_snr_gamma = 0.0; // 0 = off; 5 is the usual value (weight min(snr, g)/snr; v-prediction: /(snr + 1))
  double noise_offset = 0.0;
  uint64_t seed = 0;

  // Optimizer
  std::string optimizer = "adamw8bit"; // "adamw" (32-bit states), "adamw8bit" or "adafactor" (factored
                                       // second moment, no first moment, fixed learning rate, as
                                       // transformers' Adafactor(relative_step=False, scale_parameter=False))
  double adam_beta1 = 0.9;
  double adam_beta2 = 0.999;
  double adam_epsilon = 1e-8;
  double weight_decay = 1e-2;

  // Precision and memory
  std::string vae_dtype = "float32"; // "float32" or "bfloat16"; never float16 (its known NaNs)
  bool gradient_checkpointing = false;
  double initial_loss_scale = 65536.0; // float16 only: dynamic loss scaling
  // Method "full": weights held in model.runtime.dtype; unless full_bf16, the optimizer
  // keeps float32 master copies of bfloat16 / float16 weights and updates those.
  // full_bf16 (kohya's --full_bf16): no master copies, weights, gradients and updates in
  // bfloat16 with stochastic rounding of each update (needs runtime dtype bfloat16).
  bool full_bf16 = false;

  // EMA of the trained weights (method "full"; diffusers' EMAModel without warmup:
  // decay min(ema_decay, (1 + n) / (10 + n)) at the n-th update after ema_start_step).
  double ema_decay = 0;        // 0 = off; 0.9999 is usual
  int64_t ema_start_step = 0;  // optimizer steps before the EMA starts following the weights
  bool ema_on_cpu = false;     // keep the EMA copy in host memory instead of on the device
  std::string validation_weights = "trained"; // "trained" or "ema": which weights validation samples with

  // Devices (data parallel, DistributedDataParallel's way): one rank per device, each a
  // thread of this process with its own copy of the model and its share of every batch
  // (batch_size / devices.size() images: the global batch, its order and its noise are
  // those of one device), gradients averaged over the ranks through c10d (Gloo on the
  // CPU, NCCL on CUDA). Empty or one device: model.runtime.device alone.
  std::vector<std::string> devices;
  // Or this process is one rank of a run whose ranks are processes (one device each, as
  // torchrun starts them): it trains rank process_rank of process_world_size on
  // model.runtime.device, and the ranks meet at a c10d TCPStore that rank 0 serves on
  // store_host:store_port. process_world_size 0: not a rank of several processes.
  std::string store_host = "127.0.0.1";
  int64_t store_port = 29500;
  int64_t process_rank = 0;
  int64_t process_world_size = 0;
  int64_t collective_timeout_ms = 30 * 60 * 1000; // a rank waiting longer for the others fails the run
  // Sharded optimizer states (ZeRO, train/parallelism.h), with several ranks: 0 = every
  // rank keeps all of them; 1 = each keeps, updates and sends its shard of the parameters
  // (states and master copies); 2 = and keeps only its shard's summed gradients.
  int64_t zero_stage = 0;
  // Gradients are sent in buckets of about this many bytes (DDP's bucket_cap_mb), each
  // as soon as backward has filled it (overlap_communication) or all after backward.
  int64_t bucket_bytes = 25 << 20;
  bool overlap_communication = true;

  // Checkpoints, validation, output
  int64_t checkpoint_every = 0; // steps; 0 = only on cancel
  int64_t keep_checkpoints = 0; // > 0: only the newest this many checkpoints stay on disk
  int64_t stop_after_step = 0;  // > 0: behave as if cancelled after this step (tests, preemption)
  int64_t validation_every = 0; // steps; 0 = only at the end when prompts or validation images exist
  std::vector<std::string> validation_prompts;
  uint64_t validation_seed = 0;
  int64_t validation_steps = 20;
  double validation_guidance_scale = 5.0;
  int64_t validation_loss_samples = 4; // fixed (image, timestep, noise) triples for the validation loss
  // Quality metrics of the validation images (evaluate() below): the per-image ones
  // (clip_t, clip_i, hps) at every validation, every one on the final set. The
  // references of clip_i, fid and kid are the held-out images when there are some, else
  // `images` (at most 1000, spread over the list); seeded by validation_seed.
  std::vector<std::string> validation_metrics;
  int64_t validation_final_images = 0; // > 0: images per prompt sampled at the end and scored
  std::string metrics_models_dir;      // the metric networks (evaluate()'s models_dir)
  bool save_peft = false;              // also write <output_name>_peft.safetensors
  std::string save_dtype = "float32";  // LoRA / model file tensors: "float32", "float16" or "bfloat16"
  std::map<std::string, std::string> metadata; // extra header entries for the LoRA or model file
};

struct TrainResult {
  std::string status; // "completed" or "cancelled" (a checkpoint was written first)
  int64_t steps = 0;  // optimizer steps done
  std::string lora_path;       // method "lora": kohya layout; empty when cancelled
  std::string peft_path;       // when save_peft
  // Method "full" (empty when cancelled):
  std::string model_dir;       // the diffusers folder: trained components written, the others linked
                               // to the base folder's (absent when the base model is a single file)
  std::string model_path;      // one file in the family's official layout (SGM for SDXL, LDM for SD 1.x)
  std::string ema_model_path;  // with EMA: the same file of the EMA weights
  std::string checkpoint_path; // the last checkpoint written, if any
  std::vector<std::string> sample_paths; // validation PNGs
  std::map<std::string, double> metrics; // final_loss, mean_loss, validation_loss_first/last, skipped_steps,
                                         // final_<metric> (the final set's quality metrics), ...
};

// (Named train_lora because sdxl::train is the trainer's namespace.)
// Trains on a model loaded for this run (never the shared inference model).
// Reports phases "loading", "caching", "training", "validating", "saving".
// Throws std::invalid_argument for bad options, before any model work.
TrainResult train_lora(const TrainOptions& options, const ProgressFn& progress, const CancelFlag& cancel);

// Micro-batches in one epoch of training on `options.images` (of which only width and
// height are read): the images of each aspect-ratio bucket, times repeats, in batches of
// batch_size that never mix buckets. What a number of epochs becomes in steps (divided by
// gradient_accumulation). Throws std::invalid_argument for no images or bad sizes.
int64_t batches_per_epoch(const TrainOptions& options);

// ----------------------------------------------------------------------------
// Quality metrics of generated images (native/src/metrics/): CLIP-T, CLIP-I, an
// HPS-style OpenCLIP score, LPIPS diversity, FID, KID and the Inception Score, each
// with its network from a folder the operator fills (inception/, lpips/, clip/, hps/).

// Whether each metric's network files are present in `models_dir` (not whether they load).
struct MetricNetwork {
  std::string metric;  // clip_t, clip_i, hps, lpips, fid, kid, is
  std::string network; // its folder: clip, hps, lpips, inception
  bool available = false;
  std::string reason;  // why not, when not
};
std::vector<MetricNetwork> metric_networks(const std::string& models_dir);

struct EvaluateOptions {
  std::string models_dir;
  std::vector<std::string> metrics;
  std::vector<TrainImage> images;     // scored; caption = the prompt an image was made from
  std::vector<TrainImage> references; // what clip_i, fid and kid compare the images with
  std::string device = "cpu";
  uint64_t seed = 0;                  // KID's subsets, the Inception Score's permutation
};

struct EvaluateResult {
  std::map<std::string, double> values;           // each metric, plus images, reference_images,
                                                  // kid_std, kid_subsets, kid_subset_size, is_std, is_splits, lpips_pairs
  std::map<std::string, std::string> unavailable; // metric -> why it was not computed
};

// Throws std::invalid_argument for an unknown metric or a bad image; a metric that
// cannot be computed is in `unavailable`, never an error.
EvaluateResult evaluate(const EvaluateOptions& options, const ProgressFn& progress, const CancelFlag& cancel);

} // namespace sdxl

// Public API of the SDXL engine: what the Node-API layer (native/src/addon/)
// and the command-line tools call. Everything here is plain C++ data, so the
// binding copies JavaScript values into these structs on the main thread and
// the worker threads never touch Napi objects.
//
// Naming: PascalCase types, snake_case functions and files.
#pragma once

#include <atomic>     // std::atomic<bool> cancel flags
#include <cstdint>    // int64_t, uint8_t
#include <functional> // std::function progress callbacks
#include <memory>     // std::shared_ptr<Model>
#include <stdexcept>  // std::runtime_error
#include <string>
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
  std::string phase;  // e.g. "loading", "denoising", "decoding", "verifying"
  int64_t step = 0;   // steps done in this phase
  int64_t total = 0;  // steps in this phase (0 when unknown)
  std::string message;
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
  std::string model_path; // a diffusers folder (model_index.json) or one SGM .safetensors file
  std::string config_dir; // for a single file: a diffusers folder whose configs and tokenizers to use;
                          // empty = SDXL-base configs and tokenizer/, tokenizer_2/ beside the file
  RuntimeOptions runtime;
};

// A loaded SDXL pipeline: tokenizers, both text encoders, UNet, VAE, scheduler config.
// Frozen weights are never modified, so one Model is shared by concurrent calls.
class Model;

std::shared_ptr<Model> load_model(const LoadOptions& options, const CancelFlag& cancel);

struct ModelInfo {
  std::string source_layout;    // "diffusers" or "sgm-single-file"
  int64_t unet_parameters = 0;
  int64_t vae_parameters = 0;
  int64_t text_encoder_parameters = 0;
  int64_t text_encoder_2_parameters = 0;
  RuntimeOptions runtime;
};
ModelInfo describe(const Model& model);

// ----------------------------------------------------------------------------
// Prompts

struct TokenIds {
  std::vector<int64_t> tokenizer;   // 77 ids framed by tokenizer/
  std::vector<int64_t> tokenizer_2; // 77 ids framed by tokenizer_2/
};
TokenIds tokenize(const Model& model, const std::string& prompt);

// A float32 tensor copied to host memory, row-major.
struct HostTensor {
  std::vector<int64_t> shape;
  std::vector<float> data;
};

struct PromptEmbeddings {
  HostTensor prompt_embeds;        // [1, 77, te1_hidden + te2_hidden]
  HostTensor pooled_prompt_embeds; // [1, projection_dim]
};
PromptEmbeddings encode_prompt(const Model& model, const std::string& prompt);

// ----------------------------------------------------------------------------
// Generation (text-to-image, Euler, classifier-free guidance, LoRAs unmerged)

struct LoraSpec {
  std::string path; // kohya (SGM or diffusers names) or peft .safetensors
  double scale = 1.0;
};

struct GenerateOptions {
  std::string prompt;
  std::string negative_prompt; // empty = zeros when the model says force_zeros_for_empty_prompt
  int64_t width = 1024;
  int64_t height = 1024;
  int64_t steps = 30;
  double guidance_scale = 5.0;
  uint64_t seed = 0;
  std::vector<LoraSpec> loras;
};

struct Image {
  int64_t width = 0;
  int64_t height = 0;
  std::vector<uint8_t> rgb; // width * height * 3, row-major
};

Image generate(Model& model, const GenerateOptions& options, const ProgressFn& progress,
               const CancelFlag& cancel);

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

} // namespace sdxl

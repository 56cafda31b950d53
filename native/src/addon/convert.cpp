// JS <-> engine.h struct conversion, with type checks that name the field.
#include "addon/convert.h"

#include "addon/errors.h" // invalid_argument

#include <cmath>    // std::isfinite, std::trunc
#include <optional> // optional defaults
#include <vector>

namespace sdxl::addon {
namespace {

// ----------------------------------------------------------------------------
// Reading option objects

constexpr double kMaxSafeInteger = 9007199254740991.0; // Number.MAX_SAFE_INTEGER
constexpr size_t kMaxQuotedChars = 60;                  // of a wrong string value, in messages

std::string js_type_name(const Napi::Value& value) {
  if (value.IsNull()) return "null";
  if (value.IsArray()) return "array";
  if (value.IsNumber()) {
    const double number = value.As<Napi::Number>().DoubleValue();
    return "number " + std::to_string(number);
  }
  if (value.IsString()) {
    std::string text = value.As<Napi::String>().Utf8Value();
    if (text.size() > kMaxQuotedChars) text = text.substr(0, kMaxQuotedChars) + "...";
    return "string \"" + text + "\"";
  }
  if (value.IsBuffer()) return "Buffer";
  if (value.IsTypedArray()) return "typed array";
  switch (value.Type()) {
    case napi_undefined: return "undefined";
    case napi_boolean: return "boolean";
    case napi_bigint: return "bigint";
    case napi_function: return "function";
    case napi_object: return "object";
    default: return "another type";
  }
}

// Reads fields of one JS options object; `path` names it in errors ("options").
class FieldReader {
 public:
  FieldReader(const Napi::Value& value, std::string path) : env_(value.Env()), path_(std::move(path)) {
    if (!value.IsObject() || value.IsArray())
      throw invalid_argument(env_, "Expected object for " + path_ + " but received " + js_type_name(value));
    object_ = value.As<Napi::Object>();
  }

  std::string string(const char* key, std::optional<std::string> fallback = std::nullopt) const {
    const Napi::Value value = object_.Get(key);
    if (value.IsUndefined() && fallback) return *fallback;
    if (!value.IsString()) throw mismatch("string", key, value);
    return value.As<Napi::String>().Utf8Value();
  }

  double number(const char* key, std::optional<double> fallback = std::nullopt) const {
    const Napi::Value value = object_.Get(key);
    if (value.IsUndefined() && fallback) return *fallback;
    if (!value.IsNumber() || !std::isfinite(value.As<Napi::Number>().DoubleValue()))
      throw mismatch("finite number", key, value);
    return value.As<Napi::Number>().DoubleValue();
  }

  int64_t integer(const char* key, std::optional<int64_t> fallback = std::nullopt) const {
    const Napi::Value value = object_.Get(key);
    if (value.IsUndefined() && fallback) return *fallback;
    const double number = value.IsNumber() ? value.As<Napi::Number>().DoubleValue() : NAN;
    if (!std::isfinite(number) || std::trunc(number) != number || std::fabs(number) > kMaxSafeInteger)
      throw mismatch("integer", key, value);
    return static_cast<int64_t>(number);
  }

  // A non-negative integer given as a number or a bigint (seeds use all 64 bits).
  uint64_t unsigned_integer(const char* key, uint64_t fallback) const {
    const Napi::Value value = object_.Get(key);
    if (value.IsUndefined()) return fallback;
    if (value.IsBigInt()) {
      bool lossless = false;
      const uint64_t result = value.As<Napi::BigInt>().Uint64Value(&lossless);
      if (!lossless) throw mismatch("unsigned 64-bit integer", key, value);
      return result;
    }
    const int64_t result = integer(key);
    if (result < 0) throw mismatch("non-negative integer", key, value);
    return static_cast<uint64_t>(result);
  }

  bool boolean(const char* key, bool fallback) const {
    const Napi::Value value = object_.Get(key);
    if (value.IsUndefined()) return fallback;
    if (!value.IsBoolean()) throw mismatch("boolean", key, value);
    return value.As<Napi::Boolean>().Value();
  }

  std::vector<std::string> string_list(const char* key, std::vector<std::string> fallback) const {
    const Napi::Value value = object_.Get(key);
    if (value.IsUndefined()) return fallback;
    const Napi::Array list = array(key);
    std::vector<std::string> result;
    for (uint32_t i = 0; i < list.Length(); ++i) {
      const Napi::Value item = list.Get(i);
      if (!item.IsString()) throw mismatch("string", std::string(key) + "[" + std::to_string(i) + "]", item);
      result.push_back(item.As<Napi::String>().Utf8Value());
    }
    return result;
  }

  // A plain object whose values are all strings ({ key: "value" }).
  std::map<std::string, std::string> string_map(const char* key) const {
    const Napi::Value value = object_.Get(key);
    std::map<std::string, std::string> result;
    if (value.IsUndefined()) return result;
    const FieldReader entries(value, field(key));
    const Napi::Array names = entries.object_.GetPropertyNames();
    for (uint32_t i = 0; i < names.Length(); ++i) {
      const std::string name = names.Get(i).As<Napi::String>().Utf8Value();
      result[name] = entries.string(name.c_str());
    }
    return result;
  }

  Napi::Array array(const char* key) const {
    const Napi::Value value = object_.Get(key);
    if (!value.IsArray()) throw mismatch("array", key, value);
    return value.As<Napi::Array>();
  }

  // The bytes of a Buffer or Uint8Array field, copied.
  std::vector<uint8_t> bytes(const char* key) const {
    const Napi::Value value = object_.Get(key);
    if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
      throw mismatch("Buffer", key, value);
    const Napi::Uint8Array data = value.As<Napi::Uint8Array>();
    return std::vector<uint8_t>(data.Data(), data.Data() + data.ByteLength());
  }

  Napi::Value raw(const char* key) const { return object_.Get(key); }
  std::string field(const std::string& key) const { return path_ + "." + key; }

 private:
  Napi::Error mismatch(const char* expected, const std::string& key, const Napi::Value& value) const {
    return invalid_argument(env_, std::string("Expected ") + expected + " for " + field(key) + " but received " +
                                      js_type_name(value));
  }

  Napi::Env env_;
  std::string path_;
  Napi::Object object_;
};

RuntimeOptions runtime_from(const FieldReader& reader) {
  RuntimeOptions runtime;
  runtime.device = reader.string("device", runtime.device);
  runtime.dtype = reader.string("dtype", runtime.dtype);
  return runtime;
}

Napi::Array int64s_to_js(Napi::Env env, const std::vector<int64_t>& values) {
  Napi::Array array = Napi::Array::New(env, values.size());
  for (size_t i = 0; i < values.size(); ++i) array.Set(i, Napi::Number::New(env, static_cast<double>(values[i])));
  return array;
}

Napi::Array strings_to_js(Napi::Env env, const std::vector<std::string>& values) {
  Napi::Array array = Napi::Array::New(env, values.size());
  for (size_t i = 0; i < values.size(); ++i) array.Set(i, Napi::String::New(env, values[i]));
  return array;
}

Napi::Object metrics_to_js(Napi::Env env, const std::map<std::string, double>& metrics) {
  Napi::Object result = Napi::Object::New(env);
  for (const auto& [name, value] : metrics) result.Set(name, Napi::Number::New(env, value));
  return result;
}

Napi::Object host_tensor_to_js(Napi::Env env, const HostTensor& tensor) {
  Napi::Object result = Napi::Object::New(env);
  result.Set("shape", int64s_to_js(env, tensor.shape));
  Napi::Float32Array data = Napi::Float32Array::New(env, tensor.data.size());
  std::copy(tensor.data.begin(), tensor.data.end(), data.Data());
  result.Set("data", data);
  return result;
}

} // namespace

// ----------------------------------------------------------------------------
// JS -> C++

LoadOptions load_options_from_js(const Napi::Value& value) {
  const FieldReader reader(value, "options");
  LoadOptions options;
  options.model_path = reader.string("modelPath");
  options.config_dir = reader.string("configDir", "");
  options.runtime = runtime_from(reader);
  options.lora_cache_bytes = reader.integer("loraCacheBytes", options.lora_cache_bytes);
  return options;
}

RandomWeightsOptions random_weights_options_from_js(const Napi::Value& value) {
  const FieldReader reader(value, "options");
  RandomWeightsOptions options;
  options.model_dir = reader.string("modelDir");
  options.seed = static_cast<uint64_t>(reader.integer("seed", 0));
  return options;
}

GenerateOptions generate_options_from_js(const Napi::Value& value) {
  const FieldReader reader(value, "options");
  GenerateOptions options;
  options.prompt = reader.string("prompt");
  options.negative_prompt = reader.string("negativePrompt", "");
  options.width = reader.integer("width", options.width);
  options.height = reader.integer("height", options.height);
  options.steps = reader.integer("steps", options.steps);
  options.guidance_scale = reader.number("guidanceScale", options.guidance_scale);
  options.sampler = reader.string("sampler", options.sampler);
  options.seed = reader.unsigned_integer("seed", options.seed);
  options.num_images = reader.integer("numImages", options.num_images);
  options.clip_skip = reader.integer("clipSkip", 0);
  options.original_width = reader.integer("originalWidth", 0);
  options.original_height = reader.integer("originalHeight", 0);
  options.crop_top = reader.integer("cropTop", 0);
  options.crop_left = reader.integer("cropLeft", 0);
  options.target_width = reader.integer("targetWidth", 0);
  options.target_height = reader.integer("targetHeight", 0);
  const Napi::Value loras = reader.raw("loras");
  if (!loras.IsUndefined()) {
    if (!loras.IsArray())
      throw invalid_argument(value.Env(), "Expected array for options.loras but received " + js_type_name(loras));
    const Napi::Array list = loras.As<Napi::Array>();
    for (uint32_t i = 0; i < list.Length(); ++i) {
      const FieldReader lora(list.Get(i), "options.loras[" + std::to_string(i) + "]");
      options.loras.push_back({lora.string("path"), lora.number("scale", 1.0), lora.string("sha256", "")});
    }
  }
  return options;
}

VerifyOptions verify_options_from_js(const Napi::Value& value) {
  const FieldReader reader(value, "options");
  VerifyOptions options;
  options.model_path = reader.string("modelPath");
  options.config_dir = reader.string("configDir", "");
  options.golden_dir = reader.string("goldenDir");
  options.out_path = reader.string("outPath", "");
  options.runtime = runtime_from(reader);
  return options;
}

namespace {

TrainImage train_image_from_js(const Napi::Value& value, const std::string& path) {
  const FieldReader reader(value, path);
  TrainImage image;
  image.name = reader.string("name");
  image.caption = reader.string("caption", ""); // evaluate(): the prompt, when known
  image.width = reader.integer("width");
  image.height = reader.integer("height");
  if (image.width <= 0 || image.height <= 0)
    throw invalid_argument(value.Env(), "Expected positive width and height for " + path + " but received " +
                                            std::to_string(image.width) + " x " + std::to_string(image.height));
  image.key = reader.string("key", "");
  if (reader.raw("rgb").IsUndefined()) return image; // the loader gives them (options.loadPixels)
  image.rgb = reader.bytes("rgb");
  const uint64_t expected_bytes = static_cast<uint64_t>(image.width) * static_cast<uint64_t>(image.height) * 3;
  if (image.rgb.size() != expected_bytes)
    throw invalid_argument(value.Env(), "Expected " + std::to_string(expected_bytes) + " bytes (" +
                                            std::to_string(image.width) + " x " + std::to_string(image.height) +
                                            " x 3) for " + reader.field("rgb") + " but received " +
                                            std::to_string(image.rgb.size()));
  return image;
}

// The images of an optional array field `name` ([] when it is absent).
std::vector<TrainImage> optional_train_images(const FieldReader& reader, const char* name) {
  std::vector<TrainImage> images;
  const Napi::Value list = reader.raw(name);
  if (list.IsUndefined()) return images;
  if (!list.IsArray())
    throw invalid_argument(list.Env(), "Expected array for " + reader.field(name) + " but received " + js_type_name(list));
  const Napi::Array array = list.As<Napi::Array>();
  for (uint32_t i = 0; i < array.Length(); ++i)
    images.push_back(train_image_from_js(array.Get(i), reader.field(name) + "[" + std::to_string(i) + "]"));
  return images;
}

} // namespace

Pixels pixels_from_js(const Napi::Value& value, const std::string& path) {
  const FieldReader reader(value, path);
  Pixels pixels;
  pixels.width = reader.integer("width");
  pixels.height = reader.integer("height");
  pixels.rgb = reader.bytes("rgb");
  return pixels;
}

TrainOptions epoch_plan_from_js(const Napi::Value& value) {
  const FieldReader reader(value, "options");
  TrainOptions options;
  const Napi::Array images = reader.array("images");
  for (uint32_t i = 0; i < images.Length(); ++i) {
    const FieldReader image(images.Get(i), reader.field("images") + "[" + std::to_string(i) + "]");
    TrainImage size;
    size.width = image.integer("width");
    size.height = image.integer("height");
    options.images.push_back(std::move(size));
  }
  options.resolution = reader.integer("resolution", options.resolution);
  options.min_resolution = reader.integer("minResolution", options.min_resolution);
  options.bucket_step = reader.integer("bucketStep", options.bucket_step);
  options.min_bucket_side = reader.integer("minBucketSide", options.min_bucket_side);
  options.max_bucket_side = reader.integer("maxBucketSide", options.max_bucket_side);
  options.repeats = reader.integer("repeats", options.repeats);
  options.batch_size = reader.integer("batchSize", options.batch_size);
  return options;
}

TrainOptions train_options_from_js(const Napi::Value& value) {
  const FieldReader reader(value, "options");
  TrainOptions options;
  options.model.model_path = reader.string("modelPath");
  options.model.config_dir = reader.string("configDir", "");
  options.model.runtime = runtime_from(reader);
  const Napi::Array images = reader.array("images");
  options.images.reserve(images.Length());
  for (uint32_t i = 0; i < images.Length(); ++i)
    options.images.push_back(train_image_from_js(images.Get(i), "options.images[" + std::to_string(i) + "]"));
  options.class_images = optional_train_images(reader, "classImages");
  options.validation_images = optional_train_images(reader, "validationImages");
  options.prior_loss_weight = reader.number("priorLossWeight", options.prior_loss_weight);
  options.output_dir = reader.string("outputDir");
  options.output_name = reader.string("outputName", options.output_name);
  options.resume_from = reader.string("resumeFrom", "");
  options.trigger_phrase = reader.string("triggerPhrase", "");
  options.cache_dir = reader.string("cacheDir", "");
  // Data
  options.resolution = reader.integer("resolution", options.resolution);
  options.min_resolution = reader.integer("minResolution", options.min_resolution);
  options.bucket_step = reader.integer("bucketStep", options.bucket_step);
  options.min_bucket_side = reader.integer("minBucketSide", options.min_bucket_side);
  options.max_bucket_side = reader.integer("maxBucketSide", options.max_bucket_side);
  options.random_flip = reader.boolean("randomFlip", options.random_flip);
  options.repeats = reader.integer("repeats", options.repeats);
  options.caption_dropout = reader.number("captionDropout", options.caption_dropout);
  options.method = reader.string("method", options.method);
  // LoRA network
  options.rank = reader.integer("rank", options.rank);
  options.alpha = reader.number("alpha", options.alpha);
  options.dropout = reader.number("dropout", options.dropout);
  options.unet_targets = reader.string_list("unetTargets", options.unet_targets);
  options.train_text_encoder = reader.boolean("trainTextEncoder", options.train_text_encoder);
  options.clip_skip = reader.integer("clipSkip", options.clip_skip);
  options.text_encoder_targets = reader.string_list("textEncoderTargets", options.text_encoder_targets);
  // Loop
  options.max_steps = reader.integer("maxSteps", options.max_steps);
  options.batch_size = reader.integer("batchSize", options.batch_size);
  options.gradient_accumulation = reader.integer("gradientAccumulation", options.gradient_accumulation);
  options.max_grad_norm = reader.number("maxGradNorm", options.max_grad_norm);
  options.lr_scheduler = reader.string("lrScheduler", options.lr_scheduler);
  options.lr_warmup_steps = reader.integer("lrWarmupSteps", options.lr_warmup_steps);
  options.unet_lr = reader.number("unetLr", options.unet_lr);
  options.text_encoder_lr = reader.number("textEncoderLr", options.text_encoder_lr);
  options.text_encoder_2_lr = reader.number("textEncoder2Lr", options.text_encoder_2_lr);
  options.min_snr_gamma = reader.number("minSnrGamma", options.min_snr_gamma);
  options.noise_offset = reader.number("noiseOffset", options.noise_offset);
  options.seed = reader.unsigned_integer("seed", options.seed);
  // Optimizer
  options.optimizer = reader.string("optimizer", options.optimizer);
  options.adam_beta1 = reader.number("adamBeta1", options.adam_beta1);
  options.adam_beta2 = reader.number("adamBeta2", options.adam_beta2);
  options.adam_epsilon = reader.number("adamEpsilon", options.adam_epsilon);
  options.weight_decay = reader.number("weightDecay", options.weight_decay);
  // Precision and memory
  options.vae_dtype = reader.string("vaeDtype", options.vae_dtype);
  options.gradient_checkpointing = reader.boolean("gradientCheckpointing", options.gradient_checkpointing);
  options.initial_loss_scale = reader.number("initialLossScale", options.initial_loss_scale);
  options.full_bf16 = reader.boolean("fullBf16", options.full_bf16);
  options.ema_decay = reader.number("emaDecay", options.ema_decay);
  options.ema_start_step = reader.integer("emaStartStep", options.ema_start_step);
  options.ema_on_cpu = reader.boolean("emaOnCpu", options.ema_on_cpu);
  options.validation_weights = reader.string("validationWeights", options.validation_weights);
  // Devices (data parallel)
  options.devices = reader.string_list("devices", options.devices);
  options.collective_timeout_ms = reader.integer("collectiveTimeoutMs", options.collective_timeout_ms);
  options.zero_stage = reader.integer("zeroStage", options.zero_stage);
  // Checkpoints, validation, output
  options.checkpoint_every = reader.integer("checkpointEvery", options.checkpoint_every);
  options.keep_checkpoints = reader.integer("keepCheckpoints", options.keep_checkpoints);
  options.stop_after_step = reader.integer("stopAfterStep", options.stop_after_step);
  options.validation_every = reader.integer("validationEvery", options.validation_every);
  options.validation_prompts = reader.string_list("validationPrompts", options.validation_prompts);
  options.validation_seed = reader.unsigned_integer("validationSeed", options.validation_seed);
  options.validation_steps = reader.integer("validationSteps", options.validation_steps);
  options.validation_guidance_scale = reader.number("validationGuidanceScale", options.validation_guidance_scale);
  options.validation_loss_samples = reader.integer("validationLossSamples", options.validation_loss_samples);
  options.validation_metrics = reader.string_list("validationMetrics", options.validation_metrics);
  options.validation_final_images = reader.integer("validationFinalImages", options.validation_final_images);
  options.metrics_models_dir = reader.string("metricsModelsDir", "");
  options.save_peft = reader.boolean("savePeft", options.save_peft);
  options.save_dtype = reader.string("saveDtype", options.save_dtype);
  options.metadata = reader.string_map("metadata");
  return options;
}

EvaluateOptions evaluate_options_from_js(const Napi::Value& value) {
  const FieldReader reader(value, "options");
  EvaluateOptions options;
  options.models_dir = reader.string("modelsDir");
  options.metrics = reader.string_list("metrics", {});
  options.device = reader.string("device", options.device);
  options.seed = reader.unsigned_integer("seed", options.seed);
  const Napi::Array images = reader.array("images");
  for (uint32_t i = 0; i < images.Length(); ++i)
    options.images.push_back(train_image_from_js(images.Get(i), "options.images[" + std::to_string(i) + "]"));
  const Napi::Value references = reader.raw("references");
  if (!references.IsUndefined()) {
    if (!references.IsArray())
      throw invalid_argument(value.Env(), "Expected array for options.references but received " + js_type_name(references));
    const Napi::Array list = references.As<Napi::Array>();
    for (uint32_t i = 0; i < list.Length(); ++i)
      options.references.push_back(train_image_from_js(list.Get(i), "options.references[" + std::to_string(i) + "]"));
  }
  return options;
}

std::string string_argument(const Napi::CallbackInfo& info, size_t index, const char* name) {
  if (info.Length() <= index || !info[index].IsString())
    throw invalid_argument(info.Env(), std::string("Expected string for ") + name + " but received " +
                                           (info.Length() <= index ? "undefined" : js_type_name(info[index])));
  return info[index].As<Napi::String>().Utf8Value();
}

// ----------------------------------------------------------------------------
// C++ -> JS

Napi::Object build_info_to_js(Napi::Env env, const BuildInfo& info) {
  Napi::Object result = Napi::Object::New(env);
  result.Set("torchVersion", info.torch_version);
  result.Set("cudaAvailable", info.cuda_available);
  result.Set("cudaDeviceCount", info.cuda_device_count);
  return result;
}

Napi::Object model_info_to_js(Napi::Env env, const ModelInfo& info) {
  Napi::Object result = Napi::Object::New(env);
  result.Set("family", info.family);
  result.Set("predictionType", info.prediction_type);
  result.Set("sourceLayout", info.source_layout);
  result.Set("defaultResolution", static_cast<double>(info.default_resolution));
  result.Set("textEncoderLayers", static_cast<double>(info.text_encoder_layers));
  result.Set("unetParameters", static_cast<double>(info.unet_parameters));
  result.Set("vaeParameters", static_cast<double>(info.vae_parameters));
  result.Set("textEncoderParameters", static_cast<double>(info.text_encoder_parameters));
  result.Set("textEncoder2Parameters", static_cast<double>(info.text_encoder_2_parameters));
  result.Set("device", info.runtime.device);
  result.Set("dtype", info.runtime.dtype);
  return result;
}

Napi::Object token_ids_to_js(Napi::Env env, const TokenIds& ids) {
  Napi::Object result = Napi::Object::New(env);
  result.Set("tokenizer", int64s_to_js(env, ids.tokenizer));
  result.Set("tokenizer2", int64s_to_js(env, ids.tokenizer_2));
  return result;
}

Napi::Object prompt_embeddings_to_js(Napi::Env env, const PromptEmbeddings& embeddings) {
  Napi::Object result = Napi::Object::New(env);
  result.Set("promptEmbeds", host_tensor_to_js(env, embeddings.prompt_embeds));
  result.Set("pooledPromptEmbeds", host_tensor_to_js(env, embeddings.pooled_prompt_embeds));
  return result;
}

Napi::Object image_to_js(Napi::Env env, const Image& image) {
  Napi::Object result = Napi::Object::New(env);
  result.Set("width", static_cast<double>(image.width));
  result.Set("height", static_cast<double>(image.height));
  result.Set("channels", 3);
  result.Set("rgb", Napi::Buffer<uint8_t>::Copy(env, image.rgb.data(), image.rgb.size()));
  return result;
}

Napi::Array images_to_js(Napi::Env env, const std::vector<Image>& images) {
  Napi::Array result = Napi::Array::New(env, images.size());
  for (size_t i = 0; i < images.size(); ++i) result.Set(i, image_to_js(env, images[i]));
  return result;
}

Napi::Object lora_check_to_js(Napi::Env env, const LoraCheck& check) {
  Napi::Object result = Napi::Object::New(env);
  result.Set("layout", check.layout);
  result.Set("modules", static_cast<double>(check.modules));
  const auto strings = [&](const std::vector<std::string>& values) {
    Napi::Array array = Napi::Array::New(env, values.size());
    for (size_t i = 0; i < values.size(); ++i) array.Set(i, values[i]);
    return array;
  };
  result.Set("components", strings(check.components));
  result.Set("problems", strings(check.problems));
  Napi::Array ranks = Napi::Array::New(env, check.ranks.size());
  for (size_t i = 0; i < check.ranks.size(); ++i) ranks.Set(i, static_cast<double>(check.ranks[i]));
  result.Set("ranks", ranks);
  Napi::Array alphas = Napi::Array::New(env, check.alphas.size());
  for (size_t i = 0; i < check.alphas.size(); ++i) alphas.Set(i, check.alphas[i]);
  result.Set("alphas", alphas);
  return result;
}

Napi::Object lora_cache_info_to_js(Napi::Env env, const LoraCacheInfo& info) {
  Napi::Object result = Napi::Object::New(env);
  result.Set("entries", static_cast<double>(info.entries));
  result.Set("bytes", static_cast<double>(info.bytes));
  result.Set("hits", static_cast<double>(info.hits));
  result.Set("misses", static_cast<double>(info.misses));
  return result;
}

Napi::Object verify_report_to_js(Napi::Env env, const VerifyReport& report) {
  Napi::Object result = Napi::Object::New(env);
  Napi::Array rows = Napi::Array::New(env, report.rows.size());
  for (size_t i = 0; i < report.rows.size(); ++i) {
    const VerifyRow& row = report.rows[i];
    Napi::Object js_row = Napi::Object::New(env);
    js_row.Set("name", row.name);
    js_row.Set("maxAbsDiff", row.max_abs_diff);
    js_row.Set("tolerance", row.tolerance);
    js_row.Set("pass", row.pass);
    rows.Set(i, js_row);
  }
  result.Set("rows", rows);
  result.Set("pass", report.pass);
  return result;
}

Napi::Object progress_to_js(Napi::Env env, const Progress& progress) {
  Napi::Object result = Napi::Object::New(env);
  result.Set("phase", progress.phase);
  result.Set("step", static_cast<double>(progress.step));
  result.Set("total", static_cast<double>(progress.total));
  result.Set("message", progress.message);
  result.Set("metrics", metrics_to_js(env, progress.metrics));
  result.Set("files", strings_to_js(env, progress.files));
  return result;
}

Napi::Object evaluate_result_to_js(Napi::Env env, const EvaluateResult& evaluation) {
  Napi::Object result = Napi::Object::New(env);
  result.Set("values", metrics_to_js(env, evaluation.values));
  Napi::Object unavailable = Napi::Object::New(env);
  for (const auto& [metric, why] : evaluation.unavailable) unavailable.Set(metric, why);
  result.Set("unavailable", unavailable);
  return result;
}

Napi::Array metric_networks_to_js(Napi::Env env, const std::vector<MetricNetwork>& networks) {
  Napi::Array list = Napi::Array::New(env, networks.size());
  for (uint32_t i = 0; i < networks.size(); ++i) {
    Napi::Object entry = Napi::Object::New(env);
    entry.Set("metric", networks[i].metric);
    entry.Set("network", networks[i].network);
    entry.Set("available", networks[i].available);
    entry.Set("reason", networks[i].available ? env.Null() : Napi::String::New(env, networks[i].reason));
    list.Set(i, entry);
  }
  return list;
}

Napi::Object train_result_to_js(Napi::Env env, const TrainResult& train_result) {
  Napi::Object result = Napi::Object::New(env);
  result.Set("status", train_result.status);
  result.Set("steps", static_cast<double>(train_result.steps));
  // Paths the run did not write are left out rather than set to "".
  if (!train_result.lora_path.empty()) result.Set("loraPath", train_result.lora_path);
  if (!train_result.peft_path.empty()) result.Set("peftPath", train_result.peft_path);
  if (!train_result.model_dir.empty()) result.Set("modelDir", train_result.model_dir);
  if (!train_result.model_path.empty()) result.Set("modelPath", train_result.model_path);
  if (!train_result.ema_model_path.empty()) result.Set("emaModelPath", train_result.ema_model_path);
  if (!train_result.checkpoint_path.empty()) result.Set("checkpointPath", train_result.checkpoint_path);
  result.Set("samplePaths", strings_to_js(env, train_result.sample_paths));
  result.Set("metrics", metrics_to_js(env, train_result.metrics));
  return result;
}

Napi::Object safetensors_header_to_js(Napi::Env env, const SafetensorsHeader& header) {
  Napi::Object tensors = Napi::Object::New(env);
  for (const auto& [name, info] : header.tensors) {
    Napi::Object entry = Napi::Object::New(env);
    entry.Set("dtype", info.dtype);
    entry.Set("shape", int64s_to_js(env, info.shape));
    Napi::Array offsets = Napi::Array::New(env, 2);
    offsets.Set(uint32_t{0}, static_cast<double>(info.begin));
    offsets.Set(uint32_t{1}, static_cast<double>(info.end));
    entry.Set("dataOffsets", offsets);
    tensors.Set(name, entry);
  }
  Napi::Object metadata = Napi::Object::New(env);
  for (const auto& [key, value] : header.metadata) metadata.Set(key, value);
  Napi::Object result = Napi::Object::New(env);
  result.Set("tensors", tensors);
  result.Set("metadata", metadata);
  return result;
}

} // namespace sdxl::addon

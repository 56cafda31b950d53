// JS <-> engine.h struct conversion, with type checks that name the field.
#include "addon/convert.h"

#include "addon/errors.h" // invalid_argument

#include <cmath>    // std::isfinite, std::trunc
#include <optional> // optional defaults

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
  options.seed = reader.unsigned_integer("seed", options.seed);
  const Napi::Value loras = reader.raw("loras");
  if (!loras.IsUndefined()) {
    if (!loras.IsArray())
      throw invalid_argument(value.Env(), "Expected array for options.loras but received " + js_type_name(loras));
    const Napi::Array list = loras.As<Napi::Array>();
    for (uint32_t i = 0; i < list.Length(); ++i) {
      const FieldReader lora(list.Get(i), "options.loras[" + std::to_string(i) + "]");
      options.loras.push_back({lora.string("path"), lora.number("scale", 1.0)});
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
  result.Set("sourceLayout", info.source_layout);
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

// Copying between JavaScript values and engine.h's plain structs. Runs on the
// main thread only: JS -> C++ before a job starts, C++ -> JS when it is done.
// Wrong JS types throw a TypeError naming the field ("Expected integer for
// options.width but received string"); value ranges are the engine's to check.
#pragma once

#include <napi.h> // Napi::Value, Napi::Object

#include "io/safetensors.h" // io::SafetensorsFile
#include "sdxl/engine.h"    // LoadOptions, GenerateOptions, VerifyOptions, TrainOptions, results

#include <map> // SafetensorsHeader
#include <string>

namespace sdxl::addon {

// ---- JS -> C++ ---------------------------------------------------------------
LoadOptions load_options_from_js(const Napi::Value& value);
RandomWeightsOptions random_weights_options_from_js(const Napi::Value& value);
GenerateOptions generate_options_from_js(const Napi::Value& value);
VerifyOptions verify_options_from_js(const Napi::Value& value);
// Copies every training image's rgb bytes (those given): the job thread never reads JS memory.
// options.loadPixels is not read here (addon.cpp makes it a PixelLoader).
TrainOptions train_options_from_js(const Napi::Value& value);
// What options.loadPixels(index) answered: { width, height, rgb }; `path` names it in errors.
Pixels pixels_from_js(const Napi::Value& value, const std::string& path);
// batchesPerEpoch's options: images as {width, height}, and the bucketing and batching fields of train's.
TrainOptions epoch_plan_from_js(const Napi::Value& value);
EvaluateOptions evaluate_options_from_js(const Napi::Value& value);
std::string string_argument(const Napi::CallbackInfo& info, size_t index, const char* name);

// ---- C++ -> JS ---------------------------------------------------------------
Napi::Object build_info_to_js(Napi::Env env, const BuildInfo& info);
Napi::Object model_info_to_js(Napi::Env env, const ModelInfo& info);
Napi::Object token_ids_to_js(Napi::Env env, const TokenIds& ids);
Napi::Object prompt_embeddings_to_js(Napi::Env env, const PromptEmbeddings& embeddings);
Napi::Object image_to_js(Napi::Env env, const Image& image);
Napi::Array images_to_js(Napi::Env env, const std::vector<Image>& images);
Napi::Object lora_check_to_js(Napi::Env env, const LoraCheck& check);
Napi::Object lora_cache_info_to_js(Napi::Env env, const LoraCacheInfo& info);
Napi::Object verify_report_to_js(Napi::Env env, const VerifyReport& report);
Napi::Object progress_to_js(Napi::Env env, const Progress& progress);
Napi::Object train_result_to_js(Napi::Env env, const TrainResult& result);
Napi::Object evaluate_result_to_js(Napi::Env env, const EvaluateResult& result);
Napi::Array metric_networks_to_js(Napi::Env env, const std::vector<MetricNetwork>& networks);

// Header of a .safetensors file: { tensors: { name: { dtype, shape, dataOffsets } }, metadata }.
struct SafetensorsHeader {
  std::map<std::string, io::TensorInfo> tensors;
  std::map<std::string, std::string> metadata;
};
Napi::Object safetensors_header_to_js(Napi::Env env, const SafetensorsHeader& header);

} // namespace sdxl::addon

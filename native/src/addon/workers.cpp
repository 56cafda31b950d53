// The short operations: load a model, tokenize, encode a prompt, read a
// safetensors header.
#include "addon/workers.h"

#include "io/safetensors.h" // io::SafetensorsFile

namespace sdxl::addon {

// ----------------------------------------------------------------------------
// PromiseWorker

PromiseWorker::PromiseWorker(Napi::Env env, const char* name) :
    Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)) {}

void PromiseWorker::Execute() {
  try {
    compute();
  } catch (...) {
    error_ = describe_current_exception();
  }
}

void PromiseWorker::OnOK() {
  Napi::Env env = Env();
  Napi::HandleScope scope(env);
  if (error_) {
    deferred_.Reject(to_js_error(env, *error_).Value());
    return;
  }
  try {
    deferred_.Resolve(on_success(env));
  } catch (const Napi::Error& e) {
    deferred_.Reject(e.Value());
  } catch (...) {
    deferred_.Reject(to_js_error(env, describe_current_exception()).Value());
  }
}

// ----------------------------------------------------------------------------
// Operations

LoadModelWorker::LoadModelWorker(Napi::Env env, LoadOptions options, ModelFactory make_model) :
    PromiseWorker(env, "sdxl.loadModel"), options_(std::move(options)), make_model_(std::move(make_model)) {}

void LoadModelWorker::compute() {
  const CancelFlag never_cancelled; // loading is a short operation here: not cancellable
  check_runtime(options_.runtime);
  model_ = load_model(options_, never_cancelled);
}

Napi::Value LoadModelWorker::on_success(Napi::Env env) { return make_model_(env, std::move(model_)); }

TokenizeWorker::TokenizeWorker(Napi::Env env, std::shared_ptr<const Model> model, std::string prompt) :
    PromiseWorker(env, "sdxl.tokenize"), model_(std::move(model)), prompt_(std::move(prompt)) {}

void TokenizeWorker::compute() { ids_ = tokenize(*model_, prompt_); }

Napi::Value TokenizeWorker::on_success(Napi::Env env) { return token_ids_to_js(env, ids_); }

EncodePromptWorker::EncodePromptWorker(Napi::Env env, std::shared_ptr<const Model> model, std::string prompt) :
    PromiseWorker(env, "sdxl.encodePrompt"), model_(std::move(model)), prompt_(std::move(prompt)) {}

void EncodePromptWorker::compute() { embeddings_ = encode_prompt(*model_, prompt_); }

Napi::Value EncodePromptWorker::on_success(Napi::Env env) { return prompt_embeddings_to_js(env, embeddings_); }

CheckLoraWorker::CheckLoraWorker(Napi::Env env, std::shared_ptr<const Model> model, std::string path) :
    PromiseWorker(env, "sdxl.checkLora"), model_(std::move(model)), path_(std::move(path)) {}

void CheckLoraWorker::compute() { check_ = check_lora(*model_, path_); }

Napi::Value CheckLoraWorker::on_success(Napi::Env env) { return lora_check_to_js(env, check_); }

InspectSafetensorsWorker::InspectSafetensorsWorker(Napi::Env env, std::string path) :
    PromiseWorker(env, "sdxl.inspectSafetensors"), path_(std::move(path)) {}

void InspectSafetensorsWorker::compute() {
  const auto file = io::SafetensorsFile::open(path_);
  for (const auto& name : file.keys()) header_.tensors[name] = file.info(name);
  header_.metadata = file.metadata();
}

Napi::Value InspectSafetensorsWorker::on_success(Napi::Env env) { return safetensors_header_to_js(env, header_); }

InspectModelWorker::InspectModelWorker(Napi::Env env, LoadOptions options) :
    PromiseWorker(env, "sdxl.inspectModel"), options_(std::move(options)) {}

void InspectModelWorker::compute() { info_ = inspect_model(options_); }

// Only what the files say: no device or dtype, which a loaded model has.
Napi::Value InspectModelWorker::on_success(Napi::Env env) {
  Napi::Object summary = model_info_to_js(env, info_);
  summary.Delete("device");
  summary.Delete("dtype");
  return summary;
}

RandomWeightsWorker::RandomWeightsWorker(Napi::Env env, RandomWeightsOptions options) :
    PromiseWorker(env, "sdxl.writeRandomWeights"), options_(std::move(options)) {}

void RandomWeightsWorker::compute() {
  const CancelFlag never; // nothing cancels it: a demo model is written in well under a second
  write_random_weights(options_, never);
}

Napi::Value RandomWeightsWorker::on_success(Napi::Env env) { return env.Undefined(); }

} // namespace sdxl::addon

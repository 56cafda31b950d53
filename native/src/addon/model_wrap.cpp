// The JS Model class and its methods.
#include "addon/model_wrap.h"

#include "addon/convert.h"  // options and results
#include "addon/errors.h"   // guard, to_js_error
#include "addon/long_job.h" // start_long_job
#include "addon/workers.h"  // TokenizeWorker, EncodePromptWorker, CheckLoraWorker

namespace sdxl::addon {

Napi::Function ModelWrap::define_class(Napi::Env env) {
  return DefineClass(env, "Model",
                     {
                         InstanceMethod<&ModelWrap::describe>("describe"),
                         InstanceMethod<&ModelWrap::tokenize>("tokenize"),
                         InstanceMethod<&ModelWrap::encode_prompt>("encodePrompt"),
                         InstanceMethod<&ModelWrap::generate>("generate"),
                         InstanceMethod<&ModelWrap::check_lora>("checkLora"),
                         InstanceMethod<&ModelWrap::lora_cache_stats>("loraCacheStats"),
                         InstanceMethod<&ModelWrap::dispose>("dispose"),
                         InstanceAccessor<&ModelWrap::disposed>("disposed"),
                     });
}

Napi::Value ModelWrap::wrap(Napi::Env env, std::shared_ptr<Model> model) {
  auto* holder = new std::shared_ptr<Model>(std::move(model));
  const auto external = Napi::External<std::shared_ptr<Model>>::New(
      env, holder, [](Napi::Env, std::shared_ptr<Model>* owned) { delete owned; });
  return env.GetInstanceData<AddonData>()->model_class.New({external});
}

ModelWrap::ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {
  if (info.Length() != 1 || !info[0].IsExternal())
    throw invalid_argument(info.Env(), "Model cannot be constructed directly; use loadModel()");
  model_ = *info[0].As<Napi::External<std::shared_ptr<Model>>>().Data();
}

std::shared_ptr<Model> ModelWrap::require_model(Napi::Env env) const {
  if (!model_) throw to_js_error(env, {"model has been disposed", kCodeDisposed});
  return model_;
}

Napi::Value ModelWrap::describe(const Napi::CallbackInfo& info) {
  return guard(info, [&] { return model_info_to_js(info.Env(), sdxl::describe(*require_model(info.Env()))); });
}

Napi::Value ModelWrap::tokenize(const Napi::CallbackInfo& info) {
  std::string prompt = string_argument(info, 0, "prompt");
  return queue_worker<TokenizeWorker>(info.Env(), require_model(info.Env()), std::move(prompt));
}

Napi::Value ModelWrap::encode_prompt(const Napi::CallbackInfo& info) {
  std::string prompt = string_argument(info, 0, "prompt");
  return queue_worker<EncodePromptWorker>(info.Env(), require_model(info.Env()), std::move(prompt));
}

Napi::Value ModelWrap::generate(const Napi::CallbackInfo& info) {
  GenerateOptions options = generate_options_from_js(info[0]);
  std::shared_ptr<Model> model = require_model(info.Env());
  return start_long_job(info.Env(), "sdxl.generate", info[1],
                        [model, options = std::move(options)](const ProgressFn& progress, const CancelFlag& cancel) {
                          auto images = std::make_shared<std::vector<Image>>(sdxl::generate(*model, options, progress, cancel));
                          return ResultBuilder([images](Napi::Env env) { return images_to_js(env, *images); });
                        });
}

Napi::Value ModelWrap::check_lora(const Napi::CallbackInfo& info) {
  std::string path = string_argument(info, 0, "path");
  return queue_worker<CheckLoraWorker>(info.Env(), require_model(info.Env()), std::move(path));
}

Napi::Value ModelWrap::lora_cache_stats(const Napi::CallbackInfo& info) {
  return guard(info, [&] { return lora_cache_info_to_js(info.Env(), sdxl::lora_cache_info(*require_model(info.Env()))); });
}

Napi::Value ModelWrap::dispose(const Napi::CallbackInfo& info) {
  model_.reset();
  return info.Env().Undefined();
}

Napi::Value ModelWrap::disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !model_); }

} // namespace sdxl::addon

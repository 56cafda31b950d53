// The JS `Model` class: a loaded engine Model shared with the jobs that use it.
// dispose() drops this object's reference; running jobs keep theirs until done.
#pragma once

#include <napi.h> // Napi::ObjectWrap

#include "sdxl/engine.h" // sdxl::Model

#include <memory> // std::shared_ptr<Model>

namespace sdxl::addon {

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static Napi::Function define_class(Napi::Env env);
  // Wraps a loaded model in a new JS Model (needs the class registered by addon.cpp).
  static Napi::Value wrap(Napi::Env env, std::shared_ptr<Model> model);

  explicit ModelWrap(const Napi::CallbackInfo& info);

 private:
  Napi::Value describe(const Napi::CallbackInfo& info);
  Napi::Value tokenize(const Napi::CallbackInfo& info);
  Napi::Value encode_prompt(const Napi::CallbackInfo& info);
  Napi::Value generate(const Napi::CallbackInfo& info);
  Napi::Value check_lora(const Napi::CallbackInfo& info);
  Napi::Value lora_cache_stats(const Napi::CallbackInfo& info);
  Napi::Value dispose(const Napi::CallbackInfo& info);
  Napi::Value disposed(const Napi::CallbackInfo& info);

  std::shared_ptr<Model> require_model(Napi::Env env) const;

  std::shared_ptr<Model> model_;
};

// Per-environment data of the addon (worker_threads each get their own).
struct AddonData {
  Napi::FunctionReference model_class;
};

} // namespace sdxl::addon

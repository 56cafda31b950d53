// One named AsyncWorker per short operation; each settles a promise. Inputs are
// plain C++ copies made on the main thread; Execute() runs on libuv's pool and
// never touches Napi objects; the JS result is built back on the main thread.
#pragma once

#include <napi.h> // Napi::AsyncWorker, Napi::Promise

#include "addon/convert.h" // SafetensorsHeader and the *_to_js converters
#include "addon/errors.h"  // ErrorInfo
#include "sdxl/engine.h"   // Model, LoadOptions, ...

#include <functional> // ModelFactory
#include <memory>   // std::shared_ptr<Model>
#include <optional> // the error, when there is one

namespace sdxl::addon {

// Settles `promise()`: resolves with on_success(), or rejects with the
// classified C++ exception that compute() threw.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  explicit PromiseWorker(Napi::Env env, const char* name);
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  virtual void compute() = 0;                          // worker thread
  virtual Napi::Value on_success(Napi::Env env) = 0;   // main thread

 private:
  void Execute() final;
  void OnOK() final;
  Napi::Promise::Deferred deferred_;
  std::optional<ErrorInfo> error_;
};

// Queues a worker and returns its promise (the worker deletes itself when done).
template <typename Worker, typename... Args>
Napi::Promise queue_worker(Napi::Env env, Args&&... args) {
  auto* worker = new Worker(env, std::forward<Args>(args)...);
  Napi::Promise promise = worker->promise();
  worker->Queue();
  return promise;
}

// The Model class wrapper's constructor, given a loaded model.
using ModelFactory = std::function<Napi::Value(Napi::Env, std::shared_ptr<Model>)>;

class LoadModelWorker : public PromiseWorker {
 public:
  LoadModelWorker(Napi::Env env, LoadOptions options, ModelFactory make_model);
 private:
  void compute() override;
  Napi::Value on_success(Napi::Env env) override;
  LoadOptions options_;
  ModelFactory make_model_;
  std::shared_ptr<Model> model_;
};

class TokenizeWorker : public PromiseWorker {
 public:
  TokenizeWorker(Napi::Env env, std::shared_ptr<const Model> model, std::string prompt);
 private:
  void compute() override;
  Napi::Value on_success(Napi::Env env) override;
  std::shared_ptr<const Model> model_;
  std::string prompt_;
  TokenIds ids_;
};

class EncodePromptWorker : public PromiseWorker {
 public:
  EncodePromptWorker(Napi::Env env, std::shared_ptr<const Model> model, std::string prompt);
 private:
  void compute() override;
  Napi::Value on_success(Napi::Env env) override;
  std::shared_ptr<const Model> model_;
  std::string prompt_;
  PromptEmbeddings embeddings_;
};

class CheckLoraWorker : public PromiseWorker {
 public:
  CheckLoraWorker(Napi::Env env, std::shared_ptr<const Model> model, std::string path);
 private:
  void compute() override;
  Napi::Value on_success(Napi::Env env) override;
  std::shared_ptr<const Model> model_;
  std::string path_;
  LoraCheck check_;
};

class InspectSafetensorsWorker : public PromiseWorker {
 public:
  InspectSafetensorsWorker(Napi::Env env, std::string path);
 private:
  void compute() override;
  Napi::Value on_success(Napi::Env env) override;
  std::string path_;
  SafetensorsHeader header_;
};

class InspectModelWorker : public PromiseWorker {
 public:
  InspectModelWorker(Napi::Env env, LoadOptions options);
 private:
  void compute() override;
  Napi::Value on_success(Napi::Env env) override;
  LoadOptions options_;
  ModelInfo info_;
};

class RandomWeightsWorker : public PromiseWorker {
 public:
  RandomWeightsWorker(Napi::Env env, RandomWeightsOptions options);
 private:
  void compute() override;
  Napi::Value on_success(Napi::Env env) override;
  RandomWeightsOptions options_;
};

} // namespace sdxl::addon

// The Node-API addon `sdxl_engine.node`: registers every export in one place.
//
//   buildInfo()                           -> { torchVersion, cudaAvailable, cudaDeviceCount }
//   loadModel(options)                    -> Promise<Model>
//   inspectSafetensors(path)              -> Promise<{ tensors, metadata }>
//   inspectModel({ modelPath, configDir }) -> Promise<ModelSummary> (configs and headers only)
//   writeRandomWeights(options)           -> Promise<void>  (a folder of configs gets seeded random weights)
//   verify(options, onProgress?)          -> { promise, cancel() }
//   train(options, onProgress?)           -> { promise, cancel() }  (resolves { status: "cancelled" } when cancelled mid-run;
//                                           options.loadPixels(index) gives the pixels of images passed without rgb)
//   evaluate(options, onProgress?)        -> { promise ({ values, unavailable }), cancel() }  (quality metrics)
//   metricNetworks(modelsDir)             -> [{ metric, network, available, reason }] (file checks only)
//   Model#describe()                      -> ModelInfo
//   Model#tokenize(prompt)                -> Promise<TokenIds>
//   Model#encodePrompt(prompt)            -> Promise<PromptEmbeddings>
//   Model#generate(options, onProgress?)  -> { promise (RgbImage[]), cancel() }
//   Model#checkLora(path)                 -> Promise<LoraCheck>
//   Model#loraCacheStats()                -> LoraCacheStats
//   Model#dispose()
//   memoryStats(device)                   -> { inUseBytes, peakBytes } (CUDA allocator on cuda[:N], resident set on cpu)
// Typed in src/engine/types.ts; arguments are validated in src/engine/index.ts first.
#include <napi.h> // node-addon-api

#include "addon/convert.h"    // options and results
#include "addon/errors.h"     // guard
#include "addon/long_job.h"   // start_long_job
#include "addon/model_wrap.h" // ModelWrap, AddonData
#include "addon/workers.h"    // LoadModelWorker, InspectSafetensorsWorker, RandomWeightsWorker
#include "addon/pixel_loader.h" // PixelChannel
#include "engine/memory_stats.h" // memory_stats
#include "sdxl/engine.h"      // build_info, verify, train_lora, batches_per_epoch, evaluate, metric_networks

namespace sdxl::addon {
namespace {

Napi::Value build_info_js(const Napi::CallbackInfo& info) {
  return guard(info, [&] { return build_info_to_js(info.Env(), build_info()); });
}

// Cheap (the allocator's counters, or /proc/self/status): read on every metrics scrape.
Napi::Value memory_stats_js(const Napi::CallbackInfo& info) {
  return guard(info, [&] {
    const MemoryStats stats = memory_stats(torch::Device(string_argument(info, 0, "device")));
    Napi::Object result = Napi::Object::New(info.Env());
    result.Set("inUseBytes", static_cast<double>(stats.in_use_bytes));
    result.Set("peakBytes", static_cast<double>(stats.peak_bytes));
    return result;
  });
}

Napi::Value load_model_js(const Napi::CallbackInfo& info) {
  LoadOptions options = load_options_from_js(info[0]);
  return queue_worker<LoadModelWorker>(info.Env(), std::move(options), &ModelWrap::wrap);
}

Napi::Value inspect_safetensors_js(const Napi::CallbackInfo& info) {
  return queue_worker<InspectSafetensorsWorker>(info.Env(), string_argument(info, 0, "path"));
}

Napi::Value inspect_model_js(const Napi::CallbackInfo& info) {
  LoadOptions options = load_options_from_js(info[0]);
  return queue_worker<InspectModelWorker>(info.Env(), std::move(options));
}

Napi::Value write_random_weights_js(const Napi::CallbackInfo& info) {
  RandomWeightsOptions options = random_weights_options_from_js(info[0]);
  return queue_worker<RandomWeightsWorker>(info.Env(), std::move(options));
}

Napi::Value verify_js(const Napi::CallbackInfo& info) {
  VerifyOptions options = verify_options_from_js(info[0]);
  return start_long_job(info.Env(), "sdxl.verify", info[1],
                        [options = std::move(options)](const ProgressFn& progress, const CancelFlag& cancel) {
                          auto report = std::make_shared<VerifyReport>(sdxl::verify(options, progress, cancel));
                          return ResultBuilder([report](Napi::Env env) { return verify_report_to_js(env, *report); });
                        });
}

// Training loads its own copy of the model (engine.h), so it needs no Model object.
Napi::Value train_js(const Napi::CallbackInfo& info) {
  TrainOptions options = train_options_from_js(info[0]);
  std::shared_ptr<PixelChannel> pixels = pixel_channel_from_js(info[0]);
  return start_long_job(info.Env(), "sdxl.train", info[1],
                        [options = std::move(options), pixels](const ProgressFn& progress, const CancelFlag& cancel) {
                          // The channel goes back however the run ends: after it, no rank asks any more.
                          struct Release {
                            PixelChannel* channel;
                            ~Release() {
                              if (channel != nullptr) channel->release();
                            }
                          } release{pixels.get()};
                          TrainOptions run = options;
                          if (pixels) run.load_pixels = pixels->loader(cancel);
                          auto result = std::make_shared<TrainResult>(sdxl::train_lora(run, progress, cancel));
                          return ResultBuilder([result](Napi::Env env) { return train_result_to_js(env, *result); });
                        });
}

Napi::Value evaluate_js(const Napi::CallbackInfo& info) {
  EvaluateOptions options = evaluate_options_from_js(info[0]);
  return start_long_job(info.Env(), "sdxl.evaluate", info[1],
                        [options = std::move(options)](const ProgressFn& progress, const CancelFlag& cancel) {
                          auto result = std::make_shared<EvaluateResult>(sdxl::evaluate(options, progress, cancel));
                          return ResultBuilder([result](Napi::Env env) { return evaluate_result_to_js(env, *result); });
                        });
}

Napi::Value metric_networks_js(const Napi::CallbackInfo& info) {
  return guard(info, [&] {
    return metric_networks_to_js(info.Env(), metric_networks(string_argument(info, 0, "modelsDir")));
  });
}

Napi::Value batches_per_epoch_js(const Napi::CallbackInfo& info) {
  return guard(info, [&] {
    return Napi::Number::New(info.Env(), static_cast<double>(batches_per_epoch(epoch_plan_from_js(info[0]))));
  });
}

Napi::Object init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  const Napi::Function model_class = ModelWrap::define_class(env);
  data->model_class = Napi::Persistent(model_class);
  env.SetInstanceData(data); // deleted with the environment
  install_exit_hook(env);
  exports.Set("buildInfo", Napi::Function::New(env, build_info_js, "buildInfo"));
  exports.Set("loadModel", Napi::Function::New(env, load_model_js, "loadModel"));
  exports.Set("inspectSafetensors", Napi::Function::New(env, inspect_safetensors_js, "inspectSafetensors"));
  exports.Set("inspectModel", Napi::Function::New(env, inspect_model_js, "inspectModel"));
  exports.Set("writeRandomWeights", Napi::Function::New(env, write_random_weights_js, "writeRandomWeights"));
  exports.Set("verify", Napi::Function::New(env, verify_js, "verify"));
  exports.Set("train", Napi::Function::New(env, train_js, "train"));
  exports.Set("batchesPerEpoch", Napi::Function::New(env, batches_per_epoch_js, "batchesPerEpoch"));
  exports.Set("evaluate", Napi::Function::New(env, evaluate_js, "evaluate"));
  exports.Set("metricNetworks", Napi::Function::New(env, metric_networks_js, "metricNetworks"));
  exports.Set("memoryStats", Napi::Function::New(env, memory_stats_js, "memoryStats"));
  exports.Set("Model", model_class);
  return exports;
}

} // namespace
} // namespace sdxl::addon

// NODE_API_MODULE pastes the name into identifiers, so it needs an unqualified one.
static Napi::Object init_sdxl_engine(Napi::Env env, Napi::Object exports) { return sdxl::addon::init(env, exports); }
NODE_API_MODULE(sdxl_engine, init_sdxl_engine)

// The trainer's pull of pixels from JS; see pixel_loader.h.
#include "addon/pixel_loader.h"

#include <chrono>             // the cancel poll
#include <condition_variable> // waiting for the answer
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>

#include "addon/convert.h" // pixels_from_js
#include "addon/errors.h"  // invalid_argument

namespace sdxl::addon {
namespace {

constexpr auto kCancelPoll = std::chrono::milliseconds(100);

// One call's answer, shared by the waiting thread and the main thread's callbacks.
struct Request {
  size_t index = 0;
  std::mutex mutex;
  std::condition_variable settled;
  std::optional<Pixels> pixels;
  std::optional<std::string> error;

  void answer(Pixels value) {
    const std::lock_guard<std::mutex> lock(mutex);
    pixels = std::move(value);
    settled.notify_all();
  }
  void fail(std::string message) {
    const std::lock_guard<std::mutex> lock(mutex);
    error = std::move(message);
    settled.notify_all();
  }
};

std::string message_of(const Napi::Value& error) {
  if (error.IsObject()) {
    const Napi::Value message = error.As<Napi::Object>().Get("message");
    if (message.IsString()) return message.As<Napi::String>().Utf8Value();
  }
  return error.ToString().Utf8Value();
}

// Main thread: calls the JS function and settles the request with what it gives.
void call_load(Napi::Env env, Napi::Function load, std::shared_ptr<Request>* data) {
  const std::shared_ptr<Request> request = std::move(*data);
  delete data;
  if (env == nullptr) {
    request->fail("loadPixels: the JavaScript environment is gone");
    return;
  }
  const std::string path = "loadPixels(" + std::to_string(request->index) + ")";
  try {
    const Napi::Value result = load.Call({Napi::Number::New(env, static_cast<double>(request->index))});
    if (!result.IsPromise()) {
      request->answer(pixels_from_js(result, path));
      return;
    }
    const Napi::Object promise = result.As<Napi::Object>();
    const Napi::Function on_value = Napi::Function::New(env, [request, path](const Napi::CallbackInfo& info) {
      try {
        request->answer(pixels_from_js(info[0], path));
      } catch (const Napi::Error& e) {
        request->fail(e.Message());
      }
    });
    const Napi::Function on_error = Napi::Function::New(
        env, [request](const Napi::CallbackInfo& info) { request->fail(message_of(info[0])); });
    promise.Get("then").As<Napi::Function>().Call(promise, {on_value, on_error});
  } catch (const Napi::Error& e) {
    request->fail(path + ": " + e.Message());
  }
}

} // namespace

PixelChannel::PixelChannel(Napi::Env env, Napi::Function load)
    : channel_(Napi::ThreadSafeFunction::New(env, load, "sdxl.loadPixels", /*maxQueueSize=*/0,
                                             /*initialThreadCount=*/1)) {}

PixelLoader PixelChannel::loader(const CancelFlag& cancel) {
  return [this, &cancel](size_t index) {
    auto request = std::make_shared<Request>();
    request->index = index;
    auto* data = new std::shared_ptr<Request>(request);
    if (channel_.BlockingCall(data, call_load) != napi_ok) {
      delete data;
      throw std::runtime_error("loadPixels: the JavaScript environment is shutting down");
    }
    std::unique_lock<std::mutex> lock(request->mutex);
    while (!request->settled.wait_for(lock, kCancelPoll, [&] { return request->pixels || request->error; }))
      throw_if_cancelled(cancel);
    if (request->error) throw std::runtime_error(*request->error);
    return std::move(*request->pixels);
  };
}

void PixelChannel::release() { channel_.Release(); }

std::shared_ptr<PixelChannel> pixel_channel_from_js(const Napi::Value& options) {
  if (!options.IsObject()) return nullptr;
  const Napi::Value load = options.As<Napi::Object>().Get("loadPixels");
  if (load.IsUndefined()) return nullptr;
  if (!load.IsFunction()) throw invalid_argument(options.Env(), "Expected function for options.loadPixels but received another type");
  return std::make_shared<PixelChannel>(options.Env(), load.As<Napi::Function>());
}

} // namespace sdxl::addon

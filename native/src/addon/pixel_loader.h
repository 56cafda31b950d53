// options.loadPixels of train(): a JS function (index) -> { width, height, rgb } or a
// Promise of it, which the trainer calls from its own thread, through a
// ThreadSafeFunction, whenever it must encode an image it was given without pixels.
// The training thread waits for the answer (and stops waiting when the job is cancelled).
#pragma once

#include <napi.h> // Napi::Env, Napi::Function

#include <memory> // std::shared_ptr

#include "sdxl/engine.h" // PixelLoader, CancelFlag

namespace sdxl::addon {

class PixelChannel {
 public:
  // Main thread. The channel holds the function until release().
  PixelChannel(Napi::Env env, Napi::Function load);
  // A loader for one job; `cancel` must outlive every call of it.
  PixelLoader loader(const CancelFlag& cancel);
  // Job thread, after the last call: lets the environment go.
  void release();

 private:
  Napi::ThreadSafeFunction channel_;
};

// The channel of options.loadPixels, or null when there is none (a function is required otherwise).
std::shared_ptr<PixelChannel> pixel_channel_from_js(const Napi::Value& options);

} // namespace sdxl::addon

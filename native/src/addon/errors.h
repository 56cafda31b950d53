// Turning C++ exceptions into JavaScript errors with a message and a `code`.
// Worker threads capture an ErrorInfo (plain data); the main thread builds the
// Napi::Error from it.
#pragma once

#include <napi.h> // Napi::Env, Napi::Error

#include <string>

namespace sdxl::addon {

// Codes the JS side can switch on.
inline constexpr const char* kCodeCancelled = "ERR_SDXL_CANCELLED";
inline constexpr const char* kCodeInvalidArgument = "ERR_SDXL_INVALID_ARGUMENT";
inline constexpr const char* kCodeDisposed = "ERR_SDXL_DISPOSED";
inline constexpr const char* kCodeTorch = "ERR_SDXL_TORCH";   // c10::Error from libtorch
inline constexpr const char* kCodeEngine = "ERR_SDXL_ENGINE"; // any other std::exception

struct ErrorInfo {
  std::string message;
  std::string code;
  bool is_type_error = false;
};

// Call inside a catch block: classifies the exception being handled.
ErrorInfo describe_current_exception();

Napi::Error to_js_error(Napi::Env env, const ErrorInfo& error);

// A TypeError with code ERR_SDXL_INVALID_ARGUMENT, for JS values of the wrong type.
Napi::Error invalid_argument(Napi::Env env, const std::string& message);

// Runs a synchronous export body; any C++ exception becomes a thrown JS error
// instead of terminating the process.
template <typename Body>
Napi::Value guard(const Napi::CallbackInfo& info, Body&& body) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw; // already a JS error
  } catch (...) {
    throw to_js_error(info.Env(), describe_current_exception());
  }
}

} // namespace sdxl::addon

// Classifying C++ exceptions for JavaScript.
#include "addon/errors.h"

#include "sdxl/engine.h" // sdxl::Cancelled

#include <c10/util/Exception.h> // c10::Error::what_without_backtrace

#include <stdexcept> // std::invalid_argument

namespace sdxl::addon {

ErrorInfo describe_current_exception() {
  try {
    throw;
  } catch (const Cancelled& e) {
    return {e.what(), kCodeCancelled};
  } catch (const std::invalid_argument& e) {
    return {e.what(), kCodeInvalidArgument};
  } catch (const c10::Error& e) {
    return {e.what_without_backtrace(), kCodeTorch}; // the backtrace is noise to a JS caller
  } catch (const std::exception& e) {
    return {e.what(), kCodeEngine};
  } catch (...) {
    return {"unknown native exception", kCodeEngine};
  }
}

Napi::Error to_js_error(Napi::Env env, const ErrorInfo& error) {
  Napi::Error js_error =
      error.is_type_error ? Napi::TypeError::New(env, error.message) : Napi::Error::New(env, error.message);
  js_error.Set("code", Napi::String::New(env, error.code));
  return js_error;
}

Napi::Error invalid_argument(Napi::Env env, const std::string& message) {
  return to_js_error(env, {message, kCodeInvalidArgument, true});
}

} // namespace sdxl::addon

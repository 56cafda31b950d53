// Long jobs (generate, verify, train): a dedicated std::thread per job, progress and
// completion reported through a Napi::ThreadSafeFunction, cancellation through
// an engine CancelFlag. JS gets { promise, cancel() }.
#pragma once

#include <napi.h> // Napi::Env, Napi::Object

#include "sdxl/engine.h" // ProgressFn, CancelFlag

#include <functional> // the job body and its result builder

namespace sdxl::addon {

// Builds the job's JS result on the main thread from plain data captured by the job.
using ResultBuilder = std::function<Napi::Value(Napi::Env)>;
// Runs on the job thread; never touches Napi objects.
using JobBody = std::function<ResultBuilder(const ProgressFn& progress, const CancelFlag& cancel)>;

// Starts `body` on its own thread. `on_progress` is a JS function or undefined;
// if it throws, the job is cancelled and the promise rejects with that error.
// Registers a process 'exit' listener that cancels this environment's jobs and
// waits for them to leave the engine (process.exit() would otherwise destroy
// libtorch under them). Call once per environment.
void install_exit_hook(Napi::Env env);

Napi::Object start_long_job(Napi::Env env, const char* name, const Napi::Value& on_progress, JobBody body);

} // namespace sdxl::addon

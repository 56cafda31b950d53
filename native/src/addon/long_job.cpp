// A long job's thread, its ThreadSafeFunction and its promise.
#include "addon/long_job.h"

#include "addon/convert.h" // progress_to_js
#include "addon/errors.h"  // describe_current_exception, to_js_error

#include <chrono>             // exit wait limit
#include <condition_variable> // waiting for jobs at exit
#include <map>                // running jobs and their environments
#include <memory>             // std::shared_ptr<JobState>
#include <mutex>              // std::mutex
#include <optional>           // the error, when there is one
#include <set>                // exiting environments
#include <thread>             // std::thread

namespace sdxl::addon {
namespace {

// ----------------------------------------------------------------------------
// Process exit
//
// process.exit() ends in exit(), which runs libtorch's static destructors
// (some registered lazily, during the first convolution) without the
// environment's cleanup; a job thread still computing would then crash the
// process. So a process 'exit' listener cancels the environment's running jobs
// and waits until they have left the engine; they then leave Node alone.

constexpr auto kExitWaitLimit = std::chrono::seconds(10); // one step of a large model on a slow CPU

class RunningJobs {
 public:
  static RunningJobs& instance() {
    static RunningJobs* jobs = new RunningJobs(); // never destroyed: used during exit
    return *jobs;
  }

  void add(napi_env env, CancelFlag* cancel) {
    std::lock_guard<std::mutex> lock(mutex_);
    jobs_[cancel] = env;
    if (exiting_.count(env) != 0) cancel->request();
  }

  // Returns true when the job's environment is exiting: the caller must not touch Node any more.
  bool remove(CancelFlag* cancel) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto found = jobs_.find(cancel);
    const bool exiting = found != jobs_.end() && exiting_.count(found->second) != 0;
    if (found != jobs_.end()) jobs_.erase(found);
    left_.notify_all();
    return exiting;
  }

  bool exiting(napi_env env) {
    std::lock_guard<std::mutex> lock(mutex_);
    return exiting_.count(env) != 0;
  }

  void cancel_and_wait(napi_env env) {
    std::unique_lock<std::mutex> lock(mutex_);
    exiting_.insert(env);
    for (const auto& [cancel, job_env] : jobs_)
      if (job_env == env) cancel->request();
    left_.wait_for(lock, kExitWaitLimit, [&] {
      for (const auto& [cancel, job_env] : jobs_)
        if (job_env == env) return false;
      return true;
    });
  }

  void forget(napi_env env) {
    std::lock_guard<std::mutex> lock(mutex_);
    exiting_.erase(env); // the address may be reused by a later environment
  }

 private:
  std::mutex mutex_;
  std::condition_variable left_;
  std::map<CancelFlag*, napi_env> jobs_;
  std::set<napi_env> exiting_;
};

// ----------------------------------------------------------------------------
// One job

struct JobState {
  explicit JobState(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
  ~JobState() {
    // Only reached with a running thread when the environment is torn down mid-job.
    if (thread.joinable()) {
      cancel.request();
      thread.join();
    }
  }

  CancelFlag cancel;
  std::thread thread;
  Napi::ThreadSafeFunction progress_channel;
  Napi::Promise::Deferred deferred;
  // Written by the job thread before it releases the channel; read by the finalizer after.
  ResultBuilder build_result;
  std::optional<ErrorInfo> error;
  // Main thread only: an exception thrown by the JS progress callback.
  Napi::Reference<Napi::Value> callback_error;
  bool listener_failed = false; // main thread only: no more reports once the listener threw
};

// Main thread: forwards one progress report to the JS callback. Raw napi calls:
// when the callback ends the environment (process.exit() in a worker),
// node-addon-api's error wrapping would abort the process. Reports still arrive
// after cancel(): a cancelled training run reports saving its checkpoint.
void deliver_progress(Napi::Env env, Napi::Function callback, Progress* report, JobState* state) {
  std::unique_ptr<Progress> owned(report);
  if (env == nullptr || state->listener_failed) return; // torn down, or the listener already threw
  napi_value argument = nullptr;
  try {
    argument = progress_to_js(env, *owned);
  } catch (const Napi::Error&) {
    state->listener_failed = true;
    state->cancel.request();
    return;
  }
  napi_value result = nullptr;
  if (napi_call_function(env, env.Undefined(), callback, 1, &argument, &result) == napi_ok) return;
  state->listener_failed = true;
  state->cancel.request(); // the listener threw: stop the job and reject with its error
  napi_value exception = nullptr;
  if (napi_get_and_clear_last_exception(env, &exception) != napi_ok || exception == nullptr) return;
  napi_ref reference = nullptr;
  if (state->callback_error.IsEmpty() && napi_create_reference(env, exception, 1, &reference) == napi_ok)
    state->callback_error = Napi::Reference<Napi::Value>(env, reference);
}

// Main thread, after the job thread released the channel: settles the promise.
void settle_promise(Napi::Env env, JobState& state) {
  Napi::HandleScope scope(env);
  if (!state.callback_error.IsEmpty()) {
    state.deferred.Reject(state.callback_error.Value());
    return;
  }
  if (state.error) {
    state.deferred.Reject(to_js_error(env, *state.error).Value());
    return;
  }
  try {
    state.deferred.Resolve(state.build_result(env));
  } catch (const Napi::Error& e) {
    state.deferred.Reject(e.Value());
  } catch (...) {
    state.deferred.Reject(to_js_error(env, describe_current_exception()).Value());
  }
}

// The channel's finalizer: after the job released it, or when the environment
// is torn down mid-job (a terminated worker), then with JS no longer callable.
void settle(Napi::Env env, JobState& state) {
  state.cancel.request(); // in case the environment is going away mid-job
  if (state.thread.joinable()) state.thread.join();
  try {
    settle_promise(env, state);
  } catch (const Napi::Error&) {
    // The environment is shutting down: there is no one left to tell.
  }
}

} // namespace

void install_exit_hook(Napi::Env env) {
  const napi_env raw_env = env;
  Napi::Object process = env.Global().Get("process").As<Napi::Object>();
  Napi::Function on_exit = Napi::Function::New(
      env, [raw_env](const Napi::CallbackInfo&) { RunningJobs::instance().cancel_and_wait(raw_env); }, "sdxlCancelJobs");
  process.Get("on").As<Napi::Function>().Call(process, {Napi::String::New(env, "exit"), on_exit});
  env.AddCleanupHook([raw_env] { RunningJobs::instance().forget(raw_env); });
}

Napi::Object start_long_job(Napi::Env env, const char* name, const Napi::Value& on_progress, JobBody body) {
  if (!on_progress.IsUndefined() && !on_progress.IsNull() && !on_progress.IsFunction())
    throw invalid_argument(env, "Expected function for onProgress but received another type");
  const Napi::Function callback = on_progress.IsFunction() ? on_progress.As<Napi::Function>()
                                                           : Napi::Function::New(env, [](const Napi::CallbackInfo&) {});

  auto state = std::make_shared<JobState>(env);
  state->progress_channel = Napi::ThreadSafeFunction::New(env, callback, name, /*maxQueueSize=*/0,
                                                          /*initialThreadCount=*/1,
                                                          [state](Napi::Env env) { settle(env, *state); });

  RunningJobs& running = RunningJobs::instance();
  const napi_env raw_env = env;
  running.add(raw_env, &state->cancel); // before the thread starts, so its remove() comes after
  state->thread = std::thread([state, body = std::move(body), &running, raw_env] {
    JobState* job = state.get();
    const ProgressFn progress = [job, &running, raw_env](const Progress& report) {
      if (running.exiting(raw_env)) return;
      job->progress_channel.NonBlockingCall(new Progress(report), [job](Napi::Env env, Napi::Function cb, Progress* p) {
        deliver_progress(env, cb, p, job);
      });
    };
    try {
      job->build_result = body(progress, job->cancel);
    } catch (...) {
      job->error = describe_current_exception();
    }
    if (running.remove(&job->cancel)) return; // the environment is exiting
    job->progress_channel.Release(); // the finalizer then settles the promise on the main thread
  });
  Napi::Object handle = Napi::Object::New(env);
  handle.Set("promise", state->deferred.Promise());
  handle.Set("cancel", Napi::Function::New(env, [state](const Napi::CallbackInfo&) { state->cancel.request(); },
                                           "cancel"));
  return handle;
}

} // namespace sdxl::addon

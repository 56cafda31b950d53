// Wakes this process's event streams as soon as a run here records an event, so a
// watcher on the same replica sees progress without waiting for its next poll. Events
// recorded by other replicas are found by the poll (EVENT_POLL_MS) alone.
import { EventEmitter } from 'node:events';

export class RunEventsBus {
  readonly #emitter = new EventEmitter().setMaxListeners(0);

  /** Something new was recorded for the run. */
  notify(runId: string): void {
    this.#emitter.emit(runId);
  }

  /** Resolves when the run records something, after `ms`, or when `signal` aborts, whichever is first. */
  wait(runId: string, ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#emitter.off(runId, done);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#emitter.once(runId, done);
      signal.addEventListener('abort', done, { once: true });
    });
  }
}

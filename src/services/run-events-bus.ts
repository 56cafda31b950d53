// Wakes this process's watchers of a training run or a generation (event streams, waits for
// a generation to finish) as soon as something is recorded for it. Whatever this process
// records it tells at once (notify); what other replicas record arrives by LISTEN/NOTIFY
// (a trigger notifies on every event, migration 017) once the bus follows a channel. Watchers
// still read again after a poll interval: a short one only while the LISTEN connection is
// down, since then a notification may be missed.
import { EventEmitter } from 'node:events';
import type { Database, Listener } from '../db/database.js';

/** How long a watcher waits between reads while LISTEN carries every replica's events: a safety net only. */
export const LISTENING_POLL_MS = 15_000;

/** Every watcher: the connection was lost or re-opened, notifications may be missed. */
const EVERY = Symbol('every watcher');

export class RunEventsBus {
  readonly #emitter = new EventEmitter().setMaxListeners(0);
  #listener: Listener | undefined;

  /** Something new was recorded for the run (or generation). */
  notify(runId: string): void {
    this.#emitter.emit(runId);
  }

  /** Follows NOTIFYs on `channel` (their payload: a run's or a generation's id) until the returned function is called. */
  async follow(db: Database, channel: string): Promise<() => Promise<void>> {
    const listener = await db.listen(channel, (id) => {
      if (id === undefined || id === '') this.#emitter.emit(EVERY);
      else this.notify(id);
    });
    this.#listener = listener;
    return async () => {
      this.#listener = undefined;
      await listener.close();
    };
  }

  /** Whether watchers hear of other replicas' events at once (LISTEN is connected). */
  get listening(): boolean {
    return this.#listener?.connected() ?? false;
  }

  /**
   * Resolves when the run records something, when `signal` aborts, after `pollMs` (while LISTEN
   * is down; LISTENING_POLL_MS while it carries every replica's events), or after `atMostMs`,
   * whichever is first.
   */
  wait(runId: string, pollMs: number, signal: AbortSignal, atMostMs = Infinity): Promise<void> {
    const ms = Math.min(this.listening ? Math.max(pollMs, LISTENING_POLL_MS) : pollMs, atMostMs);
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#emitter.off(runId, done);
        this.#emitter.off(EVERY, done);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#emitter.once(runId, done);
      this.#emitter.once(EVERY, done);
      signal.addEventListener('abort', done, { once: true });
    });
  }
}

// The one mechanism every background job kind of the service rides on (captioning jobs
// now; training runs, generations and webhook deliveries next): a process runs at most
// `slots` jobs of a kind at once, claims them from that kind's Postgres queue (oldest
// first, FOR UPDATE SKIP LOCKED, so replicas share it; running jobs whose lease ran out
// because their process died count as queued), holds each under a lease that a
// heartbeat renews, and aborts a job's run when its lease is lost, a cancel arrives, or
// the process shuts down. A kind brings its queue's SQL and what running one job means,
// and, when its jobs take units of something the process has a fixed amount of (a training
// worker's devices), that capacity: a job is claimed only when its units are free.
import type { FastifyBaseLogger } from 'fastify';
import { randomUUID } from 'node:crypto';
import os from 'node:os';

/** A lease outlives many missed heartbeats, so a slow database does not hand a live job to another replica. */
export const DEFAULT_LEASE_MS = 30_000;
/** Also how often a job run on another replica notices a cancel. */
export const DEFAULT_HEARTBEAT_MS = 2_000;
/** How often to look for jobs queued by other replicas or left by dead ones. */
export const DEFAULT_POLL_MS = 2_000;

/** Why a job's run was aborted: the reason of the AbortSignal its run gets. */
export type StopReason = 'canceled' | 'shutdown' | 'lease-lost' | 'fatal';

export function stopReason(signal: AbortSignal): StopReason | undefined {
  return signal.aborted ? (signal.reason as StopReason) : undefined;
}

/** A kind's queue, as the runner needs it. */
export interface LeasedQueue<Job> {
  /** Claims the next job for `owner` until the lease ends, one that takes at most `free` units when the runner has a capacity; null when none is due. */
  claimNext(owner: string, leaseMs: number, free?: number): Promise<Job | null>;
  /** Extends the lease; whether a cancel was asked, or null when the lease was lost. */
  heartbeat(jobId: string, owner: string, leaseMs: number): Promise<{ cancelRequested: boolean } | null>;
}

/** Units of something a process has a fixed amount of, which each job takes some of while it runs (a training worker's devices). */
export interface JobCapacity<Job> {
  /** Units free now: claimNext is given it, and nothing is claimed at 0. */
  free(): number;
  /** A job was claimed: it takes its units now, before the next claim. */
  take(job: Job): void;
  /** The job's run ended, however it ended: its units are free again. */
  give(job: Job): void;
}

export interface JobRunnerOptions<Job> {
  /** What the jobs are called in the log, e.g. "captioning job". */
  kind: string;
  queue: LeasedQueue<Job>;
  logger: FastifyBaseLogger;
  /** Jobs this process runs side by side. */
  slots: number;
  /** How long a claim holds without a heartbeat: long enough that a slow database does not hand a live job away. */
  leaseMs: number;
  /** How often the lease is renewed, and so how soon a cancel made on another replica is seen. */
  heartbeatMs: number;
  /** How often to look for jobs queued by other replicas or left by dead ones. */
  pollMs: number;
  /** What the jobs take besides a slot; none: a slot is all. */
  capacity?: JobCapacity<Job>;
}

interface RunningJob {
  controller: AbortController;
  done: Promise<void>;
}

/** A kind's worker extends this with what running one job means (runJob). */
export abstract class JobRunner<Job extends { id: string }> {
  /** Identifies this process's leases: host, pid and a random suffix (a restarted pid is another owner). */
  readonly owner = `${os.hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  readonly #options: JobRunnerOptions<Job>;
  readonly #running = new Map<string, RunningJob>();
  #timer: NodeJS.Timeout | undefined;
  #stopped = true;
  #filling: Promise<void> | undefined;
  #fillAgain = false;

  constructor(options: JobRunnerOptions<Job>) {
    this.#options = options;
  }

  /**
   * Runs one claimed job to its end, settling it in the queue. `controller` is aborted
   * (see StopReason) when the job must stop; runJob may abort it itself ('fatal').
   */
  protected abstract runJob(job: Job, controller: AbortController): Promise<void>;

  /** Starts claiming: at once (jobs a dead process left behind), then on every poll and wake(). */
  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#timer = setInterval(() => this.wake(), this.#options.pollMs);
    this.#timer.unref();
    this.wake();
  }

  /** A job was queued: claim it now rather than at the next poll. */
  wake(): void {
    if (this.#stopped) return;
    if (this.#filling !== undefined) {
      this.#fillAgain = true;
      return;
    }
    this.#filling = this.#fill().finally(() => {
      this.#filling = undefined;
      if (this.#fillAgain) {
        this.#fillAgain = false;
        this.wake();
      }
    });
  }

  /** A cancel was asked through this process: stop the job now if it runs here (other replicas see it on their next heartbeat). */
  cancel(jobId: string): void {
    this.#running.get(jobId)?.controller.abort('canceled' satisfies StopReason);
  }

  /** Ids of the jobs running in this process. */
  runningJobs(): string[] {
    return [...this.#running.keys()];
  }

  /** Stops claiming, aborts every running job ('shutdown') and waits until each run has ended. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    await this.#filling;
    for (const run of this.#running.values()) run.controller.abort('shutdown' satisfies StopReason);
    await Promise.all([...this.#running.values()].map((r) => r.done));
  }

  async #fill(): Promise<void> {
    const { queue, logger, kind, capacity } = this.#options;
    try {
      while (!this.#stopped && this.#running.size < this.#options.slots && (capacity === undefined || capacity.free() > 0)) {
        const job = await queue.claimNext(this.owner, this.#options.leaseMs, capacity?.free());
        if (job === null) return;
        capacity?.take(job);
        const controller = new AbortController();
        const done = this.#runLeased(job, controller)
          .catch((error: unknown) => logger.error({ err: error, job: job.id }, `${kind} run crashed`))
          .finally(() => {
            capacity?.give(job);
            this.#running.delete(job.id);
            this.wake();
          });
        this.#running.set(job.id, { controller, done });
      }
    } catch (error) {
      // Database away or not migrated yet: the next poll tries again.
      logger.warn({ err: error }, `could not claim ${kind}s`);
    }
  }

  /** Runs the job while a heartbeat keeps its lease, and aborts it when the lease is lost or a cancel is seen. */
  async #runLeased(job: Job, controller: AbortController): Promise<void> {
    const { queue, logger, kind } = this.#options;
    const heartbeat = setInterval(() => {
      queue.heartbeat(job.id, this.owner, this.#options.leaseMs).then(
        (beat) => {
          if (beat === null) controller.abort('lease-lost' satisfies StopReason);
          else if (beat.cancelRequested) controller.abort('canceled' satisfies StopReason);
        },
        (error: unknown) => logger.warn({ err: error, job: job.id }, `${kind} heartbeat failed`),
      );
    }, this.#options.heartbeatMs);
    heartbeat.unref();
    try {
      await this.runJob(job, controller);
    } finally {
      clearInterval(heartbeat);
    }
  }
}

// The service's Prometheus metrics (prom-client), one registry per app. Workers report
// what happens as it happens (a training step, a generation, a webhook attempt); what is
// a state rather than an event (queue depths, runs by status, the model cache, GPU
// memory, the database pool) is read when /metrics is scraped. Labels take values from
// small fixed sets (route templates, statuses, job kinds), never ids, with one exception:
// the validation metrics of the runs training in this process carry their run_id (a few
// series per running run, gone when the run stops), so runs side by side can be told apart.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { DiskSpace } from '../storage/disk-space.js';
import type { FastifyBaseLogger } from 'fastify';
import type { Database } from '../db/database.js';
import { memoryStats, reportedScores, type Progress } from '../engine/index.js';
import { createQueueStatsRepository, type QueueStats } from '../repositories/queue-stats.js';
import type { ResidentModels } from '../services/resident-models.js';
import { processRegistry } from './process-metrics.js';

const PREFIX = 'sdxl_';
const TRAINING_STATUSES = ['queued', 'starting', 'running', 'succeeded', 'failed', 'canceled'] as const;
/** Seconds: from a cached GET (a millisecond) to a large upload. */
const HTTP_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** Seconds: a tiny model's step on a CPU (milliseconds) to an SDXL step at 1024 px on a slow GPU. */
const STEP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32];
const GENERATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128];
const LAG_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];
/** Seconds: summing a LoRA's gradients over two CPU ranks (a millisecond) to a full SDXL UNet's over slow links. */
const ALLREDUCE_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

export type WebhookAttemptResult = 'delivered' | 'retrying' | 'failed';
export type GenerationStatus = 'succeeded' | 'failed' | 'canceled';
/** Seconds a succeeded generation spent queued, loading its model, denoising and encoding its images. */
export interface GenerationPhases {
  queue: number;
  load: number;
  generate: number;
  encode: number;
}

/** A running training run's latest figures, kept per run in this process. */
interface RunFigures {
  imagesPerSecond: number;
  loss: number;
  /** The run's id and the latest value of each validation metric it has scored (clip_t, fid, kid_std, ...). */
  runId?: string;
  validation: Map<string, number>;
}

interface DatabaseReading {
  queues: QueueStats[];
  runs: Record<string, number>;
}

/** Scrapes closer together than this share one database reading. */
const READING_REUSE_MS = 1000;

/** A training worker's devices, as /metrics reads them (jobs/device-pool.ts). */
interface TrainingPool {
  readonly size: number;
  busy(): number;
}

/** What the scrape-time readings need; set once the plugins that own them exist. */
export interface MetricsSources {
  db: Database;
  resident?: ResidentModels;
  /** The devices this process trains and generates on ("cpu", "cuda", "cuda:N"): GPU memory is reported for each CUDA one. */
  devices?: readonly string[];
  /** This process's training devices and how many are busy (absent: it trains nothing). */
  trainingPool?: TrainingPool;
  /** DATA_DIR's free space and its floor. */
  diskSpace?: DiskSpace;
  logger: FastifyBaseLogger;
}

export class ServiceMetrics {
  readonly registry = new Registry();
  readonly #runs = new Map<symbol, RunFigures>();
  #sources: MetricsSources | undefined;
  #reading: { at: number; promise: Promise<DatabaseReading | undefined> } | undefined;

  readonly #httpDuration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP requests by method, route template and status code',
    labelNames: ['method', 'route', 'status_code'] as const,
    buckets: HTTP_BUCKETS,
    registers: [this.registry],
  });

  readonly #trainingStep = new Histogram({
    name: `${PREFIX}training_step_seconds`,
    help: 'Wall time of one optimizer step of the training runs in this process',
    buckets: STEP_BUCKETS,
    registers: [this.registry],
  });

  readonly #allreduce = new Histogram({
    name: `${PREFIX}training_allreduce_seconds`,
    help: "Time a step of a run on several devices waited after backward for its gradients' all-reduce (the communication backward did not hide), in this process",
    buckets: ALLREDUCE_BUCKETS,
    registers: [this.registry],
  });

  readonly #generationSeconds = new Histogram({
    name: `${PREFIX}generation_duration_seconds`,
    help: 'Generations that succeeded in this process, by phase (queue, load, generate, encode, total)',
    labelNames: ['phase'] as const,
    buckets: GENERATION_BUCKETS,
    registers: [this.registry],
  });

  readonly #generations = new Counter({
    name: `${PREFIX}generations_total`,
    help: 'Generations finished in this process, by status',
    labelNames: ['status'] as const,
    registers: [this.registry],
  });

  readonly #webhookAttempts = new Counter({
    name: `${PREFIX}webhook_attempts_total`,
    help: 'Webhook delivery attempts made by this process, by result (delivered, retrying, failed)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });

  readonly #maintenanceRemoved = new Counter({
    name: `${PREFIX}maintenance_removed_total`,
    help: 'What the maintenance sweeps of this process removed, by kind (webhook_messages, idempotency_keys, generations, checkpoints, blobs)',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });

  readonly #webhookLag = new Histogram({
    name: `${PREFIX}webhook_delivery_lag_seconds`,
    help: 'From the event to its delivery (2xx), retries included',
    buckets: LAG_BUCKETS,
    registers: [this.registry],
  });

  constructor() {
    const metrics = this;
    new Gauge({
      name: `${PREFIX}training_runs_active`,
      help: 'Training runs training in this process',
      registers: [this.registry],
      collect() {
        this.set(metrics.#runs.size);
      },
    });
    new Gauge({
      name: `${PREFIX}training_images_per_second`,
      help: 'Training throughput of this process: images per second summed over its running runs',
      registers: [this.registry],
      collect() {
        this.set([...metrics.#runs.values()].reduce((sum, run) => sum + run.imagesPerSecond, 0));
      },
    });
    new Gauge({
      name: `${PREFIX}training_validation_metric`,
      help: 'Latest value of each quality metric of the validation images (params.validation.metrics: clip_t, fid, ...) of the runs training in this process, by run',
      labelNames: ['metric', 'run_id'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const run of metrics.#runs.values()) {
          for (const [metric, value] of run.validation) this.set({ metric, run_id: run.runId ?? '' }, value);
        }
      },
    });
    new Gauge({
      name: `${PREFIX}training_loss`,
      help: 'Latest training loss of the runs in this process (mean when several train at once; absent when none does)',
      registers: [this.registry],
      collect() {
        this.reset();
        const losses = [...metrics.#runs.values()].map((run) => run.loss).filter(Number.isFinite);
        if (losses.length > 0) this.set(losses.reduce((a, b) => a + b, 0) / losses.length);
      },
    });
    // This process's training devices (absent when it trains nothing).
    for (const [name, help, read] of [
      ['training_devices', 'Devices this process trains on (TRAIN_DEVICES, else the one TRAIN_DEVICE)', (pool) => pool.size],
      ['training_devices_busy', 'Devices of this process training a run now', (pool) => pool.busy()],
    ] as const satisfies ReadonlyArray<readonly [string, string, (pool: TrainingPool) => number]>) {
      new Gauge({
        name: `${PREFIX}${name}`,
        help,
        registers: [this.registry],
        collect() {
          const pool = metrics.#sources?.trainingPool;
          if (pool !== undefined) this.set(read(pool));
        },
      });
    }
    new Gauge({
      name: `${PREFIX}data_dir_free_bytes`,
      help: "Bytes free on DATA_DIR's file system (what this process may still write)",
      registers: [this.registry],
      async collect() {
        const disk = metrics.#sources?.diskSpace;
        if (disk === undefined) return;
        this.set(await disk.freeBytes().catch(() => Number.NaN));
      },
    });
    new Gauge({
      name: `${PREFIX}data_dir_min_free_bytes`,
      help: 'DATA_DIR_MIN_FREE_BYTES: below this free space, uploads, imports and new training runs are refused (507)',
      registers: [this.registry],
      collect() {
        const disk = metrics.#sources?.diskSpace;
        if (disk !== undefined) this.set(disk.minFreeBytes);
      },
    });
    this.#databaseGauges();
    this.#residentGauges();
  }

  /** Gives the scrape-time readings what they read. */
  setSources(sources: MetricsSources): void {
    this.#sources = sources;
  }

  /** The Prometheus text of this app's metrics and the process's (event loop, memory, GC). */
  async scrape(): Promise<string> {
    const [app, process] = await Promise.all([this.registry.metrics(), processRegistry().metrics()]);
    return `${app}\n${process}`;
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  httpRequest(method: string, route: string, statusCode: number, seconds: number): void {
    this.#httpDuration.observe({ method, route, status_code: String(statusCode) }, seconds);
  }

  /** A training run started training in this process: give it the trainer's reports, end() it when it stops. */
  trainingRun(runId?: string): { report(progress: Progress): void; end(): void } {
    const key = Symbol('run');
    let lastStep: number | undefined;
    let lastStepAt = 0;
    const figures = () => this.#runs.get(key) ?? { imagesPerSecond: 0, loss: Number.NaN, ...(runId === undefined ? {} : { runId }), validation: new Map() };
    return {
      report: (progress) => {
        if (progress.phase === 'validating') {
          const { values } = reportedScores(progress);
          if (Object.keys(values).length === 0) return;
          const run = figures();
          for (const [metric, value] of Object.entries(values)) run.validation.set(metric, value);
          this.#runs.set(key, run);
          return;
        }
        if (progress.phase !== 'training') return;
        const now = performance.now();
        // Reports may skip steps: the time since the last report is spread over the steps it covers.
        if (lastStep !== undefined && progress.step > lastStep) this.#trainingStep.observe((now - lastStepAt) / 1000 / (progress.step - lastStep));
        if (lastStep === undefined || progress.step > lastStep) {
          lastStep = progress.step;
          lastStepAt = now;
          // Once per reported step: a run on several devices says its last step's all-reduce (older engines do not).
          const allreduce = progress.metrics.allreduce_ms;
          if (allreduce !== undefined && Number.isFinite(allreduce)) this.#allreduce.observe(allreduce / 1000);
        }
        const run = figures();
        const { images_per_s: rate, loss } = progress.metrics;
        if (rate !== undefined && Number.isFinite(rate)) run.imagesPerSecond = rate;
        if (loss !== undefined && Number.isFinite(loss)) run.loss = loss;
        this.#runs.set(key, run);
      },
      end: () => this.#runs.delete(key),
    };
  }

  generationFinished(status: GenerationStatus, phases?: GenerationPhases): void {
    this.#generations.inc({ status });
    if (phases === undefined) return;
    for (const [phase, seconds] of Object.entries(phases)) this.#generationSeconds.observe({ phase }, seconds);
    this.#generationSeconds.observe({ phase: 'total' }, phases.queue + phases.load + phases.generate + phases.encode);
  }

  /** One attempt; `lagSeconds` (event to delivery) when it delivered. */
  /** What a maintenance sweep of this process removed, by kind. */
  maintenanceRemoved(removed: Record<string, number>): void {
    for (const [kind, count] of Object.entries(removed)) this.#maintenanceRemoved.inc({ kind }, count);
  }

  webhookAttempt(result: WebhookAttemptResult, lagSeconds?: number): void {
    this.#webhookAttempts.inc({ result });
    if (result === 'delivered' && lagSeconds !== undefined) this.#webhookLag.observe(Math.max(0, lagSeconds));
  }

  /**
   * One reading of the queues and runs per scrape: prom-client collects every metric at
   * once, so the three gauges fed by it share the promise of the first to ask.
   */
  #databaseReading(): Promise<DatabaseReading | undefined> {
    const sources = this.#sources;
    if (sources === undefined) return Promise.resolve(undefined);
    const now = Date.now();
    if (this.#reading !== undefined && now - this.#reading.at < READING_REUSE_MS) return this.#reading.promise;
    const repository = createQueueStatsRepository(sources.db);
    const promise = Promise.all([repository.queues(), repository.trainingRunsByStatus()]).then(
      ([queues, runs]) => ({ queues, runs }),
      (error: unknown) => {
        // The database is away: these series are left out rather than shown stale.
        sources.logger.warn({ err: error }, 'metrics: could not read the queues');
        return undefined;
      },
    );
    this.#reading = { at: now, promise };
    return promise;
  }

  #databaseGauges(): void {
    const metrics = this;
    new Gauge({
      name: `${PREFIX}queue_depth`,
      help: 'Jobs waiting to be claimed, by kind (database-wide: the same on every replica)',
      labelNames: ['kind'] as const,
      registers: [this.registry],
      async collect() {
        this.reset();
        for (const queue of (await metrics.#databaseReading())?.queues ?? []) this.set({ kind: queue.kind }, queue.depth);
      },
    });
    new Gauge({
      name: `${PREFIX}queue_oldest_wait_seconds`,
      help: 'How long the oldest waiting job of each kind has waited (database-wide)',
      labelNames: ['kind'] as const,
      registers: [this.registry],
      async collect() {
        this.reset();
        for (const queue of (await metrics.#databaseReading())?.queues ?? []) this.set({ kind: queue.kind }, queue.oldestWaitSeconds);
      },
    });
    new Gauge({
      name: `${PREFIX}training_runs`,
      help: 'Training runs by status (database-wide)',
      labelNames: ['status'] as const,
      registers: [this.registry],
      async collect() {
        this.reset();
        const runs = (await metrics.#databaseReading())?.runs;
        if (runs !== undefined) for (const status of TRAINING_STATUSES) this.set({ status }, runs[status] ?? 0);
      },
    });
    new Gauge({
      name: `${PREFIX}db_pool_connections`,
      help: 'Database connections of this process by state (active, idle), and the pool maximum (max)',
      labelNames: ['state'] as const,
      registers: [this.registry],
      collect() {
        const pool = metrics.#sources?.db.poolStats();
        if (pool === undefined) return;
        this.set({ state: 'active' }, pool.total - pool.idle);
        this.set({ state: 'idle' }, pool.idle);
        this.set({ state: 'max' }, pool.max);
      },
    });
    new Gauge({
      name: `${PREFIX}db_pool_waiting`,
      help: 'Queries of this process waiting for a database connection',
      registers: [this.registry],
      collect() {
        const pool = metrics.#sources?.db.poolStats();
        if (pool !== undefined) this.set(pool.waiting);
      },
    });
  }

  #residentGauges(): void {
    const metrics = this;
    const stats = () => metrics.#sources?.resident?.stats();
    const counter = (name: string, help: string, pick: (s: NonNullable<ReturnType<typeof stats>>) => number) =>
      new Counter({
        name: `${PREFIX}model_cache_${name}_total`,
        help,
        registers: [this.registry],
        collect() {
          const s = stats();
          if (s === undefined) return;
          this.reset(); // the cache keeps the running total; the counter shows it
          this.inc(pick(s));
        },
      });
    counter('hits', 'Generations that found their base model loaded', (s) => s.hits);
    counter('misses', 'Generations that had to load their base model', (s) => s.misses);
    counter('evictions', 'Base models unloaded to stay under MODEL_CACHE_BYTES', (s) => s.evictions);
    new Gauge({
      name: `${PREFIX}model_cache_resident_bytes`,
      help: 'Bytes of base-model weights loaded for generations',
      registers: [this.registry],
      collect() {
        const s = stats();
        if (s !== undefined) this.set(s.bytes);
      },
    });
    new Gauge({
      name: `${PREFIX}gpu_memory_bytes`,
      help: 'GPU memory of the CUDA caching allocator by device: in use now and the peak (CUDA devices only)',
      labelNames: ['device', 'state'] as const,
      registers: [this.registry],
      collect() {
        for (const device of new Set(metrics.#sources?.devices ?? [])) {
          if (!device.startsWith('cuda')) continue;
          try {
            const memory = memoryStats(device);
            this.set({ device, state: 'in_use' }, memory.inUseBytes);
            this.set({ device, state: 'peak' }, memory.peakBytes);
          } catch (error) {
            metrics.#sources?.logger.warn({ err: error, device }, 'metrics: could not read GPU memory');
          }
        }
      },
    });
  }
}

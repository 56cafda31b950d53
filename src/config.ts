// Service configuration: read once from environment variables, validated by a
// TypeBox schema. Every variable has a documented default (README "Configuration").
import path from 'node:path';
import { Type, type Static } from 'typebox';
import { Value } from 'typebox/value';
// ---- images (S2): the images feature's variables live with it, in src/services/image-limits.ts
import { ImageEnvProperties, imageConfigFromEnv, type ImageConfig } from './services/image-limits.js';
// ---- captions (issue 5): providers' variables live in src/captioning/config.ts, the worker's in src/jobs
import { CaptionConfigError, CaptionEnvProperties, captionConfigFromEnv, SecretFileError, type CaptionConfig } from './captioning/index.js';
import { CaptionWorkerEnvProperties, type CaptionWorkerConfig } from './jobs/captioning-worker.js';
// ---- dataset imports (issue 26): the worker's IMPORT_WORKER_JOBS lives with it
import { ImportWorkerEnvProperties } from './jobs/dataset-import-worker.js';
import { MaintenanceEnvProperties } from './services/maintenance.js';
// ---- webhooks (issue 12): WEBHOOK_* live in src/webhooks/config.ts
import { WebhookConfigError, WebhookEnvProperties, webhookConfigFromEnv, type WebhookConfig } from './webhooks/config.js';
// ---- training devices (issue 24): a worker's pool is at most what one run may take
import { MAX_RUN_DEVICES } from './schemas/training-params.js';

const MiB = 1024 * 1024;

/** The environment variables the service reads, with their defaults. */
export const EnvSchema = Type.Object({
  /** What this process does: all (API and every worker), api (HTTP API only, no slots) or worker (slots; HTTP only for probes and metrics). */
  ROLE: Type.Enum(['all', 'api', 'worker'], { default: 'all' }),
  /** TCP port to listen on; 0 picks a free port. */
  PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 3000 }),
  /** Interface to bind; 0.0.0.0 inside containers. */
  HOST: Type.String({ minLength: 1, default: '127.0.0.1' }),
  /** postgres:// URL; when empty the service runs on embedded PGlite under DATA_DIR. */
  DATABASE_URL: Type.String({ default: '' }),
  /** Largest number of pooled Postgres connections per replica. */
  DATABASE_POOL_MAX: Type.Integer({ minimum: 1, maximum: 1000, default: 10 }),
  /** Directory for local state: embedded database, uploaded images, adapters. */
  DATA_DIR: Type.String({ minLength: 1, default: './data' }),
  /** Free bytes DATA_DIR's file system keeps: below them, uploads, imports and new training runs are refused with 507 (0: no floor). */
  DATA_DIR_MIN_FREE_BYTES: Type.Integer({ minimum: 0, default: 1024 * MiB }),
  /** Base models: diffusers folders and SGM .safetensors files; empty means DATA_DIR/models. */
  MODELS_DIR: Type.String({ default: '' }),
  /** The networks of the image-quality metrics (inception/, lpips/, clip/, hps/); empty = no metric available. */
  METRICS_MODELS_DIR: Type.String({ default: '' }),
  /** Training runs this process trains side by side; 0 = none here (an API-only replica). Unset: one per device of TRAIN_DEVICES, else 1. */
  TRAINING_SLOTS: Type.Optional(Type.Integer({ minimum: 0, maximum: 64 })),
  /** Device of training runs: cpu, cuda or cuda:N; empty means cuda when the engine sees a GPU, else cpu. */
  TRAIN_DEVICE: Type.String({ pattern: '^(|cpu|cuda|cuda:[0-9]+)$', default: '' }),
  /** The devices this process trains on, one run per device at a time (a run may take several): cuda:0,cuda:1,..., cpu (may repeat; cpu*N is N of them), or all (every CUDA device the engine sees). */
  TRAIN_DEVICES: Type.String({ default: '' }),
  /** Milliseconds a worker holds a run without a heartbeat; a crashed worker's run is claimed again after it. */
  TRAINING_LEASE_MS: Type.Integer({ minimum: 1000, maximum: 3_600_000, default: 30_000 }),
  /** Times a run's process may die while training it before the run fails (graceful hand-backs are free). */
  TRAINING_MAX_ATTEMPTS: Type.Integer({ minimum: 1, maximum: 100, default: 3 }),
  /** Milliseconds between heartbeat comments on an idle event stream (proxies close silent connections). */
  SSE_HEARTBEAT_MS: Type.Integer({ minimum: 100, maximum: 300_000, default: 15_000 }),
  /** Queued and running runs one tenant may have; one more is refused with 429. */
  TENANT_MAX_QUEUED_RUNS: Type.Integer({ minimum: 1, maximum: 100_000, default: 10 }),
  /** Bytes of models one tenant may keep: its models' files, its full runs' checkpoints, and what its queued full runs will write; a full run past it is refused with 429. */
  TENANT_MAX_MODEL_BYTES: Type.Integer({ minimum: 0, default: 100 * 1024 * MiB }),
  /** Generations this process runs side by side (their own slots: never behind a training run); 0 = none here. */
  GENERATION_SLOTS: Type.Integer({ minimum: 0, maximum: 64, default: 1 }),
  /** Queued and running generations one tenant may have; one more is refused with 429. */
  TENANT_MAX_QUEUED_GENERATIONS: Type.Integer({ minimum: 1, maximum: 100_000, default: 20 }),
  /** Bytes of base-model weights kept loaded for generations when none is using them (least recently used leave first). */
  MODEL_CACHE_BYTES: Type.Integer({ minimum: 0, default: 16 * 1024 * MiB }),
  /** Bytes of parsed LoRAs each loaded model keeps, by sha256 (least recently used leave first). */
  LORA_CACHE_BYTES: Type.Integer({ minimum: 0, default: 1024 * MiB }),
  /** Largest uploaded LoRA file. */
  LORA_MAX_BYTES: Type.Integer({ minimum: 1024, default: 1024 * MiB }),
  /** Model ids (comma-separated) a worker loads at start for generations; it is not ready until they are loaded. */
  PRELOAD_MODELS: Type.String({ default: '' }),
  /** Milliseconds an API key's owner is cached by a replica; a revocation reaches every replica at once by NOTIFY, and after this at worst. 0 = no cache. */
  API_KEY_CACHE_MS: Type.Integer({ minimum: 0, maximum: 60_000, default: 5000 }),
  /** Port of GET /metrics alone; 0 = /metrics on PORT. */
  METRICS_PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 0 }),
  /** When set, /metrics asks for Authorization: Bearer <this>. */
  METRICS_TOKEN: Type.String({ default: '' }),
  /** pino level. */
  LOG_LEVEL: Type.Enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], { default: 'info' }),
  /** Largest accepted JSON request body, in bytes. */
  BODY_LIMIT_BYTES: Type.Integer({ minimum: 1024, default: 1 * MiB }),
  /** Largest accepted uploaded file (one image, or one zip archive), in bytes. */
  UPLOAD_MAX_FILE_BYTES: Type.Integer({ minimum: 1024, default: 50 * MiB }),
  /** Most files accepted in one multipart upload request. */
  UPLOAD_MAX_FILES: Type.Integer({ minimum: 1, default: 100 }),
  /** Apply pending migrations at start-up (under an advisory lock). */
  MIGRATE_ON_START: Type.Boolean({ default: true }),
  /** Milliseconds in-flight requests get to finish after SIGTERM before the process exits anyway. */
  SHUTDOWN_GRACE_MS: Type.Integer({ minimum: 0, default: 10_000 }),
  // ---- images (S2): IMAGE_*, DATASET_MAX_IMAGES, UPLOAD_MAX_REQUEST_BYTES, ZIP_*, CAPTION_MAX_BYTES
  ...ImageEnvProperties,
  // ---- captions: ANTHROPIC_*, OPENAI_COMPAT_*, CAPTION_* and the worker's CAPTION_WORKER_JOBS
  ...CaptionEnvProperties,
  ...CaptionWorkerEnvProperties,
  // ---- dataset imports: the worker's IMPORT_WORKER_JOBS
  ...ImportWorkerEnvProperties,
  // ---- webhooks: WEBHOOK_ALLOW_HTTP, WEBHOOK_ALLOWED_HOSTS, WEBHOOK_TIMEOUT_MS, WEBHOOK_SLOTS, WEBHOOK_DISABLE_AFTER_MS
  ...WebhookEnvProperties,
  // ---- maintenance: MAINTENANCE_INTERVAL_MS, WEBHOOK_RETENTION_DAYS, GENERATION_RETENTION_DAYS, KEEP_CHECKPOINTS
  ...MaintenanceEnvProperties,
});
export type Env = Static<typeof EnvSchema>;

export type Role = Env['ROLE'];

export interface Config {
  /** all: API and workers; api: no slots; worker: slots, and HTTP only for probes and metrics. */
  role: Role;
  port: number;
  host: string;
  /** undefined means embedded PGlite. */
  databaseUrl: string | undefined;
  databasePoolMax: number;
  /** Absolute path. */
  dataDir: string;
  /** DATA_DIR_MIN_FREE_BYTES. */
  dataDirMinFreeBytes: number;
  /** Absolute path of the base models (the built-in demo model is written here too when it is DATA_DIR/models). */
  modelsDir: string;
  /** Absolute path of the quality metrics' networks (METRICS_MODELS_DIR); undefined: no metric is available. */
  metricsModelsDir: string | undefined;
  logLevel: Env['LOG_LEVEL'];
  bodyLimitBytes: number;
  uploadMaxFileBytes: number;
  uploadMaxFiles: number;
  migrateOnStart: boolean;
  shutdownGraceMs: number;
  /** Model ids loaded at start by a process that generates; readiness waits for them. */
  preloadModels: string[];
  apiKeyCacheMs: number;
  /** /metrics on its own port (0: on PORT), behind a bearer token when one is set. */
  metrics: { port: number; token: string | undefined };
  /** ---- training runs: slots of this process (undefined: one per device, TRAIN_DEVICES=all) and its devices. */
  training: {
    slots: number | undefined; devices: TrainingDevicesConfig; leaseMs: number; maxAttempts: number; tenantMaxQueuedRuns: number; tenantMaxModelBytes: number;
    sseHeartbeatMs: number;
  };
  /** ---- generations: slots of this process, the per-tenant queue limit, what stays loaded. */
  generation: { slots: number; tenantMaxQueued: number; modelCacheBytes: number; loraCacheBytes: number; loraMaxBytes: number };
  /** ---- images (S2): limits of image uploads and zip archives. */
  images: ImageConfig;
  /** ---- captions: providers, their keys (as Secrets), limits and retries. */
  captions: CaptionConfig;
  /** ---- captions: the background runner of captioning jobs. */
  captionWorker: CaptionWorkerConfig;
  /** ---- dataset imports: imports this process reads side by side (0: the worker does not start). */
  importWorker: { maxJobs: number };
  /** ---- the maintenance sweep: how often (0: not in this process), and what it keeps. */
  maintenance: { intervalMs: number; webhookRetentionDays: number; generationRetentionDays: number | undefined; keepCheckpoints: number };
  /** ---- webhooks: where they may go, timeouts, this process's dispatcher. */
  webhooks: WebhookConfig;
}

/**
 * Where training runs train. pool: TRAIN_DEVICES, each device trains one run at a time and a
 * run may take several of them ('all': every CUDA device the engine sees, known at start).
 * shared: TRAIN_DEVICE (undefined: cuda when the engine sees a GPU, else cpu), one device that
 * TRAINING_SLOTS runs share, each on that one device.
 */
export type TrainingDevicesConfig = { pool: string[] | 'all' } | { shared: string | undefined };


export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** TRAIN_DEVICES as a list of device names, or 'all'; throws ConfigError naming the variable and what is wrong. */
export function parseTrainDevices(value: string): string[] | 'all' {
  const refuse = (why: string) => new ConfigError(`invalid configuration: TRAIN_DEVICES ${why}`);
  if (value.trim() === 'all') return 'all';
  const devices: string[] = [];
  for (const item of value.split(',').map((part) => part.trim())) {
    const cpus = /^cpu\*(\d+)$/.exec(item);
    if (cpus !== null && Number(cpus[1]) >= 1) devices.push(...Array<string>(Math.min(Number(cpus[1]), MAX_RUN_DEVICES + 1)).fill('cpu'));
    else if (item === 'cpu' || /^cuda:\d+$/.test(item)) devices.push(item);
    else throw refuse(`has "${item}": expected a comma list of cuda:N, cpu or cpu*N (N CPU devices), or all`);
  }
  if (devices.length > MAX_RUN_DEVICES) throw refuse(`names ${devices.length} devices; at most ${MAX_RUN_DEVICES}`);
  const twice = devices.find((device, index) => device !== 'cpu' && devices.indexOf(device) !== index);
  if (twice !== undefined) throw refuse(`names ${twice} twice; each GPU trains one rank (only cpu may repeat)`);
  if (devices.includes('cpu') && devices.some((device) => device !== 'cpu')) {
    throw refuse('mixes cpu and cuda devices; the devices of one run must be of one kind');
  }
  return devices;
}

/** TRAIN_DEVICES, else TRAIN_DEVICE; both set is an error naming both. */
function trainingDevicesFromEnv(env: Pick<Env, 'TRAIN_DEVICE' | 'TRAIN_DEVICES'>): TrainingDevicesConfig {
  if (env.TRAIN_DEVICES === '') return { shared: env.TRAIN_DEVICE === '' ? undefined : env.TRAIN_DEVICE };
  if (env.TRAIN_DEVICE !== '') {
    throw new ConfigError('invalid configuration: TRAIN_DEVICE and TRAIN_DEVICES are both set; set one (TRAIN_DEVICE=cuda:1 is TRAIN_DEVICES=cuda:1)');
  }
  return { pool: parseTrainDevices(env.TRAIN_DEVICES) };
}

/** Reads the known variables from `env`, applies defaults and converts strings; throws ConfigError naming every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const known: Record<string, unknown> = {};
  for (const key of Object.keys(EnvSchema.properties)) {
    const value = env[key];
    // An empty variable means "not set" so that `FOO= npm start` falls back to the default.
    if (value !== undefined && value !== '') known[key] = value;
  }
  const converted = Value.Convert(EnvSchema, Value.Default(EnvSchema, known));
  if (!Value.Check(EnvSchema, converted)) {
    // One message per variable: a union reports once per branch.
    const problems = new Map<string, string>();
    for (const e of Value.Errors(EnvSchema, converted)) {
      const name = e.instancePath.replace(/^\//, '') || '(env)';
      if (!problems.has(name)) problems.set(name, `${name} ${e.message}`);
    }
    throw new ConfigError(`invalid configuration: ${[...problems.values()].join('; ')}`);
  }
  const e = converted;
  let captions: CaptionConfig;
  try {
    captions = captionConfigFromEnv(e);
  } catch (error) {
    // A default provider without its key, an unreadable key file: named, never the key itself.
    if (error instanceof CaptionConfigError || error instanceof SecretFileError) throw new ConfigError(`invalid configuration: ${error.message}`);
    throw error;
  }
  let webhooks: WebhookConfig;
  try {
    webhooks = webhookConfigFromEnv(e);
  } catch (error) {
    if (error instanceof WebhookConfigError) throw new ConfigError(`invalid configuration: ${error.message}`);
    throw error;
  }
  // An API replica runs no job of any kind, whatever the slot variables say (they are the workers').
  const api = e.ROLE === 'api';
  const devices = trainingDevicesFromEnv(e);
  // Slots left unset: one run per device of a pool (a count known only at start for 'all'), else one.
  const defaultSlots = 'pool' in devices ? (devices.pool === 'all' ? undefined : devices.pool.length) : 1;
  return {
    role: e.ROLE,
    port: e.PORT,
    host: e.HOST,
    databaseUrl: e.DATABASE_URL === '' ? undefined : e.DATABASE_URL,
    databasePoolMax: e.DATABASE_POOL_MAX,
    dataDir: path.resolve(e.DATA_DIR),
    dataDirMinFreeBytes: e.DATA_DIR_MIN_FREE_BYTES,
    modelsDir: path.resolve(e.MODELS_DIR === '' ? path.join(e.DATA_DIR, 'models') : e.MODELS_DIR),
    metricsModelsDir: e.METRICS_MODELS_DIR === '' ? undefined : path.resolve(e.METRICS_MODELS_DIR),
    logLevel: e.LOG_LEVEL,
    bodyLimitBytes: e.BODY_LIMIT_BYTES,
    uploadMaxFileBytes: e.UPLOAD_MAX_FILE_BYTES,
    uploadMaxFiles: e.UPLOAD_MAX_FILES,
    migrateOnStart: e.MIGRATE_ON_START,
    shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
    preloadModels: api ? [] : e.PRELOAD_MODELS.split(',').map((id) => id.trim()).filter((id) => id !== ''),
    apiKeyCacheMs: e.API_KEY_CACHE_MS,
    metrics: { port: e.METRICS_PORT, token: e.METRICS_TOKEN === '' ? undefined : e.METRICS_TOKEN },
    training: {
      slots: api ? 0 : e.TRAINING_SLOTS ?? defaultSlots,
      devices,
      leaseMs: e.TRAINING_LEASE_MS,
      maxAttempts: e.TRAINING_MAX_ATTEMPTS,
      tenantMaxQueuedRuns: e.TENANT_MAX_QUEUED_RUNS,
      tenantMaxModelBytes: e.TENANT_MAX_MODEL_BYTES,
      sseHeartbeatMs: e.SSE_HEARTBEAT_MS,
    },
    generation: {
      slots: api ? 0 : e.GENERATION_SLOTS,
      tenantMaxQueued: e.TENANT_MAX_QUEUED_GENERATIONS,
      modelCacheBytes: e.MODEL_CACHE_BYTES,
      loraCacheBytes: e.LORA_CACHE_BYTES,
      loraMaxBytes: e.LORA_MAX_BYTES,
    },
    // ---- images (S2)
    images: imageConfigFromEnv(e),
    // ---- captions
    captions,
    captionWorker: { maxJobs: api ? 0 : e.CAPTION_WORKER_JOBS },
    importWorker: { maxJobs: api ? 0 : e.IMPORT_WORKER_JOBS },
    maintenance: {
      intervalMs: e.MAINTENANCE_INTERVAL_MS,
      webhookRetentionDays: e.WEBHOOK_RETENTION_DAYS,
      generationRetentionDays: e.GENERATION_RETENTION_DAYS,
      keepCheckpoints: e.KEEP_CHECKPOINTS,
    },
    webhooks: api ? { ...webhooks, slots: 0 } : webhooks,
  };
}

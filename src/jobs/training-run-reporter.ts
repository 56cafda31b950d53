// What a training run tells the world while it trains: the trainer's reports become the
// run's progress (at most once a second, with the memory it holds on its device), events
// and log lines, and the files it writes (checkpoints, validation images, LoRA files)
// become published artifacts; a checkpoint keep_checkpoints let go leaves the artifacts.
// A full run's model files are published by the worker once the run has completed
// (publishNow). Writes go out one after another, in report order; settled() waits for all
// of them, so a run is never marked succeeded before its files can be downloaded (a write
// never queues another: it would land after the run's end). While the database is
// unavailable, the writes wait for it and land, in order, once it is back.
import fs from 'node:fs/promises';
import path from 'node:path';
import type { FastifyBaseLogger } from 'fastify';
import type { Database } from '../db/database.js';
import { retryWhileUnavailable } from '../db/unavailable.js';
import { METRIC_NAMES, reportedScores, type Progress } from '../engine/index.js';
import { createTrainingRunArtifactsRepository, type ArtifactKind } from '../repositories/training-run-artifacts.js';
import { createTrainingRunEventsRepository } from '../repositories/training-run-events.js';
import { createTrainingRunsRepository } from '../repositories/training-runs.js';
import type { RunEventsBus } from '../services/run-events-bus.js';
import type { ModelOutput } from '../services/training-results.js';
import { artifactUrl } from '../services/training-run-artifacts.js';
import type { RunFileInfo, RunFileStore } from '../storage/run-file-store.js';

export const PROGRESS_INTERVAL_MS = 1_000;

export interface TrainingRunReporterOptions {
  db: Database;
  files: RunFileStore;
  bus: RunEventsBus;
  logger: FastifyBaseLogger;
  runId: string;
  /** The worker's lease: progress is written only while it holds the run. */
  owner: string;
  /** The run's work folder (the trainer's outputDir), to name its files relative to it. */
  workDir: string;
  totalSteps: number;
  /** The device the run trains on (rank 0's, with several): whose memory the progress reports count. */
  device: string;
  /** Devices the run trains on (params.devices). */
  devices: number;
  /**
   * Names in the work folder the reporter leaves alone (a full run's model files: the worker
   * publishes them once the run has completed); a name under one of them as a folder too.
   */
  unreported?: readonly string[];
  /** Server paths in the trainer's messages, and what a tenant sees instead (the model's id, a name in the run). */
  redactions: Array<[path: string, shownAs: string]>;
}

const STEP_PHASES = new Set(['training', 'validating', 'saving', 'done', 'cancelled']);
const round = (value: number, digits: number) => Number(value.toPrecision(digits));

/** The public progress of a run, from one trainer report on `device` (rank 0's of `devices`). */
export function runProgress(report: Progress, totalSteps: number, device: string | null = null, devices = 1): Record<string, unknown> {
  // Before training, a report's step counts something else (images cached); after, optimizer steps.
  const steps = STEP_PHASES.has(report.phase) ? report.step : 0;
  const metric = (name: string) => (Number.isFinite(report.metrics[name]) ? report.metrics[name] : null);
  return {
    phase: report.phase,
    step: steps,
    total_steps: totalSteps,
    // 1-based; epochs: how many max_steps spans (the engine counts micro-batches, as kohya does).
    epoch: metric('epoch'),
    epochs: metric('epochs'),
    percent: totalSteps > 0 ? Math.round((1000 * steps) / totalSteps) / 10 : 0,
    loss: metric('loss'),
    loss_avg: metric('loss_avg'),
    lr: metric('lr'),
    images_per_s: metric('images_per_s'),
    eta_seconds: metric('eta_s'),
    // Prior preservation's loss split (null without it): on the subject's images, on the class images.
    loss_instance: metric('loss_instance'),
    loss_prior: metric('loss_prior'),
    // What the run needs: the memory it holds on its device now, and the most it has held.
    device,
    memory_bytes: metric('memory_bytes'),
    peak_memory_bytes: metric('peak_memory_bytes'),
    // Data parallel: the devices, and the last step's all-reduce of the gradients (null on one device, or before the engine reports it).
    devices,
    allreduce_ms: metric('allreduce_ms'),
  };
}

/** The kind of a file the trainer wrote, from its place in the work folder. */
function artifactKind(name: string): ArtifactKind {
  if (name.startsWith('checkpoints/')) return 'checkpoint';
  if (name.startsWith('samples/')) return 'validation_image';
  return name.endsWith('_peft.safetensors') ? 'lora_peft' : 'lora';
}

const MEMORY_METRICS = ['memory_bytes', 'peak_memory_bytes'] as const;

export class TrainingRunReporter {
  readonly #options: TrainingRunReporterOptions;
  #queue: Promise<void> = Promise.resolve();
  #lastProgressAt = 0;
  #phase = '';
  #status: 'starting' | 'running' = 'starting';
  #lastTraining: Record<string, unknown> | undefined;
  #peakMemory = 0;
  /** A write waits for the database: said once in the log, not at every retry. */
  #waiting = false;

  constructor(options: TrainingRunReporterOptions) {
    this.#options = options;
  }

  /** A log line of the run (also what GET /logs shows). */
  log(message: string, level: 'info' | 'warn' | 'error' = 'info'): void {
    this.#enqueue(() => this.#event('log', { level, message }));
  }

  /** The most memory any report said the run held on its device (0 before the first that says). */
  get peakMemoryBytes(): number {
    return this.#peakMemory;
  }

  /** One trainer report (called on the event loop, in order). */
  report(report: Progress): void {
    const { db, runId, owner, totalSteps, device, devices } = this.#options;
    const peak = report.metrics.peak_memory_bytes;
    if (Number.isFinite(peak)) this.#peakMemory = Math.max(this.#peakMemory, peak!);
    const phaseChanged = report.phase !== this.#phase;
    if (phaseChanged) {
      this.#phase = report.phase;
      if (report.phase !== 'training') this.log(report.message === '' ? report.phase : `${report.phase}: ${this.#redact(report.message)}`);
    }
    const now = Date.now();
    if (phaseChanged || now - this.#lastProgressAt >= PROGRESS_INTERVAL_MS) {
      this.#lastProgressAt = now;
      if (report.phase === 'training') this.#status = 'running';
      let progress = runProgress(report, totalSteps, device, devices);
      // After training (validating, saving, done), the last step's loss and rate still describe the run; memory is the report's own.
      if (report.phase === 'training') this.#lastTraining = progress;
      else if (this.#lastTraining !== undefined) {
        const memory = Object.fromEntries(MEMORY_METRICS.map((name) => [name, progress[name] ?? this.#lastTraining![name]]));
        progress = { ...this.#lastTraining, phase: progress.phase, step: progress.step, percent: progress.percent, eta_seconds: null, ...memory };
      }
      const status = this.#status;
      this.#enqueue(async () => {
        await this.#write(() => createTrainingRunsRepository(db).progress(runId, owner, progress, status));
        await this.#event('progress', progress);
      });
      if (report.phase === 'training' && Number.isFinite(report.metrics.loss)) {
        const m = report.metrics;
        this.log(`step ${report.step}/${totalSteps} loss ${round(m.loss!, 4)} lr ${round(m.lr ?? 0, 3)}` +
          (Number.isFinite(m.loss_prior) ? ` (instance ${round(m.loss_instance!, 4)}, prior ${round(m.loss_prior!, 4)})` : '') +
          (Number.isFinite(m.images_per_s) ? ` ${round(m.images_per_s!, 3)} images/s` : ''));
      }
    }
    const files = report.files.filter((file) => !this.#unreported(file));
    const scored = reportedScores(report);
    const scoredAny = Object.keys(scored.values).length > 0 || Object.keys(scored.unavailable).length > 0;
    if (report.phase === 'validating' && (files.length > 0 || Number.isFinite(report.metrics.validation_loss) || scoredAny || scored.final)) {
      this.#enqueue(() => this.#validation(report, files));
    } else if (files.length > 0) {
      this.#enqueue(() => this.#published(report.step, files));
    }
  }

  /**
   * Publishes files the worker names (a full run's model) after every write so far, records
   * them as artifacts and tells the run's watchers; throws when one cannot be published.
   */
  async publishNow(step: number, outputs: ModelOutput[]): Promise<Array<Record<string, unknown>>> {
    await this.settled();
    const published = [];
    for (const output of outputs) published.push(await this.#record(step, output));
    for (const artifact of published) {
      await this.#event('artifact', artifact);
      await this.#event('log', { level: 'info', message: `${String(artifact.kind)} written: ${String(artifact.name)} (${String(artifact.byte_size)} bytes)` });
    }
    return published;
  }

  /** Forgets the checkpoints keep_checkpoints removed since the last one was published (the trainer prunes after reporting one). */
  forgetRemovedCheckpoints(): void {
    this.#enqueue(() => this.#forgetRemovedCheckpoints());
  }

  /** A file under a name the worker publishes itself (a full run's model files). */
  #unreported(file: string): boolean {
    const name = path.relative(this.#options.workDir, file).split(path.sep).join('/');
    return (this.#options.unreported ?? []).some((skip) => name === skip || name.startsWith(`${skip}/`));
  }

  /** Shows `serverPath` as `shownAs` in log lines from now on. */
  redact(serverPath: string, shownAs: string): void {
    this.#options.redactions.unshift([serverPath, shownAs]);
  }

  #redact(message: string): string {
    let shown = message;
    for (const [serverPath, shownAs] of this.#options.redactions) shown = shown.split(serverPath).join(shownAs);
    return shown;
  }

  /** Resolves when every write so far has been made (failed writes are logged, not thrown). */
  settled(): Promise<void> {
    return this.#queue;
  }

  #enqueue(write: () => Promise<void>): void {
    this.#queue = this.#queue.then(write).catch((error: unknown) => {
      this.#options.logger.warn({ err: error }, 'could not record a training run report');
    });
  }

  async #event(type: 'progress' | 'log' | 'checkpoint' | 'validation' | 'artifact', data: Record<string, unknown>): Promise<void> {
    const { db, runId, owner } = this.#options;
    await this.#write(() => createTrainingRunEventsRepository(db).append(runId, owner, type, data));
    this.#options.bus.notify(this.#options.runId);
  }

  /** One statement, retried while the database is unavailable: the run trains on, and its reports land in order once it is back. */
  #write<T>(statement: () => Promise<T>): Promise<T> {
    return retryWhileUnavailable(statement, (error) => {
      if (this.#waiting) return;
      this.#waiting = true;
      this.#options.logger.warn({ err: error }, 'the database is unavailable: the run\'s reports wait for it');
    }).finally(() => {
      this.#waiting = false;
    });
  }

  /** Publishes one file (or folder, as a tar) and records it as an artifact; its public description. */
  async #record(step: number, output: ModelOutput): Promise<Record<string, unknown>> {
    const { db, files, runId } = this.#options;
    const info: RunFileInfo = output.tar === undefined
      ? await files.publish(runId, output.name)
      : await files.publishTar(runId, output.name, output.tar.prefix);
    const name = output.tar?.name ?? output.name;
    await this.#write(() => createTrainingRunArtifactsRepository(db).record({ run_id: runId, name, kind: output.kind, byte_size: info.byteSize, sha256: info.sha256, step }));
    return { name, kind: output.kind, byte_size: info.byteSize, sha256: info.sha256, step, content_url: artifactUrl(runId, name) };
  }

  /** Publishes the files of a report and records them as artifacts; their public descriptions. */
  async #publish(step: number, reported: string[]): Promise<Array<Record<string, unknown>>> {
    const published = [];
    for (const file of reported) {
      const name = path.relative(this.#options.workDir, file).split(path.sep).join('/');
      published.push(await this.#record(step, { name, kind: artifactKind(name) }));
    }
    return published;
  }

  async #published(step: number, reported: string[]): Promise<void> {
    for (const artifact of await this.#publish(step, reported)) {
      if (artifact.kind === 'checkpoint') {
        await this.#event('checkpoint', { step, artifact });
        await this.#event('log', { level: 'info', message: `checkpoint written at step ${step}: ${String(artifact.name)}` });
        await this.#forgetRemovedCheckpoints();
      } else {
        await this.#event('artifact', artifact);
        await this.#event('log', { level: 'info', message: `${String(artifact.kind)} written: ${String(artifact.name)} (${String(artifact.byte_size)} bytes)` });
      }
    }
  }

  /** keep_checkpoints: the trainer removes older checkpoints once a newer one is written; their artifacts go too. */
  async #forgetRemovedCheckpoints(): Promise<void> {
    const { db, files, runId } = this.#options;
    const artifacts = createTrainingRunArtifactsRepository(db);
    for (const checkpoint of await this.#write(() => artifacts.ofKind(runId, 'checkpoint'))) {
      const gone = await fs.access(files.localPath(runId, checkpoint.name)).then(() => false, () => true);
      if (gone) await this.#write(() => artifacts.delete(runId, checkpoint.name));
    }
  }

  async #validation(report: Progress, reported: string[]): Promise<void> {
    const { db, runId, owner } = this.#options;
    const images = await this.#publish(report.step, reported);
    const loss = report.metrics.validation_loss;
    const scored = reportedScores(report);
    const { values, final } = scored;
    const unavailable = Object.fromEntries(Object.entries(scored.unavailable).map(([metric, why]) => [metric, this.#redact(why)]));
    // The run's latest scored set: what the console shows beside the loss chart (the final set last).
    if (Object.keys(values).length > 0 || Object.keys(unavailable).length > 0) {
      await this.#write(() => createTrainingRunsRepository(db).qualityMetrics(runId, owner, { step: report.step, final, values, unavailable }));
    }
    await this.#event('validation', {
      step: report.step, validation_loss: Number.isFinite(loss) ? loss : null, images, metrics: values, unavailable, final,
    });
    const scores = Object.entries(values).filter(([key]) => (METRIC_NAMES as readonly string[]).includes(key));
    const message = `${final ? 'final validation set' : 'validation'} at step ${report.step}` + (Number.isFinite(loss) ? `: loss ${round(loss!, 4)}` : '') +
      (images.length > 0 ? `, ${images.length} image(s)` : '') +
      (scores.length > 0 ? `; ${scores.map(([key, value]) => `${key} ${round(value, 4)}`).join(', ')}` : '') +
      Object.entries(unavailable).map(([metric, why]) => `; ${metric} unavailable: ${why}`).join('');
    await this.#event('log', { level: Object.keys(unavailable).length > 0 ? 'warn' : 'info', message }); // inside this write: settled() covers it
  }
}

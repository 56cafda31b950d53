// What a training run tells the world while it trains: the trainer's reports become the
// run's progress (at most once a second), events and log lines, and the files it writes
// (checkpoints, validation images, LoRA files) become published artifacts. Writes go out
// one after another, in report order; settled() waits for all of them, so a run is never
// marked succeeded before its LoRA can be downloaded (a write never queues another: it
// would land after the run's end).
import path from 'node:path';
import type { FastifyBaseLogger } from 'fastify';
import type { Database } from '../db/database.js';
import type { Progress } from '../engine/index.js';
import { createTrainingRunArtifactsRepository, type ArtifactKind } from '../repositories/training-run-artifacts.js';
import { createTrainingRunEventsRepository } from '../repositories/training-run-events.js';
import { createTrainingRunsRepository } from '../repositories/training-runs.js';
import type { RunEventsBus } from '../services/run-events-bus.js';
import { artifactUrl } from '../services/training-run-artifacts.js';
import type { RunFileStore } from '../storage/run-file-store.js';

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
  /** Server paths in the trainer's messages, and what a tenant sees instead (the model's id, a name in the run). */
  redactions: Array<[path: string, shownAs: string]>;
}

const STEP_PHASES = new Set(['training', 'validating', 'saving', 'done', 'cancelled']);
const round = (value: number, digits: number) => Number(value.toPrecision(digits));

/** The public progress of a run, from one trainer report. */
export function runProgress(report: Progress, totalSteps: number): Record<string, unknown> {
  // Before training, a report's step counts something else (images cached); after, optimizer steps.
  const steps = STEP_PHASES.has(report.phase) ? report.step : 0;
  const metric = (name: string) => (Number.isFinite(report.metrics[name]) ? report.metrics[name] : null);
  return {
    phase: report.phase,
    step: steps,
    total_steps: totalSteps,
    percent: totalSteps > 0 ? Math.round((1000 * steps) / totalSteps) / 10 : 0,
    loss: metric('loss'),
    loss_avg: metric('loss_avg'),
    lr: metric('lr'),
    images_per_s: metric('images_per_s'),
    eta_seconds: metric('eta_s'),
    // Prior preservation's loss split (null without it): on the subject's images, on the class images.
    loss_instance: metric('loss_instance'),
    loss_prior: metric('loss_prior'),
  };
}

/** The kind of a file the trainer wrote, from its place in the work folder. */
function artifactKind(name: string): ArtifactKind {
  if (name.startsWith('checkpoints/')) return 'checkpoint';
  if (name.startsWith('samples/')) return 'validation_image';
  return name.endsWith('_peft.safetensors') ? 'lora_peft' : 'lora';
}

export class TrainingRunReporter {
  readonly #options: TrainingRunReporterOptions;
  #queue: Promise<void> = Promise.resolve();
  #lastProgressAt = 0;
  #phase = '';
  #status: 'starting' | 'running' = 'starting';
  #lastTraining: Record<string, unknown> | undefined;

  constructor(options: TrainingRunReporterOptions) {
    this.#options = options;
  }

  /** A log line of the run (also what GET /logs shows). */
  log(message: string, level: 'info' | 'warn' | 'error' = 'info'): void {
    this.#enqueue(() => this.#event('log', { level, message }));
  }

  /** One trainer report (called on the event loop, in order). */
  report(report: Progress): void {
    const { db, runId, owner, totalSteps } = this.#options;
    const phaseChanged = report.phase !== this.#phase;
    if (phaseChanged) {
      this.#phase = report.phase;
      if (report.phase !== 'training') this.log(report.message === '' ? report.phase : `${report.phase}: ${this.#redact(report.message)}`);
    }
    const now = Date.now();
    if (phaseChanged || now - this.#lastProgressAt >= PROGRESS_INTERVAL_MS) {
      this.#lastProgressAt = now;
      if (report.phase === 'training') this.#status = 'running';
      let progress = runProgress(report, totalSteps);
      // After training (validating, saving, done), the last step's loss and rate still describe the run.
      if (report.phase === 'training') this.#lastTraining = progress;
      else if (this.#lastTraining !== undefined) progress = { ...this.#lastTraining, phase: progress.phase, step: progress.step, percent: progress.percent, eta_seconds: null };
      const status = this.#status;
      this.#enqueue(async () => {
        await createTrainingRunsRepository(db).progress(runId, owner, progress, status);
        await this.#event('progress', progress);
      });
      if (report.phase === 'training' && Number.isFinite(report.metrics.loss)) {
        const m = report.metrics;
        this.log(`step ${report.step}/${totalSteps} loss ${round(m.loss!, 4)} lr ${round(m.lr ?? 0, 3)}` +
          (Number.isFinite(m.loss_prior) ? ` (instance ${round(m.loss_instance!, 4)}, prior ${round(m.loss_prior!, 4)})` : '') +
          (Number.isFinite(m.images_per_s) ? ` ${round(m.images_per_s!, 3)} images/s` : ''));
      }
    }
    if (report.phase === 'validating' && (report.files.length > 0 || Number.isFinite(report.metrics.validation_loss))) {
      this.#enqueue(() => this.#validation(report));
    } else if (report.files.length > 0) {
      this.#enqueue(() => this.#published(report));
    }
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
    await createTrainingRunEventsRepository(this.#options.db).append(this.#options.runId, type, data);
    this.#options.bus.notify(this.#options.runId);
  }

  /** Publishes the files of a report and records them as artifacts; their public descriptions. */
  async #publish(report: Progress): Promise<Array<Record<string, unknown>>> {
    const { db, files, runId, workDir } = this.#options;
    const published = [];
    for (const file of report.files) {
      const name = path.relative(workDir, file).split(path.sep).join('/');
      const info = await files.publish(runId, name);
      const artifact = { run_id: runId, name, kind: artifactKind(name), byte_size: info.byteSize, sha256: info.sha256, step: report.step };
      await createTrainingRunArtifactsRepository(db).record(artifact);
      published.push({ name, kind: artifact.kind, byte_size: info.byteSize, sha256: info.sha256, step: report.step, content_url: artifactUrl(runId, name) });
    }
    return published;
  }

  async #published(report: Progress): Promise<void> {
    for (const artifact of await this.#publish(report)) {
      if (artifact.kind === 'checkpoint') {
        await this.#event('checkpoint', { step: report.step, artifact });
        await this.#event('log', { level: 'info', message: `checkpoint written at step ${report.step}: ${String(artifact.name)}` });
      } else {
        await this.#event('artifact', artifact);
        await this.#event('log', { level: 'info', message: `${String(artifact.kind)} written: ${String(artifact.name)} (${String(artifact.byte_size)} bytes)` });
      }
    }
  }

  async #validation(report: Progress): Promise<void> {
    const images = await this.#publish(report);
    const loss = report.metrics.validation_loss;
    await this.#event('validation', { step: report.step, validation_loss: Number.isFinite(loss) ? loss : null, images });
    const message = `validation at step ${report.step}` + (Number.isFinite(loss) ? `: loss ${round(loss!, 4)}` : '') +
      (images.length > 0 ? `, ${images.length} image(s)` : '');
    await this.#event('log', { level: 'info', message }); // inside this write: settled() covers it
  }
}

// A training run's events: pages of them, its log as text, and following them live
// (the route writes them as Server-Sent Events). Following polls the database every
// EVENT_POLL_MS, and wakes at once when a run of this process records something.
import type { Database } from '../db/database.js';
import { notFound } from '../errors.js';
import { createTrainingRunEventsRepository, type TrainingRunEventRow, type TrainingRunEventType } from '../repositories/training-run-events.js';
import { createTrainingRunsRepository, type TrainingRunStatus } from '../repositories/training-runs.js';
import type { TrainingRunEvent } from '../schemas/training-run-events.js';
import type { RunEventsBus } from './run-events-bus.js';

export const EVENT_POLL_MS = 500;
const FOLLOW_BATCH = 500;
const LOG_BATCH = 5000;
const FINISHED = new Set<TrainingRunStatus>(['succeeded', 'failed', 'canceled']);

export function toEvent(row: TrainingRunEventRow): TrainingRunEvent {
  return { id: row.id, type: row.type, data: row.data, created_at: row.created_at.toISOString() };
}

function logLine(row: TrainingRunEventRow): string {
  if (row.type === 'log') return `${String(row.data.level).padEnd(5)} ${String(row.data.message)}`;
  const error = row.data.error as { code: string; message: string } | null;
  return `${(error === null ? 'info' : 'error').padEnd(5)} status ${String(row.data.status)}` +
    (row.data.status === 'starting' ? ` (attempt ${String(row.data.attempt)})` : '') +
    (error === null ? '' : `: ${error.code}: ${error.message}`);
}

export class TrainingRunEventsService {
  constructor(
    private readonly db: Database,
    private readonly bus: RunEventsBus,
    private readonly pollMs = EVENT_POLL_MS,
  ) {}

  async page(tenantId: string, runId: string, after: string, limit: number, type?: TrainingRunEventType) {
    await this.#status(tenantId, runId);
    const rows = await createTrainingRunEventsRepository(this.db).list(runId, after, limit + 1, type === undefined ? undefined : [type]);
    return { data: rows.slice(0, limit).map(toEvent), has_more: rows.length > limit };
  }

  /** The run's log lines and status changes, one per line: time, level, message. */
  async log(tenantId: string, runId: string): Promise<string> {
    await this.#status(tenantId, runId);
    const events = createTrainingRunEventsRepository(this.db);
    const lines: string[] = [];
    for (let after = '0'; ;) {
      const rows = await events.list(runId, after, LOG_BATCH, ['log', 'status']);
      for (const row of rows) lines.push(`${row.created_at.toISOString()} ${logLine(row)}\n`);
      if (rows.length < LOG_BATCH) return lines.join('');
      after = rows.at(-1)!.id;
    }
  }

  /** Whether the run has finished and has no event after `after`: a stream resumed there has nothing left to say. */
  async isDrained(tenantId: string, runId: string, after: string): Promise<boolean> {
    const status = await this.#status(tenantId, runId);
    return FINISHED.has(status) && (await createTrainingRunEventsRepository(this.db).list(runId, after, 1)).length === 0;
  }

  /**
   * The run's events after `after` as they are recorded, ending once the run has finished
   * and every event is out, or when `signal` aborts (the client went away).
   */
  async *follow(tenantId: string, runId: string, after: string, signal: AbortSignal): AsyncGenerator<TrainingRunEvent> {
    const events = createTrainingRunEventsRepository(this.db);
    let last = after;
    while (!signal.aborted) {
      // Read the status first: events recorded before a finish are then all in the next read.
      const finished = FINISHED.has(await this.#status(tenantId, runId));
      for (;;) {
        const rows = await events.list(runId, last, FOLLOW_BATCH);
        for (const row of rows) {
          last = row.id;
          yield toEvent(row);
        }
        if (rows.length < FOLLOW_BATCH) break;
      }
      if (finished) return;
      await this.bus.wait(runId, this.pollMs, signal);
    }
  }

  async #status(tenantId: string, runId: string): Promise<TrainingRunStatus> {
    const status = await createTrainingRunsRepository(this.db).statusOf(tenantId, runId);
    if (status === null) throw notFound('Training run', runId);
    return status;
  }
}

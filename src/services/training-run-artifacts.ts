// The files a training run published: listing them, and opening one for download (a full
// run's diffusers folder as a tar made as it is read).
import type { Database } from '../db/database.js';
import { notFound } from '../errors.js';
import { createTrainingRunArtifactsRepository, type TrainingRunArtifactRow } from '../repositories/training-run-artifacts.js';
import { createTrainingRunsRepository } from '../repositories/training-runs.js';
import type { TrainingRunArtifact } from '../schemas/training-run-artifacts.js';
import type { ByteRange, RunFileStore } from '../storage/run-file-store.js';
import { folderOfTar, tarPrefix } from './models.js';

/** Where an artifact downloads from; its name may hold a '/', encoded into the one path segment. */
export function artifactUrl(runId: string, name: string): string {
  return `/v1/training-runs/${runId}/artifacts/${encodeURIComponent(name)}`;
}

export function toArtifact(row: TrainingRunArtifactRow): TrainingRunArtifact {
  return {
    name: row.name,
    kind: row.kind,
    byte_size: Number(row.byte_size),
    sha256: row.sha256,
    step: row.step,
    content_url: artifactUrl(row.run_id, row.name),
    created_at: row.created_at.toISOString(),
  };
}

export class TrainingRunArtifactsService {
  constructor(
    private readonly db: Database,
    private readonly files: RunFileStore,
  ) {}

  async list(tenantId: string, runId: string): Promise<TrainingRunArtifact[]> {
    await this.#requireRun(tenantId, runId);
    return (await createTrainingRunArtifactsRepository(this.db).list(runId)).map(toArtifact);
  }

  /** The artifact's row (404 when the run or the file is unknown). */
  async get(tenantId: string, runId: string, name: string): Promise<TrainingRunArtifactRow> {
    await this.#requireRun(tenantId, runId);
    const row = await createTrainingRunArtifactsRepository(this.db).get(runId, name);
    if (row === null) throw notFound('Artifact', name);
    return row;
  }

  /** A stream of the artifact's bytes, or of `range` of them. */
  async content(row: TrainingRunArtifactRow, range?: ByteRange) {
    const folder = folderOfTar(row.name);
    const stream = folder !== undefined
      ? await this.files.readTar(row.run_id, folder, tarPrefix(row.run_id, folder), Number(row.byte_size), range)
      : await this.files.read(row.run_id, row.name, range);
    if (stream === null) throw new Error(`artifact ${row.name} of training run ${row.run_id} is missing from the run file store, or changed since it was published`);
    return stream;
  }

  async #requireRun(tenantId: string, runId: string): Promise<void> {
    if ((await createTrainingRunsRepository(this.db).get(tenantId, runId)) === null) throw notFound('Training run', runId);
  }
}

// Dataset import use cases: receive an archive (stored to disk while it arrives, then
// queued), read, list, follow, cancel. The reading happens in
// src/jobs/dataset-import-worker.ts; this file tells the worker when an import was queued
// or asked to stop, so that this process reacts at once.
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Database } from '../db/database.js';
import { idPattern, newId } from '../db/ids.js';
import { notFound, ProblemError } from '../errors.js';
import { createDatasetImportsRepository, FINISHED_IMPORT_STATUSES, type DatasetImportRow } from '../repositories/dataset-imports.js';
import { createImagesRepository } from '../repositories/images.js';
import { DATASET_IMPORT_ID_PREFIX, MAX_LISTED_REFUSALS, type DatasetImport } from '../schemas/dataset-imports.js';
import { ArchiveTooLargeError, type ImportArchives } from '../storage/import-archives.js';
import type { ArchiveFormat } from './archive-entries.js';
import { sniffFormat } from './file-sniffing.js';
import { decodeCursor, toPage } from './pagination.js';

export type { ImportArchives } from '../storage/import-archives.js';

const IMPORT_ID = new RegExp(idPattern(DATASET_IMPORT_ID_PREFIX));
/** How often a follower looks at the import's row (the worker checkpoints about once a second). */
const FOLLOW_POLL_MS = 250;
/** A stored archive without an unfinished import is swept once it is older than this. */
const SWEEP_AFTER_MS = 3_600_000;

/** The worker's side of changes made through the API. */
export interface ImportEvents {
  created(id: string): void;
  cancelRequested(id: string): void;
}

const iso = (date: Date | null): string | null => (date === null ? null : new Date(date).toISOString());

export function toDatasetImport(row: DatasetImportRow): DatasetImport {
  return {
    id: row.id,
    object: 'dataset_import',
    dataset_id: row.dataset_id,
    status: row.status,
    filename: row.filename,
    format: row.format,
    bytes: Number(row.bytes),
    sha256: row.sha256,
    progress: {
      bytes_read: Number(row.bytes_read),
      entries_read: row.entries_read,
      images_stored: row.images_stored,
      duplicates: row.duplicates,
      captions_attached: row.captions_attached,
      refused: row.refused,
    },
    refusals: row.refusals.slice(0, MAX_LISTED_REFUSALS),
    refusals_truncated: row.refused > MAX_LISTED_REFUSALS,
    caption_conflicts: row.caption_conflicts,
    error: row.error_code === null ? null : { code: row.error_code, message: row.error_message ?? '' },
    created_at: new Date(row.created_at).toISOString(),
    started_at: iso(row.started_at),
    completed_at: iso(row.completed_at),
  };
}

/** The archive format the first bytes show, or undefined when they are none we read. */
function archiveFormat(head: Buffer): ArchiveFormat | undefined {
  const sniffed = sniffFormat(head);
  if (sniffed === 'zip') return 'zip';
  if (sniffed === 'tar') return 'tar';
  if (sniffed === 'gzip') return 'tar.gz';
  return undefined;
}

export interface ReceivedArchive {
  source: Readable;
  filename: string | null;
  /** Whether the source was cut at the limit on its way here (a multipart part). */
  truncated?: () => boolean;
}

export function createDatasetImportsService(db: Database, archives: ImportArchives, events: ImportEvents, maxBytes: number) {
  const tooLarge = (): ProblemError => new ProblemError({
    status: 413,
    type: 'archive-too-large',
    title: 'Archive too large',
    detail: `The archive is larger than ${maxBytes} bytes (UPLOAD_MAX_REQUEST_BYTES); nothing was kept.`,
    headers: { connection: 'close' },
  });

  return {
    async datasetExists(tenantId: string, datasetId: string): Promise<boolean> {
      return createImagesRepository(db).datasetExists(tenantId, datasetId);
    },

    /** Refuses a body whose declared length is over the limit, before reading it. */
    checkDeclaredLength(contentLength: number | undefined): void {
      if (contentLength !== undefined && contentLength > maxBytes) throw tooLarge();
    },

    /**
     * Stores the archive and queues its import. Refusals: 413 over the limit, 400 empty,
     * 415 not a zip, tar or gzip (sniffed), 404 the dataset went meanwhile; nothing is kept.
     */
    async create(tenantId: string, datasetId: string, body: ReceivedArchive): Promise<DatasetImport> {
      const id = newId(DATASET_IMPORT_ID_PREFIX);
      let stored;
      try {
        stored = await archives.write(id, body.source, maxBytes);
      } catch (error) {
        if (error instanceof ArchiveTooLargeError) throw tooLarge();
        throw error;
      }
      try {
        if (body.truncated?.() === true) throw tooLarge();
        if (stored.bytes === 0) {
          throw new ProblemError({ status: 400, type: 'empty-body', title: 'Empty archive', detail: 'The request body is empty; send the archive as the body (or as the multipart part "file").' });
        }
        const format = archiveFormat(stored.head);
        if (format === undefined) {
          const sniffed = sniffFormat(stored.head);
          throw new ProblemError({
            status: 415,
            type: 'unsupported-archive',
            title: 'Not a zip, tar or tar.gz archive',
            detail: `The body is ${sniffed === 'unknown' ? 'not a recognised archive' : `a ${sniffed.toUpperCase()} file`}; send a zip, tar or gzip-compressed tar (detected from its bytes, not its name or Content-Type).`,
          });
        }
        const row = await createDatasetImportsRepository(db).insert(tenantId, {
          id, datasetId, filename: body.filename, format, bytes: stored.bytes, sha256: stored.sha256,
        });
        if (row === null) throw notFound('dataset', datasetId);
        events.created(row.id);
        return toDatasetImport(row);
      } catch (error) {
        await archives.remove(id);
        throw error;
      }
    },

    async get(tenantId: string, id: string): Promise<DatasetImport> {
      const row = await createDatasetImportsRepository(db).findById(tenantId, id);
      if (row === null) throw notFound('dataset import', id);
      return toDatasetImport(row);
    },

    async list(tenantId: string, datasetId: string, limit: number, cursor?: string) {
      const before = cursor === undefined ? undefined : decodeCursor(cursor, IMPORT_ID);
      if (!(await createImagesRepository(db).datasetExists(tenantId, datasetId))) throw notFound('dataset', datasetId);
      const rows = await createDatasetImportsRepository(db).listForDataset(tenantId, datasetId, limit + 1, before);
      return toPage(rows, limit, toDatasetImport);
    },

    /**
     * Stops the import: a queued one is canceled at once, a running one within moments;
     * images already stored stay. 404 unknown import, 409 when it has already finished.
     */
    async cancel(tenantId: string, id: string): Promise<DatasetImport> {
      const repo = createDatasetImportsRepository(db);
      const row = await repo.requestCancel(tenantId, id);
      if (row === null) {
        const existing = await repo.findById(tenantId, id);
        if (existing === null) throw notFound('dataset import', id);
        throw new ProblemError({
          status: 409,
          type: 'dataset-import-finished',
          title: 'Dataset import already finished',
          detail: `Dataset import ${id} has finished (status ${existing.status}); only a queued or running import can be canceled.`,
        });
      }
      if (row.status === 'canceled') await archives.remove(id);
      else events.cancelRequested(id);
      return toDatasetImport(row);
    },

    /**
     * The import each time it changes, until it has ended (its last state is yielded
     * last) or `signal` is aborted. 404 unknown import.
     */
    async * follow(tenantId: string, id: string, signal: AbortSignal): AsyncGenerator<DatasetImport> {
      const repo = createDatasetImportsRepository(db);
      let last = '';
      while (!signal.aborted) {
        const row = await repo.findById(tenantId, id);
        if (row === null) throw notFound('dataset import', id);
        const current = toDatasetImport(row);
        const text = JSON.stringify(current);
        if (text !== last) {
          last = text;
          yield current;
        }
        if (FINISHED_IMPORT_STATUSES.includes(row.status)) return;
        await sleep(FOLLOW_POLL_MS, undefined, { signal }).catch(() => undefined);
      }
    },

    /**
     * Deletes stored archives whose import has ended or is gone (a process died between the
     * two, or the dataset was deleted while it was queued). Recent ones stay: another replica
     * may be about to insert the row of the archive it has just stored.
     */
    async sweepArchives(): Promise<number> {
      const ids = await archives.ids();
      const unfinished = await createDatasetImportsRepository(db).unfinishedIds();
      const cutoff = Date.now() - SWEEP_AFTER_MS;
      let removed = 0;
      for (const id of ids) {
        const storedAt = await archives.storedAt(id);
        if (unfinished.has(id) || storedAt === null || storedAt.getTime() > cutoff) continue;
        await archives.remove(id);
        removed++;
      }
      return removed;
    },
  };
}
export type DatasetImportsService = ReturnType<typeof createDatasetImportsService>;

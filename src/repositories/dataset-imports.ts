// SQL for dataset imports. API reads are scoped by tenant_id; the worker's statements by
// the import's lease (lease_owner), so a worker that lost its lease changes nothing.
import type { Queryable } from '../db/database.js';
import { claimNextJobLike, finishJobLike, releaseJobLike, requestCancelJobLike, renewLease, type LeasedJobColumns } from './lease-sql.js';

export type ImportStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'canceled';
export const FINISHED_IMPORT_STATUSES: readonly ImportStatus[] = ['succeeded', 'failed', 'canceled'];

export interface Refusal {
  entry: string;
  code: string;
  detail: string;
}

/** The counts a checkpoint writes. */
export interface ImportCheckpoint {
  bytes_read: number;
  entries_read: number;
  images_stored: number;
  duplicates: number;
  captions_attached: number;
  refused: number;
  caption_conflicts: number;
  refusals: Refusal[];
}

export interface DatasetImportRow extends LeasedJobColumns, ImportCheckpoint {
  id: string;
  tenant_id: string;
  dataset_id: string;
  status: ImportStatus;
  filename: string | null;
  format: 'zip' | 'tar' | 'tar.gz';
  bytes: number;
  sha256: string;
  claims: number;
  created_at: Date;
  started_at: Date | null;
  completed_at: Date | null;
}

export interface NewDatasetImport {
  id: string;
  datasetId: string;
  filename: string | null;
  format: DatasetImportRow['format'];
  bytes: number;
  sha256: string;
}

const COLUMNS =
  'id, tenant_id, dataset_id, status, filename, format, bytes::float8 AS bytes, sha256, bytes_read::float8 AS bytes_read, entries_read, ' +
  'images_stored, duplicates, captions_attached, refused, caption_conflicts, refusals, error_code, error_message, ' +
  'cancel_requested_at, lease_owner, lease_expires_at, heartbeat_at, claims, created_at, started_at, completed_at';

export function createDatasetImportsRepository(db: Queryable) {
  return {
    // ---------------------------------------------------------------- API side

    /** Inserts a queued import; null when the tenant has no such dataset (any more). */
    async insert(tenantId: string, input: NewDatasetImport): Promise<DatasetImportRow | null> {
      const { rows } = await db.query<DatasetImportRow>(
        `INSERT INTO dataset_imports (id, tenant_id, dataset_id, filename, format, bytes, sha256)
         SELECT $1, tenant_id, id, $3, $4, $5, $6 FROM datasets WHERE tenant_id = $2 AND id = $7
         RETURNING ${COLUMNS}`,
        [input.id, tenantId, input.filename, input.format, input.bytes, input.sha256, input.datasetId],
      );
      return rows[0] ?? null;
    },

    async findById(tenantId: string, id: string): Promise<DatasetImportRow | null> {
      const { rows } = await db.query<DatasetImportRow>(`SELECT ${COLUMNS} FROM dataset_imports WHERE tenant_id = $1 AND id = $2`, [tenantId, id]);
      return rows[0] ?? null;
    },

    /** Up to `limit` imports of the dataset, newest first, older than the id `before` when given. */
    async listForDataset(tenantId: string, datasetId: string, limit: number, before?: string): Promise<DatasetImportRow[]> {
      const { rows } = await db.query<DatasetImportRow>(
        `SELECT ${COLUMNS} FROM dataset_imports
          WHERE tenant_id = $1 AND dataset_id = $2 AND ($3::text IS NULL OR id < $3) ORDER BY id DESC LIMIT $4`,
        [tenantId, datasetId, before ?? null, limit],
      );
      return rows;
    },

    /** Asks the import to stop: a queued one is canceled at once, a running one is marked for its worker. Null when the tenant has no such unfinished import. */
    requestCancel(tenantId: string, id: string): Promise<DatasetImportRow | null> {
      return requestCancelJobLike<DatasetImportRow>(db, 'dataset_imports', 'completed_at', COLUMNS, tenantId, id);
    },

    /** Ids of the imports not finished (their archives must stay). */
    async unfinishedIds(): Promise<Set<string>> {
      const { rows } = await db.query<{ id: string }>("SELECT id FROM dataset_imports WHERE status IN ('queued', 'running')");
      return new Set(rows.map((r) => r.id));
    },

    // ---------------------------------------------------------------- worker side

    /**
     * Takes the oldest import that is queued, or running under an expired lease (its worker
     * died), for `owner` until the lease ends. SKIP LOCKED lets replicas claim side by side.
     */
    claimNext(owner: string, leaseMs: number): Promise<DatasetImportRow | null> {
      return claimNextJobLike<DatasetImportRow>(db, 'dataset_imports', COLUMNS, owner, leaseMs);
    },

    /** Extends the lease; whether cancel was asked, or null when the lease was lost (or the import deleted). */
    heartbeat(id: string, owner: string, leaseMs: number): Promise<{ cancelRequested: boolean } | null> {
      return renewLease(db, 'dataset_imports', ['running'], id, owner, leaseMs);
    },

    /** Writes the progress; false when the lease was lost (the caller's transaction must then roll back). */
    async checkpoint(id: string, owner: string, progress: ImportCheckpoint): Promise<boolean> {
      const { rowCount } = await db.query(
        `UPDATE dataset_imports
            SET bytes_read = $3, entries_read = $4, images_stored = $5, duplicates = $6, captions_attached = $7,
                refused = $8, caption_conflicts = $9, refusals = $10
          WHERE id = $1 AND lease_owner = $2 AND status = 'running'`,
        [
          id, owner, progress.bytes_read, progress.entries_read, progress.images_stored, progress.duplicates,
          progress.captions_attached, progress.refused, progress.caption_conflicts, JSON.stringify(progress.refusals),
        ],
      );
      return rowCount > 0;
    },

    /** Ends the import with `status`; false when the lease was lost. */
    finish(id: string, owner: string, status: Extract<ImportStatus, 'succeeded' | 'failed' | 'canceled'>, error?: { code: string; message: string }): Promise<boolean> {
      return finishJobLike(db, 'dataset_imports', 'completed_at', id, owner, status, error);
    },

    /** Gives the import back to the queue (this process is stopping); any worker may take it at once. */
    release(id: string, owner: string): Promise<void> {
      return releaseJobLike(db, 'dataset_imports', id, owner);
    },
  };
}
export type DatasetImportsRepository = ReturnType<typeof createDatasetImportsRepository>;

// SQL for images and for the blob-release queue. Every image statement is scoped by
// tenant_id: another tenant's image or dataset reads as absent.
import type { Queryable } from '../db/database.js';
import { newId } from '../db/ids.js';
import type { ImageFormat } from '../services/file-sniffing.js';

export interface NewImage {
  sha256: string;
  byte_size: number;
  format: ImageFormat;
  width: number;
  height: number;
  original_filename: string | null;
  caption: string | null;
  caption_source: string | null;
}

export interface ImageRow extends NewImage {
  id: string;
  tenant_id: string;
  dataset_id: string;
  created_at: Date;
}

const COLUMNS =
  'id, tenant_id, dataset_id, sha256, byte_size, format, width, height, original_filename, caption, caption_source, created_at';

/**
 * Tables whose rows point at blobs, as [table, column]. A blob is unlinked only when none
 * of them references it; whoever stores more blobs in the same store adds its table here.
 */
export const BLOB_REFERENCES: ReadonlyArray<readonly [table: string, column: string]> = [
  ['images', 'sha256'],
  // A training run's snapshot: its images may be deleted from the dataset while it waits or trains.
  ['training_run_images', 'sha256'],
  // LoRA files (uploaded or registered by a run) and generated images (migration 009).
  ['loras', 'sha256'],
  ['generation_images', 'sha256'],
  ['class_images', 'sha256'],
];

/** Key of the transaction-scoped advisory lock that serialises writers and the collector on one blob. */
const BLOB_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtextextended('blob:' || $1, 0))";

export function createImagesRepository(db: Queryable) {
  return {
    /**
     * Locks the dataset row for the rest of the transaction (uploads to one dataset queue
     * here, so the image cap cannot be overrun by two requests at once) and returns its
     * image count; null when the tenant has no such dataset.
     */
    async lockDataset(tenantId: string, datasetId: string): Promise<number | null> {
      const { rows } = await db.query<{ image_count: number }>(
        'SELECT image_count FROM datasets WHERE tenant_id = $1 AND id = $2 FOR UPDATE',
        [tenantId, datasetId],
      );
      return rows[0]?.image_count ?? null;
    },

    async datasetExists(tenantId: string, datasetId: string): Promise<boolean> {
      const { rows } = await db.query('SELECT 1 FROM datasets WHERE tenant_id = $1 AND id = $2', [tenantId, datasetId]);
      return rows.length > 0;
    },

    /** The dataset's images whose bytes hash to one of `sha256s`. */
    async findBySha256s(tenantId: string, datasetId: string, sha256s: string[]): Promise<ImageRow[]> {
      if (sha256s.length === 0) return [];
      const { rows } = await db.query<ImageRow>(
        `SELECT ${COLUMNS} FROM images WHERE tenant_id = $1 AND dataset_id = $2 AND sha256 = ANY($3::text[])`,
        [tenantId, datasetId, sha256s],
      );
      return rows;
    },

    async insert(tenantId: string, datasetId: string, image: NewImage): Promise<ImageRow> {
      const { rows } = await db.query<ImageRow>(
        `INSERT INTO images (id, tenant_id, dataset_id, sha256, byte_size, format, width, height, original_filename, caption, caption_source)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING ${COLUMNS}`,
        [
          newId('img'), tenantId, datasetId, image.sha256, image.byte_size, image.format, image.width, image.height,
          image.original_filename, image.caption, image.caption_source,
        ],
      );
      return rows[0]!;
    },

    async findById(tenantId: string, id: string): Promise<ImageRow | null> {
      const { rows } = await db.query<ImageRow>(`SELECT ${COLUMNS} FROM images WHERE tenant_id = $1 AND id = $2`, [tenantId, id]);
      return rows[0] ?? null;
    },

    /** Up to `limit` images of the dataset, newest first, strictly older than the id `before` when given. */
    async listNewestFirst(tenantId: string, datasetId: string, limit: number, before?: string): Promise<ImageRow[]> {
      const { rows } = before === undefined
        ? await db.query<ImageRow>(
          `SELECT ${COLUMNS} FROM images WHERE tenant_id = $1 AND dataset_id = $2 ORDER BY id DESC LIMIT $3`,
          [tenantId, datasetId, limit],
        )
        : await db.query<ImageRow>(
          `SELECT ${COLUMNS} FROM images WHERE tenant_id = $1 AND dataset_id = $2 AND id < $3 ORDER BY id DESC LIMIT $4`,
          [tenantId, datasetId, before, limit],
        );
      return rows;
    },

    /** Deletes the image (a trigger queues its blob for release); the deleted row, or null. */
    async delete(tenantId: string, id: string): Promise<ImageRow | null> {
      const { rows } = await db.query<ImageRow>(`DELETE FROM images WHERE tenant_id = $1 AND id = $2 RETURNING ${COLUMNS}`, [
        tenantId,
        id,
      ]);
      return rows[0] ?? null;
    },

    /** Holds the blob's advisory lock until the transaction ends. */
    async lockBlob(sha256: string): Promise<void> {
      await db.query(BLOB_LOCK_SQL, [sha256]);
    },

    /** Whether any row of BLOB_REFERENCES still points at the blob. */
    async isBlobReferenced(sha256: string): Promise<boolean> {
      for (const [table, column] of BLOB_REFERENCES) {
        const { rows } = await db.query(`SELECT 1 FROM ${table} WHERE ${column} = $1 LIMIT 1`, [sha256]);
        if (rows.length > 0) return true;
      }
      return false;
    },

    /** Up to `limit` queued releases, oldest first. */
    async pendingReleases(limit: number): Promise<string[]> {
      const { rows } = await db.query<{ sha256: string }>(
        'SELECT sha256 FROM blob_releases ORDER BY released_at, sha256 LIMIT $1',
        [limit],
      );
      return rows.map((row) => row.sha256);
    },

    async forgetRelease(sha256: string): Promise<void> {
      await db.query('DELETE FROM blob_releases WHERE sha256 = $1', [sha256]);
    },
  };
}
export type ImagesRepository = ReturnType<typeof createImagesRepository>;

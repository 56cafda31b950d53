// SQL for datasets. Every statement is scoped by tenant_id: another tenant's id reads as absent.
//
// image_count is a plain column of datasets. The images owner keeps it exact: 002_images.sql
// (or the images repository, inside the same transaction as the insert/delete) adds or
// subtracts as images come and go. This file only reads it, so the datasets code never
// depends on the images table existing.
import type { Queryable } from '../db/database.js';
import { newId } from '../db/ids.js';

export interface DatasetRow {
  id: string;
  tenant_id: string;
  name: string;
  trigger_token: string;
  class_word: string;
  image_count: number;
  created_at: Date;
  updated_at: Date;
}

export interface NewDataset {
  name: string;
  trigger_token: string;
  class_word: string;
}

export type DatasetChanges = Partial<NewDataset>;

const COLUMNS = 'id, tenant_id, name, trigger_token, class_word, image_count, created_at, updated_at';
const UPDATABLE: ReadonlyArray<keyof DatasetChanges> = ['name', 'trigger_token', 'class_word'];

export function createDatasetsRepository(db: Queryable) {
  return {
    async insert(tenantId: string, dataset: NewDataset): Promise<DatasetRow> {
      const { rows } = await db.query<DatasetRow>(
        `INSERT INTO datasets (id, tenant_id, name, trigger_token, class_word)
         VALUES ($1, $2, $3, $4, $5) RETURNING ${COLUMNS}`,
        [newId('ds'), tenantId, dataset.name, dataset.trigger_token, dataset.class_word],
      );
      return rows[0]!;
    },

    async findById(tenantId: string, id: string): Promise<DatasetRow | null> {
      const { rows } = await db.query<DatasetRow>(`SELECT ${COLUMNS} FROM datasets WHERE tenant_id = $1 AND id = $2`, [
        tenantId,
        id,
      ]);
      return rows[0] ?? null;
    },

    /** Up to `limit` datasets, newest first, strictly older than the id `before` when given. */
    async listNewestFirst(tenantId: string, limit: number, before?: string): Promise<DatasetRow[]> {
      const { rows } = before === undefined
        ? await db.query<DatasetRow>(
          `SELECT ${COLUMNS} FROM datasets WHERE tenant_id = $1 ORDER BY id DESC LIMIT $2`,
          [tenantId, limit],
        )
        : await db.query<DatasetRow>(
          `SELECT ${COLUMNS} FROM datasets WHERE tenant_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3`,
          [tenantId, before, limit],
        );
      return rows;
    },

    /** Applies `changes`; null when the tenant has no such dataset. */
    async update(tenantId: string, id: string, changes: DatasetChanges): Promise<DatasetRow | null> {
      const sets: string[] = [];
      const params: unknown[] = [tenantId, id];
      for (const column of UPDATABLE) {
        const value = changes[column];
        if (value === undefined) continue;
        params.push(value);
        sets.push(`${column} = $${params.length}`);
      }
      if (sets.length === 0) return this.findById(tenantId, id);
      const { rows } = await db.query<DatasetRow>(
        `UPDATE datasets SET ${sets.join(', ')}, updated_at = now()
          WHERE tenant_id = $1 AND id = $2 RETURNING ${COLUMNS}`,
        params as string[],
      );
      return rows[0] ?? null;
    },

    /**
     * Deletes the dataset unless a training run still waits for it or trains on it (one
     * statement: a run created meanwhile holds the row FOR SHARE until it commits).
     */
    async delete(tenantId: string, id: string): Promise<'deleted' | 'not-found' | 'in-use'> {
      const { rowCount } = await db.query(
        `DELETE FROM datasets d WHERE d.tenant_id = $1 AND d.id = $2
            AND NOT EXISTS (SELECT 1 FROM training_runs r
                             WHERE r.tenant_id = d.tenant_id AND r.dataset_id = d.id AND r.status IN ('queued', 'starting', 'running'))`,
        [tenantId, id],
      );
      if (rowCount > 0) return 'deleted';
      return (await this.findById(tenantId, id)) === null ? 'not-found' : 'in-use';
    },

    /** Holds the dataset row until the transaction ends, so it cannot be deleted under a run being created; false when absent. */
    async lockShared(tenantId: string, id: string): Promise<boolean> {
      const { rows } = await db.query('SELECT 1 FROM datasets WHERE tenant_id = $1 AND id = $2 FOR SHARE', [tenantId, id]);
      return rows.length > 0;
    },
  };
}
export type DatasetsRepository = ReturnType<typeof createDatasetsRepository>;

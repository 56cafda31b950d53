// What the images feature has stored, to compare before and after a refused request.
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Database } from '../../src/db/database.js';

export interface StoredState {
  rows: Array<{ id: string, dataset_id: string, sha256: string }>;
  imageCounts: Array<{ id: string, image_count: number }>;
  blobFiles: string[];
}

/** Every file under DATA_DIR/blobs (temp files included: a refused request must leave none). */
export async function listBlobFiles(dataDir: string): Promise<string[]> {
  const root = join(dataDir, 'blobs');
  const found: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await walk(path);
      else found.push(path.slice(root.length + 1));
    }
  };
  await walk(root);
  return found.sort();
}

export async function storedState(db: Database, dataDir: string, tenantId: string): Promise<StoredState> {
  const rows = await db.query<{ id: string, dataset_id: string, sha256: string }>(
    'SELECT id, dataset_id, sha256 FROM images WHERE tenant_id = $1 ORDER BY id',
    [tenantId],
  );
  const counts = await db.query<{ id: string, image_count: number }>(
    'SELECT id, image_count FROM datasets WHERE tenant_id = $1 ORDER BY id',
    [tenantId],
  );
  return { rows: rows.rows, imageCounts: counts.rows, blobFiles: await listBlobFiles(dataDir) };
}

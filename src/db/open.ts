// Picks the connection from the configuration: Postgres when DATABASE_URL is set,
// embedded PGlite under DATA_DIR otherwise.
import path from 'node:path';
import type { Config } from '../config.js';
import type { Database } from './database.js';
import { createPgliteDatabase } from './pglite.js';
import { createPostgresDatabase } from './postgres.js';

/** Where the embedded database keeps its files inside DATA_DIR. */
export const PGLITE_SUBDIR = 'pglite';

export async function openDatabase(config: Pick<Config, 'databaseUrl' | 'databasePoolMax' | 'dataDir'>): Promise<Database> {
  if (config.databaseUrl !== undefined) {
    return createPostgresDatabase({ connectionString: config.databaseUrl, max: config.databasePoolMax });
  }
  return createPgliteDatabase(path.join(config.dataDir, PGLITE_SUBDIR));
}

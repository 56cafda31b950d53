// Applies numbered SQL files from migrations/ (001_init.sql, 002_images.sql, ...) in order.
// All of it runs in one transaction that first takes a transaction-scoped advisory lock,
// so replicas starting together queue up: the first applies, the others then find
// nothing left to do. A file whose checksum changed after it was applied is an error:
// write a new migration instead of editing an applied one.
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Database, Queryable } from './database.js';

/** Advisory lock key shared by every replica: the first 8 bytes of sha256("sdxl-lora-service:migrations"). */
export const MIGRATION_LOCK_KEY = BigInt.asIntN(
  64,
  BigInt('0x' + createHash('sha256').update('sdxl-lora-service:migrations').digest('hex').slice(0, 16)),
).toString();

const MIGRATION_FILE = /^(\d+)_([\w-]+)\.sql$/;

export interface Migration {
  version: number;
  name: string;
  sql: string;
  checksum: string;
}

export interface MigrationResult {
  /** Versions applied by this call, in order. */
  applied: number[];
  /** Highest version now in the database. */
  current: number;
}

/** Reads and orders the migration files of `dir`; rejects duplicates and stray files. */
export async function loadMigrations(dir: string): Promise<Migration[]> {
  const files = (await fs.readdir(dir)).filter((f) => f.endsWith('.sql')).sort();
  const migrations: Migration[] = [];
  for (const file of files) {
    const match = MIGRATION_FILE.exec(file);
    if (!match) throw new Error(`migration file ${file} is not named NNN_name.sql`);
    const sql = await fs.readFile(path.join(dir, file), 'utf8');
    migrations.push({
      version: Number(match[1]),
      name: match[2]!,
      sql,
      checksum: createHash('sha256').update(sql).digest('hex'),
    });
  }
  migrations.sort((a, b) => a.version - b.version);
  for (let i = 1; i < migrations.length; i++) {
    if (migrations[i]!.version === migrations[i - 1]!.version) {
      throw new Error(`two migrations share version ${migrations[i]!.version}`);
    }
  }
  return migrations;
}

async function ensureLedger(tx: Queryable): Promise<void> {
  await tx.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
  )`);
}

interface LedgerRow {
  version: number;
  name: string;
  checksum: string;
}

/** Applies every pending migration of `dir`; safe to call from several processes at once. */
export async function migrate(db: Database, dir: string): Promise<MigrationResult> {
  const migrations = await loadMigrations(dir);
  return db.transaction(async (tx) => {
    // Held until COMMIT/ROLLBACK; a second migrator blocks here, then sees our rows.
    await tx.query('SELECT pg_advisory_xact_lock($1::bigint)', [MIGRATION_LOCK_KEY]);
    await ensureLedger(tx);
    const { rows } = await tx.query<LedgerRow>('SELECT version, name, checksum FROM schema_migrations ORDER BY version');
    const done = new Map(rows.map((r) => [r.version, r]));
    const applied: number[] = [];
    for (const migration of migrations) {
      const previous = done.get(migration.version);
      if (previous) {
        if (previous.checksum !== migration.checksum) {
          throw new Error(
            `migration ${migration.version}_${migration.name} changed after it was applied; add a new migration instead`,
          );
        }
        continue;
      }
      await tx.exec(migration.sql);
      await tx.query('INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)', [
        migration.version,
        migration.name,
        migration.checksum,
      ]);
      applied.push(migration.version);
    }
    const current = Math.max(0, ...migrations.map((m) => m.version), ...rows.map((r) => r.version));
    return { applied, current };
  });
}

/** Versions in `dir` that the database has not applied yet (readiness check). */
export async function pendingMigrations(db: Queryable, migrations: readonly Migration[]): Promise<number[]> {
  const { rows: exists } = await db.query<{ present: boolean }>(
    "SELECT to_regclass('schema_migrations') IS NOT NULL AS present",
  );
  if (!exists[0]?.present) return migrations.map((m) => m.version);
  const { rows } = await db.query<{ version: number }>('SELECT version FROM schema_migrations');
  const done = new Set(rows.map((r) => r.version));
  return migrations.filter((m) => !done.has(m.version)).map((m) => m.version);
}

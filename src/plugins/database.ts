// The database connection (pg Pool or embedded PGlite), migrated on start-up when
// MIGRATE_ON_START is set, and closed when the app closes.
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
    if (fastify.config.migrateOnStart) {
      const { applied, current } = await migrate(db, migrationsDir);
      fastify.log.info({ applied, current, database: db.kind }, 'database migrated');
    }
  },
  { name: 'database', decorators: { fastify: ['config'] } },
);

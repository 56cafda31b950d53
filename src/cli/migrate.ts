// npm run migrate: applies pending migrations to DATABASE_URL (or the embedded database
// under DATA_DIR) and exits. Safe to run while replicas start: they share an advisory lock.
import { loadConfig } from '../config.js';
import { migrate } from '../db/migrator.js';
import { openDatabase } from '../db/open.js';
import { migrationsDir } from '../paths.js';

const config = loadConfig();
const db = await openDatabase(config);
try {
  const { applied, current } = await migrate(db, migrationsDir);
  console.log(
    applied.length > 0
      ? `applied migrations ${applied.join(', ')}; database at version ${current}`
      : `nothing to apply; database at version ${current}`,
  );
} finally {
  await db.close();
}

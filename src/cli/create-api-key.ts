// npm run create-api-key -- --tenant NAME: prints a new API key for the tenant (created
// when new) once; only its hash is stored. Uses DATABASE_URL, or the embedded database
// under DATA_DIR (stop the server first: PGlite has one user at a time).
import { parseArgs } from 'node:util';
import { loadConfig } from '../config.js';
import { migrate } from '../db/migrator.js';
import { openDatabase } from '../db/open.js';
import { migrationsDir } from '../paths.js';
import { issueApiKey } from '../services/api-keys.js';

const USAGE = 'usage: npm run create-api-key -- --tenant NAME';
const TENANT_NAME = /^[\w.@-]{1,100}$/;

let tenant: string | undefined;
try {
  ({ values: { tenant } } = parseArgs({ options: { tenant: { type: 'string' } }, strict: true }));
} catch (error) {
  console.error(`${(error as Error).message}\n${USAGE}`);
  process.exit(2);
}
if (tenant === undefined || !TENANT_NAME.test(tenant)) {
  console.error(`--tenant is required: 1-100 letters, digits, _ . @ or -\n${USAGE}`);
  process.exit(2);
}

const config = loadConfig();
const db = await openDatabase(config);
try {
  await migrate(db, migrationsDir);
  const issued = await issueApiKey(db, tenant);
  console.error(`API key ${issued.keyId} for tenant "${issued.tenant.name}" (${issued.tenant.id}); it is shown only now:`);
  // The key alone on stdout, so scripts can capture it: KEY=$(npm run -s create-api-key -- --tenant x)
  console.log(issued.key);
} finally {
  await db.close();
}

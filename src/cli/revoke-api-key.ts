// npm run revoke-api-key -- --key ID_OR_KEY: revokes an API key, named by its id (key_...,
// printed by create-api-key) or by the key itself. Running replicas stop accepting it at
// once (NOTIFY api_keys), at worst after API_KEY_CACHE_MS. Exit 1 when nothing matched.
import { parseArgs } from 'node:util';
import { loadConfig } from '../config.js';
import { openDatabase } from '../db/open.js';
import { revokeApiKey } from '../services/api-keys.js';

const USAGE = 'usage: npm run revoke-api-key -- --key key_... | sdxl_...';

let key: string | undefined;
try {
  ({ values: { key } } = parseArgs({ options: { key: { type: 'string' } }, strict: true }));
} catch (error) {
  console.error(`${(error as Error).message}\n${USAGE}`);
  process.exit(2);
}
if (key === undefined || key === '') {
  console.error(`--key is required\n${USAGE}`);
  process.exit(2);
}

const db = await openDatabase(loadConfig());
try {
  const revoked = await revokeApiKey(db, key);
  // Never echo a whole key back: an id is safe to print, a key only by its first characters.
  const shown = key.startsWith('key_') ? key : `${key.slice(0, 9)}...`;
  console.error(revoked ? `revoked ${shown}` : `no unrevoked API key matches ${shown}`);
  process.exitCode = revoked ? 0 : 1;
} finally {
  await db.close();
}

// Where a native build finds Node's installed headers (node_api.h) and
// node-addon-api's: shared by build-native.mjs and check-native-compile.mjs.
// `fail(message)` reports a missing one and exits.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export function findNodeHeaders(fail) {
  const candidates = [
    process.env.NODE_INCLUDE_DIR,
    path.resolve(path.dirname(process.execPath), '..', 'include', 'node'),
    '/usr/include/node',
    '/usr/local/include/node',
  ].filter(Boolean);
  const found = candidates.find((dir) => existsSync(path.join(dir, 'node_api.h')));
  if (!found) fail(`Node's headers (node_api.h) not found in ${candidates.join(', ')}; set NODE_INCLUDE_DIR`);
  return found;
}

export function findAddonApi(fail) {
  try {
    const require = createRequire(import.meta.url);
    return path.resolve(root, require('node-addon-api').include_dir.replace(/^"|"$/g, ''));
  } catch {
    fail('node-addon-api is not installed; run: npm install');
  }
}

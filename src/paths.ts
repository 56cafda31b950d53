// Locations of files shipped with the service, valid both from src/ (tsx) and dist/src/ (built).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

function findProjectRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  // Walk up to the package.json that names this service; dist/ has none of its own.
  for (;;) {
    const manifest = path.join(dir, 'package.json');
    if (fs.existsSync(manifest) && fs.existsSync(path.join(dir, 'migrations'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('cannot find the project root (package.json next to migrations/)');
    dir = parent;
  }
}

export const projectRoot = findProjectRoot();
export const migrationsDir = path.join(projectRoot, 'migrations');
export const openapiFile = path.join(projectRoot, 'openapi', 'openapi.json');
/** The built web console (npm run build:console): index.html and hashed assets/. */
export const consoleDir = path.join(projectRoot, 'dist', 'console');

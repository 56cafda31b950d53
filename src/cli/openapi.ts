// npm run openapi: writes openapi/openapi.json from the route schemas. Builds the app on
// a migrated in-memory embedded database, as it runs, without listening; test/openapi.test.ts fails when the
// committed file differs from what this generates.
import fs from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { buildApp } from '../app.js';
import { loadConfig } from '../config.js';
import { createPgliteDatabase } from '../db/pglite.js';
import { openapiFile } from '../paths.js';

/** The OpenAPI document as the committed file holds it (2-space JSON, final newline). */
export async function generateOpenApiJson(): Promise<string> {
  const db = await createPgliteDatabase();
  const app = await buildApp(loadConfig({ LOG_LEVEL: 'silent' }), { logger: false, database: db });
  try {
    await app.ready();
    return JSON.stringify(app.swagger(), null, 2) + '\n';
  } finally {
    await app.close();
    await db.close();
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  await fs.mkdir(path.dirname(openapiFile), { recursive: true });
  await fs.writeFile(openapiFile, await generateOpenApiJson());
  console.log(`wrote ${path.relative(process.cwd(), openapiFile)}`);
}

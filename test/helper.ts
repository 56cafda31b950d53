// Test support: a real Postgres per test FILE (fresh database, dropped at the end), or
// embedded PGlite, and an app built on it per test.
//
// Postgres comes from, in order: a testcontainers Postgres when a container engine
// answers within a second; TEST_DATABASE_URL; postgres://postgres@127.0.0.1:5432/postgres.
// From that server each test file creates its own database with a random name.
import { after, type TestContext } from 'node:test';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { buildApp, type App } from '../src/app.js';
import { loadConfig, type Config } from '../src/config.js';
import type { Database } from '../src/db/database.js';
import { createPgliteDatabase } from '../src/db/pglite.js';
import { issueApiKey } from '../src/services/api-keys.js';

export const DEFAULT_TEST_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/postgres';
const ENGINE_PING_TIMEOUT_MS = 1000;

// ---------------------------------------------------------------- Postgres server

/** True when a Docker-compatible engine answers /_ping quickly (never waits long). */
async function containerEngineAnswers(): Promise<boolean> {
  if (process.env.TESTCONTAINERS_DISABLED === '1') return false;
  const host = process.env.DOCKER_HOST;
  let socketPath: string | undefined;
  let url: URL | undefined;
  if (host === undefined || host === '') socketPath = '/var/run/docker.sock';
  else if (host.startsWith('unix://')) socketPath = host.slice('unix://'.length);
  else if (host.startsWith('tcp://') || host.startsWith('http://')) url = new URL(host.replace(/^tcp:/, 'http:'));
  else return false;
  if (socketPath !== undefined && !fs.existsSync(socketPath)) return false;
  return new Promise((resolve) => {
    const request = http.get(
      socketPath !== undefined
        ? { socketPath, path: '/_ping', timeout: ENGINE_PING_TIMEOUT_MS }
        : { host: url!.hostname, port: url!.port, path: '/_ping', timeout: ENGINE_PING_TIMEOUT_MS },
      (response) => {
        response.resume();
        resolve(response.statusCode === 200);
      },
    );
    request.on('timeout', () => request.destroy());
    request.on('error', () => resolve(false));
  });
}

let serverUrl: Promise<string> | undefined;
let stopContainer: (() => Promise<unknown>) | undefined;

/** URL of a Postgres server on which test databases may be created. */
export function postgresServerUrl(): Promise<string> {
  serverUrl ??= (async () => {
    if (await containerEngineAnswers()) {
      const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
      const container = await new PostgreSqlContainer('postgres:16-alpine').start();
      stopContainer = () => container.stop();
      return container.getConnectionUri();
    }
    return process.env.TEST_DATABASE_URL || DEFAULT_TEST_DATABASE_URL;
  })();
  return serverUrl;
}

async function withAdminClient<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: await postgresServerUrl() });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export interface ScratchDatabase {
  url: string;
  name: string;
  drop(): Promise<void>;
}

/** A new empty database on the test server; drop() removes it (closing leftover sessions). */
export async function createScratchDatabase(): Promise<ScratchDatabase> {
  const name = `sdxl_test_${randomBytes(6).toString('hex')}`;
  await withAdminClient((c) => c.query(`CREATE DATABASE ${name}`));
  const url = new URL(await postgresServerUrl());
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    drop: () => withAdminClient((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(() => {}),
  };
}

// ---------------------------------------------------------------- per-file resources

let fileDatabase: Promise<ScratchDatabase> | undefined;
let fileDataDir: string | undefined;
let fileEmbedded: Promise<Database> | undefined;

/** This test file's Postgres database, created on first use. */
export function fileDatabaseUrl(): Promise<string> {
  fileDatabase ??= createScratchDatabase();
  return fileDatabase.then((d) => d.url);
}

/** This test file's scratch directory (DATA_DIR of its apps). */
export function fileTempDir(): string {
  fileDataDir ??= fs.mkdtempSync(path.join(os.tmpdir(), 'sdxl-test-'));
  return fileDataDir;
}

/** This test file's embedded database, shared by its apps: PGlite takes seconds to start. */
function fileEmbeddedDatabase(): Promise<Database> {
  fileEmbedded ??= createPgliteDatabase(path.join(fileTempDir(), 'pglite'));
  return fileEmbedded;
}

// Root-level hook: runs once after every test of the importing file.
after(async () => {
  if (fileEmbedded) await (await fileEmbedded).close();
  if (fileDatabase) await (await fileDatabase).drop();
  if (stopContainer) await stopContainer();
  if (fileDataDir) fs.rmSync(fileDataDir, { recursive: true, force: true });
});

// ---------------------------------------------------------------- apps

export interface TestAppOptions {
  /** Run on embedded PGlite instead of Postgres. */
  embedded?: boolean;
  /** Environment variables on top of the test defaults (e.g. UPLOAD_MAX_FILE_BYTES). */
  env?: Record<string, string>;
}

export interface TestApp {
  app: App;
  /** A key of a tenant created for this test. */
  apiKey: string;
  tenantId: string;
  /** The app's database, for checking what is stored. */
  db: Database;
  config: Config;
  /** Authorization headers for apiKey. */
  auth: { authorization: string };
  /** A key for another new tenant (name defaults to a random one). */
  createTenantKey(name?: string): Promise<string>;
}

export function testTenantName(): string {
  return `tenant-${randomBytes(5).toString('hex')}`;
}

/** Config for tests: quiet, DATA_DIR in this file's temp dir, database as chosen. */
export async function testConfig(options: TestAppOptions = {}): Promise<Config> {
  return loadConfig({
    LOG_LEVEL: 'silent',
    DATA_DIR: fileTempDir(),
    DATABASE_URL: options.embedded ? '' : await fileDatabaseUrl(),
    ...options.env,
  });
}

/** An app on a migrated database with a fresh tenant and key; closed after the test `t`. */
export async function withTestApp(t: TestContext, options: TestAppOptions = {}): Promise<TestApp> {
  const config = await testConfig(options);
  const app = await buildApp(
    config,
    options.embedded ? { logger: false, database: await fileEmbeddedDatabase() } : { logger: false },
  );
  t.after(() => app.close());
  await app.ready();
  const createTenantKey = async (name = testTenantName()) => (await issueApiKey(app.db, name)).key;
  const issued = await issueApiKey(app.db, testTenantName());
  return {
    app,
    apiKey: issued.key,
    tenantId: issued.tenant.id,
    db: app.db,
    config,
    auth: { authorization: `Bearer ${issued.key}` },
    createTenantKey,
  };
}

/** Both database modes, for suites that must pass on each: `for (const mode of DATABASE_MODES) describe(mode.name, ...)`. */
export const DATABASE_MODES = [
  { name: 'postgres', embedded: false },
  { name: 'pglite', embedded: true },
] as const;

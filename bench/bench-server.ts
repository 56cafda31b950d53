// What the benchmarks share: the service started as a child process (bench/serve.ts) on a
// fresh DATA_DIR, stopped with SIGTERM, an autocannon load on one GET URL, and percentiles.
import autocannon from 'autocannon';
import { randomBytes } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import pg from 'pg';

/** Generous: on a busy machine tsx, PGlite and the migrations can take a minute to start. */
const READY_TIMEOUT_MS = 180_000;

/** Where to send requests, and with which tenant's key. */
export interface Endpoint {
  url: string;
  apiKey: string;
}

export interface Server extends Endpoint {
  /** "postgres" or "pglite". */
  database: string;
  child: ChildProcess;
  dataDir: string;
  /** Whether stopServer removes dataDir (it made it). */
  ownsDataDir: boolean;
}

/**
 * Starts bench/serve.ts with `env` over the current environment, on `sharedDataDir` (kept
 * when it stops) or else a new temporary DATA_DIR (removed when it stops).
 */
export async function startServer(env: Record<string, string>, dataDirPrefix = 'sdxl-bench-', sharedDataDir?: string): Promise<Server> {
  const ownsDataDir = sharedDataDir === undefined;
  const dataDir = sharedDataDir ?? (await mkdtemp(join(tmpdir(), dataDirPrefix)));
  const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'serve.ts')], {
    env: { ...process.env, LOG_LEVEL: 'warn', ...env, DATA_DIR: dataDir },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout! });
  const ready = new Promise<{ url: string; apiKey: string; database: string }>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGTERM');
      reject(new Error('the service did not start in time'));
    }, READY_TIMEOUT_MS);
    child.once('exit', (code) => reject(new Error(`the service exited with ${code}`)));
    lines.on('line', (line) => {
      if (!line.startsWith('BENCH_READY ')) return;
      clearTimeout(timer);
      resolve(JSON.parse(line.slice('BENCH_READY '.length)));
    });
  });
  try {
    return { ...(await ready), child, dataDir, ownsDataDir };
  } catch (error) {
    if (ownsDataDir) await rm(dataDir, { recursive: true, force: true });
    throw error;
  }
}

export async function stopServer(server: Server): Promise<void> {
  if (server.child.exitCode === null && server.child.signalCode === null) {
    const exited = new Promise((resolve) => server.child.once('exit', resolve));
    server.child.kill('SIGTERM');
    await exited;
  }
  if (server.ownsDataDir) await rm(server.dataDir, { recursive: true, force: true });
}

/** A fresh database on the DATABASE_URL server, dropped by the returned function. */
export async function scratchDatabase(serverUrl: string, prefix: string): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  const admin = async (sql: string) => {
    const client = new pg.Client({ connectionString: serverUrl });
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  };
  await admin(`CREATE DATABASE ${name}`);
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return { url: url.toString(), drop: () => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
}

/** The p-th percentile (nearest rank) of `values`; NaN when there are none. */
export function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

export interface Load {
  requestsPerSecond: number;
  /** Milliseconds. */
  p50: number;
  p99: number;
  max: number;
  non2xx: number;
  errors: number;
  /** Requests answered in `duration`. */
  requests: number;
}

/** autocannon GETs of `url` with `server`'s key for `duration` seconds over `connections` connections. */
export async function getLoad(server: Endpoint, url: string, connections: number, duration: number): Promise<Load> {
  const result = await autocannon({ url, connections, duration, headers: { authorization: `Bearer ${server.apiKey}` } });
  return {
    requestsPerSecond: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    max: result.latency.max,
    non2xx: result.non2xx,
    errors: result.errors,
    requests: result.requests.total,
  };
}

const CLOCK_TICKS_PER_SECOND = 100; // USER_HZ on Linux

/** CPU seconds (user + system) the processes have used so far, from /proc; undefined off Linux. */
export function cpuSeconds(pids: number[]): number | undefined {
  let ticks = 0;
  for (const pid of pids) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      return undefined;
    }
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks / CLOCK_TICKS_PER_SECOND;
}

/** The server processes of the database's open connections (the service's pool), when Postgres runs on this machine. */
export async function postgresBackendPids(databaseUrl: string): Promise<number[]> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()');
    return rows.map((row) => row.pid);
  } finally {
    await client.end();
  }
}

// Support for tests that run the real service (src/server.ts) as child processes: spawn one
// on a given database and DATA_DIR, learn its port from the "Server listening" log line,
// keep its output for failure messages, stop it (SIGTERM) or kill it (SIGKILL), and talk
// to it over HTTP. Every child started here is killed after its test (t.after) and, as a
// last resort, after the file and when this process exits, so a failing test leaves no
// service behind.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import os from 'node:os';
import { after, before, type TestContext } from 'node:test';
import { createPostgresDatabase } from '../../src/db/postgres.js';
import type { Database } from '../../src/db/database.js';
import { projectRoot } from '../../src/paths.js';
import { issueApiKey } from '../../src/services/api-keys.js';
import { createScratchDatabase, type ScratchDatabase } from '../helper.js';
import { png } from '../support/images.js';
import { filesBody } from '../support/multipart.js';

/** tsx compiles the service on start and the native addon loads; a busy 2-core machine needs a while. */
export const START_TIMEOUT_MS = 60_000;
/** SIGTERM checkpoints a running training run at its next step before the process exits. */
export const STOP_TIMEOUT_MS = 30_000;

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------- child processes

export interface ServiceOptions {
  /** A label for failure messages ("first", "B", ...). */
  name: string;
  databaseUrl: string;
  dataDir: string;
  /** More environment variables (TRAINING_LEASE_MS, TRAINING_SLOTS, ...) over the defaults below. */
  env?: Record<string, string>;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface HttpResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** The body as UTF-8 text. */
  body: string;
  /** The body's bytes. */
  bytes: Buffer;
  json<T = any>(): T;
}

export interface RequestOptions {
  headers?: Record<string, string>;
  /** Sent as application/json. */
  json?: unknown;
  /** Sent as is (set the content-type in headers). */
  body?: Buffer | string;
}

const children = new Set<ChildProcess>();

function killEverything(): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

// The file's last resort (a test that threw before its own t.after was registered), and the
// runner's: a child must never outlive the test process.
after(killEverything);
process.once('exit', killEverything);

export class ServiceProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly port: number;
  readonly exited: Promise<Exit>;
  readonly #output: string[];

  constructor(name: string, child: ChildProcess, port: number, exited: Promise<Exit>, output: string[]) {
    this.name = name;
    this.child = child;
    this.port = port;
    this.exited = exited;
    this.#output = output;
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Everything the process wrote to stdout and stderr so far. */
  output(): string {
    return this.#output.join('');
  }

  /** The last lines of its output, labelled, for assertion messages. */
  tail(lines = 40): string {
    const all = this.output().split('\n');
    return `---- last ${lines} lines of service "${this.name}" (pid ${this.pid}):\n${all.slice(-lines - 1).join('\n')}`;
  }

  /** Its JSON log lines (pino), parsed; other output is skipped. */
  logLines(): Array<Record<string, unknown>> {
    const lines: Array<Record<string, unknown>> = [];
    for (const line of this.output().split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // a partial last line
      }
    }
    return lines;
  }

  /** Sends `signal` and waits for the exit; SIGKILL when it takes longer than `timeoutMs`. */
  async signal(signal: NodeJS.Signals, timeoutMs = STOP_TIMEOUT_MS): Promise<Exit> {
    if (this.running) this.child.kill(signal);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    const result = await Promise.race([this.exited, timedOut]);
    clearTimeout(timer);
    if (result === 'timeout') {
      this.child.kill('SIGKILL');
      await this.exited;
      assert.fail(`service "${this.name}" did not exit within ${timeoutMs} ms of ${signal}\n${this.tail()}`);
    }
    return result;
  }

  /** A graceful stop: SIGTERM, then the exit. */
  stop(): Promise<Exit> {
    return this.signal('SIGTERM');
  }

  /** kill -9: no shutdown code runs at all. */
  kill(): Promise<Exit> {
    return this.signal('SIGKILL');
  }

  /** One HTTP request to the service, on a connection of its own (no keep-alive pool survives a kill). */
  request(method: string, url: string, options: RequestOptions = {}): Promise<HttpResponse> {
    const headers: Record<string, string> = { ...options.headers };
    let body: Buffer | string | undefined = options.body;
    if (options.json !== undefined) {
      body = JSON.stringify(options.json);
      headers['content-type'] = 'application/json';
    }
    if (body !== undefined) headers['content-length'] = String(Buffer.byteLength(body));
    return new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: this.port, method, path: url, headers, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () => {
          const bytes = Buffer.concat(chunks);
          const text = bytes.toString('utf8');
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: text,
            bytes,
            json: <T>() => JSON.parse(text) as T,
          });
        });
      });
      req.on('error', (error) => reject(new Error(`${method} ${url} to service "${this.name}": ${error.message}\n${this.tail()}`)));
      req.end(body);
    });
  }
}

/**
 * Starts src/server.ts as a child process and resolves once it listens. Defaults: a free
 * port on 127.0.0.1, LOG_LEVEL info, TRAIN_DEVICE cpu. The child is SIGKILLed after `t`
 * when still running.
 */
export function startService(t: TestContext, options: ServiceOptions): Promise<ServiceProcess> {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PORT: '0',
    HOST: '127.0.0.1',
    DATABASE_URL: options.databaseUrl,
    DATA_DIR: options.dataDir,
    LOG_LEVEL: 'info',
    TRAIN_DEVICE: 'cpu',
    ...options.env,
  };
  // The child is a service, not a test file of this runner.
  delete env.NODE_TEST_CONTEXT;
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: projectRoot,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const output: string[] = [];
  const exited = new Promise<Exit>((resolve) => {
    child.on('exit', (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    });
  });
  return new Promise((resolve, reject) => {
    let listening = false;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`service "${options.name}" did not listen within ${START_TIMEOUT_MS} ms:\n${output.join('')}`));
    }, START_TIMEOUT_MS);
    const onData = (chunk: Buffer) => {
      output.push(chunk.toString('utf8'));
      if (listening) return;
      const match = /Server listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(output.join(''));
      if (match === null) return;
      listening = true;
      clearTimeout(timer);
      resolve(new ServiceProcess(options.name, child, Number(match[1]), exited, output));
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    void exited.then((exit) => {
      if (listening) return;
      clearTimeout(timer);
      reject(new Error(`service "${options.name}" exited (${exit.code ?? exit.signal}) before listening:\n${output.join('')}`));
    });
  });
}

// ---------------------------------------------------------------- database

/** A small pool on the test database, for issuing keys and checking what the services stored (close it after). */
export function openDatabase(url: string): Database {
  return createPostgresDatabase({ connectionString: url, max: 2 });
}

/** What a file's tests share: a scratch database, a pool on it and a DATA_DIR, made before them and removed after. */
export interface ProcessTestBed {
  database: ScratchDatabase;
  db: Database;
  dataDir: string;
}

export function useProcessTestBed(dataDirPrefix: string): ProcessTestBed {
  const bed = {} as ProcessTestBed;
  before(async () => {
    bed.database = await createScratchDatabase();
    bed.db = openDatabase(bed.database.url);
    bed.dataDir = fs.mkdtempSync(path.join(os.tmpdir(), dataDirPrefix));
  });
  after(async () => {
    await bed.db?.close();
    await bed.database?.drop();
    if (bed.dataDir !== undefined) fs.rmSync(bed.dataDir, { recursive: true, force: true });
  });
  return bed;
}

/** A key of a new tenant, issued directly against the (migrated) database. */
export async function issueKey(db: Database, tenant = `process-${Date.now().toString(36)}`): Promise<{ authorization: string }> {
  const issued = await issueApiKey(db, tenant);
  return { authorization: `Bearer ${issued.key}` };
}

// ---------------------------------------------------------------- polling

/**
 * Calls `check` every `intervalMs` until it returns something other than undefined.
 * On timeout, fails with `what` and whatever `context()` says (a service's log tail).
 */
export async function pollUntil<T>(
  what: string,
  check: () => Promise<T | undefined>,
  { timeoutMs = 60_000, intervalMs = 100, context = () => '' }: { timeoutMs?: number; intervalMs?: number; context?: () => string } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}\n${context()}`);
    await sleep(intervalMs);
  }
}

// ---------------------------------------------------------------- the API

export const TERMINAL_STATUSES = ['succeeded', 'failed', 'canceled'];

/** A dataset with `count` generated photos (256 px and more: IMAGE_MIN_SIDE), uploaded in one request. */
export async function datasetWithPhotos(service: ServiceProcess, auth: { authorization: string }, count = 3): Promise<string> {
  const created = await service.request('POST', '/v1/datasets', { headers: auth, json: { name: 'process test', class_word: 'dog' } });
  assert.equal(created.status, 201, created.body);
  const datasetId = created.json<{ id: string }>().id;
  const files = [];
  for (let i = 0; i < count; i++) {
    files.push({ name: `photo-${i}.png`, contentType: 'image/png', data: await png({ width: 256 + 32 * (i % 2), height: 256, seed: 100 + i }) });
  }
  const body = filesBody(files);
  const uploaded = await service.request('POST', `/v1/datasets/${datasetId}/images`, { headers: { ...auth, ...body.headers }, body: body.payload });
  assert.equal(uploaded.status, 201, uploaded.body);
  return datasetId;
}

export interface RunView {
  id: string;
  status: string;
  attempt: number;
  progress: { phase: string; step: number; total_steps: number } | null;
  metrics: Record<string, number> | null;
  error: { code: string; message: string } | null;
  output: { lora_url: string; lora_peft_url: string | null; model_id?: string | null; model_url?: string | null } | null;
}

export async function createRun(
  service: ServiceProcess,
  auth: { authorization: string },
  datasetId: string,
  params: Record<string, unknown>,
  model = 'sdxl-tiny-demo',
): Promise<RunView> {
  const response = await service.request('POST', '/v1/training-runs', { headers: auth, json: { dataset_id: datasetId, model, params } });
  assert.equal(response.status, 202, response.body);
  return response.json<RunView>();
}

export async function getRun(service: ServiceProcess, auth: { authorization: string }, id: string): Promise<RunView> {
  const response = await service.request('GET', `/v1/training-runs/${id}`, { headers: auth });
  assert.equal(response.status, 200, response.body);
  return response.json<RunView>();
}

/** Polls the run over HTTP until it has finished (succeeded, failed or canceled). */
export function waitForFinish(service: ServiceProcess, auth: { authorization: string }, id: string, timeoutMs = 90_000): Promise<RunView> {
  return pollUntil(`run ${id} to finish`, async () => {
    const run = await getRun(service, auth, id);
    return TERMINAL_STATUSES.includes(run.status) ? run : undefined;
  }, { timeoutMs, intervalMs: 200, context: () => service.tail() });
}

// ---------------------------------------------------------------- run files

/** The checkpoints of a run in DATA_DIR, oldest first (the trainer names them step-NNNNNN.safetensors). */
export function checkpointsOf(dataDir: string, runId: string): string[] {
  const dir = path.join(dataDir, 'runs', runId, 'checkpoints');
  const names = fs.existsSync(dir) ? fs.readdirSync(dir) : [];
  return names.filter((name) => /^step-\d+\.safetensors$/.test(name)).sort();
}

export function checkpointStep(name: string): number {
  return Number(/^step-(\d+)\.safetensors$/.exec(name)![1]);
}

export { readSafetensors, type SafetensorsFile } from '../support/safetensors.js';

// npm run bench:webhooks: webhook delivery against the real server on 127.0.0.1, with a
// receiver (node:http, answers 204 at once) in this process.
//
// For embedded PGlite (always) and Postgres (when DATABASE_URL is set: a scratch database
// is created on that server and dropped afterwards):
//   1. delay on an idle system, from the change that queues a message to its arrival at the
//      receiver: --pings `ping`s one after the other (POST /v1/webhook-endpoints/{id}/test
//      answered -> arrival), and --jobs captioning jobs (template provider) one after the
//      other (the job's finished_at, written in the transaction that queued the message ->
//      arrival; one clock, one machine);
//   2. messages per second one replica delivers: a process with WEBHOOK_SLOTS=0 queues
//      --messages pings and stops; a process with the default WEBHOOK_SLOTS (16) starts on
//      the same database; the rate is the messages over the time from its first delivery to
//      its last (so the start-up is not counted).
// Options (all optional):
//   --pings N      pings timed for (1) (default 20)
//   --jobs N       captioning jobs timed for (1) (default 5)
//   --messages N   messages delivered for (2) (default 2000)
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { jpeg } from '../test/support/images.js';
import { percentile, scratchDatabase, startServer, stopServer, type Endpoint } from './bench-server.js';

const { values: args } = parseArgs({
  options: {
    pings: { type: 'string', default: '20' },
    jobs: { type: 'string', default: '5' },
    messages: { type: 'string', default: '2000' },
  },
});
const PINGS = Number(args.pings);
const JOBS = Number(args.jobs);
const MESSAGES = Number(args.messages);
/** Pings queued side by side while filling the backlog for (2). */
const FILL_CONCURRENCY = 16;

const note = (label: string, message: string) => process.stderr.write(`[${label}] ${message}\n`);
const ms = (value: number) => (Number.isFinite(value) ? value.toFixed(0) : '-');

// ---------------------------------------------------------------- the receiver

interface Arrival {
  id: string;
  type: string;
  data: Record<string, unknown>;
  at: number;
}

class Receiver {
  readonly arrivals: Arrival[] = [];
  url = '';
  #waiters: Array<{ count: number; resolve: () => void }> = [];
  readonly #server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const at = Date.now();
      response.writeHead(204).end();
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { type: string; data: Record<string, unknown> };
      this.arrivals.push({ id: String(request.headers['webhook-id']), type: body.type, data: body.data, at });
      for (const waiter of this.#waiters.filter((w) => this.arrivals.length >= w.count)) {
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    });
  });

  async listen(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}/hooks`;
  }

  /** Resolves once `count` messages have arrived in all. */
  until(count: number, timeoutMs = 300_000): Promise<void> {
    if (this.arrivals.length >= count) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.arrivals.length} of ${count} webhooks arrived`)), timeoutMs);
      this.#waiters.push({ count, resolve: () => { clearTimeout(timer); resolve(); } });
    });
  }

  close(): Promise<void> {
    this.#server.closeAllConnections();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}

// ---------------------------------------------------------------- the API

async function api<T>(server: Endpoint, method: string, path: string, body?: unknown, expect = [200]): Promise<T> {
  const response = await fetch(`${server.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${server.apiKey}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  if (!expect.includes(response.status)) throw new Error(`${method} ${path} answered ${response.status}: ${text}`);
  return JSON.parse(text) as T;
}

const WEBHOOK_ENV = { WEBHOOK_ALLOW_HTTP: 'true', WEBHOOK_ALLOWED_HOSTS: '127.0.0.1', TRAINING_SLOTS: '0' };

// ---------------------------------------------------------------- (1) delay

interface Delays {
  ping: number[];
  job: number[];
}

async function measureDelays(label: string, databaseUrl: string, receiver: Receiver): Promise<Delays> {
  const server = await startServer({ ...WEBHOOK_ENV, DATABASE_URL: databaseUrl }, 'sdxl-bench-webhooks-');
  try {
    const endpoint = await api<{ id: string }>(server, 'POST', '/v1/webhook-endpoints', { url: receiver.url, events: ['captioning_job.succeeded'] }, [201]);
    const ping: number[] = [];
    note(label, `${PINGS} pings, one at a time`);
    for (let i = 0; i < PINGS; i++) {
      const before = receiver.arrivals.length;
      await api(server, 'POST', `/v1/webhook-endpoints/${endpoint.id}/test`, undefined, [202]);
      const answered = Date.now();
      await receiver.until(before + 1);
      ping.push(receiver.arrivals[before]!.at - answered);
    }
    const dataset = await api<{ id: string }>(server, 'POST', '/v1/datasets', { name: 'bench', class_word: 'dog' }, [201]);
    const form = new FormData();
    form.append('files', new Blob([new Uint8Array(await jpeg({ width: 256, height: 256, seed: 1 }))], { type: 'image/jpeg' }), 'a.jpg');
    const upload = await fetch(`${server.url}/v1/datasets/${dataset.id}/images`, { method: 'POST', headers: { authorization: `Bearer ${server.apiKey}` }, body: form });
    if (upload.status !== 201) throw new Error(`upload answered ${upload.status}`);
    const job: number[] = [];
    note(label, `${JOBS} captioning jobs, one at a time`);
    for (let i = 0; i < JOBS; i++) {
      const before = receiver.arrivals.length;
      await api(server, 'POST', `/v1/datasets/${dataset.id}/captioning-jobs`, { provider: 'template', overwrite: true }, [202]);
      await receiver.until(before + 1);
      const arrival = receiver.arrivals[before]!;
      job.push(arrival.at - Date.parse(String(arrival.data.finished_at)));
    }
    return { ping, job };
  } finally {
    await stopServer(server);
  }
}

// ---------------------------------------------------------------- (2) throughput

interface Throughput {
  messages: number;
  seconds: number;
  perSecond: number;
}

async function measureThroughput(label: string, databaseUrl: string, receiver: Receiver): Promise<Throughput> {
  // One DATA_DIR for both processes, so PGlite's database carries over too.
  const dataDir = await mkdtemp(join(tmpdir(), 'sdxl-bench-webhooks-'));
  try {
    const filler = await startServer({ ...WEBHOOK_ENV, DATABASE_URL: databaseUrl, WEBHOOK_SLOTS: '0' }, '', dataDir);
    try {
      const endpoint = await api<{ id: string }>(filler, 'POST', '/v1/webhook-endpoints', { url: receiver.url }, [201]);
      note(label, `queuing ${MESSAGES} pings with no dispatcher running`);
      let next = 0;
      const worker = async () => {
        while (next < MESSAGES) {
          next++;
          await api(filler, 'POST', `/v1/webhook-endpoints/${endpoint.id}/test`, undefined, [202]);
        }
      };
      await Promise.all(Array.from({ length: FILL_CONCURRENCY }, worker));
    } finally {
      await stopServer(filler);
    }
    const start = receiver.arrivals.length;
    note(label, 'starting a process with the default WEBHOOK_SLOTS to deliver them');
    const sender = await startServer({ ...WEBHOOK_ENV, DATABASE_URL: databaseUrl }, '', dataDir);
    try {
      await receiver.until(start + MESSAGES);
      const batch = receiver.arrivals.slice(start, start + MESSAGES);
      if (new Set(batch.map((a) => a.id)).size !== MESSAGES) throw new Error('a message arrived twice');
      const seconds = (batch.at(-1)!.at - batch[0]!.at) / 1000;
      return { messages: MESSAGES, seconds, perSecond: (MESSAGES - 1) / seconds };
    } finally {
      await stopServer(sender);
    }
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- main

const receiver = new Receiver();
await receiver.listen();
const modes: Array<{ label: string; url: string; drop?: () => Promise<void> }> = [{ label: 'pglite', url: '' }];
if (process.env.DATABASE_URL) {
  const scratch = await scratchDatabase(process.env.DATABASE_URL, 'bench_webhooks');
  modes.push({ label: 'postgres', url: scratch.url, drop: scratch.drop });
}
const results = [];
try {
  for (const mode of modes) {
    const delays = await measureDelays(mode.label, mode.url, receiver);
    const throughput = await measureThroughput(mode.label, mode.url, receiver);
    results.push({ label: mode.label, delays, throughput });
  }
} finally {
  await receiver.close();
  for (const mode of modes) await mode.drop?.();
}

console.log(`Machine: ${availableParallelism()} CPUs (${cpus()[0]?.model ?? 'unknown'}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}\n`);
console.log('| database | ping: POST answered -> arrival, p50 / p99 / max (ms) | job finished_at -> arrival, p50 / max (ms) | backlog delivered by one replica |');
console.log('|---|---|---|---|');
for (const r of results) {
  const { ping, job } = r.delays;
  console.log(
    `| ${r.label} | ${ms(percentile(ping, 50))} / ${ms(percentile(ping, 99))} / ${ms(Math.max(...ping))} (n=${ping.length}) ` +
    `| ${ms(percentile(job, 50))} / ${ms(Math.max(...job))} (n=${job.length}) ` +
    `| ${r.throughput.messages} in ${r.throughput.seconds.toFixed(2)} s: ${r.throughput.perSecond.toFixed(0)} msg/s |`,
  );
}

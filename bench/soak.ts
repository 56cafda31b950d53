// npm run bench:soak: the service under a steady mixed load for minutes, to show that it
// stays flat: no errors, latencies that do not drift, memory and open connections at the end
// as at the start, queues that drain.
//
// On a scratch database of the DATABASE_URL server (required: queue waits are read from it),
// it starts the service in a child process (bench/serve.ts) with one training slot and one
// generation slot on the CPU and the demo model, makes a dataset per client, then runs
// --clients clients on loopback for --minutes. Each client loops: pick an action, do it, wait
// --think-ms. Actions: reads (datasets, a dataset, its images, runs, generations, a run's
// events: 70%), an upload of one new JPEG to its dataset (20%), and, at most as often as the
// workers can keep up, a captioning job (template captioner), a generation (4 steps) and a
// short training run (2 steps at 64 px). At the end it waits for the queues to drain and prints:
// per route, requests, statuses, p50/p99/max; the error rate (5xx and failed requests); the
// service's RSS and open sockets each minute; the queue waits of runs and generations.
// Options: --minutes M (10), --clients N (32), --think-ms MS (100)
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { jpeg } from '../test/support/images.js';
import { percentile, scratchDatabase, startServer, stopServer, type Server } from './bench-server.js';

const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    clients: { type: 'string', default: '32' },
    'think-ms': { type: 'string', default: '100' },
  },
});
const MINUTES = Number(args.minutes);
const CLIENTS = Number(args.clients);
const THINK_MS = Number(args['think-ms']);
const MODEL = 'sdxl-tiny-demo';
/** The least time between two posts of each heavy action, across all clients: what one CPU worker keeps up with. */
const HEAVY_EVERY_MS = { run: 10_000, generation: 4_000, captioning: 5_000 };

if (process.env.DATABASE_URL === undefined || process.env.DATABASE_URL === '') {
  console.error('bench:soak needs DATABASE_URL (a Postgres server; a scratch database is made on it and dropped after)');
  process.exit(2);
}

interface Sample {
  route: string;
  status: number;
  ms: number;
}

const samples: Sample[] = [];
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Answer {
  status: number;
  json<T>(): T;
}

async function call(server: Server, route: string, method: string, path: string, body?: { json?: unknown; form?: FormData }): Promise<Answer | undefined> {
  const started = performance.now();
  const headers: Record<string, string> = { authorization: `Bearer ${server.apiKey}` };
  let payload: string | FormData | undefined;
  if (body?.json !== undefined) {
    headers['content-type'] = 'application/json';
    payload = JSON.stringify(body.json);
  } else if (body?.form !== undefined) payload = body.form;
  try {
    const response = await fetch(server.url + path, { method, headers, ...(payload === undefined ? {} : { body: payload }) });
    const text = await response.text();
    samples.push({ route, status: response.status, ms: performance.now() - started });
    return { status: response.status, json: <T>() => JSON.parse(text) as T };
  } catch {
    samples.push({ route, status: 0, ms: performance.now() - started });
    return undefined;
  }
}

/** RSS (bytes) and open sockets of a process, from /proc. */
function processFigures(pid: number): { rssBytes: number; sockets: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssKiB = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
  let sockets = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('socket:')) sockets++;
    } catch {
      // closed meanwhile
    }
  }
  return { rssBytes: rssKiB * 1024, sockets };
}

const database = await scratchDatabase(process.env.DATABASE_URL, 'sdxl_soak');
const server = await startServer({
  DATABASE_URL: database.url, TRAINING_SLOTS: '1', GENERATION_SLOTS: '1', TRAIN_DEVICE: 'cpu',
  TENANT_MAX_QUEUED_RUNS: '1000', TENANT_MAX_QUEUED_GENERATIONS: '1000', DATA_DIR_MIN_FREE_BYTES: '0',
}, 'sdxl-soak-');
const datasets: string[] = [];
try {
  for (let i = 0; i < CLIENTS; i++) {
    const created = await call(server, 'setup', 'POST', '/v1/datasets', { json: { name: `soak ${i}`, class_word: 'dog' } });
    if (created?.status !== 201) throw new Error(`could not create a dataset: ${created?.status}`);
    datasets.push(created.json<{ id: string }>().id);
  }
  samples.length = 0;
} catch (error) {
  await stopServer(server);
  await database.drop();
  throw error;
}

let seed = 1000;
const photo = async () => jpeg({ width: 256 + 32 * (seed % 3), height: 256, seed: seed++ });
const nextHeavy = { run: 0, generation: 0, captioning: 0 };
const takeHeavy = (kind: keyof typeof nextHeavy): boolean => {
  const now = Date.now();
  if (now < nextHeavy[kind]) return false;
  nextHeavy[kind] = now + HEAVY_EVERY_MS[kind];
  return true;
};
let lastRun: string | undefined;

async function client(index: number, until: number): Promise<void> {
  const datasetId = datasets[index]!;
  while (Date.now() < until) {
    const roll = Math.random();
    if (roll < 0.2) {
      const form = new FormData();
      form.append('files', new Blob([new Uint8Array(await photo())], { type: 'image/jpeg' }), `photo-${seed}.jpg`);
      await call(server, 'POST /v1/datasets/:id/images', 'POST', `/v1/datasets/${datasetId}/images`, { form });
    } else if (roll < 0.3 && takeHeavy('run')) {
      const response = await call(server, 'POST /v1/training-runs', 'POST', '/v1/training-runs', {
        json: { dataset_id: datasetId, model: MODEL, params: { resolution: 64, max_steps: 2, rank: 4, alpha: 4, checkpoint_every: 0, save_peft: false } },
      });
      if (response?.status === 202) lastRun = response.json<{ id: string }>().id;
    } else if (roll < 0.3 && takeHeavy('generation')) {
      await call(server, 'POST /v1/generations', 'POST', '/v1/generations', { json: { model: MODEL, prompt: 'a photo of a dog', steps: 4 } });
    } else if (roll < 0.3 && takeHeavy('captioning')) {
      await call(server, 'POST /v1/datasets/:id/captioning-jobs', 'POST', `/v1/datasets/${datasetId}/captioning-jobs`, { json: { provider: 'template', overwrite: true } });
    } else {
      const reads: Array<[string, string]> = [
        ['GET /v1/datasets', '/v1/datasets'],
        ['GET /v1/datasets/:id', `/v1/datasets/${datasetId}`],
        ['GET /v1/datasets/:id/images', `/v1/datasets/${datasetId}/images?limit=20`],
        ['GET /v1/training-runs', '/v1/training-runs?limit=20'],
        ['GET /v1/generations', '/v1/generations?limit=20'],
        ...(lastRun === undefined ? [] : [['GET /v1/training-runs/:id/events', `/v1/training-runs/${lastRun}/events?limit=100`] as [string, string]]),
      ];
      const [route, path] = reads[Math.floor(Math.random() * reads.length)]!;
      await call(server, route, 'GET', path);
    }
    await sleep(THINK_MS);
  }
}

const startLoad = loadavg()[0]!.toFixed(1);
const started = Date.now();
const until = started + MINUTES * 60_000;
const figures: Array<{ minute: number; rssBytes: number; sockets: number; requests: number }> = [];
const sampleFigures = () => figures.push({ minute: Math.round((Date.now() - started) / 60_000), ...processFigures(server.child.pid!), requests: samples.length });
sampleFigures();
const sampler = setInterval(sampleFigures, 60_000);
await Promise.all(Array.from({ length: CLIENTS }, (_, i) => client(i, until)));
clearInterval(sampler);
sampleFigures();

// Let the queues drain, then read the waits.
const db = new pg.Client({ connectionString: database.url });
await db.connect();
const open = async () => (await db.query<{ n: number }>(
  `SELECT (SELECT count(*) FROM training_runs WHERE status IN ('queued', 'starting', 'running'))
        + (SELECT count(*) FROM generations WHERE status IN ('queued', 'starting', 'running'))
        + (SELECT count(*) FROM captioning_jobs WHERE status IN ('queued', 'running')) AS n`)).rows[0]!.n;
const drainStarted = Date.now();
while (Number(await open()) > 0 && Date.now() - drainStarted < 300_000) await sleep(1000);
const drainSeconds = (Date.now() - drainStarted) / 1000;
const waits = async (table: string, claimed: string) => (await db.query<{ ms: number }>(
  `SELECT extract(epoch FROM (${claimed} - created_at)) * 1000 AS ms FROM ${table} WHERE ${claimed} IS NOT NULL`)).rows.map((row) => Number(row.ms));
const outcomes = async (table: string) => (await db.query<{ status: string; n: string }>(`SELECT status, count(*) AS n FROM ${table} GROUP BY status ORDER BY status`)).rows
  .map((row) => `${row.status} ${row.n}`).join(', ');
const queueRows = [
  ['training runs', await waits('training_runs', 'claimed_at'), await outcomes('training_runs')],
  ['generations', await waits('generations', 'claimed_at'), await outcomes('generations')],
  ['captioning jobs', await waits('captioning_jobs', 'started_at'), await outcomes('captioning_jobs')],
] as const;
await db.end();
const end = processFigures(server.child.pid!);
await stopServer(server);
await database.drop();

const ms = (value: number) => (Number.isFinite(value) ? Math.round(value).toString() : '-');
console.log(`\nMachine: ${availableParallelism()} CPU (${cpus()[0]?.model.trim()}), ${Math.round(totalmem() / 2 ** 30)} GiB RAM, Node ${process.version}, load average ${startLoad} before`);
console.log(`Soak: ${CLIENTS} clients x ${MINUTES} min on loopback, think time ${THINK_MS} ms, Postgres, TRAINING_SLOTS=1 and GENERATION_SLOTS=1 on the CPU, model ${MODEL}`);
console.log(`\n| Route | requests | 2xx | 4xx | 5xx | failed | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|---|---|---|---|`);
const routes = [...new Set(samples.map((s) => s.route))].sort();
for (const route of routes) {
  const of = samples.filter((s) => s.route === route);
  const count = (test: (status: number) => boolean) => of.filter((s) => test(s.status)).length;
  const latencies = of.map((s) => s.ms);
  const clientErrors = [...new Set(of.filter((s) => s.status >= 400 && s.status < 500).map((s) => s.status))].sort();
  const refused = `${count((s) => s >= 400 && s < 500)}${clientErrors.length > 0 ? ` (${clientErrors.join(', ')})` : ''}`;
  console.log(`| ${route} | ${of.length} | ${count((s) => s >= 200 && s < 300)} | ${refused} | ${count((s) => s >= 500)} | ${count((s) => s === 0)} | ${ms(percentile(latencies, 50))} | ${ms(percentile(latencies, 99))} | ${ms(Math.max(...latencies))} |`);
}
const failed = samples.filter((s) => s.status === 0 || s.status >= 500).length;
console.log(`\nError rate: ${failed} of ${samples.length} requests (${((100 * failed) / Math.max(1, samples.length)).toFixed(3)}%) were 5xx or failed`);
console.log(`\n| Minute | RSS MiB | open sockets | requests so far |\n|---|---|---|---|`);
for (const figure of figures) console.log(`| ${figure.minute} | ${Math.round(figure.rssBytes / 2 ** 20)} | ${figure.sockets} | ${figure.requests} |`);
console.log(`After the queues drained (${drainSeconds.toFixed(0)} s): RSS ${Math.round(end.rssBytes / 2 ** 20)} MiB, ${end.sockets} open sockets`);
console.log(`\n| Queue | jobs | wait p50 ms | wait p99 ms | wait max ms | outcomes |\n|---|---|---|---|---|---|`);
for (const [name, values, outcome] of queueRows) console.log(`| ${name} | ${values.length} | ${ms(percentile(values, 50))} | ${ms(percentile(values, 99))} | ${ms(Math.max(...values))} | ${outcome} |`);

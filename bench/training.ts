// npm run bench:runs: training runs through the API, on the CPU, with the built-in demo
// model (sdxl-tiny-demo), against the real server on 127.0.0.1.
//
// For embedded PGlite (always) and Postgres (when DATABASE_URL is set: a scratch database
// is created on that server and dropped afterwards) it starts the service in a child
// process (bench/serve.ts) with TRAINING_SLOTS=1, TRAIN_DEVICE=cpu and a temporary
// DATA_DIR, creates a dataset, uploads a few generated JPEGs and measures:
//   1. POST /v1/training-runs -> the run's `starting` (claimed by the worker) and `running`
//      (first training step reported) status events, read from its Server-Sent Events stream, for
//      --runs short runs one after the other, each on an idle worker (after one unmeasured
//      warm-up run that writes the demo model to disk);
//   2. the SSE delay of `progress` events (their created_at, written by the worker, to the
//      moment this client has parsed them; one clock, one machine) of a long run;
//   3. autocannon against GET /v1/training-runs/{id} while that run trains, then, once it
//      is canceled, with nothing training.
// With Postgres it also starts an API-only replica (TRAINING_SLOTS=0) on the same database
// and repeats (1) with --replica-runs runs posted to and followed through it, and (2) for
// the long run's stream read through it: there the worker and the stream are woken by
// NOTIFY (migration 017), so these show what crossing replicas costs.
// Options (all optional):
//   --runs N          short runs timed for (1) (default 10)
//   --steps N         max_steps of a short run (default 2)
//   --resolution PX   resolution of every run (default 128, the demo model's largest)
//   --images N        images in the dataset (default 4)
//   --sse-seconds S   seconds the long run trains with no HTTP load once running (default 10)
//   --duration S      seconds of each autocannon load (default 10)
//   --connections N   concurrent autocannon connections (default 32)
//   --replica-runs N  short runs posted through the API-only replica (default 4; 0: no replica)
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import { parseArgs } from 'node:util';
import { followEvents, type components } from '../openapi/client/index.js';
import { jpeg } from '../test/support/images.js';
import { getLoad, percentile, scratchDatabase, startServer, stopServer, type Endpoint, type Load, type Server } from './bench-server.js';

const { values: args } = parseArgs({
  options: {
    runs: { type: 'string', default: '10' },
    steps: { type: 'string', default: '2' },
    resolution: { type: 'string', default: '128' },
    images: { type: 'string', default: '4' },
    'sse-seconds': { type: 'string', default: '10' },
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '32' },
    'replica-runs': { type: 'string', default: '4' },
  },
});
const RUNS = Number(args.runs);
const SHORT_STEPS = Number(args.steps);
const RESOLUTION = Number(args.resolution);
const IMAGE_COUNT = Number(args.images);
const SSE_SECONDS = Number(args['sse-seconds']);
const DURATION_S = Number(args.duration);
const CONNECTIONS = Number(args.connections);
const REPLICA_RUNS = Number(args['replica-runs']);

const MODEL = 'sdxl-tiny-demo';
/** Small and cheap: the short runs time the way in and out of the worker, not training. */
const SHORT_PARAMS = { resolution: RESOLUTION, max_steps: SHORT_STEPS, rank: 4, alpha: 4, checkpoint_every: 0, save_peft: false };
/** Trains far longer than the benchmark lasts; canceled at the end (a checkpoint is written then). */
const LONG_PARAMS = { resolution: RESOLUTION, max_steps: 100_000, checkpoint_every: 0, save_peft: false };
/** The settle time between two short runs, so each is posted to an idle worker. */
const IDLE_GAP_MS = 300;
const RUN_TIMEOUT_MS = 120_000;

type TrainingRunEvent = components['schemas']['TrainingRunEvent'];

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const note = (label: string, message: string) => process.stderr.write(`[${label}] ${message}\n`);

// ---------------------------------------------------------------- the service

/** A trainer (slots 1) or an API-only replica (slots 0) on `databaseUrl`, training on the CPU. */
const serverEnv = (databaseUrl: string, slots: number) => ({ DATABASE_URL: databaseUrl, TRAINING_SLOTS: String(slots), TRAIN_DEVICE: 'cpu' });

async function api<T>(server: Endpoint, method: string, path: string, body?: unknown, expect = [200]): Promise<T> {
  const response = await fetch(`${server.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${server.apiKey}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  if (!expect.includes(response.status)) throw new Error(`${method} ${path} answered ${response.status}: ${text}`);
  return (text === '' ? undefined : JSON.parse(text)) as T;
}

// ---------------------------------------------------------------- following a run

/** One event as this client received it: wall-clock ms (Date.now(), the clock the database's now() reads too). */
interface Received {
  event: TrainingRunEvent;
  createdAt: number;
  parsedAt: number;
}

/** Reads a run's event stream in the background, keeping every event with the moment it was parsed. */
class RunWatch {
  readonly events: Received[] = [];
  readonly ended: Promise<void>;
  #over = false;
  #wakers: Array<() => void> = [];
  readonly #abort = new AbortController();

  constructor(server: Endpoint, runId: string) {
    this.ended = this.#consume(`${server.url}/v1/training-runs/${runId}/events`, server.apiKey).finally(() => {
      this.#over = true;
      for (const wake of this.#wakers.splice(0)) wake();
    });
    this.ended.catch(() => {}); // awaited by whoever needs it; never an unhandled rejection
  }

  async #consume(url: string, apiKey: string): Promise<void> {
    // No reconnect: the stream ends when the run has ended and every event is out.
    for await (const message of followEvents(url, { apiKey, reconnect: false, signal: this.#abort.signal })) {
      const event = JSON.parse(message.data) as TrainingRunEvent;
      const parsedAt = Date.now();
      this.events.push({ event, createdAt: Date.parse(event.created_at), parsedAt });
      for (const wake of this.#wakers.splice(0)) wake();
    }
  }

  /** The first event that matches, as soon as it is parsed; throws when the stream ends without one or after timeoutMs. */
  async first(what: string, match: (event: TrainingRunEvent) => boolean, timeoutMs = RUN_TIMEOUT_MS): Promise<Received> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.events.find((received) => match(received.event));
      if (found !== undefined) return found;
      if (this.#over) {
        await this.ended; // its error, if the stream failed
        throw new Error(`the event stream ended without ${what}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${what} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wakers.push(() => (clearTimeout(timer), resolve()));
      });
    }
  }

  close(): void {
    this.#abort.abort();
  }
}

const isStatus = (status: string) => (event: TrainingRunEvent) => event.type === 'status' && event.data.status === status;
const isEnd = (event: TrainingRunEvent) =>
  event.type === 'status' && ['succeeded', 'failed', 'canceled'].includes(String(event.data.status));

// ---------------------------------------------------------------- figures

const ms = (value: number) => (Number.isFinite(value) ? value.toFixed(0) : '-');
const p50max = (values: number[]) => `${ms(percentile(values, 50))} / ${ms(Math.max(...values))}`;

interface ShortRun {
  /** POST sent -> 202 received. */
  answered: number;
  /** POST sent -> created_at of the `starting` event (the worker's claim, server clock). */
  claimed: number;
  /** POST sent -> the `starting` event parsed here. */
  startingSeen: number;
  /** POST sent -> created_at of the `running` event (first training step reported). */
  running: number;
  /** POST sent -> the `running` event parsed here. */
  runningSeen: number;
  /** POST sent -> the final status parsed here. */
  ended: number;
}

async function shortRun(server: Endpoint, datasetId: string): Promise<ShortRun> {
  const posted = Date.now();
  const run = await api<{ id: string }>(server, 'POST', '/v1/training-runs', { dataset_id: datasetId, model: MODEL, params: SHORT_PARAMS }, [202]);
  const answered = Date.now() - posted;
  const watch = new RunWatch(server, run.id);
  try {
    const starting = await watch.first('a starting status', isStatus('starting'));
    const running = await watch.first('a running status', isStatus('running'));
    const end = await watch.first('an end', isEnd);
    if (end.event.data.status !== 'succeeded') throw new Error(`short run ${run.id} ended ${JSON.stringify(end.event.data)}`);
    await watch.ended;
    return {
      answered,
      claimed: starting.createdAt - posted,
      startingSeen: starting.parsedAt - posted,
      running: running.createdAt - posted,
      runningSeen: running.parsedAt - posted,
      ended: end.parsedAt - posted,
    };
  } finally {
    watch.close();
  }
}


interface Window {
  /** created_at -> parsed here, per progress event (every phase). */
  delays: number[];
  /** Steps the trainer made in the window (first to last progress event), per second. */
  stepsPerSecond: number;
}

/** The progress events parsed between two moments. */
function progressWindow(watch: RunWatch, from: number, to: number): Window {
  const progress = watch.events.filter((r) => r.event.type === 'progress' && r.parsedAt >= from && r.parsedAt < to);
  const training = progress.filter((r) => r.event.data.phase === 'training');
  const first = training[0];
  const last = training.at(-1);
  const stepsPerSecond = first !== undefined && last !== undefined && last.createdAt > first.createdAt
    ? (Number(last.event.data.step) - Number(first.event.data.step)) / ((last.createdAt - first.createdAt) / 1000)
    : NaN;
  return { delays: progress.map((r) => r.parsedAt - r.createdAt), stepsPerSecond };
}

interface ModeResult {
  label: string;
  firstRun: ShortRun;
  runs: ShortRun[];
  sseIdle: Window;
  sseLoaded: Window;
  getTraining: Load;
  getIdle: Load;
  cancelSeen: number;
  /** Through the API-only replica: short runs posted and followed there, and the long run's stream read there. */
  replica?: { runs: ShortRun[]; sse: Window };
}

async function startServers(databaseUrl: string, withReplica: boolean): Promise<[Server, Server | undefined]> {
  const started = await Promise.allSettled([startServer(serverEnv(databaseUrl, 1), 'sdxl-bench-runs-'), ...(withReplica ? [startServer(serverEnv(databaseUrl, 0), 'sdxl-bench-runs-')] : [])]);
  const failed = started.find((s) => s.status === 'rejected');
  if (failed !== undefined) {
    for (const s of started) if (s.status === 'fulfilled') await stopServer(s.value);
    throw failed.reason;
  }
  const servers = started.map((s) => (s as PromiseFulfilledResult<Server>).value);
  return [servers[0]!, servers[1]];
}

async function benchMode(label: string, databaseUrl: string, images: Buffer[], withReplica: boolean): Promise<ModeResult> {
  const [server, replicaServer] = await startServers(databaseUrl, withReplica);
  // The API-only replica, with the training process's tenant: its key is in the shared database.
  const replica: Endpoint | undefined = replicaServer === undefined ? undefined : { url: replicaServer.url, apiKey: server.apiKey };
  try {
    const dataset = await api<{ id: string }>(server, 'POST', '/v1/datasets', { name: 'bench', class_word: 'dog', trigger_token: 'sks' }, [201]);
    const form = new FormData();
    images.forEach((bytes, i) => form.append('files', new Blob([new Uint8Array(bytes)], { type: 'image/jpeg' }), `img${i}.jpg`));
    const uploaded = await fetch(`${server.url}/v1/datasets/${dataset.id}/images`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.apiKey}` },
      body: form,
    });
    if (uploaded.status !== 201) throw new Error(`upload answered ${uploaded.status}: ${await uploaded.text()}`);

    // 1. Short runs, one after the other, each posted to an idle worker.
    const firstRun = await shortRun(server, dataset.id); // writes the demo model to DATA_DIR: not in the figures
    note(label, `first run (demo model written to disk): running after ${firstRun.running} ms, ended after ${firstRun.ended} ms`);
    const runs: ShortRun[] = [];
    for (let i = 0; i < RUNS; i++) {
      await sleep(IDLE_GAP_MS);
      runs.push(await shortRun(server, dataset.id));
    }
    note(label, `${RUNS} short runs of ${SHORT_STEPS} steps: running after ${p50max(runs.map((r) => r.runningSeen))} ms (p50 / max)`);
    const replicaRuns: ShortRun[] = [];
    if (replica !== undefined) {
      // Its first use of the demo model writes it to its own DATA_DIR (most of a second): not in the figures.
      await api(replica, 'GET', `/v1/models/${MODEL}`);
      for (let i = 0; i < REPLICA_RUNS; i++) {
        await sleep(IDLE_GAP_MS);
        replicaRuns.push(await shortRun(replica, dataset.id));
      }
      note(label, `${REPLICA_RUNS} short runs through the API-only replica: running after ${p50max(replicaRuns.map((r) => r.runningSeen))} ms (p50 / max)`);
    }

    // 2. and 3. One long run: progress events with no HTTP load, then under GET load.
    await sleep(IDLE_GAP_MS);
    const longPosted = Date.now();
    const long = await api<{ id: string }>(server, 'POST', '/v1/training-runs', { dataset_id: dataset.id, model: MODEL, params: LONG_PARAMS }, [202]);
    const watch = new RunWatch(server, long.id);
    const replicaWatch = replica === undefined ? undefined : new RunWatch(replica, long.id);
    try {
      await watch.first('a running status', isStatus('running'));
      await sleep(SSE_SECONDS * 1000);
      const loadFrom = Date.now();
      replicaWatch?.close(); // its figures are those with no load
      note(label, `autocannon -c ${CONNECTIONS} -d ${DURATION_S} -H "authorization: Bearer <key>" ${server.url}/v1/training-runs/${long.id} (training)`);
      const getTraining = await getLoad(server, `${server.url}/v1/training-runs/${long.id}`, CONNECTIONS, DURATION_S);
      const loadTo = Date.now();
      const canceled = Date.now();
      await api(server, 'POST', `/v1/training-runs/${long.id}/cancel`, {}, [202]);
      const end = await watch.first('an end', isEnd);
      if (end.event.data.status !== 'canceled') throw new Error(`long run ${long.id} ended ${JSON.stringify(end.event.data)}`);
      await watch.ended;
      const cancelSeen = end.parsedAt - canceled;

      await sleep(IDLE_GAP_MS);
      note(label, `autocannon -c ${CONNECTIONS} -d ${DURATION_S} -H "authorization: Bearer <key>" ${server.url}/v1/training-runs/${long.id} (nothing training)`);
      const getIdle = await getLoad(server, `${server.url}/v1/training-runs/${long.id}`, CONNECTIONS, DURATION_S);
      return {
        label,
        firstRun,
        runs,
        sseIdle: progressWindow(watch, longPosted, loadFrom),
        sseLoaded: progressWindow(watch, loadFrom, loadTo),
        getTraining,
        getIdle,
        cancelSeen,
        ...(replicaWatch === undefined ? {} : { replica: { runs: replicaRuns, sse: progressWindow(replicaWatch, longPosted, loadFrom) } }),
      };
    } finally {
      watch.close();
      replicaWatch?.close();
    }
  } finally {
    await stopServer(server);
    if (replicaServer !== undefined) await stopServer(replicaServer);
  }
}

// ---------------------------------------------------------------- main

const load = loadavg()[0]!;
const started = performance.now();
const images: Buffer[] = [];
for (let i = 0; i < IMAGE_COUNT; i++) images.push(await jpeg({ width: 256 + 64 * (i % 3), height: 320, seed: i + 1, quality: 90 }));

const results: ModeResult[] = [];
results.push(await benchMode('PGlite (embedded)', '', images, false));
if (process.env.DATABASE_URL) {
  const scratch = await scratchDatabase(process.env.DATABASE_URL, 'bench_runs');
  try {
    results.push(await benchMode('Postgres (DATABASE_URL)', scratch.url, images, REPLICA_RUNS > 0));
  } finally {
    await scratch.drop();
  }
}
const seconds = (performance.now() - started) / 1000;

const TRAINER = 'the training process';
const REPLICA = 'an API-only replica';
const cpu = cpus()[0]?.model ?? 'unknown CPU';
console.log(`\nMachine: ${availableParallelism()} CPU (${cpu}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM, Node ${process.version}, ` +
  `load average ${load.toFixed(1)} before the run; whole benchmark ${seconds.toFixed(0)} s`);
console.log(`Service: TRAINING_SLOTS=1, TRAIN_DEVICE=cpu, model ${MODEL}, ${IMAGE_COUNT} JPEGs (256-384 x 320), resolution ${RESOLUTION}` +
  (results.some((r) => r.replica) ? '; with Postgres also an API-only replica (TRAINING_SLOTS=0) on the same database' : ''));
console.log(`Short runs: ${RUNS} after one warm-up run, ${SHORT_STEPS} steps each (rank 4, no checkpoints, kohya file only), one after the other ` +
  `on an idle worker` + (results.some((r) => r.replica) ? `; then ${REPLICA_RUNS} posted to and followed through ${REPLICA}` : ''));
console.log(`Long run: rank 16; its progress events (every phase) until ${SSE_SECONDS} s after it runs, with no HTTP load, then autocannon ${CONNECTIONS} connections x ${DURATION_S} s ` +
  'on GET /v1/training-runs/{id}, then canceled\n');

console.log('1. From sending POST /v1/training-runs (ms, p50 / max)\n');
console.log('| Database | POST and SSE to | runs | 202 answered | claimed (`starting` created_at) | `starting` parsed from SSE | ' +
  'first step reported (`running` created_at) | `running` parsed from SSE | run ended, parsed |');
console.log('|---|---|---|---|---|---|---|---|---|');
for (const r of results) {
  for (const [to, runs] of [[TRAINER, r.runs], ...(r.replica ? [[REPLICA, r.replica.runs] as const] : [])] as const) {
    const col = (pick: (run: ShortRun) => number) => p50max(runs.map(pick));
    console.log(`| ${r.label} | ${to} | ${runs.length} | ${col((x) => x.answered)} | ${col((x) => x.claimed)} | ${col((x) => x.startingSeen)} | ` +
      `${col((x) => x.running)} | ${col((x) => x.runningSeen)} | ${col((x) => x.ended)} |`);
  }
}

console.log('\n2. SSE delay of `progress` events of the long run: created_at -> parsed by this client (ms)\n');
console.log('| Database | Stream from | Load | events | p50 | p99 | max | min | trainer steps/s |');
console.log('|---|---|---|---|---|---|---|---|---|');
for (const r of results) {
  const rows: Array<[string, string, Window]> = [[TRAINER, 'none', r.sseIdle], [TRAINER, `GET, ${CONNECTIONS} connections`, r.sseLoaded]];
  if (r.replica) rows.push([REPLICA, 'none', r.replica.sse]);
  for (const [from, name, w] of rows) {
    console.log(`| ${r.label} | ${from} | ${name} | ${w.delays.length} | ${ms(percentile(w.delays, 50))} | ${ms(percentile(w.delays, 99))} | ` +
      `${ms(Math.max(...w.delays))} | ${ms(Math.min(...w.delays))} | ${w.stepsPerSecond.toFixed(1)} |`);
  }
}

console.log(`\n3. GET /v1/training-runs/{id}, autocannon ${CONNECTIONS} connections x ${DURATION_S} s\n`);
console.log('| Database | Training | req/s | p50 (ms) | p99 (ms) | max (ms) | non-2xx | errors |');
console.log('|---|---|---|---|---|---|---|---|');
for (const r of results) {
  for (const [name, l] of [['one run on the CPU', r.getTraining], ['none', r.getIdle]] as const) {
    console.log(`| ${r.label} | ${name} | ${l.requestsPerSecond.toFixed(0)} | ${l.p50} | ${l.p99} | ${l.max} | ${l.non2xx} | ${l.errors} |`);
  }
}
console.log('\nCancel of the long run: POST /cancel sent -> `canceled` parsed from SSE: ' +
  results.map((r) => `${r.label} ${ms(r.cancelSeen)} ms`).join(', '));
console.log('First run of each service (demo model written to DATA_DIR, not in the figures above): `running` parsed after ' +
  results.map((r) => `${r.label} ${ms(r.firstRun.runningSeen)} ms`).join(', '));

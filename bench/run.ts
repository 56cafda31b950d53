// npm run bench: upload throughput and read latency of the real server on 127.0.0.1.
//
// For embedded PGlite (always) and Postgres (when DATABASE_URL is set) it starts the
// service in a child process (bench/serve.ts) with a temporary DATA_DIR, creates a
// dataset, uploads 1 MP JPEGs through POST /v1/datasets/{id}/images, then runs autocannon
// against GET /v1/datasets/{id} (after a warm-up that is not counted) and prints a table,
// with the CPU time the service and its Postgres backends spent per request (from /proc).
// Options (all optional):
//   --duration S     seconds of autocannon load (default 10)
//   --connections N  concurrent autocannon connections (default 32)
//   --images N       images to upload (default 60), sent --batch per request
//   --batch N        images per upload request (default 10)
//   --uploaders N    upload requests in flight at once (default 2)
//   --warmup S       seconds of the same read load before the measured ones, not counted (default 2; 0 = none)
//   --log-level L    the service's LOG_LEVEL (default warn; info is the service's default: one line per request)
import { availableParallelism, cpus, totalmem } from 'node:os';
import { parseArgs } from 'node:util';
import { jpeg } from '../test/support/images.js';
import { cpuSeconds, getLoad, percentile, postgresBackendPids, startServer, stopServer, type Server } from './bench-server.js';

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '32' },
    images: { type: 'string', default: '60' },
    batch: { type: 'string', default: '10' },
    uploaders: { type: 'string', default: '2' },
    warmup: { type: 'string', default: '2' },
    'log-level': { type: 'string', default: 'warn' },
  },
});
const DURATION_S = Number(args.duration);
const WARMUP_S = Number(args.warmup);
const CONNECTIONS = Number(args.connections);
const IMAGE_COUNT = Number(args.images);
const BATCH = Number(args.batch);
const UPLOADERS = Number(args.uploaders);
/** 1 MP: the size class of a downscaled phone photo. */
const IMAGE_SIDE = 1024;
const JPEG_QUALITY = 90;
const MB = 1e6;

interface UploadResult {
  images: number;
  megabytes: number;
  seconds: number;
  requestP50Ms: number;
}

async function benchUpload(server: Server, datasetId: string, images: Buffer[]): Promise<UploadResult> {
  const batches: Buffer[][] = [];
  for (let i = 0; i < images.length; i += BATCH) batches.push(images.slice(i, i + BATCH));
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  const uploader = async (): Promise<void> => {
    while (next < batches.length) {
      const batch = batches[next++]!;
      const form = new FormData();
      batch.forEach((bytes, i) => form.append('files', new Blob([new Uint8Array(bytes)], { type: 'image/jpeg' }), `img${next}-${i}.jpg`));
      const t0 = performance.now();
      const response = await fetch(`${server.url}/v1/datasets/${datasetId}/images`, {
        method: 'POST',
        headers: { authorization: `Bearer ${server.apiKey}` },
        body: form,
      });
      const body = await response.text();
      if (response.status !== 201) throw new Error(`upload answered ${response.status}: ${body}`);
      latencies.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: UPLOADERS }, uploader));
  const seconds = (performance.now() - started) / 1000;
  return {
    images: images.length,
    megabytes: images.reduce((sum, b) => sum + b.length, 0) / MB,
    seconds,
    requestP50Ms: percentile(latencies, 50),
  };
}

async function benchMode(label: string, databaseUrl: string, images: Buffer[]) {
  const server = await startServer({ DATABASE_URL: databaseUrl, DATASET_MAX_IMAGES: String(IMAGE_COUNT + BATCH), LOG_LEVEL: args['log-level'] });
  try {
    const created = await fetch(`${server.url}/v1/datasets`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'bench', class_word: 'dog' }),
    });
    if (created.status !== 201) throw new Error(`create dataset answered ${created.status}`);
    const datasetId = ((await created.json()) as { id: string }).id;
    const upload = await benchUpload(server, datasetId, images);
    process.stderr.write(`[${label}] uploaded ${upload.images} images in ${upload.seconds.toFixed(2)} s\n`);
    process.stderr.write(
      `[${label}] autocannon -c ${CONNECTIONS} -d ${DURATION_S} -H "authorization: Bearer <key>" ${server.url}/v1/datasets/${datasetId}` +
        (WARMUP_S > 0 ? ` (after the same for ${WARMUP_S} s, not counted)\n` : '\n'),
    );
    const url = `${server.url}/v1/datasets/${datasetId}`;
    // The warm-up: the same load, not counted (the service and autocannon both start with cold JIT-compiled code).
    if (WARMUP_S > 0) await getLoad(server, url, CONNECTIONS, WARMUP_S);
    // CPU per request of the service process and of its Postgres backends (PGlite runs inside the service).
    const pids = [server.child.pid!, ...(databaseUrl === '' ? [] : await postgresBackendPids(databaseUrl))];
    const serviceBefore = cpuSeconds(pids.slice(0, 1));
    const postgresBefore = cpuSeconds(pids.slice(1));
    const read = await getLoad(server, url, CONNECTIONS, DURATION_S);
    const perRequest = (after: number | undefined, before: number | undefined) =>
      after === undefined || before === undefined ? undefined : ((after - before) * 1e6) / read.requests;
    const cpu = { serviceUs: perRequest(cpuSeconds(pids.slice(0, 1)), serviceBefore), postgresUs: perRequest(cpuSeconds(pids.slice(1)), postgresBefore) };
    return { label, database: server.database, upload, read, cpu };
  } finally {
    await stopServer(server);
  }
}

const images: Buffer[] = [];
for (let i = 0; i < IMAGE_COUNT; i++) images.push(await jpeg({ width: IMAGE_SIDE, height: IMAGE_SIDE, seed: i + 1, quality: JPEG_QUALITY }));

const modes: Array<[string, string]> = [['PGlite (embedded)', '']];
if (process.env.DATABASE_URL) modes.push(['Postgres (DATABASE_URL)', process.env.DATABASE_URL]);

const results = [];
for (const [label, url] of modes) results.push(await benchMode(label, url, images));

const cpu = cpus()[0]?.model ?? 'unknown CPU';
console.log(`\nMachine: ${availableParallelism()} CPU (${cpu}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM, Node ${process.version}`);
console.log(`Upload: ${IMAGE_COUNT} JPEGs of ${IMAGE_SIDE}x${IMAGE_SIDE} (q${JPEG_QUALITY}), ${BATCH} per request, ${UPLOADERS} requests in flight`);
console.log(`Read: autocannon, ${CONNECTIONS} connections, ${DURATION_S} s after ${WARMUP_S} s of warm-up, GET /v1/datasets/{id}\n`);
console.log('| Database | Upload images/s | Upload MB/s | Upload request p50 (ms) | GET dataset req/s | p50 (ms) | p99 (ms) | max (ms) | non-2xx | errors | CPU µs/request: service, Postgres |');
console.log('|---|---|---|---|---|---|---|---|---|---|---|');
const us = (value: number | undefined) => (value === undefined ? 'n/a' : value.toFixed(0));
for (const r of results) {
  console.log(
    `| ${r.label} | ${(r.upload.images / r.upload.seconds).toFixed(1)} | ${(r.upload.megabytes / r.upload.seconds).toFixed(1)} | ` +
      `${r.upload.requestP50Ms.toFixed(0)} | ${r.read.requestsPerSecond.toFixed(0)} | ${r.read.p50} | ${r.read.p99} | ${r.read.max} | ` +
      `${r.read.non2xx} | ${r.read.errors} | ${us(r.cpu.serviceUs)}, ${r.database === 'pglite' ? '(in the service)' : us(r.cpu.postgresUs)} |`,
  );
}

// npm run bench:imports: dataset import throughput and the server's memory against the real
// server on 127.0.0.1.
//
// Builds a tar.gz of --images noise PNGs of --size x --size pixels (sharp), each with a
// caption sidecar (.txt), written to a temporary file as it is made; starts the service in
// a child process (bench/serve.ts) on Postgres (DATABASE_URL: a scratch database is created
// on that server and dropped afterwards) or, without it, embedded PGlite; creates a
// dataset; uploads the archive in one POST /v1/datasets/{id}/imports (raw body, streamed
// from the file by fetch); polls GET /v1/dataset-imports/{id} until it ends; and prints the
// archive's size, the upload's time and MB/s, the import's time (the server's started_at
// to completed_at), images/s and MB/s of the import, images stored and refused, and the
// service process's peak RSS, sampled from /proc/<pid>/status (VmRSS) every 20 ms.
// IMAGE_MIN_SIDE is lowered to --size so the small images are accepted.
// Options (all optional):
//   --images N  images in the archive (default 10000)
//   --size S    side of each image in pixels (default 64)
import { createReadStream, createWriteStream, readFileSync } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { availableParallelism, cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { createGzip } from 'node:zlib';
import { png } from '../test/support/images.js';
import { buildTar, type TarSpec } from '../test/support/tar.js';
import { scratchDatabase, startServer, stopServer, type Server } from './bench-server.js';

const { values: args } = parseArgs({
  options: {
    images: { type: 'string', default: '10000' },
    size: { type: 'string', default: '64' },
  },
});
const IMAGE_COUNT = Number(args.images);
const SIDE = Number(args.size);
/** Images per tar chunk written to the gzip stream: the archive is never whole in memory. */
const CHUNK = 500;
/** buildTar ends every tar with two zero blocks; only the last chunk keeps them. */
const TAR_END_BYTES = 1024;
const RSS_SAMPLE_MS = 20;
const POLL_MS = 250;
const MB = 1e6;
const MiB = 2 ** 20;

interface ImportState {
  id: string;
  status: string;
  bytes: number;
  progress: { images_stored: number; duplicates: number; captions_attached: number; refused: number; entries_read: number };
  refusals: Array<{ entry: string; code: string }>;
  error: { code: string; message: string } | null;
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
}

/** Writes the tar.gz of IMAGE_COUNT captioned noise PNGs to `file`; returns the images' total bytes. */
async function writeArchive(file: string): Promise<number> {
  const gzip = createGzip();
  const done = finished(gzip.pipe(createWriteStream(file)));
  let imageBytes = 0;
  for (let start = 0; start < IMAGE_COUNT; start += CHUNK) {
    const entries: TarSpec[] = [];
    for (let i = start; i < Math.min(start + CHUNK, IMAGE_COUNT); i++) {
      const name = `photos/img${String(i).padStart(5, '0')}`;
      const image = await png({ width: SIDE, height: SIDE, seed: i + 1 });
      imageBytes += image.length;
      entries.push({ name: `${name}.png`, data: image }, { name: `${name}.txt`, data: `a photo of sks dog, number ${i}\n` });
    }
    const tar = buildTar(entries);
    const last = start + CHUNK >= IMAGE_COUNT;
    if (!gzip.write(last ? tar : tar.subarray(0, tar.length - TAR_END_BYTES))) await new Promise((resolve) => gzip.once('drain', resolve));
  }
  gzip.end();
  await done;
  return imageBytes;
}

/** The process's resident set (VmRSS) in bytes, from /proc; undefined off Linux or once it has exited. */
function rssBytes(pid: number): number | undefined {
  try {
    const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match === null ? undefined : Number(match[1]) * 1024;
  } catch {
    return undefined;
  }
}

/** Samples `pid`'s RSS until stopped; `peak()` is the highest seen since the last `reset()`. */
function rssSampler(pid: number) {
  let peak = 0;
  const sample = () => { peak = Math.max(peak, rssBytes(pid) ?? 0); };
  const timer = setInterval(sample, RSS_SAMPLE_MS);
  return {
    peak: () => (sample(), peak),
    reset: () => { peak = 0; sample(); },
    stop: () => clearInterval(timer),
  };
}

async function api<T>(server: Server, method: string, path: string, body?: unknown): Promise<T> {
  const response = await fetch(`${server.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${server.apiKey}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path} answered ${response.status}: ${text}`);
  return JSON.parse(text) as T;
}

async function benchImport(databaseUrl: string, archive: string, archiveBytes: number) {
  const server = await startServer({ DATABASE_URL: databaseUrl, IMAGE_MIN_SIDE: String(SIDE) }, 'sdxl-bench-imports-');
  const pid = server.child.pid!;
  const rss = rssSampler(pid);
  try {
    const { id: datasetId } = await api<{ id: string }>(server, 'POST', '/v1/datasets', { name: 'bench', class_word: 'dog' });
    const rssBefore = rss.peak();
    rss.reset();
    const uploadStart = performance.now();
    const response = await fetch(`${server.url}/v1/datasets/${datasetId}/imports?filename=photos.tar.gz`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.apiKey}`, 'content-type': 'application/gzip' },
      body: Readable.toWeb(createReadStream(archive)) as ReadableStream<Uint8Array>,
      duplex: 'half',
    } as RequestInit);
    const uploadSeconds = (performance.now() - uploadStart) / 1000;
    const queued = JSON.parse(await response.text()) as ImportState;
    if (response.status !== 202) throw new Error(`the import answered ${response.status}: ${JSON.stringify(queued)}`);
    const uploadPeak = rss.peak();
    rss.reset();
    let current = queued;
    while (current.status === 'queued' || current.status === 'running') {
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      current = await api<ImportState>(server, 'GET', `/v1/dataset-imports/${queued.id}`);
    }
    const importPeak = rss.peak();
    if (current.status !== 'succeeded') throw new Error(`the import ended ${current.status}: ${JSON.stringify(current.error)}`);
    const importSeconds = (Date.parse(current.completed_at!) - Date.parse(current.started_at!)) / 1000;
    const queuedSeconds = (Date.parse(current.started_at!) - Date.parse(current.created_at)) / 1000;
    return { database: server.database, uploadSeconds, importSeconds, queuedSeconds, state: current, rssBefore, uploadPeak, importPeak, archiveBytes };
  } finally {
    rss.stop();
    await stopServer(server);
  }
}

const scratchDir = await mkdtemp(join(tmpdir(), 'sdxl-bench-imports-archive-'));
try {
  const archive = join(scratchDir, 'photos.tar.gz');
  const buildStart = performance.now();
  const imageBytes = await writeArchive(archive);
  const archiveBytes = (await stat(archive)).size;
  process.stderr.write(`built ${archive}: ${IMAGE_COUNT} PNGs (${(imageBytes / MB).toFixed(1)} MB) + sidecars, ${(archiveBytes / MB).toFixed(1)} MB gzipped, in ${((performance.now() - buildStart) / 1000).toFixed(1)} s\n`);

  const scratch = process.env.DATABASE_URL ? await scratchDatabase(process.env.DATABASE_URL, 'bench_imports') : undefined;
  let r;
  try {
    r = await benchImport(scratch?.url ?? '', archive, archiveBytes);
  } finally {
    await scratch?.drop();
  }

  const p = r.state.progress;
  const refusedCodes = [...new Set(r.state.refusals.map((refusal) => refusal.code))].join(', ');
  const mib = (bytes: number) => `${(bytes / MiB).toFixed(0)} MiB`;
  console.log(`\nMachine: ${availableParallelism()} CPU (${cpus()[0]?.model ?? 'unknown CPU'}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM, Node ${process.version}`);
  console.log(`Database: ${r.database}; archive: ${IMAGE_COUNT} noise PNGs of ${SIDE}x${SIDE} (${(imageBytes / MB).toFixed(1)} MB) with a .txt sidecar each, tar.gz\n`);
  console.log('| Archive MB | Upload s | Upload MB/s | Import s | Import images/s | Import MB/s | Stored | Duplicates | Captions | Refused | Service RSS MiB: idle, upload peak, import peak |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|');
  console.log(
    `| ${(archiveBytes / MB).toFixed(1)} | ${r.uploadSeconds.toFixed(2)} | ${(archiveBytes / MB / r.uploadSeconds).toFixed(1)} | ` +
      `${r.importSeconds.toFixed(1)} | ${(p.images_stored / r.importSeconds).toFixed(1)} | ${(archiveBytes / MB / r.importSeconds).toFixed(2)} | ` +
      `${p.images_stored} | ${p.duplicates} | ${p.captions_attached} | ${p.refused}${refusedCodes === '' ? '' : ` (${refusedCodes})`} | ` +
      `${mib(r.rssBefore)}, ${mib(r.uploadPeak)}, ${mib(r.importPeak)} |`,
  );
  console.log(`\nImport time: the import's started_at to completed_at (it waited ${r.queuedSeconds.toFixed(2)} s from created_at); import MB/s: archive (gzipped) bytes over that time.`);
  console.log(`RSS: the service process's VmRSS from /proc every ${RSS_SAMPLE_MS} ms: after start-up, peak during the upload, peak from the 202 to the end of the import.`);
} finally {
  await rm(scratchDir, { recursive: true, force: true });
}

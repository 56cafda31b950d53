// Training on a dataset of thousands of images: 2,000 captioned 128 px photos imported from one
// tar.gz into the service (a child process on a real Postgres), then runs on the SDXL demo model
// with a held-out split.
//  - Memory: the trainer keeps latents and prompt embeddings on disk (DATA_DIR/cache/training)
//    and reads the images' bytes only to encode them, so the service's RSS, sampled every 50 ms
//    through a run, peaks no more than RSS_BOUND_BYTES above a run on 20 images.
//  - A second run on the same images encodes nothing: every latent comes from the cache.
//  - kill -9 mid-run: the new process resumes the run from its checkpoint, on the cache, to the
//    tensors of the uninterrupted run byte for byte.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { gzipSync } from 'node:zlib';
import { png } from '../support/images.js';
import { buildTar, type TarSpec } from '../support/tar.js';
import {
  checkpointsOf,
  createRun,
  issueKey,
  pollUntil,
  readSafetensors,
  sleep,
  startService,
  useProcessTestBed,
  waitForFinish,
  type RunView,
  type ServiceProcess,
} from './service-process.js';

const IMAGES = 2000;
const SMALL = 20;
/**
 * How far the 2,000-image run's RSS may peak above the 20-image run's. Holding the images would cost
 * far more: their PNG bytes (about 49 KB each, noise) and their decoded pixels (48 KB each) are
 * 190 MiB, before any latent.
 */
const RSS_BOUND_BYTES = 64 * 1024 * 1024;
const LEASE_MS = 2000;
const PARAMS = { resolution: 128, max_steps: 40, checkpoint_every: 5, rank: 4, alpha: 4, seed: 99, validation_split: 0.05 };

const bed = useProcessTestBed('sdxl-large-dataset-');

function start(t: TestContext, name: string): Promise<ServiceProcess> {
  return startService(t, {
    name,
    databaseUrl: bed.database.url,
    dataDir: bed.dataDir,
    env: { TRAINING_LEASE_MS: String(LEASE_MS), TRAINING_SLOTS: '1', IMAGE_MIN_SIDE: '64' },
  });
}

/** The process's resident set, from /proc (Linux). */
function rssOf(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  assert.ok(kib, `no VmRSS in /proc/${pid}/status`);
  return Number(kib[1]) * 1024;
}

/** Samples the service's RSS every 50 ms until stop() is called; stop() gives the peak. */
function sampleRss(service: ServiceProcess): { stop(): number } {
  let peak = rssOf(service.pid);
  const timer = setInterval(() => {
    if (service.running) peak = Math.max(peak, rssOf(service.pid));
  }, 50);
  return {
    stop() {
      clearInterval(timer);
      return peak;
    },
  };
}

/** A dataset of `count` 128 px noise photos with a sidecar caption each, imported from one tar.gz. */
async function importedDataset(service: ServiceProcess, auth: { authorization: string }, count: number, seed: number): Promise<string> {
  const created = await service.request('POST', '/v1/datasets', { headers: auth, json: { name: `${count} photos`, class_word: 'style' } });
  assert.equal(created.status, 201, created.body);
  const datasetId = created.json<{ id: string }>().id;
  const entries: TarSpec[] = [];
  for (let i = 0; i < count; i++) {
    const name = `photos/img${String(i).padStart(4, '0')}`;
    entries.push({ name: `${name}.png`, data: await png({ width: 128, height: 128, seed: seed + i }) });
    entries.push({ name: `${name}.txt`, data: `a painting in sks style, number ${i % 50}\n` });
  }
  const archive = gzipSync(buildTar(entries));
  const posted = await service.request('POST', `/v1/datasets/${datasetId}/imports`, {
    headers: { ...auth, 'content-type': 'application/gzip' },
    body: archive,
  });
  assert.equal(posted.status, 202, posted.body);
  const importId = posted.json<{ id: string }>().id;
  const done = await pollUntil(`import ${importId}`, async () => {
    const current = (await service.request('GET', `/v1/dataset-imports/${importId}`, { headers: auth })).json<{ status: string; progress: { images_stored: number } }>();
    return current.status === 'running' || current.status === 'queued' ? undefined : current;
  }, { timeoutMs: 120_000, intervalMs: 200, context: () => service.tail() });
  assert.equal(done.status, 'succeeded', JSON.stringify(done));
  assert.equal(done.progress.images_stored, count);
  return datasetId;
}

/** Trains a run to its end on `service`, sampling the service's RSS meanwhile; gives the run and the peak. */
async function trainSampled(service: ServiceProcess, auth: { authorization: string }, datasetId: string): Promise<{ run: RunView; peak: number }> {
  const sampler = sampleRss(service);
  const created = await createRun(service, auth, datasetId, PARAMS);
  const run = await waitForFinish(service, auth, created.id, 300_000).finally(() => sampler.stop());
  assert.equal(run.status, 'succeeded', `${JSON.stringify(run.error)}\n${service.tail()}`);
  return { run, peak: sampler.stop() };
}

function assertSameTensors(name: string, resumedId: string, referenceId: string): void {
  const resumed = readSafetensors(path.join(bed.dataDir, 'runs', resumedId, name));
  const expected = readSafetensors(path.join(bed.dataDir, 'runs', referenceId, name));
  assert.ok(expected.tensors.size > 0, `${name} holds tensors`);
  assert.deepEqual([...resumed.tensors.keys()].sort(), [...expected.tensors.keys()].sort());
  for (const [tensor, want] of expected.tensors) {
    assert.ok(resumed.tensors.get(tensor)!.data.equals(want.data), `${name} ${tensor}: the resumed run's bytes differ from the uninterrupted run's`);
  }
}

test('a 2,000-image dataset trains with flat memory, a second run reuses the cache, and kill -9 resumes byte-identically', { timeout: 900_000 }, async (t) => {
  const first = await start(t, 'first (killed)');
  const auth = await issueKey(bed.db);
  let mark = Date.now();
  const lap = () => {
    const seconds = (Date.now() - mark) / 1000;
    mark = Date.now();
    return `${seconds.toFixed(1)} s`;
  };
  const small = await importedDataset(first, auth, SMALL, 1);
  const large = await importedDataset(first, auth, IMAGES, 10_000);
  t.diagnostic(`imports: ${lap()}`);

  // The baseline: a run on 20 images, after which the process has loaded everything a run loads.
  const baseline = await trainSampled(first, auth, small);
  t.diagnostic(`20 images: peak RSS ${(baseline.peak / 2 ** 20).toFixed(0)} MiB (${lap()})`);

  // The run over 2,000 images, caught after its first checkpoint and killed.
  const sampler = sampleRss(first);
  const interrupted = await createRun(first, auth, large, PARAMS);
  await pollUntil('the large run to write a checkpoint', async () => (checkpointsOf(bed.dataDir, interrupted.id).length > 0 ? true : undefined), {
    timeoutMs: 600_000, intervalMs: 50, context: () => first.tail(),
  });
  const encodingPeak = sampler.stop();
  t.diagnostic(`2,000 images, encoding and the first steps: peak RSS ${(encodingPeak / 2 ** 20).toFixed(0)} MiB (${lap()})`);
  assert.ok(encodingPeak - baseline.peak < RSS_BOUND_BYTES,
    `RSS peaked at ${encodingPeak} bytes over 2,000 images against ${baseline.peak} over 20: more than ${RSS_BOUND_BYTES} apart`);
  assert.equal((await first.kill()).signal, 'SIGKILL');

  // A new process resumes it once the lease runs out: from its checkpoint, every latent from the cache.
  await sleep(LEASE_MS);
  const second = await start(t, 'second (resumes)');
  const resumed = await waitForFinish(second, auth, interrupted.id, 600_000);
  assert.equal(resumed.status, 'succeeded', `${JSON.stringify(resumed.error)}\n${second.tail()}`);
  assert.equal(resumed.attempt, 2);
  t.diagnostic(`restart and resume: ${lap()}`);
  const held = Math.round(IMAGES * PARAMS.validation_split);
  assert.ok(Math.abs(resumed.metrics!.held_out_images! - held) <= held / 2, `held out ${resumed.metrics!.held_out_images} of ${IMAGES}`);
  const trained = IMAGES - resumed.metrics!.held_out_images!;
  assert.equal(resumed.metrics!.cache_latents_encoded, 0, 'the resumed attempt encoded nothing');
  assert.equal(resumed.metrics!.cache_latents_reused, IMAGES);
  assert.ok(Number.isFinite(resumed.metrics!.validation_loss_last), JSON.stringify(resumed.metrics));

  // A second run on the same images: no encoding, the same memory, and the resumed run's tensors.
  const again = await trainSampled(second, auth, large);
  t.diagnostic(`2,000 images from the cache: peak RSS ${(again.peak / 2 ** 20).toFixed(0)} MiB (${lap()}); ${trained} trained, ${IMAGES - trained} held out`);
  assert.equal(again.run.metrics!.cache_latents_encoded, 0);
  assert.equal(again.run.metrics!.cache_prompts_encoded, 0);
  assert.equal(again.run.metrics!.cache_latents_reused, IMAGES);
  assert.ok(again.peak - baseline.peak < RSS_BOUND_BYTES, `RSS peaked at ${again.peak} bytes on the cache against ${baseline.peak} over 20 images`);
  const logs = await bed.db.query<{ message: string }>(
    "SELECT data->>'message' AS message FROM training_run_events WHERE run_id = $1 AND type = 'log'", [again.run.id],
  );
  assert.ok(logs.rows.some((row) => /caching: latents and prompt embeddings: 0 images and prompts to encode, 2000 latents and \d+ prompts reused/.test(row.message)),
    logs.rows.map((row) => row.message).join('\n'));
  assertSameTensors('lora.safetensors', interrupted.id, again.run.id);
});
